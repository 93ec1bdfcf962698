r"""Influence functions: how one training point moves the parameters and a test loss, without retraining.

Defined in chapter "Influence functions" of Part II (``chapters/part2_influence.md``, the page "Influence of
training data", whose notation :math:`L`, :math:`l`, :math:`H_{\hat\theta}` and :math:`g` this module follows),
after Koh and Liang, *Understanding Black-box Predictions via Influence Functions* (ICML 2017); the influence attack
of Koh, Steinhardt and Liang (2022) ascends :func:`input_gradient_of_test_loss`. Koh and Liang write the loss
:math:`L(z, \theta)`, the objective :math:`R(\theta)` and the up-weighting :math:`\epsilon`; the book keeps
:math:`L` for the objective, :math:`R` for the risk and :math:`\epsilon` for the poisoning budget.

The one convention
------------------
Every model here minimises the regularised training objective over ``n`` training points
:math:`z_i = (x_i, y_i)`, with :math:`l(z, \theta) = l(f(x; \theta), y)` the loss of one example,

.. math::

    L(\theta) = \frac1n \sum_{i=1}^n w_i\, l(z_i, \theta) + \frac\lambda2 \lVert \theta_{\text{reg}} \rVert^2,
    \qquad w_i = 1,

where ``n`` is the number of training points and stays fixed (a weight :math:`w_i = 0` removes a point but does
not change ``n``), :math:`\lambda` is ``l2`` and :math:`\theta_{\text{reg}}` are the weights: **biases are not
regularised** (for the linear models :math:`\theta = (w, b)` and only :math:`w` is penalised; for a torch model
every parameter whose name ends in ``"bias"`` is left out). :math:`H = \nabla^2 L(\hat\theta)` is the Hessian of
the whole objective, the :math:`\lambda` term included.

*Upweighting* :math:`z` by :math:`\omega` adds :math:`\omega\, l(z, \theta)` to :math:`L` (the weight of
:math:`z` becomes :math:`1 + n\omega`). The test loss :math:`L_{\text{test}}(\theta)` is the mean loss
:math:`l` over a test set :math:`\mathcal D_{\text{test}}` (one point or several, no regulariser) and
:math:`g = \nabla_\theta L_{\text{test}}(\hat\theta)` its gradient. Differentiating the stationarity condition
:math:`\nabla L = 0`,

.. math::

    I_{\text{up,params}}(z) = \frac{d\hat\theta_{\omega,z}}{d\omega}\Big|_{\omega=0}
    = -H^{-1} \nabla_\theta l(z, \hat\theta), \qquad
    I_{\text{up,loss}}(z, \mathcal D_{\text{test}}) = -g^\top H^{-1} \nabla_\theta l(z, \hat\theta).

*Removing* :math:`z` sets its weight to 0, that is :math:`\omega = -1/n`, so to first order

.. math::

    \hat\theta_{-z} - \hat\theta \approx \frac1n H^{-1} \nabla_\theta l(z, \hat\theta), \qquad
    L_{\text{test}}(\hat\theta_{-z}) - L_{\text{test}}(\hat\theta)
    \approx -\frac1n I_{\text{up,loss}}(z, \mathcal D_{\text{test}})
    = \frac1n g^\top H^{-1} \nabla_\theta l(z, \hat\theta).

This is :func:`removal_effect`: **positive when removing** :math:`z` **raises the test loss**, i.e. when
:math:`z` helps the test point. The ground truth, :func:`leave_one_out`, retrains *the same objective*: the same
:math:`\lambda` and the same :math:`1/n`, with :math:`w_z = 0`. The constant matters. Retraining on the
:math:`n - 1` other points with a mean over :math:`n - 1` minimises
:math:`\frac{n}{n-1}\bigl(\frac1n\sum_{i \ne z} l_i + \frac{n-1}{n}\frac\lambda2\lVert\theta\rVert^2\bigr)`: the
regularisation shrinks by :math:`\lambda/n`, which moves :math:`\hat\theta` by about
:math:`\frac\lambda n H^{-1}\theta_{\text{reg}}` whichever point is removed. That shift is :math:`O(1/n)`, the same
order as the influence itself, so the comparison stays off by a term that does not vanish relative to what is being
measured, however large ``n`` is.

*Perturbing* :math:`z = (x, y)` into :math:`z_\delta = (x + \delta, y)` (the point stays in the mean with weight
:math:`1/n`) moves the parameters by

.. math::

    \frac{d\hat\theta}{d\delta} = -\frac1n H^{-1} \nabla_x \nabla_\theta l(z, \hat\theta),

(the lecture's slide omits the :math:`1/n`), so the gradient of the mean test loss with respect to the training
input :math:`x` is :math:`-\frac1n g^\top H^{-1} \nabla_x\nabla_\theta l(z, \hat\theta)`
(:func:`input_gradient_of_test_loss`; the influence attack ascends it). Here
:math:`\nabla_x\nabla_\theta l` is the matrix of mixed second derivatives
:math:`\partial^2 l / \partial\theta_a \partial x_b`, of shape ``(p, d)``.

All of these need :math:`H^{-1}` times one vector, the test gradient, and then products with the per-example
gradients: :func:`inverse_hvp` solves :math:`(H + \text{damping}\, I)\, x = v` exactly (dense Cholesky), by
conjugate gradients, or by LiSSA (Agarwal, Bullins and Hazan, 2017), and reports the residual.

The models
----------
:class:`LogisticModel` (binary logistic regression) and :class:`SmoothHingeModel` (linear SVM with Koh and
Liang's smooth hinge) take labels in :math:`\{-1, +1\}` (or :math:`\{0, 1\}`, read as :math:`-1, +1`) and compute
everything in closed form; :class:`TorchModel` wraps an ``nn.Module`` that maps inputs to logits, with the
cross-entropy loss and all parameters flattened into :math:`\theta`, and uses autograd. All three share one
interface (``losses``, ``gradients``, ``objective``, ``hessian``, ``hvp``, ``mixed_derivatives``, ``mixed_vjp``,
``fit``), which the influence functions use; arrays come back as ``float64`` numpy arrays. ``fit`` minimises
:math:`L` by L-BFGS to a tight tolerance: influence functions assume :math:`\nabla L(\hat\theta) = 0`, and
retraining that stops early is the usual reason for "influence does not match retraining".
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse.linalg
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from threadpoolctl import threadpool_limits

from poisoning._validation import check_random_state

__all__ = [
    "LogisticModel", "SmoothHingeModel", "TorchModel", "fit_logistic", "fit_smooth_hinge",
    "IHVPResult", "inverse_hvp", "influence_on_params", "influence_on_test_loss", "removal_effect",
    "input_gradient_of_test_loss", "LeaveOneOut", "leave_one_out",
]

_METHODS = ("exact", "cg", "lissa")
# Below this many matrix entries (n * p), one BLAS thread beats two: the L-BFGS loops pin to one.
_SMALL_PROBLEM = 4_000_000


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _check_number(value, name, *, positive=False, integer=False):
    kinds = (numbers.Integral,) if integer else (numbers.Real,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'} and finite, got {value!r}")
    return int(value) if integer else float(value)


def _check_array(a, name, shape=None):
    """A finite float64 array; ``shape`` may contain ``None`` for any length."""
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers") from None
    if shape is not None and (a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape))):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _check_weights(sample_weight, n):
    if sample_weight is None:
        return np.ones(n)
    w = _check_array(sample_weight, "sample_weight", (n,))
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative")
    return w


def _check_indices(indices, n):
    if indices is None:
        return np.arange(n)
    idx = np.asarray(indices)
    if idx.ndim == 0:
        idx = idx[None]
    if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
        raise TypeError(f"indices must be a 1-D array of integers, got {np.asarray(indices).dtype} "
                        f"of shape {np.asarray(indices).shape}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ValueError(f"indices must lie in [-{n}, {n - 1}] for {n} training points, got {idx.min()}..{idx.max()}")
    return idx % n


def _check_method(method):
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    return method


def _pinned(n_entries):
    """One BLAS thread for small problems: on a 2-core machine two threads made a small L-BFGS retrain 50-100x
    slower, and a 785 x 785 Cholesky factorisation 50x slower, than one."""
    return threadpool_limits(1) if n_entries <= _SMALL_PROBLEM else contextlib.nullcontext()


def _lbfgs(fun, theta0, gtol, max_iter):
    """Minimise ``fun`` (value and gradient) by scipy's L-BFGS-B until the largest gradient entry is below gtol."""
    res = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B",
                                  options={"gtol": gtol, "ftol": 0.0, "maxiter": max_iter, "maxcor": 30})
    grad_max = float(np.max(np.abs(res.jac))) if res.jac.size else 0.0
    if not np.isfinite(res.fun) or grad_max > 100 * gtol:
        hint = ("; R no longer decreases in floating point, so a smaller gtol is out of reach"
                if "REDUCTION OF F" in str(res.message) else "")
        warnings.warn(f"L-BFGS stopped with gradient max-norm {grad_max:.2e} (gtol {gtol:.0e}): {res.message}"
                      f"{hint}", ConvergenceWarning, stacklevel=3)
    return res


# --------------------------------------------------------------------------------------------------
# models: the shared interface
# --------------------------------------------------------------------------------------------------
class _Model:
    """What the influence functions need from a model: see the module docstring."""

    def _require_fitted(self):
        if getattr(self, "_theta", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(X, y) first")

    def fit(self, X, y, sample_weight=None, theta0=None, gtol=1e-10, max_iter=10_000):
        r"""Minimise :math:`L(\theta) = \frac1n\sum_i w_i l(z_i,\theta) + \frac\lambda2\lVert\theta_{\text{reg}}
        \rVert^2` by L-BFGS (``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``) until the largest entry of
        :math:`\nabla L` is at most ``gtol``; returns ``self`` with ``theta_`` set.

        ``sample_weight`` are the :math:`w_i` (default 1; ``n`` stays ``len(X)`` whatever the weights);
        ``theta0`` is the starting point (warm start; default zeros for the linear models, the current parameters
        for a torch model). Small problems run with one BLAS thread. Warns (``ConvergenceWarning``) when the
        gradient stays above ``100 * gtol``: L-BFGS stalls once :math:`L` stops decreasing in floating point, near
        a gradient of about ``1e-11`` for the problems here, so the default ``1e-10`` is about as tight as it gets.
        ``n_iter_`` is the number of L-BFGS iterations.
        """
        gtol = _check_number(gtol, "gtol", positive=True)
        max_iter = _check_number(max_iter, "max_iter", positive=True, integer=True)
        data = self._prepare(X, y)
        w = _check_weights(sample_weight, data[2])
        theta0 = self._start(data, theta0)
        with _pinned(data[2] * theta0.size):
            res = self._minimize(data, w, theta0, gtol, max_iter)
        self._set_theta(res.x)
        self.n_iter_ = int(res.nit)
        return self

    def _start(self, data, theta0):
        p = self._n_params(data)
        if theta0 is None:
            return self._default_start(p)
        return _check_array(theta0, "theta0", (p,)).copy()

    def _param(self, theta, data):
        p = self._n_params(data)
        if theta is None:
            self._require_fitted()
            theta = self.theta_
        theta = _check_array(theta, "theta", (None,))
        if theta.shape != (p,):
            raise ValueError(f"theta must have shape ({p},) for this model and data, got {theta.shape}")
        return theta

    def _vector(self, v, data, name="v"):
        return _check_array(v, name, (self._n_params(data),))

    # public interface ---------------------------------------------------------------------------
    def losses(self, X, y, theta=None):
        r"""The per-example losses :math:`l(z_i, \theta)`, shape ``(n,)`` (``theta`` defaults to ``theta_``)."""
        data = self._prepare(X, y)
        return self._losses(data, self._param(theta, data))

    def gradients(self, X, y, theta=None):
        r"""The per-example gradients :math:`\nabla_\theta l(z_i, \theta)` (no regulariser), shape ``(n, p)``."""
        data = self._prepare(X, y)
        return self._gradients(data, self._param(theta, data))

    def objective(self, X, y, theta=None, sample_weight=None):
        r"""``(L, grad L)``: the regularised weighted mean loss :math:`L(\theta)` and its gradient, shape ``(p,)``."""
        data = self._prepare(X, y)
        return self._objective(data, _check_weights(sample_weight, data[2]), self._param(theta, data))

    def hessian(self, X, y, theta=None, sample_weight=None):
        r"""The exact Hessian :math:`H = \nabla^2 L(\theta)` (the :math:`\lambda` term included), shape ``(p, p)``."""
        data = self._prepare(X, y)
        return self._hessian(data, _check_weights(sample_weight, data[2]), self._param(theta, data))

    def hvp(self, X, y, v, theta=None, sample_weight=None):
        r"""The Hessian-vector product :math:`H v = \nabla^2 L(\theta)\, v`, shape ``(p,)``, without forming ``H``.

        Called on a mini-batch ``X[b], y[b]`` it is the mini-batch estimate
        :math:`\frac1{|b|}\sum_{i\in b}\nabla^2 l_i\, v + \lambda P v` that LiSSA uses.
        """
        data = self._prepare(X, y)
        return self._hvp(data, _check_weights(sample_weight, data[2]), self._param(theta, data),
                         self._vector(v, data))

    def mixed_derivatives(self, X, y, theta=None):
        r"""The mixed second derivatives :math:`\nabla_x\nabla_\theta l(z_i, \theta)`, entry ``[i, a, b]`` being
        :math:`\partial^2 l(z_i) / \partial\theta_a\, \partial x_{i,b}`; shape ``(n, p, d)``."""
        data = self._prepare(X, y)
        return self._mixed(data, self._param(theta, data))

    def mixed_vjp(self, X, y, u, theta=None):
        r"""Row ``i`` is :math:`u^\top \nabla_x\nabla_\theta l(z_i, \theta) = \nabla_{x_i}\bigl(u^\top
        \nabla_\theta l(z_i, \theta)\bigr)`: shape ``(n, d)``, without forming the ``(n, p, d)`` array."""
        data = self._prepare(X, y)
        return self._mixed_vjp(data, self._param(theta, data), self._vector(u, data, "u"))

    def _minimize(self, data, w, theta0, gtol, max_iter):
        return _lbfgs(lambda theta: self._objective(data, w, theta), theta0, gtol, max_iter)


# --------------------------------------------------------------------------------------------------
# linear models with a margin loss
# --------------------------------------------------------------------------------------------------
def _check_Xy_linear(X, y, name="X"):
    X = _check_array(X, name, (None, None))
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    y_name = "y" + name[1:]
    y_arr = np.asarray(y)
    if y_arr.ndim != 1 or len(y_arr) != len(X):
        raise ValueError(f"{y_name} must have shape ({len(X)},) to match {name}, got shape {y_arr.shape}")
    if not (np.issubdtype(y_arr.dtype, np.number) or y_arr.dtype == bool):
        raise TypeError(f"{y_name} must hold numeric labels (-1/+1 or 0/1), got dtype {y_arr.dtype}")
    labels = set(np.unique(y_arr).tolist())
    if not (labels <= {-1, 1} or labels <= {0, 1}):
        raise ValueError(f"{y_name} must hold labels in {{-1, +1}} or {{0, 1}}, got {sorted(labels)}")
    return X, np.where(y_arr == 1, 1.0, -1.0)  # 0 and -1 are the negative class


class _LinearMarginModel(_Model, BaseEstimator):
    r"""A linear classifier :math:`f(x) = w^\top x + b` with a loss :math:`l = \phi(m)` of the margin
    :math:`m = y f(x)`. With :math:`\bar x = (x, 1)` and :math:`P = \operatorname{diag}(1, \dots, 1, 0)`:

    .. math::

        \nabla_\theta l = \phi'(m)\, y\, \bar x, \qquad \nabla^2_\theta l = \phi''(m)\, \bar x\bar x^\top,
        \qquad \nabla_x\nabla_\theta l = \phi''(m)\, \bar x\, w^\top + \phi'(m)\, y \begin{bmatrix} I_d \\ 0
        \end{bmatrix},

    and :math:`H = \frac1n \bar X^\top \operatorname{diag}(w_i \phi''(m_i)) \bar X + \lambda P`.
    """

    def __init__(self, l2=0.01):
        self.l2 = l2

    # phi(m), phi'(m), phi''(m): implemented by the subclasses
    def _phi(self, m, order):
        raise NotImplementedError

    def _lam(self):
        return _check_number(self.l2, "l2")

    def _prepare(self, X, y, name="X"):
        X, s = _check_Xy_linear(X, y, name)
        return X, s, len(X)

    def _n_params(self, data):
        return data[0].shape[1] + 1

    @staticmethod
    def _default_start(p):
        return np.zeros(p)

    def _set_theta(self, theta):
        self._theta = np.array(theta, dtype=np.float64)

    @property
    def theta_(self):
        """The fitted parameters :math:`\\theta = (w, b)`, shape ``(d + 1,)``; settable (e.g. to a minimiser found
        elsewhere)."""
        self._require_fitted()
        return self._theta.copy()

    @theta_.setter
    def theta_(self, theta):
        theta = _check_array(theta, "theta_", (None,))
        if theta.size < 1:
            raise ValueError("theta_ must not be empty")
        self._set_theta(theta)

    @property
    def coef_(self):
        """The fitted weights :math:`w`, shape ``(d,)``."""
        return self.theta_[:-1]

    @property
    def intercept_(self):
        """The fitted bias :math:`b` (not regularised)."""
        return float(self.theta_[-1])

    def decision_function(self, X, theta=None):
        r""":math:`f(x) = w^\top x + b` for the rows of ``X``; its sign is the predicted label (:math:`\pm 1`)."""
        X = _check_array(X, "X", (None, None))
        theta = self._param(theta, (X, None, len(X)))
        return X @ theta[:-1] + theta[-1]

    def _margins(self, data, theta):
        X, s, _ = data
        return s * (X @ theta[:-1] + theta[-1])

    def _losses(self, data, theta):
        return self._phi(self._margins(data, theta), 0)

    def _gradients(self, data, theta):
        X, s, n = data
        c = self._phi(self._margins(data, theta), 1) * s
        return np.hstack([c[:, None] * X, c[:, None]])

    def _objective(self, data, w, theta):
        X, s, n = data
        lam = self._lam()
        m = self._margins(data, theta)
        c = w * self._phi(m, 1) * s / n
        grad = np.empty_like(theta)
        grad[:-1] = X.T @ c + lam * theta[:-1]
        grad[-1] = c.sum()
        value = w @ self._phi(m, 0) / n + 0.5 * lam * theta[:-1] @ theta[:-1]
        return float(value), grad

    def _hessian(self, data, w, theta):
        X, s, n = data
        q = w * self._phi(self._margins(data, theta), 2) / n
        Xt = np.hstack([X, np.ones((n, 1))])
        H = Xt.T @ (q[:, None] * Xt)
        H[np.arange(len(theta) - 1), np.arange(len(theta) - 1)] += self._lam()
        return H

    def _hvp(self, data, w, theta, v):
        X, s, n = data
        q = w * self._phi(self._margins(data, theta), 2) / n
        r = q * (X @ v[:-1] + v[-1])
        out = np.empty_like(v)
        out[:-1] = X.T @ r + self._lam() * v[:-1]
        out[-1] = r.sum()
        return out

    def _mixed(self, data, theta):
        X, s, n = data
        d = X.shape[1]
        m = self._margins(data, theta)
        Xt = np.hstack([X, np.ones((n, 1))])
        J = self._phi(m, 2)[:, None, None] * Xt[:, :, None] * theta[None, None, :-1]
        J[:, np.arange(d), np.arange(d)] += (self._phi(m, 1) * s)[:, None]
        return J

    def _mixed_vjp(self, data, theta, u):
        X, s, n = data
        m = self._margins(data, theta)
        return ((self._phi(m, 2) * (X @ u[:-1] + u[-1]))[:, None] * theta[None, :-1]
                + (self._phi(m, 1) * s)[:, None] * u[None, :-1])


class LogisticModel(_LinearMarginModel):
    r"""L2-regularised binary logistic regression, :math:`l(z, \theta) = \log(1 + e^{-y(w^\top x + b)})`.

    Labels :math:`y \in \{-1, +1\}` (or :math:`\{0, 1\}`, read as :math:`-1, +1`); ``l2`` is :math:`\lambda` and
    penalises :math:`w` only (the bias is not regularised). :math:`\phi(m) = \log(1 + e^{-m})`,
    :math:`\phi'(m) = -\sigma(-m)`, :math:`\phi''(m) = \sigma(m)\sigma(-m)`. Fit with :meth:`fit` (or
    :func:`fit_logistic`); ``theta_ = (w, b)``, ``coef_``, ``intercept_``.
    """

    def _phi(self, m, order):
        if order == 0:
            return np.logaddexp(0.0, -m)
        if order == 1:
            return -expit(-m)
        return expit(m) * expit(-m)


class SmoothHingeModel(_LinearMarginModel):
    r"""A linear SVM with Koh and Liang's smooth hinge :math:`l_t(m) = t \log(1 + e^{(1 - m)/t})`,
    :math:`m = y(w^\top x + b)`, plus :math:`\frac\lambda2\lVert w\rVert^2` (the bias is not regularised).

    ``temperature`` :math:`t > 0`; as :math:`t \to 0` the loss tends to the hinge :math:`\max(0, 1 - m)`, from above,
    and never differs from it by more than :math:`t \log 2` (at :math:`m = 1`). With :math:`s = (1 - m)/t`:
    :math:`\phi'(m) = -\sigma(s)`, :math:`\phi''(m) = \sigma(s)\sigma(-s)/t`; the Hessian grows like :math:`1/t`
    near the margin, so small :math:`t` makes :math:`H` ill-conditioned. Labels as in :class:`LogisticModel`.
    """

    def __init__(self, l2=0.01, temperature=0.1):
        super().__init__(l2)
        self.temperature = temperature

    def _phi(self, m, order):
        t = _check_number(self.temperature, "temperature", positive=True)
        s = (1.0 - m) / t
        if order == 0:
            return t * np.logaddexp(0.0, s)
        if order == 1:
            return -expit(s)
        return expit(s) * expit(-s) / t


def fit_logistic(X, y, l2=0.01, sample_weight=None, theta0=None, gtol=1e-10, max_iter=10_000):
    """A :class:`LogisticModel` with :math:`\\lambda` = ``l2`` fitted by L-BFGS (see :meth:`LogisticModel.fit`)."""
    return LogisticModel(l2).fit(X, y, sample_weight=sample_weight, theta0=theta0, gtol=gtol, max_iter=max_iter)


def fit_smooth_hinge(X, y, l2=0.01, temperature=0.1, sample_weight=None, theta0=None, gtol=1e-10, max_iter=10_000):
    """A :class:`SmoothHingeModel` fitted by L-BFGS (see :meth:`SmoothHingeModel.fit`)."""
    return SmoothHingeModel(l2, temperature).fit(X, y, sample_weight=sample_weight, theta0=theta0, gtol=gtol,
                                                 max_iter=max_iter)


# --------------------------------------------------------------------------------------------------
# torch models
# --------------------------------------------------------------------------------------------------
class TorchModel(_Model):
    r"""A torch ``nn.Module`` that maps inputs to logits, with the cross-entropy loss, as a twice-differentiable
    model for the influence functions.

    :math:`\theta` is the concatenation of ``module.parameters()``, each flattened, in their order (as
    ``torch.nn.utils.parameters_to_vector``); ``l2`` penalises every parameter whose name does not end in
    ``"bias"``. Labels are integer classes ``0..K-1``; ``X`` has shape ``(n, ...)``, whatever the module takes.
    The module is moved to ``device`` (``None``: :func:`poisoning.device.get_device`) and ``dtype`` (float64 by
    default, so that finite-difference checks and tight L-BFGS fits work) in place, and put in eval mode; it must
    treat the examples of a batch independently (no batch norm in training mode).

    Per-example gradients use ``torch.func.vmap`` of ``torch.func.grad`` (``chunk_size`` examples at a time;
    ``None``: all at once); Hessian-vector products double backpropagation; ``hessian`` the exact Hessian by
    ``torch.func.jacrev`` of ``torch.func.grad``, refused (``ValueError``) above ``max_hessian_params`` parameters
    (use ``method="cg"`` or ``"lissa"`` then); ``mixed_vjp`` is :math:`\nabla_x (u^\top \nabla_\theta l)` by
    double backpropagation through the inputs. ``fit`` runs scipy's L-BFGS on the flattened parameters (full
    batch) and writes the result into the module; for a non-convex network the influence is then taken at that
    local minimum (Koh and Liang's setting).
    """

    def __init__(self, module, l2=0.0, device=None, dtype=None, max_hessian_params=5000, chunk_size=None):
        import torch
        from torch import nn

        from poisoning.device import get_device

        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.l2 = l2
        self.max_hessian_params = _check_number(max_hessian_params, "max_hessian_params", positive=True, integer=True)
        self.chunk_size = None if chunk_size is None else _check_number(chunk_size, "chunk_size", positive=True,
                                                                        integer=True)
        self.device = get_device(device) if device is None or isinstance(device, str) else torch.device(device)
        self.dtype = torch.float64 if dtype is None else dtype
        self.module = module.to(device=self.device, dtype=self.dtype).eval()
        named = list(self.module.named_parameters())
        if not named:
            raise ValueError("the module has no parameters")
        self._names = [name for name, _ in named]
        self._shapes = [p.shape for _, p in named]
        self._sizes = [p.numel() for _, p in named]
        self._mask = torch.cat([torch.full((p.numel(),), 0.0 if name.endswith("bias") else 1.0,
                                           dtype=self.dtype, device=self.device) for name, p in named])
        self._theta = True  # a torch model always has parameters: "fitted" means "has a theta"

    @property
    def n_params(self):
        """The number of parameters ``p``."""
        return sum(self._sizes)

    @property
    def theta_(self):
        """The module's current parameters, flattened, as a float64 numpy array of shape ``(p,)``; setting it
        writes into the module."""
        import torch
        with torch.no_grad():
            return torch.cat([p.reshape(-1) for p in self.module.parameters()]).double().cpu().numpy()

    @theta_.setter
    def theta_(self, theta):
        self._set_theta(_check_array(theta, "theta_", (self.n_params,)))

    def _set_theta(self, theta):
        import torch
        flat = torch.as_tensor(theta, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            for p, chunk in zip(self.module.parameters(), flat.split(self._sizes)):
                p.copy_(chunk.view_as(p))

    def _default_start(self, p):
        return self.theta_

    def _n_params(self, data):
        return self.n_params

    def _lam(self):
        return _check_number(self.l2, "l2")

    def _prepare(self, X, y, name="X"):
        import torch
        y_name = "y" + name[1:]
        if isinstance(X, torch.Tensor):
            X_t = X.detach().to(device=self.device, dtype=self.dtype)
        else:
            X_t = torch.as_tensor(_check_array(X, name), dtype=self.dtype, device=self.device)
        if X_t.ndim < 2 or X_t.shape[0] == 0:
            raise ValueError(f"{name} must have shape (n, ...) with n >= 1, got {tuple(X_t.shape)}")
        if not torch.isfinite(X_t).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        y_arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if y_arr.ndim != 1 or len(y_arr) != X_t.shape[0]:
            raise ValueError(f"{y_name} must have shape ({X_t.shape[0]},) to match {name}, got {y_arr.shape}")
        if not np.issubdtype(y_arr.dtype, np.integer):
            raise TypeError(f"{y_name} must hold integer class labels 0..K-1, got dtype {y_arr.dtype}")
        with torch.no_grad():
            k = self._logits(self._tensor(self.theta_), X_t[:1]).shape[1]
        if y_arr.min() < 0 or y_arr.max() >= k:
            raise ValueError(f"{y_name} must hold class labels 0..{k - 1} (the module has {k} logits), "
                             f"got {y_arr.min()}..{y_arr.max()}")
        return X_t, torch.as_tensor(y_arr, dtype=torch.long, device=self.device), X_t.shape[0]

    # functional pieces ----------------------------------------------------------------------------
    def _tensor(self, a):
        import torch
        return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def _unflatten(self, flat):
        return {name: chunk.view(shape) for name, chunk, shape in
                zip(self._names, flat.split(self._sizes), self._shapes)}

    def _logits(self, flat, X):
        from torch.func import functional_call
        out = functional_call(self.module, self._unflatten(flat), (X,))
        if out.ndim != 2:
            raise ValueError(f"the module must return logits of shape (n, K), got {tuple(out.shape)}")
        return out

    def _loss_vector(self, flat, X, y):
        import torch.nn.functional as F
        return F.cross_entropy(self._logits(flat, X), y, reduction="none")

    def _R(self, flat, data, w):
        X, y, n = data
        return (w * self._loss_vector(flat, X, y)).sum() / n + 0.5 * self._lam() * ((self._mask * flat) ** 2).sum()

    def _flat(self, theta, requires_grad=False):
        return self._tensor(theta).detach().requires_grad_(requires_grad)

    def _numpy(self, t):
        return t.detach().double().cpu().numpy()

    def _losses(self, data, theta):
        import torch
        with torch.no_grad():
            return self._numpy(self._loss_vector(self._flat(theta), data[0], data[1]))

    def _gradients(self, data, theta):
        import torch.nn.functional as F
        from torch.func import grad, vmap
        X, y, n = data

        def one(flat, x, target):
            return F.cross_entropy(self._logits(flat, x.unsqueeze(0)), target.unsqueeze(0))

        G = vmap(grad(one), in_dims=(None, 0, 0), chunk_size=self.chunk_size)(self._flat(theta), X, y)
        return self._numpy(G)

    def _objective(self, data, w, theta):
        import torch
        flat = self._flat(theta, True)
        value = self._R(flat, data, self._tensor(w))
        (g,) = torch.autograd.grad(value, flat)
        return float(value.detach()), self._numpy(g)

    def _hessian(self, data, w, theta):
        from torch.func import grad, jacrev
        if self.n_params > self.max_hessian_params:
            raise ValueError(f"the model has {self.n_params} parameters, more than max_hessian_params="
                             f"{self.max_hessian_params}: use hvp (method='cg' or 'lissa') instead of the exact "
                             "Hessian")
        w_t = self._tensor(w)
        # reverse over reverse (torch.func.hessian's forward-over-reverse needs forward-mode rules)
        return self._numpy(jacrev(grad(lambda flat: self._R(flat, data, w_t)))(self._flat(theta)))

    def _hvp(self, data, w, theta, v):
        import torch
        flat = self._flat(theta, True)
        (g,) = torch.autograd.grad(self._R(flat, data, self._tensor(w)), flat, create_graph=True)
        (Hv,) = torch.autograd.grad(g @ self._tensor(v), flat)
        return self._numpy(Hv)

    def _mixed(self, data, theta):
        import torch.nn.functional as F
        from torch.func import grad, jacrev, vmap
        X, y, n = data

        def one(flat, x, target):
            return F.cross_entropy(self._logits(flat, x.unsqueeze(0)), target.unsqueeze(0))

        J = vmap(jacrev(grad(one), argnums=1), in_dims=(None, 0, 0), chunk_size=self.chunk_size)(
            self._flat(theta), X, y)
        return self._numpy(J)

    def _mixed_vjp(self, data, theta, u):
        import torch
        X, y, n = data
        X = X.detach().clone().requires_grad_(True)
        flat = self._flat(theta, True)
        # sum_i l_i: l_i depends on x_i alone, so d/dx_i of u^T grad_theta (sum_j l_j) is d/dx_i of u^T grad_theta l_i
        (g,) = torch.autograd.grad(self._loss_vector(flat, X, y).sum(), flat, create_graph=True)
        (gx,) = torch.autograd.grad(g @ self._tensor(u), X, allow_unused=True)
        return np.zeros(tuple(X.shape)) if gx is None else self._numpy(gx)


# --------------------------------------------------------------------------------------------------
# inverse Hessian-vector products
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IHVPResult:
    r"""What :func:`inverse_hvp` returns.

    ``x``: the solution of :math:`(H + \text{damping}\, I)\, x = v`, shaped like ``v``; ``residual``:
    :math:`\lVert (H + \text{damping}\, I)x - v\rVert / \lVert v\rVert` (a float, or one per column of a 2-D ``v``;
    0 for ``v = 0``); ``method``: ``"exact"`` (with ``solver`` ``"cholesky"`` or ``"lu"``), ``"cg"`` or ``"lissa"``;
    ``n_iter``: Hessian-vector products spent in the iterations (CG iterations, or LiSSA's ``depth * repeats`` per
    column; for ``"exact"``, the products needed to form ``H`` from a function, else 0).
    """

    x: np.ndarray
    residual: float | np.ndarray
    method: str
    solver: str
    n_iter: int


def inverse_hvp(hvp_or_matrix, v, method="exact", damping=0.0, *, rtol=1e-12, maxiter=None, scale=25.0,
                depth=5000, repeats=10, batch_hvp=None, random_state=None):
    r"""Solve :math:`(H + \text{damping}\, I)\, x = v` for a symmetric :math:`H`; returns an :class:`IHVPResult`.

    ``hvp_or_matrix`` is ``H`` itself (shape ``(p, p)``) or a function ``v -> H v``; ``v`` has shape ``(p,)`` or
    ``(p, k)`` (``k`` right-hand sides, solved together by ``"exact"`` and one after the other otherwise).

    * ``"exact"``: a dense Cholesky solve, falling back to LU when :math:`H + \text{damping}\, I` is not positive
      definite (a non-convex model); a function is first turned into the matrix by ``p`` products.
    * ``"cg"``: conjugate gradients (``scipy.sparse.linalg.cg`` on a ``LinearOperator``) with relative residual
      tolerance ``rtol`` and at most ``maxiter`` iterations (default ``10 * p``); warns (``ConvergenceWarning``)
      when it stops short. Needs a positive definite matrix.
    * ``"lissa"``: the LiSSA recursion (Agarwal, Bullins and Hazan 2017) with Koh and Liang's defaults,
      :math:`h_0 = v,\ h_j = v + (I - (H + \text{damping}\, I)/\text{scale})\, h_{j-1}`, :math:`x = h_{\text{depth}}
      / \text{scale}`, averaged over ``repeats`` runs. It converges when every eigenvalue of :math:`H +
      \text{damping}\, I` lies in :math:`(0, 2\,\text{scale})`, with error about
      :math:`(1 - \mu_{\min}/\text{scale})^{\text{depth}}` for the smallest eigenvalue :math:`\mu_{\min}`.
      ``batch_hvp(v, rng)`` (optional) returns a mini-batch estimate of :math:`Hv` for each step, with ``rng``
      the ``numpy.random.RandomState`` made from ``random_state``; without it every step uses the exact product
      and the repeats are identical. (Koh and Liang's code writes :math:`(1 - \text{damping})h_{j-1}`, which is
      this recursion with damping :math:`\text{damping}\cdot\text{scale}`.) Raises ``ValueError`` when the
      recursion blows up (``scale`` too small).

    ``damping`` adds :math:`\text{damping}\cdot I` for every method; the residual is always measured with the
    exact operator ``hvp_or_matrix``.
    """
    method = _check_method(method)
    damping = _check_number(damping, "damping")
    v = _check_array(v, "v")
    if v.ndim not in (1, 2) or v.shape[0] == 0:
        raise ValueError(f"v must have shape (p,) or (p, k), got {v.shape}")
    p = v.shape[0]
    if callable(hvp_or_matrix):
        user_hvp = hvp_or_matrix

        def hvp(u):
            out = np.asarray(user_hvp(u), dtype=np.float64)
            if out.shape != (p,):
                raise ValueError(f"the hvp function must return shape ({p},), returned {out.shape}")
            return out
        H = None
    elif isinstance(hvp_or_matrix, (np.ndarray, list, tuple)) or hasattr(hvp_or_matrix, "__array__"):
        H = _check_array(hvp_or_matrix, "H", (p, p))

        def hvp(u):
            return H @ u
    else:
        raise TypeError(f"hvp_or_matrix must be a (p, p) array or a function v -> Hv, got "
                        f"{type(hvp_or_matrix).__name__}")
    if batch_hvp is not None and not callable(batch_hvp):
        raise TypeError("batch_hvp must be a function (v, rng) -> estimate of Hv, or None")

    def A(u):
        return hvp(u) + damping * u

    V = v.reshape(p, -1)
    n_iter = 0
    solver = method
    if method == "exact":
        if H is None:
            H = np.column_stack([hvp(e) for e in np.eye(p)])
            n_iter = p
        M = 0.5 * (H + H.T) + damping * np.eye(p)
        with _pinned(p * p):
            try:
                X = scipy.linalg.cho_solve(scipy.linalg.cho_factor(M, lower=True, check_finite=False), V,
                                           check_finite=False)
                solver = "cholesky"
            except np.linalg.LinAlgError:
                try:
                    X = scipy.linalg.solve(M, V, check_finite=False)
                except np.linalg.LinAlgError:
                    raise ValueError("H + damping * I is singular: add damping") from None
                solver = "lu"
    elif method == "cg":
        rtol = _check_number(rtol, "rtol", positive=True)
        maxiter = 10 * p if maxiter is None else _check_number(maxiter, "maxiter", positive=True, integer=True)
        op = scipy.sparse.linalg.LinearOperator((p, p), matvec=lambda u: A(np.ravel(u)), dtype=np.float64)
        X = np.empty_like(V)
        for j in range(V.shape[1]):
            count = [0]

            def callback(_, count=count):
                count[0] += 1
            X[:, j], info = scipy.sparse.linalg.cg(op, V[:, j], rtol=rtol, atol=0.0, maxiter=maxiter,
                                                   callback=callback)
            n_iter += count[0]
            if info != 0:
                warnings.warn(f"CG did not reach rtol={rtol:.0e} within {maxiter} iterations (is H + damping * I "
                              "positive definite?)", ConvergenceWarning, stacklevel=2)
    else:
        scale = _check_number(scale, "scale", positive=True)
        depth = _check_number(depth, "depth", positive=True, integer=True)
        repeats = _check_number(repeats, "repeats", positive=True, integer=True)
        rng = check_random_state(random_state)
        step = hvp if batch_hvp is None else (lambda u: np.asarray(batch_hvp(u, rng), dtype=np.float64))
        X = np.zeros_like(V)
        for j in range(V.shape[1]):
            vj = V[:, j]
            limit = 1e30 * max(np.linalg.norm(vj), 1e-300)
            for _ in range(repeats):
                h = vj.copy()
                for k in range(depth):
                    h = vj + h - (step(h) + damping * h) / scale
                    if k % 100 == 99 and not np.linalg.norm(h) < limit:
                        raise ValueError(f"LiSSA diverged: scale={scale} must exceed half the largest eigenvalue "
                                         "of H + damping * I (a safe choice exceeds the largest)")
                X[:, j] += h / scale
            X[:, j] /= repeats
            n_iter += depth * repeats
    norms = np.linalg.norm(V, axis=0)
    if H is not None:
        res = np.linalg.norm(H @ X + damping * X - V, axis=0)
    else:
        res = np.array([np.linalg.norm(A(X[:, j]) - V[:, j]) for j in range(V.shape[1])])
    res = np.divide(res, norms, out=np.zeros_like(res), where=norms > 0)
    if v.ndim == 1:
        return IHVPResult(X[:, 0], float(res[0]), method, solver, n_iter)
    return IHVPResult(X, res, method, solver, n_iter)


# --------------------------------------------------------------------------------------------------
# influence
# --------------------------------------------------------------------------------------------------
def _check_model(model):
    if not isinstance(model, _Model):
        raise TypeError(f"model must be a LogisticModel, SmoothHingeModel or TorchModel, got {type(model).__name__}")
    model._require_fitted()
    return model


def _test_data(model, X_train_data, X_test, y_test):
    """The test set as the model's data; a single point (one dimension fewer than X_train) becomes a set of one."""
    X_arr = X_test if hasattr(X_test, "ndim") else np.asarray(X_test)
    if X_arr.ndim == X_train_data[0].ndim - 1:
        X_arr = X_arr[None]
        y_test = np.asarray(y_test).reshape(1)
    data = model._prepare(X_arr, y_test, "X_test")
    if tuple(data[0].shape[1:]) != tuple(X_train_data[0].shape[1:]):
        raise ValueError(f"X_test has points of shape {tuple(data[0].shape[1:])}, but X_train has "
                         f"{tuple(X_train_data[0].shape[1:])}")
    return data


def _solve(model, data, theta, V, method, damping, batch_size, solver_options):
    """``inverse_hvp`` of the columns of ``V`` with the model's Hessian at ``theta`` on the training data."""
    method = _check_method(method)
    n = data[2]
    w = np.ones(n)
    if batch_size is not None:
        batch_size = _check_number(batch_size, "batch_size", positive=True, integer=True)
        if method != "lissa":
            raise ValueError("batch_size is for method='lissa' only")
        if batch_size > n:
            raise ValueError(f"batch_size={batch_size} exceeds the {n} training points")

        def batch_hvp(v, rng):
            idx = rng.choice(n, batch_size, replace=False)
            return model._hvp(_subset(data, idx), np.ones(batch_size), theta, v)
        solver_options = dict(solver_options, batch_hvp=batch_hvp)
    if method == "exact":
        operator = model._hessian(data, w, theta)
    else:
        def operator(v):
            return model._hvp(data, w, theta, v)
    return inverse_hvp(operator, V, method, damping, **solver_options)


def _subset(data, idx):
    """The model's data for the rows ``idx`` (already checked)."""
    X, y, _ = data
    return X[idx], y[idx], len(idx)


def _test_gradient(model, test_data, theta):
    return model._gradients(test_data, theta).mean(axis=0)


def influence_on_params(model, X_train, y_train, indices=None, *, method="exact", damping=0.0, batch_size=None,
                        return_info=False, **solver_options):
    r""":math:`I_{\text{up,params}}(z_i) = -H^{-1}\nabla_\theta l(z_i, \hat\theta)` for the training points
    ``indices`` (default all): shape ``(k, p)``.

    ``model`` is fitted on ``X_train, y_train`` (its ``theta_`` is :math:`\hat\theta`). Row ``i`` is the derivative
    of :math:`\hat\theta` when :math:`\omega\, l(z_i,\theta)` is added to :math:`L`; removing :math:`z_i`
    changes the parameters by about ``-row / n``. ``method``, ``damping`` and ``solver_options`` (``rtol``,
    ``maxiter``, ``scale``, ``depth``, ``repeats``, ``random_state``) go to :func:`inverse_hvp`, one solve with
    ``k`` right-hand sides (one factorisation for ``"exact"``, ``k`` iterative solves otherwise); ``batch_size``
    makes LiSSA use random mini-batches of that many training points. ``return_info=True`` returns
    ``(influence, IHVPResult)``.
    """
    model = _check_model(model)
    data = model._prepare(X_train, y_train, "X_train")
    idx = _check_indices(indices, data[2])
    theta = model.theta_
    with _pinned(data[2] * theta.size):
        G = model._gradients(_subset(data, idx), theta)
        info = _solve(model, data, theta, G.T, method, damping, batch_size, solver_options)
    out = -info.x.T
    return (out, info) if return_info else out


def influence_on_test_loss(model, X_train, y_train, X_test, y_test, *, method="exact", damping=0.0,
                           batch_size=None, return_info=False, **solver_options):
    r""":math:`I_{\text{up,loss}}(z_i, \mathcal D_{\text{test}}) = -g^\top H^{-1}\nabla_\theta l(z_i,\hat\theta)`
    for every training point: shape ``(n,)``.

    :math:`g = \nabla_\theta L_{\text{test}}(\hat\theta)` is the gradient of the mean loss over ``X_test, y_test``
    (a set, or a single point given with one dimension fewer than ``X_train``). One inverse-HVP
    :math:`s = H^{-1}g` (Koh and Liang's :math:`s_{\text{test}}`), then one matrix-vector product with the
    ``(n, p)`` per-example gradients.
    Upweighting :math:`z_i` by :math:`\omega` changes the test loss by :math:`\omega` times this value.
    Options as in :func:`influence_on_params`.
    """
    model = _check_model(model)
    data = model._prepare(X_train, y_train, "X_train")
    test = _test_data(model, data, X_test, y_test)
    theta = model.theta_
    with _pinned(data[2] * theta.size):
        info = _solve(model, data, theta, _test_gradient(model, test, theta), method, damping, batch_size,
                      solver_options)
        out = -(model._gradients(data, theta) @ info.x)
    return (out, info) if return_info else out


def removal_effect(model, X_train, y_train, X_test, y_test, *, method="exact", damping=0.0, batch_size=None,
                   return_info=False, **solver_options):
    r"""The predicted change of the mean test loss when each training point is removed (retrained without it):
    :math:`L_{\text{test}}(\hat\theta_{-z_i}) - L_{\text{test}}(\hat\theta)
    \approx -\frac1n I_{\text{up,loss}}(z_i, \mathcal D_{\text{test}})
    = \frac1n g^\top H^{-1}\nabla_\theta l(z_i, \hat\theta)`, shape ``(n,)``.

    **Positive: removing** :math:`z_i` **raises the test loss** (the point helps the test prediction); negative:
    the point hurts it. Compare with ``leave_one_out(...).test_loss_change``. Options as in
    :func:`influence_on_params`.
    """
    out = influence_on_test_loss(model, X_train, y_train, X_test, y_test, method=method, damping=damping,
                                 batch_size=batch_size, return_info=True, **solver_options)
    effect = -out[0] / len(out[0])
    return (effect, out[1]) if return_info else effect


def input_gradient_of_test_loss(model, X_train, y_train, X_test, y_test, indices=None, *, method="exact",
                                damping=0.0, batch_size=None, return_info=False, **solver_options):
    r"""The gradient of the mean test loss of the retrained model with respect to each training input :math:`x_i`:
    :math:`-\frac1n g^\top H^{-1}\nabla_x\nabla_\theta l(z_i, \hat\theta)`, shape ``(k, d)`` (the
    shape of ``X_train[indices]``).

    This is the perturbation influence, exact to first order in :math:`\delta` (the implicit function theorem):
    moving :math:`x_i` to :math:`x_i + \delta` changes the retrained test loss by about ``row @ delta``. The
    influence attack takes gradient steps along it. One inverse-HVP, then ``model.mixed_vjp``. Options as in
    :func:`influence_on_params`.
    """
    model = _check_model(model)
    data = model._prepare(X_train, y_train, "X_train")
    idx = _check_indices(indices, data[2])
    test = _test_data(model, data, X_test, y_test)
    theta = model.theta_
    with _pinned(data[2] * theta.size):
        info = _solve(model, data, theta, _test_gradient(model, test, theta), method, damping, batch_size,
                      solver_options)
        out = -model._mixed_vjp(_subset(data, idx), theta, info.x) / data[2]
    return (out, info) if return_info else out


# --------------------------------------------------------------------------------------------------
# ground truth
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaveOneOut:
    r"""What :func:`leave_one_out` returns: for each of the ``indices`` (shape ``(k,)``), ``param_change``
    :math:`\hat\theta_{-z_i} - \hat\theta` (shape ``(k, p)``), ``test_loss_change`` :math:`L_{\text{test}}(
    \hat\theta_{-z_i}) - L_{\text{test}}(\hat\theta)` (shape ``(k,)``; NaN without a test set) and ``n_iter``
    (L-BFGS iterations of each retrain)."""

    indices: np.ndarray
    param_change: np.ndarray
    test_loss_change: np.ndarray
    n_iter: np.ndarray


def leave_one_out(model, X_train, y_train, indices, X_test=None, y_test=None, *, gtol=1e-10, max_iter=10_000):
    r"""Actually retrain without each training point of ``indices``: the ground truth for :func:`removal_effect`.

    Each retrain minimises the same objective as ``model`` with the removed point's weight set to 0, keeping the
    :math:`1/n` and :math:`\lambda` (see the module docstring for why), by L-BFGS warm-started from
    :math:`\hat\theta` = ``model.theta_`` to gradient max-norm ``gtol``, with one BLAS thread on small problems.
    ``model`` must be fitted to the same tolerance on ``X_train, y_train``, or the differences include its own
    optimisation error. ``model`` is left unchanged. Returns a :class:`LeaveOneOut`.
    """
    model = _check_model(model)
    gtol = _check_number(gtol, "gtol", positive=True)
    max_iter = _check_number(max_iter, "max_iter", positive=True, integer=True)
    data = model._prepare(X_train, y_train, "X_train")
    n = data[2]
    idx = _check_indices(indices, n)
    has_test = X_test is not None or y_test is not None
    if has_test:
        if X_test is None or y_test is None:
            raise ValueError("give both X_test and y_test, or neither")
        test = _test_data(model, data, X_test, y_test)
    theta = model.theta_
    base = model._losses(test, theta).mean() if has_test else np.nan
    params = np.empty((len(idx), theta.size))
    change = np.full(len(idx), np.nan)
    iters = np.zeros(len(idx), dtype=np.int64)
    with _pinned(n * theta.size):
        for k, i in enumerate(idx):
            w = np.ones(n)
            w[i] = 0.0
            res = model._minimize(data, w, theta.copy(), gtol, max_iter)
            params[k] = res.x - theta
            iters[k] = res.nit
            if has_test:
                change[k] = model._losses(test, res.x).mean() - base
    return LeaveOneOut(idx, params, change, iters)
