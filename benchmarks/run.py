"""Print the project's performance figures: how long each chapter takes to execute, and how fast `course
autograde` grades a class.

    .venv/bin/python benchmarks/run.py                 # both
    .venv/bin/python benchmarks/run.py --chapters      # only the chapters
    .venv/bin/python benchmarks/run.py --grading 40    # only grading: 40 submissions of assignment 1

Targets (see the README): every chapter within about a minute on 2 CPU cores, the whole book within minutes;
sealed grading (`course autograde`) with one worker within 10% of plain `nbgrader autograde` on the same class,
with two workers at least 1.8 times as fast as plain nbgrader. This script measures and prints; it asserts
nothing (tests must not depend on the speed of the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def chapters():
    """The executable chapters of ``_toc.yml``, in its order."""
    pages = [ROOT / f"{page}.md" for page in parse_toc_yaml(str(ROOT / "_toc.yml"))]
    return [path for path in pages if path.exists() and "{code-cell}" in path.read_text()]


def time_chapters():
    import jupytext
    from nbclient import NotebookClient

    print(f"{'chapter':<32}{'seconds':>10}")
    total = 0.0
    for path in chapters():
        nb = jupytext.read(path)
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{path.stem:<32}{seconds:>10.1f}", flush=True)
    print(f"{'all chapters':<32}{total:>10.1f}")


#: a wrong Part C that runs (the mean, untrimmed): partly right submissions lose that part's points
WRONG_TRIMMED_MEAN = """import numpy as np


def trimmed_mean(X, trim_fraction=0.1):
    return np.asarray(X, dtype=float).mean(axis=0)
"""


def _synthetic_class(course, assignment, n_students, folder):
    """``n_students`` submissions made from the released notebook, in turn correct (the solutions typed in, no
    nbgrader markers), partly wrong (Part C replaced by a wrong answer that runs) and blank."""
    source = json.loads((course / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    released = json.loads((course / "release" / assignment / f"{assignment}.ipynb").read_text())
    answers = {}
    for cell in source["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            text = "".join(cell["source"])
            answers[meta["grade_id"]] = "\n".join(line for line in text.split("\n") if "### " not in line)

    def filled(replacements):
        nb = json.loads(json.dumps(released))
        for cell in nb["cells"]:
            gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
            if gid in replacements:
                cell["source"] = replacements[gid]
        return json.dumps(nb)

    kinds = {"correct": filled(answers), "partly wrong": filled({**answers, "part_c_solution": WRONG_TRIMMED_MEAN}),
             "blank": filled({})}
    names = list(kinds)
    folder.mkdir()
    for i in range(n_students):
        (folder / f"s{i:04d}_{assignment}.ipynb").write_text(kinds[names[i % len(names)]])
    return {name: len(range(k, n_students, len(names))) for k, name in enumerate(names)}


def time_grading(n_students, assignment="assignment1", jobs=(1, 2), dask_workers=2):
    """Plain ``nbgrader autograde`` against sealed ``course autograde`` with 1 and 2 workers on this machine and
    on a local Dask cluster of ``dask_workers`` worker processes, on one class. Returns ``{run: seconds}``."""
    times, scores = {}, {}
    with tempfile.TemporaryDirectory(prefix="grading-benchmark-") as tmp:
        course = Path(tmp) / "course"
        course.mkdir()
        shutil.copy(ROOT / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "solutions", course / "solutions")
        run = lambda *args: subprocess.run(args, cwd=course, check=True, capture_output=True, text=True)  # noqa: E731
        run(str(BIN / "course"), "release", assignment)
        submissions = Path(tmp) / "submissions"
        kinds = _synthetic_class(course, assignment, n_students, submissions)

        def sealed(name, *options):
            start = time.perf_counter()
            done = run(str(BIN / "course"), "autograde", assignment, str(submissions), "--no-progress",
                       "--force", *options)  # --force: grade the whole class again, every time
            times[name] = time.perf_counter() - start
            summary = [line for line in done.stdout.splitlines() if line.startswith("summary: ")]
            graded = int(summary[-1].split()[1]) if summary else 0
            if graded < n_students:
                print(f"warning: only {graded} of {n_students} graded ({name})", file=sys.stderr)
            scores[name] = sorted(line.split()[1] for line in done.stdout.splitlines() if line.startswith("s0"))

        for workers in jobs:
            sealed(f"sealed, {workers} worker{'s' if workers > 1 else ''}", "--jobs", str(workers))
        if dask_workers:
            from distributed import LocalCluster

            with LocalCluster(n_workers=dask_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=40) as cluster:
                sealed(f"sealed, Dask cluster of {dask_workers}", "--scheduler", cluster.scheduler_address)
        # plain nbgrader on the submissions that `course autograde` collected (one process, no seal)
        start = time.perf_counter()
        run(str(BIN / "nbgrader"), "autograde", assignment, "--force", "--log-level=WARN")
        times["plain nbgrader autograde"] = time.perf_counter() - start
    plain = times["plain nbgrader autograde"]
    print(f"autograde {assignment}, {n_students} submissions ("
          + ", ".join(f"{count} {kind}" for kind, count in kinds.items()) + f"), {os.cpu_count()} CPUs:")
    print(f"{'':<30}{'seconds':>9}{'per minute':>12}{'vs plain':>10}")
    for name in ["plain nbgrader autograde", *[k for k in times if k.startswith("sealed")]]:
        seconds = times[name]
        print(f"{name:<30}{seconds:>9.1f}{60 * n_students / seconds:>12.1f}{plain / seconds:>9.2f}x")
    if len({tuple(v) for v in scores.values()}) > 1:
        print("warning: the sealed runs gave different scores", file=sys.stderr)
    print("targets: sealed with 1 worker within 10% of plain nbgrader's time (>= 0.91x); "
          "with 2 workers at least 1.8x plain nbgrader")
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", action="store_true", help="time the chapters only")
    parser.add_argument("--grading", type=int, metavar="N", help="time grading N submissions only (correct, partly "
                                                                    "wrong and blank in turn)")
    args = parser.parse_args()
    both = not args.chapters and args.grading is None
    print(f"{os.cpu_count()} CPUs; torch device: ", end="")
    from poisoning.device import get_device
    print(get_device())
    if args.chapters or both:
        time_chapters()
    if args.grading or both:
        time_grading(args.grading or 40)


if __name__ == "__main__":
    main()
