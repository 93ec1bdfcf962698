"""Site settings that ``_config.yml`` cannot express on its own.

* **Hidden folders are never pages.** Tools leave Markdown in hidden folders (pytest's ``.pytest_cache/README.md``)
  that Sphinx would read and warn about (``only_build_toc_files`` does not cover hidden files), failing ``-W``.
* **JupyterHub launch button.** ``launch_buttons.jupyterhub_url`` in ``_config.yml`` is the course's JupyterHub;
  an instructor can also set it for one build without editing the file, with the environment variable
  ``BOOK_JUPYTERHUB_URL`` (``make book JUPYTERHUB_URL=https://hub.example.edu``). Every executed chapter then
  gets a *Launch → JupyterHub* button that opens the chapter in JupyterLab on that hub (via nbgitpuller).
* **Notebook download.** sphinx-book-theme offers the executed ``.ipynb`` of a MyST Markdown chapter only when a
  launch button is configured. This extension always offers it: the notebook that myst-nb executed (with its
  outputs) is copied next to the page's source in ``_sources/`` and listed in the download menu.
* **No Live Code assets unless Live Code is on.** Jupyter Book always loads sphinx-thebe, whose page script points
  at a CDN (unpkg) and is added twice to every page (a JavaScript error: ``THEBE_JS_URL`` declared twice). When
  ``launch_buttons.thebe`` is off, its script and style sheet are left out of the pages; when it is on, the
  duplicate is dropped.
* **Search snippets without raw TeX.** The search page shows a snippet of each hit, cut from the page's HTML,
  where math is TeX source; ``static/search_summaries.js`` leaves the math out of the snippets.
* **Offline check.** After an HTML build, every page is scanned for a script, style sheet, image, font or frame
  loaded from another site (a CDN); each one is a warning, so ``jupyter-book build -W`` fails on it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

JUPYTERHUB_ENV = "BOOK_JUPYTERHUB_URL"

# a resource the browser fetches by itself when it shows the page (links to other sites are fine)
_EXTERNAL = r"""(?:https?:)?//[^"'\s>]+"""
_FETCHED = [
    re.compile(rf"""<script\b[^>]*\bsrc\s*=\s*["']?({_EXTERNAL})""", re.I),
    re.compile(rf"""<(?:img|iframe|embed|source|video|audio)\b[^>]*\bsrc\s*=\s*["']?({_EXTERNAL})""", re.I),
    re.compile(rf"""<link\b(?=[^>]*\brel\s*=\s*["']?(?:stylesheet|preload|modulepreload|icon|shortcut icon|manifest))"""
               rf"""[^>]*\bhref\s*=\s*["']?({_EXTERNAL})""", re.I),
    re.compile(rf"""@import\s+(?:url\()?["']?({_EXTERNAL})""", re.I),
]


HIDDEN_PATHS = [".*", "**/.*"]
STATIC = Path(__file__).resolve().parent / "static"


def _add_static_folder(app, config):
    config.html_static_path = list(config.html_static_path) + [str(STATIC)]


def _search_page_scripts(app, pagename, templatename, context, doctree):
    if pagename == "search" and app.builder.format == "html":
        app.add_js_file("search_summaries.js", defer="defer")  # after searchtools.js, before the search runs


def _exclude_hidden_folders(app, config):
    config.exclude_patterns = list(config.exclude_patterns) + [p for p in HIDDEN_PATHS
                                                               if p not in config.exclude_patterns]


def _jupyterhub_from_environment(app, config):
    url = os.environ.get(JUPYTERHUB_ENV, "").strip()
    if not url:
        return
    options = dict(config.html_theme_options or {})
    launch = dict(options.get("launch_buttons") or {})
    launch["jupyterhub_url"] = url
    options["launch_buttons"] = launch
    config.html_theme_options = options


def _is_notebook(app, pagename):
    return "kernelspec" in app.env.metadata.get(pagename, {})


def _executed_notebook(app, path):
    """The text of the notebook myst-nb wrote to ``jupyter_execute/``. In ``cache`` mode myst-nb writes it without
    its outputs; they are then merged back from the execution cache (as the page shows them)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    if not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"):
        config = getattr(app.env, "mystnb_config", None)
        cache_path = getattr(config, "execution_cache_path", None)
        if config is not None and config.execution_mode == "cache" and cache_path:
            try:
                from jupyter_cache import get_cache

                _, notebook = get_cache(cache_path).merge_match_into_notebook(notebook)
            except Exception as error:  # no match: offer the notebook without outputs
                LOGGER.info("no cached outputs for %s (%s)", path, error)
    return nbformat.writes(notebook)


def _executed_notebook_path(app, pagename):
    """``jupyter_execute/<page>.ipynb`` of a MyST Markdown chapter that myst-nb executed, else None."""
    if not _is_notebook(app, pagename) or not str(app.env.doc2path(pagename)).endswith(".md"):
        return None  # an .ipynb chapter is its own download
    path = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    return path if path.is_file() else None


def _offer_executed_notebook(app, pagename, templatename, context, doctree):
    """List the chapter's notebook in the download menu (written into ``_sources/`` at the end of the build)."""
    if app.builder.format == "html" and not context.get("ipynb_source") and _executed_notebook_path(app, pagename):
        context["ipynb_source"] = f"{pagename}.ipynb"


def _write_executed_notebooks(app, exception):
    # after every page: sphinx-book-theme copies the notebook without outputs while it writes a page
    if exception is not None or app.builder.format != "html":
        return
    for pagename in sorted(app.env.found_docs):
        executed = _executed_notebook_path(app, pagename)
        if executed is not None:
            target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_executed_notebook(app, executed), encoding="utf-8")


def _thebe_enabled(app):
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    if launch.get("thebe"):
        return True
    thebe_config = getattr(app.config, "thebe_config", None)
    return isinstance(thebe_config, dict) and thebe_config.get("always_load") is True


def _is_thebe_asset(asset):
    filename = str(getattr(asset, "filename", asset) or "")
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "sphinx-thebe" in filename or "THEBE_JS_URL" in body or "thebe@" in filename


def _tidy_thebe_assets(app, pagename, templatename, context, doctree):
    if app.builder.format != "html":
        return
    keep_thebe = _thebe_enabled(app)
    for key in ("script_files", "css_files"):
        assets, kept, seen = context.get(key) or [], [], set()
        for asset in assets:
            if _is_thebe_asset(asset):
                signature = (str(getattr(asset, "filename", asset)), str(getattr(asset, "attributes", {}).get("body")))
                if not keep_thebe or signature in seen:
                    continue
                seen.add(signature)
            kept.append(asset)
        context[key] = kept


def _check_offline(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    for page in sorted(outdir.rglob("*.html")):
        if "_static" in page.relative_to(outdir).parts:
            continue
        html = page.read_text(encoding="utf-8", errors="replace")
        found = sorted({match.group(1) for pattern in _FETCHED for match in pattern.finditer(html)})
        for url in found:
            LOGGER.warning("%s loads %s from another site; serve it from the book instead (the site must work "
                           "offline)", page.relative_to(outdir).as_posix(), url, type="offline", subtype="external")


def setup(app):
    app.connect("config-inited", _exclude_hidden_folders, priority=800)
    app.connect("config-inited", _add_static_folder, priority=800)
    app.connect("config-inited", _jupyterhub_from_environment, priority=800)
    app.connect("html-page-context", _offer_executed_notebook, priority=500)
    app.connect("html-page-context", _tidy_thebe_assets, priority=900)
    app.connect("html-page-context", _search_page_scripts)
    app.connect("build-finished", _write_executed_notebooks)
    app.connect("build-finished", _check_offline)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
