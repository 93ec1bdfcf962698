"""A small, reusable torch training helper: an MLP builder, a seeded training loop and its history.

Defined in chapter "Learning from random data" (``chapters/04_random_labels.md``); the later chapters that
train networks reuse it. :func:`make_cnn`, the small convolutional network of Part III, is defined in chapter
"Feature collisions" (``chapters/08_feature_collisions.md``) and reused by "Backdoors".

:func:`train` minimises the average cross-entropy :math:`\\frac1n \\sum_i -\\log \\mathrm{softmax}(f(x_i;
\\theta))_{y_i}` by mini-batch SGD (or Adam) on numpy arrays ``X`` (shape ``(n, d)``) and integer labels ``y`` in
``0..K-1``. It records the mini-batch loss at every step and the 0/1 error on the training set (and, if given,
the test set) after every epoch, can stop as soon as the training error reaches zero, shows a ``tqdm``
progress bar, and runs on the device of :func:`poisoning.device.get_device` (a GPU when there is one).
Everything random (weight initialisation, mini-batch order) is seeded by ``random_state``: an integer, a
``numpy.random.RandomState``, a ``numpy.random.Generator`` (each deterministic) or ``None`` (a fresh seed).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from poisoning._validation import check_count, seed_from
from poisoning.device import get_device

__all__ = ["make_mlp", "make_cnn", "cnn_layer_index", "train", "predict", "error_rate", "TrainingHistory"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def _torch_seed(random_state):
    """The integer seed torch needs, from ``random_state``: an integer is its own seed (as before, so that a
    seed gives the same network as always); a ``RandomState`` or a ``Generator`` gives one draw (deterministic
    for a given state); ``None`` a fresh seed. ``TypeError`` for anything else, ``ValueError`` for a negative
    integer."""
    return seed_from(random_state)


def _check_sizes(**sizes):
    """Layer sizes: positive integers (``TypeError`` for a non-integer, ``ValueError`` for one below 1)."""
    for name, size in sizes.items():
        for value in (size if isinstance(size, (tuple, list)) else [size]):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                raise TypeError(f"layer sizes must be positive integers, got {name}={size!r}")
            if value < 1:
                raise ValueError(f"layer sizes must be positive integers, got {name}={size!r}")


def make_mlp(n_inputs: int, n_classes: int, hidden: Sequence[int] = (512,), activation: str = "relu",
             random_state: int | np.random.RandomState | np.random.Generator | None = None) -> nn.Sequential:
    """A multilayer perceptron ``n_inputs -> hidden[0] -> ... -> hidden[-1] -> n_classes`` (logits).

    Each hidden layer is ``Linear`` followed by ``activation`` (``"relu"``, ``"tanh"``, ``"sigmoid"`` or
    ``"gelu"``); ``hidden=()`` gives a linear model (multinomial logistic regression). The weights are
    initialised with torch's default rule from the seed ``random_state``, without touching torch's global
    random state. The model is on the CPU; :func:`train` moves it to its device.
    """
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Iterable):
        raise TypeError(f"hidden must be a sequence of layer sizes, e.g. (512,) or (), got {hidden!r}")
    _check_sizes(n_inputs=n_inputs, hidden=tuple(hidden), n_classes=n_classes)
    sizes = [n_inputs, *hidden, n_classes]
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_torch_seed(random_state))
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(int(fan_in), int(fan_out)))
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def make_cnn(n_classes: int = 10, image_shape: tuple[int, int] = (28, 28), channels: Sequence[int] = (8, 16),
             n_features: int = 64,
             random_state: int | np.random.RandomState | np.random.Generator | None = None) -> nn.Sequential:
    """A small convolutional network for grey images given as flat rows (shape ``(n, height * width)``), so that
    :func:`train`, :func:`predict` and :func:`error_rate` take it like an MLP.

    Layers, by name (``model.conv2`` is the second convolution; :func:`cnn_layer_index` gives a layer's position
    for slicing)::

        unflatten  (n, H*W) -> (n, 1, H, W)
        conv1      5x5 convolution, channels[0] maps, padding 2;  relu1;  pool1 (2x2 max pooling)
        conv2      5x5 convolution, channels[1] maps, padding 2;  relu2;  pool2 (2x2 max pooling)
        flatten
        features   linear layer to n_features units;  relu_features
        head       linear layer to n_classes logits

    ``model[:cnn_layer_index(model, "relu_features") + 1]`` is the feature extractor :math:`h(x)` of the
    feature-collision chapter (the input of the linear head); ``model[:cnn_layer_index(model, "relu2") + 1]``
    gives the activations of the last convolutional layer (the backdoor chapter). ``height`` and ``width`` must be
    divisible by 4. Weights are initialised from ``random_state`` without touching torch's global random state.
    """
    from collections import OrderedDict

    if len(image_shape) != 2 or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 4 or s % 4
                                    for s in image_shape):
        raise ValueError(f"image_shape must be (height, width), both positive multiples of 4, got {image_shape!r}")
    if len(channels) != 2:
        raise ValueError(f"channels must give the number of maps of the two convolutions, got {channels!r}")
    _check_sizes(n_classes=n_classes, n_features=n_features, channels=tuple(channels))
    height, width = (int(s) for s in image_shape)
    c1, c2 = (int(c) for c in channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_torch_seed(random_state))
        layers = OrderedDict([
            ("unflatten", nn.Unflatten(1, (1, height, width))),
            ("conv1", nn.Conv2d(1, c1, kernel_size=5, padding=2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, kernel_size=5, padding=2)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("features", nn.Linear(c2 * (height // 4) * (width // 4), int(n_features))), ("relu_features", nn.ReLU()),
            ("head", nn.Linear(int(n_features), int(n_classes))),
        ])
    return nn.Sequential(layers)


def cnn_layer_index(model: nn.Sequential, name: str) -> int:
    """The position of the layer called ``name`` in a :func:`make_cnn` network (for slicing: ``model[:i + 1]``)."""
    names = [n for n, _ in model.named_children()]
    if name not in names:
        raise ValueError(f"the model has no layer {name!r}; its layers are {names}")
    return names.index(name)


@dataclass
class TrainingHistory:
    """What :func:`train` recorded.

    ``loss[t]`` is the mini-batch cross-entropy at step ``t`` (before that step's update);
    ``train_error[e]`` and ``test_error[e]`` are the 0/1 errors after epoch ``e + 1`` (``test_error`` is empty
    without a test set). ``epochs_to_fit`` and ``steps_to_fit`` say when the training error first reached
    zero (``None`` if it never did).
    """

    loss: list[float] = field(default_factory=list)
    train_error: list[float] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    epochs_to_fit: int | None = None
    steps_to_fit: int | None = None

    @property
    def epochs(self) -> int:
        """The number of epochs run."""
        return len(self.train_error)

    @property
    def steps(self) -> int:
        """The number of optimisation steps taken."""
        return len(self.loss)

    @property
    def fitted(self) -> bool:
        """Whether the training error reached zero."""
        return self.epochs_to_fit is not None


def _as_tensors(X, y, n_classes, name):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X{name} must have shape (n, d), got {X.shape}")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y{name} must have shape ({len(X)},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y{name} must hold integer class labels, got dtype {y.dtype}")
    if len(y) and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        raise ValueError(f"y{name} must hold labels in 0..{n_classes - 1 if n_classes else 'K-1'}, "
                         f"got {y.min()}..{y.max()}")
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def _n_outputs(model):
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else None


@torch.no_grad()
def _predict_tensor(model, X, batch_size=4096):
    was_training = model.training
    model.eval()
    out = torch.cat([model(X[i:i + batch_size]).argmax(dim=1) for i in range(0, len(X), batch_size)])
    model.train(was_training)
    return out


def _error(model, X, y):
    # count, then divide in Python: the same float as numpy's mean of the mistakes
    return (_predict_tensor(model, X) != y).sum().item() / len(y)


def predict(model: nn.Module, X, device=None, batch_size: int = 4096) -> np.ndarray:
    """The predicted classes (arg max of the logits) of ``model`` on the rows of ``X``, as a numpy array.

    Runs in eval mode, ``batch_size`` rows at a time, on ``device`` (``None`` for
    :func:`~poisoning.device.get_device`); the model is moved there.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {X.shape}")
    device = get_device(device) if device is None or isinstance(device, str) else device
    model = model.to(device)
    return _predict_tensor(model, torch.as_tensor(X, dtype=torch.float32, device=device), batch_size).cpu().numpy()


def error_rate(model: nn.Module, X, y, device=None) -> float:
    r"""The 0/1 error :math:`\frac1n \sum_i \mathbb 1[\arg\max_k f(x_i)_k \ne y_i]` of ``model`` on ``(X, y)``."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y must have shape ({len(X)},), got {y.shape}")
    return float(np.mean(predict(model, X, device) != y))


def _make_optimizer(optimizer, params, lr, momentum, weight_decay):
    if callable(optimizer):
        return optimizer(params)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'adam' or a function params -> torch optimizer, got {optimizer!r}")


def train(model: nn.Module, X, y, X_test=None, y_test=None, *, epochs: int = 100, batch_size: int = 32,
          optimizer: str | Callable = "sgd", lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
          stop_at_zero_error: bool = False,
          random_state: int | np.random.RandomState | np.random.Generator | None = 0, device=None,
          progress: bool = True,
          desc: str | None = None) -> TrainingHistory:
    """Train ``model`` (logits out) on ``(X, y)`` with cross-entropy and mini-batches; returns a
    :class:`TrainingHistory`. The model is trained in place and left on ``device``.

    Every epoch visits the training set once in a fresh random order, in ``ceil(n / batch_size)`` steps of
    ``optimizer``: ``"sgd"`` (with ``momentum``) or ``"adam"``, both with learning rate ``lr`` and
    ``weight_decay``, or a function ``params -> torch.optim.Optimizer`` for anything else. After each epoch
    the 0/1 error on ``(X, y)`` and on ``(X_test, y_test)`` (when given) is computed with the model in eval
    mode. With ``stop_at_zero_error`` training ends after the first epoch with zero training error.

    ``device``: a ``torch.device``, a name, or ``None`` for :func:`~poisoning.device.get_device`.
    ``random_state`` (an integer, a ``numpy.random.RandomState``, a ``numpy.random.Generator`` or ``None``) seeds
    the mini-batch order and anything random inside the model (dropout), without touching torch's global
    random state. ``progress`` shows a ``tqdm`` bar over the epochs, labelled ``desc``.
    """
    from tqdm.auto import tqdm

    epochs = check_count(epochs, "epochs", low=1)
    batch_size = check_count(batch_size, "batch_size", low=1)
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    seed = _torch_seed(random_state)
    n_classes = _n_outputs(model)
    X_t, y_t = _as_tensors(X, y, n_classes, "")
    if len(X_t) == 0:
        raise ValueError("the training set is empty")
    has_test = X_test is not None
    if has_test:
        X_s, y_s = _as_tensors(X_test, y_test, n_classes, "_test")
        if X_s.shape[1] != X_t.shape[1]:
            raise ValueError(f"X_test has {X_s.shape[1]} features but X has {X_t.shape[1]}")

    device = get_device(device) if device is None or isinstance(device, str) else torch.device(device)
    model = model.to(device)
    # the whole (small) data set lives on the device: no data loader, no copies per step
    X_t, y_t = X_t.to(device), y_t.to(device)
    if has_test:
        X_s, y_s = X_s.to(device), y_s.to(device)

    n = len(X_t)
    history = TrainingHistory(steps_per_epoch=-(-n // batch_size))
    opt = _make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    order_rng = torch.Generator().manual_seed(seed)

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        bar = tqdm(total=epochs, desc=desc, unit="epoch", disable=not progress, leave=True)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(n, generator=order_rng).to(device)
            losses = []
            for start in range(0, n, batch_size):
                batch = order[start:start + batch_size]
                loss = loss_fn(model(X_t[batch]), y_t[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            # one transfer per epoch, not one synchronisation per step
            history.loss.extend(torch.stack(losses).cpu().tolist())
            train_err = _error(model, X_t, y_t)
            history.train_error.append(train_err)
            postfix = {"loss": f"{history.loss[-1]:.3f}", "train err": f"{train_err:.3f}"}
            if has_test:
                history.test_error.append(_error(model, X_s, y_s))
                postfix["test err"] = f"{history.test_error[-1]:.3f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if train_err == 0.0 and history.epochs_to_fit is None:
                history.epochs_to_fit = epoch + 1
                history.steps_to_fit = history.steps
                if stop_at_zero_error:
                    # a finished run, not an interrupted one: the bar ends full (notebooks colour it green)
                    bar.total = bar.n
                    bar.refresh()
                    break
        bar.close()
    model.eval()
    return history
