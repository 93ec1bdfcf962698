"""Fixtures of the browser tests: headless Chromium driven by Playwright (the system's Chromium, Debian's
``chromium`` package), the built book served on localhost, and recording browser tabs.

Where no Chromium (or no Playwright) is available, every browser test is skipped with one line saying why. Under
CI (the environment variable ``CI`` set to anything but empty, ``0``, ``false`` or ``no``) they fail instead:
CI must run them.

``BOOK_HTML_DIR=_build/html`` makes the site tests look at an existing build (e.g. from ``make book``) instead of
the session's own build; ``CHROMIUM=/path/to/chromium`` picks the browser.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from book_pages import source_of, toc_pages
from browser_support import CHROMIUM_FLAGS, SCREENSHOTS, Visit, find_chromium, in_ci


SKIP_PREFIX = "browser tests skipped:"


def _unavailable(reason):
    if in_ci():
        pytest.fail(f"the browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(f"{SKIP_PREFIX} {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Report every browser test skipped for want of a browser at one place, so that ``-ra`` folds them into one
    line ("SKIPPED [n] tests/browser/conftest.py: browser tests skipped: <why>")."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and SKIP_PREFIX in str(report.longrepr[2]):
        report.longrepr = (__file__, _unavailable.__code__.co_firstlineno, report.longrepr[2])


def pytest_generate_tests(metafunc):
    if "toc_page" in metafunc.fixturenames:
        metafunc.parametrize("toc_page", toc_pages())


# --------------------------------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium_path():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the Python package playwright is not installed (it is in the test extra: "
                     "pip install -e '.[test]')")
    path = find_chromium()
    if path is None:
        _unavailable("Chromium is not installed (Debian: apt-get install chromium chromium-driver, which "
                     "`make test` runs by itself when it runs as root)")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS)
    except Exception as error:
        playwright.stop()
        pytest.fail(f"Chromium ({chromium_path}) did not start: {error}", pytrace=False)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture(scope="session")
def screenshots():
    """``_build/screenshots/``, emptied at the start of the session: the screenshots are a test artefact."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture
def visit(browser):
    """``visit(origin, **context_options)`` opens a recording tab that may load from ``origin`` only."""
    opened = []

    def open_tab(origin, **context_options):
        tab = Visit(browser, origin, **context_options)
        opened.append(tab)
        return tab

    yield open_tab
    for tab in opened:
        tab.close()


# --------------------------------------------------------------------------------------------------
# the site
# --------------------------------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript", ".woff": "font/woff",
                      ".woff2": "font/woff2", ".svg": "image/svg+xml", ".ipynb": "application/x-ipynb+json"}

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        pass


@dataclass
class Site:
    html_dir: Path
    url: str  # ends with /
    jupyterhub_url: str | None  # the hub of the launch buttons, when the site is this session's own build
    pages: list = field(default_factory=toc_pages)

    def url_of(self, page):
        return f"{self.url}{page}.html"

    def path_of(self, page):
        return urlsplit(self.url_of(page)).path


@pytest.fixture(scope="session")
def site(request, chromium_path):
    """The built book, served on 127.0.0.1 for the whole session (built only when a browser can look at it)."""
    existing = os.environ.get("BOOK_HTML_DIR", "").strip()
    if existing:
        html_dir, jupyterhub_url = Path(existing).resolve(), None
        if not (html_dir / "index.html").is_file():
            pytest.fail(f"BOOK_HTML_DIR={existing} holds no built site (no index.html)", pytrace=False)
    else:
        html_dir, _ = request.getfixturevalue("built_book")
        jupyterhub_url = request.getfixturevalue("book_jupyterhub_url")
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    yield Site(html_dir, f"http://127.0.0.1:{server.server_port}/", jupyterhub_url)
    server.shutdown()
    server.server_close()


@dataclass
class Bibliography:
    page: str
    path: str  # the URL path of the page
    entries: set  # the ids of its citation entries


CITATION_ENTRY_IDS_JS = """() => [...document.querySelectorAll(
    '.citation[id], [role="doc-biblioentry"][id], dl.citation > dt[id]')].map(e => e.id)"""


@pytest.fixture(scope="session")
def bibliography(site, browser):
    """The TOC page with the ``{bibliography}`` directive and the anchors of its entries (None: there is none)."""
    pattern = re.compile(r"^[`:]{3,}\s*\{bibliography\}", re.M)
    pages = [page for page in site.pages if pattern.search(source_of(page).read_text())]
    if not pages:
        return None
    tab = Visit(browser, site.url)
    try:
        tab.goto(site.url_of(pages[0]))
        entries = set(tab.page.evaluate(CITATION_ENTRY_IDS_JS))
    finally:
        tab.close()
    return Bibliography(pages[0], site.path_of(pages[0]), entries)
