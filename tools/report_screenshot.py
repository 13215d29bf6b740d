"""Screenshot the top of a report in headless Chromium (for the README), and time its first chart.

    python tools/report_screenshot.py reports/report.html docs/report-top.png

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
        page.wait_for_function("document.querySelector('.chart[data-state=\"drawn\"]') !== null", timeout=60_000)
        print(f"first chart drawn after {time.perf_counter() - start:.2f} s")
        page.screenshot(path=str(image))
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
