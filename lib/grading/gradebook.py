"""Every access of the grader to nbgrader's gradebook (besides nbgrader's own steps inside ``autograde``).

The gradebook is an SQLite file in the course folder or a PostgreSQL database that several instructors may share
(:func:`grading.coursedir.gradebook_url`). It has one writer at a time: within a run, the grading threads hold the
run's lock around nbgrader's steps and these functions (:mod:`grading.pipeline`); between commands, the assignment's
lock (:func:`grading.state.assignment_lock`), which for a PostgreSQL gradebook includes an advisory lock in the
database (:func:`advisory_lock`), so that graders in other course folders or on other machines are refused too.
Nothing inside a seal can reach the gradebook: no file of the course, no network, a cleared environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket

from .coursedir import SQLITE, CourseError

__all__ = ["exists", "has_assignment", "advisory_lock", "advisory_lock_holder", "LockBusy", "max_scores",
           "record_students", "record_failure", "code_score", "code_scores", "cell_scores", "grade_rows",
           "GRADE_COLUMNS"]

#: seconds to wait for a PostgreSQL server before giving up (unless the URL sets ``connect_timeout``)
CONNECT_TIMEOUT = 10


# --------------------------------------------------------------------------------------------------
# connections
# --------------------------------------------------------------------------------------------------
def _connect_args(course, application_name=None, keepalive=False):
    """psycopg2's connection parameters (none for SQLite)."""
    from sqlalchemy.engine import make_url

    if course.db_kind == SQLITE:
        return {}
    query = make_url(course.db_url).query
    args = {} if "connect_timeout" in query else {"connect_timeout": CONNECT_TIMEOUT}
    if application_name:
        args["application_name"] = application_name[:63]  # the server keeps 63 bytes
    if keepalive:
        # a lock held for hours: the idle connection kept alive through firewalls and NAT (the client's probes),
        # and the server's probes end the session, and the lock, about two minutes after the grader's machine
        # dropped off the network (not after the system's default of two hours)
        server = "-c tcp_keepalives_idle=60 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=6"
        options = query.get("options") if isinstance(query.get("options"), str) else ""
        args.update(keepalives=1, keepalives_idle=60, keepalives_interval=10, keepalives_count=6,
                    options=f"{options} {server}".strip())  # connect_args replace the URL's own options
    return args


def _database_error(course, error, doing="connect to"):
    """A ``CourseError`` for a database that cannot be reached or refused a request: one line, no password."""
    from sqlalchemy.engine import make_url

    original = getattr(error, "orig", None) or error
    lines = [" ".join(line.split()) for line in str(original).splitlines() if line.strip()]
    reason = lines[0] if lines else type(original).__name__
    # libpq's prefix repeats the host and port that the message names already
    reason = re.sub(r'^connection to server (at|on) .*? failed: ', "", reason) or reason
    password = make_url(course.db_url).password
    if password:
        reason = reason.replace(str(password), "***")
    return CourseError(f"cannot {doing} the {course.db_label}: {reason}")


@contextlib.contextmanager
def _connection(course, **kwargs):
    """A connection of its own (no pool), closed when the block ends; ``CourseError`` when it cannot be made."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    engine = create_engine(course.db_url, poolclass=NullPool, connect_args=_connect_args(course, **kwargs))
    try:
        try:
            connection = engine.connect()
        except DBAPIError as error:
            raise _database_error(course, error) from None
        with connection:
            yield connection
    finally:
        engine.dispose()


def _open(course):
    """nbgrader's ``Gradebook`` (which creates the tables where there are none)."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import DBAPIError

    try:
        return Gradebook(course.db_url, course.course_id)
    except DBAPIError as error:
        raise _database_error(course, error, "open") from None


def _nbgrader_tables():
    from nbgrader.api import Base

    return set(Base.metadata.tables) | {"alembic_version"}


def exists(course):
    """Whether the gradebook is there: the SQLite file exists, or the PostgreSQL database has nbgrader's tables
    (``CourseError`` when the server cannot be reached)."""
    if course.db_kind == SQLITE:
        return os.path.isfile(course.db_path)
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    with _connection(course) as connection:
        try:
            tables = set(inspect(connection).get_table_names())
        except DBAPIError as error:
            raise _database_error(course, error, "read") from None
    return _nbgrader_tables() <= tables


def has_assignment(course, assignment):
    """Whether the gradebook has the assignment (it was released)."""
    from nbgrader.api import MissingEntry

    if not exists(course):
        return False
    with _open(course) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            return False
    return True


# --------------------------------------------------------------------------------------------------
# PostgreSQL's advisory locks: graders of one shared gradebook, in any course folder, on any machine
# --------------------------------------------------------------------------------------------------
class LockBusy(Exception):
    """Someone else holds the advisory lock; ``holder`` says who (as well as the server can tell)."""

    def __init__(self, holder):
        super().__init__(holder)
        self.holder = holder


def lock_key(course, name):
    """The 64-bit key of the course's advisory lock ``name`` (an assignment): the course id and the name, hashed."""
    digest = hashlib.sha256(f"grading\0{course.course_id}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# one key for every course: nbgrader's tables are shared by all the courses of a database
_SCHEMA_KEY = int.from_bytes(hashlib.sha256(b"grading\0nbgrader tables").digest()[:8], "big", signed=True)


def _application_name(holder):
    """What the server shows of a connection: the command, its pid and host (for the message of the refused)."""
    host = socket.gethostname().split(".")[0] or "?"
    return f"{holder} (pid {os.getpid()} on {host})".encode("ascii", "replace").decode()[:63]


@contextlib.contextmanager
def advisory_lock(course, name, holder):
    """Hold the PostgreSQL gradebook's advisory lock ``name`` while the block runs; raise :class:`LockBusy` when
    another session holds it. ``holder`` (e.g. ``"course autograde assignment1"``) names this one for the others.

    The lock belongs to a connection of its own (a session-level lock, not a transaction's), so the server drops
    it when that connection ends: when the block ends, and also when the process is killed. Once it is held,
    nbgrader's tables are created if the database has none (one command at a time, under a lock of their own)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    key = lock_key(course, name)
    with _connection(course, application_name=_application_name(holder), keepalive=True) as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            held = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            if not held:
                raise LockBusy(_holder(connection, key) or "another grader")
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_KEY})
            try:
                _open(course).close()  # creates the tables (and the course's row) where they are missing
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_KEY})
        except DBAPIError as error:
            raise _database_error(course, error, "lock") from None
        yield  # closing the connection ends the session, and with it the lock


def _holder(connection, key):
    """Who holds the advisory lock ``key`` in this database: the application name of its connection (the other
    graders' command, pid and host), else its database user and server process; ``None`` when nobody does."""
    from sqlalchemy import text

    unsigned = key & 0xFFFFFFFFFFFFFFFF  # pg_locks shows a bigint key as two unsigned halves
    row = connection.execute(text(
        "SELECT a.application_name, a.usename, l.pid, a.backend_start FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid) LIMIT 1"),
        {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}).first()
    if row is None:
        return None
    application, user, pid, start = row
    since = f", since {start.replace(microsecond=0).isoformat()}" if start else ""
    if application and application.endswith(")"):  # ours: "COMMAND (pid N on HOST)"
        return f"{application[:-1]}{since})"
    if application:
        return f"{application} ({since[2:] or 'connected'})"
    return f"a session of database user {user or '?'} (server pid {pid}{since})"


def advisory_lock_holder(course, name):
    """Who holds the PostgreSQL gradebook's advisory lock ``name`` now (see :func:`advisory_lock`), or ``None``;
    always ``None`` for an SQLite gradebook."""
    from sqlalchemy.exc import DBAPIError

    if course.db_kind == SQLITE:
        return None
    with _connection(course, application_name="course status") as connection:
        try:
            return _holder(connection, lock_key(course, name))
        except DBAPIError as error:
            raise _database_error(course, error, "read") from None


# --------------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------------
def max_scores(course, assignment):
    """``(autograded points, written points)`` of an assignment."""
    with _open(course) as gb:
        found = gb.find_assignment(assignment)
        return float(found.max_code_score), float(found.max_written_score)


def record_students(course, students):
    """Add students (e.g. whose every file was invalid) so that the grades list them with 0 points."""
    if students:
        with _open(course) as gb:
            for student in students:
                gb.update_or_create_student(student)


def record_failure(course, assignment, student):
    """A submission that could not be graded: 0 for every autograded cell, flagged for the instructor."""
    with _open(course) as gb:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        for notebook in submission.notebooks:
            notebook.flagged = True
            for grade in notebook.grades:
                if grade.cell.cell_type == "code":
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = grade.manual_score is not None
        gb.db.commit()


def code_score(course, assignment, student):
    """``(autograded score, autograded maximum)`` of one student."""
    from nbgrader.api import MissingEntry

    with _open(course) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return 0.0, float(gb.find_assignment(assignment).max_code_score)
        return float(submission.code_score or 0.0), float(submission.max_code_score or 0.0)


def code_scores(course, assignment):
    """``{student: (autograded score, autograded maximum)}`` of every student with a submission of the assignment."""
    from nbgrader.api import MissingEntry

    if not exists(course):
        return {}
    with _open(course) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return {}
        return {submission.student.id: (float(submission.code_score or 0.0), float(submission.max_code_score or 0.0))
                for submission in found.submissions}


GRADE_COLUMNS = ["student", "assignment", "score", "max_score", "autograded_score", "written_score",
                 "needs_manual_grade"]


def cell_scores(course, assignment, notebook, cell, students):
    """``{student: (auto score, max score)}`` of one graded cell, for the students who have a submission."""
    from nbgrader.api import MissingEntry

    if not exists(course):
        return {}
    scores = {}
    with _open(course) as gb:
        for student in students:
            try:
                submitted = gb.find_submission_notebook(notebook, assignment, student)
            except MissingEntry:
                continue
            for grade in submitted.grades:
                if grade.name == cell:
                    scores[student] = (float(grade.auto_score or 0.0), float(grade.max_score or 0.0))
    return scores


def grade_rows(course):
    """One row per student and assignment in the gradebook (0 points where nothing was submitted)."""
    from nbgrader.api import MissingEntry

    if not exists(course):
        raise CourseError("no gradebook yet: run `course release` and `course autograde` first")
    rows = []
    with _open(course) as gradebook:
        assignments = sorted(gradebook.assignments, key=lambda a: a.name)
        for student in sorted(gradebook.students, key=lambda s: s.id):
            for assignment in assignments:
                try:
                    submission = gradebook.find_submission(assignment.name, student.id)
                except MissingEntry:
                    rows.append({"student": student.id, "assignment": assignment.name, "score": 0.0,
                                 "max_score": float(assignment.max_score), "autograded_score": 0.0,
                                 "written_score": 0.0, "needs_manual_grade": False})
                    continue
                rows.append({"student": student.id, "assignment": assignment.name,
                             "score": float(submission.score), "max_score": float(submission.max_score),
                             "autograded_score": float(submission.code_score),
                             "written_score": float(submission.written_score),
                             "needs_manual_grade": bool(submission.needs_manual_grade)})
    if not rows:
        raise CourseError("the gradebook has no student yet: run `course autograde` first")
    return rows


