"""``course``: the instructor's command line for the nbgrader assignments.

Run it in the course folder (the repository root, which holds ``nbgrader_config.py``) or pass
``--course-dir``::

    course release assignment1                        # student version into release/assignment1
    course autograde assignment1 submissions.zip      # collect, then autograde every student (sandboxed)
    course feedback assignment1                       # HTML feedback into feedback/<student>/assignment1
    course grades --output grades.csv                 # one CSV row per student and assignment

Errors are reported as one line on standard error, with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .coursedir import Course, CourseError
from .sandbox import SandboxLimits

PROG = "course"

AUTOGRADE_EPILOG = """\
SUBMISSIONS is a folder, or a .zip file, of student notebooks, one per student and notebook, named
<student_id>_<notebook>.ipynb, e.g. jdoe42_assignment1.ipynb: the student id (letters, digits, dots and
hyphens, no underscore), an underscore, then the name of the released notebook. Sub-folders are searched;
hidden files and __MACOSX folders are ignored. The pattern is FileNameCollectorPlugin.named_regexp in
nbgrader_config.py. A file that is not a notebook, is not valid notebook JSON, yields no student id, or is a
second submission of the same notebook by the same student is skipped with a warning; the others are graded,
and the exit status is then 1.

The submissions are collected into submitted/<student>/ASSIGNMENT/ (nbgrader zip_collect), then every
student is autograded by nbgrader in a sandbox of its own, --jobs at a time: a child process with limits on
memory (address space), CPU time, file size and number of processes, a wall-clock timeout, a scrubbed
environment with a throwaway HOME, and no network where `unshare` is permitted. Scores go into the
gradebook, the executed notebooks into autograded/, the log of each student into
.grading/logs/ASSIGNMENT/<student>.log. A submission that crashes, loops or exhausts a limit gets 0 points
for the autograded cells and an error status; the others are graded as usual. The run ends with a table
(student, autograded score, max, status); the exit status is 0 when every submission was graded.

The sandbox limits resources; it does not hide the file system from student code (run the grader as a
dedicated user or in a container for that), and student code can tamper with the test cells of its own
notebook."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    defaults = SandboxLimits()
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
                   help=f"CPU time limit of each process (default: {defaults.cpu_seconds})")
    p.add_argument("--memory-mb", type=_positive_int, default=defaults.memory_mb, metavar="MB",
                   help=f"address-space limit of each process (default: {defaults.memory_mb})")
    p.add_argument("--file-size-mb", type=_positive_int, default=defaults.file_size_mb, metavar="MB",
                   help=f"largest file student code may write (default: {defaults.file_size_mb})")
    p.add_argument("--max-processes", type=_positive_int, default=defaults.processes, metavar="N",
                   help=f"processes and threads a student may start (default: {defaults.processes})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch folders (for debugging)")

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
    return parser


def _error(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _warn(message):
    print(f"{PROG}: warning: {message}", file=sys.stderr)


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
    previous = None
    if args.command == "autograde" and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: stop the sandboxes, clean up
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args):
    try:
        course = Course.open(args.course_dir)
        if args.command == "release":
            from .grading import release

            folder = release(course, args.assignment)
            print(f"released {args.assignment}: the student version is in {_relative(folder)}")
            return 0
        if args.command == "autograde":
            return _autograde(course, args)
        if args.command == "feedback":
            from .grading import generate_feedback

            files = generate_feedback(course, args.assignment)
            print(f"feedback for {len(files)} notebook{'s' if len(files) != 1 else ''} in "
                  f"{_relative(course.path('feedback', '.', '.'))}")
            return 0
        if args.command == "grades":
            from .grading import export_grades

            rows = export_grades(course, args.output)
            if args.output != "-":
                print(f"{len(rows)} rows written to {args.output}")
            return 0
    except CourseError as error:
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
    from .grading import autograde

    limits = SandboxLimits(memory_mb=args.memory_mb, cpu_seconds=args.cpu_seconds, wall_seconds=args.timeout,
                           file_size_mb=args.file_size_mb, processes=args.max_processes)
    report = autograde(course, args.assignment, args.submissions, jobs=args.jobs, limits=limits,
                       cell_timeout=args.cell_timeout, progress=not args.no_progress, warn=_warn,
                       keep_scratch=args.keep_scratch)
    print(report.table())
    graded = sum(r.ok for r in report.results)
    print(f"\n{graded} of {len(report.results)} students graded; autograded points only"
          + (f" (the written answers, {report.manual_points:g} points, are graded by hand)"
             if report.manual_points else ""))
    if report.isolation_note:
        print(f"sandbox: {report.isolation_note}")
    failed = [r.student for r in report.results if not r.ok]
    if report.problems:
        _error(f"{len(report.problems)} file{'s' if len(report.problems) != 1 else ''} in SUBMISSIONS "
               "skipped (see the warnings above)")
    if failed:
        _error(f"{len(failed)} submission{'s' if len(failed) != 1 else ''} not graded: {', '.join(failed)}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
