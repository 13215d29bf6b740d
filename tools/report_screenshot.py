"""Screenshot the top of a report in headless Chromium (for the README), and time its loading and charts.

    PYTHONPATH=. python tools/report_screenshot.py reports/report.html docs/report-top.png

Uses Debian's /usr/bin/chromium through Playwright, as tests/test_report_browser.py does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.test_report_browser import CHROMIUM, CHROMIUM_ARGS


def main(report: Path, image: Path) -> int:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        start = time.perf_counter()
        page.goto(report.resolve().as_uri(), wait_until="load")
        loaded = time.perf_counter() - start
        page.screenshot(path=str(image))
        # Charts draw as they near the viewport; drawing all of them bounds any reader's wait.
        start = time.perf_counter()
        page.evaluate("renderAllCharts()")
        drawn = time.perf_counter() - start
        states = page.eval_on_selector_all(".chart", "nodes => nodes.map(n => n.dataset.state)")
        print(
            f"page loaded in {loaded:.2f} s; all {len(states)} charts drawn {drawn:.2f} s later "
            f"({states.count('drawn')} as interactive charts)"
        )
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
