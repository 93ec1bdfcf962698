"""`course autograde` stopped and started again, regrades, two graders at once, and `course status`.

Each test works in its own copy of one released course (assignment 1) and grades a few of the synthetic students
of ``test_grading_pipeline.py``, whose scores are known, one at a time (``--jobs 1``: in the order of their ids).
The second student of a batch sleeps a few seconds in its first cell, so that a run stopped right after the first
student was recorded still has students left; the tests wait for the state file, never for a fixed time.
"""

import csv
import io
import shutil
import signal

import grading_helpers as helpers
import pytest
from grading_helpers import (finished_students, gradebook_scores, grading_state, read_nb, run_cli, skipped_students,
                             start_cli, status_table, summary_rows, wait_for, write_submissions)
from test_grading_pipeline import ASSIGNMENT, AUTOGRADED_MAX, solution_code, submissions

pytestmark = pytest.mark.slow

LIMITS = ["--jobs", "1", "--no-progress", "--cell-timeout", "120", "--cpu-seconds", "60", "--memory-mb", "2048",
          "--timeout", "120"]
BATCH = {"a-first": 16, "b-slow": 16, "blank": 0, "wrongcenter": 12}  # student -> autograded score


def sleeping(released_nb, seconds):
    """The solution, which sleeps ``seconds`` before its first function."""
    sol = solution_code()
    return helpers.with_cells(released_nb, {**sol, "part_a_solution": f"import time\ntime.sleep({seconds})\n"
                                                                         + sol["part_a_solution"]})


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp("resume"), ASSIGNMENT)


@pytest.fixture(scope="module")
def released_nb(released):
    return read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")


@pytest.fixture(scope="module")
def batch_files(released_nb):
    known = submissions(released_nb)
    files = {"a-first": known["solution"], "b-slow": sleeping(released_nb, 6), "blank": known["blank"],
             "wrongcenter": known["wrongcenter"]}
    return {f"{student}_{ASSIGNMENT}.ipynb": text for student, text in files.items()}


def course_copy(released, tmp_path):
    root = tmp_path / "course"
    shutil.copytree(released, root)
    return root


def status(root):
    result = run_cli("status", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return status_table(result.stdout), result.stdout


def grade_rows(root):
    """``{student: [CSV rows]}`` of `course grades`."""
    result = run_cli("grades", "--output", "-", cwd=root)
    assert result.returncode == 0, result.stderr
    rows = {}
    for row in csv.DictReader(io.StringIO(result.stdout)):
        rows.setdefault(row["student"], []).append(row)
    return rows


def check_scores(root, expected):
    """Every student has the ``expected`` autograded score in the gradebook, in exactly one row of the grades."""
    rows = grade_rows(root)
    for student, score in expected.items():
        assert gradebook_scores(root, ASSIGNMENT, student)[0] == score, student
        assert len(rows[student]) == 1 and float(rows[student][0]["autograded_score"]) == score, rows[student]


def stop_and_resume(root, folder, signum):
    """Start `course autograde`, stop it with ``signum`` once the first student is recorded, check `course status`,
    and run the same command again. Returns ``(students finished before the stop, the rerun's result)``."""
    process = start_cli("autograde", ASSIGNMENT, folder, *LIMITS, cwd=root)
    try:
        wait_for(lambda: finished_students(root, ASSIGNMENT), "student recorded in the state file", process=process)
        process.send_signal(signum)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, out + err
        assert err.strip().splitlines()[-1] == "course: error: interrupted", err
    done = finished_students(root, ASSIGNMENT)
    assert "a-first" in done and "b-slow" not in done, (done, out, err)
    # before the rerun: the finished students graded, the others pending
    rows, text = status(root)
    assert set(rows) == set(BATCH), text
    for student, score in BATCH.items():
        if student in done:
            assert rows[student][:3] == ("graded", score, AUTOGRADED_MAX), (student, text)
        else:
            assert rows[student][0] == "pending", (student, text)
    assert f"{len(done)} graded, {len(BATCH) - len(done)} pending, 0 failed" in text

    rerun = run_cli("autograde", ASSIGNMENT, str(folder), *LIMITS, cwd=root)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    return done, rerun


@pytest.fixture(scope="module")
def killed_and_resumed(released, batch_files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("killed")
    root = course_copy(released, tmp)
    folder = write_submissions(tmp / "submissions", batch_files)
    done, rerun = stop_and_resume(root, folder, signal.SIGKILL)
    return root, folder, done, rerun


def check_rerun(root, done, rerun):
    """The rerun graded exactly the students not finished before, and every score is the expected one."""
    assert skipped_students(rerun.stdout) == done, rerun.stdout
    rows = summary_rows(rerun.stdout)
    assert set(rows) == set(BATCH), rerun.stdout
    for student, score in BATCH.items():
        assert rows[student][0] == score, (student, rows[student])
        if student in done:
            assert rows[student][3].startswith("skipped") and rows[student][2] is None, rows[student]
        else:
            assert rows[student][3] == "graded" and rows[student][2] is not None, rows[student]
    left = len(BATCH) - len(done)
    assert f"{left} of {left} students graded" in rerun.stdout
    assert f"summary: {left} graded, 0 failed, {len(done)} skipped" in rerun.stdout
    check_scores(root, BATCH)
    assert {s: e["state"] for s, e in grading_state(root, ASSIGNMENT).items()} == {s: "graded" for s in BATCH}
    rows, text = status(root)
    assert {s: row[:3] for s, row in rows.items()} == {s: ("graded", score, AUTOGRADED_MAX)
                                                      for s, score in BATCH.items()}, text
    assert f"{len(BATCH)} students: {len(BATCH)} graded, 0 pending, 0 failed" in text


def test_a_killed_run_started_again_grades_only_what_is_left(killed_and_resumed):
    root, _, done, rerun = killed_and_resumed
    check_rerun(root, done, rerun)


def test_an_interrupted_run_started_again_grades_only_what_is_left(released, batch_files, tmp_path):
    root = course_copy(released, tmp_path)
    folder = write_submissions(tmp_path / "submissions", batch_files)
    done, rerun = stop_and_resume(root, folder, signal.SIGINT)
    check_rerun(root, done, rerun)


def test_regrading_one_student_changes_only_that_students_row(killed_and_resumed, released_nb, tmp_path):
    root = course_copy(killed_and_resumed[0], tmp_path)
    folder = killed_and_resumed[1]
    before = grading_state(root, ASSIGNMENT)
    rows_before = grade_rows(root)
    # --regrade: the same submission graded again, the others skipped and untouched
    result = run_cli("autograde", ASSIGNMENT, str(folder), *LIMITS, "--regrade", "wrongcenter", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert skipped_students(result.stdout) == set(BATCH) - {"wrongcenter"}
    assert summary_rows(result.stdout)["wrongcenter"][3] == "graded"
    after = grading_state(root, ASSIGNMENT)
    assert after["wrongcenter"]["finished"] >= before["wrongcenter"]["finished"]
    assert {s: e for s, e in after.items() if s != "wrongcenter"} == {s: e for s, e in before.items()
                                                                       if s != "wrongcenter"}
    assert grade_rows(root) == rows_before
    # a new submission of one student: graded without asking, only that student's row changes
    resubmitted = write_submissions(tmp_path / "resubmitted", {
        **{f"{s}_{ASSIGNMENT}.ipynb": (folder / f"{s}_{ASSIGNMENT}.ipynb").read_text() for s in BATCH},
        f"blank_{ASSIGNMENT}.ipynb": submissions(released_nb)["solution"]})
    result = run_cli("autograde", ASSIGNMENT, str(resubmitted), *LIMITS, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert skipped_students(result.stdout) == set(BATCH) - {"blank"}
    check_scores(root, {**BATCH, "blank": AUTOGRADED_MAX})
    rows_after = grade_rows(root)
    assert {s: r for s, r in rows_after.items() if s != "blank"} == {s: r for s, r in rows_before.items()
                                                                     if s != "blank"}
    # a student with no submission in SUBMISSIONS cannot be regraded; nothing changes
    result = run_cli("autograde", ASSIGNMENT, str(resubmitted), *LIMITS, "--regrade", "nobody", cwd=root)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("course: error: --regrade nobody:")
    # --force grades everyone again, with the same scores
    result = run_cli("autograde", ASSIGNMENT, str(resubmitted), *LIMITS, "--force", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not skipped_students(result.stdout)
    assert f"summary: {len(BATCH)} graded, 0 failed, 0 skipped" in result.stdout
    check_scores(root, {**BATCH, "blank": AUTOGRADED_MAX})


def test_a_second_grader_of_the_same_assignment_is_refused(released, released_nb, tmp_path):
    root = course_copy(released, tmp_path)
    folder = write_submissions(tmp_path / "submissions", {f"slowpoke_{ASSIGNMENT}.ipynb": sleeping(released_nb, 60)})
    lock = root / ".grading" / "locks" / f"{ASSIGNMENT}.lock"
    first = start_cli("autograde", ASSIGNMENT, folder, *LIMITS, cwd=root)
    try:
        wait_for(lambda: grading_state(root, ASSIGNMENT).get("slowpoke", {}).get("state") == "pending",
                 "student being graded", process=first)
        assert f"pid {first.pid}" in lock.read_text()
        second = run_cli("autograde", ASSIGNMENT, str(folder), *LIMITS, cwd=root)
        assert second.returncode == 1
        assert second.stderr.strip().count("\n") == 0, second.stderr
        assert second.stderr.startswith(f"course: error: {ASSIGNMENT} is busy: course autograde {ASSIGNMENT} "
                                        f"(pid {first.pid}, since "), second.stderr
        assert "Traceback" not in second.stderr
        release = run_cli("release", ASSIGNMENT, cwd=root)  # nor can the assignment be released meanwhile
        assert release.returncode == 1 and f"{ASSIGNMENT} is busy" in release.stderr
        rows, text = status(root)
        assert rows == {"slowpoke": ("pending", None, None, rows["slowpoke"][3])}, text
        assert "not finished" in rows["slowpoke"][3]
        assert f"being graded now: course autograde {ASSIGNMENT} (pid {first.pid}" in text
        assert first.poll() is None, "the first grader was disturbed"
    finally:
        first.send_signal(signal.SIGTERM)  # like Ctrl-C
        out, err = first.communicate(timeout=300)
    assert first.returncode == 130, out + err
    # the lock went with its holder; the stopped student is left pending, not failed
    rows, text = status(root)
    assert "being graded now" not in text
    assert rows["slowpoke"][0] == "pending", text
    assert lock.read_text() == ""


def test_status_before_and_after_grading(released, released_nb, tmp_path):
    root = course_copy(released, tmp_path)
    rows, text = status(root)
    assert rows == {} and f"{ASSIGNMENT}: 0 students: 0 graded, 0 pending, 0 failed" in text

    known = submissions(released_nb)
    sol = solution_code()
    crash = helpers.with_cells(released_nb, {**sol, "part_c_solution": "import os, signal\n"
                                                                        "os.kill(os.getpid(), signal.SIGKILL)\n"})
    folder = write_submissions(tmp_path / "submissions", {
        f"good_{ASSIGNMENT}.ipynb": known["solution"], f"blank_{ASSIGNMENT}.ipynb": known["blank"],
        f"crasher_{ASSIGNMENT}.ipynb": crash, f"carol_{ASSIGNMENT}.ipynb": "{ this is not json"})
    result = run_cli("autograde", ASSIGNMENT, str(folder), *LIMITS, cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "summary: 2 graded, 2 failed, 0 skipped" in result.stdout, result.stdout
    assert "  failed carol: invalid: not a valid notebook" in result.stdout
    assert "  failed crasher: kernel died" in result.stdout

    rows, text = status(root)
    assert set(rows) == {"good", "blank", "crasher", "carol"}, text
    assert rows["good"][:3] == ("graded", 16, AUTOGRADED_MAX) and rows["blank"][:3] == ("graded", 0, AUTOGRADED_MAX)
    assert rows["crasher"][:3] == ("failed", 8, AUTOGRADED_MAX) and "kernel died" in rows["crasher"][3]
    assert rows["carol"][0] == "failed" and rows["carol"][3].startswith("invalid: not a valid notebook"), text
    assert f"{ASSIGNMENT}: 4 students: 2 graded, 0 pending, 2 failed" in text

    # a newer submission collected for blank, and a student collected but never graded: both pending
    collected = root / "submitted" / "blank" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    collected.write_text(known["solution"])
    newbie = root / "submitted" / "newbie" / ASSIGNMENT
    newbie.mkdir(parents=True)
    (newbie / f"{ASSIGNMENT}.ipynb").write_text(known["solution"])
    rows, text = status(root)
    assert rows["blank"] == ("pending", None, None, "graded from an older submission"), text
    assert rows["newbie"] == ("pending", None, None, "collected, not graded yet"), text
    assert f"{ASSIGNMENT}: 5 students: 1 graded, 2 pending, 2 failed" in text
