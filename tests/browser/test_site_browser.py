"""The website, as a reader sees it: every page of ``_toc.yml`` opened in headless Chromium from a local server.

For every page: it loads with no console error, no uncaught exception, no failed request and no request for
another site (the site must work offline: MathJax, fonts and scripts all come from ``_build/html``); every
``$...$`` and ``$$...$$`` is typeset by MathJax (no raw TeX left on the page, no MathJax error); every image
loads; every captioned figure is numbered; citations link to entries of the bibliography page, and following one
lands there. A full-page screenshot of each page is saved under ``_build/screenshots/`` (a test artefact).

Then the site's features: search finds a lecture term, dark mode switches and is remembered, executed chapters
offer their notebook for download and a JupyterHub launch button, the header links to the repository.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from book_pages import ROOT, source_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SEARCH_TERM = "influence"

# --------------------------------------------------------------------------------------------------
# JavaScript run in the page
# --------------------------------------------------------------------------------------------------
WAIT_FOR_MATHJAX_JS = """async () => {
    if (!document.querySelector('.math')) return 'no math';
    for (let i = 0; i < 200 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
        await new Promise(resolve => setTimeout(resolve, 50));
    if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return 'MathJax did not load';
    await MathJax.startup.promise;
    return 'typeset';
}"""

MATH_JS = """() => {
    const math = [...document.querySelectorAll('.math')];
    const untypeset = math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim().slice(0, 120));
    const errors = [...document.querySelectorAll('mjx-merror, [data-mjx-error]')]
        .map(e => e.getAttribute('data-mjx-error') || e.textContent.trim().slice(0, 120));
    // the text a reader sees, without code, typeset math and scripts
    const copy = document.body.cloneNode(true);
    copy.querySelectorAll('pre, code, kbd, samp, script, style, template, textarea, svg, mjx-container, ' +
                          'mjx-assistive-mml, .highlight').forEach(e => e.remove());
    return {count: math.length, untypeset, errors, text: copy.textContent};
}"""

IMAGES_JS = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = 'eager'; });
    await Promise.all(images.map(img => img.complete ? null :
        new Promise(resolve => { img.addEventListener('load', resolve); img.addEventListener('error', resolve); })));
    return images.map(img => ({src: img.getAttribute('src'), url: img.currentSrc || img.src,
                               width: img.naturalWidth, height: img.naturalHeight}));
}"""

CAPTIONS_JS = """() => {
    const numbered = (items, label) => items.map(caption => {
        const number = caption.querySelector('.caption-number');
        return {kind: label, number: number ? number.textContent.trim() : null,
                caption: caption.textContent.trim().replace(/\\s+/g, ' ').slice(0, 80)};
    });
    return numbered([...document.querySelectorAll('figure > figcaption, div.figure > p.caption')], 'figure')
        .concat(numbered([...document.querySelectorAll('table > caption')], 'table'));
}"""

CITATION_LINKS_JS = """(bibliographyPath) => [...document.querySelectorAll('a[href]')]
    .filter(a => { const u = new URL(a.href, location.href); return u.pathname === bibliographyPath && u.hash; })
    .map(a => ({text: a.textContent.trim(),
                target: decodeURIComponent(new URL(a.href, location.href).hash.slice(1))}))"""

# raw TeX in the visible text: delimiters that MathJax would have removed, dollar math with TeX inside, control words
RAW_TEX = [
    (re.compile(r"\\[()\[\]]"), "a TeX delimiter \\( \\) \\[ \\]"),
    (re.compile(r"(?<![\\$])\$\$?(?=[^$\n]*[\\^_{}])[^$\n]{1,300}?\$\$?"), "dollar math"),
    (re.compile(r"\\(?:begin|end)\{[a-z*]+\}"), "a LaTeX environment"),
    (re.compile(r"\\[A-Za-z]{2,}"), "a TeX command"),
]


def raw_tex(text):
    found = []
    for pattern, what in RAW_TEX:
        for match in pattern.finditer(text):
            start, end = max(0, match.start() - 40), min(len(text), match.end() + 40)
            found.append(f"{what}: ...{' '.join(text[start:end].split())}...")
    return found


def cited_keys(page):
    keys = set()
    for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", source_of(page).read_text()):
        keys.update(key.strip() for key in group.split(",") if key.strip())
    return keys


def screenshot_path(screenshots, name):
    path = screenshots / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def book_config():
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def executed_pages(site):
    """TOC pages that are executed notebooks (code cells, not excluded from execution in _config.yml)."""
    excluded = (book_config().get("execute") or {}).get("exclude_patterns") or []
    pages = []
    for page in site.pages:
        path = source_of(page)
        if path.suffix != ".ipynb" and "{code-cell}" not in path.read_text():
            continue
        if any(PurePosixPath(path.relative_to(ROOT).as_posix()).match(pattern) for pattern in excluded):
            continue
        pages.append(page)
    return pages


# --------------------------------------------------------------------------------------------------
# every page
# --------------------------------------------------------------------------------------------------
def test_page_in_the_browser(site, visit, screenshots, bibliography, toc_page):
    tab = visit(site.url)
    page = tab.page
    response = tab.goto(site.url_of(toc_page))
    assert response is not None and response.ok, f"{toc_page}: HTTP {response.status if response else '-'}"
    mathjax = page.evaluate(WAIT_FOR_MATHJAX_JS)
    math = page.evaluate(MATH_JS)
    images = page.evaluate(IMAGES_JS)
    captions = page.evaluate(CAPTIONS_JS)
    page.wait_for_load_state("networkidle")  # fonts MathJax asked for
    page.screenshot(path=screenshot_path(screenshots, toc_page), full_page=True)

    problems = tab.problems()
    if mathjax == "MathJax did not load":
        problems.append(f"{math['count']} math elements but MathJax did not load")
    problems += [f"math not typeset: {tex}" for tex in math["untypeset"]]
    problems += [f"MathJax error: {error}" for error in math["errors"]]
    problems += [f"raw TeX on the page, {found}" for found in raw_tex(math["text"])]
    problems += [f"image did not load: {image['src']}" for image in images if not image["width"] or not image["height"]]
    for caption in captions:
        prefix = "Fig." if caption["kind"] == "figure" else "Table"
        if not (caption["number"] or "").startswith(prefix):
            problems.append(f"{caption['kind']} without a number: {caption['caption']!r}")
    numbers = [caption["number"] for caption in captions if caption["number"]]
    problems += [f"number used twice: {n}" for n in sorted({n for n in numbers if numbers.count(n) > 1})]

    keys = cited_keys(toc_page)
    links = []
    if keys:
        if bibliography is None:
            problems.append(f"cites {len(keys)} references, but no page of the TOC has a {{bibliography}}")
        else:
            links = page.evaluate(CITATION_LINKS_JS, bibliography.path)
            targets = {link["target"] for link in links}
            if len(targets) < len(keys):
                problems.append(f"cites {len(keys)} references ({', '.join(sorted(keys))}) but links to only "
                                f"{len(targets)} bibliography entries")
            problems += [f"citation {link['text']!r} links to #{link['target']}, which is no entry of "
                         f"{bibliography.page}" for link in links if link["target"] not in bibliography.entries]
    assert not problems, f"{toc_page} ({site.url_of(toc_page)}):\n  " + "\n  ".join(problems)

    if links:
        # follow the first citation, as a reader would
        page.evaluate("""(bibliographyPath) => [...document.querySelectorAll('a[href]')]
            .find(a => { const u = new URL(a.href, location.href); return u.pathname === bibliographyPath && u.hash; })
            .setAttribute('data-first-citation', '')""", bibliography.path)
        page.locator("a[data-first-citation]").click()
        page.wait_for_url(lambda url: urlsplit(url).path == bibliography.path and urlsplit(url).fragment != "")
        fragment = unquote(urlsplit(page.url).fragment)
        assert fragment in bibliography.entries, f"{toc_page}: the citation led to #{fragment}"
        entry = page.locator(f"[id='{fragment}']")
        entry.wait_for(state="visible")
        assert entry.is_visible() and entry.bounding_box() is not None


def test_bibliography_page_lists_references(bibliography):
    assert bibliography is not None, "no page of _toc.yml holds a {bibliography} directive"
    assert bibliography.entries, f"{bibliography.page} lists no references"


# --------------------------------------------------------------------------------------------------
# site features
# --------------------------------------------------------------------------------------------------
def test_search_finds_a_lecture_term(site, visit, screenshots):
    tab = visit(site.url)
    page = tab.page
    tab.goto(site.url)
    page.locator(".search-button__button:visible").first.click()
    field_ = page.locator("input[name='q']:visible").first
    field_.wait_for(state="visible")
    field_.fill(SEARCH_TERM)
    field_.press("Enter")
    page.wait_for_url(re.compile(r"/search\.html\?"))
    page.wait_for_function("""() => { const s = document.querySelector('#search-results .search-summary, '
                                                      + '#search-results p');
                                      return s && /found|did not match/i.test(s.textContent); }""", timeout=60_000)
    hits = page.evaluate("""() => [...document.querySelectorAll('#search-results ul.search > li a')]
                                  .map(a => new URL(a.href, location.href).pathname)""")
    page.wait_for_load_state("networkidle")  # the snippets are fetched from the pages
    page.screenshot(path=screenshot_path(screenshots, "features/search"), full_page=True)
    assert hits, f"searching for {SEARCH_TERM!r} found nothing"
    snippets = page.locator("#search-results").inner_text()
    assert not raw_tex(snippets), f"raw TeX in the search results: {raw_tex(snippets)}"
    toc_paths = {site.path_of(p) for p in site.pages}
    assert toc_paths & set(hits), f"no hit for {SEARCH_TERM!r} is a page of the TOC: {hits}"
    assert not tab.problems(), "\n".join(tab.problems())


def _html_mode(page):
    return page.evaluate("() => [document.documentElement.dataset.mode, document.documentElement.dataset.theme]")


def _background_luminance(page):
    rgb = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    r, g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_dark_mode_switches_and_is_remembered(site, visit, screenshots):
    tab = visit(site.url, color_scheme="light")
    page = tab.page
    tab.goto(site.url)
    assert _html_mode(page)[1] == "light"
    light = _background_luminance(page)
    button = page.locator(".theme-switch-button:visible").first
    for _ in range(3):  # the button cycles through light, dark and auto
        if _html_mode(page) == ["dark", "dark"]:
            break
        button.click()
    assert _html_mode(page) == ["dark", "dark"], f"the colour-mode button never switched to dark: {_html_mode(page)}"
    dark = _background_luminance(page)
    assert dark < 0.3 < light, f"background luminance {light:.2f} (light) and {dark:.2f} (dark)"
    page.screenshot(path=screenshot_path(screenshots, "features/dark-mode"))
    tab.goto(site.url_of(site.pages[-1]))
    assert _html_mode(page)[1] == "dark", "the dark mode is not remembered on the next page"
    assert not tab.problems(), "\n".join(tab.problems())

    # "auto" (the default) follows the reader's system setting
    system_dark = visit(site.url, color_scheme="dark")
    system_dark.goto(site.url)
    assert _html_mode(system_dark.page) == ["auto", "dark"]


def test_executed_chapters_offer_notebook_download_and_launch(site, visit):
    pages = executed_pages(site)
    if not pages:
        pytest.skip("no executed chapter in _toc.yml")
    repository = (book_config().get("repository") or {}).get("url", "").rstrip("/")
    tab = visit(site.url)
    page = tab.page
    for name in pages:
        tab.goto(site.url_of(name))
        # the download menu: the executed notebook, the MyST source, print to PDF
        page.locator(".dropdown-download-buttons > button").click()
        notebook_link = page.locator(".dropdown-download-buttons a.btn-download-notebook-button")
        notebook_link.wait_for(state="visible")
        assert page.locator(".dropdown-download-buttons a.btn-download-source-button").is_visible()
        assert page.locator(".dropdown-download-buttons .btn-download-pdf-button").is_visible()
        url = notebook_link.evaluate("a => a.href")
        assert url.endswith(f"{Path(name).name}.ipynb"), url
        response = tab.context.request.get(url)
        assert response.ok, f"{name}: {url} gives HTTP {response.status}"
        notebook = json.loads(response.body())
        assert notebook.get("nbformat") == 4, f"{url} is not a notebook"
        code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
        assert code and any(cell.get("outputs") for cell in code), f"{url} has no executed code cell"
        page.keyboard.press("Escape")

        if repository:
            assert page.locator(f"a[href='{repository}']").count(), f"{name}: no link to the repository {repository}"
        if site.jupyterhub_url:  # the session's own build sets a JupyterHub
            launch = page.locator(".dropdown-launch-buttons a", has_text="JupyterHub")
            assert launch.count() == 1, f"{name}: no JupyterHub launch button"
            href = launch.get_attribute("href")
            assert href.startswith(f"{site.jupyterhub_url}/hub/user-redirect/git-pull?"), href
            assert f"{name}.md" in unquote(href) or f"{name}.ipynb" in unquote(href), href
    assert not tab.problems(), "\n".join(tab.problems())
