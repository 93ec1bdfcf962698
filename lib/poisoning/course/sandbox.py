"""Run one student's autograde in a child process with resource limits.

nbgrader executes student notebooks as the user who grades, with no isolation. ``course autograde`` therefore
runs every student's ``nbgrader autograde`` in its own child process (:func:`run_sandboxed`), started as

    [unshare --net --pid --fork --kill-child]  python -m poisoning.course.sandbox ...

* **resource limits** (``resource.setrlimit`` in a preexec function, i.e. in the child before it executes
  anything, inherited by the Jupyter kernel that runs the student's code): address space (memory), CPU
  seconds, size of any file written, number of processes, no core dumps;
* a **wall-clock timeout** for the whole student, after which the child and everything it started are killed;
* a **scrubbed environment** (a short whitelist, no variables of the grader's shell) and a throwaway ``HOME``,
  ``TMPDIR`` and Jupyter runtime directory;
* **no network** where the platform allows it: a new network namespace (``unshare --net``; as a normal user
  together with a user namespace), in which only an unconfigured loopback device exists. The kernel talks to
  nbgrader over Unix sockets (ZeroMQ ``ipc`` transport), so it needs no network at all. A new PID namespace
  makes sure that no process the student's code starts outlives the grading. Where ``unshare`` is missing or
  not permitted, the child runs without these namespaces and :func:`isolation` says so.

The child writes its result (success, log, error) as JSON; the parent merges the scores into the course's
gradebook (see :mod:`poisoning.course.grading`).

What this does **not** protect against:

* the file system: the child runs as the grading user, so student code can read (and, within the file-size
  limit, write) whatever that user can, e.g. the course's solutions or gradebook. Run the grader as a dedicated
  user, or in a container, that can reach nothing else of value;
* tampering inside the kernel: student code runs in the same kernel as the test cells and can, for example,
  replace the check helpers or its scratch gradebook and so raise its own score. This cannot reach other
  students (each has its own scratch copy, and only the parent writes the course's gradebook, clamping every
  score to the points of its cell), but a suspicious score needs a human look;
* the limits are per process: ``RLIMIT_NPROC`` counts every process of the grading user (not of one sandbox)
  and does not bind root, so a student who starts many processes multiplies the memory and CPU limits until
  the wall-clock timeout ends them all;
* without ``unshare`` (another OS, or a container that forbids namespaces) student code can use the network,
  and a process it detaches may outlive the grading.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

try:
    import resource
except ImportError:  # not on Windows
    resource = None

__all__ = ["SandboxLimits", "SandboxOutcome", "isolation", "spawn_sandboxed", "run_sandboxed", "scrubbed_environment",
           "terminate_all", "allow_new_children"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one student's autograde (per process, except ``wall_seconds`` and ``processes``)."""

    memory_mb: int = 4096  # address space of each process (the grader and the kernel)
    cpu_seconds: int = 300  # CPU time of each process
    wall_seconds: int = 900  # wall-clock time of the whole child, kernel included
    file_size_mb: int = 256  # the largest file a process may write
    processes: int = 256  # processes and threads the child may add to those the user already runs

    def validate(self):
        for name in ("memory_mb", "cpu_seconds", "wall_seconds", "file_size_mb", "processes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class SandboxOutcome:
    returncode: int | None  # None: killed at the wall-clock timeout
    timed_out: bool
    seconds: float
    result: dict | None  # what the child wrote, None when it wrote nothing


# --------------------------------------------------------------------------------------------------
# network and PID isolation
# --------------------------------------------------------------------------------------------------
_isolation_cache = None


def _unshare_candidates():
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return []
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [
        ([unshare, *user, "--net", "--pid", "--fork", "--kill-child"], "no network, own PID namespace"),
        ([unshare, *user, "--net"], "no network"),
    ]


def isolation():
    """``(prefix, note)``: the command prefix that isolates the child, and a one-line description.

    Probes the candidates once (``unshare`` with network and PID namespaces, then network only) and falls
    back to no prefix, with a note saying that student code may use the network.
    """
    global _isolation_cache
    if _isolation_cache is None:
        _isolation_cache = ([], "unshare is not available or not permitted here: "
                                "student code runs without network isolation")
        for prefix, note in _unshare_candidates():
            try:
                probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True, timeout=30)
            except (OSError, subprocess.SubprocessError):
                continue
            if probe.returncode == 0:
                _isolation_cache = (prefix, note)
                break
    return _isolation_cache


# --------------------------------------------------------------------------------------------------
# limits and environment
# --------------------------------------------------------------------------------------------------
def _tasks_of_current_user():
    """Processes and threads this user runs now (what ``RLIMIT_NPROC`` counts), 0 where unknown."""
    uid = os.getuid()
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return count


def _rlimits(limits):
    """The ``(resource, (soft, hard))`` pairs to set in the child."""
    if resource is None:
        return []
    pairs = [
        (resource.RLIMIT_AS, limits.memory_mb * MIB),
        (resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5)),
        (resource.RLIMIT_FSIZE, limits.file_size_mb * MIB),
        (resource.RLIMIT_CORE, 0),
    ]
    if hasattr(resource, "RLIMIT_NPROC"):
        pairs.append((resource.RLIMIT_NPROC, _tasks_of_current_user() + limits.processes))
    result = []
    for which, value in pairs:
        soft, hard = value if isinstance(value, tuple) else (value, value)
        old_soft, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:  # never ask for more than allowed
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        result.append((which, (soft, hard)))
    return result


def _make_preexec(rlimits):
    """The function the child runs between fork and exec: only ``setrlimit`` calls (no imports, no locks)."""
    setrlimit = resource.setrlimit if resource is not None else None

    def preexec():
        for which, value in rlimits:
            setrlimit(which, value)

    return preexec


def _runtime_dir():
    """A short private directory for the kernel's Unix sockets (their paths are limited to ~100 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 40 and os.path.isdir("/tmp"):
        base = "/tmp"
    return tempfile.mkdtemp(prefix="k", dir=base)


def scrubbed_environment(home, tmpdir, runtime_dir):
    """The whole environment of the child: a short whitelist, nothing from the grader's shell."""
    import poisoning

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(poisoning.__file__)))
    return {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": package_parent,
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "JUPYTER_RUNTIME_DIR": runtime_dir,
        "JUPYTER_CONFIG_DIR": os.path.join(home, ".jupyter"),
        "JUPYTER_DATA_DIR": os.path.join(home, ".local", "share", "jupyter"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": os.path.join(home, ".ipython"),
        "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
        "MPLBACKEND": "Agg",
        # one thread per numerical library: less memory reserved, fair sharing between parallel students
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
    }


_running = set()  # the children started by spawn_sandboxed that have not ended yet
_running_lock = threading.Lock()
_stopping = threading.Event()  # set by terminate_all: start no more children


def terminate_all():
    """Kill every sandboxed child still running, and start no new one (e.g. after Ctrl-C)."""
    _stopping.set()
    with _running_lock:
        processes = list(_running)
    for process in processes:
        _kill_tree(process)


def allow_new_children():
    """Undo :func:`terminate_all` (for a new run in the same process)."""
    _stopping.clear()


def _kill_tree(process):
    """SIGKILL the child, its process group and every descendant still attached to it."""
    pids = []
    try:
        import psutil

        pids = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    except Exception:  # psutil missing, or the process is gone already
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


def spawn_sandboxed(command, *, workdir, limits, log_path):
    """Run ``command`` (a list; it starts with this Python) in the sandbox and wait for it.

    ``workdir`` is the student's scratch folder and the working directory: the child gets ``workdir/home``
    as ``HOME`` and ``workdir/tmp`` as ``TMPDIR``. Its output goes to ``log_path``. Returns
    ``(returncode, timed_out, seconds)``; the return code is ``None`` after the wall-clock timeout.
    """
    limits.validate()
    if _stopping.is_set():
        raise KeyboardInterrupt("grading was stopped")
    home, tmpdir = os.path.join(workdir, "home"), os.path.join(workdir, "tmp")
    os.makedirs(home, exist_ok=True)
    os.makedirs(tmpdir, exist_ok=True)
    runtime_dir = _runtime_dir()
    prefix, _ = isolation()
    start = time.monotonic()
    timed_out = False
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*prefix, *command], cwd=workdir, env=scrubbed_environment(home, tmpdir, runtime_dir),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, preexec_fn=_make_preexec(_rlimits(limits)),
            )
            with _running_lock:
                _running.add(process)
            if _stopping.is_set():
                _kill_tree(process)
            try:
                returncode = process.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_tree(process)
                process.wait()
                returncode = None
            except BaseException:  # interrupted: leave nothing running
                _kill_tree(process)
                process.wait()
                raise
            finally:
                with _running_lock:
                    _running.discard(process)
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
    return returncode, timed_out, time.monotonic() - start


def run_sandboxed(args, *, workdir, limits, log_path, result_path):
    """Run ``python -m poisoning.course.sandbox <args>`` in the sandbox; wait for it and read its result."""
    command = [sys.executable, "-m", "poisoning.course.sandbox", *args, "--result", result_path]
    returncode, timed_out, seconds = spawn_sandboxed(command, workdir=workdir, limits=limits, log_path=log_path)
    result = None
    try:
        with open(result_path) as handle:
            result = json.load(handle)
        if not isinstance(result, dict):
            result = None
    except (OSError, ValueError):
        pass
    return SandboxOutcome(returncode, timed_out, seconds, result)


# --------------------------------------------------------------------------------------------------
# the child: python -m poisoning.course.sandbox
# --------------------------------------------------------------------------------------------------
def _child(argv=None):
    parser = argparse.ArgumentParser(prog="python -m poisoning.course.sandbox",
                                     description="Autograde one student in a scratch course folder "
                                                 "(started by `course autograde`).")
    parser.add_argument("--config", required=True, help="the course's nbgrader_config.py")
    parser.add_argument("--root", required=True, help="the scratch course folder")
    parser.add_argument("--assignment", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--cell-timeout", type=int, default=None)
    parser.add_argument("--result", required=True, help="where to write the result (JSON)")
    options = parser.parse_args(argv)

    result = {"success": False, "error": "the autograder did not finish", "log": ""}

    def write_result():
        with open(options.result, "w") as handle:
            json.dump(result, handle)

    write_result()
    try:
        from nbgrader.converters import Autograde
        from nbgrader.coursedir import CourseDirectory
        from nbgrader.utils import capture_log

        from .coursedir import load_config, quiet_warnings

        quiet_warnings()
        config = load_config(options.config)
        config.CourseDirectory.root = os.path.abspath(options.root)
        config.CourseDirectory.db_url = "sqlite:///" + os.path.abspath(os.path.join(options.root, "gradebook.db"))
        # Unix sockets: the kernel needs no network. The socket path must be absolute, since the kernel runs
        # in the notebook's folder and nbgrader in another.
        config.KernelManager.transport = "ipc"
        runtime_dir = os.environ.get("JUPYTER_RUNTIME_DIR") or tempfile.mkdtemp(prefix="k")
        config.KernelManager.ip = os.path.join(runtime_dir, "kernel")
        if options.cell_timeout:
            config.ExecutePreprocessor.timeout = options.cell_timeout
            config.Execute.timeout = options.cell_timeout
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id = options.assignment
        coursedir.student_id = options.student
        app = Autograde(coursedir=coursedir, config=config)
        app.force = True
        app.create_student = True
        outcome = capture_log(app)
        result = {"success": bool(outcome.get("success")), "error": outcome.get("error", ""),
                  "log": outcome.get("log", "")}
    except BaseException as error:  # noqa: BLE001 - report everything, including SystemExit
        import traceback

        result = {"success": False, "error": "".join(traceback.format_exception(error)), "log": ""}
    write_result()
    print(result.get("log", ""))
    if result.get("error"):
        print(result["error"], file=sys.stderr)
    return 0 if result["success"] else 1


if __name__ == "__main__":
    sys.exit(_child())
