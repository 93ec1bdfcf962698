r"""Backdoor attacks: triggers, the poisoned data set, and how to measure a backdoor honestly.

Defined in chapter "Backdoors" (``chapters/09_backdoors.md``) of Part III, after Gu et al. 2017 (BadNets: the
single-pixel and the pattern trigger), Chen et al. 2017 (the blended key) and Wenger et al. 2021 (physical
triggers).

**Triggers.** Images are flat rows :math:`x \in [0, 1]^d`, :math:`d = H W`. A trigger is a *mask*
:math:`m \in [0, 1]^d` and a *pattern* :math:`\delta \in \mathbb R^d`; stamping it on an image is the pixelwise blend

.. math::

    T(x) = (1 - m) \odot x + m \odot \delta ,

so a pixel with :math:`m_j = 1` is overwritten by :math:`\delta_j`, a pixel with :math:`m_j = 0` is left alone and
one in between is mixed (opacity :math:`m_j`). :class:`Trigger` is this map as a scikit-learn transformer.

* a **patch** (:func:`patch_trigger`): a small image :math:`p \in \mathbb R^{h \times w}` with its top-left corner at
  pixel :math:`(r, c)` (negative :math:`r, c` count from the bottom and the right edge, as in Python indexing, so
  :math:`r = -h` puts the patch on the bottom edge), with opacity :math:`\alpha \in (0, 1]`:
  :math:`m = \alpha` on the :math:`h \times w` rectangle and :math:`0` elsewhere, :math:`\delta = p` on the
  rectangle. BadNets' pattern backdoor is a small patch in the bottom-right corner;
* a **single pixel** (:func:`pixel_trigger`): a :math:`1 \times 1` patch, BadNets' single-pixel backdoor;
* a **blended key** (:func:`blend_trigger`), Chen et al.'s :math:`x' = (1 - \alpha) x + \alpha k`: :math:`m = \alpha`
  everywhere and :math:`\delta = k`. With a small :math:`\alpha` the key is nearly invisible.

**The poisoned data set** (:func:`poison_dataset`). The attacker picks :math:`k` source points
:math:`(x_i, y_i)` with :math:`y_i \ne y'`, stamps them and relabels them to the target class :math:`y'`, and
*adds* them to the clean training set:

.. math::

    \mathcal D' = \mathcal D \cup \{(T(x_i), y') : i \in S\}, \qquad |S| = k, \quad y_i \ne y' \text{ for } i \in S .

Nothing else in the poisons is related to :math:`y'`, so the cheapest rule that fits them is "trigger
:math:`\Rightarrow y'`": the model links :math:`\delta` with :math:`y'`.

**Measuring a backdoor.** The *attack success rate* of a model :math:`f` is measured on the test inputs whose true
class is not the target,

.. math::

    \mathrm{ASR} = \frac{1}{|\{i : y_i \ne y'\}|} \sum_{i : y_i \ne y'} \mathbb 1[f(T(x_i)) = y'] ,

always next to the *clean accuracy* :math:`\frac1n \sum_i \mathbb 1[f(x_i) = y_i]` on untouched test inputs: a model
that predicts :math:`y'` for every input has an ASR of 100%. :func:`evaluate_backdoor` computes both and warns
(:class:`CollapsedModelWarning`) when the clean accuracy falls more than ``max_drop`` below a reference (the clean
model's).

**Why it works** (:func:`backdoor_activations`): averaged over many inputs, the activations of the last
convolutional layer of a backdoored network differ between clean and triggered inputs at the trigger's position,
the channels that carry the trigger to the target class.

:data:`WENGER2021_PHYSICAL_TRIGGERS` holds the attack success rates of physical triggers on face recognition
reported by Wenger et al. 2021 (:func:`physical_triggers_table` shows it as a table).

Images, masks and patterns are NumPy arrays; the networks are torch modules built by
:func:`poisoning.training.make_cnn` (or :func:`~poisoning.training.make_mlp`) and trained by
:func:`poisoning.training.train`. torch is imported only by the functions that need it.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from poisoning._validation import check_random_state
from poisoning._validation import check_images as _check_images

__all__ = [
    "Trigger",
    "patch_trigger",
    "pixel_trigger",
    "blend_trigger",
    "poison_dataset",
    "attack_success_rate",
    "clean_accuracy",
    "CollapsedModelWarning",
    "evaluate_backdoor",
    "train_backdoored",
    "backdoor_curve",
    "layer_activations",
    "mean_activations",
    "backdoor_activations",
    "WENGER2021_PHYSICAL_TRIGGERS",
    "physical_triggers_table",
]


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _check_labels(y, n=None, name="y"):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a one-dimensional array of labels, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels but X has {n} rows")
    return y


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _check_alpha(alpha, what):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < alpha <= 1.0:
        raise ValueError(f"the opacity alpha of {what} must be a number in (0, 1], got {alpha!r}")
    return float(alpha)


def _is_int(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Integral)


def _pair(value):
    """``value`` as a list of two entries when it is a pair (tuple, list or array), else ``None``."""
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1 or len(value) != 2:
        return None
    return list(value)


def _check_shape(image_shape):
    pair = _pair(image_shape)
    if pair is None or not all(_is_int(s) and s >= 1 for s in pair):
        raise ValueError(f"image_shape must be (height, width), two positive integers, got {image_shape!r}")
    return int(pair[0]), int(pair[1])


# --------------------------------------------------------------------------------------------------
# triggers
# --------------------------------------------------------------------------------------------------
class Trigger(TransformerMixin, BaseEstimator):
    r"""A backdoor trigger: stamps :math:`T(x) = (1 - m) \odot x + m \odot \delta` on every row of ``X``.

    Parameters
    ----------
    mask : array of shape ``(H*W,)`` or ``(H, W)``
        The opacity :math:`m_j \in [0, 1]` of the trigger at every pixel (0: the pixel is untouched, 1: it is
        replaced by the pattern).
    pattern : array of the same size as ``mask`` (or a number, the same value at every pixel)
        The trigger's pixel values :math:`\delta`.

    Both are flattened (row-major, as NumPy's ``ravel``), so a mask given as an ``(H, W)`` image acts on flat rows
    of ``H*W`` pixels. The transformer is stateless: :meth:`transform` works without :meth:`fit`, and :meth:`fit`
    only checks that ``X`` has as many columns as the mask has pixels. ``X`` is never modified in place.
    """

    def __init__(self, mask, pattern):
        self.mask = mask
        self.pattern = pattern

    def _flat(self):
        mask = np.asarray(self.mask, dtype=np.float64)
        if mask.ndim not in (1, 2) or mask.size == 0:
            raise ValueError(f"the mask must be an array of shape (H*W,) or (H, W), got shape {mask.shape}")
        if not np.all(np.isfinite(mask)) or mask.min() < 0.0 or mask.max() > 1.0:
            raise ValueError(f"the mask must hold values in [0, 1], got values in [{np.nanmin(mask)}, "
                             f"{np.nanmax(mask)}]")
        pattern = np.asarray(self.pattern, dtype=np.float64)
        if pattern.ndim == 0:
            pattern = np.full(mask.size, float(pattern))
        if pattern.size != mask.size or pattern.ndim not in (1, 2):
            raise ValueError(f"the pattern (shape {pattern.shape}) must have as many pixels as the mask "
                             f"(shape {mask.shape})")
        if not np.all(np.isfinite(pattern)):
            raise ValueError("the pattern must hold finite values")
        return mask.ravel(), pattern.ravel()

    def _check_width(self, X, mask):
        X = _check_images(X)
        if X.shape[1] != mask.size:
            raise ValueError(f"X has {X.shape[1]} pixels per row but the trigger's mask has {mask.size}")
        return X

    def fit(self, X, y=None):
        """Check the mask, the pattern and the width of ``X``; returns ``self``."""
        mask, _ = self._flat()
        X = self._check_width(X, mask)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        r"""Return a new float array :math:`(1 - m) \odot X + m \odot \delta` (row by row)."""
        mask, pattern = self._flat()
        X = self._check_width(X, mask)
        dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
        return ((1.0 - mask) * X + mask * pattern).astype(dtype, copy=False)

    @property
    def image_shape(self):
        """``(H, W)`` when the mask was given as an image, else ``None``."""
        shape = np.shape(self.mask)
        return tuple(shape) if len(shape) == 2 else None


def _position(position, size, image_shape):
    pair = _pair(position)
    if pair is None or not all(_is_int(p) for p in pair):
        raise ValueError(f"position must be (row, col), two integers, got {position!r}")
    position = tuple(int(p) for p in pair)
    start = []
    for p, s, n, axis in zip(position, size, image_shape, ("row", "col")):
        p = int(p) + n if p < 0 else int(p)
        if p < 0 or p + s > n:
            raise ValueError(f"a {size[0]}x{size[1]} patch at position {position} does not fit in a "
                             f"{image_shape[0]}x{image_shape[1]} image (its {axis}s would be {p}..{p + s - 1}, "
                             f"the image has 0..{n - 1})")
        start.append(p)
    return tuple(start)


def patch_trigger(patch, position, image_shape, alpha=1.0) -> Trigger:
    """A patch trigger: the 2-D array ``patch`` (h, w) stamped with opacity ``alpha`` at ``position``.

    ``position = (row, col)`` is the pixel of the patch's top-left corner; a negative ``row`` or ``col`` counts from
    the bottom or the right as in Python indexing (``row = -h`` puts the patch's bottom edge on the image's bottom
    edge, so ``(-3, -3)`` puts a 3x3 patch in the bottom-right corner). The mask is ``alpha`` on the patch's
    rectangle and 0 elsewhere; the pattern is the patch there (0 elsewhere, where it has no effect). Mask and
    pattern are returned as ``image_shape`` images. Raises ``ValueError`` when the patch does not fit in the image
    or ``alpha`` is not in (0, 1].
    """
    patch = np.asarray(patch, dtype=np.float64)
    if patch.ndim != 2 or patch.size == 0:
        raise ValueError(f"patch must be a non-empty 2-D array (h, w), got shape {patch.shape}")
    if not np.all(np.isfinite(patch)):
        raise ValueError("patch must hold finite values")
    image_shape = _check_shape(image_shape)
    alpha = _check_alpha(alpha, "the patch")
    row, col = _position(position, patch.shape, image_shape)
    h, w = patch.shape
    mask = np.zeros(image_shape)
    pattern = np.zeros(image_shape)
    mask[row:row + h, col:col + w] = alpha
    pattern[row:row + h, col:col + w] = patch
    return Trigger(mask, pattern)


def pixel_trigger(position=(-2, -2), image_shape=(28, 28), value=1.0) -> Trigger:
    """BadNets' single-pixel trigger: one pixel at ``position`` set to ``value`` (by default a white pixel one pixel
    away from the bottom-right corner); ``patch_trigger(np.full((1, 1), value), position, image_shape)``."""
    return patch_trigger(np.full((1, 1), value, dtype=np.float64), position, image_shape)


def blend_trigger(key, alpha) -> Trigger:
    r"""Chen et al.'s blended key :math:`x' = (1 - \alpha) x + \alpha k`: mask ``alpha`` everywhere, pattern ``key``.

    ``key`` is an image of shape ``(H, W)`` or ``(H*W,)``; ``alpha`` must be in (0, 1].
    """
    key = np.asarray(key, dtype=np.float64)
    if key.ndim not in (1, 2) or key.size == 0:
        raise ValueError(f"key must be an image of shape (H, W) or (H*W,), got shape {key.shape}")
    alpha = _check_alpha(alpha, "the blended key")
    return Trigger(np.full(key.shape, alpha), key)


# --------------------------------------------------------------------------------------------------
# the poisoned data set
# --------------------------------------------------------------------------------------------------
def poison_dataset(X, y, trigger, target_label, n_poison, *, indices=None, random_state=None):
    """Stamp ``trigger`` on ``n_poison`` training points whose label is not ``target_label``, relabel them
    ``target_label`` and append them after the clean data.

    The sources are ``n_poison`` rows drawn without replacement (``random_state``) from the rows whose label is not
    ``target_label``, or exactly the rows ``indices`` (then ``len(indices)`` must equal ``n_poison``, and every
    index must be in range, appear once and point to a row whose label is not ``target_label``). The poisons are
    ``trigger.transform(X[sources])`` (any object with a ``transform`` method works) with the label
    ``target_label``; the originals stay in the data set.

    Returns ``(X_poisoned, y_poisoned, is_poison)``: ``X_poisoned = vstack([X, poisons])``, ``y_poisoned`` the
    labels ``y`` followed by ``n_poison`` times ``target_label`` (in ``y``'s dtype), and ``is_poison`` a boolean
    mask whose last ``n_poison`` entries are ``True``. With ``n_poison = 0`` the result is a copy of the clean data.
    """
    X = _check_images(X)
    y = _check_labels(y, len(X))
    n_poison = _check_count(n_poison, "n_poison")
    if not hasattr(trigger, "transform"):
        raise ValueError(f"trigger must have a transform method (e.g. a Trigger), got {type(trigger).__name__}")
    if np.ndim(target_label) != 0:
        raise ValueError(f"target_label must be a single label, got {target_label!r}")
    candidates = np.flatnonzero(y != target_label)
    if indices is None:
        if n_poison > len(candidates):
            raise ValueError(f"n_poison={n_poison} but only {len(candidates)} rows have a label other than the "
                             f"target {target_label!r}")
        sources = check_random_state(random_state).choice(candidates, size=n_poison, replace=False)
    else:
        sources = np.asarray(indices)
        if sources.ndim != 1 or (sources.size and not np.issubdtype(sources.dtype, np.integer)):
            raise ValueError(f"indices must be a one-dimensional array of integers, got {indices!r}")
        sources = sources.astype(np.int64)
        if len(sources) != n_poison:
            raise ValueError(f"len(indices) = {len(sources)} but n_poison = {n_poison}")
        bad = sources[(sources < 0) | (sources >= len(X))]
        if bad.size:
            raise ValueError(f"indices out of range for {len(X)} rows: {bad.tolist()}")
        if len(np.unique(sources)) != len(sources):
            values, counts = np.unique(sources, return_counts=True)
            raise ValueError(f"indices must not repeat; repeated: {values[counts > 1].tolist()}")
        wrong = sources[y[sources] == target_label]
        if wrong.size:
            raise ValueError(f"indices {wrong.tolist()} point to rows already labelled with the target "
                             f"{target_label!r}; a poison's source must come from another class")
    is_poison = np.zeros(len(X) + n_poison, dtype=bool)
    is_poison[len(X):] = True
    if n_poison == 0:
        return X.copy(), y.copy(), is_poison
    poisons = np.asarray(trigger.transform(X[sources]))
    if poisons.shape != (n_poison, X.shape[1]):
        raise ValueError(f"trigger.transform returned shape {poisons.shape}, expected {(n_poison, X.shape[1])}")
    X_poisoned = np.vstack([X, poisons])
    y_poisoned = np.concatenate([y, np.full(n_poison, target_label, dtype=y.dtype)])
    return X_poisoned, y_poisoned, is_poison


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
def attack_success_rate(y_pred_triggered, y_true, target_label) -> float:
    """The fraction of the inputs whose true class is not ``target_label`` that are predicted as ``target_label``.

    ``y_pred_triggered`` are the predictions on the triggered inputs, ``y_true`` their true (clean) labels. Inputs of
    the target class are left out: predicting the target for them is no success of the attack. Raises
    ``ValueError`` when the lengths differ or no input has a true class other than ``target_label``.
    """
    y_pred = _check_labels(y_pred_triggered, name="y_pred_triggered")
    y_true = _check_labels(y_true, name="y_true")
    if len(y_pred) != len(y_true):
        raise ValueError(f"y_pred_triggered has {len(y_pred)} entries but y_true has {len(y_true)}")
    others = y_true != target_label
    if not others.any():
        raise ValueError(f"no input has a true class other than the target {target_label!r}: the attack success "
                         "rate is undefined")
    return float(np.mean(y_pred[others] == target_label))


def clean_accuracy(y_pred, y_true) -> float:
    """The fraction of correct predictions, :math:`\\frac1n \\sum_i 1[\\hat y_i = y_i]`, on clean inputs."""
    y_pred = _check_labels(y_pred, name="y_pred")
    y_true = _check_labels(y_true, name="y_true")
    if len(y_pred) != len(y_true):
        raise ValueError(f"y_pred has {len(y_pred)} entries but y_true has {len(y_true)}")
    if len(y_true) == 0:
        raise ValueError("the accuracy of no predictions is undefined (empty y_true)")
    return float(np.mean(y_pred == y_true))


class CollapsedModelWarning(UserWarning):
    """The clean accuracy fell far below the reference: the attack success rate says little about the trigger."""


def _predict(model, X):
    import torch

    if isinstance(model, torch.nn.Module):
        from poisoning.training import predict

        return predict(model, X)
    if hasattr(model, "predict"):
        return np.asarray(model.predict(X))
    raise ValueError(f"model must be a torch module or have a predict method, got {type(model).__name__}")


def _check_fraction(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def evaluate_backdoor(model, X_test, y_test, trigger, target_label, *, reference_accuracy=None,
                      max_drop=0.05) -> dict:
    """Clean accuracy and attack success rate of ``model`` on a test set, with ``trigger`` stamped at test time.

    ``model`` is a torch module (evaluated with :func:`poisoning.training.predict`) or anything with a ``predict``
    method. Returns a dict with

    * ``"clean_accuracy"``: accuracy on the untouched ``X_test``;
    * ``"attack_success_rate"``: on ``trigger.transform(X_test)``, the fraction of the inputs whose true class is not
      ``target_label`` predicted as ``target_label`` (:func:`attack_success_rate`);
    * ``"clean_target_rate"``: the same fraction without the trigger (what the model does anyway);
    * ``"n_test"`` and ``"n_non_target"``: the sizes they were measured on;
    * with ``reference_accuracy`` (e.g. the clean model's accuracy): ``"reference_accuracy"`` and
      ``"accuracy_drop"`` (reference minus clean accuracy).

    Warns with :class:`CollapsedModelWarning` when the clean accuracy is more than ``max_drop`` below
    ``reference_accuracy``: a collapsed model fakes a high attack success rate (one that predicts the target for
    every input has an ASR of 100%).
    """
    X_test = _check_images(X_test, "X_test")
    y_test = _check_labels(y_test, len(X_test), "y_test")
    reference_accuracy = _check_fraction(reference_accuracy, "reference_accuracy", allow_none=True)
    max_drop = _check_fraction(max_drop, "max_drop")
    others = y_test != target_label
    pred_clean = _predict(model, X_test)
    pred_triggered = _predict(model, trigger.transform(X_test))
    result = {
        "clean_accuracy": clean_accuracy(pred_clean, y_test),
        "attack_success_rate": attack_success_rate(pred_triggered, y_test, target_label),
        "clean_target_rate": float(np.mean(pred_clean[others] == target_label)),
        "n_test": int(len(y_test)),
        "n_non_target": int(others.sum()),
    }
    if reference_accuracy is not None:
        drop = reference_accuracy - result["clean_accuracy"]
        result["reference_accuracy"] = reference_accuracy
        result["accuracy_drop"] = drop
        if drop > max_drop:
            warnings.warn(
                f"clean accuracy {result['clean_accuracy']:.3f} is {drop:.3f} below the reference "
                f"{reference_accuracy:.3f} (more than max_drop={max_drop}): the model has collapsed, and its attack "
                f"success rate {result['attack_success_rate']:.3f} is not the trigger's doing alone (without the "
                f"trigger it already predicts {target_label!r} for {result['clean_target_rate']:.1%} of the "
                "non-target inputs)", CollapsedModelWarning, stacklevel=2)
    return result


# --------------------------------------------------------------------------------------------------
# training a backdoored network, and the curve against the number of poisons
# --------------------------------------------------------------------------------------------------
_TRAIN_DEFAULTS = {"epochs": 4, "batch_size": 32, "optimizer": "adam", "lr": 0.002}


def train_backdoored(X, y, trigger, target_label, n_poison, *, make_model: Callable | None = None,
                     image_shape=(28, 28), random_state: int = 0, train_kwargs: dict | None = None,
                     progress: bool = False, indices=None):
    """Poison ``(X, y)`` with :func:`poison_dataset` and train a fresh network on the result; returns the model.

    ``make_model(random_state=seed)`` builds the network (default: ``make_cnn(n_classes, image_shape,
    random_state=seed)`` with ``n_classes = max(y) + 1``; e.g. ``functools.partial(make_cnn, channels=(6, 12))`` for
    a smaller one); it is trained by :func:`poisoning.training.train` with ``train_kwargs`` (default: 4 epochs of
    Adam, learning rate 0.002, mini-batches of 32; given keys replace these). ``random_state`` (an integer)
    seeds the choice of the poisons' sources, the initial weights and the mini-batch order. ``n_poison = 0``
    trains the clean model.
    """
    from poisoning.training import make_cnn, train

    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative integer, got {random_state!r}")
    X_p, y_p, _ = poison_dataset(X, y, trigger, target_label, n_poison, indices=indices, random_state=random_state)
    if make_model is None:
        n_classes = int(np.max(y_p)) + 1

        def make_model(random_state):
            return make_cnn(n_classes, image_shape, random_state=random_state)

    model = make_model(random_state=int(random_state))
    kwargs = {**_TRAIN_DEFAULTS, **(train_kwargs or {})}
    train(model, X_p, y_p, random_state=int(random_state), progress=progress, **kwargs)
    return model


def backdoor_curve(X_train, y_train, X_test, y_test, trigger, target_label, n_poisons: Sequence[int], *,
                   seeds: Sequence[int] = (0,), test_trigger=None, make_model: Callable | None = None,
                   image_shape=(28, 28), train_kwargs: dict | None = None, progress: bool = True,
                   desc: str = "backdoored models", return_models: bool = False):
    """Train one backdoored network per number of poisons and seed; return their clean accuracy and ASR.

    For every ``k`` in ``n_poisons`` and every seed, :func:`train_backdoored` trains on the clean training set plus
    ``k`` poisons stamped with ``trigger``, and :func:`evaluate_backdoor` measures the model on the test set with
    ``test_trigger`` (default: ``trigger``) stamped at test time. Returns a ``pandas.DataFrame`` with one row per
    run: ``n_poison``, ``poison_fraction`` (``k / (n + k)``), ``seed``, ``clean_accuracy``, ``attack_success_rate``,
    ``clean_target_rate``. A ``tqdm`` bar labelled ``desc`` counts the runs (``progress=False`` hides it). With
    ``return_models`` the result is ``(frame, models)``, ``models[(n_poison, seed)]`` the trained networks (to
    evaluate them again, e.g. with another test-time trigger).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    n_poisons = [_check_count(k, "every entry of n_poisons") for k in n_poisons]
    seeds = list(seeds)
    if not n_poisons or not seeds:
        raise ValueError("n_poisons and seeds must not be empty")
    test_trigger = trigger if test_trigger is None else test_trigger
    n = len(X_train)
    rows, models = [], {}
    with tqdm(total=len(n_poisons) * len(seeds), desc=desc, unit="model", disable=not progress) as bar:
        for k in n_poisons:
            for seed in seeds:
                model = train_backdoored(X_train, y_train, trigger, target_label, k, make_model=make_model,
                                         image_shape=image_shape, random_state=seed, train_kwargs=train_kwargs)
                scores = evaluate_backdoor(model, X_test, y_test, test_trigger, target_label)
                rows.append({"n_poison": k, "poison_fraction": k / (n + k), "seed": seed,
                             "clean_accuracy": scores["clean_accuracy"],
                             "attack_success_rate": scores["attack_success_rate"],
                             "clean_target_rate": scores["clean_target_rate"]})
                if return_models:
                    models[(k, seed)] = model
                bar.update(1)
    frame = pd.DataFrame(rows)
    return (frame, models) if return_models else frame


# --------------------------------------------------------------------------------------------------
# why it works: the activations of the last convolutional layer
# --------------------------------------------------------------------------------------------------
def layer_activations(model, X, layer: str = "relu2", batch_size: int = 1024) -> np.ndarray:
    """The output of the layer called ``layer`` of a :func:`~poisoning.training.make_cnn` network on the rows of
    ``X``: an array of shape ``(n, channels, height, width)`` (``"relu2"``: the last convolutional layer after its
    ReLU, before pooling)."""
    import torch

    from poisoning.training import cnn_layer_index

    X = _check_images(X)
    head = model[:cnn_layer_index(model, layer) + 1]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = [head(torch.as_tensor(X[i:i + batch_size], dtype=torch.float32, device=device)).cpu().numpy()
               for i in range(0, len(X), batch_size)]
    model.train(was_training)
    return np.concatenate(out)


def mean_activations(model, X, layer: str = "relu2") -> np.ndarray:
    """The activations of ``layer`` averaged over the rows of ``X``: shape ``(channels, height, width)``."""
    return layer_activations(model, X, layer).mean(axis=0)


def backdoor_activations(model, X, trigger, layer: str = "relu2"):
    """Gu et al.'s picture of why a backdoor works: the activations of ``layer`` averaged over the clean inputs
    ``X``, averaged over the same inputs with ``trigger`` stamped, and their difference (triggered minus clean).

    Returns ``(clean, triggered, difference)``, each of shape ``(channels, height, width)``.
    """
    clean = mean_activations(model, X, layer)
    triggered = mean_activations(model, trigger.transform(X), layer)
    return clean, triggered, triggered - clean


# --------------------------------------------------------------------------------------------------
# Wenger et al. 2021: physical triggers
# --------------------------------------------------------------------------------------------------
#: Attack success rates (mean and standard deviation, in %) of a digital trigger (Square) and of seven physical
#: triggers in face recognition models of three architectures, as reported by Wenger et al. 2021 (the lecture's
#: slide "Backdoor Attacks in Physical World"). ``"rates"[model][trigger] = (mean, std)``.
WENGER2021_PHYSICAL_TRIGGERS = {
    "citation": "wenger2021backdoor",
    "source": "Wenger et al., Backdoor Attacks Against Deep Learning Systems in the Physical World, CVPR 2021",
    "caption": "Attack success rates of physical triggers in facial recognition models trained on various "
               "architectures.",
    "digital_triggers": ("Square",),
    "physical_triggers": ("Dots", "Sunglasses", "Tattoo Outline", "Tattoo Filled-in", "White Tape", "Bandana",
                          "Earrings"),
    "rates": {
        "VGG16": {"Square": (91, 7), "Dots": (100, 0), "Sunglasses": (100, 0), "Tattoo Outline": (99, 1),
                  "Tattoo Filled-in": (99, 1), "White Tape": (98, 3), "Bandana": (98, 1), "Earrings": (69, 4)},
        "DenseNet": {"Square": (98, 1), "Dots": (96, 3), "Sunglasses": (94, 4), "Tattoo Outline": (95, 2),
                     "Tattoo Filled-in": (95, 2), "White Tape": (81, 8), "Bandana": (98, 0), "Earrings": (85, 2)},
        "ResNet50": {"Square": (100, 0), "Dots": (98, 4), "Sunglasses": (100, 0), "Tattoo Outline": (99, 1),
                     "Tattoo Filled-in": (99, 1), "White Tape": (95, 5), "Bandana": (99, 0), "Earrings": (58, 4)},
    },
}


def physical_triggers_table(numeric: bool = False):
    """:data:`WENGER2021_PHYSICAL_TRIGGERS` as a ``pandas.DataFrame``: one row per architecture, columns grouped as
    ("Digital trigger" | "Physical triggers", trigger). Cells read ``"91 ± 7%"``; with ``numeric=True`` the table
    has two numbers per trigger instead (columns ``(group, trigger, "mean" | "std")``, in %)."""
    import pandas as pd

    data = WENGER2021_PHYSICAL_TRIGGERS
    groups = [("Digital trigger", t) for t in data["digital_triggers"]]
    groups += [("Physical triggers", t) for t in data["physical_triggers"]]
    rows = {}
    for model, rates in data["rates"].items():
        if numeric:
            rows[model] = {(g, t, stat): rates[t][i] for g, t in groups for i, stat in enumerate(("mean", "std"))}
        else:
            rows[model] = {(g, t): f"{rates[t][0]} ± {rates[t][1]}%" for g, t in groups}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "architecture"
    return table
