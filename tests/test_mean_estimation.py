"""Tests for poisoning.mean_estimation against closed forms, brute force and known rates.

Every random draw is seeded; the tolerances were chosen to hold with a wide margin for these seeds
(and for other seeds too), so a failure means a changed behaviour, not bad luck.
"""

import numpy as np
import pytest
from scipy import stats

from poisoning.mean_estimation import (
    adaptive_attack,
    coordinatewise_median,
    distance_filter,
    empirical_mean,
    filtered_mean,
    make_contaminated_gaussian,
    naive_attack,
    pruning_radius,
    spectral_filter_mean,
    trimmed_mean,
)

EPS = 0.1  # the contamination level of Diakonikolas et al. (2017), Figure 1


def rng(seed):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------------------
def test_empirical_mean_is_the_arithmetic_mean():
    x = np.array([1.0, 2.0, 3.0, 10.0])
    assert empirical_mean(x) == pytest.approx(4.0)
    X = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 0.0]])
    np.testing.assert_allclose(empirical_mean(X), [2.0, 2.0])
    Y = rng(0).normal(3.0, 2.0, size=(500, 7))
    np.testing.assert_allclose(empirical_mean(Y), Y.sum(axis=0) / 500, rtol=1e-12)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.45])
def test_trimmed_mean_equals_scipy_trim_mean(fraction):
    x = rng(1).standard_t(df=2, size=101)
    assert trimmed_mean(x, fraction) == pytest.approx(stats.trim_mean(x, fraction), rel=1e-12)
    X = rng(2).standard_t(df=2, size=(57, 4))
    np.testing.assert_allclose(trimmed_mean(X, fraction), stats.trim_mean(X, fraction, axis=0), rtol=1e-12)
    # n * fraction lands on an integer up to rounding for these sizes: same cut as scipy
    for n in (10, 20, 30, 40):
        z = rng(n).standard_normal(n)
        assert trimmed_mean(z, fraction) == pytest.approx(stats.trim_mean(z, fraction), rel=1e-12)


def test_trimmed_mean_with_zero_fraction_is_the_empirical_mean():
    X = rng(3).standard_normal((40, 3))
    np.testing.assert_allclose(trimmed_mean(X, 0.0), empirical_mean(X), rtol=1e-12)


def test_trimmed_mean_ignores_how_far_trimmed_poisons_are():
    # 5% poisons, 10% trimmed from each side: the poisons are cut wherever they sit beyond the clean data
    x = rng(4).standard_normal(190)
    near = np.r_[x, np.full(10, 50.0)]
    far = np.r_[x, np.full(10, 5000.0)]
    assert trimmed_mean(near, 0.1) == pytest.approx(trimmed_mean(far, 0.1), rel=1e-12)
    assert abs(trimmed_mean(far, 0.1)) < 0.2
    assert empirical_mean(far) > 200  # while the plain mean is dragged far away


def test_coordinatewise_median_equals_numpy_median():
    x = rng(5).standard_normal(99)
    assert coordinatewise_median(x) == pytest.approx(np.median(x), rel=1e-12)
    X = rng(6).standard_normal((100, 5))  # even n: the average of the two middle values
    np.testing.assert_allclose(coordinatewise_median(X), np.median(X, axis=0), rtol=1e-12)


@pytest.mark.parametrize("n_poison", [1, 10, 111])
@pytest.mark.parametrize("distance", [0.5, 7.0, 1e3])
def test_naive_attack_moves_the_mean_by_the_closed_form_1d(n_poison, distance):
    x = rng(7).standard_normal(1000)
    poisons = naive_attack(x, n_poison, distance)
    assert poisons.shape == (n_poison,)
    np.testing.assert_allclose(poisons, np.mean(x) + distance)
    shift = empirical_mean(np.r_[x, poisons]) - empirical_mean(x)
    assert shift == pytest.approx(n_poison / (1000 + n_poison) * distance, rel=1e-9)
    # direction -1 moves it the other way by the same amount
    poisons_down = naive_attack(x, n_poison, distance, direction=-1.0)
    shift_down = empirical_mean(np.r_[x, poisons_down]) - empirical_mean(x)
    assert shift_down == pytest.approx(-shift, rel=1e-9)


def test_naive_attack_moves_the_mean_along_the_direction_in_d_dimensions():
    n, d, k, distance = 400, 6, 25, 9.0
    X = rng(8).standard_normal((n, d))
    direction = np.array([3.0, -4.0, 0.0, 0.0, 0.0, 0.0])  # not unit length: normalised by the attack
    P = naive_attack(X, k, distance, direction=direction)
    assert P.shape == (k, d)
    shift = empirical_mean(np.vstack([X, P])) - empirical_mean(X)
    np.testing.assert_allclose(shift, k / (n + k) * distance * direction / 5.0, atol=1e-12)
    # default direction: the first coordinate axis
    shift_default = empirical_mean(np.vstack([X, naive_attack(X, k, distance)])) - empirical_mean(X)
    np.testing.assert_allclose(shift_default, k / (n + k) * distance * np.eye(d)[0], atol=1e-12)


def test_adaptive_attack_places_points_at_the_closed_form_location():
    X = rng(9).standard_normal((301, 3))
    u = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    P = adaptive_attack(X, 4, radius=2.0, direction=[5.0, 5.0, 0.0], margin=0.1)
    np.testing.assert_allclose(P, np.tile(np.median(X, axis=0) + 0.9 * 2.0 * u, (4, 1)))
    x = rng(10).standard_normal(301)
    np.testing.assert_allclose(adaptive_attack(x, 3, radius=2.0), np.median(x) + 0.99 * 2.0)


def test_outputs_keep_the_callers_form():
    x = rng(11).standard_normal(200)
    X = rng(12).standard_normal((200, 4))
    X1 = x[:, None]  # (n, 1) is d-dimensional data with d = 1: answered with vectors
    estimators = [
        empirical_mean,
        coordinatewise_median,
        lambda a: trimmed_mean(a, 0.1),
        lambda a: filtered_mean(a, 3.0),
        lambda a: spectral_filter_mean(a, EPS),
    ]
    for estimate in estimators:
        assert type(estimate(x)) is float
        vector = estimate(X)
        assert isinstance(vector, np.ndarray) and vector.shape == (4,)
        assert estimate(X1).shape == (1,)
        assert estimate(X1)[0] == pytest.approx(estimate(x), rel=1e-12)
    for attack in (naive_attack, adaptive_attack):
        assert attack(x, 5, 2.0).shape == (5,)
        assert attack(X, 5, 2.0).shape == (5, 4)
        assert attack(X1, 5, 2.0).shape == (5, 1)
        assert attack(X, 0, 2.0).shape == (0, 4)
    for data in (x, X):
        mask = distance_filter(data, 2.5)
        assert mask.dtype == bool and mask.shape == (200,)
    estimate, mask = spectral_filter_mean(X, EPS, return_mask=True)
    assert estimate.shape == (4,) and mask.shape == (200,) and mask.dtype == bool


# --------------------------------------------------------------------------------------------------
# the distance filter
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, radius", [((301,), 1.5), ((200, 1), 0.8), ((250, 3), 2.2), ((150, 10), 3.5)])
def test_distance_filter_keeps_exactly_the_points_within_the_radius(shape, radius):
    X = rng(13).standard_normal(shape)
    X2 = X.reshape(len(X), -1)
    center = [np.median(X2[:, j]) for j in range(X2.shape[1])]
    expected = []
    for point in X2:  # brute force, one point at a time
        expected.append(np.sqrt(sum((p - c) ** 2 for p, c in zip(point, center))) <= radius)
    mask = distance_filter(X, radius)
    np.testing.assert_array_equal(mask, expected)
    assert 0 < mask.sum() < len(X)  # the radius really splits the data
    kept = X2[np.array(expected)]
    np.testing.assert_allclose(np.atleast_1d(filtered_mean(X, radius)), kept.mean(axis=0), rtol=1e-12)


def test_distance_filter_with_a_given_center():
    X = np.array([[3.0, 4.0], [3.0, 4.1], [0.0, 0.0], [-5.0, 0.0], [100.0, 100.0]])
    # distances from the origin: 5, 5.02, 0, 5, 141: the boundary is kept
    np.testing.assert_array_equal(distance_filter(X, 5.0, center=[0.0, 0.0]), [True, False, True, True, False])
    # another centre, same brute-force rule
    np.testing.assert_array_equal(distance_filter(X, 1.0, center=[3.0, 4.0]), [True, True, False, False, False])
    assert filtered_mean(X, 1.0, center=[3.0, 4.0]) == pytest.approx([3.0, 4.05])
    x = np.array([-2.0, 0.5, 1.0, 9.0])
    np.testing.assert_array_equal(distance_filter(x, 1.0, center=1.0), [False, True, True, False])


def test_distance_filter_removes_planted_far_points():
    x = rng(14).standard_normal(1000)
    poisoned = np.r_[x, naive_attack(x, 50, 20.0)]
    mask = distance_filter(poisoned, 4.0)
    assert not mask[1000:].any()
    assert mask[:1000].mean() >= 0.997
    assert abs(filtered_mean(poisoned, 4.0)) < 0.1  # back near the true mean 0
    assert empirical_mean(poisoned) > 0.8  # about 50/1050 * 20 = 0.95


def test_distance_filter_keeps_clean_points_at_the_gaussian_rate_1d():
    x = rng(15).standard_normal(200_000)
    expected = stats.norm.cdf(3) - stats.norm.cdf(-3)  # 0.9973
    assert distance_filter(x, 3.0).mean() == pytest.approx(expected, abs=8e-4)
    assert distance_filter(x, 3.0, center=0.0).mean() == pytest.approx(expected, abs=8e-4)
    assert distance_filter(x, 1.0, center=0.0).mean() == pytest.approx(0.6827, abs=4e-3)


def test_distance_filter_keeps_clean_points_at_the_chi_rate_in_d_dimensions():
    d = 20
    X = rng(16).standard_normal((50_000, d))
    for quantile in (0.5, 0.9, 0.99):
        radius = stats.chi.ppf(quantile, d)  # the norm of a N(0, I_d) point is chi-distributed
        assert distance_filter(X, radius, center=np.zeros(d)).mean() == pytest.approx(quantile, abs=0.01)
        assert distance_filter(X, radius).mean() == pytest.approx(quantile, abs=0.015)
    # the clean points concentrate at distance sqrt(d): none of them is near the centre
    norms = np.linalg.norm(X, axis=1)
    assert np.mean(norms) == pytest.approx(np.sqrt(d), rel=0.02)
    assert distance_filter(X, 0.5 * np.sqrt(d), center=np.zeros(d)).mean() < 0.001


# --------------------------------------------------------------------------------------------------
# the adaptive attack against the distance filter
# --------------------------------------------------------------------------------------------------
def _attack_shifts(X, k, radius, distance, direction=None):
    """Shift of the filtered mean, from the clean empirical mean, under the naive and the adaptive attack."""
    reference = empirical_mean(X)
    out = {}
    for name, P in (
        ("naive", naive_attack(X, k, distance, direction=direction)),
        ("adaptive", adaptive_attack(X, k, radius, direction=direction)),
    ):
        poisoned = np.concatenate([X, P])
        mask = distance_filter(poisoned, radius)
        out[name] = (mask[len(X):], np.asarray(filtered_mean(poisoned, radius)) - reference)
    return out


@pytest.mark.parametrize("k", [50, 100, 250])
def test_adaptive_attack_beats_the_filter_in_1d(k):
    n, radius = 2000, 3.0
    x = rng(17).standard_normal(n)
    result = _attack_shifts(x, k, radius, distance=10.0)
    naive_kept, naive_shift = result["naive"]
    adaptive_kept, adaptive_shift = result["adaptive"]
    assert not naive_kept.any()  # the far poisons are all removed
    assert adaptive_kept.all()  # every adaptive poison survives
    assert abs(naive_shift) < 0.05
    assert adaptive_shift > abs(naive_shift)
    # the filtered mean moves by about k/(n+k) * radius, and never by more than the radius
    assert adaptive_shift == pytest.approx(k / (n + k) * radius, rel=0.2)
    assert adaptive_shift <= radius


@pytest.mark.parametrize("d", [2, 10, 50])
def test_adaptive_attack_beats_the_filter_in_d_dimensions(d):
    n, k = 3000, 300
    X = rng(18 + d).standard_normal((n, d))
    radius = stats.chi.ppf(0.999, d)  # keeps 99.9% of the clean points: about sqrt(d) + 2.3
    direction = rng(100 + d).standard_normal(d)  # any direction, not only a coordinate axis
    u = direction / np.linalg.norm(direction)
    result = _attack_shifts(X, k, radius, distance=3 * radius, direction=direction)
    naive_kept, naive_shift = result["naive"]
    adaptive_kept, adaptive_shift = result["adaptive"]
    assert not naive_kept.any()
    assert adaptive_kept.all()
    size = np.linalg.norm(adaptive_shift)
    assert size > 5 * np.linalg.norm(naive_shift)
    assert size == pytest.approx(k / (n + k) * radius, rel=0.12)
    assert size <= radius
    assert adaptive_shift @ u / size > 0.95  # the shift points where the attacker wants
    # in high dimension the radius, and with it the damage, grows like sqrt(d)
    assert radius > np.sqrt(d)


def test_adaptive_poisons_survive_for_every_seed_and_budget():
    for seed in range(10):
        X = rng(200 + seed).standard_normal((301, 5))
        for k in (1, 30, 150):
            poisoned = np.vstack([X, adaptive_attack(X, k, 2.0, direction=rng(seed).standard_normal(5))])
            assert distance_filter(poisoned, 2.0)[301:].all()


# --------------------------------------------------------------------------------------------------
# the spectral filter on the benchmark of Diakonikolas et al. (2017)
# --------------------------------------------------------------------------------------------------
DIMENSIONS = (10, 40, 160)
SAMPLES_PER_DIMENSION = 50  # n = 50 d: scaled down from the paper's n = 10 d / eps^2 = 1000 d


def _contamination_bias(is_poison, d):
    """Exact E[empirical mean] - true mean for make_contaminated_gaussian's outliers."""
    n, n_poison = len(is_poison), int(is_poison.sum())
    n_cube = n_poison // 2
    far = np.zeros(d)
    far[:2] = 12.0, -2.0
    return (n_cube * (0.5 - np.ones(d)) + (n_poison - n_cube) * (far - np.ones(d))) / n


@pytest.fixture(scope="module")
def benchmark():
    rows = {}
    for d in DIMENSIONS:
        n = SAMPLES_PER_DIMENSION * d
        X, is_poison, mu = make_contaminated_gaussian(n, d, EPS, random_state=d)
        estimate, kept = spectral_filter_mean(X, EPS, return_mask=True)

        def error(v):
            return float(np.linalg.norm(v - mu))

        rows[d] = dict(
            X=X,
            is_poison=is_poison,
            mask=kept,
            clean=error(X[~is_poison].mean(axis=0)),
            empirical=error(empirical_mean(X)),
            median=error(coordinatewise_median(X)),
            pruned=error(filtered_mean(X, pruning_radius(n, d, EPS))),
            spectral=error(estimate),
            bias=float(np.linalg.norm(_contamination_bias(is_poison, d))),
        )
    return rows


def test_make_contaminated_gaussian_matches_the_paper_setup():
    X, is_poison, mu = make_contaminated_gaussian(1000, 8, EPS, random_state=0)
    assert X.shape == (1000, 8) and is_poison.sum() == 100
    np.testing.assert_array_equal(mu, np.ones(8))
    poisons = X[is_poison]
    far = np.all(poisons == np.r_[12.0, -2.0, np.zeros(6)], axis=1)
    assert far.sum() == 50
    assert np.isin(poisons[~far], [0.0, 1.0]).all()  # the others are corners of the cube
    inliers = X[~is_poison]
    np.testing.assert_allclose(inliers.mean(axis=0), mu, atol=0.15)
    np.testing.assert_allclose(np.cov(inliers.T), np.eye(8), atol=0.15)
    X_again, _, _ = make_contaminated_gaussian(1000, 8, EPS, random_state=0)
    np.testing.assert_array_equal(X, X_again)


@pytest.mark.parametrize("d", [1, 10, 40, 160])
def test_spectral_filter_returns_the_empirical_mean_on_clean_data(d):
    X = rng(300 + d).standard_normal((SAMPLES_PER_DIMENSION * d, d)) + 1.0
    estimate, kept = spectral_filter_mean(X, EPS, return_mask=True)
    assert kept.all()
    np.testing.assert_allclose(estimate, empirical_mean(X), atol=1e-12)


@pytest.mark.parametrize("d", DIMENSIONS)
def test_naive_estimators_error_grows_like_eps_sqrt_d(benchmark, d):
    row = benchmark[d]
    # the empirical mean is off by the outliers' bias (closed form) up to sampling noise of norm ~ sqrt(d / n)
    noise = np.sqrt(d / len(row["X"]))
    assert row["empirical"] == pytest.approx(row["bias"], abs=1.6 * noise)
    assert row["empirical"] > 0.75 * EPS * np.sqrt(d)
    assert row["median"] > 0.5 * EPS * np.sqrt(d) or d == 10


def test_naive_error_grows_with_d_while_the_filter_stays_flat(benchmark):
    empirical = [benchmark[d]["empirical"] for d in DIMENSIONS]
    median = [benchmark[d]["median"] for d in DIMENSIONS]
    spectral = [benchmark[d]["spectral"] for d in DIMENSIONS]
    assert np.all(np.diff(empirical) > 0) and empirical[-1] > empirical[0] + 0.3
    assert np.all(np.diff(median) > 0) and median[-1] > median[0] + 0.3
    # the bias is eps/2 * sqrt(2.25 d + 118): its square grows linearly in d with slope 2.25 eps^2 / 4
    slope = np.polyfit(DIMENSIONS, np.square(empirical), 1)[0]
    assert slope == pytest.approx(2.25 * EPS**2 / 4, rel=0.2)
    # the filter: O(eps sqrt(log 1/eps)) plus sampling error, whatever d
    assert max(spectral) < 0.4
    for d in DIMENSIONS:
        assert benchmark[d]["spectral"] - benchmark[d]["clean"] < 0.2


def test_spectral_filter_beats_the_naive_estimators(benchmark):
    row = benchmark[160]
    assert row["spectral"] < row["empirical"] / 4
    assert row["spectral"] < row["median"] / 3
    assert row["spectral"] < row["pruned"] / 1.5
    for d in DIMENSIONS:
        assert benchmark[d]["spectral"] < benchmark[d]["empirical"] / 2
        # in low dimension eps * sqrt(d) is small and the median is as good; from d = 40 on it is not
        if d >= 40:
            assert benchmark[d]["spectral"] < benchmark[d]["median"]


@pytest.mark.parametrize("d", DIMENSIONS)
def test_spectral_filter_removes_the_planted_outliers(benchmark, d):
    row = benchmark[d]
    X, is_poison, removed = row["X"], row["is_poison"], ~row["mask"]
    far = is_poison & (X[:, 0] == 12.0) & (X[:, 1] == -2.0)
    assert removed[far].all()  # the far cluster, which does the most damage, is always removed
    if d >= 160:
        assert removed[is_poison].all()  # in high dimension the cube corners too
    # outliers make up about half of the removed set, far above their 10% share of the data; the rest
    # are clean points from the Gaussian tails that each filtering step trims (about one in ten of them)
    assert is_poison[removed].mean() > 0.3
    assert removed[~is_poison].mean() < 0.15


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
_X = np.zeros((10, 3))
_x = np.zeros(10)

BAD_INPUT = [
    (lambda: empirical_mean([]), ValueError, "empty"),
    (lambda: empirical_mean(np.empty((0, 3))), ValueError, "empty"),
    (lambda: coordinatewise_median(np.empty((5, 0))), ValueError, "empty"),
    (lambda: empirical_mean([1.0, np.nan]), ValueError, "NaN"),
    (lambda: trimmed_mean(np.array([[1.0, np.inf]]), 0.1), ValueError, "NaN or infinite"),
    (lambda: distance_filter(np.full((2, 2), np.nan), 1.0), ValueError, "NaN"),
    (lambda: empirical_mean(np.zeros((2, 2, 2))), ValueError, r"shape \(n,\) or \(n, d\)"),
    (lambda: spectral_filter_mean(np.zeros((2, 2, 2)), 0.1), ValueError, r"shape \(n,\) or \(n, d\)"),
    (lambda: empirical_mean(3.0), ValueError, r"shape \(n,\) or \(n, d\)"),
    (lambda: empirical_mean(["a", "b"]), TypeError, "array of numbers"),
    (lambda: distance_filter(_X, -1.0), ValueError, "radius must be a positive number"),
    (lambda: distance_filter(_X, 0.0), ValueError, "radius must be a positive number"),
    (lambda: distance_filter(_X, np.nan), ValueError, "radius must be a positive number"),
    (lambda: distance_filter(_X, "3"), TypeError, "radius must be a positive number, got '3' of type str"),
    (lambda: filtered_mean(_X, -2.0), ValueError, "radius"),
    (lambda: adaptive_attack(_X, 3, -1.0), ValueError, "radius must be a positive number"),
    (lambda: naive_attack(_X, 3, -1.0), ValueError, "distance must be a positive number"),
    (lambda: naive_attack(_X, 3, None), TypeError, "distance must be a positive number, got None"),
    (lambda: spectral_filter_mean(_X, 0.0), ValueError, "epsilon"),
    (lambda: spectral_filter_mean(_X, 0.5), ValueError, "epsilon"),
    (lambda: spectral_filter_mean(_X, -0.1), ValueError, "epsilon"),
    (lambda: pruning_radius(100, 10, 1.0), ValueError, "epsilon"),
    (lambda: pruning_radius(100, 10, 0.0), ValueError, "epsilon"),
    (lambda: pruning_radius(0, 10, 0.1), ValueError, "at least 1"),
    (lambda: pruning_radius(100, 0, 0.1), ValueError, "at least 1"),
    (lambda: make_contaminated_gaussian(100, 5, 0.5), ValueError, "epsilon"),
    (lambda: make_contaminated_gaussian(100, 5, -0.1), ValueError, "epsilon"),
    (lambda: make_contaminated_gaussian(100, 1, 0.1), ValueError, "d >= 2"),
    (lambda: make_contaminated_gaussian(0, 5, 0.1), ValueError, "n >= 1"),
    (lambda: make_contaminated_gaussian(10.5, 5, 0.1), TypeError, "n must be a non-negative integer"),
    (lambda: naive_attack(_X, 3, 1.0, direction=[1.0, 0.0]), ValueError, "direction must have 3 entries"),
    (lambda: adaptive_attack(_x, 3, 1.0, direction=[1.0, 0.0]), ValueError, "direction must have 1 entries"),
    (lambda: adaptive_attack(_X, 3, 1.0, direction=np.zeros(3)), ValueError, "non-zero"),
    (lambda: adaptive_attack(_X, 3, 1.0, margin=1.0), ValueError, "margin"),
    (lambda: distance_filter(_X, 1.0, center=[0.0, 0.0]), ValueError, "center must have 3 entries"),
    (lambda: distance_filter(_X, 1.0, center=[0.0, np.nan, 0.0]), ValueError, "center contains NaN"),
    # a float (even a whole one) or a boolean is not a count: TypeError; a negative count: ValueError
    (lambda: naive_attack(_X, 2.5, 1.0), TypeError, "n_poison must be a non-negative integer, got 2.5"),
    (lambda: naive_attack(_X, 3.0, 1.0), TypeError, "n_poison must be a non-negative integer"),
    (lambda: adaptive_attack(_X, -1, 1.0), ValueError, "n_poison must be a non-negative integer, got -1"),
    (lambda: adaptive_attack(_X, True, 1.0), TypeError, "n_poison must be a non-negative integer"),
    (lambda: trimmed_mean(_X, 0.5), ValueError, r"trim_fraction must be a number in \[0, 0.5\), got 0.5"),
    (lambda: trimmed_mean(_X, -0.1), ValueError, "trim_fraction"),
    (lambda: filtered_mean(np.array([0.0, 1.0]), 1.0, center=10.0), ValueError, "removed every point"),
    # bad types of every public function: TypeError, naming the argument
    (lambda: coordinatewise_median([["a", "b"]]), TypeError, "X must be an array of numbers"),
    (lambda: trimmed_mean(_X, "0.1"), TypeError, "trim_fraction must be a number in"),
    (lambda: trimmed_mean(_X, None), TypeError, "trim_fraction"),
    (lambda: filtered_mean(_X, None), TypeError, "radius"),
    (lambda: distance_filter(_X, 1.0, center="middle"), TypeError, "center must be an array of numbers"),
    (lambda: pruning_radius(100.0, 10, 0.1), TypeError, "n must be a non-negative integer"),
    (lambda: pruning_radius(100, "10", 0.1), TypeError, "d must be a non-negative integer"),
    (lambda: pruning_radius(100, 10, "0.1"), TypeError, "epsilon must be a number in"),
    (lambda: naive_attack([object()], 3, 1.0), TypeError, "X_clean must be an array of numbers"),
    (lambda: naive_attack(_X, "3", 1.0), TypeError, "n_poison"),
    (lambda: naive_attack(_X, 3, 1.0, direction=["up", "down", "left"]), TypeError, "direction"),
    (lambda: adaptive_attack(_X, 3, 1.0, margin="0.1"), TypeError, "margin must be a number in"),
    (lambda: adaptive_attack(_X, 3, 1.0, margin=np.nan), ValueError, "margin must be a number in"),
    (lambda: spectral_filter_mean(_X, None), TypeError, "epsilon"),
    (lambda: spectral_filter_mean(np.array([[1.0, np.nan]]), 0.1), ValueError, "NaN"),
    (lambda: make_contaminated_gaussian(100, 5.0, 0.1), TypeError, "d must be a non-negative integer"),
    (lambda: make_contaminated_gaussian(-1, 5, 0.1), ValueError, "n must be a non-negative integer, got -1"),
    (lambda: make_contaminated_gaussian(100, 5, "0.1"), TypeError, "epsilon"),
    (lambda: make_contaminated_gaussian(100, 5, 0.1, random_state="seed"), TypeError, "random_state"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
