r"""Poisoning a support vector machine by gradient ascent on one attack point at a time.

Defined in chapter "Poisoning a linear SVM" (``chapters/03_svm_poisoning.md``), after
Biggio, Nelson and Laskov, *Poisoning Attacks against Support Vector Machines* (ICML 2012).

The learner is a soft-margin SVM (scikit-learn's :class:`~sklearn.svm.SVC`) with labels
:math:`y_i \in \{-1, +1\}` and dual variables :math:`0 \le \alpha_i \le C`,

.. math::

    f(x) = \sum_j \alpha_j y_j K(x_j, x) + b, \qquad Q_{ij} = y_i y_j K(x_i, x_j).

The attacker adds one point :math:`(x_c, y_c)` to the training set and moves :math:`x_c` to maximise the
hinge loss of the retrained SVM on a validation set,

.. math::

    J(x_c) = \sum_{j=1}^{m} \max\bigl(0,\; 1 - y_j f(x_j; \hat\theta(x_c))\bigr),

with :math:`\hat\theta(x_c)` the SVM trained with the attack point.

:math:`J` depends on :math:`x_c` only through the SVM's solution :math:`(\alpha, b)`. While :math:`x_c` moves a
little, the KKT conditions keep the margin support vectors :math:`S` (those with :math:`0 < \alpha_s < C`) on the
margin, :math:`y_s f(x_s) = 1`, and the other dual variables at :math:`0` or :math:`C`. Differentiating these
equalities and :math:`\sum_j y_j \alpha_j = 0` gives a linear system for the derivatives,

.. math::

    \begin{bmatrix} Q_{SS} & y_S \\ y_S^\top & 0 \end{bmatrix}
    \begin{bmatrix} \partial \alpha_S / \partial x_c \\ \partial b / \partial x_c \end{bmatrix}
    = - \begin{bmatrix} \alpha_c \, \partial Q_{Sc} / \partial x_c \\ 0 \end{bmatrix},

and the chain rule through :math:`f(x_j)` gives :math:`\partial J / \partial x_c`. Projected gradient ascent
within a box (the pixel range, or the data's bounding box) then moves the point; several points are
added one after the other, each optimised with the earlier ones fixed in the training set.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.svm import SVC
from sklearn.utils import ClassifierTags
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from poisoning._validation import (as_float_array, check_count, check_number, check_pair, check_positive,
                                   check_random_state, check_Xy)
from poisoning.threat_model import empirical_risk

__all__ = ["SVMPoisoningAttack", "svm_poisons", "validation_hinge_loss", "poisoning_gradient"]

_KERNELS = ("linear", "rbf")


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _check_Xy(X, y, name_X, name_y, d=None):
    """:func:`~poisoning._validation.check_Xy`, and ``d`` features (those of ``X_train``) when given."""
    X, y = check_Xy(X, y, name_X=name_X, name_y=name_y, fitted="the attack")
    if d is not None and X.shape[1] != d:
        raise ValueError(f"{name_X} must have {d} features like X_train, got {X.shape[1]}")
    return X, y


def _signs(y, classes):
    """Labels as -1 (``classes[0]``) and +1 (``classes[1]``); refuse labels outside ``classes``."""
    y = np.asarray(y)
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise ValueError(f"labels {unknown.tolist()} are not among the training classes {list(classes)}")
    return np.where(y == classes[1], 1.0, -1.0)


# --------------------------------------------------------------------------------------------------
# the kernel and its derivative in the first argument
# --------------------------------------------------------------------------------------------------
def _kernel(A, B, kernel, gamma):
    if kernel == "linear":
        return A @ B.T
    sq = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T
    return np.exp(-gamma * np.maximum(sq, 0.0))


def _kernel_grad(u, B, kernel, gamma):
    r"""Row ``j`` is :math:`\partial K(u, x_j) / \partial u` for the rows :math:`x_j` of ``B``."""
    if kernel == "linear":
        return B.copy()
    diff = u[None, :] - B
    k = np.exp(-gamma * (diff**2).sum(1))
    return -2.0 * gamma * k[:, None] * diff


def _svm_kernel(svm):
    kernel = svm.kernel
    if kernel not in _KERNELS:
        raise ValueError(f"the SVM's kernel must be one of {_KERNELS}, got {kernel!r}")
    gamma = svm.gamma
    if kernel == "rbf" and (isinstance(gamma, str) or gamma is None or gamma <= 0):
        raise ValueError("an RBF SVM needs a fixed positive number as gamma (not 'scale' or 'auto'), "
                         f"got {gamma!r}")
    return kernel, (None if kernel == "linear" else float(gamma))


# --------------------------------------------------------------------------------------------------
# the objective and its gradient
# --------------------------------------------------------------------------------------------------
def validation_hinge_loss(svm, X_val, y_val):
    r"""The attacker's objective :math:`L = \sum_k \max(0, 1 - y_k f(x_k))` on a validation set.

    ``svm`` is a fitted binary :class:`~sklearn.svm.SVC`; ``y_val`` holds the original labels, read as
    :math:`-1` for ``svm.classes_[0]`` and :math:`+1` for ``svm.classes_[1]``. The loss is a sum, not a mean,
    as in the paper.
    """
    X_val, y_val = _check_Xy(X_val, y_val, "X_val", "y_val")
    signs = _signs(y_val, svm.classes_)
    return float(np.maximum(0.0, 1.0 - signs * svm.decision_function(X_val)).sum())


def poisoning_gradient(svm, X_train, y_train, X_val, y_val, index=-1, bound_tol=1e-6):
    r"""Gradient :math:`\partial J / \partial x_c` of the validation hinge loss w.r.t. one training point.

    ``svm`` is an :class:`~sklearn.svm.SVC` (linear or RBF kernel with numeric ``gamma``) already fitted on
    ``X_train, y_train``, and ``x_c = X_train[index]`` is the attack point. With :math:`\alpha, b` read from
    ``dual_coef_``, ``support_`` and ``intercept_``, the margin support vectors are
    :math:`S = \{s : 0 < \alpha_s < C\}` (``bound_tol`` is the relative slack used to call
    :math:`\alpha_s = C`). Keeping :math:`S` fixed, the KKT equalities :math:`\sum_j Q_{sj}\alpha_j + y_s b = 1`
    (:math:`s \in S`) and :math:`\sum_j y_j\alpha_j = 0` stay true, so their derivatives vanish:

    .. math::

        \begin{bmatrix} Q_{SS} & y_S \\ y_S^\top & 0 \end{bmatrix}
        \begin{bmatrix} \partial\alpha_S/\partial x_c \\ \partial b/\partial x_c \end{bmatrix}
        = -\begin{bmatrix} \alpha_c\, y_S y_c\, \partial K(x_c, x_S)/\partial x_c \\ 0 \end{bmatrix}.

    For validation points with positive hinge loss, :math:`\partial f(x_j)/\partial x_c =
    \sum_{s \in S} y_s K(x_s, x_j)\,\partial\alpha_s/\partial x_c + \alpha_c y_c\,\partial K(x_c, x_j)/\partial x_c
    + \partial b/\partial x_c`, and

    .. math::

        \frac{\partial J}{\partial x_c} = -\sum_{j:\, y_j f(x_j) < 1} y_j \frac{\partial f(x_j)}{\partial x_c}.

    This is the paper's derivation, in which :math:`\alpha_c` is constant (exact when the attack point is an
    error vector, :math:`\alpha_c = C`, or is not a support vector). When the attack point is itself a margin
    support vector, its own equation :math:`y_c f(x_c) = 1` moves with :math:`x_c` too; that row of the system
    then carries :math:`y_c \sum_j \alpha_j y_j \partial K(x_c, x_j) / \partial x_c`, which keeps the gradient
    exact. Only the sum over :math:`j` is needed, so instead of solving the system for all ``d`` columns of
    the right-hand side, the code solves the transposed system once for the vector that collects the sum (the
    adjoint trick; the matrix is symmetric). A singular system (more margin support vectors than the kernel
    has dimensions) is solved in the least-squares sense. Returns an array of shape ``(d,)``.
    """
    kernel, gamma = _svm_kernel(svm)
    X_train, y_train = _check_Xy(X_train, y_train, "X_train", "y_train")
    X_val, y_val = _check_Xy(X_val, y_val, "X_val", "y_val", d=X_train.shape[1])
    n, d = X_train.shape
    if not -n <= index < n:
        raise ValueError(f"index {index} is out of range for {n} training points")
    c = index % n
    if len(svm.support_) and svm.support_.max() >= n:
        raise ValueError("svm was not fitted on X_train (its support vectors index past the training set)")
    y = _signs(y_train, svm.classes_)
    y_v = _signs(y_val, svm.classes_)
    C = float(svm.C)

    alpha = np.zeros(n)
    alpha[svm.support_] = np.abs(svm.dual_coef_[0])
    margin = np.flatnonzero((alpha > bound_tol * C) & (alpha < (1.0 - bound_tol) * C))
    u = X_train[c]

    # Right-hand side: how each margin equation changes with x_c when alpha_S and b are held fixed.
    rhs = np.zeros((len(margin) + 1, d))
    rhs[:-1] = -alpha[c] * (y[margin] * y[c])[:, None] * _kernel_grad(u, X_train[margin], kernel, gamma)
    in_margin = np.flatnonzero(margin == c)
    if in_margin.size:
        # x_c itself is on the margin: d/dx_c of sum_j Q_cj alpha_j (including K(x_c, x_c)).
        active = np.flatnonzero(alpha > 0)
        dK = _kernel_grad(u, X_train[active], kernel, gamma)
        if kernel == "linear":
            dK[active == c] = 2.0 * u  # d/du of K(u, u) = u.u
        rhs[in_margin[0], :] = -y[c] * (alpha[active] * y[active]) @ dK

    # Chain rule through f(x_k), over the validation points that pay a hinge loss.
    losing = y_v * svm.decision_function(X_val) < 1.0
    if not losing.any():
        return np.zeros(d)
    X_l, y_l = X_val[losing], y_v[losing]
    # sum_k y_k df(x_k)/dx_c = v^T [d alpha_S; d b] + (direct term), with v collecting the sum over k
    if kernel == "linear":  # y_l^T X_l X_S^T as two matrix-vector products
        summed = X_train[margin] @ (y_l @ X_l)
    else:
        summed = y_l @ _kernel(X_l, X_train[margin], kernel, gamma)
    v = np.append(y[margin] * summed, y_l.sum())
    direct = alpha[c] * y[c] * (y_l @ _kernel_grad(u, X_l, kernel, gamma))

    K_ss = _kernel(X_train[margin], X_train[margin], kernel, gamma)
    A = np.zeros((len(margin) + 1, len(margin) + 1))
    A[:-1, :-1] = np.outer(y[margin], y[margin]) * K_ss
    A[:-1, -1] = y[margin]
    A[-1, :-1] = y[margin]
    # v^T A^{-1} rhs: solving A z = v (A is symmetric) needs one right-hand side instead of d.
    z = np.linalg.lstsq(A, v, rcond=None)[0]
    return -(z @ rhs + direct)


# --------------------------------------------------------------------------------------------------
# the attack
# --------------------------------------------------------------------------------------------------
class SVMPoisoningAttack(BaseEstimator):
    r"""Gradient-ascent poisoning of an SVM (Biggio, Nelson and Laskov, 2012).

    Each poison point :math:`(x_c, y_c)` starts as a copy of a random training point of the other class
    (a label flip, so that it is an error vector with :math:`\alpha_c = C` and has influence on the model),
    then follows projected gradient ascent on the validation hinge loss :math:`J` of the retrained SVM,

    .. math::

        x_c \leftarrow \Pi_{[x_{\min}, x_{\max}]}\Bigl(x_c + h\, \frac{\nabla J(x_c)}{\lVert \nabla J(x_c) \rVert}\Bigr),

    where :math:`\Pi_{[x_{\min}, x_{\max}]}` clips to the box and :math:`\nabla J` is :func:`poisoning_gradient`. The SVM is
    retrained after every step. The gradient is only valid while the set of margin support vectors stays
    the same, so a step that lowers :math:`J` is retried with half the step size (at most ``max_halvings``
    times); when no step helps, the point has reached a local maximum and its optimisation stops early.
    With ``n_poison > 1`` the points are added one after the other, each optimised with the earlier ones
    fixed in the training set.

    Parameters
    ----------
    C : float
        Regularisation constant of the SVM (the upper bound on each :math:`\alpha_i`).
    kernel : {"linear", "rbf"}
        The SVM's kernel.
    gamma : float or None
        RBF width :math:`K(a, b) = \exp(-\gamma \lVert a - b \rVert^2)`; ``None`` fixes it to
        ``1 / (d * X_train.var())`` of the clean data (scikit-learn's ``"scale"``), so that it does not drift
        as the poison moves. Ignored by the linear kernel.
    step_size : float
        Euclidean length :math:`h` of each step (the gradient is normalised).
    n_iter : int
        Maximum number of gradient steps per poison point.
    n_poison : int
        Number of poison points, added sequentially.
    bounds : tuple (low, high) or None
        Box for the poison, scalars or arrays of shape ``(d,)``: e.g. ``(0, 1)`` for pixels. ``None`` uses
        the bounding box of ``X_train``.
    poison_label : label or None
        Label of every poison point; ``None`` draws one of the two classes at random for each point.
    n_init : int
        Number of random label-flipped copies tried as the start of each point; the one with the highest
        validation loss is kept. ``1`` is the paper's choice.
    max_halvings : int
        How often a step that lowers :math:`J` is halved before the optimisation of that point stops.
    tol : float
        The optimisation of a point also stops when a step raises :math:`J` by less than ``tol``.
    svm_tol : float
        Stopping tolerance of the SVM solver; small, so that retrained models are accurate.
    random_state : int, RandomState, Generator or None
        Seeds the choice of labels and starting points.
    progress : bool
        Show a tqdm progress bar.

    Attributes
    ----------
    classes_ : array of shape (2,)
        The two labels; ``classes_[1]`` is :math:`+1`.
    n_features_in_ : int
        Number of features of the training set.
    gamma_ : float or None
        The RBF width actually used.
    bounds_ : tuple of arrays
        ``(low, high)`` of shape ``(d,)`` each.
    svm_clean_ : SVC
        The SVM fitted on the clean training set.
    X_init_, X_poison_, y_poison_ : arrays
        Starting points, optimised points (shape ``(n_poison, d)``) and their labels.
    svm_ : SVC
        The SVM fitted on the clean training set plus all poison points.
    history_ : list of dict
        One dict per poison point with arrays indexed by iteration (entry 0 is the starting point):
        ``"val_loss"`` (:math:`J`), ``"val_error"``, ``"test_error"`` (NaN without a test set) and
        ``"trajectory"`` (the point, shape ``(iterations + 1, d)``).
    n_iter_ : list of int
        Steps taken for each poison point.
    """

    def __init__(self, C=1.0, kernel="linear", gamma=None, step_size=0.5, n_iter=50, n_poison=1, bounds=None,
                 poison_label=None, n_init=1, max_halvings=8, tol=1e-3, svm_tol=1e-6, random_state=None,
                 progress=False):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.step_size = step_size
        self.n_iter = n_iter
        self.n_poison = n_poison
        self.bounds = bounds
        self.poison_label = poison_label
        self.n_init = n_init
        self.max_halvings = max_halvings
        self.tol = tol
        self.svm_tol = svm_tol
        self.random_state = random_state
        self.progress = progress

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.classifier_tags = ClassifierTags(multi_class=False)  # y holds the labels of a binary problem
        return tags

    # ----------------------------------------------------------------------------------------------
    def _check_params(self):
        check_positive(self.C, "C")
        if self.kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {_KERNELS}, got {self.kernel!r}")
        if self.gamma is not None:
            check_positive(self.gamma, "gamma")
        check_positive(self.step_size, "step_size")
        check_positive(self.n_iter, "n_iter", integer=True)
        check_positive(self.n_poison, "n_poison", integer=True)
        check_positive(self.n_init, "n_init", integer=True)
        check_positive(self.svm_tol, "svm_tol")
        check_number(self.tol, "tol", low=0)
        check_count(self.max_halvings, "max_halvings")

    def _check_bounds(self, X_train):
        d = X_train.shape[1]
        if self.bounds is None:
            return X_train.min(0), X_train.max(0)
        low, high = check_pair(self.bounds, "bounds")
        low, high = as_float_array(low, "bounds[0]"), as_float_array(high, "bounds[1]")
        try:
            low = np.broadcast_to(low, (d,)).copy()
            high = np.broadcast_to(high, (d,)).copy()
        except ValueError:
            raise ValueError(f"bounds must be scalars or arrays of shape ({d},)") from None
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("bounds must be finite")
        if np.any(low > high):
            raise ValueError("bounds must satisfy low <= high in every coordinate")
        return low, high

    def _new_svm(self):
        return SVC(C=self.C, kernel=self.kernel, gamma=self.gamma_ if self.kernel == "rbf" else "scale",
                   tol=self.svm_tol)

    def _evaluate(self, X, y, X_val, y_val, X_test, y_test):
        """Retrain on ``(X, y)``; return the SVM, its validation hinge loss, validation and test errors."""
        svm = self._new_svm().fit(X, y)
        # one decision_function call serves both the loss and the error (predict is classes_[f > 0])
        signs, f = _signs(y_val, svm.classes_), svm.decision_function(X_val)
        loss = float(np.maximum(0.0, 1.0 - signs * f).sum())
        val_error = float(np.mean((f > 0) != (signs > 0)))
        test_error = np.nan if X_test is None else empirical_risk(svm, X_test, y_test)
        return svm, loss, val_error, test_error

    def fit(self, X_train, y_train, X_val=None, y_val=None, X_test=None, y_test=None, X_init=None):
        """Optimise ``n_poison`` poison points against an SVM trained on ``X_train, y_train``.

        ``X_val, y_val`` define the attacker's objective; without them (``None``) the attacker maximises the
        hinge loss on the clean training set itself. ``X_test, y_test`` (optional) are only monitored.
        ``X_init`` (shape ``(n_poison, d)``) gives the starting points instead of label-flipped copies of
        training points; then a point without ``poison_label`` gets the label the clean SVM does not
        predict there. Returns ``self``.
        """
        X_train, y_train = _check_Xy(X_train, y_train, "X_train", "y_train")
        d = X_train.shape[1]
        classes = np.unique(y_train)
        if len(classes) != 2:
            raise ValueError(f"y_train must contain exactly two classes, got {len(classes)} "
                             f"class{'' if len(classes) == 1 else 'es'}: {classes.tolist()}")
        self._check_params()
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        if X_val is None:
            X_val, y_val = X_train, y_train
        X_val, y_val = _check_Xy(X_val, y_val, "X_val", "y_val", d=d)
        _signs(y_val, classes)
        if (X_test is None) != (y_test is None):
            raise ValueError("give both X_test and y_test, or neither")
        if X_test is not None:
            X_test, y_test = _check_Xy(X_test, y_test, "X_test", "y_test", d=d)
            _signs(y_test, classes)
        if self.poison_label is not None and not any(self.poison_label == c for c in classes.tolist()):
            raise ValueError(f"poison_label must be one of the classes {classes.tolist()}, "
                             f"got {self.poison_label!r}")
        low, high = self._check_bounds(X_train)
        if X_init is not None:
            X_init = as_float_array(X_init, "X_init")
            if X_init.shape != (self.n_poison, d):
                raise ValueError(f"X_init must have shape ({self.n_poison}, {d}), got {X_init.shape}")
            if np.any(X_init < low) or np.any(X_init > high):
                raise ValueError("X_init must lie within the bounds")

        # The linear algebra here is small (a few hundred rows at most): a single BLAS thread is faster than
        # several threads competing for the cores, and leaves them to the rest of the program.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(X_train, y_train, X_val, y_val, X_test, y_test, X_init, classes, low, high)

    def _fit(self, X_train, y_train, X_val, y_val, X_test, y_test, X_init, classes, low, high):
        """The body of :meth:`fit`, after the input checks."""
        d = X_train.shape[1]
        rng = check_random_state(self.random_state)
        self.classes_ = classes
        self.n_features_in_ = d
        self.gamma_ = None
        if self.kernel == "rbf":
            self.gamma_ = float(self.gamma) if self.gamma is not None else 1.0 / (d * X_train.var())
        self.bounds_ = (low, high)
        self.svm_clean_ = self._new_svm().fit(X_train, y_train)

        X_cur, y_cur = X_train, y_train
        X_start, X_poison, y_poison, self.history_, self.n_iter_ = [], [], [], [], []
        used = np.zeros(len(X_train), dtype=bool)  # each training point is copied at most once, if possible
        bar = tqdm(total=self.n_poison * self.n_iter, desc="poisoning the SVM", disable=not self.progress)
        for p in range(self.n_poison):
            if X_init is None:
                label = self.poison_label if self.poison_label is not None else classes[rng.randint(2)]
                x = self._label_flip_start(label, X_train, y_train, X_cur, y_cur, X_val, y_val, used, rng)
            else:
                x = X_init[p].copy()
                label = self.poison_label
                if label is None:
                    predicted = self.svm_clean_.predict(x[None, :])[0]
                    label = classes[0] if predicted == classes[1] else classes[1]
            X_start.append(x.copy())
            X_all, y_all = np.vstack([X_cur, x]), np.append(y_cur, label)
            svm, record = self._ascend(X_all, y_all, X_val, y_val, X_test, y_test, bar)
            self.history_.append(record)
            self.n_iter_.append(len(record["val_loss"]) - 1)
            X_poison.append(X_all[-1].copy())
            y_poison.append(label)
            X_cur, y_cur = X_all, y_all  # the next point is optimised with this one fixed
        bar.close()
        self.X_init_ = np.array(X_start)
        self.X_poison_ = np.array(X_poison)
        self.y_poison_ = np.array(y_poison, dtype=y_train.dtype)
        self.svm_ = svm
        return self

    def _label_flip_start(self, label, X_train, y_train, X_cur, y_cur, X_val, y_val, used, rng):
        """The paper's start: a copy of a random training point of the other class, which gets ``label``.

        Of ``n_init`` random candidates (not used before, when possible) the one whose addition gives the
        highest validation loss is kept; ``used`` marks it.
        """
        low, high = self.bounds_
        donors = np.flatnonzero((y_train != label) & ~used)
        if len(donors) == 0:
            donors = np.flatnonzero(y_train != label)
        candidates = rng.choice(donors, size=min(self.n_init, len(donors)), replace=False)
        if len(candidates) > 1:
            y_next = np.append(y_cur, label)
            losses = [self._evaluate(np.vstack([X_cur, np.clip(X_train[i], low, high)]), y_next,
                                     X_val, y_val, None, None)[1] for i in candidates]
            candidates = candidates[[int(np.argmax(losses))]]
        used[candidates[0]] = True
        return np.clip(X_train[candidates[0]], low, high)

    def _ascend(self, X_all, y_all, X_val, y_val, X_test, y_test, bar):
        """Projected gradient ascent on the last row of ``X_all`` (the poison), in place; returns
        ``(svm, record)``: the final SVM and the history of this point."""
        low, high = self.bounds_
        x = X_all[-1].copy()
        svm, loss, val_err, test_err = self._evaluate(X_all, y_all, X_val, y_val, X_test, y_test)
        record = {"val_loss": [loss], "val_error": [val_err], "test_error": [test_err], "trajectory": [x]}
        eta = float(self.step_size)
        for _ in range(self.n_iter):
            grad = poisoning_gradient(svm, X_all, y_all, X_val, y_val, index=-1)
            # Coordinates at a bound that the gradient pushes outwards cannot move: drop them, so that
            # the normalised step is spent on the coordinates that can.
            grad[((x <= low) & (grad < 0)) | ((x >= high) & (grad > 0))] = 0.0
            norm = np.linalg.norm(grad)
            if not np.isfinite(norm) or norm == 0:
                break  # x_c is not a support vector (no influence on J) or sits at a flat spot
            for _ in range(self.max_halvings + 1):
                X_all[-1] = np.clip(x + eta * grad / norm, low, high)  # step, then project onto the box
                trial = self._evaluate(X_all, y_all, X_val, y_val, X_test, y_test)  # retrain the SVM
                if trial[1] >= loss:
                    break
                eta /= 2  # the step left the region where the gradient is valid: shorten it
            else:
                X_all[-1] = x
                break  # no step raises L: a local maximum within the box
            gain = trial[1] - loss
            x = X_all[-1].copy()
            svm, loss, val_err, test_err = trial
            for key, value in zip(record, (loss, val_err, test_err, x)):
                record[key].append(value)
            bar.update(1)
            eta = min(2 * eta, float(self.step_size))  # after a good step, try a longer one again
            if gain < self.tol:
                break  # converged: L no longer rises
        bar.update(self.n_iter - (len(record["val_loss"]) - 1))
        return svm, {key: np.array(value) for key, value in record.items()}

    def generate(self, X_train, y_train, X_val=None, y_val=None, **kwargs):
        """Fit, then return the poison set ``(X_poison, y_poison)``, ready for
        :func:`~poisoning.threat_model.poison_dataset`."""
        self.fit(X_train, y_train, X_val, y_val, **kwargs)
        return self.X_poison_.copy(), self.y_poison_.copy()


def svm_poisons(X_train, y_train, X_val, y_val, n_poison=1, **params):
    """``n_poison`` points optimised against an SVM, added sequentially: returns ``X_poison, y_poison``.

    A function form of :class:`SVMPoisoningAttack` (``params`` are its other constructor arguments), with the
    same return value as :func:`~poisoning.threat_model.label_flip_poisons`, so the two are easy to compare.
    """
    return SVMPoisoningAttack(n_poison=n_poison, **params).generate(X_train, y_train, X_val, y_val)
