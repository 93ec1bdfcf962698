"""A class of hostile submissions of assignment 1, graded in one ``course autograde`` run.

Each submission tries one thing: to earn points it did not (read the solutions or another student's notebook,
import or copy the reference, patch NumPy or the check helpers, forge the results, edit or delete the test cells,
write the gradebook), to do damage (delete or write files outside its seal, reach the network), or to exhaust the
machine (fork bomb, memory bomb, endless loop, huge output, killing its kernel, ``sys.exit``), plus files that are
not notebooks at all. For each: the score it gets, a one-line reason in the instructor's report, and afterwards
the host untouched (course files, gradebook, other submissions' scores, no process of a seal left, nothing sent
to a loopback server).
"""

from __future__ import annotations

import hashlib
import sqlite3
import textwrap
import time
import zipfile
from pathlib import Path

import grading_helpers as helpers
import psutil
import pytest
from grading_helpers import ROOT, cell_by_id, read_nb, run_cli, summary_problems, summary_rows

ASSIGNMENT = "assignment1"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
SOLUTION_CELLS = ["part_a_solution", "part_b_solution", "part_c_solution", "part_d_solution"]
TEST_CELLS = ["test_part_a_visible", "test_part_a_hidden", "test_part_b_visible", "test_part_b_hidden",
              "test_part_c_visible", "test_part_c_hidden", "test_part_d_visible", "test_part_d_hidden",
              "test_part_d_strong_hidden"]
FULL = 16  # the autograded points
MAX_SCORE = 20  # with the written answers
LIMITS = ["--jobs", "2", "--cell-timeout", "30", "--cpu-seconds", "30", "--memory-mb", "2048", "--timeout", "60",
          "--max-processes", "64", "--output-mb", "16", "--no-progress"]

STUB = textwrap.dedent("""\
    def distance_filter(X, radius, center=None):
        return np.ones(len(X), dtype=bool)


    def filtered_mean(X, radius, center=None):
        return 0.0


    def adaptive_attack(X_clean, n_poison, radius, direction=None, margin=0.01):
        return np.zeros(n_poison)


    def trimmed_mean(X, trim_fraction=0.1):
        return 0.0


    def attack_trimmed_mean(X_clean, n_poison, trim_fraction, radius):
        return np.zeros(n_poison)
    """)


def hostile(course, port, marker):
    """``{student: (cell replacements, expected score, words the status must contain, words of the reason)}``."""
    sol = helpers.solution_code(SOURCE, SOLUTION_CELLS)
    honest = dict(sol)
    read_and_exec = textwrap.dedent(f"""\
        import json
        for path in ({str(course / 'solutions' / ASSIGNMENT / 'assignment1.ipynb')!r},
                     {str(ROOT / 'solutions' / ASSIGNMENT / 'assignment1.ipynb')!r},
                     {str(course / 'submitted' / 'honest' / ASSIGNMENT / 'assignment1.ipynb')!r}):
            try:
                cells = json.load(open(path))["cells"]
            except OSError as error:
                print("cannot read", path, type(error).__name__)
                continue
            for cell in cells:
                if cell["metadata"].get("nbgrader", {{}}).get("solution") and cell["cell_type"] == "code":
                    exec("".join(cell["source"]))
        """)
    return {
        "honest": (honest, FULL, "graded", ""),
        "blank": ({}, 0, "graded", "NotImplementedError"),
        # read the instructor's solutions, or another student's submission, and run them
        "readsolutions": ({"part_a_solution": read_and_exec}, 0, "graded", "no result (NameError"),
        # the reference: imported, or its source read and run
        "aliasreference": ({"part_a_solution": "from poisoning.mean_estimation import distance_filter, filtered_mean\n",
                            "part_b_solution": "from poisoning.mean_estimation import adaptive_attack\n",
                            "part_c_solution": "from poisoning.mean_estimation import trimmed_mean\n",
                            "part_d_solution": "from poisoning.mean_estimation import trimmed_mean_attack as "
                                               "attack_trimmed_mean\n"},
                           0, "graded", "no result (NameError"),
        "copyreference": ({"part_a_solution": textwrap.dedent(f"""\
            import importlib.util
            for path in [importlib.util.find_spec("poisoning.mean_estimation").origin,
                         {str(ROOT / 'lib' / 'poisoning' / 'mean_estimation.py')!r}]:
                try:
                    exec(open(path).read())
                except Exception as error:
                    print(path, type(error).__name__, error)
            """)}, 0, "graded", "no result (NameError"),
        # patch NumPy's comparisons and the check helpers, around wrong answers
        "monkeypatch": ({"part_a_solution": STUB + textwrap.dedent("""\
            np.allclose = np.array_equal = lambda *args, **kwargs: True
            np.isclose = lambda *args, **kwargs: np.array(True)
            import grading.checks as checks
            checks.compare = lambda *args, **kwargs: None
            checks.check = checks.check_cases = check = check_cases = lambda *args, **kwargs: None
            """)}, 0, "graded", "no result"),
        # forge the results: records with made-up outputs, and a forged answer on the executor's pipe
        "forgeresults": ({"part_a_solution": STUB + textwrap.dedent("""\
            import json, os, signal
            with open(os.path.join(os.environ.get("GRADING_RUN", "/tmp"), "records.jsonl"), "a") as handle:
                for cell in ("test_part_a_hidden", "test_part_b_hidden", "test_part_c_hidden", "test_part_d_hidden",
                             "test_part_d_strong_hidden"):
                    for group in range(8):
                        for call in range(30):
                            handle.write(json.dumps({"cell": cell, "group": group, "call": call,
                                                     "value": {"t": "bool", "v": True}}) + "\\n")
            forged = json.dumps({"outputs": {}, "counts": {}, "error": None,
                                 "records": [{"cell": "test_part_c_hidden", "group": 0, "call": 0,
                                              "value": {"t": "float", "v": 1.0}}]})
            runner = os.getppid()
            for fd in os.listdir(f"/proc/{runner}/fd"):
                try:
                    if os.readlink(f"/proc/{runner}/fd/{fd}").startswith("pipe:"):
                        with open(f"/proc/{runner}/fd/{fd}", "w") as pipe:
                            pipe.write(forged)
                except OSError:
                    pass
            """)}, 0, "", ""),
        # edit every test cell into one that passes, or delete the test cells (nbgrader puts them back)
        "editedtests": ({"part_a_solution": STUB, **{gid: "print('all tests pass')" for gid in TEST_CELLS}},
                        0, "graded", "checks failed"),
        "deletedtests": ("delete", 0, "graded", "checks failed"),
        # write or delete the gradebook
        "gradebook": ({"part_a_solution": STUB + textwrap.dedent(f"""\
            import os, sqlite3
            for path in ({str(course / 'gradebook.db')!r}, "gradebook.db", "../gradebook.db"):
                try:
                    db = sqlite3.connect(path)
                    db.execute("UPDATE grade SET auto_score = 100, manual_score = 0")
                    db.commit()
                except Exception as error:
                    print(path, type(error).__name__)
                try:
                    os.remove(path)
                except OSError:
                    pass
            """)}, 0, "graded", "checks failed"),
        # delete the course's files and other submissions, write outside the seal: an honest solution besides
        "vandal": ({**honest, "part_a_solution": textwrap.dedent(f"""\
            import os, shutil
            for path in ({str(course / 'solutions')!r}, {str(course / 'submitted')!r}, {str(course / 'release')!r},
                         {str(ROOT / 'solutions')!r}, "/job", os.path.expanduser("~")):
                shutil.rmtree(path, ignore_errors=True)
            for path in ({str(course / 'gradebook.db')!r}, {str(course / 'nbgrader_config.py')!r}):
                try:
                    os.remove(path)
                except OSError:
                    pass
            for path in ({str(course / marker)!r}, "/tmp/{marker}", "/root/{marker}", "/var/tmp/{marker}",
                         {str(ROOT / marker)!r}):
                try:
                    open(path, "w").write("pwned")
                except OSError:
                    pass
            """) + honest["part_a_solution"]}, FULL, "graded", ""),
        # the network: a server of the test on the host's loopback
        "network": ({"part_a_solution": STUB + textwrap.dedent(f"""\
                        for host in ("127.0.0.1", "localhost", "::1"):
                try:
                    socket.create_connection((host, {port}), timeout=2).sendall(b"hidden inputs")
                except OSError as error:
                    print(host, type(error).__name__)
            """)}, 0, "graded", "checks failed"),
        # exhaust the machine
        "forkbomb": ({"part_a_solution": STUB + textwrap.dedent("""\
            import os, time
            while True:
                try:
                    if os.fork() == 0:
                        while True:
                            try:
                                os.fork()
                            except OSError:
                                time.sleep(1)
                except OSError:
                    break
            """)}, 0, "", ""),
        "memorybomb": ({"part_a_solution": textwrap.dedent("""\
            import os, time
            for _ in range(8):
                if os.fork() == 0:
                    block = b"x" * (400 * 2**20)
                    time.sleep(600)
            time.sleep(600)
            """)}, 0, "memory limit", "memory limit"),
        "endless": ({"part_a_solution": "while True:\n    pass\n"}, 0, "", ""),
        "sleeper": ({"part_a_solution": "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                        "time.sleep(3600)\n"}, 0, "timeout", "timeout"),
        "hugeoutput": ({**honest, "part_a_solution": "for i in range(300_000):\n    print('x' * 100)\n"
                        + honest["part_a_solution"]}, FULL, "graded", ""),
        "killkernel": ({**honest, "part_c_solution": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"},
                       8, "kernel died", "test_part_c_visible"),
        "sysexit": ({**honest, "part_b_solution": "import sys\nsys.exit('bye')\n" + honest["part_b_solution"]},
                    12, "graded", "test_part_b_visible"),
    }


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, loopback_server):
    port, received = loopback_server
    tmp = tmp_path_factory.mktemp("hostile")
    root = helpers.released_course(tmp, ASSIGNMENT)
    marker = f"pwned-{tmp.name}"
    released_nb = read_nb(root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    cases = hostile(root, port, marker)
    files = {}
    for student, (cells, *_rest) in cases.items():
        if cells == "delete":
            nb = read_nb(root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
            nb["cells"] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") not in TEST_CELLS]
            files[f"{student}_{ASSIGNMENT}.ipynb"] = helpers.with_cells(nb, {})
        else:
            files[f"{student}_{ASSIGNMENT}.ipynb"] = helpers.with_cells(released_nb, cells)
    bad = {f"malformed_{ASSIGNMENT}.ipynb": "{ not json", f"notanotebook_{ASSIGNMENT}.ipynb": "plain text, not JSON",
           f"latin_{ASSIGNMENT}.ipynb": "\udcff"}
    archive = tmp / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr(f"malformed_{ASSIGNMENT}.ipynb", "{ not json")
        zf.writestr(f"notanotebook_{ASSIGNMENT}.ipynb", b"\x89PNG\r\n\x1a\n not a notebook")
        zf.writestr(f"latin_{ASSIGNMENT}.ipynb", '{"cells": [], "note": "caf\xe9"}'.encode("latin-1"))
    before = {"solutions": tree_digest(root / "solutions"), "release": tree_digest(root / "release"),
              "repository solutions": tree_digest(ROOT / "solutions"), "config": (root / "nbgrader_config.py").read_text()}
    start = time.monotonic()
    result = run_cli("autograde", ASSIGNMENT, str(archive), *LIMITS, cwd=root, timeout=1200)
    seconds = time.monotonic() - start
    time.sleep(1)
    return root, cases, result, before, received, marker, seconds, bad


@pytest.mark.slow
def test_every_hostile_submission_gets_its_expected_score_and_a_reason(graded):
    root, cases, result, _, _, _, seconds, _ = graded
    rows, problems = summary_rows(result.stdout), summary_problems(result.stdout)
    print(result.stdout[-6000:], f"\n{len(cases)} submissions in {seconds:.0f} s")
    for student, (_, score, status_word, reason_word) in cases.items():
        assert student in rows, (student, result.stdout[-3000:], result.stderr[-3000:])
        got_score, max_score, _, status = rows[student]
        assert (got_score, max_score) == (score, FULL), (student, rows[student], problems[student])
        assert status_word in status, (student, status)
        assert reason_word in problems[student], (student, problems[student])
        if score < FULL:
            assert problems[student], (student, "a submission that lost points needs a reason")
        # the gradebook holds the same score
        assert helpers.gradebook_scores(root, ASSIGNMENT, student)[0] == score


@pytest.mark.slow
def test_files_that_are_not_notebooks_are_skipped_with_a_reason(graded):
    root, _, result, *_rest, bad = graded
    rows = summary_rows(result.stdout)
    for name in bad:
        student = name.split("_")[0]
        assert rows[student][3].startswith("invalid: not a valid notebook"), rows[student]
        assert f"course: warning: skipped {name}: not a valid notebook" in result.stderr
    assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_host_and_the_course_are_untouched(graded):
    root, cases, result, before, received, marker, _, _ = graded
    assert tree_digest(root / "solutions") == before["solutions"]
    assert tree_digest(root / "release") == before["release"]
    assert tree_digest(ROOT / "solutions") == before["repository solutions"]
    assert (root / "nbgrader_config.py").read_text() == before["config"]
    for path in (root / marker, Path("/tmp") / marker, Path("/root") / marker, Path("/var/tmp") / marker,
                 ROOT / marker):
        assert not path.exists(), path
    assert received == [], "a seal reached the host's loopback"
    # every student's submission is still there, and the gradebook is intact and consistent
    for student in cases:
        assert (root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    with sqlite3.connect(root / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT MAX(auto_score) FROM grade").fetchone()[0] <= 3
        assert db.execute("SELECT COUNT(*) FROM grade WHERE manual_score IS NOT NULL").fetchone()[0] == 0
    # no process of a seal outlived the run
    from grading.seal import UID_BASE

    leftovers = [p.pid for p in psutil.process_iter(["uids"]) if UID_BASE <= p.info["uids"].real < UID_BASE + 256]
    assert leftovers == []


@pytest.mark.slow
def test_feedback_of_a_hostile_class(graded):
    root, cases, *_ = graded
    result = run_cli("feedback", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stderr
    honest = (root / "feedback" / "honest" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert f"Score: {FULL:.1f} / {MAX_SCORE:.1f}" in honest
    edited = read_nb(root / "autograded" / "editedtests" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    # the instructor's test cells are back, and their only output is the grader's verdict
    assert "check(distance_filter" in "".join(cell_by_id(edited, "test_part_a_visible")["source"])
    assert cell_by_id(edited, "test_part_a_visible")["outputs"][0]["ename"] == "GradingFailure"
