"""Print the project's performance figures: how long each chapter takes to execute, and how fast `course
autograde` grades a class.

    .venv/bin/python benchmarks/run.py                 # both
    .venv/bin/python benchmarks/run.py --chapters      # only the chapters
    .venv/bin/python benchmarks/run.py --grading 12    # only grading: 12 honest submissions of assignment 1

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


def _honest_class(course, assignment, n_students, folder):
    """``n_students`` copies of the released notebook with the solutions typed in (no nbgrader markers)."""
    source = json.loads((course / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    released = json.loads((course / "release" / assignment / f"{assignment}.ipynb").read_text())
    answers = {}
    for cell in source["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            text = "".join(cell["source"])
            answers[meta["grade_id"]] = "\n".join(line for line in text.split("\n") if "### " not in line)
    for cell in released["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell["source"] = answers[gid]
    folder.mkdir()
    for i in range(n_students):
        (folder / f"s{i:04d}_{assignment}.ipynb").write_text(json.dumps(released))


def time_grading(n_students, assignment="assignment1", jobs=(1, 2)):
    """Plain ``nbgrader autograde`` against sealed ``course autograde`` with 1 and 2 workers, on one class."""
    with tempfile.TemporaryDirectory(prefix="grading-benchmark-") as tmp:
        course = Path(tmp) / "course"
        course.mkdir()
        shutil.copy(ROOT / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "solutions", course / "solutions")
        run = lambda *args: subprocess.run(args, cwd=course, check=True, capture_output=True, text=True)  # noqa: E731
        run(str(BIN / "course"), "release", assignment)
        submissions = Path(tmp) / "submissions"
        _honest_class(course, assignment, n_students, submissions)
        times = {}
        for workers in jobs:
            start = time.perf_counter()
            done = run(str(BIN / "course"), "autograde", assignment, str(submissions), "--no-progress",
                       "--jobs", str(workers), "--force")  # --force: grade the whole class again, every time
            times[f"sealed, {workers} worker{'s' if workers > 1 else ''}"] = time.perf_counter() - start
            summary = [line for line in done.stdout.splitlines() if line.startswith("summary: ")]
            graded = int(summary[-1].split()[1]) if summary else 0
            if graded < n_students:
                print(f"warning: only {graded} of {n_students} graded with --jobs {workers}", file=sys.stderr)
        # plain nbgrader on the submissions that `course autograde` collected (one process, no seal)
        start = time.perf_counter()
        run(str(BIN / "nbgrader"), "autograde", assignment, "--force", "--log-level=WARN")
        times["plain nbgrader autograde"] = time.perf_counter() - start
    plain = times["plain nbgrader autograde"]
    print(f"autograde {assignment}, {n_students} honest submissions, {os.cpu_count()} CPUs:")
    print(f"{'':<28}{'seconds':>9}{'per student':>13}{'vs plain':>10}")
    for name in ["plain nbgrader autograde", *[k for k in times if k.startswith("sealed")]]:
        seconds = times[name]
        print(f"{name:<28}{seconds:>9.1f}{seconds / n_students:>12.2f}s{plain / seconds:>9.2f}x")
    print("targets: sealed with 1 worker within 10% of plain nbgrader's time (>= 0.91x); "
          "with 2 workers at least 1.8x plain nbgrader")
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", action="store_true", help="time the chapters only")
    parser.add_argument("--grading", type=int, metavar="N", help="time grading N honest submissions only")
    args = parser.parse_args()
    both = not args.chapters and args.grading is None
    print(f"{os.cpu_count()} CPUs; torch device: ", end="")
    from poisoning.device import get_device
    print(get_device())
    if args.chapters or both:
        time_chapters()
    if args.grading or both:
        time_grading(args.grading or 12)


if __name__ == "__main__":
    main()
