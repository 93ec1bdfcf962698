"""The book builds: every chapter executes, with zero Sphinx warnings, and every page of the TOC is there.

The build is the session fixture ``built_book`` of ``tests/conftest.py``: the same command as ``make book``
(``jupyter-book build . -W -n --keep-going``), run once per session into a temporary folder, so it neither needs
nor touches the working tree's ``_build``. The browser tests (``tests/browser/``) look at the same build.
The checks of the sources (text notebooks, no stored outputs, citation keys) need no build.
"""

import json
import re
import shutil
import subprocess

import pytest
import yaml
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


def myst_notebook_problems(text):
    """Why a page's text is not a MyST Markdown notebook that Jupyter Book executes (empty when it is): a YAML
    front matter with jupytext's ``text_representation`` in the ``myst`` format and a ``kernelspec`` naming a
    kernel."""
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not match:
        return ["no YAML front matter"]
    try:
        front = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as error:
        return [f"front matter is not YAML: {error}"]
    problems = []
    representation = (front.get("jupytext") or {}).get("text_representation") or {}
    if representation.get("format_name") != "myst" or representation.get("extension") != ".md":
        problems.append(f"jupytext text_representation is not MyST Markdown: {representation!r}")
    kernelspec = front.get("kernelspec") or {}
    if not (kernelspec.get("name") and kernelspec.get("language")):
        problems.append(f"no kernelspec with a kernel name and language: {kernelspec!r}")
    return problems


def code_cells(text):
    """The sources of the ``{code-cell}`` blocks of a MyST notebook."""
    return re.findall(r"^(`{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", text, re.S | re.M)


def imports_the_library(text):
    """Whether a code cell imports the ``poisoning`` package (``import poisoning...``/``from poisoning...``)."""
    pattern = re.compile(r"^\s*(from\s+poisoning(\.\w+)*\s+import\b|import\s+poisoning\b)", re.M)
    return any(pattern.search(source) for _, source in code_cells(text))


def stored_outputs(notebook):
    """The indices of the code cells of a notebook (parsed JSON) that store outputs or an execution count."""
    return [i for i, cell in enumerate(notebook["cells"])
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]


def committed(*patterns):
    """The files git tracks that match ``patterns`` (``git ls-files``), relative to the repository root."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout of the book")
    result = subprocess.run(["git", "ls-files", "-z", "--", *patterns], cwd=ROOT, capture_output=True, check=True)
    return [name for name in result.stdout.decode().split("\0") if name]


def test_the_checks_of_the_stored_sources_catch_what_they_should():
    """The helpers of the next test, on pages and notebooks made to fail them."""
    good = ("---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
            "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n# A page\n\n"
            "```{code-cell} ipython3\nimport numpy as np\nfrom poisoning.threat_model import empirical_risk\n```\n")
    assert myst_notebook_problems(good) == [] and imports_the_library(good)
    assert myst_notebook_problems("# A page\n\n```{code-cell} ipython3\n1 + 1\n```\n") == ["no YAML front matter"]
    assert len(myst_notebook_problems(good.replace("format_name: myst", "format_name: percent"))) == 1
    assert len(myst_notebook_problems(good.replace("  name: python3\n", ""))) == 1
    # an import outside a code cell (prose, a literal block) does not count; `import poisoning` does
    assert not imports_the_library(good.replace("```{code-cell} ipython3", "```python"))
    assert not imports_the_library(good.replace("from poisoning.threat_model", "from sklearn.base"))
    assert imports_the_library(good.replace("from poisoning.threat_model import empirical_risk", "import poisoning"))
    assert code_cells("````{code-cell} ipython3\nx = 1\n```\ny = 2\n````\n") == [("````", "x = 1\n```\ny = 2\n")]
    code = {"cell_type": "code", "source": "1 + 1", "metadata": {}, "outputs": [], "execution_count": None}
    notebook = {"cells": [{"cell_type": "markdown", "source": "# A", "metadata": {}}, code]}
    assert stored_outputs(notebook) == []
    assert stored_outputs({"cells": [code, {**code, "execution_count": 3}]}) == [1]
    assert stored_outputs({"cells": [{**code, "outputs": [{"output_type": "stream", "text": "2"}]}]}) == [0]


def test_chapters_store_no_outputs_and_import_the_library():
    """Without building the book: the executed pages are MyST text notebooks that use the library, no notebook
    is committed under chapters/, and every committed notebook is stored without outputs."""
    executable = [page for page in toc_pages() if is_executable(source_of(page))]
    assert len(executable) >= 10, executable  # the ten chapters with code
    for page in executable:
        path = source_of(page)
        assert path.suffix == ".md", f"{page}: an executed page must be a MyST text notebook, not {path.name}"
        text = path.read_text()
        assert not myst_notebook_problems(text), f"{page}: {myst_notebook_problems(text)}"
        if page.startswith("chapters/"):
            assert imports_the_library(text), f"{page} does not import the poisoning package in a code cell"

    assert committed("chapters/*.ipynb", "chapters/**/*.ipynb") == []
    notebooks = committed("*.ipynb")
    assert notebooks, "no committed notebook found (the solutions are notebooks)"
    for name in notebooks:
        notebook = json.loads((ROOT / name).read_text())
        assert not stored_outputs(notebook), f"{name}: code cells {stored_outputs(notebook)} store outputs or " \
                                             "execution counts"


def test_every_citation_key_is_in_the_bibliography():
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "references.bib").read_text(), re.M))
    for page in toc_pages():
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", source_of(page).read_text()):
            for key in group.split(","):
                assert key.strip() in keys, f"{page} cites unknown key {key}"
