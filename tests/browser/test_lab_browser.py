"""The JupyterLab workflow, as a student and an instructor go through it, in headless Chromium.

The student version of assignment 1 is generated in a scratch copy of the course (``nbgrader
generate_assignment``, as ``course release`` does). JupyterLab is started exactly as ``make lab`` and
``make lab-instructor`` start it (``lab/start``), on 127.0.0.1, with Jupyter's user folders redirected to scratch
folders.

* Student mode: the Nbgrader menu offers the assignment list and nothing of the instructor's (no formgrader,
  course list or create-assignment; the formgrader's server extension is off too). A student opens the
  notebook, types the solutions (taken from the source notebook in ``solutions/``) into the solution cells,
  restarts the kernel and runs all cells, presses **Validate** and is told that the notebook passes. Pressing
  Validate on an untouched copy reports the failing tests.
* Instructor mode: the Nbgrader menu has the formgrader, which lists the released assignment.

No page of JupyterLab may fetch anything from another site. Screenshots go to ``_build/screenshots/lab/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

from browser_support import BIN, ROOT, Visit

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ASSIGNMENT = "assignment1"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SOURCE_NOTEBOOK = ROOT / "solutions" / ASSIGNMENT / NOTEBOOK
LAB_START = ROOT / "lab" / "start"
STARTUP_SECONDS = 120
VALIDATE_TIMEOUT_MS = 180_000
INSTRUCTOR_ONLY = ["Formgrader", "Course List", "Create assignment"]

ACTIVE_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


# --------------------------------------------------------------------------------------------------
# JupyterLab servers
# --------------------------------------------------------------------------------------------------
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    def __init__(self, url, token, log):
        self.url, self.token, self.log = url, token, log

    def at(self, path, **query):
        query = {**query, "token": self.token}
        return f"{self.url}{path.lstrip('/')}?" + "&".join(f"{k}={v}" if v != "" else k for k, v in query.items())

    def status(self, path, **query):
        """The HTTP status of a GET request for ``path``."""
        try:
            with urllib.request.urlopen(self.at(path, **query), timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def log_tail(self):
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextmanager
def jupyterlab(mode, root_dir, scratch):
    """Run ``lab/start MODE`` serving ``root_dir`` (also its working directory) until the block ends."""
    scratch.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.pop("JUPYTER_CONFIG_PATH", None)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        # the user's own Jupyter folders play no part
        "JUPYTER_CONFIG_DIR": str(scratch / "config"),
        "JUPYTER_DATA_DIR": str(scratch / "data"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(scratch / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "workspaces"),
        "IPYTHONDIR": str(scratch / "ipython"),
    })
    log = scratch / f"jupyterlab-{mode}.log"
    command = [str(LAB_START), mode, "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root_dir}"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=root_dir, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}/", token, log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while lab_status(lab) != 200:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab ({mode}) exited with {process.returncode}:\n{lab.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab ({mode}) did not answer within {STARTUP_SECONDS} s:\n{lab.log_tail()}")
            time.sleep(0.5)
        yield lab
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its kernels (their own process group)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def lab_status(lab):
    try:
        return lab.status("api/status")
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------
# fixtures: the released assignment, a student's folder, the two servers
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def course(tmp_path_factory, chromium_path):
    """A scratch copy of the course (nbgrader_config.py, solutions/) with the student version of the assignment
    generated into release/ and the assignment in the gradebook: ``nbgrader generate_assignment``, the step that
    ``course release`` runs."""
    course_dir = tmp_path_factory.mktemp("course")
    shutil.copy2(ROOT / "nbgrader_config.py", course_dir)
    shutil.copytree(ROOT / "solutions", course_dir / "solutions")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # nbgrader runs alembic
    result = subprocess.run([str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force"],
                            cwd=course_dir, env=env, capture_output=True, text=True, timeout=300)
    released = course_dir / "release" / ASSIGNMENT / NOTEBOOK
    assert result.returncode == 0 and released.is_file(), \
        f"nbgrader generate_assignment {ASSIGNMENT} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return course_dir


@pytest.fixture(scope="module")
def student_lab(course, tmp_path_factory):
    """JupyterLab in student mode, serving a student's folder with two copies of the released notebook."""
    home = tmp_path_factory.mktemp("student")
    for folder in ("filled", "empty"):
        (home / folder).mkdir()
        shutil.copy2(course / "release" / ASSIGNMENT / NOTEBOOK, home / folder / NOTEBOOK)
    with jupyterlab("student", home, tmp_path_factory.mktemp("student-jupyter")) as lab:
        lab.home = home
        yield lab


@pytest.fixture
def lab_tab(browser, screenshots):
    opened = []

    def open_tab(lab):
        tab = Visit(browser, lab.url, viewport={"width": 1400, "height": 900})
        opened.append(tab)
        return tab

    yield open_tab
    for tab in opened:
        tab.close()


# --------------------------------------------------------------------------------------------------
# what a person does in JupyterLab
# --------------------------------------------------------------------------------------------------
def open_notebook(tab, lab, path):
    page = tab.page
    page.goto(lab.at(f"lab/tree/{path}", reset=""))
    page.locator(f"{ACTIVE_NOTEBOOK} .jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    page.locator(f"{ACTIVE_NOTEBOOK} .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=120_000)
    return page


def nbgrader_menu_items(page):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$")).click()
    menu = page.locator(".lm-Menu").last
    menu.wait_for()
    items = [text.strip() for text in menu.locator(".lm-Menu-itemLabel").all_text_contents() if text.strip()]
    page.keyboard.press("Escape")
    return items


def cell(page, index):
    return page.locator(f"{ACTIVE_NOTEBOOK} .jp-Notebook .jp-Cell[data-windowed-list-index='{index}']")


def type_into_cell(page, index, text, markdown):
    """Replace the content of cell ``index`` by ``text``, as a person does: open its editor, select all, type."""
    target = cell(page, index)
    target.scroll_into_view_if_needed()
    if markdown:
        target.locator(".jp-MarkdownOutput").dblclick()  # a rendered Markdown cell opens its editor
    editor = target.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(text)
    page.keyboard.press("Control+Enter" if markdown else "Escape")  # render the answer / leave the editor


def run_menu_command(page, menu, command):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(command)}")).first.click()


def restart_and_run_all(page):
    run_menu_command(page, "Kernel", "Restart Kernel and Run All Cells")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    dialog.locator("button.jp-mod-accept").click()
    # every code cell has run once the kernel is idle again and no prompt shows [*]
    page.wait_for_function(
        """(panel) => {
            const prompts = [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputArea-prompt')]
                .map(p => p.textContent);
            const idle = document.querySelector(panel + " .jp-Notebook-ExecutionIndicator[data-status='idle']");
            return prompts.length && idle && prompts.every(p => /\\[\\d+\\]/.test(p));
        }""", arg=ACTIVE_NOTEBOOK, timeout=VALIDATE_TIMEOUT_MS)


def press_validate(page):
    page.locator(f"{ACTIVE_NOTEBOOK} .jp-NotebookPanel-toolbar").get_by_text("Validate", exact=True).click()
    dialog = page.locator(".jp-Dialog", has_text=re.compile("Validat"))
    dialog.locator(".jp-Dialog-content").wait_for(timeout=VALIDATE_TIMEOUT_MS)
    page.wait_for_function("() => !/Validating\\.\\.\\./.test(document.body.innerText)", timeout=VALIDATE_TIMEOUT_MS)
    return dialog


def solution_cells():
    """``(index, cell_type, text a student would type)`` for every solution cell of the source notebook."""
    cells = json.loads(SOURCE_NOTEBOOK.read_text())["cells"]
    out = []
    for index, source_cell in enumerate(cells):
        if not (source_cell.get("metadata", {}).get("nbgrader") or {}).get("solution"):
            continue
        text = "".join(source_cell["source"])
        if source_cell["cell_type"] == "code":
            text = re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", "", text, flags=re.M)
        out.append((index, source_cell["cell_type"], text))
    return out


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------
def test_student_mode_offers_student_extensions_only(student_lab, lab_tab, screenshots):
    tab = lab_tab(student_lab)
    page = open_notebook(tab, student_lab, f"empty/{NOTEBOOK}")
    assert page.locator(f"{ACTIVE_NOTEBOOK} .jp-NotebookPanel-toolbar").get_by_text("Validate", exact=True).count() == 1
    items = nbgrader_menu_items(page)
    assert "Assignment List" in items, items
    assert not [item for item in INSTRUCTOR_ONLY if item in items], f"instructor tools in student mode: {items}"
    run_menu_command(page, "Nbgrader", "Assignment List")
    page.locator("#nbgrader-assignment-list").wait_for(timeout=60_000)
    (screenshots / "lab").mkdir(exist_ok=True)
    page.screenshot(path=screenshots / "lab" / "student-assignment-list.png")
    assert student_lab.status("formgrader") == 404, "the formgrader server extension is on in student mode"
    assert student_lab.status("nbgrader_version", version="0") == 200, "the validate server extension is off"
    assert not tab.external, f"JupyterLab fetched from other sites: {tab.external}"


def test_student_fills_the_solutions_runs_all_and_validates(student_lab, lab_tab, screenshots):
    tab = lab_tab(student_lab)
    page = open_notebook(tab, student_lab, f"filled/{NOTEBOOK}")
    solutions = solution_cells()
    assert solutions, f"{SOURCE_NOTEBOOK} has no solution cell"
    for index, cell_type, text in solutions:
        type_into_cell(page, index, text, markdown=cell_type == "markdown")
    restart_and_run_all(page)
    dialog = press_validate(page)  # saves the notebook, then validates it
    (screenshots / "lab").mkdir(exist_ok=True)
    page.screenshot(path=screenshots / "lab" / "validate-passes.png")
    message = dialog.inner_text()
    assert "Success! Your notebook passes all the tests." in message, message
    dialog.locator("button.jp-mod-accept").click()

    saved = json.loads((student_lab.home / "filled" / NOTEBOOK).read_text())
    for index, _, text in solutions:
        assert "".join(saved["cells"][index]["source"]).strip() == text.strip(), f"cell {index} was not typed in"
    code = [c for c in saved["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "not every code cell ran"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"cells failed: {[e.get('ename') for e in errors]}"
    assert not tab.external, f"JupyterLab fetched from other sites: {tab.external}"


def test_validate_reports_failures_when_the_solutions_are_missing(student_lab, lab_tab, screenshots):
    tab = lab_tab(student_lab)
    page = open_notebook(tab, student_lab, f"empty/{NOTEBOOK}")
    dialog = press_validate(page)
    (screenshots / "lab").mkdir(exist_ok=True)
    page.screenshot(path=screenshots / "lab" / "validate-fails.png")
    message = dialog.inner_text()
    assert "Success" not in message, message
    assert "failed" in message.lower() and "NotImplementedError" in message, message
    assert not tab.external, f"JupyterLab fetched from other sites: {tab.external}"


def test_instructor_mode_opens_the_formgrader(course, lab_tab, screenshots, tmp_path_factory):
    with jupyterlab("instructor", course, tmp_path_factory.mktemp("instructor-jupyter")) as lab:
        tab = lab_tab(lab)
        page = tab.page
        page.goto(lab.at("lab", reset=""))
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$")).wait_for(timeout=120_000)
        items = nbgrader_menu_items(page)
        assert {"Assignment List", "Formgrader", "Create assignment"} <= set(items), items
        run_menu_command(page, "Nbgrader", "Formgrader")
        formgrader = page.frame_locator("iframe").first
        formgrader.get_by_text("Manage Assignments").first.wait_for(timeout=120_000)
        row = formgrader.locator("tr", has_text=ASSIGNMENT)
        row.first.wait_for(timeout=60_000)
        (screenshots / "lab").mkdir(exist_ok=True)
        page.screenshot(path=screenshots / "lab" / "instructor-formgrader.png")
        assert lab.status("formgrader") == 200
        assert not tab.external, f"JupyterLab fetched from other sites: {tab.external}"
