"""Helpers for the test cells of the assignments.

The test cells compare a student's function with a reference implementation of the ``poisoning`` package: a
function of the same name (assignment 1, :mod:`poisoning.mean_estimation`) or a small adapter around the
library's estimators (assignment 2, e.g. ``lambda X, y: L2Defence().fit(X, y).scores_`` from
:mod:`poisoning.sanitization`). Two rules make sure that a part is only credited for the student's own code:

1. the graded function must be a plain function written in the notebook: a reference function or method
   itself, a copy of it, or any function defined inside the ``poisoning`` package is rejected
   (:func:`ensure_own_implementation`);
2. while the student's function runs, the reference implementations are switched off
   (:func:`reference_disabled`): every function of the reference modules (:data:`REFERENCE_MODULES`) and every
   method of the classes defined there raises ``RuntimeError``, however it was imported, and a profiler
   notices if code of those modules runs anyway. Expected outputs are computed *before* the reference is
   switched off.

Student code runs with warnings silenced, so that a harmless warning printed to stderr does not cost points
(nbgrader scores a test cell that writes to stderr as failed); wrong results are caught by the comparison.
The reference runs with warnings silenced too.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import inspect
import os
import sys
import threading
import warnings

import numpy as np

__all__ = [
    "REFERENCE_MODULES",
    "ensure_own_implementation",
    "reference_disabled",
    "student_call",
    "check_against_reference",
    "hidden_tests",
]

#: The modules whose functions, and the methods of whose classes, are switched off while student code runs.
#: A reference given by name to :func:`check_against_reference` is looked up in them, in this order.
REFERENCE_MODULES = ("poisoning.mean_estimation", "poisoning.sanitization")
# the notebook's error stream as it was before any student code ran (the setup cell imports this module)
_STDERR = sys.stderr
_PACKAGE = "poisoning"
_lock = threading.RLock()


_DISABLED_FILENAME = "<reference switched off>"
_disabled_codes = {}  # (label, name, free variables) -> code object
_disabled_labels = {}  # code object -> label, e.g. "poisoning.sanitization.L2Defence.fit"


def _disabled_code(label, name, freevars=()):
    """A code object that raises ``RuntimeError``; it replaces the reference function ``label`` while disabled.

    It only uses builtins, because it runs with the globals of the reference module. A method that calls
    ``super()`` is a closure over ``__class__``: its replacement has the same free variables, as a code object
    must have to be assigned to it.
    """
    key = (label, name, tuple(freevars))
    if key not in _disabled_codes:
        message = f"{label} is switched off while your own function is tested: write the computation yourself"
        cells = "".join(f"    {var} = None\n" for var in freevars)
        closure = f"        lambda: ({', '.join(freevars)},)\n" if freevars else ""  # never called
        source = (f"def _outer():\n{cells}    def {name}(*args, **kwargs):\n{closure}"
                  f"        raise RuntimeError({message!r})\n    return {name}\n")
        namespace = {}
        exec(compile(source, _DISABLED_FILENAME, "exec"), namespace)
        code = namespace["_outer"]().__code__
        _disabled_codes[key] = code
        _disabled_labels[code] = label
    return _disabled_codes[key]


def _reference_modules():
    return [importlib.import_module(name) for name in REFERENCE_MODULES]


def _package_dir():
    import poisoning

    return os.path.dirname(os.path.realpath(poisoning.__file__))


def _functions_of(attribute):
    """The plain functions behind a class attribute: a method, static or class method, or property."""
    if isinstance(attribute, (staticmethod, classmethod)):
        attribute = attribute.__func__
    if isinstance(attribute, property):
        return [f for f in (attribute.fget, attribute.fset, attribute.fdel) if inspect.isfunction(f)]
    if isinstance(attribute, functools.cached_property):
        attribute = attribute.func
    return [attribute] if inspect.isfunction(attribute) else []


def _reference_functions():
    """``(label, function)`` for every plain function defined in a reference module (public and private
    helpers) and every method of the classes defined there (including properties, static and class methods)."""
    found, seen = [], set()
    for module in _reference_modules():
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            candidates = []
            if inspect.isfunction(obj):
                candidates = [obj]
            elif inspect.isclass(obj):
                candidates = [fn for attribute in vars(obj).values() for fn in _functions_of(attribute)]
            for fn in candidates:
                if id(fn) not in seen and fn.__module__ == module.__name__:
                    seen.add(id(fn))
                    found.append((f"{module.__name__}.{fn.__qualname__}", fn))
    return found


def _reference_files():
    """``{real path of a reference module's file: module name}``."""
    return {os.path.realpath(module.__file__): module.__name__ for module in _reference_modules()}


def _resolve(name):
    """The reference function ``name`` of the first reference module that has one."""
    for module in _reference_modules():
        obj = getattr(module, name, None)
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            return obj
    raise LookupError(f"no reference function named {name!r} in {', '.join(REFERENCE_MODULES)}")


def ensure_own_implementation(fn, name=None):
    """Fail (``AssertionError``) unless ``fn`` is a plain function written outside the ``poisoning`` package."""
    name = name or getattr(fn, "__name__", repr(fn))
    if not inspect.isfunction(fn):
        raise AssertionError(f"`{name}` must be a function you define with `def` in this notebook, "
                             f"got {type(fn).__name__}")
    for label, ref in _reference_functions():
        if fn is ref:
            raise AssertionError(f"`{name}` is the reference implementation {label}; "
                                 "write your own function instead of importing it")
    module = getattr(fn, "__module__", None) or ""
    if module == _PACKAGE or module.startswith(_PACKAGE + "."):
        raise AssertionError(f"`{name}` comes from the `{module}` module; write your own function")
    filename = fn.__code__.co_filename
    if filename == _DISABLED_FILENAME:
        raise AssertionError(f"`{name}` is a switched-off reference implementation; write your own function")
    if os.path.isabs(filename):
        real = os.path.realpath(filename)
        if real in _reference_files() or real.startswith(_package_dir() + os.sep):
            raise AssertionError(f"`{name}` runs code of the `poisoning` package; write your own function")
    return fn


@contextlib.contextmanager
def reference_disabled():
    """Switch the reference implementations off for the duration of the ``with`` block.

    Every function of the reference modules, and every method of their classes, gets a code object that raises
    ``RuntimeError``, so a call (or creating an estimator such as ``L2Defence()``) fails however it was
    imported; a profiler records any call of a switched-off function and any code of those modules that runs
    anyway (e.g. a copy of a reference function's code object, or a module reloaded by the student), and the
    block then fails with ``AssertionError``, even where the student's code caught the error. Everything is
    restored in a ``finally`` clause.
    """
    reference_files = _reference_files()
    functions = _reference_functions()
    used = []
    module_of = {}  # file name -> reference module whose code it holds, or None

    def profiler(frame, event, arg):
        if event == "call":
            code = frame.f_code
            filename = code.co_filename
            if filename == _DISABLED_FILENAME:
                used.append(_disabled_labels.get(code, code.co_name))
                return
            module = module_of.get(filename, False)
            if module is False:
                module = module_of[filename] = (reference_files.get(os.path.realpath(filename))
                                                if os.path.isabs(filename) else None)
            if module is not None:
                used.append(f"{module}.{getattr(code, 'co_qualname', code.co_name)}")

    with _lock:
        saved = [(fn, fn.__code__) for _, fn in functions]
        previous_profiler = sys.getprofile()
        try:
            for label, fn in functions:
                fn.__code__ = _disabled_code(label, fn.__code__.co_name, fn.__code__.co_freevars)
            sys.setprofile(profiler)
            yield used
        finally:
            sys.setprofile(previous_profiler)
            for fn, code in saved:
                fn.__code__ = code
    if used:
        raise AssertionError(_used_message(used))


def _used_message(used):
    return (f"your function called the reference implementation ({used[0]}), "
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


def _keys(mapping):
    return ", ".join(repr(key) for key in mapping)


def _compare(got, expected, rtol, atol):
    """``None`` when ``got`` matches ``expected``, else a short description of the difference.

    ``nan`` matches ``nan``; a ``dict`` matches when it has the same keys and every value matches.
    """
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"expected a dict with the keys {_keys(expected)}, got {_describe(got)}"
        if set(got) != set(expected):
            return f"expected the keys {_keys(expected)}, got {_keys(got)}"
        for key, value in expected.items():
            problem = _compare(got[key], value, rtol, atol)
            if problem:
                return f"[{key!r}]: {problem}"
        return None
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
            return f"expected a float (a single number), got {_describe(got)}"
        if not np.isclose(float(got), expected, rtol=rtol, atol=atol, equal_nan=True):
            return f"expected {expected:.6g}, got {float(got):.6g}"
        return None
    got_array = np.asarray(got) if not isinstance(got, np.ndarray) else got
    if got_array.shape != np.shape(expected):
        return f"expected shape {np.shape(expected)}, got shape {got_array.shape}"
    try:
        close = np.allclose(got_array.astype(np.float64), expected, rtol=rtol, atol=atol, equal_nan=True)
    except (TypeError, ValueError):
        return f"expected numbers, got {_describe(got)}"
    if not close:
        error = float(np.nanmax(np.abs(got_array.astype(np.float64) - expected)))
        return f"values differ from the expected ones by up to {error:.3g}"
    return None


def check_against_reference(fn, reference, cases, *, rtol=1e-7, atol=1e-9):
    """Compare the student's ``fn`` with a reference implementation on ``cases``.

    ``reference`` is the name of a function of the reference modules (:data:`REFERENCE_MODULES`, e.g.
    ``"trimmed_mean"`` or ``"removal_rates"``), or a callable that computes the expected output from the
    library (e.g. ``lambda X, y: L2Defence().fit(X, y).scores_``). ``cases`` is a list of ``(args, kwargs)``.
    For each case the reference runs first (on a copy of the inputs, warnings silenced); where it raises, the
    student's function must raise an exception of the same type. Then the student's function runs on fresh
    copies with the reference switched off. Fails with one ``AssertionError`` that names the first failing
    case (by the name of the reference function, or else of the student's function).
    """
    if isinstance(reference, str):
        name, reference = reference, _resolve(reference)
    else:
        name = getattr(fn, "__name__", "function")
    ensure_own_implementation(fn, name)
    expected = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
                where = f"{name}{_describe_case(args, kwargs)}"
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
