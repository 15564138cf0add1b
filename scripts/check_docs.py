"""Open every page of the built documentation site in headless Chromium; fail on a console error or a missing plot.

``python scripts/check_docs.py site`` serves ``site/`` on 127.0.0.1 (a random free port), loads each HTML page
in headless Chromium through Selenium and the system's chromedriver (Debian: ``apt-get install chromium
chromium-driver``; no driver is downloaded), and reads the browser's console log. A page fails when it logs a
``SEVERE`` entry (a JavaScript error, a resource that failed to load) or does not render a ``<body>``. Notebook pages
must show at least one image (their plots, rendered at build time). Prints one line per page and exits 1 on any
failure.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path


def _driver() -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        msg = "headless Chromium and chromedriver are needed. Hint: apt-get install chromium chromium-driver"
        raise SystemExit(msg)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def main(argv: list[str] | None = None) -> int:
    """Check every page of the site directory given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path)
    args = parser.parse_args(argv)
    site = args.site.resolve()
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.name != "404.html")
    if not pages:
        print(f"no HTML pages under {site}", file=sys.stderr)
        return 1
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    driver = _driver()
    failures = 0
    try:
        for page in pages:
            driver.get(f"{base}/{page}")  # type: ignore[attr-defined]
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
            body = driver.execute_script("return document.body ? document.body.innerText.length : 0")  # type: ignore[attr-defined]
            images = driver.execute_script("return document.images.length")  # type: ignore[attr-defined]
            problems = list(errors)
            if not body:
                problems.append("empty page")
            if "notebooks/" in page and images == 0:
                problems.append("a notebook page without a single rendered plot")
            status = "ok" if not problems else "FAIL: " + " | ".join(problems)[:500]
            print(f"{page}: {images} images, {status}")
            failures += bool(problems)
    finally:
        driver.quit()  # type: ignore[attr-defined]
        server.shutdown()
    print(f"{len(pages) - failures} pages ok, {failures} failed")
    return 1 if failures else 0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


if __name__ == "__main__":
    sys.exit(main())
