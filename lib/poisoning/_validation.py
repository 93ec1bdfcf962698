"""Input checks shared by the library's modules (private).

The public functions check their arguments with these helpers, so that a bad argument gives the same kind of
error everywhere, with a message that names the argument, says what was expected and shows what was given:

* ``TypeError`` for a value of the wrong type: a string, ``None`` or a boolean where a number is required, a
  float where an integer count is required, an array that does not hold numbers;
* ``ValueError`` for a value of the right type that is not allowed: a wrong shape, NaN or infinite entries, an
  empty array, a negative count, a fraction outside its interval.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.sparse import issparse
from sklearn.utils import check_random_state as _sklearn_check_random_state

__all__ = [
    "as_float_array",
    "check_X",
    "check_Xy",
    "check_samples",
    "check_images",
    "check_number",
    "check_positive",
    "check_count",
    "check_pair",
    "check_random_state",
    "seed_from",
]


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------
def as_float_array(X, name="X"):
    """``X`` as a ``float64`` array of any shape.

    ``TypeError`` when it does not hold real numbers (strings, objects such as dicts, ``None``, a sparse matrix);
    ``ValueError`` for complex numbers and for nested sequences of different lengths.
    """
    if X is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    if issparse(X):
        raise TypeError(f"{name} is a sparse matrix, but a dense array of numbers is required (use {name}.toarray())")
    try:
        array = np.asarray(X)
    except ValueError as error:  # ragged nested sequences
        raise ValueError(f"{name} must be a rectangular array of numbers ({error})") from None
    if array.dtype.kind in "biuf":
        return array.astype(np.float64, copy=False)
    if array.dtype.kind == "c":
        raise ValueError(f"{name} holds complex numbers: Complex data not supported")
    if array.dtype.kind == "O":  # numbers stored as Python objects are fine
        try:
            return array.astype(np.float64)
        except (TypeError, ValueError) as error:
            # numpy's message ("float() argument must be a string or a real number, not 'dict'") names the culprit
            raise TypeError(f"{name} must be an array of numbers ({error})") from None
    raise TypeError(f"{name} must be an array of numbers, got dtype {array.dtype}")


def check_X(X, n_features=None, name="X", fitted="the model"):
    """``X`` as a finite, non-empty ``float64`` array of shape ``(n, d)``, with ``n_features`` columns when given
    (``fitted`` names what was fitted with that many, for the message)."""
    X = as_float_array(X, name)
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.shape[1] == 0:
        raise ValueError(f"{name} is empty: 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but {fitted} was fitted with {n_features}")
    return X


def check_Xy(X, y, n_features=None, fitted="the model", name_X="X", name_y="y"):
    """:func:`check_X` of ``X``, and ``y`` as an array of shape ``(n,)``."""
    X = check_X(X, n_features, name=name_X, fitted=fitted)
    if y is None:
        # scikit-learn's own wording, which its estimator checks look for; then which argument it was
        raise ValueError(f"{fitted} requires y to be passed, but the target y is None"
                         + ("" if name_y == "y" else f" ({name_y}=None)"))
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{name_y} must have shape ({len(X)},) to match {name_X}, got shape {y.shape}")
    return X, y


def check_samples(X, name="X"):
    """Samples of shape ``(n,)`` or ``(n, d)``, finite and non-empty, as ``(X2, is_1d)``: a ``float64`` array of
    shape ``(n, d)`` and whether the input was one-dimensional."""
    X = as_float_array(X, name)
    if X.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (n,) or (n, d), got shape {X.shape}")
    if X.size == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return (X[:, None], True) if X.ndim == 1 else (X, False)


def check_images(X, name="X"):
    """``X`` as an array of flattened images, one per row (shape ``(n, d)``), of numbers (dtype kept)."""
    X = np.asarray(X)
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), one flattened image per row, got shape {X.shape}")
    return X


# --------------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------------
def _interval(low, high, low_open, high_open):
    if low is not None and high is not None:
        return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        if low == 0:
            return "a positive number" if low_open else "a non-negative number"
        return f"a number {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a number {'<' if high_open else '<='} {high:g}"
    return "a finite number"


def check_number(value, name, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a finite ``float`` within the interval from ``low`` to ``high`` (each bound included unless
    ``low_open``/``high_open``; ``None`` for no bound).

    ``TypeError`` unless ``value`` is a real number (booleans, strings and ``None`` are not); ``ValueError`` for
    NaN, infinity or a number outside the interval.
    """
    expected = _interval(low, high, low_open, high_open)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} of type {type(value).__name__}")
    value = float(value)
    outside = not np.isfinite(value)
    if low is not None:
        outside |= value <= low if low_open else value < low
    if high is not None:
        outside |= value >= high if high_open else value > high
    if outside:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_positive(value, name, integer=False):
    """A positive number (``integer=False``) or a positive integer (``integer=True``), as ``float`` or ``int``."""
    if integer:
        return check_count(value, name, low=1)
    return check_number(value, name, low=0, low_open=True)


def check_count(value, name, low=0, high=None):
    """``value`` as an ``int`` in ``[low, high]`` (``high=None``: no upper bound).

    ``TypeError`` unless ``value`` is an integer (a float such as ``3.0``, a boolean, a string are not);
    ``ValueError`` for an integer outside the range.
    """
    if high is not None:
        expected = f"an integer in [{low}, {high}]"
    else:
        expected = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be {expected}, got {value!r} of type {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# randomness
# --------------------------------------------------------------------------------------------------
def check_pair(value, name):
    """``(low, high)`` from a pair; ``TypeError`` for a non-iterable, ``ValueError`` for the wrong length."""
    try:
        low, high = value
    except TypeError:
        raise TypeError(f"{name} must be None or a pair (low, high), got {value!r}") from None
    except ValueError:
        raise ValueError(f"{name} must be None or a pair (low, high), got {value!r}") from None
    return low, high


def _random_state_error(random_state, name):
    """The error for a ``random_state`` that is none of the four accepted kinds, or a seed out of range."""
    expected = "None, a non-negative integer, a numpy RandomState or a numpy Generator"
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, Integral):
        return TypeError(f"{name} must be {expected}, got {random_state!r} of type {type(random_state).__name__}")
    return ValueError(f"{name} must be {expected}, got {random_state!r}")


def check_random_state(random_state, name="random_state"):
    """A ``numpy.random.RandomState`` from ``None``, an integer seed, a ``RandomState`` or a ``Generator``.

    The first three as scikit-learn's :func:`~sklearn.utils.check_random_state` (an integer seeds a new
    ``RandomState``; a ``RandomState`` is returned as it is, so that draws from it advance it). A ``Generator``
    seeds a new ``RandomState`` with one draw, so the result is determined by the generator's state, and the
    generator advances. ``TypeError`` for anything else; ``ValueError`` for a seed outside ``[0, 2**32)``.
    """
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(seed_from(random_state, name))
    if random_state is None or isinstance(random_state, np.random.RandomState):
        return _sklearn_check_random_state(random_state)
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, Integral) \
            or not 0 <= random_state < 2**32:  # numpy's range for a RandomState seed
        raise _random_state_error(random_state, name)
    return np.random.RandomState(int(random_state))


def seed_from(random_state, name="random_state"):
    """One non-negative integer seed from ``None``, an integer, a ``RandomState`` or a ``Generator``.

    An integer is its own seed. A ``RandomState`` or a ``Generator`` gives one draw in ``[0, 2**32)``
    (deterministic for a given state; the state advances, so successive calls give new seeds). ``None`` gives a
    fresh seed from the operating system's entropy. ``TypeError`` for anything else, ``ValueError`` for a
    negative integer.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**32, dtype=np.uint64))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**32, dtype=np.uint64))
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, Integral) or random_state < 0:
        raise _random_state_error(random_state, name)
    return int(random_state)
