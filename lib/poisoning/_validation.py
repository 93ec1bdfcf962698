"""Input checks shared by the library's modules (private: the public functions check their own arguments with
these and raise ``ValueError`` with a message that names the argument)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_X", "check_Xy", "check_images"]


def check_X(X, n_features=None, name="X", fitted="the model"):
    """``X`` as a finite, non-empty ``float64`` array of shape ``(n, d)``, with ``n_features`` columns when given
    (``fitted`` names what was fitted with that many, for the message)."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but {fitted} was fitted with {n_features}")
    return X


def check_Xy(X, y, n_features=None, fitted="the model"):
    """:func:`check_X` of ``X``, and ``y`` as an array of shape ``(n,)``."""
    X = check_X(X, n_features, fitted=fitted)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y must have shape ({len(X)},), got shape {y.shape}")
    return X, y


def check_images(X, name="X"):
    """``X`` as an array of flattened images, one per row (shape ``(n, d)``), of numbers (dtype kept)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), one flattened image per row, got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {X.dtype}")
    return X
