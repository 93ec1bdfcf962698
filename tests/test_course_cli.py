"""The instructor CLI ``course`` on bad input: one line per message on stderr, no traceback, a non-zero exit.

Every case runs in a temporary copy of the course folder (nbgrader_config.py and solutions/), released once.
None of them gets as far as running student code, so the whole file takes seconds.
"""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grading.cli import main

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "assignment1"
SCRIPT = Path(sys.executable).parent / "course"


def make_course(folder):
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", folder)
    shutil.copytree(ROOT / "solutions", folder / "solutions")
    return folder


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("cli") / "course")
    assert main(["--course-dir", str(root), "release", ASSIGNMENT]) == 0
    return root


@pytest.fixture(scope="module")
def student_notebook(course):
    """A valid submission: the released notebook as it is."""
    return (course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()


def run(capsys, *args):
    """``(exit status, stdout, stderr lines)`` of ``course ARGS`` run in this process."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:  # argparse
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def assert_clean_failure(code, lines, *expected):
    """A non-zero exit; every message one line starting with `course`; the last one an error."""
    assert code not in (0, None), lines
    assert lines, "no message on stderr"
    assert not any("Traceback" in line or line.startswith(" ") for line in lines), lines
    assert all(line.startswith("course") for line in lines), lines
    assert "error:" in lines[-1], lines
    text = "\n".join(lines)
    for fragment in expected:
        assert fragment in text, (fragment, lines)


def folder_with(tmp_path, files):
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_release_unknown_assignment(course, capsys):
    code, _, lines = run(capsys, "--course-dir", course, "release", "assignment9")
    assert_clean_failure(code, lines, "unknown assignment 'assignment9'", "assignment1")
    assert len(lines) == 1


def test_autograde_unknown_assignment(course, capsys, tmp_path):
    code, _, lines = run(capsys, "--course-dir", course, "autograde", "nope", tmp_path)
    assert_clean_failure(code, lines, "unknown assignment 'nope'")
    assert len(lines) == 1


def test_autograde_before_release(tmp_path, capsys):
    root = make_course(tmp_path / "fresh")
    code, _, lines = run(capsys, "--course-dir", root, "autograde", ASSIGNMENT, tmp_path)
    assert_clean_failure(code, lines, "not released yet", "course release assignment1")
    assert len(lines) == 1


def test_autograde_submissions_missing(course, capsys, tmp_path):
    code, _, lines = run(capsys, "--course-dir", course, "autograde", ASSIGNMENT, tmp_path / "nowhere")
    assert_clean_failure(code, lines, "SUBMISSIONS not found")
    assert len(lines) == 1


def test_autograde_submissions_is_neither_folder_nor_zip(course, capsys, tmp_path):
    path = tmp_path / "alice_assignment1.ipynb.zip"
    path.write_text("this is no zip")
    code, _, lines = run(capsys, "--course-dir", course, "autograde", ASSIGNMENT, path)
    assert_clean_failure(code, lines, "must be a folder or a .zip file")
    assert len(lines) == 1


def test_autograde_zip_with_unsafe_path(course, capsys, tmp_path, student_notebook):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"../alice_{ASSIGNMENT}.ipynb", student_notebook)
    code, _, lines = run(capsys, "--course-dir", course, "autograde", ASSIGNMENT, path)
    assert_clean_failure(code, lines, "unsafe path")
    assert len(lines) == 1


def test_autograde_empty_folder(course, capsys, tmp_path):
    code, _, lines = run(capsys, "--course-dir", course, "autograde", ASSIGNMENT, folder_with(tmp_path, {}))
    assert_clean_failure(code, lines, "nothing to grade")
    assert len(lines) == 1


@pytest.mark.parametrize("name, text, reason", [
    ("notes.txt", "hello", "not a notebook (.ipynb)"),
    ("alice_assignment1.py", "print(1)", "not a notebook (.ipynb)"),
    (f"dave_{ASSIGNMENT}.ipynb", "{ this is not json", "not a valid notebook"),
    (f"erin_{ASSIGNMENT}.ipynb", json.dumps({"cells": "nope"}), "not a valid notebook"),
    (f"{ASSIGNMENT}.ipynb", None, "no student id in the file name"),
    ("frank-assignment1.ipynb", None, "no student id in the file name"),
    ("grace_assignment2.ipynb", None, "'assignment2' is not a notebook of assignment1"),
])
def test_autograde_skips_a_bad_file_with_a_warning(course, capsys, tmp_path, student_notebook, name, text, reason):
    folder = folder_with(tmp_path, {name: student_notebook if text is None else text})
    code, _, lines = run(capsys, "--course-dir", course, "autograde", ASSIGNMENT, folder)
    assert_clean_failure(code, lines, reason)
    assert lines[0].startswith(f"course: warning: skipped {name}: ") and reason in lines[0]
    assert lines[-1].startswith("course: error: nothing to grade")
    assert len(lines) == 2


def test_autograde_duplicate_submissions(course, capsys, tmp_path, student_notebook):
    folder = folder_with(tmp_path, {f"monday/heidi_{ASSIGNMENT}.ipynb": student_notebook,
                                    f"tuesday/heidi_{ASSIGNMENT}.ipynb": student_notebook})
    code, _, lines = run(capsys, "--course-dir", course, "autograde", ASSIGNMENT, folder)
    assert_clean_failure(code, lines, "student 'heidi' submitted assignment1 more than once", "nothing to grade")
    assert len(lines) == 3


def test_hidden_files_and_macos_folders_are_ignored(course, capsys, tmp_path):
    folder = folder_with(tmp_path, {".DS_Store": "x", f"__MACOSX/._ivan_{ASSIGNMENT}.ipynb": "x"})
    code, _, lines = run(capsys, "--course-dir", course, "autograde", ASSIGNMENT, folder)
    assert_clean_failure(code, lines, "nothing to grade")
    assert len(lines) == 1


def test_feedback_before_autograde(course, capsys):
    code, _, lines = run(capsys, "--course-dir", course, "feedback", ASSIGNMENT)
    assert_clean_failure(code, lines, "no autograded submission")
    assert len(lines) == 1


def test_feedback_unknown_assignment(course, capsys):
    code, _, lines = run(capsys, "--course-dir", course, "feedback", "nope")
    assert_clean_failure(code, lines, "unknown assignment 'nope'")


def test_grades_without_gradebook(tmp_path, capsys):
    root = make_course(tmp_path / "fresh")
    code, _, lines = run(capsys, "--course-dir", root, "grades")
    assert_clean_failure(code, lines, "no gradebook yet")
    assert len(lines) == 1


def test_grades_into_a_missing_folder(course, capsys, tmp_path):
    code, _, lines = run(capsys, "--course-dir", course, "grades", "--output", tmp_path / "no" / "grades.csv")
    assert_clean_failure(code, lines)
    assert len(lines) == 1


def test_not_a_course_folder(tmp_path, capsys):
    code, _, lines = run(capsys, "--course-dir", tmp_path, "release", ASSIGNMENT)
    assert_clean_failure(code, lines, "is not a course folder", "nbgrader_config.py")
    assert len(lines) == 1


def test_broken_config(tmp_path, capsys):
    root = make_course(tmp_path / "broken")
    (root / "nbgrader_config.py").write_text("c = get_config(\n")
    code, _, lines = run(capsys, "--course-dir", root, "release", ASSIGNMENT)
    assert_clean_failure(code, lines, "cannot read")
    assert len(lines) == 1


@pytest.mark.parametrize("args", [
    [],
    ["autograde", ASSIGNMENT],
    ["autograde", ASSIGNMENT, "x", "--jobs", "0"],
    ["autograde", ASSIGNMENT, "x", "--memory-mb", "lots"],
    ["frobnicate"],
])
def test_usage_errors(course, capsys, args):
    code, _, lines = run(capsys, "--course-dir", course, *args)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("course") and "error:" in lines[0], lines


# --------------------------------------------------------------------------------------------------
# the console script
# --------------------------------------------------------------------------------------------------
def test_console_script_is_installed():
    assert SCRIPT.exists(), "reinstall the package: pip install -e ."
    result = subprocess.run([str(SCRIPT), "autograde", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "<student_id>_<notebook>.ipynb" in result.stdout and "--jobs" in result.stdout


def test_console_script_reports_errors_in_one_line(tmp_path):
    result = subprocess.run([str(SCRIPT), "release", ASSIGNMENT], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("course: error:")
    assert "Traceback" not in result.stderr


def test_release_prints_where_the_student_version_is(tmp_path, capsys):
    root = make_course(tmp_path / "course")
    code, out, lines = run(capsys, "--course-dir", root, "release", ASSIGNMENT)
    assert code == 0 and not lines
    assert "release/assignment1" in out
    assert (root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    assert (root / "gradebook.db").is_file()


def test_release_refuses_checks_whose_reference_students_could_import(tmp_path, capsys):
    """A source notebook that compares with a module it does not hide from the seals is an instructor's error."""
    root = make_course(tmp_path / "course")
    path = root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = json.loads(path.read_text())
    del nb["metadata"]["grading"]
    path.write_text(json.dumps(nb))
    code, _, lines = run(capsys, "--course-dir", root, "release", ASSIGNMENT)
    assert_clean_failure(code, lines, "compare with poisoning.mean_estimation, which students could import",
                         "grading.hidden_modules")


def test_release_refuses_a_test_cell_that_calls_student_code(tmp_path, capsys):
    root = make_course(tmp_path / "course")
    path = root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "test_part_c_visible":
            cell["source"] = "assert trimmed_mean([1.0]) == 1.0\n" + "".join(cell["source"])
    path.write_text(json.dumps(nb))
    code, _, lines = run(capsys, "--course-dir", root, "release", ASSIGNMENT)
    assert_clean_failure(code, lines, "a test cell calls `trimmed_mean` directly")


def test_similarity_before_autograde(tmp_path, capsys):
    root = make_course(tmp_path / "course")
    assert main(["--course-dir", str(root), "release", ASSIGNMENT]) == 0
    code, _, lines = run(capsys, "--course-dir", root, "similarity", ASSIGNMENT)
    assert_clean_failure(code, lines, "no collected submission of 'assignment1'")
