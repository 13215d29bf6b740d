"""The report of the tiny workflow in a real browser (Debian's Chromium, driven by Playwright).

Every chart must draw, every image load, every link resolve, and the console stay free of errors.
Screenshots are saved under the test's temporary directory for a person to look at; the time to
the first drawn chart is written to the test's log, not asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

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
