"""Print the project's performance figures: how long each chapter takes to execute, and how fast `course
autograde` grades a class.

    .venv/bin/python benchmarks/run.py                 # both
    .venv/bin/python benchmarks/run.py --chapters      # only the chapters
    .venv/bin/python benchmarks/run.py --grading 16    # only grading, with 16 copies of the solution

Targets (see the README): every chapter within about a minute on 2 CPU cores, the whole book within minutes;
grading a class of a few hundred students within an hour on 2 cores. This script measures and prints; it asserts
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


def time_grading(n_students, assignment="assignment1", jobs=None):
    with tempfile.TemporaryDirectory(prefix="grading-benchmark-") as tmp:
        course = Path(tmp) / "course"
        course.mkdir()
        shutil.copy(ROOT / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "solutions", course / "solutions")
        run = lambda *args: subprocess.run([str(BIN / "course"), *args], cwd=course, check=True,  # noqa: E731
                                           capture_output=True, text=True)
        run("release", assignment)
        # the source notebook stands in for a correct submission: the grader executes every cell of it
        submissions = Path(tmp) / "submissions"
        submissions.mkdir()
        solution = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
        for i in range(n_students):
            (submissions / f"s{i:04d}_{assignment}.ipynb").write_text(json.dumps(solution))
        args = ["autograde", assignment, str(submissions), "--no-progress"]
        if jobs:
            args += ["--jobs", str(jobs)]
        start = time.perf_counter()
        run(*args)
        seconds = time.perf_counter() - start
    per_student = seconds / n_students
    print(f"autograde {assignment}: {n_students} students in {seconds:.1f} s with --jobs {jobs or os.cpu_count()} "
          f"({per_student:.1f} s per student, {3600 / per_student:.0f} students per hour)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", action="store_true", help="time the chapters only")
    parser.add_argument("--grading", type=int, metavar="N", help="time grading N copies of the solution only")
    parser.add_argument("--jobs", type=int, help="students graded at once (default: the number of CPUs)")
    args = parser.parse_args()
    both = not args.chapters and args.grading is None
    print(f"{os.cpu_count()} CPUs; torch device: ", end="")
    from poisoning.device import get_device
    print(get_device())
    if args.chapters or both:
        time_chapters()
    if args.grading or both:
        time_grading(args.grading or 8, jobs=args.jobs)


if __name__ == "__main__":
    main()
