"""Helpers shared by the grading tests of the assignments (``test_grading_pipeline.py``, ``test_assignment*.py``).

Notebooks are handled as plain JSON (what nbgrader reads and writes); a course is a temporary copy of the course
folder (``nbgrader_config.py`` and ``solutions/``), never the working tree's ``release/``, ``submitted/`` ...
"""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import subprocess
import time
import zipfile
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "course"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "grading"]
COURSE_ID = "data-poisoning"

SECRET_BEGIN = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")
SECRET_END = ("### END SOLUTION", "### END HIDDEN TESTS")


# --------------------------------------------------------------------------------------------------
# notebooks as JSON
# --------------------------------------------------------------------------------------------------
def read_nb(path):
    return json.loads(Path(path).read_text())


def source_of(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def cell_by_id(nb, grade_id):
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(grade_id)


def without_markers(text):
    return "\n".join(line for line in text.split("\n") if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


def solution_code(source, solution_cells):
    """The solution of each solution cell of the notebook ``source``, as a student would type it (no markers)."""
    nb = read_nb(source)
    return {gid: without_markers(source_of(cell_by_id(nb, gid))) for gid in solution_cells}


def edited(code, old, new):
    """``code`` with ``old`` replaced by ``new``; ``old`` must occur exactly once."""
    assert code.count(old) == 1, (old, code.count(old))
    return code.replace(old, new)


def with_cells(released_nb, replacements):
    """A submission: the released notebook with the source of some cells replaced, as JSON text."""
    nb = copy.deepcopy(released_nb)
    for gid, code in replacements.items():
        cell_by_id(nb, gid)["source"] = code
    return json.dumps(nb, indent=1)


def secret_lines(source_nb):
    """The stripped lines that occur only inside solution or hidden-test regions of the source notebook
    (or in solution cells without markers, such as the model answers of written questions)."""
    secret, public = set(), set()
    for cell in source_nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        region = None
        lines = source_of(cell).split("\n")
        whole_cell_solution = meta.get("solution") and not any("BEGIN SOLUTION" in line for line in lines)
        for line in lines:
            if any(marker in line for marker in SECRET_BEGIN):
                region = "secret"
                continue
            if any(marker in line for marker in SECRET_END):
                region = None
                continue
            target = secret if (region or whole_cell_solution) else public
            if line.strip():
                target.add(line.strip())
    return secret - public


# --------------------------------------------------------------------------------------------------
# the course folder and the `course` command
# --------------------------------------------------------------------------------------------------
def make_course(tmp):
    """A course folder ``<tmp>/course`` with the configuration and every source notebook."""
    root = Path(tmp) / "course"
    root.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions", root / "solutions")
    return root


def run_cli(*args, cwd, timeout=900):
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def summary_rows(stdout):
    """``{student: (score, max, seconds or None, status)}`` from the table that `course autograde` prints (the
    first failed check, its last column, is in :func:`summary_problems`)."""
    return {student: row[:4] for student, row in _summary(stdout).items()}


def summary_problems(stdout):
    """``{student: first failed check}`` from the table that `course autograde` prints."""
    return {student: row[4] for student, row in _summary(stdout).items()}


def _summary(stdout):
    lines = stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("student") and "status" in line), None)
    if header is None:
        return {}
    status_at, problem_at = lines[header].index("status"), lines[header].index("first problem")
    rows = {}
    for line in lines[header + 2:]:
        if not line.strip():
            break
        match = re.match(r"^(\S+)\s+(\d+(?:\.\d+)?)\s+(\d+)\s+(\d+s|-)\s", line)
        if match:
            seconds = None if match[4] == "-" else float(match[4][:-1])
            rows[match[1]] = (float(match[2]), int(match[3]), seconds, line[status_at:problem_at].strip(),
                              line[problem_at:].strip())
    return rows


def gradebook_scores(root, assignment, student, notebook=None):
    """``(code score, {grade id: auto score})`` of one student, from the course's gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root}/gradebook.db", COURSE_ID) as gb:
        submission = gb.find_submission(assignment, student)
        submitted = gb.find_submission_notebook(notebook or assignment, assignment, student)
        cells = {grade.name: grade.auto_score for grade in submitted.grades}
        return float(submission.code_score), cells


# --------------------------------------------------------------------------------------------------
# the steps every assignment's pipeline test takes
# --------------------------------------------------------------------------------------------------
def released_course(tmp, assignment):
    """A course folder in ``tmp`` in which ``course release <assignment>`` succeeded."""
    root = make_course(tmp)
    result = run_cli("release", assignment, cwd=root)
    assert result.returncode == 0, result.stderr
    assert f"release/{assignment}" in result.stdout
    return root


def autograde_zip(root, assignment, files, *args):
    """Zip ``files`` (``{name in the archive: text}``) beside the course and autograde them in one ``course``
    call. Returns ``(root, result, seconds)``."""
    archive = Path(root).parent / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    start = time.monotonic()
    result = run_cli("autograde", assignment, str(archive), *args, cwd=root)
    return root, result, time.monotonic() - start


def check_student_version(source, student_nb, solution_cells, written_cells, function_names, min_secret_lines):
    """Assert that the released ``student_nb`` leaks nothing of the ``source`` notebook (solutions, hidden tests,
    model answers) and holds one ``raise NotImplementedError()`` stub per function. Returns its text."""
    text = "\n".join(source_of(cell) for cell in student_nb["cells"])
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    code = "\n".join(source_of(cell_by_id(student_nb, gid)) for gid in solution_cells)
    assert code.count("# YOUR CODE HERE\n    raise NotImplementedError()") == len(function_names)
    for name in function_names:
        assert f"def {name}(" in code
    assert all(source_of(cell_by_id(student_nb, gid)) == "YOUR ANSWER HERE" for gid in written_cells)
    # every line that only occurs inside solution or hidden-test regions of the source is gone
    secret = secret_lines(source)
    assert len(secret) > min_secret_lines
    leaked = sorted(secret & {line.strip() for line in text.split("\n")})
    assert not leaked, f"solution or hidden-test lines in the student version: {leaked}"
    assert not any(cell.get("outputs") for cell in student_nb["cells"] if cell["cell_type"] == "code")
    return text


def validate_source_and_release(root, assignment):
    """What a student sees on Validate, read from nbgrader's API (``nbgrader validate`` exits 0 anyway): the
    source notebook's result, and the failed code cells and failed written answers of the student version."""
    from nbgrader.validator import Validator

    validator = Validator()
    source_result = validator.validate(str(Path(root) / "solutions" / assignment / f"{assignment}.ipynb"))
    failed = validator.validate(str(Path(root) / "release" / assignment / f"{assignment}.ipynb"))["failed"]
    code = [cell for cell in failed if cell["source"] != "YOUR ANSWER HERE"]
    return source_result, code, len(failed) - len(code)


# --------------------------------------------------------------------------------------------------
# the checks the grader records from a source notebook
# --------------------------------------------------------------------------------------------------
def seal_records(plan, functions):
    """The records a seal would hand back for the student's ``functions`` (``{name: function}``), as JSON."""
    from grading.checks import run_student
    from grading.wire import encode

    records = []
    for gid, groups in plan.cells.items():
        for g, group in enumerate(groups):
            for k, (args, kwargs) in enumerate(group.calls):
                record = {"cell": gid, "group": g, "call": k}
                outcome = run_student(functions[group.function], args, kwargs)
                if outcome[0] == "value":
                    record["value"] = encode(outcome[1])
                else:
                    record.update(raised=outcome[1], message=outcome[2], bases=outcome[3])
                records.append(json.loads(json.dumps(record)))  # what comes out of a seal is JSON
    return records


def check_plan_inputs(plan, test_cells):
    """Every test cell has inputs, and they are ``(args, kwargs)`` with nothing expected among them."""
    inputs = plan.inputs()
    assert set(inputs) == set(test_cells)
    assert all(isinstance(args, tuple) and isinstance(kwargs, dict)
               for groups in inputs.values() for group in groups for args, kwargs in group)


# --------------------------------------------------------------------------------------------------
# the source notebook's cells as code
# --------------------------------------------------------------------------------------------------
def imports_of(tree):
    """``[(module, node)]`` of every import in the syntax tree ``tree``."""
    import ast

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node))
    return found


def top_level_names(tree):
    """The names a cell binds at its top level (what would shadow a student's function)."""
    import ast

    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        else:
            names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return names


# --------------------------------------------------------------------------------------------------
# the source notebook
# --------------------------------------------------------------------------------------------------
def _is_hidden(module, hidden_modules):
    return any(module == hidden or module.startswith(hidden + ".") for hidden in hidden_modules)


def check_source_notebook(source, hidden_modules, test_cells, written_cells, student_functions, outcome_cells=(),
                          hidden_cells_contain=()):
    """Assert that ``source`` is a valid nbgrader source notebook of the course's kind.

    Its metadata names the ``hidden_modules``; it stores no outputs; the graded cells and their points are exactly
    ``test_cells`` and ``written_cells``; a hidden test cell (``*_hidden``) builds its inputs in ``def cases_...``
    functions for ``check_cases`` unless it is one of the ``outcome_cells`` (a judge measures the outcome); a visible
    one uses ``check`` only; every hidden one contains each of ``hidden_cells_contain`` (e.g. ``"judge="``); no
    test cell shadows a ``student_functions`` name; a hidden module is imported only inside a function of a hidden
    test (which runs in the grader), or in an ungraded demo cell that survives its absence (``except ImportError``),
    never by a solution cell.
    """
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator

    nb = nbformat.read(source, as_version=4)
    nbformat.validate(nb)
    MetadataValidator().validate_nb(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.metadata.grading == {"hidden_modules": list(hidden_modules)}
    assert not any(cell.get("outputs") or cell.get("execution_count") for cell in nb.cells
                   if cell.cell_type == "code")
    points, ids = {}, []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if "grade_id" in meta:
            ids.append(meta["grade_id"])
        if meta.get("grade"):
            points[meta["grade_id"]] = meta["points"]
        if meta.get("solution") and cell.cell_type == "code":
            assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") >= 1
            assert not any(_is_hidden(module, hidden_modules) for module, _ in imports_of(ast.parse(cell.source)))
        if cell.cell_type != "code" or meta.get("solution"):
            continue
        tree = ast.parse(cell.source)
        if meta.get("grade"):
            assert meta["locked"] and not meta["solution"]
            hidden = "### BEGIN HIDDEN TESTS" in cell.source
            assert hidden == meta["grade_id"].endswith("_hidden")
            if hidden and meta["grade_id"] not in outcome_cells:
                assert "check_cases(" in cell.source and "def cases_" in cell.source
            if hidden:
                assert all(text in cell.source for text in hidden_cells_contain), meta["grade_id"]
            if not hidden:
                assert "check(" in cell.source and "check_cases(" not in cell.source
            assert not top_level_names(tree) & set(student_functions), meta["grade_id"]
        if meta:  # set-up and test cells run in the seal, where the hidden modules are not importable: only inside a
            # function (a case builder, a reference, a judge), which runs in the grader
            top = {id(node) for node in tree.body}
            for module, node in imports_of(tree):
                if _is_hidden(module, hidden_modules):
                    assert id(node) not in top, (meta.get("grade_id"), module)
                    assert "### BEGIN HIDDEN TESTS" in cell.source, (meta.get("grade_id"), module)
        elif any(module in cell.source for module in hidden_modules):
            # an ungraded demo that uses a reference module: its import fails gracefully when graded
            handlers = [node for node in ast.walk(tree) if isinstance(node, ast.Try)]
            assert any(any(_is_hidden(module, hidden_modules) for module, _ in imports_of(ast.Module(node.body, [])))
                       and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers)
                       for node in handlers)
    assert len(ids) == len(set(ids))
    assert points == {**test_cells, **written_cells}
    for gid in written_cells:
        cell = cell_by_id(read_nb(source), gid)
        assert cell["cell_type"] == "markdown" and cell["metadata"]["nbgrader"]["solution"]


# --------------------------------------------------------------------------------------------------
# the checks every assignment's pipeline test makes
# --------------------------------------------------------------------------------------------------
def check_release(root, assignment, source, solution_cells, written_cells, function_names, hidden_modules,
                  fragments, min_secret_lines):
    """The student version released into ``root`` leaks nothing of ``source`` (see :func:`check_student_version`)
    and none of the ``fragments`` (references, hidden inputs, thresholds, model answers); its hidden-test cells are
    still there, with their first comment only; its metadata names the ``hidden_modules``. Returns its text."""
    student_nb = read_nb(Path(root) / "release" / assignment / f"{assignment}.ipynb")
    text = check_student_version(read_nb(source), student_nb, solution_cells, written_cells, function_names,
                                 min_secret_lines)
    for fragment in fragments:
        assert fragment not in text, fragment
    hidden = [cell for cell in student_nb["cells"]
              if cell["metadata"].get("nbgrader", {}).get("grade_id", "").endswith("_hidden")]
    assert hidden and all(source_of(cell).strip().count("\n") == 0 for cell in hidden)
    assert student_nb["metadata"]["grading"] == {"hidden_modules": list(hidden_modules)}
    return text


def check_validate(root, assignment, n_visible, n_written):
    """What Validate says: nothing for the instructor's notebook; for the student version, the ``n_visible`` visible
    test cells fail with ``NotImplementedError`` and the ``n_written`` written answers are missing."""
    source_result, failed_code, failed_written = validate_source_and_release(root, assignment)
    assert source_result == {}
    assert len(failed_code) == n_visible  # the hidden tests are not in the student version
    assert all("NotImplementedError" in cell["raw_error"] for cell in failed_code)
    assert failed_written == n_written


def check_batch_scores(batch, assignment, failed_cells, test_cells):
    """Every student of the autograded ``batch`` (``(root, result, seconds)``) has exactly the points of the test
    cells not in its ``failed_cells`` entry, cell by cell, in the gradebook."""
    root, result, seconds = batch
    print(f"autograde of {len(failed_cells)} students: {seconds:.0f} s\n{result.stdout}")
    assert result.returncode == 0, result.stdout + result.stderr
    for student, failed in failed_cells.items():
        score, cells = gradebook_scores(root, assignment, student)
        expected = {gid: 0 if gid in failed else points for gid, points in test_cells.items()}
        assert score == sum(expected.values()), f"{student}: {score} != {sum(expected.values())}\n{result.stdout}"
        assert {gid: cells[gid] for gid in test_cells} == expected, student


def cell_outputs(root, assignment, student, gid):
    """The text of the outputs of one cell of a student's autograded notebook."""
    nb = read_nb(Path(root) / "autograded" / student / assignment / f"{assignment}.ipynb")
    return "".join(source_of({"source": o.get("text", "")}) + o.get("evalue", "") + "".join(o.get("traceback", []))
                   for o in cell_by_id(nb, gid).get("outputs", []))


# --------------------------------------------------------------------------------------------------
# a run of `course autograde` in the background, its state file and `course status`
# --------------------------------------------------------------------------------------------------
def start_cli(*args, cwd):
    """``course ARGS`` started in the background (a ``subprocess.Popen`` with its output captured)."""
    return subprocess.Popen([*CLI, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(condition, what, timeout=300, process=None):
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds, or when ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the command ended before {what}:\n{out[-3000:]}\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def grading_state(root, assignment):
    """``{student: entry}`` of the course's state file of ``assignment`` (empty when there is none)."""
    path = Path(root) / ".grading" / "state" / f"{assignment}.json"
    try:
        return json.loads(path.read_text())["students"]
    except FileNotFoundError:
        return {}


def finished_students(root, assignment):
    """The students whose grading step finished (graded or failed), from the state file."""
    return {s for s, entry in grading_state(root, assignment).items() if entry["state"] in ("graded", "failed")}


def write_submissions(folder, files):
    """A folder of submissions: ``files`` is ``{file name: text}``. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def skipped_students(stdout):
    """The students that `course autograde` skipped (graded before from the same submission)."""
    return {line.split()[2].rstrip(":") for line in stdout.splitlines() if line.startswith("course: skipped ")}


def status_table(stdout):
    """``{student: (state, score or None, max or None, detail)}`` from what `course status` prints."""
    lines = stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("student") and "state" in line), None)
    rows = {}
    if header is None:
        return rows
    for line in lines[header + 2:]:
        match = re.match(r"^(\S+)\s+(graded|pending|failed)\s+(\S+)\s+(\S+)\s*(.*)$", line)
        if not match:
            break
        number = lambda text: None if text == "-" else float(text)  # noqa: E731
        rows[match[1]] = (match[2], number(match[3]), number(match[4]), match[5].strip())
    return rows
