"""The sphere-and-slab feasible set (``poisoning.feasible_set``): the defences' acceptance, and the projection
against a constrained solver's answer."""

import numpy as np
import pytest
from scipy.optimize import minimize

from poisoning.feasible_set import SphereSlabFeasibleSet
from poisoning.sanitization import L2Defence, SlabDefence


def two_classes(seed=0, n=60, d=3):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0.3, 0.15, size=(n, d)), rng.normal(0.7, 0.15, size=(n, d))])
    return X, np.repeat([0, 1], n)


def test_the_set_accepts_what_both_defences_keep():
    X, y = two_classes()
    feasible = SphereSlabFeasibleSet(removal_fraction=0.1).fit(X, y)
    kept = L2Defence(removal_fraction=0.1).fit(X, y).keep_mask_ & SlabDefence(removal_fraction=0.1).fit(X, y).keep_mask_
    np.testing.assert_array_equal(feasible.contains(X, y), kept)
    assert np.allclose(np.linalg.norm(feasible.directions_, axis=1), 1.0)


@pytest.mark.parametrize("box", [None, (0.0, 1.0)])
def test_projection_is_the_closest_feasible_point(box):
    X, y = two_classes(d=3)
    feasible = SphereSlabFeasibleSet(removal_fraction=0.1, shrink=0.8, box=box).fit(X, y)
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.5, 1.5, size=(12, 3))
    labels = rng.integers(0, 2, size=12)
    projected = feasible.project(points, labels)
    assert feasible.contains(projected, labels, atol=1e-7).all()
    for x, label, p in zip(points, labels, projected):
        row = int(label)
        c, r = feasible.centroids_[row], feasible.radii_[row]
        u, w = feasible.directions_[row], feasible.half_widths_[row]
        constraints = [{"type": "ineq", "fun": lambda z: r**2 - np.sum((z - c) ** 2)},
                       {"type": "ineq", "fun": lambda z: w - (z - c) @ u},
                       {"type": "ineq", "fun": lambda z: w + (z - c) @ u}]
        bounds = [box] * 3 if box else None
        best = minimize(lambda z: np.sum((z - x) ** 2), c, jac=lambda z: 2 * (z - x), constraints=constraints,
                        bounds=bounds, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        assert np.linalg.norm(p - x) <= np.linalg.norm(best.x - x) + 1e-6
        np.testing.assert_allclose(p, best.x, atol=1e-5)


def test_feasible_points_do_not_move_and_projection_is_idempotent():
    X, y = two_classes()
    feasible = SphereSlabFeasibleSet(removal_fraction=0.05, box=(0.0, 1.0)).fit(X, y)
    inside = feasible.contains(X, y)
    np.testing.assert_array_equal(feasible.project(X[inside], y[inside]), X[inside])
    far = X[:5] + 3.0
    once = feasible.project(far, y[:5])
    np.testing.assert_allclose(feasible.project(once, y[:5]), once, atol=1e-9)


def test_bad_input():
    X, y = two_classes()
    with pytest.raises(ValueError, match="shrink must be a number in"):
        SphereSlabFeasibleSet(shrink=0).fit(X, y)
    with pytest.raises(ValueError, match="box must be"):
        SphereSlabFeasibleSet(box=(1.0, 0.0)).fit(X, y)
    feasible = SphereSlabFeasibleSet().fit(X, y)
    with pytest.raises(ValueError, match="labels \\[5\\] were not seen"):
        feasible.project(X[:2], [5, 5])
    with pytest.raises(ValueError, match="features"):
        feasible.contains(X[:, :2], y)
    with pytest.raises(TypeError, match="shrink must be a number in"):
        SphereSlabFeasibleSet(shrink="0.5").fit(X, y)
    with pytest.raises(TypeError, match=r"box must be None or a pair \(low, high\)"):
        SphereSlabFeasibleSet(box=0.5).fit(X, y)
    with pytest.raises(ValueError, match=r"box must be None or a pair \(low, high\)"):
        SphereSlabFeasibleSet(box=(0.0, 0.5, 1.0)).fit(X, y)
    with pytest.raises(TypeError, match=r"box\[1\] must be a finite number"):
        SphereSlabFeasibleSet(box=(0.0, "1")).fit(X, y)
    with pytest.raises(TypeError, match="X must be an array of numbers"):
        SphereSlabFeasibleSet().fit(np.full(X.shape, "a"), y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        feasible.project(np.full((1, 3), np.nan), [0])
    with pytest.raises(TypeError, match="X must be an array of numbers"):
        feasible.contains([["a", 0.0, 0.0]], [0])


def test_identical_class_centroids_are_refused_with_a_clear_error():
    # multiples of 1/4: the sums are exact, so both centroids are exactly 0 and the slab has no direction
    rng = np.random.default_rng(2)
    half = rng.integers(-4, 5, size=(20, 3)) / 4
    X = np.vstack([half, -half, half[:, ::-1], -half[:, ::-1]])
    y = np.repeat([0, 1], 40)
    with pytest.raises(ValueError, match=r"centroid of class\(es\) \[0, 1\] equals the mean of the other classes"):
        SphereSlabFeasibleSet().fit(X, y)


def test_a_class_without_spread_is_the_single_point_it_holds():
    """A zero-variance class: radius 0 and slab half-width 0; the projection of anything onto its set is the
    point itself, with no division by zero."""
    X, y = two_classes()
    X[y == 0] = [0.25, 0.5, 0.75]
    feasible = SphereSlabFeasibleSet().fit(X, y)
    assert feasible.radii_[0] == 0.0 and feasible.half_widths_[0] == 0.0
    points = np.array([[0.25, 0.5, 0.75], [1.0, -1.0, 2.0], [0.3, 0.5, 0.7]])
    projected = feasible.project(points, [0, 0, 0])
    np.testing.assert_allclose(projected, np.tile([0.25, 0.5, 0.75], (3, 1)), atol=1e-12)
    np.testing.assert_array_equal(feasible.contains(points, [0, 0, 0]), [True, False, False])
