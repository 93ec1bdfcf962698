"""The seal of one submission (``grading.seal``): what code inside it sees and what it can do, tested by running
notebooks in real seals (bubblewrap, the executor ``grading.sealed_run`` and a Jupyter kernel).

Each test writes a small job (a notebook of probing cells), runs it in a seal with tight limits, and reads what the
cells printed. Processes left behind are looked for on the host after each run.

What the seal guarantees is what these tests check: nothing of the course or the host but the read-only system and
environment, no network, its own processes, an unprivileged user, bounded processes, memory, time and output, and
no reference module. What it does not guarantee (see the README's instructor section): answers hard-coded for the
visible tests' inputs, code copied from the library or another student (``course similarity`` reports it), and
the hidden inputs staying unseen by the code that runs with them.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grading import seal as seal_module
from grading.seal import UID_BASE, Seal, SealLimits, SealUnavailable, sealed_packages

ROOT = Path(__file__).resolve().parents[1]
SLOT = 7  # a uid of its own for these tests (as root), so that leftovers are easy to find


def run_cells(tmp_path, cells, limits=None, hidden=("poisoning.mean_estimation",), cell_timeout=30):
    """Execute ``cells`` (code) in a fresh seal; returns ``(outcome, [text printed by each cell])``."""
    scratch = tmp_path / "scratch"
    job = tmp_path / "job"
    scratch.mkdir()
    job.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell(textwrap.dedent(code)) for code in cells]),
                   str(job / "notebook.ipynb"))
    with open(job / "inputs.pickle", "wb") as handle:
        pickle.dump({}, handle)
    limits = limits or SealLimits(memory_mb=2048, cpu_seconds=60, wall_seconds=120, file_size_mb=64, processes=64)
    the_seal = Seal(limits, sealed_packages(str(scratch), list(hidden), "assignmentX"), str(scratch))
    outcome = the_seal.run(str(job), slot=SLOT, cell_timeout=cell_timeout, log_path=str(tmp_path / "log"))
    printed = []
    if outcome.result:
        for index in range(len(cells)):
            outputs = outcome.result["outputs"].get(str(index), [])
            printed.append("".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream"))
    return outcome, printed


def seal_processes():
    """Processes on the host that run as a seal's uid (as root) or below a bubblewrap of these tests."""
    found = []
    for process in psutil.process_iter(["uids", "name", "cmdline"]):
        try:
            uid = process.info["uids"].real
        except (psutil.Error, TypeError):
            continue
        if os.geteuid() == 0 and UID_BASE <= uid < UID_BASE + 256:
            found.append(process)
    return found


@pytest.fixture(autouse=True)
def nothing_left_behind():
    yield
    deadline = time.monotonic() + 10
    while seal_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not seal_processes(), "processes of a seal outlived it"


def test_the_seal_shows_nothing_of_the_course_and_the_host(tmp_path, monkeypatch, loopback_server):
    port, received = loopback_server
    monkeypatch.setenv("GRADER_SECRET", "do-not-leak")
    secret = tmp_path / "secret.txt"
    secret.write_text("the grader's file")
    probe = f"""
    import json, os, resource, socket
    out = {{"uid": os.getuid(), "euid": os.geteuid(), "env": sorted(os.environ), "home": os.environ["HOME"],
           "root": sorted(os.listdir("/")), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}}
    out["limits"] = {{name: resource.getrlimit(getattr(resource, "RLIMIT_" + name))
                     for name in ("AS", "CPU", "FSIZE", "NPROC", "CORE")}}
    out["visible"] = {{path: os.path.exists(path) for path in
                      ({str(ROOT / 'solutions')!r}, {str(ROOT / '.git')!r}, {str(ROOT / 'nbgrader_config.py')!r},
                       {str(ROOT / 'lib' / 'grading' / 'pipeline.py')!r}, {str(secret)!r}, "/root/.bashrc")}}
    try:
        import poisoning.mean_estimation
        out["reference"] = "importable"
    except ImportError as error:
        out["reference"] = str(error)
    import poisoning.threat_model
    out["writable"] = {{}}
    for folder in ("/tmp", os.environ["HOME"], "/usr", {str(ROOT / '.venv')!r}, "/"):
        try:
            with open(os.path.join(folder, "probe"), "w") as handle:
                handle.write("x")
            out["writable"][folder] = True
        except OSError:
            out["writable"][folder] = False
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"leak")
        out["network"] = "reachable"
    except OSError as error:
        out["network"] = type(error).__name__
    print(json.dumps(out))
    """
    outcome, printed = run_cells(tmp_path, [probe])
    assert outcome.stopped is None and outcome.result["error"] is None, (outcome, (tmp_path / "log").read_text())
    out = json.loads(printed[0])
    if os.geteuid() == 0:  # the executor dropped root's privileges: an unprivileged uid of the seal's own
        assert out["uid"] == out["euid"] == UID_BASE + SLOT
    assert "GRADER_SECRET" not in out["env"] and out["home"] == "/home/student"
    # the system's folders, and the top folders of the paths the seal binds read-only (the Python installation and
    # the course's environment, wherever this machine keeps them); nothing else of the host's root
    bound = {Path(path).resolve().parts[1] for path in (sys.prefix, sys.base_prefix, sys.executable, ROOT)}
    assert set(out["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "proc", "dev", "tmp",
                                "home", "run", "job", "opt", "srv", "var"} | bound, (out["root"], bound)
    assert max(out["pids"]) < 100  # its own PID namespace: the host's processes are not there
    assert not any(out["visible"].values()), out["visible"]
    assert "poisoning.mean_estimation is not available while assignmentX is graded" in out["reference"]
    assert out["writable"] == {"/tmp": True, "/home/student": True, "/usr": False, str(ROOT / ".venv"): False,
                               "/": False}
    assert out["network"] != "reachable" and received == []
    assert out["limits"]["AS"] == [2048 * 2**20] * 2 and out["limits"]["CPU"] == [60, 65]
    assert out["limits"]["FSIZE"] == [64 * 2**20] * 2 and out["limits"]["NPROC"] == [64, 64]
    assert out["limits"]["CORE"] == [0, 0]


def test_a_fork_bomb_is_bounded_and_ends_with_its_seal(tmp_path):
    bomb = """
    import os, time
    children = 0
    while True:
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:  # every child keeps forking until the limit stops it, then waits
            while True:
                try:
                    if os.fork() == 0:
                        time.sleep(600)
                except OSError:
                    time.sleep(600)
        children += 1
    print(children)
    """
    limits = SealLimits(memory_mb=4096, cpu_seconds=60, wall_seconds=20, file_size_mb=64, processes=48)
    start = time.monotonic()
    outcome, printed = run_cells(tmp_path, [bomb, "print('after the bomb')"], limits=limits)
    assert time.monotonic() - start < 60
    # the process limit binds inside the seal: the kernel's fork fails long before the host notices
    if outcome.result is not None:
        assert 0 < int(printed[0]) < 48
    else:
        assert outcome.stopped in ("wall clock", "memory")


def test_a_memory_bomb_of_many_processes_ends_that_seal(tmp_path):
    bomb = """
    import os, time
    for _ in range(8):
        if os.fork() == 0:
            block = b"x" * (300 * 2**20)  # touched, resident
            time.sleep(600)
    time.sleep(600)
    """
    limits = SealLimits(memory_mb=1536, cpu_seconds=60, wall_seconds=60, file_size_mb=64, processes=64)
    start = time.monotonic()
    outcome, _ = run_cells(tmp_path, [bomb], limits=limits)
    assert outcome.stopped == "memory" and outcome.result is None
    assert time.monotonic() - start < 40


def test_one_large_allocation_fails_inside_and_the_notebook_goes_on(tmp_path):
    cells = ["""
    try:
        block = bytearray(3 * 2**30)
        print("allocated")
    except MemoryError:
        print("MemoryError")
    """, "print('still here')"]
    limits = SealLimits(memory_mb=1536, cpu_seconds=60, wall_seconds=60, file_size_mb=64, processes=64)
    outcome, printed = run_cells(tmp_path, cells, limits=limits)
    assert printed == ["MemoryError\n", "still here\n"]


def test_the_wall_clock_ends_everything(tmp_path):
    sleeper = """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)"])
    time.sleep(600)
    """
    limits = SealLimits(memory_mb=2048, cpu_seconds=60, wall_seconds=5, file_size_mb=64, processes=64)
    start = time.monotonic()
    outcome, _ = run_cells(tmp_path, [sleeper], limits=limits, cell_timeout=60)
    assert outcome.stopped == "wall clock" and time.monotonic() - start < 20


def test_huge_output_is_cut_and_the_answer_stays_bounded(tmp_path):
    cells = ["for i in range(200_000):\n    print('x' * 100)", "print('done')"]
    limits = SealLimits(memory_mb=2048, cpu_seconds=60, wall_seconds=120, file_size_mb=64, processes=64, output_mb=8)
    outcome, printed = run_cells(tmp_path, cells, limits=limits)
    assert outcome.stopped is None and outcome.result is not None
    assert len(printed[0]) < 2.1 * 2**20 and "[output truncated" in json.dumps(outcome.result["outputs"]["0"])
    assert printed[1] == "done\n"


def test_without_a_working_bubblewrap_nothing_is_graded(monkeypatch, tmp_path):
    monkeypatch.setattr(seal_module, "_bwrap", None)
    monkeypatch.setattr(seal_module, "_candidates", lambda: [])
    with pytest.raises(SealUnavailable, match="refusing to grade unsealed"):
        seal_module.find_bwrap()
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(seal_module, "_candidates", lambda: [str(broken)])
    with pytest.raises(SealUnavailable, match="No permissions to create new namespace.*refusing to grade unsealed"):
        seal_module.find_bwrap()


def test_limits_are_validated():
    with pytest.raises(ValueError, match="memory_mb must be a positive integer"):
        SealLimits(memory_mb=0).validate()
    with pytest.raises(ValueError, match="processes must be a positive integer"):
        SealLimits(processes=True).validate()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"),
                    reason="needs root (to become an unprivileged user with setpriv) and the system's Python")
def test_as_an_unprivileged_user_the_same_namespaces_and_limits_bind(monkeypatch):
    """An instructor who grades as a normal user gets bubblewrap's user namespace (no further one can be made);
    the process limit set inside the seal counts the seal's own processes. (The course's own Python may live where
    another user cannot read it, so this probe runs the system's Python.)"""
    import subprocess

    bwrap = seal_module.find_bwrap()
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    options = seal_module._namespace_options()
    monkeypatch.undo()
    assert "--unshare-user" in options and "--disable-userns" in options and "--cap-add" not in options
    probe = f"COURSE = {str(ROOT)!r}\n" + textwrap.dedent("""\
        import os, resource, time
        resource.setrlimit(resource.RLIMIT_NPROC, (20, 20))
        forks = 0
        try:
            while forks < 1000:
                if os.fork() == 0:
                    time.sleep(2)
                    os._exit(0)
                forks += 1
        except OSError:
            pass
        import ctypes
        CLONE_NEWUSER = 0x10000000
        nested = "allowed" if ctypes.CDLL(None).unshare(CLONE_NEWUSER) == 0 else "refused"
        print(os.getuid(), forks, nested, os.path.exists(COURSE), flush=True)
        """)
    done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", bwrap, *options,
                           *seal_module._system_binds(), "--proc", "/proc", "--dev", "/dev",
                           "--", "/usr/bin/python3", "-c", probe],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    uid, forks, nested, work = done.stdout.split()
    assert uid == "65534" and int(forks) < 20 and nested == "refused" and work == "False"
