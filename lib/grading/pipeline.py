"""The instructor's pipeline: release, autograde (sandboxed, in parallel), feedback, grades.

Autograding one student is nbgrader's own ``autograde``, run in a sandboxed child process
(:mod:`poisoning.course.sandbox`) against a **scratch course folder** of its own:

* ``gradebook.db``: a copy of the course's gradebook with every student removed (so a student's code sees no
  other student's grades), holding the assignment, its cells and checksums;
* the assignment's supporting files from the source folder (never its notebooks: no solutions there);
* the student's collected submission.

Several students run at once (a thread per student waits on its child process). When a child ends, the
parent alone copies that student's scores from the scratch gradebook into the course's gradebook (one writer:
no locking, no corruption), each score clamped to the points of its cell, and copies the executed notebooks
to ``autograded/<student>/<assignment>/``. A student whose grading fails (kernel crash, timeout, ...) gets 0
for every autograded cell, a flag in the gradebook and an error status in the summary; the others are not
affected.
"""

from __future__ import annotations

import concurrent.futures
import csv
import glob
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field

from .coursedir import CourseError, quiet_logger, run_nbgrader
from .sandbox import SandboxLimits, allow_new_children, isolation, run_sandboxed, terminate_all
from .submissions import collect, gather

__all__ = ["release", "autograde", "generate_feedback", "export_grades", "StudentResult", "AutogradeReport"]


# --------------------------------------------------------------------------------------------------
# release
# --------------------------------------------------------------------------------------------------
def release(course, assignment):
    """``nbgrader generate_assignment``: the student version into ``release/<assignment>``, and the
    assignment into the gradebook. Returns the release folder."""
    from nbgrader.converters import GenerateAssignment

    course.check_assignment(assignment)
    app = GenerateAssignment(coursedir=course.coursedir(assignment_id=assignment), config=course.config)
    app.force = True
    app.create_assignment = True
    app.log = quiet_logger()
    success, log, error = run_nbgrader(app)
    if not success:
        raise CourseError(f"nbgrader generate_assignment failed for '{assignment}': {_last_line(error or log)}")
    return course.path("release", ".", assignment)


def _last_line(text):
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no details"


# --------------------------------------------------------------------------------------------------
# autograde
# --------------------------------------------------------------------------------------------------
@dataclass
class StudentResult:
    student: str
    status: str  # "graded", "graded (...)", "error: ...", "timeout ...", "invalid: ..."
    score: float = 0.0
    max_score: float = 0.0
    seconds: float | None = None  # wall-clock time of its sandboxed run

    @property
    def ok(self):
        return self.status.startswith("graded")


@dataclass
class AutogradeReport:
    assignment: str
    results: list = field(default_factory=list)  # StudentResult, sorted by student
    problems: list = field(default_factory=list)  # submissions.Problem
    isolation_note: str = ""
    manual_points: float = 0.0

    @property
    def ok(self):
        return not self.problems and all(r.ok for r in self.results)

    def table(self):
        rows = [("student", "score", "max", "time", "status")]
        rows += [(r.student, f"{r.score:g}", f"{r.max_score:g}", "-" if r.seconds is None else f"{r.seconds:.0f}s",
                  r.status) for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}  {e}"
                 for a, b, c, d, e in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        return "\n".join(lines)


def _copy_gradebook(source_path, target_path):
    """A consistent copy of an SQLite file (the backup API, not a file copy)."""
    source = sqlite3.connect(source_path)
    target = sqlite3.connect(target_path)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _template_gradebook(course, path):
    """The course's gradebook without any student (copied into every scratch folder)."""
    from nbgrader.api import Gradebook

    _copy_gradebook(course.db_path, path)
    with Gradebook("sqlite:///" + path, course.course_id) as gradebook:
        for student in list(gradebook.students):
            gradebook.remove_student(student.id)
    connection = sqlite3.connect(path)
    connection.execute("VACUUM")  # drop the freed pages, which still hold the removed grades
    connection.close()


def _prepare_scratch(course, assignment, student, scratch, template):
    """A scratch course folder for one student; returns its root."""
    os.makedirs(scratch)
    shutil.copyfile(template, os.path.join(scratch, "gradebook.db"))
    layout = course.coursedir(root=scratch)
    source = course.path("source", ".", assignment)
    scratch_source = os.path.normpath(layout.format_path(layout.source_directory, ".", assignment))
    shutil.copytree(source, scratch_source, ignore=shutil.ignore_patterns("*.ipynb", ".*", "__pycache__"))
    scratch_submitted = os.path.normpath(layout.format_path(layout.submitted_directory, student, assignment))
    shutil.copytree(course.path("submitted", student, assignment), scratch_submitted, symlinks=True)
    return scratch


def _grade_one(course, assignment, student, scratch, template, limits, cell_timeout, log_path):
    _prepare_scratch(course, assignment, student, scratch, template)
    args = ["--config", course.config_path, "--root", scratch, "--assignment", assignment, "--student", student]
    if cell_timeout:
        args += ["--cell-timeout", str(cell_timeout)]
    return run_sandboxed(args, workdir=scratch, limits=limits, log_path=log_path,
                         result_path=os.path.join(scratch, "result.json"))


_GENERIC_ERRORS = ("There was an error processing", "Please see the", "Removing failed")


def _failure_reason(outcome, limits):
    if outcome.timed_out:
        return f"timeout: stopped after {limits.wall_seconds} s (wall clock)"
    result = outcome.result or {}
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    if "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text:
        return "error: the kernel died (a crash, or killed at the CPU or memory limit)"
    if "Kernel didn't respond" in text:
        return "error: the kernel did not start"
    if "UnresponsiveKernelError" in text or "CellTimeoutError" in text:
        return "error: a cell ran past the cell timeout and could not be interrupted"
    if not result.get("error"):
        code = outcome.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"error: the grader was killed ({name})"
        return f"error: the grader stopped (exit code {code})"
    errors = [line.split("]", 1)[1].strip() for line in (result.get("log") or "").splitlines()
              if line.startswith("[ERROR]") and not any(g in line for g in _GENERIC_ERRORS)]
    return "error: " + (errors[-1] if errors else _last_line(result.get("error")))[:100]


def _cell_notes(notebook_paths):
    """Notes on cells stopped by a limit, read from the executed notebooks."""
    import nbformat

    timeouts = memory = 0
    for path in notebook_paths:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:
            continue
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    timeouts += output.get("ename") == "CellTimeoutError"
                    memory += output.get("ename") == "MemoryError"
    notes = []
    if timeouts:
        notes.append(f"{timeouts} cell{'s' if timeouts > 1 else ''} timed out")
    if memory:
        notes.append(f"{memory} cell{'s' if memory > 1 else ''} ran out of memory")
    return notes


def _safe_notebooks(folder):
    """Regular ``.ipynb`` files directly in ``folder`` (no links), each at most 50 MB."""
    found = []
    for path in sorted(glob.glob(os.path.join(folder, "*.ipynb"))):
        if not os.path.islink(path) and os.path.isfile(path) and os.path.getsize(path) <= 50 * 1024 * 1024:
            found.append(path)
    return found


def _merge(course, assignment, student, scratch, success):
    """Copy one student's scores from the scratch gradebook into the course's gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    scratch_url = "sqlite:///" + os.path.join(scratch, "gradebook.db")
    with Gradebook(course.db_url, course.course_id) as main:
        main.update_or_create_student(student)
        scratch_book = Gradebook(scratch_url, course.course_id) if success else None
        try:
            scratch_submission = None
            if scratch_book is not None:
                try:
                    scratch_submission = scratch_book.find_submission(assignment, student)
                except MissingEntry:
                    scratch_submission = None
            timestamp = scratch_submission.timestamp if scratch_submission is not None else None
            submission = main.update_or_create_submission(assignment, student, timestamp=timestamp)
            for notebook in submission.notebooks:
                scratch_notebook = None
                if scratch_submission is not None:
                    try:
                        scratch_notebook = scratch_book.find_submission_notebook(notebook.name, assignment, student)
                    except MissingEntry:
                        pass
                notebook.flagged = scratch_notebook is None
                notebook.late_submission_penalty = (scratch_notebook.late_submission_penalty
                                                    if scratch_notebook is not None else None)
                for grade in notebook.grades:
                    cell = grade.cell
                    auto = None
                    if scratch_notebook is not None:
                        auto = scratch_book.find_grade(cell.name, notebook.name, assignment, student).auto_score
                    elif cell.cell_type == "code":
                        auto = 0.0  # grading failed: no points for autograded cells
                    if auto is not None:
                        auto = min(max(float(auto), 0.0), float(cell.max_score))
                    grade.auto_score = auto
                    grade.needs_manual_grade = grade.manual_score is not None or auto is None
                for comment in notebook.comments:
                    if scratch_notebook is not None:
                        comment.auto_comment = scratch_book.find_comment(
                            comment.cell.name, notebook.name, assignment, student).auto_comment
            main.db.commit()
            score, max_score = submission.code_score, submission.max_code_score
        finally:
            if scratch_book is not None:
                scratch_book.close()
    return float(score or 0.0), float(max_score or 0.0)


def _install_autograded(course, assignment, student, scratch, success):
    """Replace ``autograded/<student>/<assignment>`` with the executed notebooks (nothing when it failed)."""
    target = course.path("autograded", student, assignment)
    shutil.rmtree(target, ignore_errors=True)
    if not success:  # and no stale feedback of an earlier run either
        shutil.rmtree(course.path("feedback", student, assignment), ignore_errors=True)
        return []
    layout = course.coursedir(root=scratch)
    produced = os.path.normpath(layout.format_path(layout.autograded_directory, student, assignment))
    notebooks = _safe_notebooks(produced)
    os.makedirs(target, exist_ok=True)
    installed = []
    for path in notebooks:
        destination = os.path.join(target, os.path.basename(path))
        shutil.copyfile(path, destination)
        installed.append(destination)
    stamp = os.path.join(produced, "timestamp.txt")
    if os.path.isfile(stamp) and not os.path.islink(stamp) and os.path.getsize(stamp) < 1000:
        shutil.copyfile(stamp, os.path.join(target, "timestamp.txt"))
    return installed


def _max_scores(course, assignment):
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gradebook:
        a = gradebook.find_assignment(assignment)
        return float(a.max_code_score), float(a.max_written_score)


def _record_students(course, students):
    from nbgrader.api import Gradebook

    if students:
        with Gradebook(course.db_url, course.course_id) as gradebook:
            for student in students:
                gradebook.update_or_create_student(student)


def autograde(course, assignment, submissions_path, *, jobs=None, limits=None, cell_timeout=None,
              progress=True, warn=None, keep_scratch=False):
    """Collect the submissions in ``submissions_path`` and autograde every student; returns a report.

    ``warn(message)`` is called once for every skipped file, before grading starts.
    """
    limits = limits or SandboxLimits()
    limits.validate()
    jobs = jobs or os.cpu_count() or 1
    notebooks = course.released_notebooks(assignment)
    max_code, max_written = _max_scores(course, assignment)
    report = AutogradeReport(assignment, manual_points=max_written)
    grading_dir = os.path.join(course.root, ".grading")
    os.makedirs(grading_dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="course-autograde-")
    try:
        submissions, problems = gather(course, assignment, submissions_path, notebooks,
                                       os.path.join(base, "staging"))
        report.problems = problems
        for problem in problems:
            if warn:
                warn(str(problem))
        students = sorted({s.student for s in submissions})
        invalid = sorted({p.student for p in problems if p.student} - set(students))
        for student in invalid:
            reasons = [p.message for p in problems if p.student == student]
            report.results.append(StudentResult(student, "invalid: " + reasons[0][:80], 0.0, max_code))
        _record_students(course, invalid)  # listed with 0 points in the grades
        if not students:
            raise CourseError(f"nothing to grade in {submissions_path}: no valid submission "
                              f"(expected notebooks named <student_id>_{notebooks[0]}.ipynb)")
        collect(course, assignment, submissions)
        report.isolation_note = isolation()[1]
        template = os.path.join(base, "template.db")
        _template_gradebook(course, template)
        log_dir = os.path.join(grading_dir, "logs", assignment)
        os.makedirs(log_dir, exist_ok=True)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(students), desc=f"autograding {assignment}", unit="student", file=sys.stderr,
                       dynamic_ncols=True)
        scratch_of = {student: os.path.join(base, f"s{i:05d}") for i, student in enumerate(students)}
        allow_new_children()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = {
                pool.submit(_grade_one, course, assignment, student, scratch_of[student], template, limits,
                            cell_timeout, os.path.join(log_dir, f"{student}.log")): student
                for student in students
            }
            for future in concurrent.futures.as_completed(futures):
                student = futures[future]
                report.results.append(_finish(course, assignment, student, scratch_of[student], future, limits))
                if not keep_scratch:
                    shutil.rmtree(scratch_of[student], ignore_errors=True)
                if bar is not None:
                    bar.update(1)
        except BaseException:  # Ctrl-C: stop the students still queued or running
            pool.shutdown(wait=False, cancel_futures=True)
            terminate_all()
            raise
        finally:
            pool.shutdown(wait=True)
            if bar is not None:
                bar.close()
    finally:
        if keep_scratch:
            report.isolation_note += f"; scratch folders kept in {base}"
        else:
            shutil.rmtree(base, ignore_errors=True)
    report.results.sort(key=lambda r: r.student)
    return report


def _finish(course, assignment, student, scratch, future, limits):
    """Merge one finished student into the course; never raises for a student's failure."""
    try:
        outcome = future.result()
    except Exception as error:  # preparing the scratch folder or starting the child failed
        score, max_score = _merge(course, assignment, student, scratch, success=False)
        _install_autograded(course, assignment, student, scratch, success=False)
        return StudentResult(student, f"error: {type(error).__name__}: {error}"[:120], score, max_score)
    success = bool(outcome.result and outcome.result.get("success")) and not outcome.timed_out
    if success:
        layout = course.coursedir(root=scratch)
        produced = os.path.normpath(layout.format_path(layout.autograded_directory, student, assignment))
        success = bool(_safe_notebooks(produced))
    reason = None if success else _failure_reason(outcome, limits)
    try:
        score, max_score = _merge(course, assignment, student, scratch, success)
    except Exception as error:  # e.g. the student's code damaged its scratch gradebook
        if not success:
            raise
        success, reason = False, f"error: cannot read the scratch gradebook ({type(error).__name__})"
        score, max_score = _merge(course, assignment, student, scratch, success=False)
    installed = _install_autograded(course, assignment, student, scratch, success)
    if not success:
        return StudentResult(student, reason, score, max_score, outcome.seconds)
    notes = _cell_notes(installed)
    status = "graded" + (f" ({', '.join(notes)})" if notes else "")
    return StudentResult(student, status, score, max_score, outcome.seconds)


# --------------------------------------------------------------------------------------------------
# feedback and grades
# --------------------------------------------------------------------------------------------------
def generate_feedback(course, assignment):
    """``nbgrader generate_feedback`` for every autograded student; returns the HTML files."""
    from nbgrader.converters import GenerateFeedback
    from traitlets.config import Config

    course.released_notebooks(assignment)
    autograded = sorted(glob.glob(os.path.join(course.path("autograded", "*", assignment), "*.ipynb")))
    if not autograded:
        raise CourseError(f"no autograded submission of '{assignment}' yet: run `course autograde` first")
    config = Config(course.config)
    config.HTMLExporter.template_name = "feedback"
    app = GenerateFeedback(coursedir=course.coursedir(assignment_id=assignment), config=config)
    app.force = True
    app.log = quiet_logger()
    success, log, error = run_nbgrader(app)
    if not success:
        raise CourseError(f"nbgrader generate_feedback failed: {_last_line(error or log)}")
    return sorted(glob.glob(os.path.join(course.path("feedback", "*", assignment), "*.html")))


GRADE_COLUMNS = ["student", "assignment", "score", "max_score", "autograded_score", "written_score",
                 "needs_manual_grade"]


def grade_rows(course):
    """One row per student and assignment in the gradebook (0 points where nothing was submitted)."""
    from nbgrader.api import Gradebook, MissingEntry

    if not os.path.isfile(course.db_path):
        raise CourseError("no gradebook yet: run `course release` and `course autograde` first")
    rows = []
    with Gradebook(course.db_url, course.course_id) as gradebook:
        assignments = sorted(gradebook.assignments, key=lambda a: a.name)
        for student in sorted(gradebook.students, key=lambda s: s.id):
            for assignment in assignments:
                try:
                    submission = gradebook.find_submission(assignment.name, student.id)
                except MissingEntry:
                    rows.append({"student": student.id, "assignment": assignment.name, "score": 0.0,
                                 "max_score": float(assignment.max_score), "autograded_score": 0.0,
                                 "written_score": 0.0, "needs_manual_grade": False})
                    continue
                rows.append({"student": student.id, "assignment": assignment.name,
                             "score": float(submission.score), "max_score": float(submission.max_score),
                             "autograded_score": float(submission.code_score),
                             "written_score": float(submission.written_score),
                             "needs_manual_grade": bool(submission.needs_manual_grade)})
    if not rows:
        raise CourseError("the gradebook has no student yet: run `course autograde` first")
    return rows


def export_grades(course, output):
    """Write :func:`grade_rows` as CSV to ``output`` (a path, or ``-`` for standard output)."""
    rows = grade_rows(course)

    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=GRADE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **{k: f"{row[k]:g}" for k in ("score", "max_score", "autograded_score",
                                                                    "written_score")}})

    if output == "-":
        write(sys.stdout)
    else:
        directory = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(directory):
            raise CourseError(f"cannot write {output}: folder {directory} does not exist")
        with open(output, "w", newline="") as handle:
            write(handle)
    return rows
