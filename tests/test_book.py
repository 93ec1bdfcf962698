"""The book builds: every chapter executes, with zero Sphinx warnings, and every page of the TOC is there.

The build is the session fixture ``built_book`` of ``tests/conftest.py``: the same command as ``make book``
(``jupyter-book build . -W -n --keep-going``), run once per session into a temporary folder, so it neither needs
nor touches the working tree's ``_build``. The browser tests (``tests/browser/``) look at the same build.
"""

import re

import pytest
from book_pages import ROOT, is_executable, source_of, toc_pages


@pytest.mark.slow
def test_book_builds_without_warnings(built_book):
    _, log = built_book
    # Sphinx's own messages ("WARNING: ...", "ERROR: ..."); kernels' log lines ("[IPKernelApp] WARNING | ...")
    # are not about the book
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", line)]
    assert not warnings, "\n".join(warnings)


@pytest.mark.slow
@pytest.mark.parametrize("page", toc_pages())
def test_every_toc_page_is_built(built_book, page):
    html_dir, _ = built_book
    html = (html_dir / f"{page}.html").read_text()
    assert "<h1" in html
    if is_executable(source_of(page)):
        # an executed chapter shows its own outputs and figures, and no error output
        assert 'class="cell_output' in html, f"{page} shows no cell output"
        assert re.search(r'<img[^>]+src="[^"]*_images/[^"]+\.png"', html), f"{page} shows no figure"
        assert "highlight-ipythontb" not in html, f"{page} shows a traceback"


def test_chapters_store_no_outputs_and_import_the_library():
    for page in toc_pages():
        path = source_of(page)
        if path.suffix == ".ipynb":
            import json
            cells = json.loads(path.read_text())["cells"]
            assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), path
        if is_executable(path) and "chapters/" in page:
            assert "from poisoning" in path.read_text(), f"{path.name} does not use the poisoning package"


def test_every_citation_key_is_in_the_bibliography():
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "references.bib").read_text(), re.M))
    for page in toc_pages():
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", source_of(page).read_text()):
            for key in group.split(","):
                assert key.strip() in keys, f"{page} cites unknown key {key}"
