"""What ``course autograde`` has done so far, per student, and the lock that keeps two graders apart.

* **The state file** ``.grading/state/<assignment>.json`` records, for every student whose grading step finished,
  the submission it graded (a content hash of the student's notebook files), the outcome (``graded`` or
  ``failed``), the autograded score and why it failed. It is rewritten as each student finishes, atomically (a
  temporary file in the same folder, then ``os.replace``), so a grader killed at any moment leaves either the old
  or the new file, never half of one. A rerun skips the students graded successfully from the same submission;
  the others (failed, interrupted, new, resubmitted) are graded again, and nbgrader replaces their grades.
* **The lock** ``.grading/locks/<assignment>.lock`` is held (``fcntl.flock``, exclusive) by the command that grades
  or releases the assignment; a second one is refused with one line that names the holder. The operating system
  drops the lock when its holder ends, also when it is killed. With a PostgreSQL gradebook, which instructors may
  share from other course folders or machines, the command also holds the assignment's advisory lock in that
  database (:func:`grading.gradebook.advisory_lock`), on a connection of its own: a grader of the same assignment
  anywhere is refused, and the server drops the lock with the connection, also when its holder is killed.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import glob
import hashlib
import json
import os
import tempfile
import threading
import time

from . import gradebook
from .coursedir import SQLITE, CourseError

__all__ = ["GradingState", "assignment_lock", "lock_holder", "submission_hash", "submitted_hashes", "status_rows",
           "GRADED", "FAILED", "PENDING"]

FORMAT = 1
GRADED, FAILED, PENDING = "graded", "failed", "pending"


def _grading_dir(course, *parts):
    return os.path.join(course.root, ".grading", *parts)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------------------------------
# submissions
# --------------------------------------------------------------------------------------------------
def submission_hash(paths):
    """The content hash of one student's submission: ``paths`` is ``{notebook name: file}``."""
    digest = hashlib.sha256()
    for notebook in sorted(paths):
        with open(paths[notebook], "rb") as handle:
            content = hashlib.sha256(handle.read()).hexdigest()
        digest.update(f"{notebook}\0{content}\n".encode())
    return "sha256:" + digest.hexdigest()


def submitted_hashes(course, assignment, notebooks):
    """``{student: hash}`` of every submission collected in ``submitted/<student>/<assignment>/``."""
    found = {}
    for folder in sorted(glob.glob(course.path("submitted", "*", assignment))):
        student = os.path.basename(os.path.dirname(folder))
        paths = {nb: os.path.join(folder, nb + ".ipynb") for nb in notebooks}
        paths = {nb: path for nb, path in paths.items() if os.path.isfile(path)}
        if paths:
            found[student] = submission_hash(paths)
    return found


# --------------------------------------------------------------------------------------------------
# the state file
# --------------------------------------------------------------------------------------------------
class GradingState:
    """The per-student state of one assignment; :meth:`record` writes the file at once (thread-safe)."""

    def __init__(self, course, assignment):
        self.assignment = assignment
        self.path = _grading_dir(course, "state", f"{assignment}.json")
        self.students = {}
        self._lock = threading.Lock()
        if os.path.exists(self.path):
            try:
                with open(self.path) as handle:
                    data = json.load(handle)
                students = data["students"]
                if data.get("format") != FORMAT or not isinstance(students, dict):
                    raise ValueError(f"unknown format {data.get('format')!r}")
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise CourseError(f"cannot read the grading state {self.path} ({error}); move it away to grade "
                                  "every student again") from None
            self.students = {str(k): v for k, v in students.items() if isinstance(v, dict)}

    def get(self, student):
        return self.students.get(student)

    def is_graded(self, student, digest):
        """Whether ``student`` was graded successfully from the submission with hash ``digest``."""
        entry = self.students.get(student)
        return bool(entry) and entry.get("state") == GRADED and digest is not None and entry.get("submission") == digest

    def record(self, student, state, *, submission, score, max_score, status, reason="", seconds=None):
        """Record one finished student and write the file (atomically) before returning."""
        entry = {"state": state, "submission": submission, "score": float(score), "max_score": float(max_score),
                 "status": status, "reason": reason, "seconds": None if seconds is None else round(float(seconds), 2),
                 "finished": _now()}
        with self._lock:
            self.students[student] = entry
            self._write()

    def mark_pending(self, students, digests):
        """Record that ``students`` are about to be graded from the submissions ``digests`` (one write for all):
        until :meth:`record` says otherwise they are pending, whatever an earlier run recorded."""
        if not students:
            return
        with self._lock:
            for student in students:
                previous = self.students.get(student) or {}
                self.students[student] = {"state": PENDING, "submission": digests.get(student), "started": _now(),
                                          "previous": previous.get("state")}
            self._write()

    def _write(self):
        folder = os.path.dirname(self.path)
        os.makedirs(folder, exist_ok=True)
        data = {"format": FORMAT, "assignment": self.assignment,
                "students": {k: self.students[k] for k in sorted(self.students)}}
        fd, temporary = tempfile.mkstemp(prefix=f".{self.assignment}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise
        with contextlib.suppress(OSError):  # the rename itself, on disk
            directory = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


# --------------------------------------------------------------------------------------------------
# the lock
# --------------------------------------------------------------------------------------------------
def _lock_path(course, assignment):
    return _grading_dir(course, "locks", f"{assignment}.lock")


def _holder_text(handle):
    with contextlib.suppress(OSError):
        handle.seek(0)
        text = " ".join(handle.read(500).split())
        if text:
            return text
    return "another course command"


@contextlib.contextmanager
def assignment_lock(course, assignment, command):
    """Hold the assignment's lock while the block runs; refuse (``CourseError``) while another command holds it.

    ``command`` (e.g. ``"course autograde assignment1"``) is written into the lock file for the others' message.
    With a PostgreSQL gradebook, the assignment's advisory lock in that database is held too (taken after the
    file's lock), so that a grader of the same assignment in another course folder, or on another machine, is
    refused as well."""
    path = _lock_path(course, assignment)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle = open(path, "a+")  # never truncated before the lock is held
    try:
        for attempt in range(10):  # a brief wait: `course status` may be looking at the lock
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if attempt == 9:
                    raise CourseError(f"{assignment} is busy: {_holder_text(handle)} holds its lock "
                                      f"(.grading/locks/{assignment}.lock); wait until it ends, then run this "
                                      "again") from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} (pid {os.getpid()}, since {_now()})\n")
        handle.flush()
        try:
            with _shared_lock(course, assignment, command):
                yield
        finally:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
    finally:
        handle.close()  # releases the lock


@contextlib.contextmanager
def _shared_lock(course, assignment, command):
    """The assignment's advisory lock in a PostgreSQL gradebook (nothing for SQLite, whose file is the course's)."""
    if course.db_kind == SQLITE:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(gradebook.advisory_lock(course, assignment, command))
        except gradebook.LockBusy as busy:
            raise CourseError(f"{assignment} is busy: {busy.holder} is grading or releasing it against the same "
                              f"gradebook ({course.db_label}); wait until it ends, then run this again") from None
        yield


def lock_holder(course, assignment):
    """Who holds the assignment's lock now (the text its holder wrote), or ``None``. With a PostgreSQL gradebook,
    also a holder in another course folder or on another machine (the connection that holds the advisory lock)."""
    path = _lock_path(course, assignment)
    if os.path.exists(path):
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _holder_text(handle)
            fcntl.flock(handle, fcntl.LOCK_UN)
    return gradebook.advisory_lock_holder(course, assignment)


# --------------------------------------------------------------------------------------------------
# `course status`
# --------------------------------------------------------------------------------------------------
def status_rows(course, assignment, notebooks, scores):
    """One row per student known for the assignment (collected, or in the state file): ``(student, state, score,
    max, detail)``, state one of graded, pending and failed. ``scores`` is ``{student: (score, max)}`` from the
    gradebook (the state file's score stands in for a student missing there)."""
    state = GradingState(course, assignment)
    hashes = submitted_hashes(course, assignment, notebooks)
    rows = []
    for student in sorted(set(hashes) | set(state.students)):
        entry, digest = state.get(student), hashes.get(student)
        if entry and entry.get("state") == PENDING:
            rows.append((student, PENDING, None, None, f"grading started {entry.get('started', '')}, not finished"))
            continue
        if digest is not None and (not entry or entry.get("submission") != digest):
            if not entry:
                detail = "collected, not graded yet"
            elif entry.get("state") == GRADED:
                detail = "graded from an older submission"
            else:
                detail = "failed on an older submission"
            rows.append((student, PENDING, None, None, detail))
            continue
        score, max_score = scores.get(student, (entry.get("score"), entry.get("max_score")))
        if entry.get("state") == GRADED:
            if student not in scores:
                rows.append((student, PENDING, None, None, "graded, but not in the gradebook"))
                continue
            status = entry.get("status") or ""
            rows.append((student, GRADED, score, max_score, "" if status == GRADED else status))
        else:
            status, reason = entry.get("status") or "", entry.get("reason") or ""
            detail = status if not reason or reason in status else f"{status}: {reason}"
            rows.append((student, FAILED, score, max_score, detail or "failed"))
    return rows
