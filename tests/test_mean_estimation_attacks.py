"""Tests for the attack on the trimmed mean (``poisoning.mean_estimation.trimmed_mean_attack``, the reference of
assignment 1, Part D) and its bound, against the facts its docstring derives and against brute force.

The facts: per coordinate the trimmed mean is non-decreasing in every input and moves by at most |Delta| / (N - 2k)
when one input moves by Delta; poisons between the k-th smallest and the k-th largest clean value all count, and the
estimate moves linearly with them; beyond the (k - m)-th largest clean value every poison is cut, and the estimate
stops moving (but stays pushed). From them: no poisons within the radius do more than ``trimmed_mean_shift_bound``,
and the attack does at least m r / (N - 2k), within ||c|| of that bound, when the windows hold the radius.
Every random draw is seeded.
"""

import numpy as np
import pytest

from poisoning.mean_estimation import (
    adaptive_attack,
    trimmed_mean,
    trimmed_mean_attack,
    trimmed_mean_shift_bound,
)


def rng(seed):
    return np.random.default_rng(seed)


def damage(X, X_poison, trim_fraction):
    X, X_poison = np.asarray(X, float), np.asarray(X_poison, float)
    if X.ndim == 1:
        X, X_poison = X[:, None], X_poison.reshape(-1, 1)
    shift = trimmed_mean(np.vstack([X, X_poison]), trim_fraction) - trimmed_mean(X, trim_fraction)
    return float(np.linalg.norm(shift))


def median_radius(X):
    """The radius of the graded cases: the median distance of the clean points to their coordinate-wise median."""
    return float(np.median(np.linalg.norm(X - np.median(X, axis=0), axis=1)))


def setting(X, m, beta):
    """``(k, slope, ordered)`` of the poisoned set: values cut at each end, m / (N - 2k), the sorted clean data."""
    n = len(X)
    k = int(np.floor(beta * (n + m)))
    return k, m / (n + m - 2 * k), np.sort(X, axis=0)


def spreads(d):
    return np.geomspace(0.3, 3.0, d)


# --------------------------------------------------------------------------------------------------
# the form of the attack
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, m, beta", [((50,), 3, 0.1), ((80, 1), 4, 0.1), ((120, 6), 10, 0.15),
                                            ((300, 25), 30, 0.2), ((40, 3), 0, 0.1), ((60, 4), 5, 0.0),
                                            ((20, 3), 10, 0.1), ((10, 2), 30, 0.3)])  # more poisons than cut values
def test_the_poisons_are_one_point_within_the_radius(shape, m, beta):
    X = rng(0).normal(size=shape) * 2.0 + 1.0
    X2 = X[:, None] if X.ndim == 1 else X
    radius = median_radius(X2)
    P = trimmed_mean_attack(X, m, beta, radius)
    assert P.shape == ((m,) if X.ndim == 1 else (m, shape[1])) and P.dtype == np.float64
    P2 = P.reshape(m, X2.shape[1])
    assert np.all(np.isfinite(P2))
    assert np.all(np.linalg.norm(P2 - np.median(X2, axis=0), axis=1) <= radius * (1 + 1e-12))
    assert np.all(P2 == P2[:1])  # every poison at the same point: their pulls add up
    # the whole radius is used unless every coordinate is already beyond the point where its poisons are cut
    if m:
        assert np.linalg.norm(P2[0] - np.median(X2, axis=0)) == pytest.approx(radius, rel=1e-9)
    np.testing.assert_array_equal(trimmed_mean_attack(X, m, beta, radius), P)  # deterministic


@pytest.mark.parametrize("args, error, match", [
    ((np.array([[0.0, np.nan], [1.0, 2.0]]), 2, 0.1, 1.0), ValueError, "NaN"),
    ((np.zeros((0, 3)), 2, 0.1, 1.0), ValueError, "empty"),
    ((np.zeros((5, 2, 2)), 2, 0.1, 1.0), ValueError, "shape"),
    ((np.ones((5, 2)), -1, 0.1, 1.0), ValueError, "n_poison"),
    ((np.ones((5, 2)), 2.0, 0.1, 1.0), TypeError, "n_poison"),
    ((np.ones((5, 2)), 2, 0.5, 1.0), ValueError, "trim_fraction"),
    ((np.ones((5, 2)), 2, -0.1, 1.0), ValueError, "trim_fraction"),
    ((np.ones((5, 2)), 2, 0.1, 0.0), ValueError, "radius"),
    ((np.ones((5, 2)), 2, 0.1, np.inf), ValueError, "radius"),
    ((np.ones((5, 2)), 2, 0.1, "far"), TypeError, "radius"),
])
def test_bad_input_is_refused_with_a_message(args, error, match):
    for function in (trimmed_mean_attack, trimmed_mean_shift_bound):
        with pytest.raises(error, match=match):
            function(*args)


# --------------------------------------------------------------------------------------------------
# the facts the attack rests on
# --------------------------------------------------------------------------------------------------
def test_one_input_moves_the_trimmed_mean_monotonically_and_by_at_most_delta_over_n_minus_2k():
    generator = rng(1)
    for _ in range(300):
        N = int(generator.integers(3, 40))
        beta = float(generator.uniform(0, 0.49))
        k = int(np.floor(beta * N))
        z = generator.standard_t(df=2, size=N)
        moved = z.copy()
        i, delta = int(generator.integers(N)), float(generator.normal(scale=5.0))
        moved[i] += delta
        change = trimmed_mean(moved, beta) - trimmed_mean(z, beta)
        assert change * np.sign(delta) >= -1e-12  # the same way as the input
        assert abs(change) <= abs(delta) / (N - 2 * k) + 1e-12


def test_poisons_count_linearly_inside_the_window_and_not_at_all_beyond_it():
    """1-D, m poisons at one value v: inside [x_(k), x_(n-k+1)] the trimmed mean is (S + m v) / (N - 2k) with S the
    sum of x_(k+1) .. x_(n-k); from x_(n-k+m) on (m <= k) it is the mean of x_(k+1) .. x_(n-k+m), however far v is."""
    x = np.sort(rng(2).normal(size=200))
    n, m, beta = len(x), 10, 0.1
    k, slope, _ = setting(x, m, beta)
    assert m <= k
    inside = np.linspace(x[k - 1], x[n - k], 50)  # x_(k) .. x_(n-k+1), 1-based
    for v in inside:
        got = trimmed_mean(np.r_[x, np.full(m, v)], beta)
        assert got == pytest.approx((x[k : n - k].sum() + m * v) / (n + m - 2 * k), abs=1e-12)
    pushed = x[k : n - k + m].mean()
    for v in [x[n - k + m - 1], x[-1], 10.0, 1e6]:
        assert trimmed_mean(np.r_[x, np.full(m, v)], beta) == pytest.approx(pushed, abs=1e-12)
    # the pushed estimate sits above the clean one: cut poisons are not harmless
    assert pushed - trimmed_mean(x, beta) > 0.5 * slope * (x[n - k + m - 1] - np.median(x))


@pytest.mark.parametrize("seed, n, d, m, beta, scale", [
    (3, 40, 1, 3, 0.1, 1.0), (4, 60, 2, 5, 0.1, 0.7), (5, 50, 3, 4, 0.15, 1.5), (6, 80, 5, 8, 0.2, 1.0),
    (7, 30, 2, 6, 0.05, 2.0), (8, 100, 4, 5, 0.0, 1.0), (9, 30, 3, 12, 0.1, 1.0),
])
def test_no_poisons_in_the_ball_beat_the_bound(seed, n, d, m, beta, scale):
    """Random poison sets within the radius (identical or not, inside the ball or on its sphere, along the axes), and
    the attack itself: none moves the trimmed mean farther than the bound."""
    generator = rng(seed)
    X = generator.standard_t(df=3, size=(n, d)) * spreads(d)
    median, radius = np.median(X, axis=0), scale * median_radius(X)
    bound = trimmed_mean_shift_bound(X, m, beta, radius)
    best = 0.0
    for trial in range(400):
        directions = generator.normal(size=(1 if trial % 2 else m, d))
        if trial % 7 == 0:
            directions = np.eye(d)[generator.integers(d, size=len(directions))] * generator.choice([-1, 1])
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = radius * (1.0 if trial % 3 else generator.uniform(size=(len(directions), 1)))
        poisons = np.broadcast_to(median + lengths * directions, (m, d))
        best = max(best, damage(X, poisons, beta))
    attack = damage(X, trimmed_mean_attack(X, m, beta, radius), beta)
    assert best <= bound + 1e-12 and attack <= bound + 1e-12
    assert attack >= 0.99 * best  # and the attack does about as well as the best poisons the search found


# --------------------------------------------------------------------------------------------------
# how good the attack is
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed, n, d, m, beta", [
    (10, 200, 1, 10, 0.1), (11, 300, 5, 15, 0.1), (12, 250, 10, 25, 0.15), (13, 400, 30, 20, 0.1),
    (14, 150, 3, 5, 0.05), (15, 200, 8, 10, 0.0),
])
def test_inside_the_windows_the_attack_is_optimal_up_to_the_shift_at_the_median(seed, n, d, m, beta):
    """When the windows hold the radius: at least m r / (N - 2k), at most ||c|| + m r / (N - 2k) (the bound, which
    no poisons beat), so the attack is within ||c|| of the best."""
    X = rng(seed).normal(size=(n, d)) * spreads(d) + 3.0
    radius = 0.8 * median_radius(X)
    k, slope, ordered = setting(X, m, beta)
    median = np.median(X, axis=0)
    if k:  # the window on the smaller side of every coordinate holds the radius
        assert np.linalg.norm(np.minimum(ordered[n - k] - median, median - ordered[k - 1])) >= radius
    got = damage(X, trimmed_mean_attack(X, m, beta, radius), beta)
    bound = trimmed_mean_shift_bound(X, m, beta, radius)
    assert slope * radius - 1e-12 <= got <= bound + 1e-12
    assert got >= 0.95 * bound


def test_in_one_dimension_the_attack_is_the_best_of_all_poison_sets():
    """In 1-D the trimmed mean is non-decreasing in every poison, so the best poisons in [median - r, median + r]
    are all at one end; the attack finds the better end (within the window it is the side of c)."""
    generator = rng(20)
    for trial in range(40):
        n, m, beta = int(generator.integers(30, 200)), int(generator.integers(1, 12)), float(generator.uniform(0.06, 0.3))
        x = generator.standard_t(df=4, size=n)
        k, _, ordered = setting(x[:, None], m, beta)
        median = np.median(x)
        room = min(ordered[n - k, 0] - median, median - ordered[k - 1, 0]) if k else 1.0
        radius = float(generator.uniform(0.05, 1.0)) * room
        ends = [damage(x, np.full(m, median + side * radius), beta) for side in (-1, 1)]
        got = damage(x, trimmed_mean_attack(x, m, beta, radius), beta)
        assert got == pytest.approx(max(ends), rel=1e-9, abs=1e-15), trial
        # nothing between the ends, and no mixed poison set, does better
        grid = np.linspace(median - radius, median + radius, 41)
        assert max(damage(x, np.full(m, v), beta) for v in grid) <= got + 1e-12
        for _ in range(20):
            assert damage(x, generator.uniform(median - radius, median + radius, size=m), beta) <= got + 1e-12


def test_in_two_dimensions_no_point_of_the_disc_does_better():
    """All poisons at one point of the disc, on a fine polar grid, against the attack."""
    generator = rng(21)
    for beta, m in [(0.1, 6), (0.15, 12), (0.2, 5)]:
        X = generator.normal(size=(150, 2)) * [0.5, 2.0]
        median, radius = np.median(X, axis=0), median_radius(X)
        got = damage(X, trimmed_mean_attack(X, m, beta, radius), beta)
        angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
        best = max(damage(X, np.tile(median + r * np.array([np.cos(a), np.sin(a)]), (m, 1)), beta)
                   for a in angles for r in (0.5 * radius, radius))
        assert got >= 0.99 * best, (beta, m, got, best)
        assert best <= trimmed_mean_shift_bound(X, m, beta, radius) + 1e-12


def test_the_naive_attacks_do_far_less_in_high_dimension():
    """20 coordinates of very different spreads: Part B's attack along one axis, poisons in random directions at the
    full radius, random points of the ball and clean points within the radius do less than half the damage; poisons
    at one point spread evenly over the coordinates do less than 80% of it."""
    generator = rng(30)
    n, d, m, beta = 300, 20, 30, 0.1
    X = generator.normal(size=(n, d)) * generator.permutation(np.geomspace(0.2, 5.0, d))
    median, radius = np.median(X, axis=0), median_radius(X)
    reference = damage(X, trimmed_mean_attack(X, m, beta, radius), beta)
    directions = generator.normal(size=(m, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    inner = X[np.linalg.norm(X - median, axis=1) <= radius]
    naive = {
        "one axis": adaptive_attack(X, m, radius),
        "random directions": median + radius * directions,
        "random points of the ball": median + radius * directions * generator.uniform(size=(m, 1)) ** (1 / d),
        "clean points": inner[generator.choice(len(inner), m, replace=False)],
        "at the median": np.tile(median, (m, 1)),
    }
    for name, poisons in naive.items():
        assert np.all(np.linalg.norm(poisons - median, axis=1) <= radius * (1 + 1e-12)), name
        assert damage(X, poisons, beta) < 0.5 * reference, name
    even = np.tile(median + radius * np.ones(d) / np.sqrt(d), (m, 1))
    assert 0.5 * reference < damage(X, even, beta) < 0.8 * reference


def test_far_outliers_are_cut_but_still_move_the_estimate():
    """Why the radius: with m <= k, poisons far beyond the data in every coordinate are all cut, yet they push every
    coordinate's window of kept values by m places, more than the attack within the radius does."""
    X = rng(31).normal(size=(300, 10))
    m, beta = 15, 0.1
    k, _, ordered = setting(X, m, beta)
    far = np.full((m, 10), 1e6)
    pushed = ordered[k : 300 - k + m].mean(axis=0) - trimmed_mean(X, beta)
    assert damage(X, far, beta) == pytest.approx(np.linalg.norm(pushed), rel=1e-9)
    assert damage(X, far, beta) > damage(X, trimmed_mean_attack(X, m, beta, median_radius(X)), beta)


def test_the_damage_grows_like_the_square_root_of_the_dimension():
    """Clean N(0, I_d) and the median distance as the radius (about sqrt(d)): the damage is about
    epsilon / (1 - 2 beta) * sqrt(d), as for the coordinate-wise median."""
    m, beta, n = 20, 0.1, 400
    for d in (4, 16, 64):
        X = rng(40 + d).normal(size=(n, d))
        got = damage(X, trimmed_mean_attack(X, m, beta, median_radius(X)), beta)
        epsilon = m / (n + m)
        assert got == pytest.approx(epsilon / (1 - 2 * beta) * np.sqrt(d), rel=0.15), d
