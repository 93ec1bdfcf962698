"""Grading as a plain function of (submission, assignment files), run here or on a Dask cluster.

* :func:`grading.tasks.grade_notebook` grades one notebook with nothing but its task and the assignment's checks:
  no course folder, no gradebook; its checks survive the serialisation Dask uses (the judges of the outcome-graded
  parts are closures from the source notebook);
* seal numbers (the seal's uid as root) are unique on a machine, also across processes;
* ``course autograde --scheduler tcp://HOST:PORT`` grades a class on a ``LocalCluster`` whose two workers are
  separate processes: the same scores as graded locally (those of ``test_grading_pipeline.py``), both workers
  used, the parent the only writer of the gradebook; Ctrl-C stops the seals on the workers;
* an unreachable scheduler, or a worker with other course code, is refused with one line.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import grading_helpers as helpers
import pytest
from grading_helpers import gradebook_scores, grading_state, read_nb, run_cli, start_cli, summary_rows, wait_for, \
    write_submissions
from test_grading_pipeline import ASSIGNMENT, AUTOGRADED_MAX, EXPECTED, SOURCE, TEST_CELLS, submissions

from grading.coursedir import Course, CourseError
from grading.pipeline import _plan
from grading.seal import SealLimits
from grading.tasks import DaskRunner, GradingTask, NotebookChecks, WorkerMismatch, grade_notebook, library_digest, \
    seal_slot

pytestmark = pytest.mark.slow

LIMITS = SealLimits(memory_mb=2048, cpu_seconds=60, wall_seconds=120)
CLI_LIMITS = ["--no-progress", "--cell-timeout", "120", "--cpu-seconds", "60", "--memory-mb", "2048", "--timeout", "120"]
CLASS = ["solution", "blank", "wrongcenter", "onesided"]  # scores known from test_grading_pipeline.EXPECTED


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp("dask"), ASSIGNMENT)


@pytest.fixture(scope="module")
def class_files(released):
    known = submissions(read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    return {student: known[student] for student in CLASS}


@pytest.fixture(scope="module")
def checks(released):
    plan, hidden = _plan(Course.open(released), ASSIGNMENT, ASSIGNMENT)
    return NotebookChecks(ASSIGNMENT, ASSIGNMENT, plan, tuple(hidden))


def prepared(text):
    """A submission as nbgrader's autograde steps hand it to the grader: its test cells as in the source notebook
    (hidden tests included)."""
    nb = json.loads(text)
    tests = {cell["metadata"]["nbgrader"]["grade_id"]: cell["source"] for cell in read_nb(SOURCE)["cells"]
             if cell["metadata"].get("nbgrader", {}).get("grade_id") in TEST_CELLS}
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in tests:
            cell["source"] = tests[gid]
    return json.dumps(nb)


def task_for(student, text, **changes):
    fields = dict(assignment=ASSIGNMENT, student=student, notebook=ASSIGNMENT, content=prepared(text), limits=LIMITS,
                  cell_timeout=120, library=library_digest())
    return GradingTask(**{**fields, **changes})


# --------------------------------------------------------------------------------------------------
# the plain function
# --------------------------------------------------------------------------------------------------
def test_grade_notebook_needs_only_its_task_and_the_checks(class_files, checks, tmp_path, monkeypatch):
    """Graded from a folder that holds no course: scores per test cell, the executed notebook with the verdicts as
    the graded cells' only outputs, and the seal's log."""
    monkeypatch.chdir(tmp_path)
    graded = {student: grade_notebook(task_for(student, class_files[student]), checks)
              for student in ("solution", "wrongcenter")}
    for student, result in graded.items():
        assert result.answered and result.error is None
        assert result.score == EXPECTED[student][0] and result.max_score == AUTOGRADED_MAX
        assert {gid: maximum for gid, (_, maximum) in result.scores.items()} == TEST_CELLS
        assert result.worker == "local" and isinstance(result.log, str)
        nb = json.loads(result.content)
        for cell in nb["cells"]:
            gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
            if gid in TEST_CELLS:
                passed, message = result.verdicts[gid]
                [output] = cell["outputs"]
                assert (output["output_type"] == "stream") == passed
                assert message in ("".join(output["text"]) if passed else output["evalue"])
    assert graded["wrongcenter"].first_failure.startswith("test_part_a")
    assert graded["solution"].first_failure == ""
    assert os.listdir(tmp_path) == []  # nothing written where it ran


def test_checks_survive_dask_serialisation(class_files, checks):
    """The checks travel to the workers as Dask serialises them (the outcome judges are closures defined in the
    source notebook): the copy grades the same."""
    from distributed.protocol.pickle import dumps, loads

    copy = loads(dumps(checks))
    result = grade_notebook(task_for("wrongcenter", class_files["wrongcenter"]), copy)
    assert result.score == EXPECTED["wrongcenter"][0]
    assert copy.inputs == checks.inputs


def test_other_course_code_is_refused(class_files, checks):
    with pytest.raises(WorkerMismatch, match="other course code"):
        grade_notebook(task_for("solution", class_files["solution"], library="sha256:" + "0" * 64), checks)


def test_seal_numbers_are_unique_across_processes():
    script = "from grading.tasks import seal_slot\nwith seal_slot() as slot:\n    print(slot)\n"
    with seal_slot() as mine:
        with seal_slot() as second:
            other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
            assert len({mine, second, int(other.stdout)}) == 3
    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(again.stdout) == min(mine, second)  # freed when its holder ended


# --------------------------------------------------------------------------------------------------
# on a Dask cluster of two worker processes
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_port=0, silence_logs=40) as local:
        with Client(local) as client:
            yield local.scheduler_address, client


def worker_seals(client):
    """Seal processes (bubblewrap) running under each worker."""
    def count():
        import psutil

        # a seal is a bubblewrap process started by the worker itself
        return sum("bwrap" in " ".join(p.cmdline()[:1]) for p in psutil.Process().children())

    return client.run(count)


def test_a_class_graded_on_a_dask_cluster(released, class_files, cluster, tmp_path):
    address, client = cluster
    folder = write_submissions(tmp_path / "class", {f"{s}_{ASSIGNMENT}.ipynb": t for s, t in class_files.items()})
    root = tmp_path / "course"
    shutil.copytree(released, root)
    result = run_cli("autograde", ASSIGNMENT, str(folder), "--scheduler", address, *CLI_LIMITS, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = summary_rows(result.stdout)
    assert {s: rows[s][0] for s in CLASS} == {s: EXPECTED[s][0] for s in CLASS}
    assert f"on the Dask cluster at {address} (2 workers, 2 at a time)" in result.stdout
    # the parent wrote every grade; the workers each graded some of the class
    assert {s: gradebook_scores(root, ASSIGNMENT, s)[0] for s in CLASS} == {s: EXPECTED[s][0] for s in CLASS}
    assert all(entry["state"] == "graded" for entry in grading_state(root, ASSIGNMENT).values())
    where = {s: (root / ".grading" / "logs" / ASSIGNMENT / f"{s}.log").read_text().splitlines()[0] for s in CLASS}
    workers = set(client.scheduler_info()["workers"])
    used = {line.split(" on ", 1)[1].rstrip("]") for line in where.values()}
    assert used == workers, where
    assert all((root / "autograded" / s / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file() for s in CLASS)
    assert worker_seals(client) == {w: 0 for w in workers}


def test_ctrl_c_stops_the_seals_on_the_workers(released, class_files, cluster, tmp_path):
    address, client = cluster
    released_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    looping = helpers.with_cells(released_nb, {"part_a_solution": "while True:\n    pass\n"})
    folder = write_submissions(tmp_path / "class", {f"loop{i}_{ASSIGNMENT}.ipynb": looping for i in range(2)})
    root = tmp_path / "course"
    shutil.copytree(released, root)
    process = start_cli("autograde", ASSIGNMENT, folder, "--scheduler", address, *CLI_LIMITS, cwd=root)
    try:
        wait_for(lambda: sum(worker_seals(client).values()) == 2, "two seals running on the workers", timeout=120,
                 process=process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out + err
    wait_for(lambda: sum(worker_seals(client).values()) == 0, "the workers' seals ended", timeout=30)
    assert all(entry["state"] == "pending" for entry in grading_state(root, ASSIGNMENT).values())
    # the workers grade again afterwards (the stop applied to that run only)
    again = run_cli("autograde", ASSIGNMENT, str(write_submissions(tmp_path / "one", {
        f"solution_{ASSIGNMENT}.ipynb": class_files["solution"]})), "--scheduler", address, *CLI_LIMITS, cwd=root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary_rows(again.stdout)["solution"][0] == AUTOGRADED_MAX


def test_an_unreachable_scheduler_is_one_line(released):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(CourseError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        DaskRunner(f"tcp://127.0.0.1:{port}", timeout=2).connect()
    assert time.monotonic() - start < 30


def test_a_worker_with_other_course_code_is_refused(cluster, monkeypatch):
    address, _ = cluster
    monkeypatch.setattr("grading.tasks._digest", "sha256:" + "1" * 64)  # this grader now differs from the workers
    with pytest.raises(CourseError, match="runs other course code than this grader"):
        DaskRunner(address).connect()


def test_stopping_one_run_leaves_the_seals_of_another(released, checks):
    """Two graders share a machine (or a Dask worker): Ctrl-C of one kills its own seals only."""
    import threading

    from grading import seal as seal_module

    released_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    sleeping = helpers.with_cells(released_nb, {"part_a_solution": "import time\ntime.sleep(8)\n"})
    results = {}

    def grade(run_id):
        try:
            results[run_id] = grade_notebook(task_for(run_id, sleeping, run_id=run_id), checks)
        except KeyboardInterrupt as stopped:
            results[run_id] = stopped

    threads = [threading.Thread(target=grade, args=(run_id,)) for run_id in ("stopped", "other")]
    for thread in threads:
        thread.start()
    wait_for(lambda: {"stopped", "other"} <= set(seal_module._groups), "both runs' seals running", timeout=60)
    seal_module.terminate_group("stopped")
    for thread in threads:
        thread.join(timeout=120)
    assert not results["stopped"].answered  # killed: no answer, so no points for anything
    assert results["other"].answered and results["other"].error is None
    with pytest.raises(KeyboardInterrupt):  # a stopped run starts no new seal
        grade_notebook(task_for("again", sleeping, run_id="stopped"), checks)


@pytest.mark.parametrize("address", ["foo", "tcp://host", "http://host:8786", "tcp://host:0"])
def test_a_malformed_scheduler_address_is_refused_at_once(released, address, tmp_path):
    start = time.monotonic()
    result = run_cli("autograde", ASSIGNMENT, str(tmp_path), "--scheduler", address, cwd=released)
    assert result.returncode == 2 and "tcp://HOST:PORT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and time.monotonic() - start < 30
    with pytest.raises(CourseError, match="tcp://HOST:PORT"):
        DaskRunner(address).connect()
