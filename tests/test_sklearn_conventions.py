"""The library's estimators follow scikit-learn's conventions, and its input checks raise consistent errors.

scikit-learn's own estimator checks (``parametrize_with_checks``) run on the sanitization defences, the SVM
poisoning attack and the sphere-and-slab feasible set: ``fit`` returns ``self``, learned attributes end in ``_``,
``__init__`` only stores its parameters, randomness comes through ``random_state``, bad input raises informative
errors. The few checks that cannot apply by design are expected failures, each with its reason, and strict: a
check that starts to pass must have its entry removed. Then the shared input checks of
``poisoning._validation``: ``ValueError`` for bad values, ``TypeError`` for bad types, every accepted kind of
``random_state``.
"""

import inspect
from numbers import Integral

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from poisoning._validation import (as_float_array, check_count, check_number, check_positive, check_random_state,
                                   check_samples, check_X, check_Xy, seed_from)
from poisoning.feasible_set import SphereSlabFeasibleSet
from poisoning.sanitization import KNNDefence, L2Defence, LossDefence, SanitizationDefence, SlabDefence, SVDDefence
from poisoning.svm_attack import SVMPoisoningAttack

# Settings that suit the checks' small data sets (a few features); the defaults are for images.
ESTIMATORS = [
    L2Defence(),
    SlabDefence(),
    LossDefence(),
    KNNDefence(n_neighbors=2),
    SVDDefence(n_components=1),
    SVMPoisoningAttack(n_iter=3),
    SphereSlabFeasibleSet(),
]

_NEEDS_LABELS = ("score_samples(X, y) needs the labels: a point's outlier score depends on its class, so the "
                 "check's call score_samples(X) cannot apply")


def expected_failed_checks(estimator):
    """The checks that cannot apply by design, with the reason."""
    if isinstance(estimator, SanitizationDefence):
        return {
            "check_methods_sample_order_invariance": _NEEDS_LABELS,
            "check_methods_subset_invariance": _NEEDS_LABELS,
        }
    if isinstance(estimator, SVMPoisoningAttack):
        return {
            "check_fit_score_takes_y": "fit(X_train, y_train, X_val, y_val, ...) names its training set X_train, "
                                       "y_train beside the attacker's validation and test sets, as the chapter "
                                       "does; y is still its second argument, as in fit(X, y)",
        }
    return {}


_STRICT = {"xfail_strict": True} if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters else {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks, **_STRICT)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_the_expected_failures_name_real_checks():
    """An expected failure with a misspelt name would silently expect nothing."""
    from sklearn.utils import estimator_checks

    for estimator in ESTIMATORS:
        for name, reason in expected_failed_checks(estimator).items():
            assert callable(getattr(estimator_checks, name, None)), name
            assert len(reason) > 20


@pytest.mark.parametrize("defence", [e for e in ESTIMATORS if isinstance(e, SanitizationDefence)],
                         ids=lambda e: type(e).__name__)
def test_score_samples_with_labels_is_invariant_to_order_and_subsets(defence):
    """What the two expected failures would check, with the labels passed along: scoring a permutation or a
    subset of the points gives the permuted or subset scores."""
    rng = np.random.RandomState(1)
    X = np.vstack([rng.standard_normal((20, 4)) - 1.0, rng.standard_normal((20, 4)) + 1.0])
    y = np.repeat([0, 1], 20)
    defence = clone(defence).fit(X, y)
    X_new, y_new = rng.standard_normal((30, 4)), rng.randint(0, 2, 30)
    scores = defence.score_samples(X_new, y_new)
    order = rng.permutation(30)
    np.testing.assert_allclose(defence.score_samples(X_new[order], y_new[order]), scores[order], rtol=1e-12)
    for batch in np.array_split(np.arange(30), 4):
        np.testing.assert_allclose(defence.score_samples(X_new[batch], y_new[batch]), scores[batch], rtol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_fit_returns_self_and_sets_only_trailing_underscore_attributes(estimator):
    rng = np.random.RandomState(0)
    X = np.vstack([rng.standard_normal((15, 3)) - 2.0, rng.standard_normal((15, 3)) + 2.0])
    y = np.repeat([3, 7], 15)
    estimator = clone(estimator)
    before = dict(vars(estimator))
    assert estimator.__class__(**estimator.get_params()).get_params() == estimator.get_params()
    fitted = estimator.fit(X, y)
    assert fitted is estimator
    learned = set(vars(estimator)) - set(before)
    assert learned and all(name.endswith("_") and not name.startswith("_") for name in learned), learned
    assert {name: vars(estimator)[name] for name in before} == before  # the parameters are untouched


# --------------------------------------------------------------------------------------------------
# the shared input checks
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, error, message", [
    ("0.5", TypeError, r"p must be a number in \[0, 1\], got '0.5' of type str"),
    (None, TypeError, "got None of type NoneType"),
    (True, TypeError, "got True of type bool"),
    (np.array([0.5]), TypeError, "of type ndarray"),
    (-0.1, ValueError, r"p must be a number in \[0, 1\], got -0.1"),
    (1.5, ValueError, "got 1.5"),
    (float("nan"), ValueError, "got nan"),
    (float("inf"), ValueError, "got inf"),
])
def test_check_number_refuses_bad_types_and_values(value, error, message):
    with pytest.raises(error, match=message):
        check_number(value, "p", low=0, high=1)


def test_check_number_accepts_every_real_number_type_and_names_the_interval():
    assert check_number(np.float32(0.25), "p", low=0, high=1) == 0.25
    assert check_number(np.int64(1), "p", low=0, high=1) == 1.0 and check_number(3, "x") == 3.0
    assert isinstance(check_number(1, "x"), float)
    for kwargs, text in [(dict(low=0, low_open=True), "a positive number"), (dict(low=0), "a non-negative number"),
                         (dict(low=0, high=0.5, high_open=True), r"a number in \[0, 0.5\)"),
                         (dict(low=0, high=1, low_open=True), r"a number in \(0, 1\]"), ({}, "a finite number")]:
        with pytest.raises(ValueError, match=f"x must be {text}"):
            check_number(-np.inf, "x", **kwargs)
    with pytest.raises(ValueError, match="a positive number, got 0.0"):
        check_positive(0.0, "x")


@pytest.mark.parametrize("value, error, message", [
    (3.0, TypeError, "n must be a non-negative integer, got 3.0 of type float"),
    ("3", TypeError, "got '3' of type str"),
    (True, TypeError, "got True of type bool"),
    (None, TypeError, "got None"),
    (-1, ValueError, "n must be a non-negative integer, got -1"),
])
def test_check_count_refuses_bad_types_and_values(value, error, message):
    with pytest.raises(error, match=message):
        check_count(value, "n")


def test_check_count_bounds_and_integer_types():
    assert check_count(np.int32(4), "n") == 4 and isinstance(check_count(np.int32(4), "n"), int)
    assert check_count(5, "n", high=5) == 5
    with pytest.raises(ValueError, match=r"n must be an integer in \[0, 5\], got 6"):
        check_count(6, "n", high=5)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        check_positive(0, "n", integer=True)
    with pytest.raises(TypeError, match="n must be a positive integer, got 1.5"):
        check_positive(1.5, "n", integer=True)
    with pytest.raises(ValueError, match="n must be an integer >= 2, got 1"):
        check_count(1, "n", low=2)


def test_array_checks_separate_bad_types_from_bad_values():
    from scipy.sparse import csr_matrix

    np.testing.assert_array_equal(as_float_array(np.array([1, 2], dtype=object)), [1.0, 2.0])
    assert as_float_array([[True, False]]).dtype == np.float64
    for bad, message in [(None, "got None"), ([["a", "b"]], "dtype <U1"), (np.array([{}, 1.0], dtype=object),
                                                                             "argument must be a string or a"),
                         (csr_matrix(np.eye(2)), "sparse matrix")]:
        with pytest.raises(TypeError, match=message):
            check_X(bad)
    for bad, message in [(np.zeros(3), r"X must have shape \(n, d\), got shape \(3,\)"),
                         (np.zeros((0, 2)), r"X is empty: 0 sample\(s\) \(shape=\(0, 2\)\)"),
                         (np.zeros((2, 0)), r"0 feature\(s\)"), ([[1.0, np.nan]], "NaN or infinite"),
                         (np.ones((2, 2), dtype=complex), "Complex data not supported"),
                         ([[1.0, 2.0], [3.0]], "rectangular")]:
        with pytest.raises(ValueError, match=message):
            check_X(bad)
    with pytest.raises(ValueError, match="X has 2 features, but the defence was fitted with 3"):
        check_X(np.zeros((1, 2)), 3, fitted="the defence")
    with pytest.raises(ValueError, match=r"y_train must have shape \(2,\) to match X_train, got shape \(3,\)"):
        check_Xy(np.zeros((2, 1)), [0, 1, 0], name_X="X_train", name_y="y_train")
    with pytest.raises(ValueError, match=r"requires y to be passed, but the target y is None \(y_train=None\)"):
        check_Xy(np.zeros((2, 1)), None, name_y="y_train")
    X2, is_1d = check_samples([1.0, 2.0, 3.0])
    assert is_1d and X2.shape == (3, 1)
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, d\)"):
        check_samples(np.zeros((2, 2, 2)))


def test_random_states_of_every_kind():
    # an integer, and the RandomState it seeds, draw the same numbers (as scikit-learn's check_random_state)
    np.testing.assert_array_equal(check_random_state(5).rand(3), np.random.RandomState(5).rand(3))
    state = np.random.RandomState(1)
    assert check_random_state(state) is state
    # a Generator seeds a RandomState with one draw of [0, 2**32): deterministic, and the generator advances
    seed = int(np.random.default_rng(2).integers(0, 2**32, dtype=np.uint64))
    generator = np.random.default_rng(2)
    np.testing.assert_array_equal(check_random_state(generator).rand(3), np.random.RandomState(seed).rand(3))
    assert check_random_state(generator).rand() != np.random.RandomState(seed).rand()
    assert isinstance(check_random_state(None), np.random.RandomState)
    for bad, error in [(1.5, TypeError), ("0", TypeError), (True, TypeError), (-1, ValueError), (2**32, ValueError)]:
        with pytest.raises(error, match="random_state must be None, a non-negative integer, a numpy RandomState or"):
            check_random_state(bad)


def test_seeds_for_torch_from_every_kind_of_random_state():
    assert seed_from(7) == 7 and seed_from(np.int64(2**40)) == 2**40  # an integer is its own seed
    assert seed_from(np.random.RandomState(3)) == int(np.random.RandomState(3).randint(0, 2**32, dtype=np.uint64))
    assert seed_from(np.random.default_rng(3)) == int(np.random.default_rng(3).integers(0, 2**32, dtype=np.uint64))
    generator = np.random.default_rng(3)
    assert seed_from(generator) != seed_from(generator)  # the state advances
    fresh = seed_from(None)
    assert isinstance(fresh, Integral) and 0 <= fresh < 2**32
    with pytest.raises(TypeError, match="random_state must be None"):
        seed_from(0.5)
    with pytest.raises(ValueError, match="random_state must be None"):
        seed_from(-2)
