"""Helpers of the browser tests (imported by their conftest and test modules): the pages of ``_toc.yml``,
finding Chromium, and a browser tab that records everything that goes wrong."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the environment's scripts: jupyter, course
SCREENSHOTS = ROOT / "_build" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}

# Headless Chromium as root, on a machine whose only network is localhost: no sandbox (root), no GPU, and none of
# Chromium's own background connections (their refused connections would otherwise show up as errors).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]


def in_ci():
    """True when the environment variable CI is set to anything but empty, 0, false or no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_chromium():
    """The Chromium executable: $CHROMIUM if set, else the first of CHROMIUM_CANDIDATES on this machine."""
    explicit = os.environ.get("CHROMIUM", "").strip()
    for candidate in [explicit] if explicit else CHROMIUM_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


# --------------------------------------------------------------------------------------------------
# a recording browser tab
# --------------------------------------------------------------------------------------------------
def is_local(url, origin):
    parts, home = urlsplit(url), urlsplit(origin)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.netloc == home.netloc


class Visit:
    """A fresh browser tab (in its own context) that may load from ``origin`` only. It records console errors,
    uncaught exceptions, failed requests and HTTP errors, and blocks and records every request for another
    site."""

    def __init__(self, browser, origin, **context_options):
        self.origin = origin
        self.console_errors, self.page_errors, self.failed, self.http_errors, self.external = [], [], [], [], []
        options = {"viewport": VIEWPORT, "service_workers": "block", **context_options}
        self.context = browser.new_context(**options)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error).splitlines()[0]))
        self.page.on("requestfailed", self._request_failed)
        self.page.on("response", self._response)

    def _route(self, route):
        url = route.request.url
        if url.startswith(("data:", "blob:")) or is_local(url, self.origin):
            route.continue_()
        else:
            self.external.append(url)
            route.abort("blockedbyclient")

    def _console(self, message):
        if message.type == "error":
            where = (message.location or {}).get("url", "")
            self.console_errors.append(f"{message.text} ({where})" if where else message.text)

    def _request_failed(self, request):
        if request.url not in self.external:
            self.failed.append(f"{request.url}: {request.failure}")

    def _response(self, response):
        if response.status >= 400:
            self.http_errors.append(f"HTTP {response.status} {response.url}")

    def goto(self, url, **options):
        response = self.page.goto(url, **options)
        self.page.wait_for_load_state("networkidle")
        return response

    def problems(self):
        """Everything that went wrong so far, one line each."""
        return ([f"request for another site (blocked): {url}" for url in self.external]
                + [f"failed request: {line}" for line in self.failed]
                + list(self.http_errors)
                + [f"console error: {line}" for line in self.console_errors]
                + [f"uncaught JavaScript error: {line}" for line in self.page_errors])

    def close(self):
        self.context.close()
