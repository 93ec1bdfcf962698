"""The sanitization defences of chapter "Data sanitization defences", against brute-force computations."""

import math

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from poisoning.sanitization import (KNNDefence, L2Defence, LossDefence, SanitizationDefence, SlabDefence,
                                    SVDDefence, far_outliers, feasible_set_poisons, removal_rates)

ALL_DEFENCES = [L2Defence, SlabDefence, LossDefence, KNNDefence, SVDDefence]


def make_defence(cls, **params):
    """Every defence with settings that suit the small 5-D test data."""
    if cls is SVDDefence:
        params.setdefault("n_components", 2)
    return cls(**params)


def blobs(n_per_class=(40, 30), d=5, seed=0):
    """Gaussian classes that vary mostly in the first two coordinates, centred at -2 e_1, +2 e_1, ..."""
    rng = np.random.RandomState(seed)
    scales = np.r_[1.0, 1.0, np.full(d - 2, 0.1)]
    X, y = [], []
    for label, n in enumerate(n_per_class):
        centre = np.zeros(d)
        centre[0] = 4.0 * label - 2.0
        X.append(centre + scales * rng.standard_normal((n, d)))
        y.append(np.full(n, label))
    return np.vstack(X), np.concatenate(y)


@pytest.fixture
def binary():
    return blobs()


@pytest.fixture
def three_classes():
    return blobs(n_per_class=(25, 30, 20), seed=1)


# --------------------------------------------------------------------------------------------------
# scores against brute force
# --------------------------------------------------------------------------------------------------
def explicit_centroid(X, y, label):
    total, count = np.zeros(X.shape[1]), 0
    for x, t in zip(X, y):
        if t == label:
            total += x
            count += 1
    return total / count


def test_l2_score_is_the_distance_to_the_class_centroid(three_classes):
    X, y = three_classes
    defence = L2Defence().fit(X, y)
    expected = [math.sqrt(sum((a - b) ** 2 for a, b in zip(x, explicit_centroid(X, y, t)))) for x, t in zip(X, y)]
    np.testing.assert_allclose(defence.scores_, expected, rtol=1e-12)
    np.testing.assert_allclose(defence.score_samples(X, y), expected, rtol=1e-12)


def test_slab_score_is_the_projection_on_the_centroid_line(binary):
    X, y = binary
    defence = SlabDefence().fit(X, y)
    mu_plus, mu_minus = explicit_centroid(X, y, 1), explicit_centroid(X, y, 0)
    line = mu_plus - mu_minus
    expected = [abs(float(np.dot(x - explicit_centroid(X, y, t), line))) for x, t in zip(X, y)]
    np.testing.assert_allclose(defence.scores_, expected, rtol=1e-10)
    # new points are scored with the fitted centroids
    rng = np.random.RandomState(5)
    X_new, y_new = rng.standard_normal((7, X.shape[1])), rng.randint(0, 2, 7)
    expected_new = [abs(float(np.dot(x - (mu_plus if t == 1 else mu_minus), line))) for x, t in zip(X_new, y_new)]
    np.testing.assert_allclose(defence.score_samples(X_new, y_new), expected_new, rtol=1e-10)


def test_slab_with_more_classes_is_one_versus_rest(three_classes):
    X, y = three_classes
    defence = SlabDefence().fit(X, y)
    for label in range(3):
        rest = np.mean([x for x, t in zip(X, y) if t != label], axis=0)
        direction = explicit_centroid(X, y, label) - rest
        np.testing.assert_allclose(defence.directions_[label], direction, rtol=1e-10)
        rows = y == label
        expected = np.abs((X[rows] - explicit_centroid(X, y, label)) @ direction)
        np.testing.assert_allclose(defence.scores_[rows], expected, rtol=1e-10)


def test_loss_score_is_the_log_loss_of_a_model_trained_on_everything(binary):
    X, y = binary
    defence = LossDefence().fit(X, y)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    proba = model.predict_proba(X)
    expected = [-math.log(proba[i, y[i]]) for i in range(len(y))]
    np.testing.assert_allclose(defence.scores_, expected, rtol=1e-6)
    assert defence.loss_ == "log"


def test_loss_score_hinge_binary_and_multiclass(binary, three_classes):
    for X, y in (binary, three_classes):
        estimator = LogisticRegression(C=0.5, max_iter=1000)
        defence = LossDefence(estimator=estimator, loss="hinge").fit(X, y)
        assert defence.estimator_ is not estimator  # the given estimator is cloned, not fitted in place
        f = LogisticRegression(C=0.5, max_iter=1000).fit(X, y).decision_function(X)
        if f.ndim == 1:
            expected = [1 - (1 if t == 1 else -1) * f[i] for i, t in enumerate(y)]
        else:
            expected = [1 + max(f[i, j] for j in range(f.shape[1]) if j != t) - f[i, t] for i, t in enumerate(y)]
        np.testing.assert_allclose(defence.scores_, expected, rtol=1e-6, atol=1e-9)


def all_pairs(A, B):
    return np.array([[math.sqrt(sum((a - b) ** 2 for a, b in zip(x, z))) for z in B] for x in A])


@pytest.mark.parametrize("per_class", [True, False])
def test_knn_score_is_the_mean_distance_to_the_k_nearest_others(three_classes, per_class):
    X, y = three_classes
    k = 5
    defence = KNNDefence(n_neighbors=k, per_class=per_class).fit(X, y)
    D = all_pairs(X, X)
    expected = []
    for i in range(len(X)):
        others = [D[i, j] for j in range(len(X)) if j != i and (y[j] == y[i] or not per_class)]
        expected.append(np.mean(sorted(others)[:k]))
    np.testing.assert_allclose(defence.scores_, expected, rtol=1e-12)

    # a new point: its k nearest training points, no exclusion
    X_new, y_new = X[:4] + 0.3, y[:4]
    D_new = all_pairs(X_new, X)
    expected_new = [np.mean(sorted(D_new[i, j] for j in range(len(X)) if y[j] == y_new[i] or not per_class)[:k])
                    for i in range(len(X_new))]
    np.testing.assert_allclose(defence.score_samples(X_new, y_new), expected_new, rtol=1e-12)


def test_knn_counts_duplicates_but_not_the_point_itself():
    X = np.array([[0.0], [0.0], [1.0], [3.0], [10.0], [10.0], [11.0], [13.0]])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    defence = KNNDefence(n_neighbors=2).fit(X, y)
    np.testing.assert_allclose(defence.scores_[:4], [0.5, 0.5, 1.0, 2.5])


def test_svd_score_is_the_residual_outside_the_top_scatter_directions(three_classes):
    X, y = three_classes
    k = 2
    defence = SVDDefence(n_components=k).fit(X, y)
    centred = np.array([x - explicit_centroid(X, y, t) for x, t in zip(X, y)])
    scatter = sum(np.outer(c, c) for c in centred)
    _, eigenvectors = np.linalg.eigh(scatter)
    Q = eigenvectors[:, -k:]  # top-k eigenvectors of the scatter = top-k right singular vectors
    residuals = [c - Q @ (Q.T @ c) for c in centred]
    np.testing.assert_allclose(defence.scores_, [np.linalg.norm(r) for r in residuals], rtol=1e-8)
    np.testing.assert_allclose(defence.components_ @ defence.components_.T, np.eye(k), atol=1e-12)


# --------------------------------------------------------------------------------------------------
# the shared recipe: how many points go, which ones, and the feasible set
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL_DEFENCES)
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.29, 0.5])
def test_each_class_loses_exactly_the_floor_of_the_fraction(cls, fraction):
    X, y = blobs(n_per_class=(100, 33, 21), seed=2)
    defence = make_defence(cls, removal_fraction=fraction).fit(X, y)
    for i, label in enumerate(defence.classes_):
        n_class = int(np.sum(y == label))
        expected = math.floor(round(fraction * n_class, 9))
        assert np.sum(~defence.keep_mask_ & (y == label)) == expected == defence.n_removed_[i]


@pytest.mark.parametrize("cls", ALL_DEFENCES)
def test_removed_points_are_the_highest_scores_and_the_threshold_is_the_largest_kept(cls, three_classes):
    X, y = three_classes
    defence = make_defence(cls, removal_fraction=0.2).fit(X, y)
    for i, label in enumerate(defence.classes_):
        rows = y == label
        kept, removed = defence.scores_[rows & defence.keep_mask_], defence.scores_[rows & ~defence.keep_mask_]
        assert defence.threshold_[i] == kept.max()
        assert removed.min() >= kept.max()


@pytest.mark.parametrize("cls", ALL_DEFENCES)
def test_planted_far_outliers_are_removed(cls):
    X, y = blobs(n_per_class=(100, 100), seed=3)
    # three points per class far away on the wrong side and off the main plane: every score sees them (but
    # not so far that they take over the top singular direction, which would hide them from the SVD defence)
    rng = np.random.RandomState(4)
    far = []
    for label in (0, 1):
        sign = 1.0 if label == 0 else -1.0
        far.append(np.c_[sign * (6 + rng.rand(3)), rng.standard_normal((3, 1)), np.full((3, 3), 2.0)])
    X_all = np.vstack([X, *far])
    y_all = np.r_[y, 0, 0, 0, 1, 1, 1]
    is_outlier = np.r_[np.zeros(len(X), bool), np.ones(6, bool)]
    defence = make_defence(cls).fit(X_all, y_all)  # removes floor(0.05 * 103) = 5 points per class
    assert not defence.keep_mask_[is_outlier].any()
    rates = removal_rates(defence.keep_mask_, is_outlier)
    assert rates["detection rate"] == 1.0
    assert rates["false-positive rate"] == pytest.approx(4 / 200)


@pytest.mark.parametrize("cls", ALL_DEFENCES)
def test_fit_returns_self_and_filter_keeps_the_kept(cls, binary):
    X, y = binary
    defence = make_defence(cls)
    assert defence.fit(X, y) is defence
    mask = defence.keep_mask_.copy()
    X_kept, y_kept = make_defence(cls).filter(X, y)
    np.testing.assert_array_equal(X_kept, X[mask])
    np.testing.assert_array_equal(y_kept, y[mask])
    assert mask.dtype == bool and mask.shape == (len(X),)


@pytest.mark.parametrize("cls", ALL_DEFENCES)
def test_is_feasible_compares_scores_with_the_class_threshold(cls, three_classes):
    X, y = three_classes
    defence = make_defence(cls, removal_fraction=0.1).fit(X, y)
    rng = np.random.RandomState(6)
    X_new = X[rng.randint(len(X), size=30)] + np.r_[1, 1, 0.1, 0.1, 0.1] * rng.standard_normal((30, 5))
    y_new = rng.randint(0, 3, 30)
    scores = defence.score_samples(X_new, y_new)
    expected = np.array([s <= defence.threshold_[list(defence.classes_).index(t)] for s, t in zip(scores, y_new)])
    np.testing.assert_array_equal(defence.is_feasible(X_new, y_new), expected)
    assert 0 < expected.sum() < len(expected)  # the test sees both outcomes
    if cls is KNNDefence:
        # a training point is its own neighbour at distance 0 when scored as a new point: kept stays feasible
        assert defence.is_feasible(X, y)[defence.keep_mask_].all()
    else:
        np.testing.assert_array_equal(defence.is_feasible(X, y), defence.keep_mask_)


def test_labels_may_be_strings(binary):
    X, y = binary
    names = np.array(["one", "seven"])[y]
    defence = L2Defence().fit(X, names)
    np.testing.assert_array_equal(defence.classes_, ["one", "seven"])
    np.testing.assert_array_equal(defence.keep_mask_, L2Defence().fit(X, y).keep_mask_)
    assert defence.is_feasible(X[:3], names[:3]).shape == (3,)


@pytest.mark.parametrize("cls", ALL_DEFENCES)
def test_defences_are_scikit_learn_estimators(cls, binary):
    X, y = binary
    defence = make_defence(cls, removal_fraction=0.1)
    assert isinstance(defence, SanitizationDefence)
    copy = clone(defence)
    assert copy.get_params() == defence.get_params()
    assert not [name for name in vars(copy) if name.endswith("_")]  # no learned state before fit
    np.testing.assert_array_equal(copy.fit(X, y).keep_mask_, defence.fit(X, y).keep_mask_)  # deterministic


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL_DEFENCES)
@pytest.mark.parametrize("fraction, error", [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError),
                                             (float("nan"), ValueError), ("0.1", TypeError), (True, TypeError),
                                             (None, TypeError)])
def test_removal_fraction_outside_zero_one_is_refused_at_fit(cls, fraction, error, binary):
    defence = make_defence(cls, removal_fraction=fraction)  # __init__ only stores it
    with pytest.raises(error, match=r"removal_fraction must be a number in \[0, 1\)"):
        defence.fit(*binary)


def test_score_samples_is_the_per_point_score_and_score_is_not_defined(binary):
    X, y = binary
    defence = L2Defence().fit(X, y)
    np.testing.assert_array_equal(defence.score_samples(X, y), defence.scores_)  # one number per point
    assert not hasattr(defence, "score")  # scikit-learn's score means one number for a whole data set


@pytest.mark.parametrize("cls", ALL_DEFENCES)
def test_using_a_defence_before_fit_raises_not_fitted(cls, binary):
    X, y = binary
    with pytest.raises(NotFittedError):
        make_defence(cls).score_samples(X, y)
    with pytest.raises(NotFittedError):
        make_defence(cls).is_feasible(X, y)


@pytest.mark.parametrize("cls", ALL_DEFENCES)
def test_bad_shapes_and_values_are_refused(cls, binary):
    X, y = binary
    defence = make_defence(cls)
    with pytest.raises(ValueError, match="shape"):
        defence.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="shape"):
        defence.fit(X, y[:-1])
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        defence.fit(X_nan, y)
    defence.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        defence.is_feasible(X[:, :3], y)
    with pytest.raises(ValueError, match="not seen in fit"):
        defence.is_feasible(X[:2], [0, 7])
    with pytest.raises(ValueError, match="not seen in fit"):
        defence.score_samples(X[:2], [0, 7])


@pytest.mark.parametrize("cls", ALL_DEFENCES)
def test_error_types_are_value_errors_for_values_and_type_errors_for_types(cls, binary):
    X, y = binary
    defence = make_defence(cls)
    with pytest.raises(TypeError, match="X must be an array of numbers"):
        defence.fit(np.full(X.shape, "a"), y)
    with pytest.raises(TypeError, match="X must be an array of numbers"):
        defence.fit(None, y)
    with pytest.raises(ValueError, match=r"X is empty: 0 sample\(s\)"):
        defence.fit(np.empty((0, X.shape[1])), [])
    with pytest.raises(ValueError, match="requires y to be passed"):
        defence.fit(X, None)
    X_inf = X.copy()
    X_inf[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        defence.fit(X_inf, y)
    defence.fit(X, y)
    with pytest.raises(TypeError, match="X must be an array of numbers"):
        defence.score_samples([["a"] * X.shape[1]], [0])
    with pytest.raises(ValueError, match=r"X has 3 features, but the defence was fitted with 5"):
        defence.score_samples(X[:, :3], y)
    with pytest.raises(ValueError, match=r"y must have shape \(4,\) to match X, got shape \(2,\)"):
        defence.is_feasible(X[:4], y[:2])


def test_defence_specific_requirements(binary):
    X, y = binary
    with pytest.raises(ValueError, match="two classes"):
        SlabDefence().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="two classes"):
        LossDefence().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="loss"):
        LossDefence(loss="squared").fit(X, y)
    with pytest.raises(ValueError, match="n_neighbors must be a positive integer, got 0"):
        KNNDefence(n_neighbors=0).fit(X, y)
    with pytest.raises(TypeError, match="n_neighbors must be a positive integer, got 2.5"):
        KNNDefence(n_neighbors=2.5).fit(X, y)
    with pytest.raises(ValueError, match=r"n_neighbors=5 needs more than 5 samples, but the smallest class has 4"):
        KNNDefence().fit(X[:9], np.r_[np.zeros(4, int), np.ones(5, int)])
    with pytest.raises(ValueError, match="n_components"):
        SVDDefence(n_components=X.shape[1]).fit(X, y)
    with pytest.raises(TypeError, match="n_components must be a positive integer, got 1.5"):
        SVDDefence(n_components=1.5).fit(X, y)
    with pytest.raises(ValueError, match="n_components must be a positive integer, got 0"):
        SVDDefence(n_components=0).fit(X, y)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def test_far_outliers_are_noisy_copies_with_their_labels(binary):
    X, y = binary
    X_out, y_out = far_outliers(X, y, 6, noise_scale=0.0, random_state=0)
    matches = [np.flatnonzero((X == x).all(axis=1)) for x in X_out]
    assert all(len(m) == 1 and y[m[0]] == t for m, t in zip(matches, y_out))
    X_out, _ = far_outliers(X, y, 6, noise_scale=5.0, clip=(-1, 1), random_state=0)
    assert X_out.min() >= -1 and X_out.max() <= 1
    with pytest.raises(ValueError, match=r"n_outliers must be an integer in \[0, 70\], got 71"):
        far_outliers(X, y, len(X) + 1, 1.0)
    with pytest.raises(TypeError, match="n_outliers must be an integer"):
        far_outliers(X, y, 2.0, 1.0)
    with pytest.raises(ValueError, match="noise_scale must be a non-negative number"):
        far_outliers(X, y, 2, -1.0)
    with pytest.raises(TypeError, match="noise_scale must be a non-negative number"):
        far_outliers(X, y, 2, "loud")
    with pytest.raises(TypeError, match="random_state"):
        far_outliers(X, y, 2, 1.0, random_state=1.5)


def test_far_outliers_take_every_kind_of_random_state(binary):
    X, y = binary
    first = far_outliers(X, y, 5, 1.0, random_state=np.random.default_rng(3))
    again = far_outliers(X, y, 5, 1.0, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(first[0], again[0])  # a Generator in the same state gives the same draws
    by_seed = far_outliers(X, y, 5, 1.0, random_state=7)
    by_state = far_outliers(X, y, 5, 1.0, random_state=np.random.RandomState(7))
    np.testing.assert_array_equal(by_seed[0], by_state[0])  # an integer seeds a RandomState
    assert far_outliers(X, y, 5, 1.0)[0].shape == (5, X.shape[1])


def test_removal_rates():
    keep = np.array([True, False, True, False, False])
    poison = np.array([False, False, True, True, True])
    assert removal_rates(keep, poison) == {"detection rate": 2 / 3, "false-positive rate": 0.5}
    with pytest.raises(TypeError, match="keep_mask and is_poison must be boolean arrays, got dtypes int64 and bool"):
        removal_rates(np.array([1, 0], dtype=np.int64), [True, False])
    with pytest.raises(ValueError, match="same length"):
        removal_rates([True, False], [True])


def test_noisy_outliers_in_real_data_are_caught_by_the_distance_defences():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    X_out, y_out = far_outliers(X, y, 10, noise_scale=3.0, random_state=0)
    X_all, y_all = np.vstack([X, X_out]), np.r_[y, y_out]
    is_outlier = np.r_[np.zeros(len(X), bool), np.ones(10, bool)]
    for defence in (L2Defence(), KNNDefence(), SVDDefence(n_components=5)):
        assert removal_rates(defence.fit(X_all, y_all).keep_mask_, is_outlier)["detection rate"] == 1.0


# --------------------------------------------------------------------------------------------------
# the one-shot adaptive attack
# --------------------------------------------------------------------------------------------------
def _two_blobs(seed=0, n=80, d=6):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.standard_normal((n, d)) + 2.0, rng.standard_normal((n, d)) - 2.0])
    return X, np.repeat([0, 1], n)


def test_feasible_set_poisons_pass_the_sphere_slab_and_svd_fitted_on_clean_data():
    X, y = _two_blobs()
    X_poison, y_poison = feasible_set_poisons(X, y, 10, n_components=3)
    assert X_poison.shape == (10, X.shape[1]) and list(y_poison[:4]) == [0, 1, 0, 1]
    for defence in (L2Defence(), SlabDefence(), SVDDefence(n_components=3)):
        assert defence.fit(X, y).is_feasible(X_poison, y_poison).all(), type(defence).__name__


def test_feasible_set_poisons_are_the_worst_fit_points_of_the_feasible_set():
    """Brute force: no random point of the (shrunk) ball, slab and subspace is fit worse by the clean model."""
    X, y = _two_blobs(seed=1)
    margin = 0.9
    X_poison, y_poison = feasible_set_poisons(X, y, 2, n_components=3, margin=margin)
    sphere, slab = L2Defence().fit(X, y), SlabDefence().fit(X, y)
    svd = SVDDefence(n_components=3).fit(X, y)
    model = LogisticRegression(max_iter=2000).fit(X, y)
    rng = np.random.RandomState(2)
    for i, label in enumerate(sphere.classes_):
        signed_margin = lambda Z: (1 if label == 1 else -1) * model.decision_function(Z)  # noqa: E731
        # random points of the subspace inside the shrunk ball, then kept if inside the shrunk slab
        coefficients = rng.standard_normal((20000, 3))
        coefficients *= (rng.uniform(size=(20000, 1)) ** (1 / 3)) / np.linalg.norm(coefficients, axis=1,
                                                                                     keepdims=True)
        candidates = sphere.centroids_[i] + margin * sphere.threshold_[i] * coefficients @ svd.components_
        inside_slab = np.abs((candidates - slab.centroids_[i]) @ slab.directions_[i]) <= margin * slab.threshold_[i]
        assert inside_slab.sum() > 100
        best_random = signed_margin(candidates[inside_slab]).min()
        chosen = signed_margin(X_poison[y_poison == label][:1])[0]
        assert chosen <= best_random + 1e-9


def test_feasible_set_poisons_refuse_bad_input():
    X, y = _two_blobs()
    with pytest.raises(ValueError, match="n_poison must be a non-negative integer, got -1"):
        feasible_set_poisons(X, y, -1)
    with pytest.raises(TypeError, match="n_poison must be a non-negative integer, got 2.0"):
        feasible_set_poisons(X, y, 2.0)
    with pytest.raises(ValueError, match=r"margin must be a number in \(0, 1\], got 1.5"):
        feasible_set_poisons(X, y, 2, margin=1.5)
    with pytest.raises(TypeError, match="margin must be a number in"):
        feasible_set_poisons(X, y, 2, margin="0.9")
    with pytest.raises(ValueError, match="two classes"):
        feasible_set_poisons(X, np.arange(len(y)) % 3, 2)
    with pytest.raises(ValueError, match=r"y_clean must have shape \(160,\)"):
        feasible_set_poisons(X, y[:-1], 2)


class _FixedLinearModel(BaseEstimator):
    """A "fitted" linear model with given weights, for the degenerate cases of the adaptive attack."""

    def __init__(self, coef):
        self.coef = coef

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.coef_ = np.asarray(self.coef, dtype=float)[None, :]
        return self


def _check_poisons(X, y, X_poison, y_poison, n_components):
    assert np.all(np.isfinite(X_poison))
    for defence in (L2Defence(), SlabDefence(), SVDDefence(n_components=n_components)):
        assert defence.fit(X, y).is_feasible(X_poison, y_poison).all(), type(defence).__name__


def test_feasible_set_poisons_with_a_zero_model_are_the_centroids():
    """w = 0: no feasible point is fit worse than another, and the attack returns the class centroids."""
    X, y = _two_blobs(seed=3)
    X_poison, y_poison = feasible_set_poisons(X, y, 4, n_components=3, estimator=_FixedLinearModel(np.zeros(6)))
    _check_poisons(X, y, X_poison, y_poison, 3)
    for label in (0, 1):
        np.testing.assert_allclose(X_poison[y_poison == label], np.tile(X[y == label].mean(axis=0), (2, 1)),
                                   atol=1e-12)


def test_feasible_set_poisons_with_identical_class_centroids():
    """Equal centroids make the slab direction zero: the slab accepts everything, and the closed form is the
    centroid plus the radius along the projected gradient, which lowers the margin by radius * |P w|."""
    rng = np.random.RandomState(4)
    # multiples of 1/16: the sums are exact, so each class's centroid is exactly 0
    half = rng.randint(-8, 9, size=(40, 4)) * np.array([0.75, 0.5, 0.125, 0.0625])
    X = np.vstack([half, -half, half[:, ::-1], -half[:, ::-1]])  # each class is symmetric about 0
    y = np.repeat([0, 1], 80)
    slab = SlabDefence().fit(X, y)
    np.testing.assert_array_equal(slab.directions_, 0.0)
    w = np.array([1.0, -2.0, 0.5, 0.0])
    margin = 0.8
    X_poison, y_poison = feasible_set_poisons(X, y, 2, n_components=2, margin=margin,
                                              estimator=_FixedLinearModel(w))
    _check_poisons(X, y, X_poison, y_poison, 2)
    sphere, svd = L2Defence().fit(X, y), SVDDefence(n_components=2).fit(X, y)
    P = svd.components_.T @ svd.components_
    for i, label in enumerate((0, 1)):
        sign = 1.0 if label == 1 else -1.0
        expected = sphere.centroids_[i] - sign * margin * sphere.threshold_[i] * (P @ w) / np.linalg.norm(P @ w)
        np.testing.assert_allclose(X_poison[i], expected, atol=1e-10)
        drop = sign * (X_poison[i] - sphere.centroids_[i]) @ w
        assert drop == pytest.approx(-margin * sphere.threshold_[i] * np.linalg.norm(P @ w))


def test_feasible_set_poisons_with_a_zero_variance_class():
    """A class whose points are all equal has radius 0: its poison is that point."""
    rng = np.random.RandomState(5)
    X = np.vstack([np.tile([2.0, 1.0, 0.0, -1.0], (30, 1)), rng.standard_normal((30, 4)) - 2.0])
    y = np.repeat([0, 1], 30)
    X_poison, y_poison = feasible_set_poisons(X, y, 2, n_components=2)
    _check_poisons(X, y, X_poison, y_poison, 2)
    np.testing.assert_array_equal(X_poison[0], [2.0, 1.0, 0.0, -1.0])


def test_feasible_set_poisons_with_the_gradient_along_the_slab_normal():
    """The gradient parallel to the slab normal: the step goes along the normal only, as far as the slab and the
    ball allow, min(margin * radius, margin * slab half-width) (no orthogonal part to spend the rest on)."""
    rng = np.random.RandomState(6)
    X = np.vstack([rng.standard_normal((50, 3)) * [1.0, 1.0, 0.01] + [3.0, 0, 0],
                   rng.standard_normal((50, 3)) * [1.0, 1.0, 0.01] - [3.0, 0, 0]])
    y = np.repeat([0, 1], 50)
    margin = 0.9
    sphere, slab = L2Defence().fit(X, y), SlabDefence().fit(X, y)
    svd = SVDDefence(n_components=2).fit(X, y)
    P = svd.components_.T @ svd.components_
    w = P @ slab.directions_[1]  # the model's weights lie along the (projected) slab normal
    X_poison, y_poison = feasible_set_poisons(X, y, 2, n_components=2, margin=margin,
                                              estimator=_FixedLinearModel(w))
    _check_poisons(X, y, X_poison, y_poison, 2)
    for i, label in enumerate((0, 1)):
        v = P @ slab.directions_[i]
        step = X_poison[i] - sphere.centroids_[i]
        sign = 1.0 if label == 1 else -1.0  # the step goes along -sign(y) w, which is parallel to v = +-w
        unit = -sign * w / np.linalg.norm(w)
        expected_length = min(margin * sphere.threshold_[i], margin * slab.threshold_[i] / np.linalg.norm(v))
        np.testing.assert_allclose(step, expected_length * unit, atol=1e-9)
