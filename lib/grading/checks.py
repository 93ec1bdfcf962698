"""The check API of the assignments' test cells: the only part of :mod:`grading` a student notebook imports.

A test cell states what to check, never how the verdict is reached::

    from grading.checks import check, check_cases

    X = np.array([0.0, 1.0, 2.0, 3.0, 100.0])
    check(distance_filter, X, 3.0, expect=np.array([True, True, True, True, False]))
    check(filtered_mean, X, 0.5, center=50.0, raises=ValueError)
    check(loss_scores, X, y, judge=flipped_point_fits_worst)          # a property, checked by a function
    check_cases(trimmed_mean, hidden_cases, reference="poisoning.mean_estimation.trimmed_mean")

``check(fn, *args, **kwargs)`` is one call of the student's function ``fn``; exactly one of the keyword options
says what its result must be: ``expect=`` a value (compared with ``rtol``/``atol``; a boolean array must be a
boolean array of the same shape; a dict must have the same keys), ``reference=`` a function, or the dotted name of
one, whose result on the same input is expected (where the reference raises, the student's function must raise an
exception of the same type), ``raises=`` an exception type, or ``judge=`` a function of the output that raises
``AssertionError`` when it is wrong. ``check_cases(fn, cases, reference=...)`` runs many calls: ``cases`` is a
list of ``(args, kwargs)``, or a function without arguments that returns one; put the code that builds hidden
inputs (and any import of the reference modules) inside that function. A test cell passes when every call in it
passes. Student keyword arguments named ``expect``, ``reference``, ``raises``, ``judge``, ``rtol`` or ``atol``
cannot be passed through :func:`check`.

The same cell runs in three modes:

* **local** (JupyterLab's *Validate*, ``nbgrader validate``, a plain ``nbgrader autograde``): the calls run in the
  notebook and a wrong result raises ``AssertionError`` with a one-line description of the first failing call;
* **recording** (the grader, outside any student's kernel, on the instructor's source notebook): nothing of the
  student runs; :mod:`grading.verdicts` collects every call's input and what its result must be, and computes the
  references' results once for the whole class;
* **sealed** (``course autograde``, inside the seal of one submission): the arguments written in the cell are
  ignored; each call takes the input the grader chose for it, runs the student's function on it and hands the
  output out as plain data (:mod:`grading.wire`). Nothing in the kernel decides a score: the grader compares
  the outputs with the expected ones outside the seal, and a call whose output never arrives counts as failed.

This module needs nothing but NumPy: in the seal the reference implementations are not importable at all.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import warnings

import numpy as np

__all__ = ["check", "check_cases"]

_MISSING = object()
# environment of the seal (set by grading.seal): the job's inputs, and a private folder for the run's state
JOB_ENV, RUN_ENV = "GRADING_JOB", "GRADING_RUN"
INPUTS_FILE, CELL_FILE, RECORDS_FILE = "inputs.pickle", "cell", "records.jsonl"
_recorder = None  # set by grading.verdicts while it records the source notebook's checks


# --------------------------------------------------------------------------------------------------
# what a result must be
# --------------------------------------------------------------------------------------------------
class Expect:
    """The result must equal ``value`` (within ``rtol``/``atol``)."""

    def __init__(self, value, rtol=1e-7, atol=1e-9):
        self.value, self.rtol, self.atol = value, rtol, atol

    def problem(self, outcome, args, kwargs):
        if outcome[0] == "raised":
            return f"raised {outcome[1]}: {outcome[2]}" if outcome[2] else f"raised {outcome[1]}"
        return compare(outcome[1], self.value, self.rtol, self.atol)


class Raises:
    """The call must raise an exception of type ``name`` (or of a subclass)."""

    def __init__(self, name):
        self.name = name

    def problem(self, outcome, args, kwargs):
        if outcome[0] == "raised" and self.name in outcome[3]:
            return None
        if outcome[0] == "raised":
            return f"raised {outcome[1]}, expected {self.name}"
        return f"should raise {self.name}, returned {describe(outcome[1])}"


class Judge:
    """``judge(output)`` raises ``AssertionError`` (with a message for the student) when the output is wrong.

    A judge that returns a string on success adds it to the verdict, e.g. the test error a student's poisons
    reached, as measured by the grader.
    """

    def __init__(self, function):
        self.function = function

    def verdict(self, outcome, args, kwargs):
        """``(problem or None, note or None)``."""
        if outcome[0] == "raised":
            return (f"raised {outcome[1]}: {outcome[2]}" if outcome[2] else f"raised {outcome[1]}"), None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                note = self.function(outcome[1])
        except AssertionError as error:
            return (str(error).strip().splitlines()[0] if str(error).strip() else "the result is wrong"), None
        except Exception as error:  # the judge could not even read the result
            return f"the result is not what was asked for ({type(error).__name__}: {str(error)[:100]})", None
        return None, (note.strip().splitlines()[0][:200] if isinstance(note, str) and note.strip() else None)

    def problem(self, outcome, args, kwargs):
        return self.verdict(outcome, args, kwargs)[0]


def resolve(reference):
    """A reference given as a dotted name (``"package.module.function"``) or a callable, as a callable."""
    if callable(reference):
        return reference
    if not isinstance(reference, str) or "." not in reference:
        raise TypeError(f"reference must be a callable or a dotted name, got {reference!r}")
    module_name, _, name = reference.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def expected_from_reference(reference, args, kwargs, rtol, atol):
    """Run the reference on a copy of the input: :class:`Expect` its result, or :class:`Raises` its error."""
    function = resolve(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = function(*copy.deepcopy(args), **copy.deepcopy(kwargs))
        except Exception as error:  # the reference rejects this input: so must the student's function
            return Raises(type(error).__name__)
    return Expect(value, rtol, atol)


def _spec(expect, reference, raises, judge, rtol, atol):
    given = [name for name, value in (("expect", expect), ("reference", reference), ("raises", raises),
                                      ("judge", judge)) if value is not _MISSING and value is not None]
    if len(given) != 1:
        raise TypeError("check() needs exactly one of expect=, reference=, raises= or judge=, got "
                        + (", ".join(given) or "none"))
    if given[0] == "expect":
        return Expect(expect, rtol, atol)
    if given[0] == "raises":
        if not (isinstance(raises, type) and issubclass(raises, BaseException)):
            raise TypeError(f"raises= must be an exception type, got {raises!r}")
        return Raises(raises.__name__)
    if given[0] == "judge":
        if not callable(judge):
            raise TypeError("judge= must be a function of the output")
        return Judge(judge)
    return ("reference", reference, rtol, atol)


# --------------------------------------------------------------------------------------------------
# describing and comparing results
# --------------------------------------------------------------------------------------------------
def describe(value):
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_call(name, args, kwargs):
    parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
    return f"{name}(" + ", ".join(parts) + ")"


def _keys(mapping):
    return ", ".join(repr(key) for key in mapping)


def compare(got, expected, rtol, atol):
    """``None`` when ``got`` matches ``expected``, else a short description of the difference.

    ``nan`` matches ``nan``; a ``dict`` matches when it has the same keys and every value matches; a tuple that
    holds arrays, tuples or dicts (e.g. ``(X, y)``) matches a tuple or list of the same length whose items match
    one by one; a boolean array must be a boolean array with the same entries; a float must be a single number
    (not a bool).
    """
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"expected a dict with the keys {_keys(expected)}, got {describe(got)}"
        if set(got) != set(expected):
            return f"expected the keys {_keys(expected)}, got {_keys(got)}"
        for key, value in expected.items():
            problem = compare(got[key], value, rtol, atol)
            if problem:
                return f"[{key!r}]: {problem}"
        return None
    if isinstance(expected, tuple) and any(isinstance(item, (np.ndarray, tuple, list, dict)) for item in expected):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a tuple of {len(expected)} items, got {describe(got)}"
        for position, (got_item, expected_item) in enumerate(zip(got, expected)):
            problem = compare(got_item, expected_item, rtol, atol)
            if problem:
                return f"item {position} of the tuple: {problem}"
        return None
    if isinstance(expected, np.ndarray) and expected.dtype == bool:
        if not isinstance(got, np.ndarray) or got.dtype != bool:
            return f"expected a boolean numpy array, got {describe(got)} of type {type(got).__name__}" + (
                f" with dtype {got.dtype}" if isinstance(got, np.ndarray) else "")
        if got.shape != expected.shape:
            return f"expected shape {expected.shape}, got shape {got.shape}"
        if not np.array_equal(got, expected):
            wrong = int(np.sum(got != expected))
            return f"{wrong} of {expected.size} entries differ from the expected mask"
        return None
    if isinstance(expected, (float, np.floating)) and not isinstance(expected, np.ndarray):
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, float, np.integer, np.floating)):
            return f"expected a float (a single number), got {describe(got)}"
        if not np.isclose(float(got), float(expected), rtol=rtol, atol=atol, equal_nan=True):
            return f"expected {float(expected):.6g}, got {float(got):.6g}"
        return None
    if not isinstance(got, (np.ndarray, list, tuple, int, float, complex, np.generic)) or isinstance(got, str):
        return f"expected numbers, got {describe(got)}"
    try:
        got_array = np.asarray(got)
        expected_array = np.asarray(expected)
    except Exception:
        return f"expected numbers, got {describe(got)}"
    if got_array.shape != expected_array.shape:
        return f"expected shape {expected_array.shape}, got shape {got_array.shape}"
    try:
        close = np.allclose(got_array.astype(np.complex128), expected_array.astype(np.complex128),
                            rtol=rtol, atol=atol, equal_nan=True)
    except (TypeError, ValueError):
        return f"expected numbers, got {describe(got)}"
    if not close:
        error = float(np.nanmax(np.abs(got_array.astype(np.complex128) - expected_array.astype(np.complex128))))
        return f"values differ from the expected ones by up to {error:.3g}"
    return None


# --------------------------------------------------------------------------------------------------
# running a student's function
# --------------------------------------------------------------------------------------------------
def run_student(fn, args, kwargs):
    """``("value", result)`` or ``("raised", type name, message, names of the type and its bases)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ("value", fn(*copy.deepcopy(args), **copy.deepcopy(kwargs)))
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as error:  # SystemExit included: the student's function failed
            message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            return ("raised", type(error).__name__, message, [t.__name__ for t in type(error).__mro__])


def _calls(cases):
    if callable(cases):
        cases = cases()
    calls = []
    for case in cases:
        if not (isinstance(case, tuple) and len(case) == 2 and isinstance(case[0], (tuple, list))
                and isinstance(case[1], dict)):
            raise TypeError(f"each case must be (args, kwargs), got {describe(case)}")
        calls.append((tuple(case[0]), dict(case[1])))
    return calls


def _reference_package_function(fn):
    module = getattr(fn, "__module__", None) or ""
    return module == "poisoning" or module.startswith("poisoning.")


def _local(fn, calls, spec):
    name = getattr(fn, "__name__", "function")
    if not callable(fn):
        raise AssertionError(f"`{name}` is not a function: define it in the notebook")
    if _reference_package_function(fn):
        raise AssertionError(f"`{name}` comes from the `{fn.__module__}` module; write your own function "
                             "(the reference modules are not available when your notebook is graded)")
    failures = []
    for args, kwargs in calls:
        judge = spec
        if isinstance(spec, tuple):  # a reference: computed here, in the notebook
            judge = expected_from_reference(spec[1], args, kwargs, spec[2], spec[3])
        problem = judge.problem(run_student(fn, args, kwargs), args, kwargs)
        if problem:
            failures.append(f"{describe_call(name, args, kwargs)}: {problem}")
    if failures:
        if len(calls) == 1:
            raise AssertionError(failures[0])
        raise AssertionError(f"{len(failures)} of {len(calls)} checks failed; the first: {failures[0]}")


# --------------------------------------------------------------------------------------------------
# sealed mode: the grader's inputs in, plain outputs out
# --------------------------------------------------------------------------------------------------
class _Sealed:
    def __init__(self, job, run):
        self.job, self.run = job, run
        self.inputs = None
        self.counters = {}

    def current_cell(self):
        try:
            with open(os.path.join(self.run, CELL_FILE)) as handle:
                return handle.read().strip()
        except OSError:
            return ""

    def load_inputs(self):
        if self.inputs is None:
            import pickle

            with open(os.path.join(self.job, INPUTS_FILE), "rb") as handle:  # written by the grader
                self.inputs = pickle.load(handle)
        return self.inputs

    def write(self, record):
        line = json.dumps(record, allow_nan=False)
        with open(os.path.join(self.run, RECORDS_FILE), "a") as handle:
            handle.write(line + "\n")

    def check(self, fn):
        from .wire import encode

        cell = self.current_cell()
        group = self.counters.get(cell, 0)
        self.counters[cell] = group + 1
        groups = self.load_inputs().get(cell, [])
        if group >= len(groups):
            return
        for index, (args, kwargs) in enumerate(groups[group]):
            if not callable(fn):
                outcome = ("raised", "TypeError", f"{describe(fn)} is not a function", ["TypeError"])
            else:
                outcome = run_student(fn, args, kwargs)
            if outcome[0] == "value":
                record = {"cell": cell, "group": group, "call": index, "value": encode(outcome[1])}
            else:
                record = {"cell": cell, "group": group, "call": index, "raised": outcome[1],
                          "message": outcome[2], "bases": outcome[3]}
            self.write(record)


_sealed = None


def _sealed_mode():
    global _sealed
    job, run = os.environ.get(JOB_ENV), os.environ.get(RUN_ENV)
    if job and run and os.path.isfile(os.path.join(job, INPUTS_FILE)):
        if _sealed is None:
            _sealed = _Sealed(job, run)
        return _sealed
    return None


# --------------------------------------------------------------------------------------------------
# the API
# --------------------------------------------------------------------------------------------------
def check(fn, *args, expect=_MISSING, reference=None, raises=None, judge=None, rtol=1e-7, atol=1e-9, **kwargs):
    """Check one call ``fn(*args, **kwargs)`` of the student's function (see the module's docstring)."""
    spec = _spec(expect, reference, raises, judge, rtol, atol)
    _dispatch(fn, lambda: [(args, kwargs)], spec)


def check_cases(fn, cases, *, reference, rtol=1e-7, atol=1e-9):
    """Check ``fn`` on every ``(args, kwargs)`` of ``cases`` (a list, or a function that returns one) against
    ``reference`` (a function, or its dotted name)."""
    spec = _spec(_MISSING, reference, None, None, rtol, atol)
    _dispatch(fn, lambda: _calls(cases), spec)


def _dispatch(fn, calls, spec):
    if _recorder is not None:
        _recorder.add(fn, calls(), spec)
        return
    sealed = _sealed_mode()
    if sealed is not None:  # the input and the verdict are the grader's: only run the function
        sealed.check(fn)
        return
    _local(fn, calls(), spec)
