"""``course``: the instructor's command line for the nbgrader assignments.

Run it in the course folder (the repository root, which holds ``nbgrader_config.py``) or pass
``--course-dir``::

    course release assignment1                        # student version into release/assignment1
    course autograde assignment1 submissions.zip      # collect, then autograde every student (sandboxed)
    course status assignment1                         # graded, pending or failed, per student
    course feedback assignment1                       # HTML feedback into feedback/<student>/assignment1
    course grades --output grades.csv                 # one CSV row per student and assignment
    course similarity assignment1                     # code-similarity report (HTML) of the submissions
    course leaderboard assignment4                    # students ranked by what the grader measured (HTML)

Errors are reported as one line on standard error, with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import sys
import threading

from .coursedir import Course, CourseError
from .seal import SealLimits, SealUnavailable

PROG = "course"

AUTOGRADE_EPILOG = """\
SUBMISSIONS is a folder, or a .zip file, of student notebooks, one per student and notebook, named
<student_id>_<notebook>.ipynb, e.g. jdoe42_assignment1.ipynb: the student id (letters, digits, dots and
hyphens, no underscore), an underscore, then the name of the released notebook. Sub-folders are searched;
hidden files and __MACOSX folders are ignored. The pattern is FileNameCollectorPlugin.named_regexp in
nbgrader_config.py. A file that is not a notebook, is not valid notebook JSON, yields no student id, or is a
second submission of the same notebook by the same student is skipped with a warning; the others are graded,
and the exit status is then 1.

The submissions are collected into submitted/<student>/ASSIGNMENT/ (nbgrader zip_collect). Each is then
executed in a seal of its own (bubblewrap), --jobs at a time: the system and the Python environment read-only,
the submission and the assignment's files in a private scratch space, no course folder, no solutions, no
gradebook, no other submission, no network, its own processes only, an unprivileged user, and limits on memory,
CPU time, wall-clock time, file size, processes and output. The reference modules that hold the answers are not
importable in the seal. The test cells only run the student's functions on inputs the grader chose; the grader
compares the outputs with the references outside the seal and writes the scores into the gradebook itself.
The executed notebooks go into autograded/, the log of each student into .grading/logs/ASSIGNMENT/<student>.log.
A submission that crashes, loops or exhausts a limit gets no points for what did not produce a right output, and
a status that says why; the others are graded as usual. The run ends with a table (student, autograded score,
max, time, status, first failed check) and a summary (graded, failed and why, skipped); the exit status is 0 when
every submission was graded.

A run can be stopped (Ctrl-C, or killed) and started again with the same command: each student's outcome is
recorded in .grading/state/ASSIGNMENT.json as soon as it is graded, and a student graded successfully from the
same submission (the same notebook files) is skipped, with a line that says so. A new submission of a student
is graded again and replaces that student's grade only; so do --regrade STUDENT and --force (everyone). While
a run grades an assignment, it holds .grading/locks/ASSIGNMENT.lock: a second `course autograde` (or `course
release`) of that assignment is refused. `course status ASSIGNMENT` shows where every student stands.

With --scheduler tcp://HOST:PORT the notebooks are executed and judged on the workers of that Dask cluster
(each with the course's environment and bubblewrap, checked first); this command still prepares them with
nbgrader and is the only writer of the gradebook.

Without a working bubblewrap nothing is graded (never unsealed)."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _scheduler_address(text):
    from .tasks import check_scheduler_address

    try:
        return check_scheduler_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    defaults = SealLimits()
    parser = _Parser(prog=PROG, description="Instructor tools for the course's nbgrader assignments.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="Run `course COMMAND --help` for the options of each command.")
    parser.add_argument("--course-dir", metavar="DIR", default=None,
                        help="the course folder, which holds nbgrader_config.py (default: the current folder)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    p = commands.add_parser("release", help="generate the student version of an assignment",
                            description="Generate the student version (nbgrader generate_assignment) into "
                                        "release/ASSIGNMENT and add the assignment to the gradebook.")
    p.add_argument("assignment", metavar="ASSIGNMENT")

    p = commands.add_parser("autograde", help="collect and autograde a batch of submissions (sandboxed)",
                            description="Collect and autograde a batch of submissions.",
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=AUTOGRADE_EPILOG)
    p.add_argument("assignment", metavar="ASSIGNMENT")
    p.add_argument("submissions", metavar="SUBMISSIONS", help="a folder or a .zip file of student notebooks")
    p.add_argument("--jobs", "-j", type=_positive_int, default=None,
                   help="students graded at once (default: the number of CPUs)")
    p.add_argument("--timeout", type=_positive_int, default=defaults.wall_seconds, metavar="SECONDS",
                   help=f"wall-clock limit per student (default: {defaults.wall_seconds})")
    p.add_argument("--cell-timeout", type=_positive_int, default=None, metavar="SECONDS",
                   help="limit per cell, after which the kernel is interrupted "
                        "(default: ExecutePreprocessor.timeout in nbgrader_config.py)")
    p.add_argument("--cpu-seconds", type=_positive_int, default=defaults.cpu_seconds, metavar="SECONDS",
                   help=f"CPU time of each process in a seal (default: {defaults.cpu_seconds})")
    p.add_argument("--memory-mb", type=_positive_int, default=defaults.memory_mb, metavar="MB",
                   help=f"memory of one seal's processes together (default: {defaults.memory_mb})")
    p.add_argument("--file-size-mb", type=_positive_int, default=defaults.file_size_mb, metavar="MB",
                   help=f"largest file student code may write (default: {defaults.file_size_mb})")
    p.add_argument("--max-processes", type=_positive_int, default=defaults.processes, metavar="N",
                   help=f"processes and threads in one seal (default: {defaults.processes})")
    p.add_argument("--output-mb", type=_positive_int, default=defaults.output_mb, metavar="MB",
                   help=f"what one seal may hand back: outputs and results (default: {defaults.output_mb})")
    p.add_argument("--regrade", action="append", default=[], metavar="STUDENT",
                   help="grade this student again even if the same submission was graded before (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="grade every student again, also those graded before from the same submission")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch folders (for debugging)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", type=_scheduler_address,
                   help="grade on the workers of this Dask cluster instead of this machine; --jobs is then how "
                        "many notebooks are in flight (default: the cluster's worker threads)")

    p = commands.add_parser("status", help="where every student of an assignment stands: graded, pending, failed",
                            description="One row per student known for ASSIGNMENT (collected in submitted/, or "
                                        "recorded by `course autograde`): graded (autograded score / max), pending "
                                        "(collected but not graded, graded from an older submission, or a run "
                                        "stopped while grading it) or failed (with the reason recorded); then the "
                                        "counts. Reads .grading/state/ASSIGNMENT.json, submitted/ and the gradebook; "
                                        "changes nothing.")
    p.add_argument("assignment", metavar="ASSIGNMENT")

    p = commands.add_parser("feedback", help="generate HTML feedback for every autograded student",
                            description="Generate feedback (nbgrader generate_feedback) into "
                                        "feedback/<student>/ASSIGNMENT/.")
    p.add_argument("assignment", metavar="ASSIGNMENT")

    p = commands.add_parser("grades", help="export the grades as CSV",
                            description="Export one CSV row per student and assignment: student, assignment, "
                                        "score, max_score, autograded_score, written_score, needs_manual_grade.")
    p.add_argument("--output", "-o", default="grades.csv", metavar="FILE",
                   help="the CSV file, relative to the current folder; - for standard output "
                        "(default: grades.csv)")

    p = commands.add_parser("similarity", help="rank submissions by code similarity (HTML report)",
                            description="Compare the code every student wrote (the solution cells of the collected "
                                        "submissions in submitted/) with every other student's and with the "
                                        "source of the poisoning package, with copydetect; the released "
                                        "notebook's code does not count. Prints the most similar pairs and writes "
                                        "a side-by-side HTML report.")
    p.add_argument("assignment", metavar="ASSIGNMENT")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="the HTML report (default: .grading/similarity/ASSIGNMENT.html)")
    p.add_argument("--top", type=_positive_int, default=20, metavar="N", help="pairs to print (default: 20)")

    p = commands.add_parser("leaderboard", help="rank students by what the grader measured (HTML table)",
                            description="Rank every student with an autograded notebook of ASSIGNMENT by the value "
                                        "that the grader measured in its graded test (assignment4: the victim's "
                                        "test error under the loss defence in Part C), read from the grader's "
                                        "verdicts in autograded/ and the gradebook; no student code runs. Prints "
                                        "the top rows and writes an HTML table (rank, student, value, passed).")
    p.add_argument("assignment", metavar="ASSIGNMENT")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="the HTML table (default: .grading/leaderboard/ASSIGNMENT.html)")
    p.add_argument("--top", type=_positive_int, default=10, metavar="N", help="rows to print (default: 10)")
    return parser


def _error(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _warn(message):
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _note(message):
    print(f"{PROG}: {message}", flush=True)


def _plural(n, word):
    return f"{n} {word}{'s' if n != 1 else ''}"


def _relative(path):
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = {}
    if args.command == "autograde" and threading.current_thread() is threading.main_thread():
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: stop the sandboxes
        # Ctrl-C stops a run also where it was started with SIGINT ignored (e.g. in the background by a script)
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run(args)
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def _run(args):
    try:
        course = Course.open(args.course_dir)
        if args.command == "release":
            from .pipeline import release

            folder = release(course, args.assignment)
            print(f"released {args.assignment}: the student version is in {_relative(folder)}")
            return 0
        if args.command == "autograde":
            return _autograde(course, args)
        if args.command == "status":
            return _status(course, args)
        if args.command == "feedback":
            from .pipeline import generate_feedback

            files = generate_feedback(course, args.assignment)
            print(f"feedback for {len(files)} notebook{'s' if len(files) != 1 else ''} in "
                  f"{_relative(course.path('feedback', '.', '.'))}")
            return 0
        if args.command == "similarity":
            return _similarity(course, args)
        if args.command == "leaderboard":
            from .leaderboard import run

            return run(course, args.assignment, output=args.output, top=args.top)
        if args.command == "grades":
            from .pipeline import export_grades

            rows = export_grades(course, args.output)
            if args.output != "-":
                print(f"{len(rows)} rows written to {args.output}")
            return 0
    except (CourseError, SealUnavailable) as error:
        _error(str(error))
        return 1
    except OSError as error:  # e.g. a folder that cannot be written
        _error(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    return 2  # not reached: argparse requires a command


def _autograde(course, args):
    from .pipeline import autograde

    limits = SealLimits(memory_mb=args.memory_mb, cpu_seconds=args.cpu_seconds, wall_seconds=args.timeout,
                        file_size_mb=args.file_size_mb, processes=args.max_processes, output_mb=args.output_mb)
    report = autograde(course, args.assignment, args.submissions, jobs=args.jobs, limits=limits,
                       cell_timeout=args.cell_timeout, progress=not args.no_progress, warn=_warn,
                       keep_scratch=args.keep_scratch, regrade=args.regrade, force=args.force, note=_note,
                       scheduler=args.scheduler)
    print(report.table())
    skipped = [r for r in report.results if r.skipped]
    ran = [r for r in report.results if not r.skipped]
    graded = sum(r.ok for r in ran)
    print(f"\n{graded} of {len(ran)} students graded; autograded points only"
          + (f" (the written answers, {report.manual_points:g} points, are graded by hand)"
             if report.manual_points else ""))
    print(f"summary: {graded} graded, {len(ran) - graded} failed, {len(skipped)} skipped "
          "(graded before from the same submission)")
    for r in ran:
        if not r.ok:
            reason = r.status if not r.reason or r.reason in r.status else f"{r.status}: {r.reason}"
            print(f"  failed {r.student}: {' '.join(reason.split())[:200]}")
    if report.seal_note:
        print(f"seal: {report.seal_note}")
    failed = [r.student for r in report.results if not r.ok]
    if report.problems:
        _error(f"{len(report.problems)} file{'s' if len(report.problems) != 1 else ''} in SUBMISSIONS "
               "skipped (see the warnings above)")
    if failed:
        _error(f"{len(failed)} submission{'s' if len(failed) != 1 else ''} not graded: {', '.join(failed)}")
    return 0 if report.ok else 1


def _status(course, args):
    from . import gradebook
    from .state import lock_holder, status_rows

    notebooks = course.released_notebooks(args.assignment)
    rows = status_rows(course, args.assignment, notebooks, gradebook.code_scores(course, args.assignment))
    table = [("student", "state", "score", "max", "detail")]
    table += [(student, state, "-" if score is None else f"{score:g}", "-" if top is None else f"{top:g}",
               " ".join((detail or "").split())[:160]) for student, state, score, top, detail in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}  {e}".rstrip()
             for a, b, c, d, e in table]
    lines.insert(1, "-" * max(len(line) for line in lines))
    if rows:
        print("\n".join(lines))
    counts = {state: sum(row[1] == state for row in rows) for state in ("graded", "pending", "failed")}
    print(f"{args.assignment}: {_plural(len(rows), 'student')}: {counts['graded']} graded, {counts['pending']} pending, "
          f"{counts['failed']} failed")
    holder = lock_holder(course, args.assignment)
    if holder:
        print(f"being graded now: {holder}")
    return 0


def _similarity(course, args):
    import poisoning

    from .similarity import similarity_report

    notebooks = course.released_notebooks(args.assignment)
    submissions = {}
    for notebook in notebooks:
        pattern = os.path.join(course.path("submitted", "*", args.assignment), notebook + ".ipynb")
        for path in sorted(glob.glob(pattern)):
            student = os.path.basename(os.path.dirname(os.path.dirname(path)))
            submissions[student if len(notebooks) == 1 else f"{student}-{notebook}"] = path
    if not submissions:
        raise CourseError(f"no collected submission of '{args.assignment}': run `course autograde` first")
    template = os.path.join(course.path("release", ".", args.assignment), notebooks[0] + ".ipynb")
    output = args.output or os.path.join(course.root, ".grading", "similarity", f"{args.assignment}.html")
    library = os.path.dirname(os.path.realpath(poisoning.__file__))
    try:
        pairs = similarity_report(submissions, output, template=template, library_dirs=[library])
    except ValueError as error:
        raise CourseError(str(error)) from None
    print(f"{'similarity':>10}  pair")
    for pair in pairs[: args.top]:
        print(f"{pair.similarity:>10.0%}  {pair.first} ~ {pair.second}")
    print(f"{len(pairs)} pair{'s' if len(pairs) != 1 else ''} with shared code; side by side: {_relative(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
