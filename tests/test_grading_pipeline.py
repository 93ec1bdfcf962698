"""Assignment 1 end to end through the real nbgrader: release, autograde, feedback, grades.

Everything runs in a temporary copy of the course folder (nbgrader_config.py and solutions/), never in the
working tree's release/, submitted/ ... One ``course autograde`` call grades a batch of submissions built from
the released notebook: the solution, the untouched student version, plausible but wrong answers (each with its
exact partial score), answers that alias or call the reference implementation, and submissions that crash,
loop, sleep or allocate too much, which the sandbox stops while the others are graded.

The fast tests at the end check the notebook's nbgrader metadata, the test-cell helpers and the sandbox.
"""

import csv
import json
import shutil
import sys
import textwrap
import time
import types

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, edited, read_nb, run_cli, source_of, summary_rows

ASSIGNMENT = "assignment1"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

SOLUTION_CELLS = ["part_a_solution", "part_b_solution", "part_c_solution"]
TEST_CELLS = {  # grade id -> points
    "test_part_a_visible": 1, "test_part_a_hidden": 3,
    "test_part_b_visible": 1, "test_part_b_hidden": 3,
    "test_part_c_visible": 1, "test_part_c_hidden": 2,
}
PART_OF = {gid: gid.split("_")[2] for gid in TEST_CELLS}  # "a", "b", "c"
WRITTEN_CELLS = {"answer_d1": 2, "answer_d2": 2}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 11

# the sandbox limits of the batch: a normal student needs a few CPU seconds and well under 1 GB. The cell timeout
# (nbgrader's own, which interrupts the kernel) is longer than the others, so that the sandbox's limits act.
LIMITS = ["--jobs", "3", "--cell-timeout", "120", "--cpu-seconds", "20", "--memory-mb", "2048", "--timeout", "60"]


# --------------------------------------------------------------------------------------------------
# helpers (the shared ones are in grading_helpers.py)
# --------------------------------------------------------------------------------------------------
def solution_code():
    """The solution of each solution cell, as a student would type it (no markers)."""
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


def submissions(released_nb):
    """``{student: notebook JSON text}`` for the batch, built from the released notebook."""
    sol = solution_code()

    def student(replacements):
        return helpers.with_cells(released_nb, replacements)

    a, b, c = (sol[g] for g in SOLUTION_CELLS)
    return {
        "solution": student(sol),
        "blank": student({}),
        # plausible but wrong: the filter centred on the mean, which the far points drag away
        "wrongcenter": student({**sol, "part_a_solution": edited(a, "np.median(points, axis=0)",
                                                                  "points.mean(axis=0)")}),
        # an attack that ignores the filter and puts the poisons far away
        "farattack": student({**sol, "part_b_solution": edited(b, "(1.0 - margin) * radius * u",
                                                                "10 * radius * u")}),
        # a trimmed mean that trims the top only
        "onesided": student({**sol, "part_c_solution": edited(c, "[k : n - k]", "[: n - k]")}),
        # a trimmed mean for 1-D data only: passes the visible tests, fails the hidden 2-D ones
        "onedonly": student({**sol, "part_c_solution": textwrap.dedent("""\
            def trimmed_mean(X, trim_fraction=0.1):
                values = np.sort(np.asarray(X, dtype=float).ravel())
                k = int(trim_fraction * len(values))
                return float(values[k : len(values) - k].mean())
            """)}),
        # the reference, aliased or called
        "alias": student({
            "part_a_solution": "from poisoning.mean_estimation import distance_filter, filtered_mean\n",
            "part_b_solution": textwrap.dedent("""\
                import poisoning.mean_estimation as me

                def adaptive_attack(X_clean, n_poison, radius, direction=None, margin=0.01):
                    return me.adaptive_attack(X_clean, n_poison, radius, direction, margin)
                """),
            "part_c_solution": textwrap.dedent("""\
                def trimmed_mean(X, trim_fraction=0.1):
                    from poisoning.mean_estimation import trimmed_mean as reference
                    return reference(X, trim_fraction)
                """)}),
        # sys.exit in Part B: that cell fails, the rest is graded
        "sysexit": student({**sol, "part_b_solution": "import sys\nsys.exit('bye')\n" + b}),
        # 3.2 GB, over the 2 GB memory limit: MemoryError, Part C fails
        "memhog": student({**sol, "part_c_solution": "hog = np.ones(400_000_000)\n" + c}),
        # an infinite loop: killed at the CPU limit
        "loop": student({**sol, "part_a_solution": edited(a, "    X = np.asarray(X, dtype=float)\n    points",
                                                           "    while True:\n        pass\n    points")}),
        # sleeps with interrupts ignored: killed at the wall-clock limit
        "sleeper": student({**sol, "part_a_solution": "import signal, time\n"
                                                      "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                      "time.sleep(3600)\n" + a}),
        # the kernel kills itself
        "crash": student({**sol, "part_c_solution": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n" + c}),
    }


EXPECTED = {  # autograded score, and a word the status must contain
    "solution": (11, "graded"),
    "blank": (0, "graded"),
    "wrongcenter": (7, "graded"),
    "farattack": (7, "graded"),
    "onesided": (8, "graded"),
    "onedonly": (9, "graded"),
    "alias": (0, "graded"),
    "sysexit": (7, "graded"),
    "memhog": (8, "memory"),
    "loop": (0, "kernel died"),
    "sleeper": (0, "timeout: stopped after 60 s (wall clock)"),
    "crash": (0, "kernel died"),
}


def gradebook_scores(root, student):
    """``(code score, {grade id: auto score})`` of one student, from the course's gradebook."""
    return helpers.gradebook_scores(root, ASSIGNMENT, student)


# --------------------------------------------------------------------------------------------------
# the pipeline (slow: one release, one autograde of the whole batch)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp("pipeline"), ASSIGNMENT)


@pytest.fixture(scope="module")
def batch(released):
    """One `course autograde` of the whole batch, given as a .zip with a sub-folder, plus two bad files."""
    released_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    files = {f"batch/{student}_{ASSIGNMENT}.ipynb": text for student, text in submissions(released_nb).items()}
    files[f"batch/carol_{ASSIGNMENT}.ipynb"] = "{ this is not json"
    files["batch/notes.txt"] = "not a notebook"
    return helpers.autograde_zip(released, ASSIGNMENT, files, *LIMITS)


@pytest.mark.slow
def test_release_contains_no_solution_and_no_hidden_test(released):
    student_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    helpers.check_student_version(read_nb(SOURCE), student_nb, SOLUTION_CELLS, WRITTEN_CELLS,
                                  ["distance_filter", "filtered_mean", "adaptive_attack", "trimmed_mean"],
                                  min_secret_lines=40)
    # the hidden-test cells are still there (graded), with the visible comment only
    for gid in ("test_part_a_hidden", "test_part_b_hidden", "test_part_c_hidden"):
        assert "check_against_reference" not in source_of(cell_by_id(student_nb, gid))


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solution_and_fails_the_student_version(released):
    source_result, failed_code, failed_written = helpers.validate_source_and_release(released, ASSIGNMENT)
    assert source_result == {}
    assert len(failed_code) == 3  # the visible tests; the hidden ones are not in the student version
    assert all("NotImplementedError" in cell["raw_error"] for cell in failed_code)
    assert failed_written == 2  # the unanswered written questions


@pytest.mark.slow
def test_batch_scores_in_the_gradebook(batch):
    root, result, _ = batch
    for student, (score, _) in EXPECTED.items():
        got, cells = gradebook_scores(root, student)
        assert got == score, f"{student}: {got} != {score}\n{result.stdout}"
    # per part: the wrong answers lose exactly their part
    _, cells = gradebook_scores(root, "wrongcenter")
    assert {gid: cells[gid] for gid in TEST_CELLS if PART_OF[gid] == "a"} == {"test_part_a_visible": 0,
                                                                                "test_part_a_hidden": 0}
    _, cells = gradebook_scores(root, "onedonly")
    assert cells["test_part_c_visible"] == 1 and cells["test_part_c_hidden"] == 0
    _, cells = gradebook_scores(root, "alias")
    assert all(cells[gid] == 0 for gid in TEST_CELLS)
    _, cells = gradebook_scores(root, "solution")
    assert all(cells[gid] == points for gid, points in TEST_CELLS.items())
    # a failed student: 0 for every autograded cell, and flagged for the instructor
    _, cells = gradebook_scores(root, "crash")
    assert all(cells[gid] == 0 for gid in TEST_CELLS)


@pytest.mark.slow
def test_batch_summary_warnings_and_exit_status(batch):
    root, result, _ = batch
    assert result.returncode == 1, result.stdout + result.stderr  # two bad files, three not graded
    rows = summary_rows(result.stdout)
    for student, (score, word) in EXPECTED.items():
        assert rows[student][0] == score and rows[student][1] == AUTOGRADED_MAX, (student, rows.get(student))
        assert word in rows[student][3], (student, rows[student])
    assert rows["carol"][3].startswith("invalid") and rows["carol"][2] is None
    assert f"{len(EXPECTED) - 3} of {len(EXPECTED) + 1} students graded" in result.stdout
    stderr = result.stderr
    assert "Traceback" not in stderr
    assert f"course: warning: skipped batch/carol_{ASSIGNMENT}.ipynb: not a valid notebook" in stderr
    assert "course: warning: skipped batch/notes.txt: not a notebook" in stderr
    assert "course: error: 2 files in SUBMISSIONS skipped" in stderr
    assert "autograding assignment1" in stderr  # the progress bar


@pytest.mark.slow
def test_batch_runs_in_parallel_and_collects(batch):
    root, result, seconds = batch
    # collected by zip_collect, autograded notebooks for those that finished, a log for everyone
    for student in EXPECTED:
        assert (root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
        assert (root / ".grading" / "logs" / ASSIGNMENT / f"{student}.log").is_file()
        finished = EXPECTED[student][1] in ("graded", "memory")
        assert (root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file() == finished
    assert not (root / "submitted" / "carol").exists()
    # in parallel: the students' own run times add up to much more than the whole run took (the sleeper alone
    # holds one worker for the 60 s wall-clock limit)
    times = [row[2] for student, row in summary_rows(result.stdout).items() if student in EXPECTED]
    print(f"autograde of {len(EXPECTED)} students: {seconds:.0f} s, {sum(times):.0f} s of student runs")
    assert min(times) > 0 and max(times) >= 59
    assert sum(times) > 1.5 * seconds


@pytest.mark.slow
def test_feedback_and_grades(batch):
    root, _, _ = batch
    result = run_cli("feedback", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stderr
    graded = [s for s, (_, word) in EXPECTED.items() if word in ("graded", "memory")]
    for student in graded:
        html = (root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        score = EXPECTED[student][0]
        assert f"Score: {score:.1f} / 15.0" in html
        assert "rng_a" not in html and "cases_b" not in html  # no hidden test code in the feedback
    assert "test cases failed" in (root / "feedback" / "wrongcenter" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    failed = [s for s in EXPECTED if s not in graded]
    assert not any((root / "feedback" / s).exists() for s in failed)

    result = run_cli("grades", "--output", "out.csv", cwd=root)
    assert result.returncode == 0, result.stderr
    with open(root / "out.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student"] for r in rows] == sorted([*EXPECTED, "carol"])
    for row in rows:
        assert row["assignment"] == ASSIGNMENT
        assert float(row["max_score"]) == AUTOGRADED_MAX + sum(WRITTEN_CELLS.values())
        expected = EXPECTED.get(row["student"], (0, ""))[0]
        assert float(row["autograded_score"]) == expected and float(row["score"]) == expected


@pytest.mark.slow
def test_regrading_one_student_keeps_the_others(batch, tmp_path):
    """A second batch replaces only its own students' scores (and the merge keeps the gradebook intact)."""
    root = tmp_path / "course"
    shutil.copytree(batch[0], root)  # leave the batch's course as it is for the other tests
    sol = solution_code()
    nb = read_nb(root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for gid, code in sol.items():
        cell_by_id(nb, gid)["source"] = code
    folder = tmp_path / "resubmitted"
    folder.mkdir()
    (folder / f"blank_{ASSIGNMENT}.ipynb").write_text(json.dumps(nb))
    result = run_cli("autograde", ASSIGNMENT, str(folder), "--jobs", "1", "--no-progress", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert gradebook_scores(root, "blank")[0] == AUTOGRADED_MAX
    assert gradebook_scores(root, "wrongcenter")[0] == 7


# --------------------------------------------------------------------------------------------------
# fast: the source notebook
# --------------------------------------------------------------------------------------------------
def test_source_notebook_is_a_valid_nbgrader_assignment():
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator

    nb = nbformat.read(SOURCE, as_version=4)
    nbformat.validate(nb)
    MetadataValidator().validate_nb(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert not any(cell.get("outputs") or cell.get("execution_count") for cell in nb.cells
                   if cell.cell_type == "code")
    points = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            points[meta["grade_id"]] = meta["points"]
        if meta.get("solution") and cell.cell_type == "code":
            assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") >= 1
        if meta.get("grade") and cell.cell_type == "code":
            assert meta["locked"] and not meta["solution"]
            hidden = "### BEGIN HIDDEN TESTS" in cell.source
            assert hidden == meta["grade_id"].endswith("_hidden")
            if hidden:
                assert "check_against_reference" in cell.source and "with hidden_tests(" in cell.source
            else:
                assert "student_call" in cell.source
    assert points == {**TEST_CELLS, **WRITTEN_CELLS}
    for gid in WRITTEN_CELLS:
        cell = cell_by_id(json.loads(SOURCE.read_text()), gid)
        assert cell["cell_type"] == "markdown" and cell["metadata"]["nbgrader"]["solution"]


def test_solution_signatures_match_the_reference():
    import inspect

    import poisoning.mean_estimation as me

    namespace = {"np": np}
    for code in solution_code().values():
        exec(code, namespace)
    for name in ("distance_filter", "filtered_mean", "adaptive_attack", "trimmed_mean"):
        assert inspect.signature(namespace[name]) == inspect.signature(getattr(me, name)), name


# --------------------------------------------------------------------------------------------------
# fast: the test-cell helpers
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def student_functions():
    namespace = {"np": np, "__name__": "__main__"}
    for code in solution_code().values():
        exec(compile(code, "<student cell>", "exec"), namespace)
    return namespace


def hidden_cases(seed=5):
    rng = np.random.default_rng(seed)
    return [((rng.normal(size=shape), 1.5), {}) for shape in [(12,), (30, 2), (20, 4)]]


def test_correct_functions_pass_the_checks(student_functions):
    from poisoning.course.checks import check_against_reference, student_call

    check_against_reference(student_functions["distance_filter"], "distance_filter", hidden_cases())
    check_against_reference(student_functions["filtered_mean"], "filtered_mean",
                            hidden_cases() + [((np.zeros((3, 2)), 0.5), {"center": [9.0, 9.0]})])
    X = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    assert student_call(student_functions["trimmed_mean"], X, 0.2) == 3.0


def test_wrong_functions_fail_with_a_clear_message(student_functions):
    from poisoning.course.checks import check_against_reference

    namespace = dict(student_functions)
    exec(edited(solution_code()["part_a_solution"], "np.median(points, axis=0)", "points.mean(axis=0)"), namespace)
    with pytest.raises(AssertionError, match="test cases failed; the first: distance_filter"):
        check_against_reference(namespace["distance_filter"], "distance_filter", hidden_cases())
    # a function that must raise ValueError (nothing kept) but does not
    with pytest.raises(AssertionError, match="should raise ValueError"):
        check_against_reference(lambda X, radius, center=None: 0.0, "filtered_mean",
                                [((np.zeros(3), 0.5), {"center": 9.0})])


def test_the_reference_itself_earns_nothing():
    import poisoning.mean_estimation as me
    from poisoning.course.checks import check_against_reference, student_call

    # (a) the reference object, or a function made from its code, is rejected before it runs
    with pytest.raises(AssertionError, match="is the reference implementation"):
        check_against_reference(me.distance_filter, "distance_filter", hidden_cases())
    clone = types.FunctionType(me.distance_filter.__code__, me.__dict__, "distance_filter")
    with pytest.raises(AssertionError, match="poisoning"):
        check_against_reference(clone, "distance_filter", hidden_cases())

    # (b) calling it, however imported, fails: it is switched off while the student's function runs
    namespace = {"__name__": "__main__"}
    exec(textwrap.dedent("""\
        def calls(X, radius, center=None):
            from poisoning.mean_estimation import distance_filter as f
            return f(X, radius, center)

        def catches(X, radius, center=None):
            import poisoning.mean_estimation as me
            try:
                return me.distance_filter(X, radius, center)
            except RuntimeError:
                import numpy as np
                X = np.asarray(X, float).reshape(len(X), -1)
                return np.linalg.norm(X - np.median(X, axis=0), axis=1) <= radius
        """), namespace)
    for name in ("calls", "catches"):
        with pytest.raises(AssertionError, match="called the reference implementation"):
            check_against_reference(namespace[name], "distance_filter", hidden_cases())
    with pytest.raises(RuntimeError, match="switched off"):
        student_call(namespace["calls"], np.arange(5.0), 1.0)

    # a copy of its code object inside the student's own function is noticed too
    copied = types.FunctionType(me.trimmed_mean.__code__.replace(), me.__dict__, "copied")
    namespace["copied"] = copied
    exec("def wrapper(X, trim_fraction=0.1):\n    return copied(X, trim_fraction)\n", namespace)
    with pytest.raises(AssertionError, match="called the reference implementation"):
        check_against_reference(namespace["wrapper"], "trimmed_mean", [((np.arange(10.0), 0.1), {})])

    # afterwards the reference works again, and no profiler is left behind
    assert me.trimmed_mean(np.arange(10.0), 0.1) == 4.5
    assert me.distance_filter(np.arange(3.0), 1.0).tolist() == [True, True, True]
    assert sys.getprofile() is None


def test_hidden_tests_report_failures_without_traceback(monkeypatch, capsys):
    import io

    from poisoning.course import checks

    stream = io.StringIO()
    monkeypatch.setattr(checks, "_STDERR", stream)
    with checks.hidden_tests("Part X"):
        pass
    with checks.hidden_tests("Part Y"):
        raise AssertionError("2 of 9 test cases failed; the first: ...")
    with checks.hidden_tests("Part Z"):
        raise KeyboardInterrupt()  # a cell timeout interrupts the kernel
    assert capsys.readouterr().out == "Part X: the hidden tests pass\n"
    assert stream.getvalue().splitlines() == ["Part Y: the hidden tests fail: 2 of 9 test cases failed; the first: ...",
                                              "Part Z: the hidden tests fail: KeyboardInterrupt"]


# --------------------------------------------------------------------------------------------------
# fast: the sandbox
# --------------------------------------------------------------------------------------------------
def test_sandbox_limits_environment_and_network(tmp_path, monkeypatch):
    from poisoning.course.sandbox import SandboxLimits, isolation, spawn_sandboxed

    monkeypatch.setenv("GRADER_SECRET", "do-not-leak")
    probe = textwrap.dedent("""\
        import json, os, resource, socket
        names = ("AS", "CPU", "FSIZE", "CORE")
        out = {name: resource.getrlimit(getattr(resource, "RLIMIT_" + name)) for name in names}
        out["secret"] = os.environ.get("GRADER_SECRET")
        out["home"] = os.environ["HOME"]
        try:
            socket.create_connection(("192.0.2.1", 9), timeout=3)
            out["network"] = "reachable"
        except OSError as error:
            out["network"] = type(error).__name__
        print(json.dumps(out))
        """)
    limits = SandboxLimits(memory_mb=1024, cpu_seconds=7, wall_seconds=60, file_size_mb=8)
    code, timed_out, _ = spawn_sandboxed([sys.executable, "-c", probe], workdir=str(tmp_path), limits=limits,
                                         log_path=str(tmp_path / "log"))
    out = json.loads((tmp_path / "log").read_text().strip().splitlines()[-1])
    assert code == 0 and not timed_out
    assert out["AS"] == [1024 * 2**20] * 2 and out["CPU"] == [7, 12] and out["FSIZE"] == [8 * 2**20] * 2
    assert out["CORE"] == [0, 0]
    assert out["secret"] is None and out["home"] == str(tmp_path / "home")
    if isolation()[0]:  # where unshare is permitted there is no network at all
        assert out["network"] != "reachable"


@pytest.fixture(params=["namespaces", "fallback"])
def isolation_mode(request, monkeypatch):
    """Run a sandbox test with the platform's isolation, and once more without `unshare` (the fallback)."""
    from poisoning.course import sandbox

    monkeypatch.setattr(sandbox, "_isolation_cache", None)
    if request.param == "fallback":
        monkeypatch.setattr(sandbox, "_unshare_candidates", lambda: [])
        prefix, note = sandbox.isolation()
        assert prefix == [] and "without network isolation" in note
    return request.param


def test_sandbox_wall_clock_timeout_kills_everything(tmp_path, isolation_mode):
    from poisoning.course.sandbox import SandboxLimits, spawn_sandboxed

    # the child starts a grandchild in a session of its own, which would survive a kill of the process group
    script = textwrap.dedent(f"""\
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c",
                          "import os, time; os.setsid(); time.sleep(3); open({str(tmp_path / 'survived')!r}, 'w')"])
        time.sleep(600)
        """)
    start = time.monotonic()
    code, timed_out, _ = spawn_sandboxed([sys.executable, "-c", script], workdir=str(tmp_path),
                                         limits=SandboxLimits(wall_seconds=1), log_path=str(tmp_path / "log"))
    assert timed_out and code is None and time.monotonic() - start < 30
    time.sleep(4)
    assert not (tmp_path / "survived").exists()


def test_sandbox_memory_limit(tmp_path):
    from poisoning.course.sandbox import SandboxLimits, spawn_sandboxed

    script = textwrap.dedent("""\
        try:
            b = bytearray(3 * 2**30)
            print("allocated")
        except MemoryError:
            print("MemoryError")
        """)
    code, _, _ = spawn_sandboxed([sys.executable, "-c", script], workdir=str(tmp_path),
                                 limits=SandboxLimits(memory_mb=1024), log_path=str(tmp_path / "log"))
    assert code == 0 and (tmp_path / "log").read_text().strip() == "MemoryError"
