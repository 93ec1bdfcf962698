"""The defender's feasible set of the sphere and slab defences, and the projection onto it.

Used by the chapter "The influence attack" (Part II): the attacker of Koh, Steinhardt & Liang (2022) keeps every
poison inside the set of points that the sanitization defences of Part I accept, by projecting after each gradient
step. For a point with label :math:`y` the set is the intersection of three convex sets,

.. math::

    \\mathcal F_y = \\{x : \\lVert x - \\mu_y \\rVert_2 \\le r_y\\}
        \\;\\cap\\; \\{x : \\lvert \\langle x - \\mu_y, u_y \\rangle \\rvert \\le w_y\\}
        \\;\\cap\\; \\{x : x_{\\min} \\le x \\le x_{\\max}\\},

the sphere of the L2 defence, the slab of the slab defence (:math:`u_y` the unit direction between the class
centroids, :math:`w_y` the slab's half-width) and an optional box, coordinate-wise between :math:`x_{\\min}` and
:math:`x_{\\max}` (e.g. pixel values in :math:`[0, 1]`). The projection
:math:`\\arg\\min_{x \\in \\mathcal F_y} \\lVert x - x' \\rVert_2` has no closed form, but the projection onto each of
the three sets has one, and Dykstra's alternating projections converge to the projection onto their intersection
(Boyle & Dykstra, 1986).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._validation import check_number, check_pair, check_X, check_Xy
from .sanitization import L2Defence, SlabDefence

__all__ = ["SphereSlabFeasibleSet"]


class SphereSlabFeasibleSet(BaseEstimator):
    """The points that the sphere (L2) and slab defences accept, per class, optionally inside a box.

    ``fit`` runs :class:`~poisoning.sanitization.L2Defence` and :class:`~poisoning.sanitization.SlabDefence`
    (each removing ``removal_fraction`` of every class) and keeps their centroids and thresholds: the radius of
    class :math:`c` is :math:`r_c = \\text{shrink} \\cdot \\tau^{L2}_c`, the slab's half-width
    :math:`w_c = \\text{shrink} \\cdot \\tau^{slab}_c / \\lVert v_c \\rVert`. A ``shrink`` below 1 leaves a margin, so that
    poisons stay feasible after they have moved the centroids a little themselves.

    Parameters
    ----------
    removal_fraction : float in [0, 1), default 0.05
    shrink : float in (0, 1], default 1.0
    box : (float, float) or None, default None
        Bounds every coordinate must keep, e.g. ``(0.0, 1.0)`` for images.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    centroids_ : ndarray of shape (n_classes, n_features)
    radii_ : ndarray of shape (n_classes,)
    directions_ : ndarray of shape (n_classes, n_features)
        Unit slab directions :math:`u_c`.
    half_widths_ : ndarray of shape (n_classes,)
    """

    def __init__(self, removal_fraction=0.05, shrink=1.0, box=None):
        self.removal_fraction = removal_fraction
        self.shrink = shrink
        self.box = box

    def fit(self, X, y):
        """Fit the two defences on ``(X, y)`` (usually the clean training set). Returns ``self``."""
        shrink = check_number(self.shrink, "shrink", low=0, high=1, low_open=True)
        if self.box is not None:
            low, high = check_pair(self.box, "box")
            low, high = check_number(low, "box[0]"), check_number(high, "box[1]")
            if not low < high:
                raise ValueError(f"box must be (low, high) with low < high, got {self.box!r}")
        X, y = check_Xy(X, y, fitted="the feasible set")
        sphere = L2Defence(removal_fraction=self.removal_fraction).fit(X, y)
        slab = SlabDefence(removal_fraction=self.removal_fraction).fit(X, y)
        norms = np.linalg.norm(slab.directions_, axis=1)
        # a direction this much shorter than the data is rounding error: no direction to normalise
        scale = np.linalg.norm(X, axis=1).max()
        if np.any(norms <= 1e-12 * scale):
            equal = sphere.classes_[norms <= 1e-12 * scale].tolist()
            raise ValueError(f"the centroid of class(es) {equal} equals the mean of the other classes: the slab "
                             "has no direction to normalise")
        self.classes_ = sphere.classes_
        self.n_features_in_ = X.shape[1]
        self.centroids_ = sphere.centroids_
        self.radii_ = shrink * sphere.threshold_
        self.directions_ = slab.directions_ / norms[:, None]
        self.half_widths_ = shrink * slab.threshold_ / norms
        return self

    def _rows(self, X, y):
        check_is_fitted(self, "radii_")
        X = check_X(X, self.n_features_in_, fitted="the feasible set")
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must have one label per row of X ({len(X)}), got shape {y.shape}")
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"labels {unknown.tolist()} were not seen in fit (classes are {self.classes_.tolist()})")
        return X, np.searchsorted(self.classes_, y)

    def contains(self, X, y, atol=1e-8):
        """Whether each point ``(x, y)`` lies in the feasible set of its class (within ``atol``)."""
        X, rows = self._rows(X, y)
        offset = X - self.centroids_[rows]
        inside = np.linalg.norm(offset, axis=1) <= self.radii_[rows] + atol
        inside &= np.abs(np.einsum("ij,ij->i", offset, self.directions_[rows])) <= self.half_widths_[rows] + atol
        if self.box is not None:
            inside &= np.all((X >= self.box[0] - atol) & (X <= self.box[1] + atol), axis=1)
        return inside

    def _projections(self, rows):
        centre, radius = self.centroids_[rows], self.radii_[rows]
        direction, width = self.directions_[rows], self.half_widths_[rows]

        def sphere(X):
            offset = X - centre
            norm = np.linalg.norm(offset, axis=1)
            scale = np.where(norm > radius, radius / np.maximum(norm, 1e-300), 1.0)
            return centre + offset * scale[:, None]

        def slab(X):
            s = np.einsum("ij,ij->i", X - centre, direction)
            return X - direction * (s - np.clip(s, -width, width))[:, None]

        projections = [sphere, slab]
        if self.box is not None:
            low, high = self.box
            projections.append(lambda X: np.clip(X, low, high))
        return projections

    def project(self, X, y, max_iter=500, tol=1e-10):
        """The closest point of the feasible set of its class to each row of ``X`` (Dykstra's algorithm).

        Iterates until no point moves by more than ``tol`` in a sweep, at most ``max_iter`` sweeps; points that
        are already feasible come back unchanged.
        """
        X, rows = self._rows(X, y)
        projections = self._projections(rows)
        current = X.copy()
        corrections = [np.zeros_like(X) for _ in projections]
        for _ in range(max_iter):
            previous = current.copy()
            for k, project in enumerate(projections):
                moved = project(current + corrections[k])
                corrections[k] = current + corrections[k] - moved
                current = moved
            if np.max(np.abs(current - previous), initial=0.0) <= tol:
                break
        inside = self.contains(X, np.asarray(y), atol=0.0)
        current[inside] = X[inside]
        return current
