"""Helpers for the test cells of the assignments.

The test cells compare a student's function with the reference implementation of the same name in
:mod:`poisoning.mean_estimation`. Two rules make sure that a part is only credited for the student's own
code:

1. the graded function must be a plain function written in the notebook: the reference object itself, a
   copy of it, or any function defined inside the ``poisoning`` package is rejected
   (:func:`ensure_own_implementation`);
2. while the student's function runs, the reference implementations are switched off
   (:func:`reference_disabled`): every function of :mod:`poisoning.mean_estimation` raises
   ``RuntimeError``, however it was imported, and a profiler notices if code of that module
   runs anyway. Expected outputs are computed *before* the reference is switched off.

Student code runs with warnings silenced, so that a harmless warning printed to stderr does not cost points
(nbgrader scores a test cell that writes to stderr as failed); wrong results are caught by the comparison.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import sys
import threading
import warnings

import numpy as np

__all__ = [
    "ensure_own_implementation",
    "reference_disabled",
    "student_call",
    "check_against_reference",
    "hidden_tests",
]

REFERENCE_MODULE = "poisoning.mean_estimation"
# the notebook's error stream as it was before any student code ran (the setup cell imports this module)
_STDERR = sys.stderr
_PACKAGE = "poisoning"
_lock = threading.RLock()


_DISABLED_FILENAME = "<reference switched off>"
_disabled_codes = {}


def _disabled_code(name):
    """A code object that raises ``RuntimeError``; it replaces the reference ``name`` while disabled.

    It only uses builtins, because it runs with the globals of :mod:`poisoning.mean_estimation`.
    """
    if name not in _disabled_codes:
        message = (f"{REFERENCE_MODULE}.{name} is switched off while your own function is tested: "
                   "write the computation yourself")
        source = f"def {name}(*args, **kwargs):\n    raise RuntimeError({message!r})\n"
        namespace = {}
        exec(compile(source, _DISABLED_FILENAME, "exec"), namespace)
        _disabled_codes[name] = namespace[name].__code__
    return _disabled_codes[name]


def _reference_module():
    import poisoning.mean_estimation as module

    return module


def _package_dir():
    import poisoning

    return os.path.dirname(os.path.realpath(poisoning.__file__))


def _reference_functions():
    """Every plain function defined in :mod:`poisoning.mean_estimation` (public and private helpers)."""
    module = _reference_module()
    return [obj for obj in vars(module).values()
            if inspect.isfunction(obj) and obj.__module__ == module.__name__]


def _reference_file():
    return os.path.realpath(_reference_module().__file__)


def ensure_own_implementation(fn, name=None):
    """Fail (``AssertionError``) unless ``fn`` is a plain function written outside the ``poisoning`` package."""
    name = name or getattr(fn, "__name__", repr(fn))
    if not inspect.isfunction(fn):
        raise AssertionError(f"`{name}` must be a function you define with `def` in this notebook, "
                             f"got {type(fn).__name__}")
    if any(fn is ref for ref in _reference_functions()):
        raise AssertionError(f"`{name}` is the reference implementation from {REFERENCE_MODULE}; "
                             "write your own function instead of importing it")
    module = getattr(fn, "__module__", None) or ""
    if module == _PACKAGE or module.startswith(_PACKAGE + "."):
        raise AssertionError(f"`{name}` comes from the `{module}` module; write your own function")
    filename = fn.__code__.co_filename
    if os.path.isabs(filename):
        real = os.path.realpath(filename)
        if real == _reference_file() or real.startswith(_package_dir() + os.sep):
            raise AssertionError(f"`{name}` runs code of the `poisoning` package; write your own function")
    return fn


@contextlib.contextmanager
def reference_disabled():
    """Switch the reference implementations off for the duration of the ``with`` block.

    Every function of :mod:`poisoning.mean_estimation` gets a code object that raises ``RuntimeError``, so
    a call fails however the function was imported; a profiler records any call of a switched-off function
    and any code of that module that runs anyway (e.g. a copy of a reference function's code object), and
    the block then fails with ``AssertionError``, even where the student's code caught the error.
    Everything is restored in a ``finally`` clause.
    """
    reference_file = _reference_file()
    functions = _reference_functions()
    used = []
    is_reference = {_DISABLED_FILENAME: True}  # file name -> whether its code is the reference's

    def profiler(frame, event, arg):
        if event == "call":
            filename = frame.f_code.co_filename
            hit = is_reference.get(filename)
            if hit is None:
                hit = is_reference[filename] = (os.path.isabs(filename)
                                                and os.path.realpath(filename) == reference_file)
            if hit:
                used.append(frame.f_code.co_name)

    with _lock:
        saved = [(fn, fn.__code__) for fn in functions]
        previous_profiler = sys.getprofile()
        try:
            for fn, _ in saved:
                fn.__code__ = _disabled_code(fn.__name__)
            sys.setprofile(profiler)
            yield used
        finally:
            sys.setprofile(previous_profiler)
            for fn, code in saved:
                fn.__code__ = code
    if used:
        raise AssertionError(_used_message(used))


def _used_message(used):
    return (f"your function called the reference implementation ({REFERENCE_MODULE}.{used[0]}), "
            "which earns no points: write the computation yourself")


def student_call(fn, /, *args, **kwargs):
    """Call the student's ``fn(*args, **kwargs)`` with the reference implementations switched off."""
    ensure_own_implementation(fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with reference_disabled():
            return fn(*args, **kwargs)


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"{type(value).__name__} of length {len(value)}"
    return repr(value)


def _describe_case(args, kwargs):
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return "(" + ", ".join(parts) + ")"


def _compare(got, expected, rtol, atol):
    """``None`` when ``got`` matches ``expected``, else a short description of the difference."""
    if isinstance(expected, np.ndarray) and expected.dtype == bool:
        if not isinstance(got, np.ndarray) or got.dtype != bool:
            return f"expected a boolean numpy array, got {_describe(got)} of type {type(got).__name__}" + (
                f" with dtype {got.dtype}" if isinstance(got, np.ndarray) else "")
        if got.shape != expected.shape:
            return f"expected shape {expected.shape}, got shape {got.shape}"
        if not np.array_equal(got, expected):
            wrong = int(np.sum(got != expected))
            return f"{wrong} of {expected.size} entries differ from the expected mask"
        return None
    if isinstance(expected, float):
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, float, np.integer, np.floating)):
            return f"expected a float (1-D data gives a single number), got {_describe(got)}"
        if not np.isclose(float(got), expected, rtol=rtol, atol=atol):
            return f"expected {expected:.6g}, got {float(got):.6g}"
        return None
    got_array = np.asarray(got) if not isinstance(got, np.ndarray) else got
    if got_array.shape != np.shape(expected):
        return f"expected shape {np.shape(expected)}, got shape {got_array.shape}"
    try:
        close = np.allclose(got_array.astype(np.float64), expected, rtol=rtol, atol=atol)
    except (TypeError, ValueError):
        return f"expected numbers, got {_describe(got)}"
    if not close:
        error = float(np.max(np.abs(got_array.astype(np.float64) - expected)))
        return f"values differ from the expected ones by up to {error:.3g}"
    return None


def check_against_reference(fn, reference_name, cases, *, rtol=1e-7, atol=1e-9):
    """Compare the student's ``fn`` with ``poisoning.mean_estimation.<reference_name>`` on ``cases``.

    ``cases`` is a list of ``(args, kwargs)``. For each case the reference runs first (on a copy of the
    inputs); where it raises, the student's function must raise an exception of the same type. Then the
    student's function runs on fresh copies with the reference switched off. Fails with one
    ``AssertionError`` that names the first failing case.
    """
    reference = getattr(_reference_module(), reference_name)
    ensure_own_implementation(fn, reference_name)
    expected = []
    for args, kwargs in cases:
        try:
            expected.append(("value", reference(*copy.deepcopy(args), **copy.deepcopy(kwargs))))
        except Exception as error:  # the reference rejects this input: so must the student's function
            expected.append(("raises", type(error)))

    failures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with reference_disabled() as used:
            for (args, kwargs), (kind, value) in zip(cases, expected):
                where = f"{reference_name}{_describe_case(args, kwargs)}"
                try:
                    got = fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))
                except Exception as error:
                    if kind == "raises" and isinstance(error, value):
                        continue
                    failures.append(f"{where} raised {type(error).__name__}: {error}")
                    continue
                if kind == "raises":
                    failures.append(f"{where} should raise {value.__name__}")
                    continue
                problem = _compare(got, value, rtol, atol)
                if problem:
                    failures.append(f"{where}: {problem}")
                if used:
                    break
    if failures and not used:
        raise AssertionError(f"{len(failures)} of {len(cases)} test cases failed; the first: {failures[0]}")


class hidden_tests(contextlib.AbstractContextManager):
    """``with hidden_tests("Part A"): ...`` around the checks of a hidden test cell.

    A failure inside the block is reported as one line on the notebook's error stream, without a traceback
    (a traceback would show the hidden test code around the failing line in the student's feedback). nbgrader
    gives no points to a test cell that writes to the error stream, exactly as for an exception. Everything
    is caught, including ``KeyboardInterrupt`` (a cell timeout) and ``SystemExit`` raised by student code.
    """

    def __init__(self, label):
        self.label = label

    def __exit__(self, kind, error, traceback):
        if error is None:
            print(f"{self.label}: the hidden tests pass")
            return False
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        what = type(error).__name__ if not isinstance(error, AssertionError) else ""
        detail = ": ".join(part for part in (what, message) if part) or "failed"
        stream = _STDERR if _STDERR is not None else sys.stderr
        print(f"{self.label}: the hidden tests fail: {detail}", file=stream, flush=True)
        return True
