"""The grader's side of the checks: inputs chosen and verdicts reached outside the student's kernel.

:func:`record_plan` reads the instructor's source notebook and runs its locked set-up cells and its test cells
(visible and hidden) in this process, with :mod:`grading.checks` in *recording* mode and a placeholder for every
name the solution cells define: no student code is involved. Each ``check``/``check_cases`` call becomes a
:class:`Group` of calls with their inputs and what each result must be; where the check names a reference, the
reference runs here, once for the whole class. The inputs (never the expected results) go into every seal
(:meth:`Plan.inputs`); the outputs come back as plain data (:mod:`grading.wire`) and :meth:`Plan.verdicts` decides
each test cell: full points when every call's output is right, none otherwise; a call without an output (the cell
failed before it, the kernel died, the student replaced the check helpers) is a failed call.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
from dataclasses import dataclass, field

from . import checks
from .wire import DecodeError, decode

__all__ = ["Plan", "Group", "record_plan", "PlanError"]


class PlanError(ValueError):
    """The source notebook's test cells cannot be recorded (an instructor's mistake, not a student's)."""


class StudentName:
    """Stands for a function the student writes, while the test cells are recorded."""

    def __init__(self, name):
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        raise PlanError(f"a test cell calls `{self.__name__}` directly: test cells may only pass the student's "
                        "functions to check() or check_cases()")

    def __repr__(self):
        return f"<student's {self.__name__}>"


@dataclass
class Group:
    """The calls of one ``check``/``check_cases`` in a test cell, and what each result must be."""

    function: str
    calls: list  # [(args, kwargs)]
    judges: list  # one checks.Expect / checks.Raises / checks.Judge per call


@dataclass
class Plan:
    """Every check of one notebook: ``{test cell id: [Group]}``, in the notebook's order."""

    cells: dict = field(default_factory=dict)
    points: dict = field(default_factory=dict)  # test cell id -> points
    reference_modules: set = field(default_factory=set)  # modules of the references given by dotted name

    def inputs(self):
        """What the seal gets: ``{cell: [[(args, kwargs), ...] per group]}`` (no expected result)."""
        return {cell: [copy.deepcopy(group.calls) for group in groups] for cell, groups in self.cells.items()}

    def verdicts(self, records, cell_errors=None):
        """``{cell: (passed, message)}`` from the seal's records (untrusted, checked here).

        ``cell_errors`` maps a cell to the error its execution showed (e.g. ``NameError: ...``), quoted in the
        message of a call that has no output; it never changes a verdict.
        """
        cell_errors = cell_errors or {}
        outcomes = _outcomes(records)
        result = {}
        for cell, groups in self.cells.items():
            failures, notes, total = [], [], 0
            for g, group in enumerate(groups):
                for k, ((args, kwargs), judge) in enumerate(zip(group.calls, group.judges)):
                    total += 1
                    call = checks.describe_call(group.function, args, kwargs)
                    outcome = outcomes.get((cell, g, k))
                    if outcome is None:
                        why = cell_errors.get(cell)
                        failures.append(f"{call}: no result" + (f" ({why})" if why else
                                                                 " (the test cell did not run this check)"))
                        continue
                    if hasattr(judge, "verdict"):
                        problem, note = judge.verdict(outcome, args, kwargs)
                        if note and not problem:
                            notes.append(note)
                    else:
                        problem = judge.problem(outcome, args, kwargs)
                    if problem:
                        failures.append(f"{call}: {problem}")
            if not failures:
                result[cell] = (True, f"all {total} check{'s' if total != 1 else ''} pass"
                                + "".join(f"; {note}" for note in notes))
            elif total == 1:
                result[cell] = (False, failures[0])
            else:
                result[cell] = (False, f"{len(failures)} of {total} checks failed; the first: {failures[0]}")
        return result


def _outcomes(records):
    """``{(cell, group, call): outcome}`` from the records; anything malformed is left out."""
    outcomes = {}
    if not isinstance(records, list):
        return outcomes
    for record in records:
        if not isinstance(record, dict):
            continue
        cell, group, call = record.get("cell"), record.get("group"), record.get("call")
        if not isinstance(cell, str) or not all(isinstance(i, int) and not isinstance(i, bool) for i in (group, call)):
            continue
        if "value" in record:
            try:
                outcome = ("value", decode(record["value"]))
            except (DecodeError, RecursionError, TypeError, ValueError, OverflowError):
                outcome = ("raised", "UnreadableResult", "the result could not be read back", ["UnreadableResult"])
        elif isinstance(record.get("raised"), str):
            bases = record.get("bases")
            bases = [b for b in bases if isinstance(b, str)] if isinstance(bases, list) else []
            message = record.get("message") if isinstance(record.get("message"), str) else ""
            outcome = ("raised", record["raised"][:100], message[:200], bases[:50])
        else:
            continue
        outcomes[(cell, group, call)] = outcome
    return outcomes


# --------------------------------------------------------------------------------------------------
# recording the source notebook's checks
# --------------------------------------------------------------------------------------------------
def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def student_names(nb):
    """Every name that the solution cells of the source notebook define (functions, classes, variables)."""
    names = set()
    for cell in nb.cells:
        if cell.cell_type != "code" or not _nbgrader(cell).get("solution"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as error:
            raise PlanError(f"solution cell {_nbgrader(cell).get('grade_id')}: {error}") from None
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


class _Recorder:
    def __init__(self):
        self.cell = None
        self.plan = Plan()

    def add(self, fn, calls, spec):
        if self.cell is None:
            raise PlanError("check() may only be called in a graded test cell")
        if not isinstance(fn, StudentName):
            raise PlanError(f"test cell {self.cell}: check() must be given a function the student writes "
                            f"(a name defined in a solution cell), got {fn!r}")
        if isinstance(spec, tuple) and isinstance(spec[1], str):
            self.plan.reference_modules.add(spec[1].rpartition(".")[0])
        judges = []
        for args, kwargs in calls:
            if isinstance(spec, tuple):  # a reference: its result on this input is what is expected
                judges.append(checks.expected_from_reference(spec[1], args, kwargs, spec[2], spec[3]))
            else:
                judges.append(spec)
        self.plan.cells.setdefault(self.cell, []).append(Group(fn.__name__, list(calls), judges))


def record_plan(nb):
    """The :class:`Plan` of a source notebook (an ``nbformat`` notebook with nbgrader metadata)."""
    namespace = {"__name__": "__grading_record__"}
    for name in student_names(nb):
        namespace[name] = StudentName(name)
    recorder = _Recorder()
    previous = checks._recorder
    checks._recorder = recorder
    try:
        for cell in nb.cells:
            meta = _nbgrader(cell)
            if cell.cell_type != "code" or not meta or meta.get("solution"):
                continue
            is_test = bool(meta.get("grade"))
            if not is_test and not meta.get("locked"):
                continue
            recorder.cell = meta.get("grade_id") if is_test else None
            if is_test:
                recorder.plan.cells.setdefault(recorder.cell, [])
                recorder.plan.points[recorder.cell] = float(meta.get("points", 0))
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # what the cells print is for students
                    exec(compile(cell.source, f"<{meta.get('grade_id', 'cell')}>", "exec"), namespace)
            except PlanError:
                raise
            except Exception as error:
                raise PlanError(f"cell {meta.get('grade_id')} of the source notebook fails while its checks are "
                                f"recorded: {type(error).__name__}: {error}") from error
    finally:
        checks._recorder = previous
    empty = [cell for cell, groups in recorder.plan.cells.items() if not groups]
    if empty:
        raise PlanError(f"test cells without any check(): {', '.join(empty)}")
    return recorder.plan
