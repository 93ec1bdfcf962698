"""The gradebook on PostgreSQL: `course release`, `autograde`, `status` and `grades` against a real server, a shared
gradebook's lock across course folders, and the one-line errors for a bad URL or an unreachable server.

The server is Debian's PostgreSQL, started by these tests on 127.0.0.1 in a temporary folder (``postgres_server.py``),
one for the module. Where no PostgreSQL is installed the tests that need it are skipped with a note (under CI they
fail instead). The graded batch is a few of the synthetic students of ``test_grading_pipeline.py``, whose scores are
known.
"""

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import grading_helpers as helpers
import postgres_server
import pytest
from grading_helpers import ROOT, make_course, read_nb, skipped_students, status_table, summary_rows
from test_grading_pipeline import ASSIGNMENT, AUTOGRADED_MAX, MAX_SCORE, submissions

from grading import gradebook
from grading.coursedir import DB_URL_VARIABLE, Course, CourseError
from grading.state import assignment_lock, lock_holder

LIMITS = ["--jobs", "2", "--no-progress", "--cell-timeout", "120", "--cpu-seconds", "60", "--memory-mb", "2048",
          "--timeout", "120"]
BATCH = {"good": 16, "blank": 0, "wrongcenter": 12}  # student -> autograded score (see test_grading_pipeline.py)
PASSWORD = "pw-not-shown"  # the test server trusts everyone on loopback; a password must never be printed


# --------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of the tests' own (stopped and deleted at the end of the module)."""
    reason = postgres_server.unavailable_reason()
    if reason:
        if postgres_server.in_ci():
            pytest.fail(f"PostgreSQL gradebook tests cannot run under CI: {reason}")
        pytest.skip(reason)
    with postgres_server.running_server() as server:
        yield server


def cli_env(url):
    """The environment of a `course` command whose gradebook is ``url`` (through the environment variable)."""
    return dict(os.environ, **{DB_URL_VARIABLE: url})


def course_cli(*args, cwd, url=None, timeout=600):
    """``course ARGS`` in ``cwd``; with ``url``, the gradebook is given by the environment variable."""
    env = cli_env(url) if url else {k: v for k, v in os.environ.items() if k != DB_URL_VARIABLE}
    return subprocess.run([*helpers.CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def configured_course(tmp, url):
    """A course folder whose ``nbgrader_config.py`` names the gradebook ``url``."""
    root = make_course(tmp)
    with open(root / "nbgrader_config.py", "a") as handle:
        handle.write(f"\nc.CourseDirectory.db_url = {url!r}\n")
    return root


def open_course(root, url=None, monkeypatch=None):
    """``Course.open(root)``, with ``url`` given by the environment variable when set."""
    if url is None:
        return Course.open(root)
    with monkeypatch.context() as patch:
        patch.setenv(DB_URL_VARIABLE, url)
        return Course.open(root)


def grade_rows(root, url=None):
    """``{student: [CSV rows of `course grades`]}``."""
    result = course_cli("grades", "--output", "-", cwd=root, url=url)
    assert result.returncode == 0, result.stderr
    rows = {}
    for row in csv.DictReader(io.StringIO(result.stdout)):
        rows.setdefault(row["student"], []).append(row)
    return rows


def one_line_error(result):
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("course: error: "), result.stderr
    return result.stderr.strip()


@pytest.fixture(scope="module")
def released(postgres, tmp_path_factory):
    """``(course folder, URL)``: assignment 1 released into a new, empty database named in nbgrader_config.py."""
    postgres.create_database("released")
    url = postgres.url("released", password=PASSWORD)
    root = configured_course(tmp_path_factory.mktemp("pg-course"), url)
    result = course_cli("release", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, url


@pytest.fixture(scope="module")
def graded(released):
    """The batch autograded into the released course: ``(course folder, submissions, autograde result, grade rows,
    status text)``, the last two read right after the run."""
    root, _ = released
    known = submissions(read_nb(root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    folder = helpers.write_submissions(root.parent / "submissions",
                                       {f"{student}_{ASSIGNMENT}.ipynb": known["solution" if student == "good"
                                                                               else student] for student in BATCH})
    result = course_cli("autograde", ASSIGNMENT, str(folder), *LIMITS, cwd=root)
    status = course_cli("status", ASSIGNMENT, cwd=root)
    assert status.returncode == 0, status.stdout + status.stderr
    return root, folder, result, grade_rows(root), status.stdout


# --------------------------------------------------------------------------------------------------
# grading against PostgreSQL
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_release_and_autograde_on_postgres_give_the_known_scores(graded):
    root, _, result, rows, status = graded
    assert result.returncode == 0, result.stdout + result.stderr
    assert {student: row[0] for student, row in summary_rows(result.stdout).items()} == BATCH, result.stdout
    # `course grades`: one row per student, the known scores, read from the PostgreSQL gradebook
    assert set(rows) == set(BATCH)
    for student, score in BATCH.items():
        assert len(rows[student]) == 1, rows[student]
        row = rows[student][0]
        assert (row["assignment"], float(row["autograded_score"]), float(row["max_score"])) == \
               (ASSIGNMENT, score, MAX_SCORE), row
    # `course status` reads the same gradebook
    table = status_table(status)
    assert {s: row[:3] for s, row in table.items()} == {s: ("graded", score, AUTOGRADED_MAX)
                                                        for s, score in BATCH.items()}, status
    assert f"{len(BATCH)} graded, 0 pending, 0 failed" in status
    assert "being graded now" not in status
    # nothing went into an SQLite file of the course folder
    assert not (root / "gradebook.db").exists()
    assert PASSWORD not in result.stdout + result.stderr + status


@pytest.mark.slow
def test_a_new_submission_replaces_only_that_students_grade(graded):
    root, folder, _, _, _ = graded
    before = grade_rows(root)
    known = submissions(read_nb(root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    resubmitted = helpers.write_submissions(root.parent / "resubmitted", {
        **{f"{s}_{ASSIGNMENT}.ipynb": (folder / f"{s}_{ASSIGNMENT}.ipynb").read_text() for s in BATCH},
        f"blank_{ASSIGNMENT}.ipynb": known["solution"]})
    result = course_cli("autograde", ASSIGNMENT, str(resubmitted), *LIMITS, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert skipped_students(result.stdout) == set(BATCH) - {"blank"}, result.stdout
    after = grade_rows(root)
    assert {s: r for s, r in after.items() if s != "blank"} == {s: r for s, r in before.items() if s != "blank"}
    assert len(after["blank"]) == 1 and float(after["blank"][0]["autograded_score"]) == AUTOGRADED_MAX


# --------------------------------------------------------------------------------------------------
# one gradebook, two course folders: the assignment's lock
# --------------------------------------------------------------------------------------------------
HOLDER = textwrap.dedent("""\
    import sys, time
    from grading.coursedir import Course
    from grading.state import assignment_lock

    with assignment_lock(Course.open(sys.argv[1]), sys.argv[2], "course autograde " + sys.argv[2]):
        print("locked", flush=True)
        time.sleep(600)
    """)


def second_folder(released, tmp_path):
    """A second course folder with the released assignment and no gradebook setting of its own (its commands get
    the shared gradebook through the environment variable)."""
    root, _ = released
    other = tmp_path / "course"
    shutil.copytree(root, other, ignore=shutil.ignore_patterns(".grading"))
    shutil.copy(ROOT / "nbgrader_config.py", other / "nbgrader_config.py")
    return other


@pytest.mark.slow
def test_two_course_folders_sharing_the_gradebook_share_the_assignments_lock(postgres, released, tmp_path,
                                                                            monkeypatch):
    root, url = released
    other = second_folder(released, tmp_path)
    first, second = Course.open(root), open_course(other, url, monkeypatch)
    assert first.db_url == second.db_url and second.db_path is None
    busy = f"{ASSIGNMENT} is busy: course autograde {ASSIGNMENT} (pid {os.getpid()} on "
    with assignment_lock(first, ASSIGNMENT, f"course autograde {ASSIGNMENT}"):
        with pytest.raises(CourseError) as refused:
            with assignment_lock(second, ASSIGNMENT, f"course autograde {ASSIGNMENT}"):
                pytest.fail("two graders of one assignment hold its lock")
        message = str(refused.value)
        assert message.startswith(busy) and "\n" not in message, message
        assert ("is grading or releasing it against the same gradebook (PostgreSQL gradebook 'released' on "
                f"127.0.0.1:{postgres.port} as postgres)") in message, message
        assert PASSWORD not in message
        # the refused command left its own folder's lock free; another assignment can be graded meanwhile
        with assignment_lock(second, "assignment2", "course autograde assignment2"):
            pass
        # the same from the command line, in the other folder: one line, and `course status` names the holder
        error = one_line_error(course_cli("release", ASSIGNMENT, cwd=other, url=url))
        assert error.startswith(f"course: error: {busy}") and "against the same gradebook" in error, error
        status = course_cli("status", ASSIGNMENT, cwd=other, url=url)
        assert status.returncode == 0, status.stderr
        assert f"being graded now: {busy.split(': ', 1)[1]}" in status.stdout, status.stdout
        assert lock_holder(second, ASSIGNMENT).startswith(busy.split(": ", 1)[1])
    # released with its holder
    assert lock_holder(second, ASSIGNMENT) is None
    with assignment_lock(second, ASSIGNMENT, f"course release {ASSIGNMENT}"):
        assert lock_holder(first, ASSIGNMENT).startswith(f"course release {ASSIGNMENT} (pid {os.getpid()}")


@pytest.mark.slow
def test_the_lock_goes_with_a_killed_holder(released, tmp_path, monkeypatch):
    root, url = released
    second = open_course(second_folder(released, tmp_path), url, monkeypatch)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), ASSIGNMENT], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        with pytest.raises(CourseError, match=f"course autograde {ASSIGNMENT} \\(pid {holder.pid} on "):
            with assignment_lock(second, ASSIGNMENT, f"course autograde {ASSIGNMENT}"):
                pass
    finally:
        holder.kill()
        holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    # the server ends the killed process's session as soon as its socket closes, and its lock with it
    deadline = time.monotonic() + 30
    while lock_holder(second, ASSIGNMENT) is not None:
        assert time.monotonic() < deadline, "the killed holder's lock is still held"
        time.sleep(0.05)
    with assignment_lock(second, ASSIGNMENT, f"course autograde {ASSIGNMENT}"):
        pass


# --------------------------------------------------------------------------------------------------
# an empty database, an unreachable server, URLs
# --------------------------------------------------------------------------------------------------
def test_an_empty_database_gets_nbgraders_tables_under_the_lock(postgres, tmp_path, monkeypatch):
    url = postgres.create_database("empty")
    course = open_course(configured_course(tmp_path, "sqlite:///unused.db"), url, monkeypatch)
    assert not gradebook.exists(course)
    assert not course.in_gradebook(ASSIGNMENT)
    assert gradebook.code_scores(course, ASSIGNMENT) == {}
    with pytest.raises(CourseError, match="no gradebook yet"):
        gradebook.grade_rows(course)
    with assignment_lock(course, ASSIGNMENT, f"course release {ASSIGNMENT}"):
        assert gradebook.exists(course)
    assert not course.in_gradebook(ASSIGNMENT)


def test_an_unreachable_server_is_a_one_line_error(tmp_path, monkeypatch):
    port = postgres_server.free_port()  # nothing listens there
    url = f"postgresql://grader:{PASSWORD}@127.0.0.1:{port}/grades"
    root = make_course(tmp_path)
    course = open_course(root, url, monkeypatch)
    expected = f"cannot connect to the PostgreSQL gradebook 'grades' on 127.0.0.1:{port} as grader: "
    for attempt in (lambda: gradebook.exists(course),
                    lambda: assignment_lock(course, ASSIGNMENT, "course release").__enter__()):
        with pytest.raises(CourseError) as error:
            attempt()
        assert str(error.value).startswith(expected) and "\n" not in str(error.value), error.value
        assert "refused" in str(error.value).lower() and PASSWORD not in str(error.value)
    message = one_line_error(course_cli("release", ASSIGNMENT, cwd=root, url=url))
    assert message.startswith(f"course: error: {expected}") and PASSWORD not in message, message


@pytest.mark.parametrize("url, problem", [
    ("mysql://grader:{password}@db.example.edu/grades", "is not a gradebook the course CLI can use"),
    ("postgres://grader:{password}@db.example.edu/grades", "is not a gradebook the course CLI can use"),
    ("postgresql://grader:{password}@db.example.edu:5432", "names no database"),
    ("sqlite://", "is not a gradebook the course CLI can use"),
    ("not a url {password}", "is not a gradebook URL"),
])
def test_other_gradebook_urls_are_refused_in_one_line(url, problem, tmp_path, monkeypatch):
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    with pytest.raises(CourseError) as error:
        open_course(tmp_path, url.format(password=PASSWORD), monkeypatch)
    message = str(error.value)
    assert message.startswith(f"{DB_URL_VARIABLE} = ") and problem in message and "\n" not in message, message
    assert PASSWORD not in message


def test_gradebook_urls_and_where_they_come_from(tmp_path, monkeypatch):
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    monkeypatch.delenv(DB_URL_VARIABLE, raising=False)
    course = Course.open(tmp_path)  # nbgrader's default: gradebook.db in the course folder
    assert (course.db_kind, course.db_path) == ("sqlite", str(tmp_path / "gradebook.db"))
    assert not gradebook.exists(course)
    # the environment variable wins over nbgrader_config.py; a bare postgresql:// gets the course's driver
    url = f"postgresql://grader:{PASSWORD}@db.example.edu:5433/grades"
    course = open_course(tmp_path, url, monkeypatch)
    assert course.db_url == url.replace("postgresql://", "postgresql+psycopg2://")
    assert course.coursedir().db_url == course.db_url  # what nbgrader's own steps use
    assert (course.db_kind, course.db_path) == ("postgresql", None)
    assert course.db_label == "PostgreSQL gradebook 'grades' on db.example.edu:5433 as grader"
    explicit = "postgresql+psycopg2://grader@db.example.edu/grades"
    assert open_course(tmp_path, explicit, monkeypatch).db_url == explicit
