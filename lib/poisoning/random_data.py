"""Random data: the five corruptions of Zhang et al. as dataset transforms.

Defined in chapter "Learning from random data" (``chapters/04_random_labels.md``).

Zhang et al. train the same network on a data set :math:`\\{(x_i, y_i)\\}_{i=1}^n` with ``K`` classes after
destroying part or all of the relation between images and labels:

* **partially corrupted labels** (:func:`corrupt_labels`): independently with probability ``p``, a label is
  replaced by a class drawn uniformly from all ``K`` classes (so it may, by chance, stay correct);
* **random labels** (:func:`random_labels`): every label is replaced, the case ``p = 1``;
* **shuffled pixels** (:class:`ShuffledPixels`): one random permutation :math:`\\pi` of the ``d`` pixels,
  drawn once, is applied to every image of the training *and* the test set, :math:`x \\mapsto x_\\pi`;
* **random pixels** (:class:`RandomPixels`): every image gets its own random permutation
  :math:`\\pi_i`, :math:`x_i \\mapsto (x_i)_{\\pi_i}`;
* **Gaussian** (:class:`GaussianPixels`): every image is replaced by pure noise
  :math:`x_i \\sim \\mathcal N(\\mu, \\sigma^2 I_d)` with the mean :math:`\\mu` and variance :math:`\\sigma^2` of the
  pixels of the original data set.

The label corruptions are plain functions of ``y``. The pixel corruptions are scikit-learn style
transformers of ``X`` (shape ``(n, d)``, one flattened image per row): ``fit`` learns what must be shared
between the training and the test set (the permutation, the mean and variance) and returns ``self``;
``transform`` applies it. :func:`corrupt_dataset` applies any of the settings to a train/test split at once.
All randomness comes from ``random_state`` (``None``, an integer seed, a ``numpy.random.RandomState`` or a
``numpy.random.Generator``).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from poisoning._validation import check_images as _check_images
from poisoning._validation import check_number, check_random_state

__all__ = [
    "SETTINGS",
    "corrupt_labels",
    "random_labels",
    "ShuffledPixels",
    "RandomPixels",
    "GaussianPixels",
    "corrupt_dataset",
]

#: The settings of :func:`corrupt_dataset`: the clean data, then the corruptions of Zhang et al.
SETTINGS = ("true labels", "partially corrupted labels", "random labels", "shuffled pixels", "random pixels",
            "gaussian")


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _check_labels(y, name="y"):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a one-dimensional array of labels, got shape {y.shape}")
    return y


def _check_probability(p):
    return check_number(p, "the corruption probability p", low=0, high=1)


# --------------------------------------------------------------------------------------------------
# label corruptions
# --------------------------------------------------------------------------------------------------
def corrupt_labels(y, p, classes=None, random_state=None):
    r"""Partially corrupted labels: each label is, with probability ``p``, replaced by a uniform random class.

    For every :math:`i` independently, draw :math:`b_i \sim \mathrm{Bernoulli}(p)` and
    :math:`u_i \sim \mathrm{Uniform}(\mathcal Y)`, and return :math:`\tilde y_i = u_i` if :math:`b_i = 1`
    else :math:`y_i`. As in Zhang et al., the new class is uniform over *all* :math:`K = |\mathcal Y|` classes,
    the original one included, so a label changes with probability :math:`p\,(1 - 1/K)` and
    :math:`\Pr[\tilde y_i = c \mid y_i] = (1 - p)\,\mathbb 1[c = y_i] + p / K`.

    ``classes`` is the label set :math:`\mathcal Y` to draw from (default: the distinct values of ``y``).
    Returns a new array with the shape and dtype of ``y``; ``y`` itself is not modified. Raises
    ``ValueError`` for ``p`` outside ``[0, 1]``, labels that are not a 1-D array, or labels outside ``classes``;
    ``TypeError`` for a ``p`` that is not a number.
    """
    y = _check_labels(y)
    p = _check_probability(p)
    classes = np.unique(y) if classes is None else np.unique(np.asarray(classes))
    if classes.size == 0:
        raise ValueError("there are no classes to draw labels from")
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise ValueError(f"labels {unknown.tolist()} are not among the classes {classes.tolist()}")
    rng = check_random_state(random_state)
    # draw both for every point, whatever p is: the same seed then corrupts a growing superset as p grows
    resample = rng.random_sample(len(y)) < p
    new = classes[rng.randint(len(classes), size=len(y))]
    y_new = y.copy()
    y_new[resample] = new[resample].astype(y.dtype, copy=False)
    return y_new


def random_labels(y, classes=None, random_state=None):
    r"""Random labels: every label is replaced by an independent uniform random class, :math:`\tilde y_i \sim
    \mathrm{Uniform}(\mathcal Y)`.

    The case ``p = 1`` of :func:`corrupt_labels` (same arguments, same random draws). The images keep nothing
    that predicts their labels: the best possible test error is :math:`1 - 1/K`, 90% for ten classes.
    """
    return corrupt_labels(y, 1.0, classes=classes, random_state=random_state)


# --------------------------------------------------------------------------------------------------
# pixel corruptions
# --------------------------------------------------------------------------------------------------
class _PixelTransform(TransformerMixin, BaseEstimator):
    """Shared checks: remember the number of pixels at ``fit``, insist on it at ``transform``."""

    def _fit_check(self, X):
        X = _check_images(X)
        if X.shape[1] == 0:
            raise ValueError("X has no pixels (d = 0)")
        self.n_features_in_ = X.shape[1]
        return X

    def _transform_check(self, X):
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")
        X = _check_images(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} pixels per image, but {type(self).__name__} was fitted on "
                             f"{self.n_features_in_}")
        return X


class ShuffledPixels(_PixelTransform):
    r"""Shuffled pixels: one random permutation of the pixels, shared by every image.

    ``fit(X)`` draws a permutation :math:`\pi` of :math:`\{0, \dots, d-1\}` and stores it as ``permutation_``;
    ``transform(X)`` returns :math:`(x_{\pi(0)}, \dots, x_{\pi(d-1)})` for every row ``x``. Fit once on the
    training set and transform both the training and the test set, so that both see the *same* scrambling:
    the images lose their spatial structure, but pixel :math:`j` still means the same thing in every image,
    and a network that does not use locality (an MLP) can learn as well as on the original images.

    ``transform`` keeps the shape, dtype and, in each image, the multiset of pixel values.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y=None):
        """Draw the permutation for images with ``X.shape[1]`` pixels; returns ``self``."""
        X = self._fit_check(X)
        self.permutation_ = check_random_state(self.random_state).permutation(X.shape[1])
        return self

    def transform(self, X):
        """Apply the fitted permutation to every row of ``X``."""
        X = self._transform_check(X)
        return X[:, self.permutation_]


class RandomPixels(_PixelTransform):
    r"""Random pixels: each image gets its own random permutation of its pixels.

    ``transform(X)`` draws an independent permutation :math:`\pi_i` for every row and returns
    :math:`(x_i)_{\pi_i}`. Every image keeps its multiset of pixel values (its histogram), but the position of
    a value says nothing any more, in the same image or across images: the inputs are noise that merely has
    the pixel histogram of a digit. ``fit`` only records the number of pixels; there is nothing to share
    between training and test set.

    With an integer ``random_state`` every call to ``transform`` draws the same permutations (as scikit-learn
    estimators do); pass a ``RandomState`` or a ``Generator`` to get fresh ones on each call.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y=None):
        """Record the number of pixels; returns ``self``."""
        self._fit_check(X)
        return self

    def transform(self, X):
        """Permute the pixels of every row of ``X`` independently."""
        X = self._transform_check(X)
        rng = check_random_state(self.random_state)
        # argsort of i.i.d. uniforms is a uniformly random permutation, one per row
        order = np.argsort(rng.random_sample(X.shape), axis=1)
        return np.take_along_axis(X, order, axis=1)


class GaussianPixels(_PixelTransform):
    r"""Gaussian: every image is replaced by Gaussian noise with the data set's mean and variance.

    ``fit(X)`` computes the mean :math:`\mu` and the variance :math:`\sigma^2` of all the pixel values of
    ``X`` (``mean_``, ``var_``); ``transform(X)`` returns a fresh array of the same shape with i.i.d. entries
    :math:`\mathcal N(\mu, \sigma^2)`, unrelated to the input beyond its shape. With ``per_pixel=True`` every
    pixel :math:`j` gets its own :math:`\mu_j, \sigma_j^2` (``mean_``, ``var_`` are then arrays of length ``d``).

    The output has the dtype of ``X`` when that is a floating type, else ``float64``. Random-state behaviour
    is that of :class:`RandomPixels`.
    """

    def __init__(self, per_pixel=False, random_state=None):
        self.per_pixel = per_pixel
        self.random_state = random_state

    def fit(self, X, y=None):
        """Estimate the pixel mean and variance of ``X``; returns ``self``."""
        X = self._fit_check(X).astype(np.float64)
        if len(X) == 0:
            raise ValueError("cannot estimate a mean and variance from zero images")
        axis = 0 if self.per_pixel else None
        self.mean_ = X.mean(axis=axis)
        self.var_ = X.var(axis=axis)
        return self

    def transform(self, X):
        """Return Gaussian images shaped like ``X``."""
        X = self._transform_check(X)
        rng = check_random_state(self.random_state)
        noise = self.mean_ + np.sqrt(self.var_) * rng.standard_normal(X.shape)
        dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
        return noise.astype(dtype, copy=False)


# --------------------------------------------------------------------------------------------------
# a whole experiment's data
# --------------------------------------------------------------------------------------------------
def corrupt_dataset(setting, X_train, y_train, X_test, y_test, p=None, random_state=None):
    """Apply one of the :data:`SETTINGS` to a train/test split; returns ``X_train, y_train, X_test, y_test``.

    * ``"true labels"``: the data unchanged;
    * ``"partially corrupted labels"`` (needs ``p``) and ``"random labels"``: the training labels are
      corrupted with :func:`corrupt_labels`; the test labels stay true, so the test error measures how well
      the network learned the real task;
    * ``"shuffled pixels"``: one :class:`ShuffledPixels` permutation, fitted on the training set, is applied
      to the training and the test images;
    * ``"random pixels"`` and ``"gaussian"``: :class:`RandomPixels` and :class:`GaussianPixels` (fitted on the
      training set) replace the training and the test images (with different random draws), so test error is
      at chance: there is nothing left to generalise from.

    ``p`` is only accepted for ``"partially corrupted labels"``. The inputs are never modified.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose one of {list(SETTINGS)}")
    if (p is not None) != (setting == "partially corrupted labels"):
        raise ValueError("p must be given for 'partially corrupted labels' and only for it")
    X_train, X_test = _check_images(X_train, "X_train"), _check_images(X_test, "X_test")
    y_train, y_test = _check_labels(y_train, "y_train"), _check_labels(y_test, "y_test")
    if len(X_train) != len(y_train) or len(X_test) != len(y_test):
        raise ValueError(f"X and y lengths differ: train {len(X_train)} vs {len(y_train)}, "
                         f"test {len(X_test)} vs {len(y_test)}")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"train and test images have different numbers of pixels "
                         f"({X_train.shape[1]} and {X_test.shape[1]})")
    rng = check_random_state(random_state)
    X_train, y_train, X_test, y_test = X_train.copy(), y_train.copy(), X_test.copy(), y_test.copy()
    classes = np.union1d(y_train, y_test)
    if setting == "partially corrupted labels":
        y_train = corrupt_labels(y_train, p, classes=classes, random_state=rng)
    elif setting == "random labels":
        y_train = random_labels(y_train, classes=classes, random_state=rng)
    elif setting != "true labels":
        transform = {"shuffled pixels": ShuffledPixels, "random pixels": RandomPixels,
                     "gaussian": GaussianPixels}[setting](random_state=rng).fit(X_train)
        X_train, X_test = transform.transform(X_train), transform.transform(X_test)
    return X_train, y_train, X_test, y_test
