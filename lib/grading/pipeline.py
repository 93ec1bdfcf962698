"""The instructor's pipeline: release, autograde (every submission sealed, several at once), feedback, grades.

Autograding one student is nbgrader's own ``autograde`` with its *Execute* step replaced:

* nbgrader prepares the submission in this process as it always does (restores the instructor's locked and test
  cells from the gradebook, records the submission) and records the scores at the end (``SaveAutoGrades``);
* :class:`SealedExecute` executes the notebook in a seal of its own (:mod:`grading.seal`) with the grader's inputs
  for the test cells, and takes back only the outputs of the cells and of the student's functions;
* :class:`ApplyVerdicts` decides every graded test cell here, from those outputs and the expected results that the
  grader computed once for the class (:mod:`grading.verdicts`), and writes the verdict as the cell's only output:
  a line on standard output when it passes, an error when it fails. nbgrader's ``SaveAutoGrades`` then gives
  exactly those points: nothing the kernel printed or reported decides a score.

Several students are graded at once (``jobs`` threads). The gradebook has one writer at a time: a thread holds
the gradebook lock for nbgrader's steps and releases it while its seal runs. A submission that crashes, loops,
exhausts a limit or tampers with the seal gets no points for what did not produce a right output, and a status
that says why; the others are not affected.

A run can be stopped at any moment and started again (:mod:`grading.state`): each student's outcome is recorded as
soon as its step ends, and a rerun skips the students already graded successfully from the same submission. Two
commands never grade (or release) the same assignment at once: the second is refused.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import glob
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from nbconvert.preprocessors import Preprocessor

from . import gradebook, tasks
from .coursedir import CourseError, quiet_logger, run_nbgrader
from .seal import SealLimits
from .state import FAILED, GRADED, GradingState, assignment_lock, submission_hash
from .submissions import collect, gather
from .tasks import (DaskRunner, GradingTask, LocalRunner, NotebookChecks, graded_cells, graded_log, library_digest,
                    outcome_summary, stop_reason, verdict_output)

__all__ = ["release", "autograde", "generate_feedback", "export_grades", "StudentResult", "AutogradeReport"]

#: the error name of a failed verdict in the autograded notebook
FAILURE = tasks.FAILURE


# --------------------------------------------------------------------------------------------------
# release
# --------------------------------------------------------------------------------------------------
def release(course, assignment):
    """``nbgrader generate_assignment``: the student version into ``release/<assignment>``, and the
    assignment into the gradebook. Returns the release folder. The checks of every notebook are recorded once,
    so that a test cell the grader cannot record fails here, not at grading time. Refused while another command
    holds the assignment's lock (a grader)."""
    course.check_assignment(assignment)
    with assignment_lock(course, assignment, f"course release {assignment}"):
        return _release(course, assignment)


def _release(course, assignment):
    from nbgrader.converters import GenerateAssignment

    for name in course.source_notebooks(assignment):
        _plan(course, assignment, name)
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


def _plan(course, assignment, notebook):
    """``(Plan, hidden modules)`` of one source notebook."""
    import nbformat

    from .verdicts import PlanError, record_plan

    path = os.path.join(course.path("source", ".", assignment), notebook + ".ipynb")
    nb = nbformat.read(path, as_version=4)
    try:
        plan = record_plan(nb)
    except PlanError as error:
        raise CourseError(f"{assignment}/{notebook}.ipynb: {error}") from None
    hidden = list(nb.metadata.get("grading", {}).get("hidden_modules", []))
    exposed = sorted(module for module in plan.reference_modules
                     if not any(module == h or module.startswith(h + ".") for h in hidden))
    if exposed:
        raise CourseError(f"{assignment}/{notebook}.ipynb: its checks compare with {', '.join(exposed)}, which students "
                          "could import while graded: list it in the notebook's metadata grading.hidden_modules")
    return plan, hidden


# --------------------------------------------------------------------------------------------------
# autograde
# --------------------------------------------------------------------------------------------------
@dataclass
class StudentResult:
    student: str
    status: str  # "graded", "graded (...)", "kernel died ...", "timeout ...", "invalid: ..."
    score: float = 0.0
    max_score: float = 0.0
    seconds: float | None = None  # wall-clock time of its seal
    reason: str = ""  # the first failed check, or why nothing could be graded
    skipped: bool = False  # graded successfully from the same submission by an earlier run: not graded again

    @property
    def ok(self):
        return self.skipped or self.status.startswith("graded")


@dataclass
class AutogradeReport:
    assignment: str
    results: list = field(default_factory=list)  # StudentResult, sorted by student
    problems: list = field(default_factory=list)  # submissions.Problem
    seal_note: str = ""
    manual_points: float = 0.0

    @property
    def ok(self):
        return not self.problems and all(r.ok for r in self.results)

    def table(self):
        rows = [("student", "score", "max", "time", "status", "first problem")]
        rows += [(r.student, f"{r.score:g}", f"{r.max_score:g}", "-" if r.seconds is None else f"{r.seconds:.0f}s",
                  r.status, _one_line(r.reason, 160)) for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}  {e:<{widths[4]}}  {f}".rstrip()
                 for a, b, c, d, e, f in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        return "\n".join(lines)


def _one_line(text, width):
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass
class _Run:
    """What the threads of one autograde run share."""

    assignment: str
    runner: object  # grading.tasks.LocalRunner or DaskRunner
    limits: SealLimits
    log_dir: str
    cell_timeout: int
    state: GradingState = None
    digests: dict = field(default_factory=dict)  # student -> hash of the submission being graded
    library: str = ""  # grading.tasks.library_digest() of this grader
    keep_jobs: bool = False  # --keep-scratch
    interrupted: bool = False  # Ctrl-C or SIGTERM: a seal killed now says nothing about the submission
    lock: threading.Lock = field(default_factory=threading.Lock)  # the gradebook's one writer
    outcomes: dict = field(default_factory=dict)  # (student, notebook) -> dict


class SealedExecute(Preprocessor):
    """nbgrader's Execute step, done by :func:`grading.tasks.grade_notebook` through the run's runner (in a seal
    here, or on a Dask worker): the executed cells' outputs and the verdicts come back."""

    enabled = True
    run: _Run = None  # set on a subclass made for each autograde run

    def preprocess(self, nb, resources):
        import nbformat

        run = self.run
        student = resources["nbgrader"]["student"]
        notebook = resources["nbgrader"]["notebook"]
        files = {}
        folder = resources.get("metadata", {}).get("path") or ""
        for path in sorted(glob.glob(os.path.join(folder, "*"))):  # the assignment's supporting files
            if os.path.isfile(path) and not os.path.islink(path) and not path.endswith(".ipynb"):
                with open(path, "rb") as handle:
                    files[os.path.basename(path)] = handle.read()
        task = GradingTask(run.assignment, student, notebook, nbformat.writes(nb), files, run.limits,
                           run.cell_timeout, run.library, run.keep_jobs, run.runner.run_id)
        run.lock.release()  # other students' nbgrader steps may run while this one is graded
        try:
            graded = run.runner.grade(task)
        finally:
            run.lock.acquire()
        with open(os.path.join(run.log_dir, f"{student}.log"), "a", encoding="utf-8") as log:
            log.write(graded_log(graded))
        executed = nbformat.reads(graded.content, as_version=4)
        if len(executed.cells) != len(nb.cells):
            raise RuntimeError(f"the graded notebook has {len(executed.cells)} cells, the submission {len(nb.cells)}")
        for cell, done in zip(nb.cells, executed.cells):  # only the outputs come back into nbgrader's notebook
            if cell.cell_type == "code":
                cell.outputs = done.get("outputs", [])
                cell.execution_count = done.get("execution_count")
        run.outcomes[(student, notebook)] = outcome_summary(graded)
        return nb, resources


class ApplyVerdicts(Preprocessor):
    """Each graded test cell's only output is the grader's verdict again, after nbgrader's LimitOutput (what
    ``SaveAutoGrades`` scores)."""

    enabled = True
    run: _Run = None

    def preprocess(self, nb, resources):
        run = self.run
        student = resources["nbgrader"]["student"]
        notebook = resources["nbgrader"]["notebook"]
        verdicts = run.outcomes.get((student, notebook), {}).get("verdicts", {})
        for gid, cell in graded_cells(nb).items():
            passed, message = verdicts.get(gid, (False, "the grader has no verdict for this test cell"))
            cell.outputs = [verdict_output(gid, passed, message)]
        return nb, resources


def _stop_reason(outcome, run):
    return stop_reason(outcome.get("stopped"), run.limits)


def _worst(outcomes):
    """The outcome that speaks for a student with several notebooks: the first that failed, else the first."""
    for bad in (lambda o: not o, lambda o: not o.get("answered"), lambda o: o.get("error"), lambda o: o.get("first_failure")):
        for outcome in outcomes:
            if bad(outcome):
                return outcome
    return outcomes[0] if outcomes else {}


def _status(outcome, run):
    """The summary's status of one student's (only) notebook run."""
    if not outcome:
        return "error: not graded"
    if not outcome.get("answered"):
        reason = _stop_reason(outcome, run)
        return reason if reason.startswith(("timeout", "memory", "CPU", "output")) else "error: " + reason
    error = outcome.get("error") or ""
    if "DeadKernel" in error or "Kernel died" in error or "kernel died" in error.lower():
        return "kernel died (graded what ran before)"
    if error:
        return "error: " + _one_line(error, 80)
    notes = []
    if outcome.get("timeouts"):
        notes.append(f"{outcome['timeouts']} cell{'s' if outcome['timeouts'] > 1 else ''} timed out")
    if outcome.get("memory"):
        notes.append(f"{outcome['memory']} cell{'s' if outcome['memory'] > 1 else ''} ran out of memory")
    return "graded" + (f" ({', '.join(notes)})" if notes else "")


def _record(run, result):
    """Write one finished student's outcome into the state file (before the next student is reported)."""
    run.state.record(result.student, GRADED if result.ok else FAILED, submission=run.digests.get(result.student),
                     score=result.score, max_score=result.max_score, status=result.status, reason=result.reason,
                     seconds=result.seconds)


@contextlib.contextmanager
def _keep_environment(**variables):
    """Stands in for ``nbgrader.utils.setenv`` while threads grade: the variables are already set."""
    yield


def autograde(course, assignment, submissions_path, *, jobs=None, limits=None, cell_timeout=None,
              progress=True, warn=None, keep_scratch=False, regrade=(), force=False, note=None, scheduler=None):
    """Collect the submissions in ``submissions_path`` and autograde every student, sealed; returns a report.

    ``warn(message)`` is called once for every skipped file, before grading starts; ``note(message)`` once for
    every student skipped because an earlier run graded the same submission successfully (the students in
    ``regrade``, or all with ``force``, are graded again anyway). The assignment's lock is held throughout: a
    second grader of the same assignment is refused (``CourseError``).

    ``scheduler`` (e.g. ``"tcp://10.0.0.5:8786"``) grades on the workers of that Dask cluster instead of this
    machine (:class:`grading.tasks.DaskRunner`); ``jobs`` is then how many notebooks are in flight (default: the
    cluster's worker threads). This process stays the only writer of the gradebook either way.
    """
    limits = limits or SealLimits()
    limits.validate()
    course.released_notebooks(assignment)
    with assignment_lock(course, assignment, f"course autograde {assignment}"):
        runner = DaskRunner(scheduler, jobs) if scheduler else LocalRunner(jobs)
        try:
            runner.connect()  # an unreachable cluster or a missing bubblewrap stops the run before anything changes
            return _autograde(course, assignment, submissions_path, runner=runner, limits=limits,
                              cell_timeout=cell_timeout, progress=progress, warn=warn, keep_scratch=keep_scratch,
                              regrade=set(regrade or ()), force=force, note=note)
        finally:
            runner.close()


def _autograde(course, assignment, submissions_path, *, runner, limits, cell_timeout, progress, warn, keep_scratch,
               regrade, force, note):
    from nbgrader.converters import Autograde
    from traitlets.config import Config

    notebooks = course.released_notebooks(assignment)
    state = GradingState(course, assignment)
    max_code, max_written = gradebook.max_scores(course, assignment)
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
        unknown = sorted(regrade - set(students))
        if students and unknown:
            raise CourseError(f"--regrade {unknown[0]}: {submissions_path} holds no valid submission of theirs")
        for student in invalid:
            reasons = [p.message for p in problems if p.student == student]
            report.results.append(StudentResult(student, "invalid: " + _one_line(reasons[0], 80), 0.0, max_code))
        gradebook.record_students(course, invalid)  # listed with 0 points in the grades
        for student in invalid:
            reasons = [p.message for p in problems if p.student == student]
            state.record(student, FAILED, submission=None, score=0.0, max_score=max_code, status="invalid",
                         reason="; ".join(reasons))
        if not students:
            raise CourseError(f"nothing to grade in {submissions_path}: no valid submission "
                              f"(expected notebooks named <student_id>_{notebooks[0]}.ipynb)")

        # who is left to grade: every student but those graded successfully from this very submission
        digests = {student: submission_hash({s.notebook: s.path for s in submissions if s.student == student})
                   for student in students}
        in_gradebook = gradebook.code_scores(course, assignment)
        to_grade = []
        for student in students:
            folder = course.path("submitted", student, assignment)
            collected = {s.notebook: os.path.join(folder, s.notebook + ".ipynb")
                         for s in submissions if s.student == student}
            unchanged = (not force and student not in regrade and state.is_graded(student, digests[student])
                         and student in in_gradebook and all(os.path.isfile(p) for p in collected.values())
                         and submission_hash(collected) == digests[student])
            if not unchanged:
                to_grade.append(student)
                continue
            score, max_score = in_gradebook[student]
            report.results.append(StudentResult(student, "skipped: graded before", score, max_score, None, "",
                                                skipped=True))
            if note:
                note(f"skipped {student}: already graded from this submission ({score:g} / {max_score:g}); "
                     f"--regrade {student} grades it again")
        # written before anything of theirs changes: a run stopped from here on leaves them pending, never "graded"
        state.mark_pending(to_grade, digests)
        if not to_grade:
            report.results.sort(key=lambda r: r.student)
            return report
        collect(course, assignment, [s for s in submissions if s.student in set(to_grade)])

        # the checks of every notebook, recorded once; their inputs are what every seal gets
        checks, hidden = {}, set()
        for notebook in notebooks:
            plan, hidden_modules = _plan(course, assignment, notebook)
            hidden.update(hidden_modules)
            checks[notebook] = NotebookChecks(assignment, notebook, plan, tuple(sorted(hidden_modules)))
        runner.start(checks)
        jobs = runner.jobs
        report.seal_note = (f"each submission sealed by bubblewrap, graded {runner.description}; "
                            f"hidden from the seals: {', '.join(sorted(hidden)) or 'nothing'}")
        config = Config(course.config)
        timeout = cell_timeout or config.get("ExecutePreprocessor", {}).get("timeout", 60) or 60
        log_dir = os.path.join(grading_dir, "logs", assignment)
        os.makedirs(log_dir, exist_ok=True)
        run = _Run(assignment, runner, limits, log_dir, int(timeout), state, digests, library_digest(),
                   keep_scratch)
        sealed_execute = type("SealedExecute", (SealedExecute,), {"run": run})
        apply_verdicts = type("ApplyVerdicts", (ApplyVerdicts,), {"run": run})
        from nbgrader.preprocessors import Execute, SaveAutoGrades

        # nbgrader's own steps, with Execute sealed and the verdicts applied just before SaveAutoGrades
        steps = [sealed_execute if step is Execute else step
                 for step in Autograde().autograde_preprocessors]
        if Execute in steps or SaveAutoGrades not in steps:
            raise CourseError("this nbgrader version's autograde steps are not the expected ones")
        steps.insert(steps.index(SaveAutoGrades), apply_verdicts)
        config.Autograde.autograde_preprocessors = steps
        for student in to_grade:
            shutil.rmtree(course.path("autograded", student, assignment), ignore_errors=True)
            shutil.rmtree(course.path("feedback", student, assignment), ignore_errors=True)
            if os.path.exists(os.path.join(log_dir, f"{student}.log")):
                os.remove(os.path.join(log_dir, f"{student}.log"))

        def grade(student):
            start = time.monotonic()
            with run.lock:
                app = Autograde(coursedir=course.coursedir(assignment_id=assignment, student_id=student),
                                config=config)
                app.force = True
                app.create_student = True
                app.log = quiet_logger(f"grading.nbgrader.{student}")
                success, log, error = run_nbgrader(app)
                outcome = _worst([run.outcomes.get((student, notebook), {}) for notebook in notebooks])
                if not success or not outcome.get("answered"):
                    gradebook.record_failure(course, assignment, student)
                score, max_score = gradebook.code_score(course, assignment, student)
            status = _status(outcome, run) if success else "error: " + _one_line(_last_line(error or log), 80)
            reason = outcome.get("first_failure", "") if outcome.get("answered") else _stop_reason(outcome, run)
            seconds = outcome.get("seconds", time.monotonic() - start)
            result = StudentResult(student, status, score, max_score, seconds, reason)
            if not (run.interrupted and not outcome.get("answered")):  # stopped by Ctrl-C: left pending
                _record(run, result)
            return result

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(to_grade), desc=f"autograding {assignment}", unit="student", file=sys.stderr,
                       dynamic_ncols=True)
        # nbgrader sets and then deletes NBGRADER_EXECUTION around each notebook (utils.setenv), which fails when
        # two threads do it at once: for this run it is set once, and nbgrader's setenv leaves it alone (the
        # seals have an environment of their own)
        import nbgrader.utils

        previous_execution = os.environ.get("NBGRADER_EXECUTION")
        previous_setenv = nbgrader.utils.setenv
        os.environ["NBGRADER_EXECUTION"] = "autograde"
        nbgrader.utils.setenv = _keep_environment
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = {pool.submit(grade, student): student for student in to_grade}
            for future in concurrent.futures.as_completed(futures):
                student = futures[future]
                try:
                    report.results.append(future.result())
                except Exception as error:  # the grader's own failure for one student: the others go on
                    report.results.append(StudentResult(student, f"error: {type(error).__name__}: "
                                                                 f"{_one_line(str(error), 80)}", 0.0, max_code,
                                                        reason=f"{type(error).__name__}: {error}"))
                    if not run.interrupted:
                        _record(run, report.results[-1])
                if bar is not None:  # the student just finished, and the run's counts so far
                    done = [r for r in report.results if not r.skipped]
                    failed = sum(not r.ok for r in done)
                    bar.set_postfix_str(f"{student}: {report.results[-1].status[:30]} | {len(done) - failed} graded, "
                                        f"{failed} failed", refresh=False)
                    bar.update(1)
        except BaseException:  # Ctrl-C: stop the students still queued or running
            run.interrupted = True
            pool.shutdown(wait=False, cancel_futures=True)
            runner.stop()
            raise
        finally:
            pool.shutdown(wait=True)
            nbgrader.utils.setenv = previous_setenv
            if previous_execution is None:
                os.environ.pop("NBGRADER_EXECUTION", None)
            else:
                os.environ["NBGRADER_EXECUTION"] = previous_execution
            if bar is not None:
                bar.close()
    finally:
        if keep_scratch:
            report.seal_note += (f"; scratch folders kept in {base}, each notebook's job folder where it ran "
                                 "(see the students' logs)")
        else:
            shutil.rmtree(base, ignore_errors=True)
    report.results.sort(key=lambda r: r.student)
    return report


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


def export_grades(course, output):
    """Write :func:`grade_rows` as CSV to ``output`` (a path, or ``-`` for standard output)."""
    rows = gradebook.grade_rows(course)

    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=gradebook.GRADE_COLUMNS, lineterminator="\n")
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
