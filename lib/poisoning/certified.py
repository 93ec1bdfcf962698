r"""Certified defences against poisoning: partition aggregation (DPA, Finite Aggregation) and label-flip smoothing.

Defined in chapter "Certified defences" (``chapters/10_certified_defences.md``), after Levine and Feizi 2021 (Deep
Partition Aggregation), Wang, Levine and Feizi 2022 (Finite Aggregation) and Rosenfeld et al. 2020 (certified
robustness to label flipping by randomised smoothing).

A certified defence answers, for every test prediction, the question "could an attacker who changes at most
:math:`r` training points have changed this prediction?" with a proof, not with an attack that happened to fail.
Its output is a **certified radius** :math:`\rho(x)` per test point: no poisoning of size :math:`\le \rho(x)`
changes the prediction at :math:`x`. The size of a poisoning :math:`D \to D'` is the number of inserted plus
removed samples, :math:`|D \ominus D'|`; modifying a sample is a removal and an insertion and counts twice.

**Deep Partition Aggregation** (:class:`DPAClassifier`). A hash of a sample's *content* picks one of :math:`k`
partitions: here the integer pixel sum

.. math::

    h(x) = \Big(\sum_j \operatorname{round}(s\, x_j)\Big) \bmod k ,

with :math:`s = 255` for images in :math:`[0, 1]` (so :math:`\operatorname{round}(s x_j)` are the 8-bit pixel
values; :func:`content_hash`). Because the hash depends on the content alone, the partition does not depend on
the order of the samples, and an inserted or removed sample touches exactly one partition. One base classifier
:math:`f_b` is trained on each partition :math:`P_b = \{(x, y) \in D : h(x) = b\}`, the ensemble votes,

.. math::

    N_c(x) = |\{b : f_b(x) = c\}|, \qquad g(x) = \operatorname{arg\,max}_c N_c(x)
    \quad\text{(ties to the smaller class index)},

and the certificate (Levine and Feizi 2021) is

.. math::

    \rho(x) = \min_{c \neq g(x)} \left\lfloor \frac{N_{g(x)}(x) - N_c(x) - \mathbb 1[c < g(x)]}{2} \right\rfloor .

*Proof.* :math:`r` insertions or removals change at most :math:`r` partitions, hence at most :math:`r` votes; one
changed vote lowers :math:`N_{g} - N_c` by at most 2 (one vote moves from :math:`g` to :math:`c`). :math:`g` still
wins against :math:`c` as long as :math:`N_g - N_c - \mathbb 1[c < g] \ge 0`, i.e. for
:math:`2r \le N_g - N_c - \mathbb 1[c < g]`. The minimum over :math:`c` is attained by the runner-up of the
stable ranking (largest :math:`N_c`, ties to the smaller index), which gives the paper's form
:math:`\lfloor (n_1 - n_2 - \mathbb 1[c_2 < c_1]) / 2 \rfloor` (:func:`dpa_certificate`). A wrong prediction
certifies nothing: its radius is :math:`-1`.

**Finite Aggregation** (:class:`FAClassifier`). With :math:`d` copies of every sample, the hash takes :math:`kd`
values, :math:`h(x) = (\sum_j \operatorname{round}(s x_j)) \bmod kd`, and the sample is placed in the :math:`d`
buckets :math:`(h(x) + s_j) \bmod kd`, :math:`j = 1, \dots, d`, for fixed distinct shifts :math:`s_j` (drawn as in
the official code, :func:`fa_shifts`). :math:`kd` base classifiers are trained, one per bucket, and vote as above. A
poisoned sample with hash value :math:`h` can only change the :math:`d` learners of :math:`B_h = \{(h + s_j) \bmod
kd\}`; against a class :math:`c \ne y` it lowers :math:`N_y - N_c` by at most

.. math::

    \delta_h(c) = \sum_{b \in B_h} \big(1 + \mathbb 1[f_b(x) = y] - \mathbb 1[f_b(x) = c]\big)

(2 for a learner that votes :math:`y`, 0 for one that already votes :math:`c`, 1 otherwise). With the gap
:math:`\Delta_c = N_y - N_c - \mathbb 1[c < y]`, the radius against :math:`c` is the largest :math:`r` such that the
:math:`r` largest :math:`\delta_h(c)` sum to at most :math:`\Delta_c`, and :math:`\rho(x)` is the minimum over
:math:`c \ne y` (Wang, Levine and Feizi 2022; :func:`fa_certificate`). With :math:`d = 1` the
:math:`\delta`'s are 2 (the :math:`N_y` learners voting :math:`y`), 1 and 0, and the radius is
:math:`\lfloor \Delta_c / 2 \rfloor`: DPA's certificate.

**Label-flip smoothing** (:class:`LabelFlipSmoothing`), for two classes and an attacker who flips training labels.
Least squares with an :math:`\ell_2` penalty on fixed features predicts :math:`\alpha(x)^\top y` with
:math:`\alpha(x)` independent of the labels :math:`y \in \{0, 1\}^n`. The smoothed classifier flips each training
label independently with probability :math:`q < 1/2` and predicts the more likely class of
:math:`\mathbb 1[\alpha(x)^\top \tilde y > 1/2]`; the probability :math:`p` of its class is computed exactly (by
enumeration, small :math:`n`) or bounded below by the Chernoff bound (Rosenfeld et al. 2020). The radius
:math:`r` follows from :math:`p` and :math:`q` alone (:func:`label_flip_radius`; the derivation is in its
docstring).

**Soundness by search** (:func:`search_poisoning_attacks`): on small instances, an adversary who inserts and
removes training samples (exhaustively over all small attacks, or greedily against the votes), retraining the
base classifiers it touches, must never change a prediction within its certified radius.

**Parallel training.** The base classifiers are trained through :class:`joblib.Parallel` (``n_jobs``), or on a Dask
cluster through joblib's ``dask`` backend when ``scheduler`` (an address or a ``distributed.Client``) is given. Each
base classifier gets its own seed and its partition in an order fixed by the content, so the serial, the parallel
and the distributed ensembles are identical.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed, parallel_config
from scipy.special import gammaln
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from poisoning._validation import check_random_state
from poisoning._validation import check_X as _check_X
from poisoning._validation import check_Xy as _check_Xy

__all__ = [
    "FA_SHIFT_SEED",
    "content_hash",
    "dpa_partition",
    "fa_shifts",
    "fa_partition",
    "dpa_certificate",
    "fa_certificate",
    "certified_accuracy",
    "median_certified_radius",
    "DPAClassifier",
    "FAClassifier",
    "label_flip_radius",
    "LabelFlipSmoothing",
    "FoundAttack",
    "AttackSearchResult",
    "search_poisoning_attacks",
]

#: The seed of Python's ``random`` from which the official Finite Aggregation code draws its shifts.
FA_SHIFT_SEED = 999999999 + 208


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _is_int(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, Integral)


def _check_positive_int(value, name):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_scale(scale):
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, Real) or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return float(scale)


def _check_int_array(a, name, ndim):
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-dimensional array, got shape {a.shape}")
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must hold integers")
    return a.astype(np.int64)


def _check_y_true(y_true, n, n_classes):
    if y_true is None:
        return None
    y_true = _check_int_array(y_true, "y_true", 1)
    if len(y_true) != n:
        raise ValueError(f"y_true has {len(y_true)} entries but there are {n} samples")
    if np.any((y_true < 0) | (y_true >= n_classes)):
        raise ValueError(f"y_true must hold class indices in [0, {n_classes})")
    return y_true


# --------------------------------------------------------------------------------------------------
# partitions
# --------------------------------------------------------------------------------------------------
def content_hash(X, scale=255):
    r"""The content hash of every row of ``X``: :math:`\sum_j \operatorname{round}(s\, x_j)` as an ``int64``.

    For images in :math:`[0, 1]` the default :math:`s = 255` recovers the 8-bit pixel values, as the official DPA
    and Finite Aggregation code does (``(x * 255).int()``). We round instead of truncating: for values on the 8-bit
    grid both agree, and a value off the grid (a digit of scikit-learn's 8x8 set, :math:`3/16 \cdot 255 = 47.8`, or
    the result of arithmetic on an image) goes to the nearest integer rather than always down. For scikit-learn's
    8x8 digits scaled to :math:`[0, 1]` by :func:`poisoning.data.load_digits`, ``scale=16`` gives back the original
    0..16 values; any fixed scale gives a valid content hash.
    """
    scale = _check_scale(scale)
    X = _check_X(X)
    return np.rint(X * scale).astype(np.int64).sum(axis=1)


def dpa_partition(X, k, scale=255):
    r"""The DPA partition :math:`h(x) = (\sum_j \operatorname{round}(s\, x_j)) \bmod k` of every row of ``X``.

    Returns an ``int64`` array in ``0..k-1``. It depends on each sample's content only, never on its position.
    """
    k = _check_positive_int(k, "k")
    return np.mod(content_hash(X, scale), k)


def fa_shifts(k, d, seed=FA_SHIFT_SEED):
    r"""The :math:`d` distinct shifts :math:`s_1 = 0, s_2, \dots, s_d` of Finite Aggregation, in ``0..kd-1``.

    The official code draws ``random.seed(999999999 + 208); shifts = random.sample(range(k * d), d)``. We draw the
    same numbers and subtract the first one modulo :math:`kd`, so that :math:`s_1 = 0` and a sample's first bucket
    is its hash value, as in DPA. This only renames the buckets: the official bucket :math:`(h + t_j) \bmod kd`
    is our bucket :math:`(h' + s_j) \bmod kd` of the hash value :math:`h' = h + t_1`, so the learners, the sets of
    learners that one sample reaches and the certificate are the same. With :math:`d = 1` the single shift is 0
    and Finite Aggregation is DPA with :math:`k` partitions.
    """
    k = _check_positive_int(k, "k")
    d = _check_positive_int(d, "d")
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    n = k * d
    drawn = random.Random(int(seed)).sample(range(n), d)
    return np.mod(np.asarray(drawn, dtype=np.int64) - drawn[0], n)


def _check_shifts(shifts, n_learners=None):
    shifts = _check_int_array(shifts, "shifts", 1)
    if len(shifts) == 0:
        raise ValueError("shifts must not be empty")
    if len(np.unique(shifts)) != len(shifts):
        raise ValueError(f"shifts must be distinct, got {shifts.tolist()}")
    if n_learners is not None:
        if n_learners % len(shifts):
            raise ValueError(f"the number of learners ({n_learners}) must be a multiple of d = len(shifts) "
                             f"({len(shifts)})")
        if np.any((shifts < 0) | (shifts >= n_learners)):
            raise ValueError(f"shifts must lie in [0, {n_learners}), got {shifts.tolist()}")
    return shifts


def fa_partition(X, k, d, scale=255, shifts=None):
    r"""The :math:`d` buckets :math:`(h(x) + s_j) \bmod kd` of every row of ``X``, shape ``(n, d)``.

    :math:`h(x) = (\sum_j \operatorname{round}(s\, x_j)) \bmod kd`; ``shifts`` defaults to :func:`fa_shifts`.
    """
    k = _check_positive_int(k, "k")
    d = _check_positive_int(d, "d")
    n_learners = k * d
    if shifts is None:
        shifts = fa_shifts(k, d)
    else:
        shifts = _check_shifts(shifts)
        if len(shifts) != d:
            raise ValueError(f"shifts has {len(shifts)} entries, expected d = {d}")
        shifts = _check_shifts(shifts, n_learners)
    h = np.mod(content_hash(X, scale), n_learners)
    return np.mod(h[:, None] + shifts[None, :], n_learners)


# --------------------------------------------------------------------------------------------------
# certificates on vote tables
# --------------------------------------------------------------------------------------------------
def _check_votes(votes):
    votes = _check_int_array(votes, "votes", 2)
    if votes.shape[1] < 2:
        raise ValueError(f"votes must have a column per class and at least two classes, got shape {votes.shape}")
    if np.any(votes < 0):
        raise ValueError("votes must be non-negative counts")
    return votes


def dpa_certificate(votes, y_true=None):
    r"""The DPA certificate of every row of a vote table.

    Parameters
    ----------
    votes : array of int, shape (n_samples, n_classes)
        ``votes[i, c]`` is :math:`N_c(x_i)`, the number of base classifiers that vote for class index ``c``
        (rows may sum to less than :math:`k` where base classifiers abstain).
    y_true : array of int, shape (n_samples,), optional
        True class indices (columns of ``votes``).

    Returns
    -------
    ndarray of int64, shape (n_samples,)
        :math:`\rho_i = \min_{c \ne g_i} \lfloor (N_{g_i} - N_c - \mathbb 1[c < g_i]) / 2 \rfloor` where
        :math:`g_i` is the plurality vote with ties broken to the smaller class index; :math:`-1` where ``y_true``
        is given and :math:`g_i \ne y_i`. No insertion or removal of :math:`\le \rho_i` training samples changes
        the prediction :math:`g_i`.
    """
    votes = _check_votes(votes)
    n, n_classes = votes.shape
    y_true = _check_y_true(y_true, n, n_classes)
    rows = np.arange(n)
    pred = np.argmax(votes, axis=1)  # the first maximum: ties go to the smaller index
    top = votes[rows, pred]
    gap = top[:, None] - votes - (np.arange(n_classes)[None, :] < pred[:, None])
    gap[rows, pred] = np.iinfo(np.int64).max
    radius = np.floor_divide(gap.min(axis=1), 2)
    if y_true is not None:
        radius[pred != y_true] = -1
    return radius.astype(np.int64)


def _votes_from_predictions(predictions, n_classes):
    """Vote table ``(n, n_classes)`` from base-classifier predictions (``-1``: abstain)."""
    n = predictions.shape[0]
    codes = predictions + (np.arange(n) * (n_classes + 1) + 1)[:, None]  # abstentions land in a spare column
    votes = np.bincount(codes.ravel(), minlength=n * (n_classes + 1)).reshape(n, n_classes + 1)
    return votes[:, 1:].astype(np.int64)


def fa_certificate(learner_predictions, shifts, n_classes=None, y_true=None):
    r"""The Finite Aggregation certificate from the predictions of the :math:`kd` base classifiers.

    Parameters
    ----------
    learner_predictions : array of int, shape (n_samples, k * d)
        Column ``b`` holds the class index that base classifier ``b`` (trained on bucket ``b``) predicts, ``-1``
        where it abstains.
    shifts : array of int, shape (d,)
        The shifts :math:`s_j` (:func:`fa_shifts`): a sample of hash value :math:`h` sits in the buckets
        :math:`(h + s_j) \bmod kd`.
    n_classes : int, optional
        Number of classes; by default one more than the largest prediction (at least 2).
    y_true : array of int, shape (n_samples,), optional
        True class indices.

    Returns
    -------
    ndarray of int64, shape (n_samples,)
        With :math:`y` the plurality vote (or ``y_true``), for every class :math:`c \ne y` the gap
        :math:`\Delta_c = N_y - N_c - \mathbb 1[c < y]` and, for every hash value :math:`h`,
        :math:`\delta_h(c) = \sum_{b \in B_h} (1 + \mathbb 1[f_b = y] - \mathbb 1[f_b = c])`; the radius against
        :math:`c` is the number of :math:`\delta`'s, taken in descending order, that can be subtracted from
        :math:`\Delta_c` while it stays :math:`\ge 0`, and the certificate is the minimum over :math:`c`. It is
        :math:`-1` where the plurality vote is not ``y_true``. This is the loop of the official
        ``FiniteAggregation_cerfity.py``, vectorised.
    """
    preds = _check_int_array(learner_predictions, "learner_predictions", 2)
    n, n_learners = preds.shape
    shifts = _check_shifts(shifts, n_learners)
    if np.any(preds < -1):
        raise ValueError("learner_predictions must hold class indices or -1 (abstain)")
    if n_classes is None:
        n_classes = max(2, int(preds.max(initial=-1)) + 1)
    n_classes = _check_positive_int(n_classes, "n_classes")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    if np.any(preds >= n_classes):
        raise ValueError(f"learner_predictions must hold class indices in [0, {n_classes}) or -1")
    y_true = _check_y_true(y_true, n, n_classes)
    votes = _votes_from_predictions(preds, n_classes)
    pred = np.argmax(votes, axis=1)
    y = pred if y_true is None else y_true
    rows = np.arange(n)
    d = len(shifts)
    groups = np.mod(np.arange(n_learners)[:, None] + shifts[None, :], n_learners)  # learners of each hash value
    grouped = preds[:, groups]  # (n, n_hash, d)
    is_y = (grouped == y[:, None, None]).sum(axis=2)
    radius = np.full(n, n_learners, dtype=np.int64)
    for c in range(n_classes):
        against = y != c
        if not np.any(against):
            continue
        gap = votes[rows, y] - votes[:, c] - (c < y)
        deltas = d + is_y - (grouped == c).sum(axis=2)
        deltas = -np.sort(-deltas, axis=1)
        # deltas >= 0, so the running sums increase and the official while-loop stops at the first one > gap
        r_c = (np.cumsum(deltas, axis=1) <= gap[:, None]).sum(axis=1)
        radius = np.where(against, np.minimum(radius, r_c), radius)
    radius[pred != y] = -1
    return radius


def certified_accuracy(radii, r):
    r"""The fraction of test points certified at radius ``r``: :math:`\frac1m |\{i : \rho_i \ge r\}|`.

    ``radii`` come from a ``certified_radius(X, y)`` call with labels (wrong predictions have :math:`-1`), so at
    ``r = 0`` this is the clean accuracy of the ensemble. ``r`` may be an array; the result has its shape.
    """
    radii = _check_int_array(radii, "radii", 1)
    if len(radii) == 0:
        raise ValueError("radii is empty")
    r_arr = np.asarray(r)
    result = (radii[None, :] >= r_arr.reshape(-1, 1)).mean(axis=1)
    return float(result[0]) if r_arr.ndim == 0 else result.reshape(r_arr.shape)


def median_certified_radius(radii):
    r"""The median certified robustness: the largest :math:`r` with certified accuracy :math:`\ge 1/2`.

    Equal to the :math:`\lceil m/2 \rceil`-th largest radius; :math:`-1` when fewer than half of the predictions
    are correct. The official DPA and Finite Aggregation scripts print ``sum(accs >= .5)`` over
    :math:`r = 0, 1, \dots`, which is this number plus one.
    """
    radii = _check_int_array(radii, "radii", 1)
    if len(radii) == 0:
        raise ValueError("radii is empty")
    ordered = np.sort(radii)[::-1]
    return int(max(ordered[(len(radii) + 1) // 2 - 1], -1))


# --------------------------------------------------------------------------------------------------
# the base classifiers
# --------------------------------------------------------------------------------------------------
class _ConstantMember:
    """A base classifier that always predicts one class index (``-1``: abstains)."""

    def __init__(self, label):
        self.label = int(label)

    def predict(self, X):
        return np.full(len(X), self.label, dtype=np.int64)

    def __repr__(self):
        return "_ConstantMember(abstain)" if self.label < 0 else f"_ConstantMember({self.label})"


def _content_order(X, y):
    """Positions of the rows of ``(X, y)`` sorted by content (first feature first, label last)."""
    if len(X) == 0:
        return np.arange(0)
    keys = np.vstack([y[None, :].astype(np.float64), X.T[::-1]])
    return np.lexsort(keys)


def _fit_member(estimator, X, y, seed):
    """Train one base classifier on ``(X, y)`` (class indices); a constant one when ``y`` has < 2 classes."""
    if len(y) == 0:
        return _ConstantMember(-1)
    labels = np.unique(y)
    if len(labels) == 1:
        return _ConstantMember(labels[0])
    order = _content_order(X, y)
    model = clone(estimator)
    if "random_state" in model.get_params():
        model.set_params(random_state=int(seed))
    return model.fit(X[order], y[order])


def _fit_member_single_thread(estimator, X, y, seed):
    """:func:`_fit_member` with BLAS and OpenMP limited to one thread (in a joblib or Dask worker)."""
    with threadpool_limits(limits=1):
        return _fit_member(estimator, X, y, seed)


def _member_predict(member, X):
    return np.asarray(member.predict(X)).astype(np.int64)


def _dask_client(scheduler):
    """``(client, owned)`` for ``scheduler``: a ``distributed.Client``, a cluster, or a scheduler address."""
    try:
        import distributed
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("scheduler= needs the 'distributed' package (pip install 'dask[distributed]')") from None
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if isinstance(scheduler, str) or hasattr(scheduler, "scheduler_address"):
        return distributed.Client(scheduler, set_as_default=False), True
    raise ValueError(f"scheduler must be a Dask scheduler address or a distributed.Client, got {scheduler!r}")


def _train_members(estimator, X, y, members, seeds, n_jobs, scheduler, progress, desc):
    """Fit one base classifier per index set in ``members``, in parallel; results in the order of ``members``.

    Every fit runs with BLAS and OpenMP limited to one thread: the ensemble is many small fits, the parallelism
    comes from ``n_jobs`` (and oversubscribed BLAS threads can make small fits many times slower).
    """
    from tqdm.auto import tqdm

    serial = scheduler is None and n_jobs in (None, 1)
    fit = _fit_member if serial else _fit_member_single_thread
    tasks = (delayed(fit)(estimator, X[idx], y[idx], seed) for idx, seed in zip(members, seeds))

    def run(n):
        results = Parallel(n_jobs=n, return_as="generator")(tasks)
        return list(tqdm(results, total=len(members), desc=desc, unit="model", disable=not progress))

    if serial:
        with threadpool_limits(limits=1):
            return run(None)
    if scheduler is None:
        return run(n_jobs)
    client, owned = _dask_client(scheduler)
    try:
        with parallel_config(backend="dask", client=client):
            return run(-1 if n_jobs is None else n_jobs)
    finally:
        if owned:
            client.close()


# --------------------------------------------------------------------------------------------------
# the ensembles
# --------------------------------------------------------------------------------------------------
class _PartitionEnsemble(ClassifierMixin, BaseEstimator):
    """Shared machinery of DPA and Finite Aggregation; subclasses define the buckets of a sample."""

    # -- subclass hooks ----------------------------------------------------------------------------
    def _validate_params(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _n_learners(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _hash_buckets(self, h):
        """Buckets ``(n, d)`` of hash values ``h`` (in ``0..n_learners-1``)."""
        return np.mod(np.asarray(h)[:, None] + self.shifts_[None, :], self._n_learners())

    def _certificate(self, predictions, y_idx):  # pragma: no cover - abstract
        raise NotImplementedError

    def _store_partition(self, buckets):
        return buckets

    # -- shared validation -------------------------------------------------------------------------
    def _check_common(self):
        _check_scale(self.scale)
        if self.n_jobs is not None and not _is_int(self.n_jobs):
            raise ValueError(f"n_jobs must be None or an integer, got {self.n_jobs!r}")
        if self.base_estimator is not None and not hasattr(self.base_estimator, "fit"):
            raise ValueError(f"base_estimator must be a scikit-learn estimator, got {self.base_estimator!r}")

    def _base(self):
        return LogisticRegression(max_iter=1000) if self.base_estimator is None else self.base_estimator

    def sample_hash(self, X):
        """The hash value of every row of ``X`` in ``0..n_learners-1`` (the bucket, for DPA)."""
        return np.mod(content_hash(X, self.scale), self._n_learners())

    def sample_buckets(self, X):
        """The buckets ``(n, d)`` that every row of ``X`` falls in (``d = 1`` for DPA)."""
        return self._hash_buckets(self.sample_hash(X))

    # -- public API --------------------------------------------------------------------------------
    def fit(self, X, y):
        """Partition ``(X, y)`` by content hash and train one base classifier per bucket. Returns ``self``."""
        self._validate_params()
        X, y = _check_Xy(X, y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y must hold at least two classes, got {classes.tolist()}")
        n_learners = self._n_learners()
        self.shifts_ = self._make_shifts()
        buckets = self._hash_buckets(np.mod(content_hash(X, self.scale), n_learners))
        members = [np.flatnonzero((buckets == b).any(axis=1)) for b in range(n_learners)]
        rng = check_random_state(self.random_state)
        seeds = rng.randint(0, np.iinfo(np.int32).max, size=n_learners)
        desc = f"{type(self).__name__}: {n_learners} base classifiers"
        self.estimators_ = _train_members(self._base(), X, y_idx, members, seeds, self.n_jobs, self.scheduler,
                                          self.progress, desc)
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.partition_ = self._store_partition(buckets)
        self.bucket_sizes_ = np.array([len(m) for m in members], dtype=np.int64)
        self.member_seeds_ = seeds
        return self

    def learner_predictions(self, X):
        """Class index predicted by every base classifier, shape ``(n, n_learners)`` (``-1``: abstains)."""
        check_is_fitted(self, "estimators_")
        X = _check_X(X, self.n_features_in_)
        with threadpool_limits(limits=1):
            return np.column_stack([_member_predict(m, X) for m in self.estimators_])

    def votes(self, X):
        """The vote table :math:`N_c(x)`, shape ``(n, n_classes)``, columns in the order of ``classes_``."""
        return _votes_from_predictions(self.learner_predictions(X), len(self.classes_))

    def predict(self, X):
        """The plurality vote, ties broken to the smaller class index (of ``classes_``)."""
        return self.classes_[np.argmax(self.votes(X), axis=1)]

    def _encode(self, y, n):
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n:
            raise ValueError(f"y must have shape ({n},), got shape {y.shape}")
        known = np.isin(y, self.classes_)
        idx = np.searchsorted(self.classes_, np.where(known, y, self.classes_[0]))
        return idx, known

    def certified_radius(self, X, y=None):
        """Certified radius of every prediction: no insertion/removal of that many training samples changes it.

        With labels ``y``, a wrong prediction (also one whose label was not seen in ``fit``) gets ``-1``.
        """
        predictions = self.learner_predictions(X)
        if y is None:
            return self._certificate(predictions, None)
        y_idx, known = self._encode(y, len(predictions))
        radius = self._certificate(predictions, y_idx)
        radius[~known] = -1
        return radius


class DPAClassifier(_PartitionEnsemble):
    r"""Deep Partition Aggregation (Levine and Feizi 2021): one base classifier per content-hash partition.

    Sample :math:`x` goes to partition :math:`(\sum_j \operatorname{round}(s\, x_j)) \bmod k`
    (:func:`dpa_partition`); the ensemble predicts the plurality vote (ties to the smaller class index) and
    :meth:`certified_radius` is :func:`dpa_certificate` of the votes.

    A partition whose samples all have one class gets a constant base classifier of that class; an empty
    partition gets one that abstains (predicts ``-1``, no vote). Both are sound for the certificate: a poisoned
    sample still changes at most one vote, by at most 2 in any gap. Within a partition the samples are sorted by
    content before training, and base classifier ``b`` gets the seed ``member_seeds_[b]`` drawn from
    ``random_state``, so shuffling the training set does not change the ensemble, and training serially, with
    joblib or on Dask gives the same ensemble. Each base classifier is trained with BLAS and OpenMP limited to
    one thread (``threadpoolctl``); the parallelism is ``n_jobs``.

    For the 8x8 digits of :func:`poisoning.data.load_digits` (values :math:`v/16`), ``scale=16`` hashes the
    original integer values :math:`v`; the default 255 is meant for 8-bit images scaled to :math:`[0, 1]`.

    Parameters
    ----------
    n_partitions : int
        :math:`k`, the number of partitions and base classifiers.
    base_estimator : scikit-learn classifier, optional
        Cloned for every partition; ``LogisticRegression(max_iter=1000)`` by default. Its ``random_state``, if it
        has one, is set to the partition's seed. It is trained on class indices ``0..n_classes-1``.
    scale : float, default 255
        :math:`s` in the content hash (:func:`content_hash`).
    n_jobs : int, optional
        Parallel jobs for :class:`joblib.Parallel` (``None``: serial; with ``scheduler``: all Dask workers).
    scheduler : str or distributed.Client, optional
        Train on a Dask cluster through joblib's ``dask`` backend (needs ``distributed``).
    random_state : int, RandomState or None
        Seeds of the base classifiers.
    progress : bool, default False
        A tqdm bar over the base classifiers.

    Attributes
    ----------
    classes_ : ndarray
        Labels seen in ``fit``, sorted; the base classifiers and the vote table use their indices.
    n_features_in_ : int
    partition_ : ndarray of int, shape (n_samples,)
        Partition of every training sample.
    bucket_sizes_ : ndarray of int, shape (n_partitions,)
    estimators_ : list of fitted estimators, one per partition
    member_seeds_ : ndarray of int, shape (n_partitions,)
    shifts_ : ndarray, ``[0]`` (DPA is Finite Aggregation with :math:`d = 1`)
    """

    def __init__(self, n_partitions=50, base_estimator=None, *, scale=255, n_jobs=None, scheduler=None,
                 random_state=None, progress=False):
        self.n_partitions = n_partitions
        self.base_estimator = base_estimator
        self.scale = scale
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self.random_state = random_state
        self.progress = progress

    def _validate_params(self):
        _check_positive_int(self.n_partitions, "n_partitions")
        self._check_common()

    def _n_learners(self):
        return int(self.n_partitions)

    def _make_shifts(self):
        return np.zeros(1, dtype=np.int64)

    def _store_partition(self, buckets):
        return buckets[:, 0]

    def _certificate(self, predictions, y_idx):
        return dpa_certificate(_votes_from_predictions(predictions, len(self.classes_)), y_idx)


class FAClassifier(_PartitionEnsemble):
    r"""Finite Aggregation (Wang, Levine and Feizi 2022): :math:`kd` base classifiers, each sample in :math:`d`.

    Sample :math:`x` with hash :math:`h = (\sum_j \operatorname{round}(s\, x_j)) \bmod kd` goes to the buckets
    :math:`(h + s_j) \bmod kd` (:func:`fa_partition`, shifts from :func:`fa_shifts`); one base classifier is
    trained per bucket, the ensemble predicts the plurality vote of all :math:`kd` of them and
    :meth:`certified_radius` is :func:`fa_certificate`. With ``d=1`` it is :class:`DPAClassifier` with
    ``n_partitions=k``: the same buckets, seeds, base classifiers and certificates. Single-class and empty buckets
    are handled as in :class:`DPAClassifier`.

    Parameters
    ----------
    k : int
        :math:`k`; every sample influences :math:`d` of the :math:`kd` votes, a fraction :math:`1/k`.
    d : int
        :math:`d`, the number of buckets per sample.
    base_estimator, scale, n_jobs, scheduler, random_state, progress
        As in :class:`DPAClassifier`.
    shift_seed : int, default :data:`FA_SHIFT_SEED`
        Seed of Python's ``random`` for the shifts (:func:`fa_shifts`), the official code's by default.

    Attributes
    ----------
    shifts_ : ndarray of int, shape (d,)
    partition_ : ndarray of int, shape (n_samples, d)
        The buckets of every training sample.
    classes_, n_features_in_, bucket_sizes_, estimators_, member_seeds_
        As in :class:`DPAClassifier`, with :math:`kd` base classifiers.
    """

    def __init__(self, k=50, d=1, base_estimator=None, *, scale=255, shift_seed=FA_SHIFT_SEED, n_jobs=None,
                 scheduler=None, random_state=None, progress=False):
        self.k = k
        self.d = d
        self.base_estimator = base_estimator
        self.scale = scale
        self.shift_seed = shift_seed
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self.random_state = random_state
        self.progress = progress

    def _validate_params(self):
        _check_positive_int(self.k, "k")
        _check_positive_int(self.d, "d")
        if not _is_int(self.shift_seed):
            raise ValueError(f"shift_seed must be an integer, got {self.shift_seed!r}")
        self._check_common()

    def _n_learners(self):
        return int(self.k) * int(self.d)

    def _make_shifts(self):
        return fa_shifts(self.k, self.d, self.shift_seed)

    def _certificate(self, predictions, y_idx):
        return fa_certificate(predictions, self.shifts_, len(self.classes_), y_idx)


# --------------------------------------------------------------------------------------------------
# label-flip smoothing
# --------------------------------------------------------------------------------------------------
def _check_q(q):
    if isinstance(q, (bool, np.bool_)) or not isinstance(q, Real) or not 0 < q < 0.5:
        raise ValueError(f"q must be a number in (0, 1/2), got {q!r}")
    return float(q)


def _radius_from_log_minority(log_e, q, max_flips):
    """Vectorised :func:`label_flip_radius` from ``log(1 - p)``; ``-1`` where ``1 - p >= 1/2``."""
    log_e = np.asarray(log_e, dtype=np.float64)
    radius = np.where(log_e < np.log(0.5), 0, -1).astype(np.int64)
    alive = radius == 0
    lq, l1q = np.log(q), np.log1p(-q)
    log_rho = lq - l1q
    for r in range(1, max_flips + 1):
        if not np.any(alive):
            break
        j = np.arange(r + 1)
        log_binom = gammaln(r + 1) - gammaln(j + 1) - gammaln(r - j + 1)
        log_mu = log_binom + j * l1q + (r - j) * lq  # mass of level j under the clean labels
        log_nu = log_binom + j * lq + (r - j) * l1q  # ... under the flipped labels
        cum_mu = np.logaddexp.accumulate(log_mu)
        cum_nu = np.logaddexp.accumulate(log_nu)
        e = log_e[alive]
        star = np.minimum(np.searchsorted(cum_mu, e, side="left"), r)
        prev_mu = np.where(star > 0, cum_mu[np.maximum(star - 1, 0)], -np.inf)
        prev_nu = np.where(star > 0, cum_nu[np.maximum(star - 1, 0)], -np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_rest = e + np.log1p(-np.exp(np.minimum(prev_mu - e, 0.0)))
            log_worst = np.logaddexp(prev_nu, log_rest + (2 * star - r) * log_rho)
        ok = (log_worst < np.log(0.5)) | (e == -np.inf)  # p = 1: no labelling reaches the other class
        idx = np.flatnonzero(alive)
        radius[idx[ok]] = r
        alive[idx[~ok]] = False
    return radius


def label_flip_radius(p, q, max_flips):
    r"""The number of adversarial label flips that provably cannot change a label-smoothed prediction.

    Parameters
    ----------
    p : float or array
        The probability (or a lower bound on it) that the base classifier predicts the smoothed prediction
        :math:`c` when every training label is flipped independently with probability ``q``.
    q : float in (0, 1/2)
        The flip probability of the smoothing noise.
    max_flips : int
        Largest radius to report (the number of training labels :math:`n`).

    Returns
    -------
    int or ndarray of int64
        The largest :math:`R \le` ``max_flips`` such that the smoothed prediction stays :math:`c` for every
        labelling within :math:`r \le R` flips of the training labels; :math:`-1` when :math:`p \le 1/2`.

    Notes
    -----
    *Derivation* (the Neyman-Pearson argument of randomised smoothing, for binary labels and independent
    flips). Let the attacker flip the labels in a set :math:`F`, :math:`|F| = r`: clean labels :math:`y`,
    attacked labels :math:`y'`. The noisy labels are :math:`\tilde y \sim \mu` around :math:`y` and
    :math:`\tilde y \sim \nu` around :math:`y'`. Outside :math:`F` both flip with probability :math:`q`; inside,
    let :math:`a = |\{i \in F : \tilde y_i = y_i\}|`. The likelihood ratio depends on :math:`a` alone,

    .. math::

        \frac{\nu(\tilde y)}{\mu(\tilde y)} = \rho^{2a - r}, \quad \rho = \frac{q}{1 - q} < 1, \qquad
        \mu(a = j) = \tbinom rj (1-q)^j q^{r-j}, \quad \nu(a = j) = \tbinom rj q^j (1-q)^{r-j} .

    The base classifier disagrees with :math:`c` on a set :math:`B` with :math:`\mu(B) = 1 - p`. Whatever
    :math:`B` is, :math:`\nu(B)` is at most what the Neyman-Pearson lemma gives: fill :math:`B` with the levels of
    largest ratio first, :math:`a = 0, 1, \dots`, until its :math:`\mu`-mass is :math:`1 - p`,

    .. math::

        \nu(B) \le \sum_{j < j^*} \nu(a = j) + \Big(1 - p - \sum_{j < j^*} \mu(a = j)\Big)\, \rho^{2 j^* - r},

    :math:`j^*` the first level at which the cumulated :math:`\mu`-mass reaches :math:`1 - p`. If this bound is
    :math:`< 1/2`, the attacked smoothed classifier still gives :math:`c` a probability :math:`> 1/2` and
    predicts :math:`c`. The radius is the largest :math:`R` for which this holds at every :math:`r \le R` (the
    levels are scanned from :math:`r = 1` up). Knowing only :math:`p` and :math:`q`, nothing better can be
    said: a base classifier that votes against :math:`c` exactly on the levels :math:`a < j^*` (and on part of
    level :math:`j^*`) reaches the bound. It is computed in log space, so that :math:`1 - p` as small as
    :math:`10^{-300}` is handled.
    """
    q = _check_q(q)
    if not _is_int(max_flips) or max_flips < 0:
        raise ValueError(f"max_flips must be a non-negative integer, got {max_flips!r}")
    p_arr = np.asarray(p, dtype=np.float64)
    if np.any(~np.isfinite(p_arr)) or np.any((p_arr < 0) | (p_arr > 1)):
        raise ValueError("p must be a probability in [0, 1]")
    with np.errstate(divide="ignore"):
        log_e = np.log1p(-p_arr.ravel())
    radius = _radius_from_log_minority(log_e, q, int(max_flips))
    return int(radius[0]) if p_arr.ndim == 0 else radius.reshape(p_arr.shape)


def _log_tail_bounds(weights, labels, q, iterations=100):
    r"""Chernoff bounds on :math:`\log P(S > 1/2)` and :math:`\log P(S \le 1/2)`, :math:`S = w^\top \tilde y`.

    :math:`\tilde y_i \in \{0, 1\}` independent with :math:`P(\tilde y_i = 1) = \pi_i` (``1 - q`` where the label
    is 1, ``q`` where it is 0), so for :math:`t \ge 0`

    .. math::

        P(S \ge 1/2) \le \min_t e^{-t/2} \prod_i (1 - \pi_i + \pi_i e^{t w_i}), \qquad
        P(S \le 1/2) \le \min_t e^{t/2} \prod_i (1 - \pi_i + \pi_i e^{-t w_i}) .

    Each exponent is convex in :math:`t`; its minimum is found by bisection on the derivative.
    """
    pi = np.where(labels > 0.5, 1.0 - q, q)
    log_pi, log_not = np.log(pi), np.log1p(-pi)
    out = []
    for sign in (1.0, -1.0):
        v = sign * weights  # (m, n): bound P(sign * (S - 1/2) >= 0)
        offset = -sign * 0.5

        def derivative(t):
            z = log_pi[None, :] + t[:, None] * v - log_not[None, :]
            return (v / (1.0 + np.exp(-z))).sum(axis=1) + offset

        def value(t):
            return np.logaddexp(log_not[None, :], log_pi[None, :] + t[:, None] * v).sum(axis=1) + offset * t

        reach = np.clip(v, 0, None).sum(axis=1) + offset  # sup of sign * (S - 1/2)
        m = len(v)
        hi = np.ones(m)
        for _ in range(200):
            grow = (derivative(hi) < 0) & (reach >= 0)
            if not np.any(grow):
                break
            hi = np.where(grow, 2 * hi, hi)
        lo = np.zeros(m)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            neg = derivative(mid) < 0
            lo, hi = np.where(neg, mid, lo), np.where(neg, hi, mid)
        best = np.minimum(value(hi), 0.0)
        best = np.where(reach < 0, -np.inf, best)  # sign * (S - 1/2) can never be >= 0
        out.append(best)
    return out[0], out[1]


class LabelFlipSmoothing(ClassifierMixin, BaseEstimator):
    r"""Ridge regression on fixed features, smoothed over random label flips (Rosenfeld et al. 2020).

    **The base classifier.** With features :math:`X \in \mathbb R^{n \times p}` (centred,
    :math:`X_c = X - \mathbf 1 \bar x^\top`, when ``fit_intercept``) and labels :math:`y \in \{0, 1\}^n`
    (``classes_[1]`` is 1), ridge regression with an unpenalised intercept predicts

    .. math::

        f_y(x) = \alpha(x)^\top y, \qquad
        \alpha(x) = \tfrac1n \mathbf 1 + X_c (X_c^\top X_c + \lambda I)^{-1} (x - \bar x),

    the same as ``sklearn.linear_model.Ridge(alpha=l2)``, and the class is :math:`\mathbb 1[f_y(x) > 1/2]`.
    :math:`\alpha(x)` does not depend on the labels: every labelling is one dot product.

    **Smoothing.** Every training label is flipped independently with probability :math:`q`,
    :math:`\tilde y_i = y_i \oplus b_i`, :math:`b_i \sim \mathrm{Bernoulli}(q)`. The smoothed classifier predicts
    class 1 when :math:`p_1(x) = P(\alpha(x)^\top \tilde y > 1/2) > 1/2`, else class 0. ``method="exact"``
    computes :math:`p_1` by enumerating all :math:`2^n` flip patterns (:math:`n \le` ``max_exact``);
    ``method="chernoff"`` bounds both tails by the Chernoff bound (the paper's choice: deterministic, no
    sampling) and predicts class 1 when :math:`E[\alpha^\top \tilde y] > 1/2` (the only case in which the bound
    can show :math:`p_1 > 1/2`).

    **The certificate** is :func:`label_flip_radius` of the probability of the predicted class (its Chernoff
    lower bound): the number of training labels an attacker may flip, chosen for this test point, without
    changing the smoothed prediction. It is :math:`-1` for a wrong prediction (with ``y``) and where the
    probability is not shown to exceed :math:`1/2`.

    Parameters
    ----------
    q : float in (0, 1/2), default 0.1
    l2 : float >= 0, default 1.0
        :math:`\lambda` (must be > 0 when :math:`X_c^\top X_c` is singular).
    fit_intercept : bool, default True
    method : {"chernoff", "exact"}, default "chernoff"
    max_exact : int, default 20
        Largest training set for ``method="exact"``.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    labels_ : ndarray of shape (n_samples,)
        The training labels as 0/1.
    x_mean_ : ndarray of shape (n_features,)
    projection_ : ndarray of shape (n_features, n_samples)
        :math:`(X_c^\top X_c + \lambda I)^{-1} X_c^\top`, so that :math:`\alpha(x) = \frac1n + ` ``projection_.T @
        (x - x_mean_)``.
    n_features_in_ : int
    """

    def __init__(self, q=0.1, l2=1.0, *, fit_intercept=True, method="chernoff", max_exact=20):
        self.q = q
        self.l2 = l2
        self.fit_intercept = fit_intercept
        self.method = method
        self.max_exact = max_exact

    def fit(self, X, y):
        """Store the labels and the map :math:`x \\mapsto \\alpha(x)`. Returns ``self``."""
        _check_q(self.q)
        l2 = self.l2
        if isinstance(l2, (bool, np.bool_)) or not isinstance(l2, Real) or not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
        if self.method not in ("chernoff", "exact"):
            raise ValueError(f"method must be 'chernoff' or 'exact', got {self.method!r}")
        if not _is_int(self.max_exact) or self.max_exact < 1:
            raise ValueError(f"max_exact must be a positive integer, got {self.max_exact!r}")
        X, y = _check_Xy(X, y)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"LabelFlipSmoothing needs exactly two classes, got {len(classes)}: {classes.tolist()}")
        if self.method == "exact" and len(X) > self.max_exact:
            raise ValueError(f"method='exact' enumerates 2^n label flips and allows n <= max_exact = "
                             f"{self.max_exact}; got n = {len(X)} (use method='chernoff')")
        mean = X.mean(axis=0) if self.fit_intercept else np.zeros(X.shape[1])
        Xc = X - mean
        gram = Xc.T @ Xc + float(l2) * np.eye(X.shape[1])
        try:
            projection = np.linalg.solve(gram, Xc.T)
        except np.linalg.LinAlgError:
            raise ValueError("X^T X + l2 I is singular: use l2 > 0") from None
        self.classes_ = classes
        self.labels_ = (y == classes[1]).astype(np.float64)
        self.x_mean_ = mean
        self.projection_ = projection
        self.n_features_in_ = X.shape[1]
        return self

    def weights(self, X):
        r""":math:`\alpha(x)` for every row of ``X``, shape ``(n_test, n_train)``."""
        check_is_fitted(self, "projection_")
        X = _check_X(X, self.n_features_in_)
        alpha = (X - self.x_mean_) @ self.projection_
        if self.fit_intercept:
            alpha += 1.0 / len(self.labels_)
        return alpha

    def decision_function(self, X, labels=None):
        r""":math:`\alpha(x)^\top y - 1/2` for the training labels (or 0/1 ``labels``): > 0 means class 1."""
        labels = self.labels_ if labels is None else np.asarray(labels, dtype=np.float64)
        return self.weights(X) @ labels - 0.5

    def _log_tails(self, X):
        """``(log P(class 1), log P(class 0))`` exactly, or their Chernoff upper bounds."""
        alpha = self.weights(X)
        q = float(self.q)
        if self.method == "chernoff":
            return _log_tail_bounds(alpha, self.labels_, q)
        return _exact_log_tails(alpha, self.labels_, q)

    def probability_bounds(self, X):
        """Lower and upper bounds on :math:`p_1(x)`, the smoothed probability of class 1 (equal when exact)."""
        log1, log0 = self._log_tails(X)
        return -np.expm1(log0) + 0.0, np.exp(log1)

    def _predict_index(self, X, log1, log0):
        if self.method == "exact":
            return (log1 > log0).astype(np.int64)  # p_1 > 1/2; a tie goes to class 0
        return (self.decision_function(X, self.labels_ * (1 - 2 * self.q) + self.q) > 0).astype(np.int64)

    def predict(self, X):
        """The smoothed prediction."""
        log1, log0 = self._log_tails(X)
        return self.classes_[self._predict_index(X, log1, log0)]

    def certified_radius(self, X, y=None):
        """Number of adversarial label flips that cannot change each smoothed prediction (``-1``: none)."""
        log1, log0 = self._log_tails(X)
        pred = self._predict_index(X, log1, log0)
        log_minority = np.where(pred == 1, log0, log1)
        radius = _radius_from_log_minority(log_minority, float(self.q), len(self.labels_))
        if y is not None:
            y = np.asarray(y)
            if y.ndim != 1 or len(y) != len(pred):
                raise ValueError(f"y must have shape ({len(pred)},), got shape {y.shape}")
            radius[self.classes_[pred] != y] = -1
        return radius


def _exact_log_tails(alpha, labels, q, chunk=1 << 15):
    """``log P(S > 1/2)`` and ``log P(S <= 1/2)`` by enumerating all flip patterns."""
    n = len(labels)
    m = alpha.shape[0]
    p1 = np.zeros(m)
    p0 = np.zeros(m)
    log_q, log_1q = np.log(q), np.log1p(-q)
    for start in range(0, 1 << n, chunk):
        codes = np.arange(start, min(start + chunk, 1 << n))
        flips = ((codes[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float64)
        noisy = np.abs(labels[None, :] - flips)
        k = flips.sum(axis=1)
        prob = np.exp(k * log_q + (n - k) * log_1q)
        s = noisy @ alpha.T  # (patterns, m)
        one = s > 0.5
        p1 += prob @ one
        p0 += prob @ ~one
    with np.errstate(divide="ignore"):
        return np.log(p1), np.log(p0)


# --------------------------------------------------------------------------------------------------
# soundness by search
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FoundAttack:
    """A poisoning that changed the prediction of test point ``index``.

    ``operations`` are ``("remove", i)`` (training sample ``i``) and ``("insert", j, label, h)`` (a copy of the
    insertion candidate ``j`` with class ``label``, placed as if its hash value were ``h``); ``size`` is their
    number, ``radius`` the certificate of the point, and a ``size <= radius`` would refute the certificate.
    """

    index: int
    operations: tuple
    size: int
    radius: int
    before: object
    after: object

    @property
    def violates(self):
        return self.size <= self.radius


@dataclass
class AttackSearchResult:
    """What :func:`search_poisoning_attacks` found.

    ``changed`` holds, per test point whose prediction some attack changed, the smallest such attack found;
    ``violations`` the ones within the certified radius (none, if the certificate is sound).
    """

    radius: np.ndarray
    prediction: np.ndarray
    n_attacks: int
    strategy: str
    changed: list = field(default_factory=list)

    @property
    def violations(self):
        return [a for a in self.changed if a.violates]

    @property
    def smallest_attack(self):
        """Size of the smallest attack found per test point (``-1``: none found)."""
        out = np.full(len(self.radius), -1, dtype=np.int64)
        for a in self.changed:
            out[a.index] = a.size
        return out


class _Attacker:
    """Retrains the base classifiers that a set of operations touches, with caching."""

    def __init__(self, model, X, y_idx, X_test, X_insert):
        self.model = model
        self.X, self.y = X, y_idx
        self.X_test = X_test
        self.X_insert = X_insert
        self.n_learners = model._n_learners()
        self.train_buckets = model.sample_buckets(X)
        self.members = [np.flatnonzero((self.train_buckets == b).any(axis=1)) for b in range(self.n_learners)]
        self.base = model._base()
        self.clean = model.learner_predictions(X_test)
        self.cache = {}

    def learners_of(self, op):
        if op[0] == "remove":
            return tuple(self.train_buckets[op[1]].tolist())
        return tuple(self.model._hash_buckets(np.array([op[3]]))[0].tolist())

    def member_prediction(self, b, ops):
        """Predictions on ``X_test`` of learner ``b`` retrained with the operations ``ops`` (sorted tuple)."""
        key = (b, ops)
        if key not in self.cache:
            removed = {op[1] for op in ops if op[0] == "remove"}
            keep = np.array([i for i in self.members[b] if i not in removed], dtype=np.int64)
            inserts = [op for op in ops if op[0] == "insert"]
            Xb = np.vstack([self.X[keep]] + [self.X_insert[op[1]][None, :] for op in inserts])
            yb = np.concatenate([self.y[keep], np.array([op[2] for op in inserts], dtype=np.int64)])
            member = _fit_member(self.base, Xb, yb, self.model.member_seeds_[b])
            self.cache[key] = _member_predict(member, self.X_test)
        return self.cache[key]

    def predictions(self, ops):
        """Learner predictions ``(n_test, n_learners)`` after the operations ``ops``."""
        touched = {}
        for op in ops:
            for b in self.learners_of(op):
                touched.setdefault(b, []).append(op)
        P = self.clean.copy()
        for b, b_ops in touched.items():
            P[:, b] = self.member_prediction(b, tuple(sorted(b_ops)))
        return P


def _attack_operations(n_train, n_insert, n_classes, n_hash, removals):
    ops = [("remove", i) for i in range(n_train)] if removals else []
    ops += [("insert", j, c, h) for j in range(n_insert) for c in range(n_classes) for h in range(n_hash)]
    return ops


def search_poisoning_attacks(model, X, y, X_test, *, budget=None, strategy="exhaustive", X_insert=None,
                             removals=True, max_attacks=100_000, progress=False):
    r"""Search for poisonings that change certified predictions of a fitted DPA or Finite Aggregation ensemble.

    The attacker inserts and removes training samples (a modification is a removal plus an insertion, size 2, as
    in the certificates). An insertion is a copy of a row of ``X_insert`` (by default the test points: a
    mislabelled copy of the target is the strongest single poison for many learners) with any class label, and
    the attacker may choose its hash value freely (in practice by nudging one pixel), so it can land in any
    bucket (DPA) or any of the :math:`kd` bucket sets :math:`\{(h + s_j) \bmod kd\}` (Finite Aggregation). Every
    attack is evaluated exactly: the base classifiers it touches are retrained (with their own seeds, samples in
    content order) and the votes recounted.

    Parameters
    ----------
    model : fitted DPAClassifier or FAClassifier
        Fitted on ``(X, y)``.
    X, y : the training set of ``model``.
    X_test : array of shape (m, n_features)
        The points whose predictions are attacked; the certificates are ``model.certified_radius(X_test)``.
    budget : int, optional
        ``"exhaustive"``: every attack of at most ``budget`` operations (a multiset: the same sample may be
        inserted several times, a sample removed once) is tried; required. ``"greedy"``: ignored; for every test
        point and every other class the single operations are ranked by how much they shrink the vote gap, and
        the best ones touching disjoint base classifiers are applied one by one, up to one more than the point's
        certified radius.
    strategy : {"exhaustive", "greedy"}
    X_insert : array, optional
        Insertion candidates (default ``X_test``).
    removals : bool, default True
        Whether the attacker may remove training samples.
    max_attacks : int
        Refuse an exhaustive search with more attacks than this (``ValueError``).
    progress : bool
        A tqdm bar over the attacks (exhaustive) or the test points (greedy).

    Returns
    -------
    AttackSearchResult
        ``violations`` is empty when no attack within a certified radius changed its prediction.
    """
    if not isinstance(model, _PartitionEnsemble):
        raise ValueError(f"model must be a DPAClassifier or an FAClassifier, got {type(model).__name__}")
    check_is_fitted(model, "estimators_")
    if strategy not in ("exhaustive", "greedy"):
        raise ValueError(f"strategy must be 'exhaustive' or 'greedy', got {strategy!r}")
    X, y = _check_Xy(X, y, model.n_features_in_)
    if not np.array_equal(model.sample_buckets(X), model.partition_.reshape(len(X), -1)):
        raise ValueError("X is not the training set of model (its buckets differ from model.partition_)")
    y_idx, known = model._encode(y, len(X))
    if not np.all(known):
        raise ValueError("y holds labels that model was not fitted with")
    X_test = _check_X(X_test, model.n_features_in_, "X_test")
    X_insert = X_test if X_insert is None else _check_X(X_insert, model.n_features_in_, "X_insert")
    if strategy == "exhaustive" and (not _is_int(budget) or budget < 1):
        raise ValueError(f"an exhaustive search needs budget, a positive integer, got {budget!r}")
    with threadpool_limits(limits=1):  # thousands of small retrainings
        return _search(model, X, y_idx, X_test, X_insert, budget, strategy, removals, max_attacks, progress)


def _search(model, X, y_idx, X_test, X_insert, budget, strategy, removals, max_attacks, progress):
    from tqdm.auto import tqdm

    n_classes = len(model.classes_)
    attacker = _Attacker(model, X, y_idx, X_test, X_insert)
    radius = model._certificate(attacker.clean, None)
    clean_votes = _votes_from_predictions(attacker.clean, n_classes)
    clean_pred = np.argmax(clean_votes, axis=1)
    ops = _attack_operations(len(X), len(X_insert), n_classes, attacker.n_learners, removals)
    best = {}
    n_attacks = 0

    def record(ops_set, P):
        pred = np.argmax(_votes_from_predictions(P, n_classes), axis=1)
        for i in np.flatnonzero(pred != clean_pred):
            if i not in best or best[i].size > len(ops_set):
                best[i] = FoundAttack(int(i), _readable(ops_set, model.classes_), len(ops_set), int(radius[i]),
                                      model.classes_[clean_pred[i]], model.classes_[pred[i]])

    if strategy == "exhaustive":
        total = sum(_n_multisets(len(ops), s) for s in range(1, budget + 1))
        if total > max_attacks:
            raise ValueError(f"the exhaustive search would try {total} attacks, more than max_attacks = "
                             f"{max_attacks}: use a smaller training set, fewer candidates or strategy='greedy'")
        with tqdm(total=total, desc="exhaustive attack search", unit="attack", disable=not progress) as bar:
            for size in range(1, budget + 1):
                for combo in itertools.combinations_with_replacement(range(len(ops)), size):
                    bar.update()
                    if any(ops[a][0] == "remove" and combo.count(a) > 1 for a in set(combo)):
                        continue
                    n_attacks += 1
                    chosen = tuple(ops[a] for a in combo)
                    record(chosen, attacker.predictions(chosen))
    else:
        singles = np.stack([attacker.predictions((op,)) for op in ops])  # (n_ops, m, n_learners)
        touched = [set(attacker.learners_of(op)) for op in ops]
        for i in tqdm(range(len(X_test)), desc="greedy attack search", unit="point", disable=not progress):
            g = clean_pred[i]
            old, new = attacker.clean[i][None, :], singles[:, i, :]
            for c in range(n_classes):
                if c == g:
                    continue
                # how much each single operation shrinks N_g - N_c at x_i
                gains = ((old == g).astype(np.int64) - (new == g) + (new == c) - (old == c)).sum(axis=1)
                chosen, used = [], set()
                for a in np.argsort(-gains, kind="stable"):
                    if gains[a] <= 0 or len(chosen) > radius[i]:
                        break
                    if touched[a] & used:
                        continue
                    chosen.append(ops[a])
                    used |= touched[a]
                    n_attacks += 1
                    record(tuple(chosen), attacker.predictions(tuple(chosen)))
    changed = [best[i] for i in sorted(best)]
    return AttackSearchResult(radius=radius, prediction=model.classes_[clean_pred], n_attacks=n_attacks,
                              strategy=strategy, changed=changed)


def _n_multisets(n, size):
    from math import comb

    return comb(n + size - 1, size)


def _readable(ops, classes):
    return tuple(op if op[0] == "remove" else ("insert", op[1], classes[op[2]].item(), op[3]) for op in ops)
