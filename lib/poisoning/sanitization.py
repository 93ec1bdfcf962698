r"""Data sanitization defences: score every training point, drop the most suspicious ones of each class.

Defined in chapter "Data sanitization defences" (``chapters/05_sanitization.md``).

Before training, the defender removes the points that look least like the rest of their class. Every
defence here follows the same recipe (Koh, Steinhardt and Liang, 2022):

1. compute an **outlier score** :math:`s(x, y)` for every training point, from the whole (possibly
   poisoned) training set;
2. in each class :math:`c` with :math:`n_c` points, remove the :math:`q_c = \lfloor \rho\, n_c \rfloor` points with the
   highest scores, where :math:`\rho` is ``removal_fraction`` (5% by default, as in the paper);
3. the largest score kept in class :math:`c` is its threshold :math:`\tau_c`. The **feasible set**
   :math:`\mathcal F = \{(x, y) : s(x, y) \le \tau_y\}` is what an adaptive attacker must stay inside.

The five defences differ only in the score:

==========================  ================================================================================
defence                     outlier score :math:`s(x, y)`
==========================  ================================================================================
:class:`L2Defence`          :math:`\lVert x - \mu_y \rVert_2`, distance to the class centroid (the *sphere*)
:class:`SlabDefence`        :math:`\lvert\langle x - \mu_y,\, \mu_y - \mu_{\neg y}\rangle\rvert`, the *slab*
:class:`LossDefence`        loss of a model trained on the full, unsanitized training set
:class:`KNNDefence`         mean distance to the :math:`k` nearest training points of class :math:`y`
:class:`SVDDefence`         :math:`\lVert (I - V_r V_r^\top)(x - \mu_y) \rVert_2`, residual outside the top
                            :math:`r` singular directions of the class-centred data
==========================  ================================================================================

Each defence is a scikit-learn style estimator: ``fit(X, y)`` learns the scores, the per-class thresholds
and which points survive (``keep_mask_``); ``filter(X, y)`` fits and returns the surviving points;
``score_samples(X, y)`` (one outlier score per point) and ``is_feasible(X, y)`` test new points against the
fitted feasible set.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from poisoning._validation import check_count, check_number, check_positive, check_random_state, check_Xy

__all__ = [
    "SanitizationDefence",
    "L2Defence",
    "SlabDefence",
    "LossDefence",
    "KNNDefence",
    "SVDDefence",
    "far_outliers",
    "removal_rates",
    "feasible_set_poisons",
    "centroid_shift_poisons",
]

# f * n_c is rounded down; the slack keeps e.g. 0.29 * 100 = 28.999999999999996 from losing a point.
_FLOOR_SLACK = 1e-9
# feasible_set_poisons: a norm below this times the scale it comes from (the weights, the data) is rounding error
_NEGLIGIBLE = 1e-12


# --------------------------------------------------------------------------------------------------
# the shared recipe
# --------------------------------------------------------------------------------------------------
class SanitizationDefence(BaseEstimator):
    r"""Base class: per-class removal of the ``removal_fraction`` of points with the highest outlier score.

    A subclass defines the score by implementing two methods:

    - ``_fit_scores(X, y)``: learn what the score needs (centroids, a model, ...) from the training set and
      return the scores of the training points;
    - ``_score(X, y)``: the scores of points ``(X, y)`` under the learned state, labels already checked.

    For class :math:`c` with :math:`n_c` training points, ``fit`` removes the
    :math:`q_c = \lfloor \rho\, n_c \rfloor` points of highest score (never all of them; ties are broken by
    position, later points going first) and sets the threshold :math:`\tau_c` to the largest score kept.

    Parameters
    ----------
    removal_fraction : float in [0, 1), default 0.05
        Fraction :math:`\rho` of each class to remove.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``fit``, sorted.
    n_features_in_ : int
        Number of features seen in ``fit``.
    scores_ : ndarray of shape (n_samples,)
        Outlier score of every training point (higher is more suspicious).
    keep_mask_ : ndarray of bool, shape (n_samples,)
        ``True`` for the training points the defence keeps.
    threshold_ : ndarray of shape (n_classes,)
        ``threshold_[i]`` is :math:`\tau_c` for ``c = classes_[i]``: the largest score kept in that class.
    n_removed_ : ndarray of int, shape (n_classes,)
        Number of points removed from each class, :math:`q_c`.
    """

    def __init__(self, removal_fraction=0.05):
        self.removal_fraction = removal_fraction

    # -- subclass hooks ----------------------------------------------------------------------------
    def _fit_scores(self, X, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, X, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_data(self, X, y):
        """Extra requirements of a defence on its training set (raise ``ValueError`` or ``TypeError``)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # every score depends on the labels
        return tags

    # -- public API --------------------------------------------------------------------------------
    def fit(self, X, y):
        """Score the training set ``(X, y)`` and decide, per class, which points to keep. Returns ``self``."""
        f = check_number(self.removal_fraction, "removal_fraction", low=0, high=1, high_open=True)
        X, y = check_Xy(X, y, fitted="the defence")
        self.classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        self._check_data(X, y)

        scores = np.asarray(self._fit_scores(X, y), dtype=np.float64)
        keep = np.ones(len(X), dtype=bool)
        thresholds = np.empty(len(self.classes_))
        n_removed = np.zeros(len(self.classes_), dtype=np.int64)
        for i, label in enumerate(self.classes_):
            idx = np.flatnonzero(y == label)
            n_remove = min(int(np.floor(f * len(idx) + _FLOOR_SLACK)), len(idx) - 1)
            order = idx[np.argsort(scores[idx], kind="stable")]  # ascending, ties in position order
            keep[order[len(idx) - n_remove:]] = False
            thresholds[i] = scores[order[len(idx) - n_remove - 1]]
            n_removed[i] = n_remove
        self.scores_ = scores
        self.keep_mask_ = keep
        self.threshold_ = thresholds
        self.n_removed_ = n_removed
        return self

    def filter(self, X, y):
        """Fit on the training set ``(X, y)`` and return the points it keeps, ``(X[keep_mask_], y[keep_mask_])``.

        This is the sanitized training set a learner would then be trained on.
        """
        self.fit(X, y)
        X, y = check_Xy(X, y, fitted="the defence")
        return X[self.keep_mask_], y[self.keep_mask_]

    def _check_labels(self, X, y):
        check_is_fitted(self, "threshold_")
        X, y = check_Xy(X, y, self.n_features_in_, fitted="the defence")
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"labels {unknown.tolist()} were not seen in fit (classes are "
                             f"{self.classes_.tolist()})")
        return X, y

    def score_samples(self, X, y):
        """Outlier scores of new points ``(X, y)`` under the fitted defence (higher is more suspicious).

        One number per point, as scikit-learn's ``score_samples`` (scikit-learn's ``score`` means one number for
        a whole data set); unlike it, the labels are needed, since every score depends on the point's class.
        """
        X, y = self._check_labels(X, y)
        return np.asarray(self._score(X, y), dtype=np.float64)

    def class_thresholds(self, y):
        """The threshold :math:`\\tau_y` of each label in ``y`` (an array like ``y``)."""
        check_is_fitted(self, "threshold_")
        y = np.asarray(y)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"labels {unknown.tolist()} were not seen in fit (classes are "
                             f"{self.classes_.tolist()})")
        return self.threshold_[np.searchsorted(self.classes_, y)]

    def is_feasible(self, X, y):
        r"""Whether each new point lies in the fitted feasible set: :math:`s(x, y) \le \tau_y`.

        On the training set this reproduces ``keep_mask_`` for the defences whose score of a training point
        does not depend on the point being in the training set (all but :class:`KNNDefence`), except for
        points whose score ties the threshold exactly.
        """
        scores = self.score_samples(X, y)
        return scores <= self.class_thresholds(y)


# --------------------------------------------------------------------------------------------------
# centroid helpers
# --------------------------------------------------------------------------------------------------
def _class_centroids(X, y, classes):
    return np.stack([X[y == label].mean(axis=0) for label in classes])


def _rows_of(classes, y):
    """Index into ``classes`` of every label in ``y`` (labels already known to be in ``classes``)."""
    return np.searchsorted(classes, y)


# --------------------------------------------------------------------------------------------------
# the five defences
# --------------------------------------------------------------------------------------------------
class L2Defence(SanitizationDefence):
    r"""The sphere (L2) defence: remove points far from their class centroid.

    .. math:: s(x, y) = \lVert x - \mu_y \rVert_2, \qquad \mu_c = \frac{1}{n_c} \sum_{i: y_i = c} x_i,

    with the centroids computed on the full training set, poisons included. The feasible set of class
    :math:`c` is the ball of radius :math:`\tau_c` around :math:`\mu_c`.

    Parameters
    ----------
    removal_fraction : float in [0, 1), default 0.05

    Attributes
    ----------
    centroids_ : ndarray of shape (n_classes, n_features)
        :math:`\mu_c` for each class of ``classes_``.
    classes_, n_features_in_, scores_, keep_mask_, threshold_, n_removed_
        See :class:`SanitizationDefence`.
    """

    def _fit_scores(self, X, y):
        self.centroids_ = _class_centroids(X, y, self.classes_)
        return self._score(X, y)

    def _score(self, X, y):
        return np.linalg.norm(X - self.centroids_[_rows_of(self.classes_, y)], axis=1)


class SlabDefence(SanitizationDefence):
    r"""The slab defence (Steinhardt et al., 2017): project on the line between the class centroids.

    .. math:: s(x, y) = \big\lvert \langle x - \mu_y,\; v_y \rangle \big\rvert,
              \qquad v_y = \mu_y - \mu_{\neg y},

    where :math:`\mu_{\neg y}` is the centroid of all training points *not* in class :math:`y`. With two
    classes :math:`v_{\pm} = \pm(\mu_+ - \mu_-)`, so the score is the paper's
    :math:`\lvert\langle x - \mu_y, \mu_+ - \mu_- \rangle\rvert`; with more classes this is the one-vs-rest
    version. The direction is not normalised, as in the paper: the feasible set of class :math:`c` is the
    slab of half-width :math:`\tau_c / \lVert v_c \rVert` around :math:`\mu_c`, orthogonal to :math:`v_c`.

    Parameters
    ----------
    removal_fraction : float in [0, 1), default 0.05

    Attributes
    ----------
    centroids_ : ndarray of shape (n_classes, n_features)
        :math:`\mu_c` for each class of ``classes_``.
    directions_ : ndarray of shape (n_classes, n_features)
        :math:`v_c = \mu_c - \mu_{\neg c}` for each class.
    classes_, n_features_in_, scores_, keep_mask_, threshold_, n_removed_
        See :class:`SanitizationDefence`.
    """

    def _check_data(self, X, y):
        if len(self.classes_) < 2:
            raise ValueError(f"the slab defence needs at least two classes in y, got 1 class: {self.classes_.tolist()}")

    def _fit_scores(self, X, y):
        self.centroids_ = _class_centroids(X, y, self.classes_)
        self.directions_ = np.stack([self.centroids_[i] - X[y != label].mean(axis=0)
                                     for i, label in enumerate(self.classes_)])
        return self._score(X, y)

    def _score(self, X, y):
        rows = _rows_of(self.classes_, y)
        return np.abs(np.einsum("ij,ij->i", X - self.centroids_[rows], self.directions_[rows]))


class LossDefence(SanitizationDefence):
    r"""The loss defence: remove the points worst fit by a model trained on the full, unsanitized set.

    A clone of ``estimator`` is trained on all of ``(X, y)``, poisons included; the score is its loss.

    - ``loss="log"``: the log loss :math:`s(x, y) = -\log p_\theta(y \mid x)` (needs ``predict_proba``);
    - ``loss="hinge"``: the hinge loss *before* the :math:`\max(0, \cdot)`, as in the official code of
      Koh et al., so that points fit with a large margin still rank below those fit with a small one:
      :math:`s(x, y) = 1 - \tilde y\, f_\theta(x)` with :math:`\tilde y = \pm 1` for two classes (``+1`` for
      ``classes_[1]``), and :math:`s(x, y) = 1 + \max_{j \ne y} f_j(x) - f_y(x)` for more (needs
      ``decision_function``);
    - ``loss="auto"``: log loss when the estimator has ``predict_proba``, hinge loss otherwise.

    Parameters
    ----------
    estimator : scikit-learn classifier or None, default None
        The model; ``None`` means ``LogisticRegression(max_iter=1000)``. A linear SVM (``LinearSVC``) gives
        the paper's setting.
    loss : {"auto", "log", "hinge"}, default "auto"
    removal_fraction : float in [0, 1), default 0.05

    Attributes
    ----------
    estimator_ : fitted classifier
        The model trained on the full training set.
    loss_ : {"log", "hinge"}
        The loss actually used.
    classes_, n_features_in_, scores_, keep_mask_, threshold_, n_removed_
        See :class:`SanitizationDefence`.
    """

    def __init__(self, estimator=None, loss="auto", removal_fraction=0.05):
        super().__init__(removal_fraction=removal_fraction)
        self.estimator = estimator
        self.loss = loss

    def _check_data(self, X, y):
        if self.loss not in ("auto", "log", "hinge"):
            raise ValueError(f"loss must be 'auto', 'log' or 'hinge', got {self.loss!r}")
        if len(self.classes_) < 2:
            raise ValueError(f"the loss defence needs at least two classes in y, got 1 class: {self.classes_.tolist()}")

    def _fit_scores(self, X, y):
        estimator = LogisticRegression(max_iter=1000) if self.estimator is None else clone(self.estimator)
        loss = self.loss
        if loss == "auto":
            loss = "log" if hasattr(estimator, "predict_proba") else "hinge"
        needed = "predict_proba" if loss == "log" else "decision_function"
        if not hasattr(estimator, needed):
            raise ValueError(f"loss={loss!r} needs an estimator with {needed}")
        self.estimator_ = estimator.fit(X, y)
        self.loss_ = loss
        return self._score(X, y)

    def _score(self, X, y):
        cols = _rows_of(self.estimator_.classes_, y)
        if self.loss_ == "log":
            proba = self.estimator_.predict_proba(X)[np.arange(len(X)), cols]
            return -np.log(np.clip(proba, 1e-300, None))
        decision = self.estimator_.decision_function(X)
        if decision.ndim == 1:  # two classes: positive means classes_[1]
            sign = np.where(cols == 1, 1.0, -1.0)
            return 1.0 - sign * decision
        own = decision[np.arange(len(X)), cols]
        others = decision.copy()
        others[np.arange(len(X)), cols] = -np.inf
        return 1.0 + others.max(axis=1) - own


class KNNDefence(SanitizationDefence):
    r"""The k-NN defence (Frederickson et al., 2018): remove points far from their nearest neighbours.

    .. math:: s(x_i, y_i) = \frac1k \sum_{j \in N_k(i)} \lVert x_i - x_j \rVert_2,

    where :math:`N_k(i)` are the :math:`k` training points nearest to :math:`x_i`, the point itself
    excluded, among the points of class :math:`y_i` (``per_class=True``) or among all training points
    (``per_class=False``, label-blind, as in the official code of Koh et al., which sums rather than
    averages: the ranking is the same). A new point is scored against all training points: an exact
    copy of a training point has that point as a neighbour at distance 0. Distances are computed by
    brute force, which is fine for the few thousand points of the book.

    Parameters
    ----------
    n_neighbors : int, default 5
    per_class : bool, default True
        Whether the neighbours must share the label of the point.
    removal_fraction : float in [0, 1), default 0.05

    Attributes
    ----------
    X_fit_, y_fit_ : ndarray
        The training set, kept to find the neighbours of new points.
    classes_, n_features_in_, scores_, keep_mask_, threshold_, n_removed_
        See :class:`SanitizationDefence`.
    """

    def __init__(self, n_neighbors=5, per_class=True, removal_fraction=0.05):
        super().__init__(removal_fraction=removal_fraction)
        self.n_neighbors = n_neighbors
        self.per_class = per_class

    def _check_data(self, X, y):
        k = check_positive(self.n_neighbors, "n_neighbors", integer=True)
        smallest = min(np.sum(y == c) for c in self.classes_) if self.per_class else len(y)
        if smallest - 1 < k:
            where = "the smallest class has" if self.per_class else "the training set has"
            raise ValueError(f"n_neighbors={k} needs more than {k} samples, but {where} {smallest} sample(s)")

    def _groups(self, y):
        """Pairs (mask of the points to score, mask of their candidate neighbours in the training set)."""
        if not self.per_class:
            return [(np.ones(len(y), bool), np.ones(len(self.y_fit_), bool))]
        return [(y == c, self.y_fit_ == c) for c in self.classes_ if np.any(y == c)]

    def _mean_knn(self, D):
        k = self.n_neighbors
        return np.partition(D, k - 1, axis=1)[:, :k].mean(axis=1)

    def _fit_scores(self, X, y):
        self.X_fit_, self.y_fit_ = X.copy(), y.copy()
        scores = np.empty(len(X))
        for rows, _ in self._groups(y):
            D = cdist(X[rows], X[rows])
            np.fill_diagonal(D, np.inf)  # exclude the point itself (but not its duplicates)
            scores[rows] = self._mean_knn(D)
        return scores

    def _score(self, X, y):
        scores = np.empty(len(X))
        for rows, reference in self._groups(y):
            scores[rows] = self._mean_knn(cdist(X[rows], self.X_fit_[reference]))
        return scores


class SVDDefence(SanitizationDefence):
    r"""The SVD defence: remove points with a large component outside the main singular subspace.

    Centre every training point on its class centroid, :math:`\tilde x_i = x_i - \mu_{y_i}`, stack them in
    :math:`\tilde X \in \mathbb R^{n \times d}`, and let :math:`V_r \in \mathbb R^{d \times r}` hold its top
    :math:`r` right singular vectors. Clean data is assumed to lie close to this low-rank subspace, so the
    score is the norm of the residual outside it,

    .. math:: s(x, y) = \lVert (I - V_r V_r^\top)(x - \mu_y) \rVert_2
              = \sqrt{\lVert x - \mu_y \rVert_2^2 - \lVert V_r^\top (x - \mu_y) \rVert_2^2}.

    (Koh et al. also add the two centroid directions to the subspace; centring on the class centroid
    plays that role here.)

    Parameters
    ----------
    n_components : int, default 10
        :math:`r`, the rank: fewer than the number of features and at most the number of training points.
    removal_fraction : float in [0, 1), default 0.05

    Attributes
    ----------
    centroids_ : ndarray of shape (n_classes, n_features)
        :math:`\mu_c` for each class of ``classes_``.
    components_ : ndarray of shape (n_components, n_features)
        :math:`V_r^\top`, the top right singular vectors (orthonormal rows).
    singular_values_ : ndarray of shape (n_components,)
    classes_, n_features_in_, scores_, keep_mask_, threshold_, n_removed_
        See :class:`SanitizationDefence`.
    """

    def __init__(self, n_components=10, removal_fraction=0.05):
        super().__init__(removal_fraction=removal_fraction)
        self.n_components = n_components

    def _check_data(self, X, y):
        k = check_positive(self.n_components, "n_components", integer=True)
        if k >= X.shape[1] or k > X.shape[0]:
            raise ValueError(f"n_components must be below the number of features (n_features = {X.shape[1]}) and "
                             f"at most the number of samples (n_samples = {X.shape[0]}), got {k}")

    def _fit_scores(self, X, y):
        self.centroids_ = _class_centroids(X, y, self.classes_)
        centred = X - self.centroids_[_rows_of(self.classes_, y)]
        _, singular_values, Vt = np.linalg.svd(centred, full_matrices=False)
        self.components_ = Vt[: self.n_components]
        self.singular_values_ = singular_values[: self.n_components]
        return self._score(X, y)

    def _score(self, X, y):
        centred = X - self.centroids_[_rows_of(self.classes_, y)]
        residual = centred - (centred @ self.components_.T) @ self.components_
        return np.linalg.norm(residual, axis=1)


# --------------------------------------------------------------------------------------------------
# naive poisons and evaluation
# --------------------------------------------------------------------------------------------------
def far_outliers(X, y, n_outliers, noise_scale, clip=None, random_state=None):
    """The crudest poison: ``n_outliers`` random training points pushed far away by heavy noise.

    Each outlier is a copy of a training point (drawn without replacement) plus Gaussian noise of standard
    deviation ``noise_scale`` in every feature, then clipped to ``clip`` (e.g. ``(0, 1)`` for pixels;
    ``None`` for no clipping). It keeps the label of the point it was copied from. Returns
    ``X_outliers, y_outliers``.
    """
    X, y = check_Xy(X, y)
    n_outliers = check_count(n_outliers, "n_outliers", high=len(X))
    noise_scale = check_number(noise_scale, "noise_scale", low=0)
    rng = check_random_state(random_state)
    chosen = rng.choice(len(X), size=n_outliers, replace=False)
    X_out = X[chosen] + noise_scale * rng.standard_normal((n_outliers, X.shape[1]))
    if clip is not None:
        X_out = np.clip(X_out, *clip)
    return X_out, y[chosen].copy()


def removal_rates(keep_mask, is_poison):
    """How well a defence separated poisons from clean points, given what it kept and the true poisons.

    Returns a dict with the ``"detection rate"`` (fraction of the poisons removed; ``nan`` when there are
    none) and the ``"false-positive rate"`` (fraction of the clean points removed).
    """
    keep_mask = np.asarray(keep_mask)
    is_poison = np.asarray(is_poison)
    if keep_mask.dtype != bool or is_poison.dtype != bool:
        raise TypeError(f"keep_mask and is_poison must be boolean arrays, got dtypes {keep_mask.dtype} and "
                        f"{is_poison.dtype}")
    if keep_mask.shape != is_poison.shape or keep_mask.ndim != 1:
        raise ValueError(f"keep_mask and is_poison must be 1-D of the same length, got shapes "
                         f"{keep_mask.shape} and {is_poison.shape}")
    removed = ~keep_mask
    return {
        "detection rate": float(removed[is_poison].mean()) if is_poison.any() else float("nan"),
        "false-positive rate": float(removed[~is_poison].mean()) if (~is_poison).any() else float("nan"),
    }


# --------------------------------------------------------------------------------------------------
# an adaptive attack that respects the feasible set
# --------------------------------------------------------------------------------------------------
def feasible_set_poisons(X_clean, y_clean, n_poison, n_components=10, margin=0.9, estimator=None):
    r"""A one-shot adaptive attack: copies of one point per class, inside that class's feasible set.

    For each class :math:`y` of a binary problem the attacker fits, on the clean data, the L2 sphere, the slab
    and the SVD subspace of the defences above, and a linear model (``estimator``, default logistic
    regression). Inside the intersection (shrunk to ``margin`` times each radius, to leave room for the shift
    the poisons themselves cause) it picks the point the clean model fits *worst* with label :math:`y`:
    maximising the linear function :math:`-\,\mathrm{sign}(y)\, w^\top x` over a ball cut by a slab has a closed
    form: step along the slab normal as far as the slab allows, spend the rest of the radius on the orthogonal
    part of the gradient. All steps stay inside the SVD subspace, so the SVD residual is zero.

    Degenerate cases have well-defined answers (no division by a zero norm): when no move inside the subspace
    changes the model's margin (:math:`P w = 0`, e.g. a model with :math:`w = 0`) every feasible point is
    equally bad and the point is the class centroid; when the slab's normal has no part in the subspace (e.g.
    identical class centroids, which make the slab direction zero) the slab does not constrain the step, which
    then spends the whole radius along the gradient; a gradient parallel to the slab normal leaves nothing for
    the orthogonal step; a class without spread (radius 0) gets its centroid.

    Returns ``X_poison, y_poison``: ``n_poison`` copies of the two points, labels alternating between the
    classes. A greedy stand-in for the influence attack of Koh et al. (2022), which also accounts for how the
    model moves once the poisons are in the training set.
    """
    X_clean, y_clean = check_Xy(X_clean, y_clean, name_X="X_clean", name_y="y_clean")
    n_poison = check_count(n_poison, "n_poison")
    margin = check_number(margin, "margin", low=0, high=1, low_open=True)
    if len(np.unique(y_clean)) != 2:
        raise ValueError("feasible_set_poisons needs exactly two classes")
    sphere, slab = L2Defence().fit(X_clean, y_clean), SlabDefence().fit(X_clean, y_clean)
    svd = SVDDefence(n_components=n_components).fit(X_clean, y_clean)
    model = clone(estimator) if estimator is not None else LogisticRegression(max_iter=2000)
    model.fit(X_clean, y_clean)
    w = np.ravel(model.coef_)
    P = svd.components_.T @ svd.components_  # moving inside this subspace leaves the SVD residual at 0
    scale = np.linalg.norm(X_clean, axis=1).max()  # the rounding error of a centroid is relative to this
    points = []
    for i, label in enumerate(sphere.classes_):
        sign = 1.0 if label == model.classes_[1] else -1.0
        g = P @ (-sign * w)  # the direction that most lowers the margin of `label`
        v = P @ slab.directions_[i]
        radius = margin * sphere.threshold_[i]
        point = sphere.centroids_[i].copy()
        # norms below _NEGLIGIBLE times their scale (|w| for g, the data for v) are rounding errors: zero
        g_norm, v_norm = np.linalg.norm(g), np.linalg.norm(v)
        if g_norm > _NEGLIGIBLE * np.linalg.norm(w):  # else no feasible move changes the margin: the centroid
            if v_norm > _NEGLIGIBLE * scale:
                v_hat = v / v_norm
                half_width = margin * slab.threshold_[i] / v_norm
            else:  # the slab normal has no part in the subspace: the slab does not constrain the step
                v_hat, half_width = np.zeros_like(v), np.inf
            along, across = g @ v_hat, g - (g @ v_hat) * v_hat
            a = np.clip(radius * along / g_norm, -half_width, half_width)  # step along the slab normal
            b = np.sqrt(max(radius**2 - a**2, 0.0))  # and spend the rest of the ball on the orthogonal direction
            across_norm = np.linalg.norm(across)
            point += a * v_hat
            if across_norm > _NEGLIGIBLE * g_norm:  # else the gradient is along the slab normal
                point += b * across / across_norm
        points.append(point)
    y_poison = np.resize(sphere.classes_, n_poison)
    return np.array(points)[np.searchsorted(sphere.classes_, y_poison)], y_poison


# --------------------------------------------------------------------------------------------------
# a targeted attack that moves the feasible set instead of staying inside it
# --------------------------------------------------------------------------------------------------
def centroid_shift_poisons(X_clean, y_clean, x_target, wrong_label, n_poison):
    r"""A targeted attack past the sphere and slab defences: drag the centroid of the wrong class onto the target.

    The reference attack of assignment 2, Part F (``solutions/assignment2/``), where students design a targeted
    attack against the L2 and slab defences of the chapter "Data sanitization defences"
    (``chapters/05_sanitization.md``); neither the chapter nor the assignment prints it.

    The idea. The L2 and slab defences measure every point against class centroids that they estimate from the
    training set they are given, poisons included, and the empirical mean is not robust (chapter "Poisoning the
    mean"): a single point placed far enough away puts it anywhere. Let class :math:`c` (``wrong_label``) hold
    :math:`n_c` clean points with centroid :math:`\mu_c`. The attacker adds :math:`k - 1` exact copies of the
    target :math:`x_t`, labelled :math:`c`, and one **decoy**, also labelled :math:`c`, at

    .. math:: d = (n_c + 1)\, x_t - n_c\, \mu_c,
              \qquad\text{so that}\qquad
              \frac{n_c\, \mu_c + (k - 1)\, x_t + d}{n_c + k} = x_t :

    in the poisoned training set the centroid of class :math:`c` *is* the target. The copies sit on it, so their
    L2 score :math:`\lVert x - \mu_c \rVert_2` and their slab score
    :math:`\lvert\langle x - \mu_c, v_c\rangle\rvert` are 0, the lowest of their class, whatever the slab's
    direction :math:`v_c`; the decoy, about :math:`n_c` times farther out than the class's points, has the
    highest scores and is removed, and the rest of the removal budget goes to the clean points of class
    :math:`c` farthest from the target. The victim then trains on the clean data (less a few points) and
    :math:`k - 1` copies of the target with the wrong label: the naive targeted attack of the chapter "Learning
    in the benign setting, and the threat model", which a defence whose budget covers the poisons removes
    entirely, now let through by the same defence. The attack does not stay inside the feasible set computed
    from the clean data; it moves the feasible set.

    Any number of classes. Needs ``n_poison >= 2`` (the decoy alone changes nothing the victim trains on).
    Returns ``X_poison, y_poison``: the copies first, the decoy last, all labelled ``wrong_label`` (with the
    dtype of ``y_clean``).
    """
    from poisoning._validation import as_float_array, check_count, check_Xy

    X_clean, y_clean = check_Xy(X_clean, y_clean, name_X="X_clean", name_y="y_clean")
    x_target = as_float_array(x_target, "x_target")
    if x_target.shape != (X_clean.shape[1],):
        raise ValueError(f"x_target must have shape ({X_clean.shape[1]},), one value per feature of X_clean, "
                         f"got shape {x_target.shape}")
    if not np.all(np.isfinite(x_target)):
        raise ValueError("x_target contains NaN or infinite values")
    n_poison = check_count(n_poison, "n_poison", low=2)
    in_class = y_clean == wrong_label
    if isinstance(wrong_label, (bool, np.bool_)) or not np.any(in_class):
        raise ValueError(f"wrong_label must be one of the labels of y_clean {np.unique(y_clean).tolist()}, "
                         f"got {wrong_label!r}")
    n_class = int(in_class.sum())
    decoy = (n_class + 1) * x_target - n_class * X_clean[in_class].mean(axis=0)
    X_poison = np.vstack([np.repeat(x_target[None, :], n_poison - 1, axis=0), decoy[None, :]])
    return X_poison, np.full(n_poison, wrong_label, dtype=y_clean.dtype)
