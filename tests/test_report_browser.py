"""The reports of the tiny workflow in a real browser (Debian's Chromium, driven by Playwright).

The project's report: every chart must draw, every image load, every link resolve, and the console
stay free of errors. Snakemake's own report (``snakemake --report report.zip``): every figure with
its caption, every summary table, the claims table, the project's report and the neuron browser are
in it, under their analysis categories. Screenshots are saved under the test's temporary directory
for a person to look at; the time to the first drawn chart is written to the test's log, not asserted.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from tests.workflow_helpers import snakemake

pytestmark = pytest.mark.workflow

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's own browser checks run it: headless, no sandbox (root), no network chatter.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed with apt when it is missing (as the SLURM test installs slurm-wlm)."""
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None:
            pytest.skip("the browser test needs Debian's chromium package, and apt-get is not available here")
        install = ["apt-get", "install", "-y", "chromium"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=True)
            subprocess.run(install, capture_output=True, check=True)
    return CHROMIUM


def test_report_draws_every_chart_without_errors(finished_run, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    report = finished_run / "reports" / "report.html"
    console_errors, failed_requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.on("requestfailed", lambda request: failed_requests.append(request.url))
        start = time.perf_counter()
        page.goto(report.as_uri(), wait_until="load")
        loaded = time.perf_counter() - start
        # Charts draw as they near the viewport, and the claims table comes first: go to the first chart.
        page.locator(".chart").first.scroll_into_view_if_needed()
        page.wait_for_function("document.querySelector('.chart[data-state=\"drawn\"]') !== null", timeout=30_000)
        first_chart = time.perf_counter() - start
        page.screenshot(path=str(tmp_path / "report-top.png"))

        page.evaluate("renderAllCharts()")
        charts = page.eval_on_selector_all(
            ".chart", "nodes => nodes.map(n => [n.dataset.chart, n.dataset.state, !!n.querySelector('svg')])"
        )
        images = page.evaluate(
            """async () => Promise.all([...document.images].map(async (image) => {
                image.loading = 'eager';
                try { await image.decode(); } catch (error) {}
                return [image.getAttribute('src'), image.naturalWidth];
            }))"""
        )
        links = page.eval_on_selector_all("a[href]", "nodes => nodes.map(n => n.getAttribute('href'))")
        anchors = page.eval_on_selector_all("[id]", "nodes => nodes.map(n => n.id)")
        page.screenshot(path=str(tmp_path / "report-full.png"), full_page=True)
        browser.close()

    timing = {"load_s": round(loaded, 3), "first_chart_s": round(first_chart, 3), "charts": len(charts)}
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    print(f"report timing: {timing}; screenshots in {tmp_path}")  # the test's log

    assert charts and all(state == "drawn" and svg for _, state, svg in charts), charts
    assert images and all(width > 0 for _, width in images), images
    for link in links:
        if link.startswith("#"):
            assert link[1:] in anchors, f"anchor {link} has no target"
        else:
            assert (report.parent / link).exists(), f"link {link} points nowhere"
    assert not console_errors, console_errors
    assert not failed_requests, failed_requests
    claims = page_text = report.read_text(encoding="utf-8")
    assert "the paper's claims in this run" in claims and "Provenance" in page_text


def snakemake_report(workdir: Path, directory: Path) -> Path:
    """``snakemake --report`` of a finished run, unpacked under ``directory``; its ``report.html``."""
    archive = directory / "report.zip"
    snakemake(workdir, "--report", str(archive))
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(directory / "unpacked")
    (page,) = (directory / "unpacked").glob("*/report.html")
    return page


def report_entries(page: Path) -> dict[str, str]:
    """Output path -> its rendered caption, from the results the report embeds."""
    text = page.read_text(encoding="utf-8")
    entries = re.findall(
        r'"((?:reports)/[^"]+)": \{"name": "[^"]*", "filename": .*?"caption": "((?:[^"\\]|\\.)*)"', text
    )
    return dict(entries)


def test_snakemake_report_holds_every_figure_table_and_report(finished_run, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    from transfer_neurons.reporting.registry import FIGURES
    from transfer_neurons.reporting.snakemake_report import figure_category

    page_file = snakemake_report(finished_run, tmp_path)
    entries = report_entries(page_file)
    figures = sorted(str(png.relative_to(finished_run)) for png in (finished_run / "reports/figures").rglob("*.png"))
    tables = sorted(str(csv.relative_to(finished_run)) for csv in (finished_run / "reports/tables").rglob("*.csv"))
    assert figures and "reports/tables/tiny/claims.csv" in tables
    for path in [*figures, *tables, "reports/report.html", "reports/neurons/tiny/index.html"]:
        assert path in entries, f"{path} is not in Snakemake's report"
    for path in figures:
        caption = entries[path]
        assert FIGURES[Path(path).stem].caption[:40] in caption.replace("\\'", "'"), f"{path}: {caption[:200]}"
        assert "bears on" in caption or "No claim of the claims table" in caption, path
    # the neuron browser's pages come along with its index
    unpacked = list((tmp_path / "unpacked").rglob("*.html"))
    assert len(unpacked) > 3, unpacked

    categories = sorted(
        {figure_category(Path(path).stem) for path in figures} | {"claims", "project report", "neuron browser"}
    )
    console_errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.goto(page_file.as_uri(), wait_until="load")
        page.get_by_text("Transfer neurons", exact=True).wait_for(timeout=30_000)
        menu = page.inner_text("body")
        assert all(category in menu for category in categories), (categories, menu[:2000])
        page.screenshot(path=str(tmp_path / "snakemake-report-top.png"))

        page.get_by_text("claims", exact=True).first.click()
        page.locator("tr", has_text="claims").first.wait_for(timeout=10_000)
        page.get_by_text("Results", exact=True).first.click()
        page.get_by_text("project report", exact=True).first.click()
        page.locator("tr", has_text="project report").first.wait_for(timeout=10_000)
        page.get_by_text("Results", exact=True).first.click()
        page.get_by_text("alignment", exact=True).first.click()
        row = page.locator("tr", has_text="knn_alignment").first
        row.locator("a").nth(1).click()  # the entry's information: its caption
        page.get_by_text("It bears on the claim").first.wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "snakemake-report-figure.png"))
        browser.close()
    assert not console_errors, console_errors
