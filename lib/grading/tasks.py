"""Grading one notebook of one submission as a plain function, and the runners that call it here or on a cluster.

:func:`grade_notebook` ``(task, checks) -> GradedNotebook`` executes a student's prepared notebook in a fresh seal
(:mod:`grading.seal`), rebuilds the cells' outputs from known fields only, decides every graded test cell from
the outputs of the student's functions (:meth:`grading.verdicts.Plan.verdicts`) and returns

* the **scores**: points and maximum of every graded test cell, with the verdict's message;
* the **executed notebook**: the cells' outputs, each graded test cell's only output being its verdict;
* the **log** of the seal (the kernel's and the executor's standard error, at most :data:`LOG_LIMIT`).

It reads nothing from the course folder and writes nothing to the gradebook: everything it needs travels with
the task (the notebook after nbgrader's preparation, the assignment's supporting files, the limits) and with the
assignment's :class:`NotebookChecks` (the recorded plan and the inputs of its calls, shared by the whole class).
It runs wherever the course's Python environment and a working bubblewrap are:

* :class:`LocalRunner`: in the grader's own threads, each notebook in a seal process of its own, ``jobs`` at once;
* :class:`DaskRunner`: on the workers of a Dask distributed cluster (``course autograde --scheduler
  tcp://HOST:PORT``). Each worker needs the same course environment as the grader (checked before grading:
  :func:`library_digest`) and runs its seals itself.

The grader (:mod:`grading.pipeline`) stays the only writer of the gradebook: it prepares each notebook with
nbgrader's steps, hands the task to a runner, waits for the result, and puts the returned outputs into the notebook
that nbgrader's ``SaveAutoGrades`` scores.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import hashlib
import os
import pickle
import re
import shutil
import stat
import tempfile
import threading
import uuid
from dataclasses import dataclass, field

from .seal import SEAL_SLOTS, Seal, SealLimits, SealUnavailable, find_bwrap, sealed_packages, terminate_group

__all__ = ["GradingTask", "NotebookChecks", "GradedNotebook", "grade_notebook", "library_digest", "LocalRunner",
           "DaskRunner", "WorkerMismatch", "FAILURE", "verdict_output", "stop_reason", "check_scheduler_address"]

#: the error name of a failed verdict in the autograded notebook
FAILURE = "GradingFailure"
#: the most of a seal's log that comes back with its result (its end: where a crash shows)
LOG_LIMIT = 256 * 1024


class WorkerMismatch(RuntimeError):
    """The worker's course library differs from the grader's: its verdicts could differ, so it grades nothing."""


# --------------------------------------------------------------------------------------------------
# what travels
# --------------------------------------------------------------------------------------------------
@dataclass
class NotebookChecks:
    """The checks of one notebook of an assignment, the same for every student (sent once to each worker)."""

    assignment: str
    notebook: str
    plan: object  # grading.verdicts.Plan: the inputs of every check and what each result must be
    hidden_modules: tuple = ()  # poisoning modules replaced by stubs in the seal (they hold the answers)

    def __post_init__(self):
        self.inputs = pickle.dumps(self.plan.inputs())  # what every seal gets: the inputs, no expected result


@dataclass
class GradingTask:
    """One notebook of one student, ready to be executed: nothing in it refers to the grader's machine."""

    assignment: str
    student: str
    notebook: str
    content: str  # the notebook after nbgrader's preparation, as nbformat JSON
    files: dict = field(default_factory=dict)  # name -> bytes: the assignment's supporting files
    limits: SealLimits = field(default_factory=SealLimits)
    cell_timeout: int = 60
    library: str = ""  # library_digest() of the grader; "" skips the check
    keep_job: bool = False  # leave the job folder (notebook, inputs, files, log) where it ran, for debugging
    run_id: str = ""  # the grading run it belongs to: stopping that run stops its seals only


@dataclass
class GradedNotebook:
    """What :func:`grade_notebook` returns: scores, the executed notebook and the log."""

    student: str
    notebook: str
    content: str  # the executed notebook (nbformat JSON), each graded test cell's verdict as its only output
    scores: dict  # grade id -> (points, max points)
    verdicts: dict  # grade id -> (passed, message)
    log: str
    answered: bool  # the seal answered; False: stopped by a limit, killed, or crashed (every test cell fails)
    stopped: str | None = None  # why the seal was ended: "wall clock", "memory", "cpu", "output"
    error: str | None = None  # e.g. the kernel died
    seconds: float = 0.0
    cell_errors: dict = field(default_factory=dict)  # grade id -> the first error its cell showed
    timeouts: int = 0  # cells past the cell timeout
    memory: int = 0  # cells that ran out of memory
    worker: str = ""  # where it ran: "local" or the Dask worker's address
    job_folder: str = ""  # where the job folder was kept (GradingTask.keep_job), on the machine that ran it

    @property
    def score(self):
        return sum(points for points, _ in self.scores.values())

    @property
    def max_score(self):
        return sum(maximum for _, maximum in self.scores.values())

    @property
    def first_failure(self):
        for gid, (passed, message) in self.verdicts.items():
            if not passed:
                return f"{gid}: {message}"
        return ""


# --------------------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------------------
_digest = None


def library_digest():
    """A hash of the ``grading`` and ``poisoning`` sources and the Python version: equal on the grader and its
    workers when they run the same course code."""
    global _digest
    if _digest is None:
        import sys

        import grading
        import poisoning

        digest = hashlib.sha256(f"python {sys.version_info[0]}.{sys.version_info[1]}\n".encode())
        for package in (grading, poisoning):
            root = os.path.dirname(os.path.realpath(package.__file__))
            for folder, folders, files in os.walk(root):
                folders[:] = sorted(f for f in folders if f != "__pycache__")
                for name in sorted(f for f in files if f.endswith(".py")):
                    path = os.path.join(folder, name)
                    with open(path, "rb") as handle:
                        content = handle.read()
                    digest.update(f"{package.__name__}/{os.path.relpath(path, root)}\0".encode())
                    digest.update(hashlib.sha256(content).digest())
        _digest = "sha256:" + digest.hexdigest()
    return _digest


def _clean_outputs(raw):
    """The outputs of one cell as the seal reported them, rebuilt from known fields only."""
    from nbformat.v4 import new_output

    def text(value, limit=1_000_000):
        if isinstance(value, list):
            value = "".join(v for v in value if isinstance(v, str))
        return value[:limit] if isinstance(value, str) else ""

    cleaned = []
    for output in raw if isinstance(raw, list) else []:
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
            cleaned.append(new_output("stream", name=name, text=text(output.get("text"))))
        elif kind == "error":
            traceback = output.get("traceback")
            traceback = [text(line, 10_000) for line in traceback[:200]] if isinstance(traceback, list) else []
            cleaned.append(new_output("error", ename=text(output.get("ename"), 200),
                                      evalue=text(output.get("evalue"), 10_000), traceback=traceback))
        elif kind in ("display_data", "execute_result"):
            data = output.get("data") if isinstance(output.get("data"), dict) else {}
            kept = {mime: text(value) for mime, value in data.items()
                    if mime in ("text/plain", "text/html", "text/markdown", "text/latex", "image/png",
                                "image/jpeg", "image/svg+xml") and isinstance(value, (str, list))}
            if kind == "execute_result":
                count = output.get("execution_count")
                count = count if isinstance(count, int) and not isinstance(count, bool) else None
                cleaned.append(new_output("execute_result", data=kept, execution_count=count))
            else:
                cleaned.append(new_output("display_data", data=kept))
    return cleaned


def graded_cells(nb):
    """``{grade id: cell}`` of the graded test cells (code, not solution)."""
    found = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            found[meta.get("grade_id")] = cell
    return found


def verdict_output(gid, passed, message):
    """The only output of a graded test cell: a line on standard output when it passed, an error otherwise
    (which nbgrader's ``SaveAutoGrades`` scores 0)."""
    from nbformat.v4 import new_output

    if passed:
        return new_output("stream", name="stdout", text=f"{gid}: {message} (checked by the grader)\n")
    return new_output("error", ename=FAILURE, evalue=message, traceback=[f"{FAILURE}: {gid}: {message}"])


def stop_reason(stopped, limits):
    """Why a seal gave no answer, in the words of the summary."""
    if stopped == "wall clock":
        return f"timeout: stopped after {limits.wall_seconds} s (wall clock)"
    if stopped == "memory":
        return f"memory limit: its processes used more than {limits.memory_mb} MB together"
    if stopped == "cpu":
        return "CPU limit: its processes used too much CPU time together"
    if stopped == "output":
        return f"output limit: it printed more than {limits.output_mb} MB"
    return "the seal gave no answer (its executor was killed or crashed)"


def _tail(path, limit=LOG_LIMIT):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return (f"[the first {size - limit} bytes of the log are left out]\n" if size > limit else "") + text


def grade_notebook(task, checks):
    """Execute ``task`` (a :class:`GradingTask`) in a fresh seal and decide its graded test cells with ``checks``
    (its notebook's :class:`NotebookChecks`); returns a :class:`GradedNotebook`.

    Nothing the student's code does raises here: a crash, a loop, a limit is in the result (``answered``,
    ``stopped``, ``error``) and every test cell without a right output gets 0 points. It raises only for the
    grader's own problems: :class:`WorkerMismatch` when this machine runs other course code than the grader,
    :class:`grading.seal.SealUnavailable` when no bubblewrap works here, ``KeyboardInterrupt`` after
    :func:`grading.seal.terminate_group` of its run.
    """
    import nbformat

    if task.library and task.library != library_digest():
        raise WorkerMismatch(f"{_where()} runs other course code than the grader (library {library_digest()[:19]}, "
                             f"grader {task.library[:19]}): install the same version of the course there")
    if (checks.assignment, checks.notebook) != (task.assignment, task.notebook):
        raise ValueError(f"checks of {checks.assignment}/{checks.notebook} given for {task.assignment}/{task.notebook}")
    nb = nbformat.reads(task.content, as_version=4)
    with _sealed(task.assignment, tuple(checks.hidden_modules), task.limits) as (seal, scratch):
        job = os.path.join(scratch, "jobs", f"{task.student}--{task.notebook}--{uuid.uuid4().hex[:8]}")
        os.makedirs(os.path.join(job, "files"))  # not mkdtemp: the seal's user must be able to read it
        log_path = job + ".log"
        try:
            nbformat.write(nb, os.path.join(job, "notebook.ipynb"))
            with open(os.path.join(job, "inputs.pickle"), "wb") as handle:
                handle.write(checks.inputs)
            for name, content in sorted(task.files.items()):
                if os.path.basename(name) != name or name in ("", ".", ".."):
                    raise ValueError(f"a supporting file's name must be a plain file name, got {name!r}")
                with open(os.path.join(job, "files", name), "wb") as handle:
                    handle.write(content)
            with seal_slot() as slot:
                outcome = seal.run(job, slot=slot, cell_timeout=task.cell_timeout, log_path=log_path,
                                   group=task.run_id or None)
            log = _tail(log_path)
        finally:
            if not task.keep_job:
                shutil.rmtree(job, ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.remove(log_path)

    result = outcome.result or {}
    outputs = result.get("outputs") if isinstance(result.get("outputs"), dict) else {}
    counts = result.get("counts") if isinstance(result.get("counts"), dict) else {}
    cell_errors, timeouts, memory = {}, 0, 0
    graded = {id(cell): gid for gid, cell in graded_cells(nb).items()}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = _clean_outputs(outputs.get(str(index)))
        count = counts.get(str(index))
        cell.execution_count = count if isinstance(count, int) and not isinstance(count, bool) else None
        for output in cell.outputs:
            if output.output_type == "error":
                timeouts += output.ename == "CellTimeoutError"
                memory += output.ename == "MemoryError"
                if id(cell) in graded and graded[id(cell)] not in cell_errors:
                    cell_errors[graded[id(cell)]] = " ".join(f"{output.ename}: {output.evalue}".split())[:120]
    answered = outcome.result is not None
    verdicts = checks.plan.verdicts(result.get("records", []), cell_errors)
    scores, decided = {}, {}
    for gid, cell in graded_cells(nb).items():
        passed, message = verdicts.get(gid, (False, "this test cell is not one of the assignment's"))
        if not answered:
            passed, message = False, "the notebook could not be executed: " + stop_reason(outcome.stopped, task.limits)
        cell.outputs = [verdict_output(gid, passed, message)]
        points = float(checks.plan.points.get(gid, cell.metadata.get("nbgrader", {}).get("points", 0)) or 0)
        scores[gid] = (points if passed else 0.0, points)
        decided[gid] = (bool(passed), message)
    error = result.get("error") if isinstance(result.get("error"), str) else None
    return GradedNotebook(task.student, task.notebook, nbformat.writes(nb), scores, decided, log, answered, outcome.stopped,
                          error, outcome.seconds, cell_errors, timeouts, memory, _where(),
                          job if task.keep_job else "")


def _where():
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


# --------------------------------------------------------------------------------------------------
# seals and slots of this process
# --------------------------------------------------------------------------------------------------
_seals = {}  # (assignment, hidden modules, limits) -> (Seal, its scratch folder)
_in_use = collections.Counter()  # the same key -> notebooks being graded with it now
_seals_lock = threading.Lock()


@contextlib.contextmanager
def _sealed(assignment, hidden_modules, limits):
    """``(Seal, scratch folder)`` for one assignment's notebooks, made once per process and kept while in use."""
    key = (assignment, hidden_modules, limits)
    with _seals_lock:
        if key not in _seals:
            scratch = tempfile.mkdtemp(prefix="course-seal-")
            try:
                _seals[key] = Seal(limits, sealed_packages(scratch, list(hidden_modules), assignment), scratch), scratch
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
        _in_use[key] += 1
        found = _seals[key]
    try:
        yield found
    finally:
        with _seals_lock:
            _in_use[key] -= 1


@atexit.register
def release_seals():
    """Delete the scratch folders of this process's seals that no notebook is using (at the end of a run, and when
    the process ends); another run's seals in use stay."""
    with _seals_lock:
        for key in [key for key in _seals if not _in_use[key]]:
            shutil.rmtree(_seals.pop(key)[1], ignore_errors=True)
            del _in_use[key]


@contextlib.contextmanager
def seal_slot():
    """A seal number no other seal on this machine holds (an ``flock`` on a file per number), also across the
    processes of several graders or Dask workers: as root, seal number i runs as uid ``UID_BASE + i``, and two seals
    must not share a uid (their processes would count against one limit)."""
    folder = os.path.join(tempfile.gettempdir(), f"course-seal-slots-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SealUnavailable(f"{folder} is not a folder of this user's: cannot number the seals")
    for slot in range(SEAL_SLOTS):
        fd = os.open(os.path.join(folder, f"{slot}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield slot
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    raise SealUnavailable(f"more than {SEAL_SLOTS} seals at once on this machine")


def _probe():
    """On a worker: ``(library digest, problem with bubblewrap or "")``."""
    try:
        find_bwrap()
        problem = ""
    except SealUnavailable as error:
        problem = str(error)
    return library_digest(), problem


# --------------------------------------------------------------------------------------------------
# runners
# --------------------------------------------------------------------------------------------------
class LocalRunner:
    """Grades in the grader's own threads: each notebook in a seal process of its own, ``jobs`` at once."""

    def __init__(self, jobs=None):
        self.jobs = jobs or os.cpu_count() or 1
        self.checks = {}
        self.run_id = uuid.uuid4().hex  # this run's seals, for stop()

    @property
    def description(self):
        return f"{self.jobs} at a time on this machine"

    def connect(self):
        """Fail now (:class:`SealUnavailable`) when no bubblewrap works here."""
        find_bwrap()

    def start(self, checks):
        """``checks``: ``{notebook: NotebookChecks}``."""
        self.checks = dict(checks)

    def grade(self, task):
        return grade_notebook(task, self.checks[task.notebook])

    def stop(self):
        """Kill this run's seals still running and start no new one (Ctrl-C)."""
        terminate_group(self.run_id)

    def close(self):
        release_seals()


_ADDRESS = re.compile(r"^(?:(tcp|tls)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")


def check_scheduler_address(address):
    """``address`` if it names a Dask scheduler as ``tcp://HOST:PORT`` (or ``tls://``, or ``HOST:PORT``);
    ``ValueError`` with one line otherwise."""
    match = _ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if not match or not 0 < int(match[3]) < 65536:
        raise ValueError(f"a Dask scheduler's address is tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), got {address!r}")
    return address.strip()


class DaskRunner:
    """Grades on the workers of a Dask distributed cluster; the grader only prepares, waits and records.

    Each worker must run the course's environment (the same ``grading`` and ``poisoning``, checked before
    anything is graded) on Linux with a working bubblewrap. By default as many notebooks are in flight as the
    cluster has worker threads (``jobs`` overrides).
    """

    def __init__(self, address, jobs=None, timeout=20):
        self.address = address
        self.requested_jobs = jobs
        self.timeout = timeout
        self.client = None
        self.checks = {}
        self.futures = set()
        self._futures_lock = threading.Lock()
        self.jobs = jobs or 1
        self.run_id = uuid.uuid4().hex  # this run's seals on the workers, for stop()

    @property
    def description(self):
        workers = len(self.client.scheduler_info().get("workers", {})) if self.client else 0
        return f"on the Dask cluster at {self.address} ({workers} worker{'s' if workers != 1 else ''}, {self.jobs} at a time)"

    def connect(self):
        """Reach the scheduler, wait for a worker, and check every worker (the same course code, bubblewrap);
        :class:`grading.coursedir.CourseError` with one line otherwise."""
        from .coursedir import CourseError

        try:
            check_scheduler_address(self.address)
        except ValueError as error:
            raise CourseError(str(error)) from None
        try:
            from distributed import Client
        except ImportError:
            raise CourseError("--scheduler needs Dask: install the course's cluster extra "
                              "(pip install 'dask[distributed]')") from None
        try:
            self.client = Client(self.address, timeout=self.timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise CourseError(f"cannot reach the Dask scheduler at {self.address}: "
                              f"{' '.join(str(error).split())[:200] or type(error).__name__}") from None
        try:
            self.client.wait_for_workers(1, timeout=self.timeout)
        except (TimeoutError, OSError):
            self.close()
            raise CourseError(f"the Dask scheduler at {self.address} has no worker "
                              f"(waited {self.timeout} s): start workers with `dask worker {self.address}`") from None
        probes = self.client.run(_probe)
        ours = library_digest()
        for worker, (digest, problem) in sorted(probes.items()):
            if digest != ours:
                self.close()
                raise CourseError(f"Dask worker {worker} runs other course code than this grader: "
                                  "install the same version of the course there")
            if problem:
                self.close()
                raise CourseError(f"Dask worker {worker} cannot seal submissions: {problem}")
        nthreads = sum(self.client.nthreads().values())
        self.jobs = self.requested_jobs or max(1, nthreads)

    def start(self, checks):
        """``checks``: ``{notebook: NotebookChecks}``, sent once to every worker."""
        # sent once to every worker, not with every task
        self.checks = {name: self.client.scatter(value, broadcast=True, hash=False) for name, value in checks.items()}

    def grade(self, task):
        future = self.client.submit(grade_notebook, task, self.checks[task.notebook], pure=False,
                                    key=f"grade-{task.assignment}-{task.student}-{task.notebook}-{uuid.uuid4().hex[:8]}")
        with self._futures_lock:
            self.futures.add(future)
        try:
            return future.result()
        finally:
            with self._futures_lock:
                self.futures.discard(future)

    def stop(self):
        """Cancel what is queued and kill this run's seals on the workers (Ctrl-C); other graders' seals on the
        same workers go on."""
        if self.client is None:
            return
        with self._futures_lock:
            futures = list(self.futures)
        with contextlib.suppress(Exception):
            self.client.cancel(futures, force=True)
        with contextlib.suppress(Exception):
            self.client.run(terminate_group, self.run_id)

    def close(self):
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.run(release_seals)
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None


def graded_log(graded):
    """The log of one graded notebook as the grader keeps it: where it ran, then the seal's log."""
    kept = f"; job folder kept in {graded.job_folder}" if graded.job_folder else ""
    where = "locally" if graded.worker == "local" else "on " + graded.worker
    return f"[{graded.notebook}: graded {where}{kept}]\n{graded.log}"


def outcome_summary(graded):
    """The fields of a :class:`GradedNotebook` that the grader's status reports read, as a dict."""
    return {"answered": graded.answered, "stopped": graded.stopped, "error": graded.error, "seconds": graded.seconds,
            "timeouts": graded.timeouts, "memory": graded.memory, "cell_errors": graded.cell_errors,
            "first_failure": graded.first_failure, "worker": graded.worker, "verdicts": dict(graded.verdicts)}


