r"""Feature collisions ("poison frogs", Shafahi et al. 2018): targeted clean-label poisons.

Defined in chapter "Feature collisions: poison frogs" (``chapters/08_feature_collisions.md``), the first chapter
of Part III.

The attacker wants one target test input :math:`t` (true class :math:`y_t`) classified as a base class
:math:`y_b`, without touching any label. A poison :math:`\tilde x` (the paper's :math:`p`) starts from a clean image
:math:`b` of the base class and solves

.. math::

    \tilde x = \arg\min_x \; J(x), \qquad J(x) = \lVert h(x) - h(t) \rVert_2^2 + \beta \lVert x - b \rVert_2^2 ,
    \qquad \beta = \beta_0 \left(\frac{2048}{\dim b}\right)^2, \quad \beta_0 = 0.25,

where :math:`h` is the frozen feature extractor of the victim (the paper's :math:`f`: the input of its last, linear
layer; 2048 is the dimension of InceptionV3's feature layer, the constant of the paper's formula). Near :math:`b` in
input space the poison looks like the base and keeps its clean label :math:`y_b`; near :math:`t` in feature space it
drags the decision boundary of a victim that retrains its last layer over the target. :class:`FeatureCollision`
minimises :math:`J` by **forward-backward splitting** (the paper's Algorithm 1), starting at :math:`x = b` and
replacing the current poison :math:`x` by :math:`x^+` at every iteration, with step size :math:`\tau` (the paper's
:math:`\lambda`):

.. math::

    \text{forward:}\quad \hat x = x - \tau \nabla_x \lVert h(x) - h(t) \rVert_2^2, \qquad
    \text{backward:}\quad x^+ = \operatorname{prox}_{\tau \beta \lVert \cdot - b \rVert^2}(\hat x)
    = \frac{\hat x + 2\tau\beta b}{1 + 2\tau\beta},

the backward step being the exact minimiser of :math:`\beta\lVert x - b\rVert^2 + \lVert x - \hat x\rVert^2 /
(2\tau)`. (The paper prints it as :math:`(\hat x + \tau\beta b)/(1 + \tau\beta)`, which is the same map
with :math:`\beta/2` in place of :math:`\beta`: the paper's iteration minimises the objective with half the
weight on the input term. We keep the objective as written and use its exact proximal map.) After every step
the poison is clipped to the pixel box :math:`[0, 1]^d`, as the paper's code clips to the valid image range, and,
with ``max_distortion``, projected onto an L∞ or L2 ball around the base. As the paper's code halves its
learning rate when the objective rises, a step that raises a poison's objective is undone and that poison's
:math:`\tau` halved (after an accepted step it grows by a quarter), so the recorded objective never rises.

Also here: :func:`watermark` (the paper's blending :math:`(1 - \gamma) b + \gamma t` of the target into the base),
:func:`collision_beta`, and the victims of the chapter: :class:`LinearHeadVictim` (transfer learning: logistic
regression on the frozen features of :func:`frozen_feature_extractor`), :func:`one_shot_attack` (one poison per
target from a random base, the head retrained), :func:`transfer_attack` and :func:`end_to_end_attack` (all layers
fine-tuned with :func:`poisoning.training.train`), all reporting an :class:`AttackResult`.
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from poisoning._validation import check_random_state
from poisoning.device import get_device

__all__ = ["collision_beta", "watermark", "feature_collision_term", "proximal_step", "FeatureCollision",
           "frozen_feature_extractor", "extract_features", "LinearHeadVictim", "AttackResult", "craft_poisons",
           "transfer_attack", "one_shot_attack", "end_to_end_attack"]

# growth of a poison's step size after an accepted step, and its cut after a rejected one
_STEP_GROWTH, _STEP_CUT = 1.25, 0.5


# --------------------------------------------------------------------------------------------------- checks


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _positive_real(value, name, allow_zero=False):
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and np.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, "
                         f"got {value!r}")
    return float(value)


def _rows(X, name, d=None):
    """``X`` as a finite 2-D float array (a single row ``(d,)`` becomes ``(1, d)``)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, d) or (d,) with n, d > 0, got {X.shape}")
    if d is not None and X.shape[1] != d:
        raise ValueError(f"{name} has {X.shape[1]} features, expected {d}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _check_module(feature_extractor):
    if not isinstance(feature_extractor, nn.Module):
        raise TypeError(f"feature_extractor must be a torch.nn.Module, got {type(feature_extractor).__name__}")


def _module_dtype(module):
    for p in module.parameters():
        return p.dtype
    return torch.float32


def _resolve_device(device):
    return get_device(device) if device is None or isinstance(device, str) else torch.device(device)


# --------------------------------------------------------------------------------------------------- maths


def collision_beta(n_input_dims: int, beta0: float = 0.25, n_features: int = 2048) -> float:
    r"""The paper's weight of the input term, :math:`\beta = \beta_0 \, (\text{n\_features} / \dim b)^2`.

    ``n_input_dims`` is the dimension of the base image (784 for MNIST, 299 * 299 * 3 for the paper's
    InceptionV3 inputs); ``n_features = 2048`` is the constant of the paper's formula (the dimension of
    InceptionV3's feature layer) and ``beta0 = 0.25`` its default.
    """
    n_input_dims = _positive_int(n_input_dims, "n_input_dims")
    n_features = _positive_int(n_features, "n_features")
    beta0 = _positive_real(beta0, "beta0")
    return beta0 * (n_features / n_input_dims) ** 2


def watermark(X_base, x_target, opacity: float) -> np.ndarray:
    r"""Blend the target into the base images: :math:`(1 - \gamma)\, b + \gamma\, t` with opacity :math:`\gamma`.

    ``X_base`` has shape ``(n, d)`` (or ``(d,)``); ``x_target`` is one image ``(d,)`` blended into every base, or
    ``(n, d)``, one per base. ``opacity`` must lie in ``[0, 1]`` (0 leaves the bases unchanged, 1 gives the
    target). The result has the shape of ``X_base``.
    """
    if isinstance(opacity, bool) or not isinstance(opacity, numbers.Real) or not 0 <= opacity <= 1:
        raise ValueError(f"opacity must be a number in [0, 1], got {opacity!r}")
    X_base = np.asarray(X_base, dtype=np.float64)
    x_target = np.asarray(x_target, dtype=np.float64)
    if X_base.ndim not in (1, 2):
        raise ValueError(f"X_base must have shape (n, d) or (d,), got {X_base.shape}")
    if x_target.shape != X_base.shape[-1:] and x_target.shape != X_base.shape:
        raise ValueError(f"x_target must have shape {X_base.shape[-1:]} or {X_base.shape}, got {x_target.shape}")
    return (1.0 - opacity) * X_base + opacity * x_target


def _feature_term(feature_extractor, X, F_target):
    """``||h(x_i) - h(t_i)||^2`` per row and its gradient with respect to every ``x_i`` (torch tensors)."""
    X = X.detach().requires_grad_(True)
    with torch.enable_grad():
        values = ((feature_extractor(X) - F_target) ** 2).sum(dim=1)
        # the rows do not interact (no batch statistics), so the gradient of the sum is every row's own gradient
        (grad,) = torch.autograd.grad(values.sum(), X)
    return values.detach(), grad


def feature_collision_term(feature_extractor: nn.Module, X, X_target, device=None):
    r"""The feature term :math:`\lVert h(x_i) - h(t_i) \rVert_2^2` of every poison and its gradient in :math:`x_i`.

    ``X`` has shape ``(n, d)``; ``X_target`` is one target ``(d,)`` or one per row ``(n, d)``. The extractor
    :math:`h` runs in eval mode in the dtype of its parameters (``float64`` for a ``.double()`` copy) on
    ``device``. Returns ``(values, gradient)`` as numpy arrays of shapes ``(n,)`` and ``(n, d)``: the gradient
    that the forward step of :class:`FeatureCollision` follows.
    """
    _check_module(feature_extractor)
    X = _rows(X, "X")
    X_target = _rows(X_target, "X_target", X.shape[1])
    if len(X_target) not in (1, len(X)):
        raise ValueError(f"X_target must hold one target or one per row of X ({len(X)}), got {len(X_target)}")
    device = _resolve_device(device)
    dtype = _module_dtype(feature_extractor)
    h = feature_extractor.to(device).eval()
    with torch.no_grad():
        F_target = h(torch.as_tensor(X_target, dtype=dtype, device=device))
    values, grad = _feature_term(h, torch.as_tensor(X, dtype=dtype, device=device), F_target)
    return values.cpu().numpy().astype(np.float64), grad.cpu().numpy().astype(np.float64)


def proximal_step(X_hat, X_base, beta: float, step_size):
    r"""The backward step: :math:`\arg\min_x \beta \lVert x - b \rVert^2 + \lVert x - \hat x \rVert^2 / (2\tau)
    = (\hat x + 2 \tau \beta b) / (1 + 2 \tau \beta)`.

    ``X_hat`` and ``X_base`` have the same shape ``(n, d)`` (or ``(d,)``); ``step_size`` :math:`\tau` is a
    positive number or one per row, shape ``(n,)``. Works on numpy arrays and on torch tensors.
    """
    beta = _positive_real(beta, "beta", allow_zero=True)
    if isinstance(X_hat, torch.Tensor):
        lam = step_size if isinstance(step_size, torch.Tensor) else torch.as_tensor(step_size, dtype=X_hat.dtype)
        if lam.ndim == 1 and X_hat.ndim == 2:
            lam = lam[:, None]
        return (X_hat + 2 * lam * beta * X_base) / (1 + 2 * lam * beta)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    X_base = np.asarray(X_base, dtype=np.float64)
    if X_hat.shape != X_base.shape:
        raise ValueError(f"X_hat and X_base must have the same shape, got {X_hat.shape} and {X_base.shape}")
    lam = np.asarray(step_size, dtype=np.float64)
    if np.any(~np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if lam.ndim == 1 and X_hat.ndim == 2:
        if len(lam) != len(X_hat):
            raise ValueError(f"step_size must be a number or one per row ({len(X_hat)}), got {len(lam)}")
        lam = lam[:, None]
    return (X_hat + 2 * lam * beta * X_base) / (1 + 2 * lam * beta)


# --------------------------------------------------------------------------------------------------- the attack


class FeatureCollision(BaseEstimator):
    r"""Craft feature-collision poisons by forward-backward splitting, many (target, base) pairs at once.

    Minimises :math:`\lVert h(x) - h(t) \rVert_2^2 + \beta \lVert x - b \rVert_2^2` for every pair independently
    (see the module docstring): a gradient step on the feature term through the frozen extractor, the exact
    proximal step of the input term, then the clip to ``box`` and, with ``max_distortion``, the projection onto
    the ball around the base.

    Parameters
    ----------
    feature_extractor : torch.nn.Module
        The frozen :math:`h`, e.g. :func:`frozen_feature_extractor` of a :func:`~poisoning.training.make_cnn`
        network. It runs in eval mode, in the dtype of its parameters, on ``device`` (it is moved there).
    beta : float or None, default None
        The weight :math:`\beta`; ``None`` takes :func:`collision_beta` of the input dimension with ``beta0``.
    beta0 : float, default 0.25
    n_iter : int, default 200
        Forward-backward iterations (the paper runs up to 1,000 on InceptionV3).
    step_size : float or "auto", default "auto"
        The initial step size :math:`\tau`. ``"auto"`` picks, per poison, the step that moves the pixel with the
        largest gradient by 0.1 in the first forward step.
    adaptive_step : bool, default True
        Undo a step that raises a poison's objective and halve its :math:`\tau`; grow it by a quarter after
        an accepted step. ``False`` runs the plain iteration with a fixed :math:`\tau`.
    max_distortion : float or None, default None
        A budget around the base: after every step the poison is projected onto
        :math:`\{x : \lVert x - b \rVert \le \text{max\_distortion}\}` in the norm ``norm`` and then clipped to
        ``box`` (clipping never leaves the ball, because the base lies in the box).
    norm : {"linf", "l2"}, default "linf"
    box : (float, float), default (0.0, 1.0)
        The valid pixel range; bases must lie in it.
    device : torch.device, str or None
        ``None`` for :func:`poisoning.device.get_device`.
    progress : bool, default False
        A ``tqdm`` bar over the iterations.

    Attributes
    ----------
    X_poison_ : ndarray, shape (n, d)
        The poisons, ``X_poison_[i]`` for the pair ``(X_target[i], X_base[i])``.
    objective_ : ndarray, shape (n_iter + 1, n)
        :math:`J` of every poison after each iteration (row 0: at the base).
    feature_term_, base_term_ : ndarray, shape (n_iter + 1, n)
        The two terms, :math:`\lVert h(x) - h(t)\rVert^2` and :math:`\lVert x - b\rVert^2` (unweighted), so that
        ``objective_ = feature_term_ + beta_ * base_term_``.
    beta_ : float
    step_size_ : ndarray, shape (n,)
        The final :math:`\tau` of every poison.
    n_accepted_ : ndarray, shape (n,)
        How many steps of every poison were accepted.
    """

    def __init__(self, feature_extractor, beta=None, beta0=0.25, n_iter=200, step_size="auto", adaptive_step=True,
                 max_distortion=None, norm="linf", box=(0.0, 1.0), device=None, progress=False):
        self.feature_extractor = feature_extractor
        self.beta = beta
        self.beta0 = beta0
        self.n_iter = n_iter
        self.step_size = step_size
        self.adaptive_step = adaptive_step
        self.max_distortion = max_distortion
        self.norm = norm
        self.box = box
        self.device = device
        self.progress = progress

    def _check_params(self, d):
        _check_module(self.feature_extractor)
        n_iter = _non_negative_int(self.n_iter, "n_iter")
        beta = collision_beta(d, self.beta0) if self.beta is None else _positive_real(self.beta, "beta",
                                                                                      allow_zero=True)
        if not (isinstance(self.step_size, str) and self.step_size == "auto"):
            _positive_real(self.step_size, "step_size")
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {self.norm!r}")
        if self.max_distortion is not None:
            _positive_real(self.max_distortion, "max_distortion")
        try:
            low, high = self.box
            valid = isinstance(low, numbers.Real) and isinstance(high, numbers.Real) and low < high
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"box must be (low, high) with low < high, got {self.box!r}")
        return n_iter, beta

    def _project(self, X, B, lo, hi):
        """Clip to the box and, with a budget, into the ball around the base (torch tensors)."""
        if self.max_distortion is not None and self.norm == "l2":
            diff = X - B
            norms = diff.norm(dim=1, keepdim=True)
            X = B + diff * torch.clamp(self.max_distortion / torch.clamp(norms, min=1e-30), max=1.0)
        return torch.minimum(torch.maximum(X, lo), hi)

    def fit(self, X_target, X_base):
        """Craft one poison per row of ``X_base`` (shape ``(n, d)``) against the matching row of ``X_target``
        (``(n, d)``, or one target ``(d,)`` for every base). Returns ``self``."""
        from tqdm.auto import tqdm

        X_base = _rows(X_base, "X_base")
        n, d = X_base.shape
        X_target = _rows(X_target, "X_target", d)
        if len(X_target) not in (1, n):
            raise ValueError(f"X_target must hold one target or one per base ({n}), got {len(X_target)}")
        n_iter, beta = self._check_params(d)
        low, high = float(self.box[0]), float(self.box[1])
        if X_base.min() < low or X_base.max() > high:
            raise ValueError(f"the bases must lie in the box {self.box}, got values in "
                             f"[{X_base.min():.3g}, {X_base.max():.3g}]")

        device = _resolve_device(self.device)
        dtype = _module_dtype(self.feature_extractor)
        h = self.feature_extractor.to(device).eval()
        B = torch.as_tensor(X_base, dtype=dtype, device=device)
        with torch.no_grad():
            F_target = h(torch.as_tensor(X_target, dtype=dtype, device=device)).expand(n, -1)
        lo = torch.full_like(B, low)
        hi = torch.full_like(B, high)
        if self.max_distortion is not None and self.norm == "linf":  # box and L-inf ball: one box
            lo = torch.clamp(B - self.max_distortion, min=low)
            hi = torch.clamp(B + self.max_distortion, max=high)

        X = B.clone()
        feature, grad = _feature_term(h, X, F_target)
        base = torch.zeros(n, dtype=dtype, device=device)
        if self.step_size == "auto":
            lam = 0.1 / torch.clamp(grad.abs().amax(dim=1), min=1e-12)
        else:
            lam = torch.full((n,), float(self.step_size), dtype=dtype, device=device)
        accepted = torch.zeros(n, dtype=torch.long, device=device)
        features, bases = [feature], [base]
        for _ in tqdm(range(n_iter), desc="feature collision", unit="it", disable=not self.progress):
            X_hat = X - lam[:, None] * grad  # forward: a gradient step on the feature term
            X_new = proximal_step(X_hat, B, beta, lam)  # backward: the proximal step of the input term
            X_new = self._project(X_new, B, lo, hi)  # the pixel box (and the budget)
            feature_new, grad_new = _feature_term(h, X_new, F_target)
            base_new = ((X_new - B) ** 2).sum(dim=1)
            if self.adaptive_step:  # undo a step that raises the objective (compared in float64, as recorded)
                ok = feature_new.double() + beta * base_new.double() <= feature.double() + beta * base.double()
                lam = torch.where(ok, lam * _STEP_GROWTH, lam * _STEP_CUT)
            else:
                ok = torch.ones(n, dtype=torch.bool, device=device)
            X = torch.where(ok[:, None], X_new, X)
            grad = torch.where(ok[:, None], grad_new, grad)
            feature = torch.where(ok, feature_new, feature)
            base = torch.where(ok, base_new, base)
            accepted += ok
            features.append(feature)
            bases.append(base)

        self.beta_ = beta
        self.X_poison_ = X.detach().cpu().numpy().astype(np.float64)
        self.feature_term_ = torch.stack(features).cpu().numpy().astype(np.float64)
        self.base_term_ = torch.stack(bases).cpu().numpy().astype(np.float64)
        self.objective_ = self.feature_term_ + beta * self.base_term_
        self.step_size_ = lam.cpu().numpy().astype(np.float64)
        self.n_accepted_ = accepted.cpu().numpy()
        return self


# --------------------------------------------------------------------------------------------------- victims


def frozen_feature_extractor(model: nn.Sequential, layer: str = "relu_features") -> nn.Sequential:
    """A frozen copy of ``model`` up to and including the layer called ``layer``: the feature extractor :math:`h`.

    For a :func:`~poisoning.training.make_cnn` network the default gives the input of its linear head,
    ``model[:cnn_layer_index(model, "relu_features") + 1]``. The copy is independent of ``model`` (training one
    never changes the other), in eval mode, with ``requires_grad=False`` on every parameter.
    """
    from poisoning.training import cnn_layer_index

    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a torch.nn.Sequential (e.g. from make_cnn), got {type(model).__name__}")
    h = copy.deepcopy(model[:cnn_layer_index(model, layer) + 1]).eval()
    for p in h.parameters():
        p.requires_grad_(False)
    return h


def extract_features(feature_extractor: nn.Module, X, batch_size: int = 2048, device=None) -> np.ndarray:
    """:math:`h(x)` for every row of ``X`` (shape ``(n, d)``), as a ``float64`` numpy array ``(n, k)``."""
    _check_module(feature_extractor)
    X = _rows(X, "X")
    batch_size = _positive_int(batch_size, "batch_size")
    device = _resolve_device(device)
    dtype = _module_dtype(feature_extractor)
    h = feature_extractor.to(device).eval()
    with torch.no_grad():
        out = [h(torch.as_tensor(X[i:i + batch_size], dtype=dtype, device=device)).cpu()
               for i in range(0, len(X), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


def _fit_head(F, y, C, max_iter):
    """Logistic regression on the features, solved to a tight tolerance by Newton's method: with weak
    regularisation the objective is flat, and a loose solver stops at heads whose predictions near the poison
    differ from the minimiser's."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, solver="newton-cholesky", tol=1e-8, max_iter=max_iter).fit(F, y)


class LinearHeadVictim(ClassifierMixin, BaseEstimator):
    """The transfer-learning victim: logistic regression on the frozen features :math:`h(x)`.

    Only the last, linear layer is (re)trained, as the paper's victim retrains the last layer of InceptionV3.
    The regularisation is weak (``C`` large), so that the head fits every training point, a poison included; the
    problem is solved to a tolerance of 1e-8 by Newton's method (scikit-learn's ``newton-cholesky`` solver).

    Parameters
    ----------
    feature_extractor : torch.nn.Module
        The frozen :math:`h` (:func:`frozen_feature_extractor`).
    C : float, default 1000.0
        Inverse L2 regularisation strength of scikit-learn's ``LogisticRegression``.
    max_iter : int, default 100
        Newton iterations (about 20 suffice here).
    device : torch.device, str or None

    Attributes
    ----------
    head_ : sklearn.linear_model.LogisticRegression
        The head, fitted on :math:`h(X)`.
    classes_ : ndarray
    """

    def __init__(self, feature_extractor, C=1000.0, max_iter=100, device=None):
        self.feature_extractor = feature_extractor
        self.C = C
        self.max_iter = max_iter
        self.device = device

    def fit(self, X, y):
        """Fit the head on the features of ``X`` (shape ``(n, d)``) and the labels ``y``. Returns ``self``."""
        _check_module(self.feature_extractor)
        _positive_real(self.C, "C")
        X = _rows(X, "X")
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must have shape ({len(X)},), got {y.shape}")
        if len(np.unique(y)) < 2:
            raise ValueError("y must hold at least two classes")
        self.head_ = _fit_head(extract_features(self.feature_extractor, X, device=self.device), y, self.C,
                               _positive_int(self.max_iter, "max_iter"))
        self.classes_ = self.head_.classes_
        return self

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``."""
        return self.head_.predict_proba(extract_features(self.feature_extractor, X, device=self.device))

    def predict(self, X):
        """The predicted classes."""
        return self.head_.predict(extract_features(self.feature_extractor, X, device=self.device))

    def to_torch(self) -> nn.Sequential:
        """The whole victim as one torch network, ``Sequential(features=<copy of h>, head=Linear)``, with the
        head's weights copied from ``head_`` and every parameter trainable: the starting point of end-to-end
        fine-tuning. Its logits give the same probabilities as :meth:`predict_proba` (output ``k`` is
        ``classes_[k]``)."""
        from collections import OrderedDict

        coef, intercept = self.head_.coef_, self.head_.intercept_
        if len(self.classes_) == 2:  # scikit-learn's binary head: logit of class 1 minus logit of class 0
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        h = copy.deepcopy(self.feature_extractor)
        dtype = _module_dtype(h)
        head = nn.Linear(coef.shape[1], coef.shape[0]).to(dtype)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(coef, dtype=dtype))
            head.bias.copy_(torch.as_tensor(intercept, dtype=dtype))
        for p in h.parameters():
            p.requires_grad_(True)
        return nn.Sequential(OrderedDict([("features", h), ("head", head)]))


@dataclass
class AttackResult:
    """What a feature-collision attack did to its targets, one entry per target.

    ``success[i]``: the victim trained with the poisons of target ``i`` classifies that target as the base class.
    ``clean_correct[i]``: the clean victim classifies target ``i`` correctly (an attack on a target that is already
    misclassified proves nothing). ``p_base_clean[i]`` and ``p_base_poisoned[i]``: the target's probability of the
    base class under the clean and the poisoned victim. ``X_poison`` has shape ``(n_targets, n_poisons, d)``;
    ``feature_distance`` holds :math:`\\lVert h(\\tilde x) - h(t) \\rVert_2` of every poison under the frozen
    extractor, shape ``(n_targets, n_poisons)``. ``accuracy_clean`` and ``accuracy_poisoned[i]`` are the accuracies
    of the clean victim and of target ``i``'s poisoned victim on an evaluation set, when one was given (the other
    points that the attack must not hurt). ``base_index`` holds the rows of the base pool the poisons started from
    and ``collision`` the fitted :class:`FeatureCollision`, when the attack crafted the poisons itself.
    """

    success: np.ndarray
    clean_correct: np.ndarray
    p_base_clean: np.ndarray
    p_base_poisoned: np.ndarray
    X_poison: np.ndarray
    feature_distance: np.ndarray
    accuracy_clean: float | None = None
    accuracy_poisoned: np.ndarray | None = None
    base_index: np.ndarray | None = None
    collision: FeatureCollision | None = None

    @property
    def n_trials(self) -> int:
        """The number of targets that the clean victim classified correctly: the trials of the attack."""
        return int(self.clean_correct.sum())

    @property
    def n_successes(self) -> int:
        """The number of successes among those trials."""
        return int(self.success[self.clean_correct].sum())

    @property
    def success_rate(self) -> float:
        """The fraction of successes among the targets that the clean victim classified correctly (NaN if none)."""
        return self.n_successes / self.n_trials if self.n_trials else float("nan")


def craft_poisons(feature_extractor: nn.Module, X_target, X_base_pool, n_poisons: int = 1, opacity: float = 0.0,
                  n_candidates: int = 1, random_state=None, **collision_params):
    r"""Craft ``n_poisons`` poisons for every target, each from a different random base, in one batch.

    For every row of ``X_target`` (shape ``(m, d)``), ``n_poisons * n_candidates`` distinct rows of
    ``X_base_pool`` (images of the base class) are drawn with ``random_state``; with ``opacity > 0`` each base is
    first :func:`watermark`-ed with the target. All pairs are crafted by one :class:`FeatureCollision`
    (``collision_params`` are its parameters). With ``n_candidates > 1`` every poison keeps, of its
    ``n_candidates`` bases, the one whose poison ends closest to the target in feature space: the attacker needs
    only :math:`h` for this, as the paper's code retries other bases while a collision misses its threshold.
    ``n_candidates = 1`` takes one random base per poison.

    Returns ``(X_poison, base_index, attack)``: the poisons ``(m, n_poisons, d)``, the rows of the pool they
    started from ``(m, n_poisons)`` and the fitted :class:`FeatureCollision` (over all ``m * n_poisons *
    n_candidates`` pairs, in the order target, poison, candidate).
    """
    X_base_pool = _rows(X_base_pool, "X_base_pool")
    X_target = _rows(X_target, "X_target", X_base_pool.shape[1])
    n_poisons = _positive_int(n_poisons, "n_poisons")
    n_candidates = _positive_int(n_candidates, "n_candidates")
    per_target = n_poisons * n_candidates
    if per_target > len(X_base_pool):
        raise ValueError(f"n_poisons * n_candidates = {per_target} distinct bases are needed per target, the pool "
                         f"has {len(X_base_pool)}")
    rng = check_random_state(random_state)
    m, d = X_target.shape
    drawn = np.stack([rng.choice(len(X_base_pool), size=per_target, replace=False) for _ in range(m)])
    targets = np.repeat(X_target, per_target, axis=0)
    bases = watermark(X_base_pool[drawn.ravel()], targets, opacity)
    attack = FeatureCollision(feature_extractor, **collision_params).fit(targets, bases)
    best = attack.feature_term_[-1].reshape(m, n_poisons, n_candidates).argmin(axis=2)  # (m, n_poisons)
    X_all = attack.X_poison_.reshape(m, n_poisons, n_candidates, d)
    rows, cols = np.meshgrid(np.arange(m), np.arange(n_poisons), indexing="ij")
    base_index = drawn.reshape(m, n_poisons, n_candidates)[rows, cols, best]
    return X_all[rows, cols, best], base_index, attack


def _prob_of(proba, classes, label):
    return proba[:, list(classes).index(label)]


def _check_victim_data(X_train, y_train, X_target, y_target, X_poison, base_class, X_eval, y_eval):
    X_train = _rows(X_train, "X_train")
    d = X_train.shape[1]
    y_train = np.asarray(y_train)
    if y_train.shape != (len(X_train),):
        raise ValueError(f"y_train must have shape ({len(X_train)},), got {y_train.shape}")
    labels = sorted(set(y_train.tolist()))
    if base_class not in labels:
        raise ValueError(f"base_class {base_class!r} does not occur in y_train (labels {labels})")
    X_target = _rows(X_target, "X_target", d)
    y_target = np.asarray(y_target)
    if y_target.ndim == 0:
        y_target = np.full(len(X_target), y_target.item())
    if y_target.shape != (len(X_target),):
        raise ValueError(f"y_target must be one label or one per target ({len(X_target)}), got {y_target.shape}")
    if not set(y_target.tolist()) <= set(labels) or base_class in set(y_target.tolist()):
        raise ValueError(f"y_target must hold classes of y_train ({labels}) other than base_class {base_class!r}, "
                         f"got {sorted(set(y_target.tolist()))}")
    X_poison = np.asarray(X_poison, dtype=np.float64)
    if X_poison.ndim == 2 and len(X_target) == 1:
        X_poison = X_poison[None]
    if X_poison.ndim != 3 or X_poison.shape[0] != len(X_target) or X_poison.shape[2] != d or X_poison.shape[1] < 1:
        raise ValueError(f"X_poison must have shape ({len(X_target)}, n_poisons, {d}), got {X_poison.shape}")
    if (X_eval is None) != (y_eval is None):
        raise ValueError("give both X_eval and y_eval, or neither")
    if X_eval is not None:
        X_eval = _rows(X_eval, "X_eval", d)
        y_eval = np.asarray(y_eval)
        if y_eval.shape != (len(X_eval),):
            raise ValueError(f"y_eval must have shape ({len(X_eval)},), got {y_eval.shape}")
    return X_train, y_train, X_target, y_target, X_poison, X_eval, y_eval


def transfer_attack(feature_extractor: nn.Module, X_train, y_train, X_target, y_target, X_poison, base_class,
                    C: float = 1000.0, max_iter: int = 100, X_eval=None, y_eval=None, device=None,
                    progress: bool = False) -> AttackResult:
    """Poison a transfer-learning victim: one logistic-regression head per target, retrained on the frozen features.

    The clean victim is the head of :class:`LinearHeadVictim` fitted on ``(X_train, y_train)``; for target ``i``
    (true class ``y_target[i]``; one label or one per target) the poisoned victim is the same head fitted on
    ``X_train`` plus the poisons ``X_poison[i]`` (shape ``(m, n_poisons, d)``), all labelled ``base_class``: clean
    labels, since the poisons look like the base. With ``(X_eval, y_eval)`` the result also holds the accuracy of
    every victim on that set. Returns an :class:`AttackResult`.
    """
    from tqdm.auto import tqdm

    _check_module(feature_extractor)
    X_train, y_train, X_target, y_target, X_poison, X_eval, y_eval = _check_victim_data(
        X_train, y_train, X_target, y_target, X_poison, base_class, X_eval, y_eval)
    C = _positive_real(C, "C")
    max_iter = _positive_int(max_iter, "max_iter")
    m, k, d = X_poison.shape
    F_train = extract_features(feature_extractor, X_train, device=device)
    F_target = extract_features(feature_extractor, X_target, device=device)
    F_poison = extract_features(feature_extractor, X_poison.reshape(m * k, d), device=device).reshape(m, k, -1)
    F_eval = None if X_eval is None else extract_features(feature_extractor, X_eval, device=device)
    clean = _fit_head(F_train, y_train, C, max_iter)
    p_clean = _prob_of(clean.predict_proba(F_target), clean.classes_, base_class)
    y_poisoned = np.concatenate([y_train, np.full(k, base_class, dtype=y_train.dtype)])
    p_poisoned, predicted, accuracy = np.empty(m), np.empty(m, dtype=y_train.dtype), np.full(m, np.nan)
    for i in tqdm(range(m), desc="retrain heads", unit="target", disable=not progress):
        head = _fit_head(np.vstack([F_train, F_poison[i]]), y_poisoned, C, max_iter)
        p_poisoned[i] = _prob_of(head.predict_proba(F_target[i:i + 1]), head.classes_, base_class)[0]
        predicted[i] = head.predict(F_target[i:i + 1])[0]
        if F_eval is not None:
            accuracy[i] = np.mean(head.predict(F_eval) == y_eval)
    return AttackResult(success=predicted == base_class, clean_correct=clean.predict(F_target) == y_target,
                        p_base_clean=p_clean, p_base_poisoned=p_poisoned, X_poison=X_poison,
                        feature_distance=np.linalg.norm(F_poison - F_target[:, None, :], axis=2),
                        accuracy_clean=None if F_eval is None else float(np.mean(clean.predict(F_eval) == y_eval)),
                        accuracy_poisoned=None if F_eval is None else accuracy)


def one_shot_attack(feature_extractor: nn.Module, X_train, y_train, X_target, y_target, X_base_pool, base_class,
                    C: float = 1000.0, n_candidates: int = 1, random_state=None, X_eval=None, y_eval=None,
                    **collision_params) -> AttackResult:
    """The paper's one-shot kill on a transfer-learning victim, one trial per target.

    For every target (rows of ``X_target``, true classes ``y_target``) one poison is crafted from a random base of
    ``X_base_pool`` (:func:`craft_poisons`: all targets in one batch, the best of ``n_candidates`` random bases;
    ``collision_params`` go to :class:`FeatureCollision`), added to ``(X_train, y_train)`` with the label
    ``base_class``, and the linear head retrained (:func:`transfer_attack`, with the evaluation set ``(X_eval,
    y_eval)`` if given). Returns an :class:`AttackResult` with ``base_index`` and ``collision`` set.
    """
    X_poison, base_index, collision = craft_poisons(feature_extractor, X_target, X_base_pool, n_poisons=1,
                                                    n_candidates=n_candidates, random_state=random_state,
                                                    **collision_params)
    result = transfer_attack(feature_extractor, X_train, y_train, X_target, y_target, X_poison, base_class, C=C,
                             X_eval=X_eval, y_eval=y_eval, device=collision_params.get("device"))
    result.base_index = base_index
    result.collision = collision
    return result


def _predict_index(net, X):
    net.eval()
    with torch.no_grad():
        return net(X).argmax(dim=1).cpu().numpy()


def end_to_end_attack(victim: LinearHeadVictim, X_train, y_train, X_target, y_target, X_poison, base_class, *,
                      epochs: int = 10, batch_size: int = 64, optimizer: str = "adam", lr: float = 1e-3,
                      random_state: int | None = 0, X_eval=None, y_eval=None, device=None,
                      progress: bool = False) -> AttackResult:
    r"""Poison a victim that fine-tunes *all* its layers (end-to-end training), one fine-tuning per target.

    ``victim`` is a fitted :class:`LinearHeadVictim`, the clean transfer-learning model; its
    :meth:`~LinearHeadVictim.to_torch` network is the starting point. For target ``i`` a copy of it is trained with
    :func:`poisoning.training.train` (cross-entropy; ``epochs``, ``batch_size``, ``optimizer``, ``lr``, seeded by
    ``random_state``) on ``X_train`` plus the poisons ``X_poison[i]`` (shape ``(m, n_poisons, d)``) labelled
    ``base_class``. The clean reference is the same fine-tuning without poisons (one run, shared by every target).
    ``feature_distance`` is measured under the victim's frozen extractor, against which the poisons were crafted.
    With ``(X_eval, y_eval)`` the result also holds every network's accuracy on that set. Returns an
    :class:`AttackResult`.
    """
    from tqdm.auto import tqdm

    from poisoning.training import train

    if not isinstance(victim, LinearHeadVictim) or not hasattr(victim, "head_"):
        raise TypeError("victim must be a fitted LinearHeadVictim")
    X_train, y_train, X_target, y_target, X_poison, X_eval, y_eval = _check_victim_data(
        X_train, y_train, X_target, y_target, X_poison, base_class, X_eval, y_eval)
    classes = list(victim.classes_)
    if not set(y_train.tolist()) <= set(classes):
        raise ValueError(f"y_train holds classes the victim does not know (its classes are {classes})")
    to_index = {c: i for i, c in enumerate(classes)}
    m, k, d = X_poison.shape
    y_index = np.array([to_index[c] for c in y_train.tolist()], dtype=np.int64)
    y_poisoned = np.concatenate([y_index, np.full(k, to_index[base_class], dtype=np.int64)])
    settings = dict(epochs=_positive_int(epochs, "epochs"), batch_size=_positive_int(batch_size, "batch_size"),
                    optimizer=optimizer, lr=_positive_real(lr, "lr"), random_state=random_state, device=device,
                    progress=False)
    device = _resolve_device(device)
    dtype = _module_dtype(victim.feature_extractor)
    targets = torch.as_tensor(X_target, dtype=dtype, device=device)
    evaluation = None if X_eval is None else torch.as_tensor(X_eval, dtype=dtype, device=device)
    classes_array = np.asarray(classes)

    def proba_of_base(net, rows):
        net.eval()
        with torch.no_grad():
            return torch.softmax(net(targets[rows]), dim=1)[:, to_index[base_class]].cpu().numpy()

    def accuracy(net):
        return float(np.mean(classes_array[_predict_index(net, evaluation)] == y_eval))

    clean = victim.to_torch()
    train(clean, X_train, y_index, **settings)
    p_clean = proba_of_base(clean, slice(None)).astype(np.float64)
    clean_correct = classes_array[_predict_index(clean, targets)] == y_target
    p_poisoned, success, accuracies = np.empty(m), np.zeros(m, dtype=bool), np.full(m, np.nan)
    for i in tqdm(range(m), desc="fine-tune end to end", unit="target", disable=not progress):
        net = victim.to_torch()
        train(net, np.vstack([X_train, X_poison[i]]), y_poisoned, **settings)
        p_poisoned[i] = proba_of_base(net, slice(i, i + 1))[0]
        success[i] = classes_array[_predict_index(net, targets[i:i + 1])[0]] == base_class
        if evaluation is not None:
            accuracies[i] = accuracy(net)
    F_target = extract_features(victim.feature_extractor, X_target, device=device)
    F_poison = extract_features(victim.feature_extractor, X_poison.reshape(m * k, d), device=device).reshape(m, k, -1)
    return AttackResult(success=success, clean_correct=clean_correct, p_base_clean=p_clean,
                        p_base_poisoned=p_poisoned, X_poison=X_poison,
                        feature_distance=np.linalg.norm(F_poison - F_target[:, None, :], axis=2),
                        accuracy_clean=None if evaluation is None else accuracy(clean),
                        accuracy_poisoned=None if evaluation is None else accuracies)
