"""The pages of the book, for the book tests (``test_book.py``) and the browser tests (``tests/browser/``)."""

from pathlib import Path

from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_pages():
    """Every page of ``_toc.yml``, root first, as Jupyter Book itself reads the file."""
    return list(parse_toc_yaml(str(ROOT / "_toc.yml")))


def source_of(page):
    """The source file of a TOC page."""
    for suffix in (".md", ".ipynb"):
        if (ROOT / f"{page}{suffix}").exists():
            return ROOT / f"{page}{suffix}"
    raise FileNotFoundError(f"no source for the TOC entry {page}")


def is_executable(path):
    """Whether a page is a notebook that the build executes."""
    return path.suffix == ".ipynb" or "{code-cell}" in path.read_text()
