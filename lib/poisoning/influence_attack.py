r"""The influence attack of Koh, Steinhardt & Liang (2022): poisons that pass the sanitization defences.

Defined in chapter "The influence attack" of Part II. The attacker knows the clean training set
:math:`\mathcal D` of :math:`n` points, the test set :math:`\mathcal D_{\text{test}}` and the defender's feasible set
:math:`\mathcal F` (here the sphere and slab of :class:`~poisoning.feasible_set.SphereSlabFeasibleSet`) and solves,
for the budget :math:`\epsilon = n_p / n`,

.. math::

    \max_{\mathcal D_p} L_{\text{test}}(\hat\theta) \quad \text{s.t.} \quad
    |\mathcal D_p| = n_p = \epsilon n, \quad \mathcal D_p \subseteq \mathcal F, \qquad
    \hat\theta = \arg\min_\theta L(\theta; \mathcal D \cup \mathcal D_p)

by projected gradient ascent on the poisons' inputs, the lecture's algorithm:

1. retrain :math:`\hat\theta` on :math:`\mathcal D' \cap \mathcal F`, the points of the poisoned set
   :math:`\mathcal D' = \mathcal D \cup \mathcal D_p` that the defender keeps (a smooth-hinge linear SVM,
   :class:`~poisoning.influence.SmoothHingeModel`, warm-started);
2. compute :math:`H_{\hat\theta}^{-1} g` once, :math:`g = \nabla_\theta L_{\text{test}}(\hat\theta)` the gradient of
   the mean test loss;
3. move every poison along the gradient of the test loss with respect to its input,
   :math:`-\frac1N \left(\nabla_{\tilde x}\nabla_\theta l(\tilde z, \hat\theta)\right)^\top H_{\hat\theta}^{-1} g`
   with :math:`N` the number of points :math:`\hat\theta` is trained on, the poisons included
   (:func:`~poisoning.influence.input_gradient_of_test_loss`), then project it back onto :math:`\mathcal F`.

The labels of the poisons stay fixed: they start as label flips of random clean points, moved into the feasible
set of their (flipped) class. The step is scaled so that the poison with the largest gradient moves by
``step_size`` (in input units); the poisons of the iteration with the highest test loss are returned.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, clone

from ._validation import check_random_state
from .feasible_set import SphereSlabFeasibleSet
from .influence import SmoothHingeModel, input_gradient_of_test_loss

__all__ = ["InfluenceAttack", "smooth_hinge_test_error", "defended_test_error"]


def _signed(y, name="y"):
    y = np.asarray(y)
    values = set(np.unique(y).tolist())
    if len(values) > 2:
        raise ValueError(f"{name} must hold two labels, -1 and +1 (or 0 and 1), got {len(values)} distinct values")
    if values <= {-1, 1}:
        return y.astype(np.int64)
    if values <= {0, 1}:
        return np.where(y == 1, 1, -1)
    raise ValueError(f"{name} must hold the labels -1 and +1 (or 0 and 1), got {sorted(values)}")


def smooth_hinge_test_error(X_train, y_train, X_test, y_test, l2=0.01, temperature=0.001, theta0=None):
    """``(test error, test loss, model)`` of the smooth-hinge SVM trained on ``(X_train, y_train)``: the victim."""
    model = SmoothHingeModel(l2=l2, temperature=temperature).fit(X_train, _signed(y_train), theta0=theta0)
    y_test = _signed(y_test, "y_test")
    error = float(np.mean(np.sign(model.decision_function(X_test)) != y_test))
    return error, float(np.mean(model.losses(X_test, y_test))), model


def defended_test_error(X_train, y_train, X_test, y_test, defences=(), l2=0.01, temperature=0.001):
    """The victim's test error when it first sanitizes its (poisoned) training set.

    Every defence of ``defences`` (unfitted :mod:`poisoning.sanitization` estimators, e.g.
    ``[L2Defence(), SlabDefence()]`` for the sphere and slab together) is fitted on ``(X_train, y_train)``; the
    points that all of them keep train the smooth-hinge SVM. Returns ``(test error, keep mask)``, the mask ``True``
    for every training point that the defences keep.
    """
    X_train = np.asarray(X_train, dtype=np.float64)
    y_train = _signed(y_train)
    keep = np.ones(len(X_train), dtype=bool)
    for defence in defences:
        keep &= clone(defence).fit(X_train, y_train).keep_mask_
    error, _, _ = smooth_hinge_test_error(X_train[keep], y_train[keep], X_test, y_test, l2, temperature)
    return error, keep


class InfluenceAttack(BaseEstimator):
    """Projected gradient ascent on the poisons' inputs through influence functions.

    Parameters
    ----------
    epsilon : float in (0, 1], default 0.03
        The budget :math:`\\epsilon = n_p / n`, poisons as a fraction of the clean training set:
        ``n_poison = round(epsilon * n_clean)``.
    l2, temperature : float
        The victim: a smooth-hinge linear SVM with weight decay ``l2`` (see :mod:`poisoning.influence`).
    n_iter : int, default 20
        Gradient steps.
    step_size : float, default 0.1
        How far the poison with the largest gradient moves in one step (the step :math:`h` of the chapter).
    removal_fraction, shrink, box
        The feasible set (:class:`~poisoning.feasible_set.SphereSlabFeasibleSet`), fitted on the clean data.
    copies : bool, default False
        Start every poison at the same point (a label flip of one clean point): identical poisons get identical
        gradients, so they stay one cluster, which the k-NN and loss defences do not flag.
    random_state : int, RandomState, Generator or None
        Picks the clean points whose label flips start the attack.

    Attributes
    ----------
    X_poison_, y_poison_ : ndarray
        The poisons (labels in ``{-1, +1}``), all inside ``feasible_set_``.
    feasible_set_ : SphereSlabFeasibleSet
    history_ : dict of ndarray
        ``"test_loss"`` and ``"test_error"`` of the victim after each step (index 0: the starting label flips),
        ``"max_violation"``: the largest distance of a poison outside the feasible set after each projection.
    best_iteration_ : int
    """

    def __init__(self, epsilon=0.03, l2=0.01, temperature=0.001, n_iter=20, step_size=0.1, removal_fraction=0.05,
                 shrink=0.9, box=(0.0, 1.0), copies=False, random_state=None):
        self.epsilon = epsilon
        self.copies = copies
        self.l2 = l2
        self.temperature = temperature
        self.n_iter = n_iter
        self.step_size = step_size
        self.removal_fraction = removal_fraction
        self.shrink = shrink
        self.box = box
        self.random_state = random_state

    def _check_params(self):
        if isinstance(self.epsilon, bool) or not isinstance(self.epsilon, Real) or not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon must be a number in (0, 1], got {self.epsilon!r}")
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, Integral) or self.n_iter < 0:
            raise ValueError(f"n_iter must be a non-negative integer, got {self.n_iter!r}")
        if isinstance(self.step_size, bool) or not isinstance(self.step_size, Real) or not self.step_size > 0:
            raise ValueError(f"step_size must be a positive number, got {self.step_size!r}")

    def fit(self, X_clean, y_clean, X_test, y_test):
        """Craft the poisons against ``(X_test, y_test)``. Returns ``self``."""
        self._check_params()
        X_clean = np.asarray(X_clean, dtype=np.float64)
        y_clean = _signed(y_clean, "y_clean")
        X_test = np.asarray(X_test, dtype=np.float64)
        y_test = _signed(y_test, "y_test")
        n = len(X_clean)
        n_poison = int(round(self.epsilon * n))
        if n_poison < 1:
            raise ValueError(f"epsilon = {self.epsilon} of {n} clean points is less than one poison")
        feasible = SphereSlabFeasibleSet(self.removal_fraction, self.shrink, self.box).fit(X_clean, y_clean)
        clean_kept = feasible.contains(X_clean, y_clean)  # what the defender would keep of the clean data
        rng = check_random_state(self.random_state)
        if self.copies:  # every poison a copy of one point: they move together, and stay each other's neighbours
            start = np.full(n_poison, rng.randint(n))
        else:
            start = rng.choice(n, size=n_poison, replace=n_poison > n)
        y_poison = -y_clean[start]
        X_poison = feasible.project(X_clean[start], y_poison)

        X_kept, y_kept = X_clean[clean_kept], y_clean[clean_kept]
        poison_rows = np.arange(len(X_kept), len(X_kept) + n_poison)
        history = {"test_loss": [], "test_error": [], "max_violation": []}
        best = (-np.inf, X_poison, 0)
        theta = None
        for iteration in range(self.n_iter + 1):
            X_train = np.vstack([X_kept, X_poison])
            y_train = np.concatenate([y_kept, y_poison])
            error, loss, model = smooth_hinge_test_error(X_train, y_train, X_test, y_test, self.l2,
                                                         self.temperature, theta0=theta)
            theta = model.theta_
            history["test_loss"].append(loss)
            history["test_error"].append(error)
            history["max_violation"].append(float(np.max(np.linalg.norm(
                X_poison - feasible.project(X_poison, y_poison), axis=1))))
            if loss > best[0]:
                best = (loss, X_poison.copy(), iteration)
            if iteration == self.n_iter:
                break
            gradient = input_gradient_of_test_loss(model, X_train, y_train, X_test, y_test, indices=poison_rows)
            largest = float(np.max(np.linalg.norm(gradient, axis=1)))
            if largest == 0.0:
                break
            X_poison = feasible.project(X_poison + (self.step_size / largest) * gradient, y_poison)
        self.feasible_set_ = feasible
        self.X_poison_, self.y_poison_, self.best_iteration_ = best[1], y_poison, best[2]
        self.history_ = {key: np.asarray(value) for key, value in history.items()}
        return self
