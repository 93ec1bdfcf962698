"""The SVM poisoning attack of chapter 3: its gradient against retraining, its ascent, its effect on MNIST."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.svm import SVC

from poisoning.data import load_mnist, train_test_split_balanced
from poisoning.svm_attack import SVMPoisoningAttack, poisoning_gradient, svm_poisons, validation_hinge_loss
from poisoning.threat_model import empirical_risk, label_flip_poisons, poison_dataset

CENTERS = [[-1.5, 0.0], [1.5, 0.0]]


@pytest.fixture(scope="module")
def blobs():
    """Two 2-D Gaussians: 10 + 10 training and 50 + 50 validation points."""
    X_train, y_train = make_blobs([10, 10], centers=CENTERS, cluster_std=0.8, random_state=0)
    X_val, y_val = make_blobs([50, 50], centers=CENTERS, cluster_std=0.8, random_state=1)
    return X_train, y_train, X_val, y_val


@pytest.fixture(scope="module")
def demo():
    """The chapter's 2-D example: 10 + 10 training and 250 + 250 validation points."""
    X_train, y_train = make_blobs([10, 10], centers=CENTERS, cluster_std=0.8, random_state=1)
    X_val, y_val = make_blobs([250, 250], centers=CENTERS, cluster_std=0.8, random_state=101)
    return X_train, y_train, X_val, y_val


@pytest.fixture(scope="module")
def mnist_7_vs_1():
    """The paper's setting: 100 training, 500 validation and (here) 400 test images of 7s and 1s."""
    X, y = load_mnist(classes=(7, 1))
    X_train, X_rest, y_train, y_rest = train_test_split_balanced(X, y, n_train_per_class=50, random_state=0)
    X_val, X_test, y_val, y_test = train_test_split_balanced(X_rest, y_rest, n_train_per_class=250,
                                                             random_state=0)
    return X_train, y_train, X_val, y_val, X_test, y_test


def margin_set(svm, n):
    alpha = np.zeros(n)
    alpha[svm.support_] = np.abs(svm.dual_coef_[0])
    return alpha, set(np.flatnonzero((alpha > 1e-6) & (alpha < 1 - 1e-6)).tolist())


# --------------------------------------------------------------------------------------------------
# the gradient
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel, gamma, x_c, poison_is_on_margin", [
    ("linear", "scale", [0.5, 1.0], False),
    ("linear", "scale", [2.0, 2.0], False),
    ("linear", "scale", [1.5, 2.5], True),   # 0 < alpha_c < C: the poison's own KKT equation moves too
    ("rbf", 0.5, [1.5, 0.5], False),
    ("rbf", 0.5, [0.0, 2.5], True),
])
def test_gradient_matches_finite_differences_of_the_retrained_svm(blobs, kernel, gamma, x_c, poison_is_on_margin):
    X_train, y_train, X_val, y_val = blobs
    X = np.vstack([X_train, x_c])
    y = np.r_[y_train, 0]  # x_c lies on the side of class 1: a flipped label
    fit = lambda X: SVC(C=1.0, kernel=kernel, gamma=gamma, tol=1e-10).fit(X, y)  # noqa: E731
    svm = fit(X)
    alpha, margin = margin_set(svm, len(X))
    assert (len(X) - 1 in margin) == poison_is_on_margin
    assert poison_is_on_margin or alpha[-1] == pytest.approx(1.0)

    grad = poisoning_gradient(svm, X, y, X_val, y_val, index=-1)
    h, finite_diff = 1e-3, np.zeros(2)
    for j in range(2):
        losses = []
        for sign in (1, -1):
            X_h = X.copy()
            X_h[-1, j] += sign * h
            svm_h = fit(X_h)
            assert margin_set(svm_h, len(X))[1] == margin, "the margin set changed: h is too large"
            losses.append(validation_hinge_loss(svm_h, X_val, y_val))
        finite_diff[j] = (losses[0] - losses[1]) / (2 * h)
    assert np.linalg.norm(finite_diff) > 0.1  # a case where the gradient is not trivially zero
    np.testing.assert_allclose(grad, finite_diff, rtol=0, atol=1e-3 * np.linalg.norm(finite_diff))


def test_gradient_is_zero_when_the_poison_is_not_a_support_vector(blobs):
    X_train, y_train, X_val, y_val = blobs
    X, y = np.vstack([X_train, [-3.0, 0.0]]), np.r_[y_train, 0]  # deep inside its own class
    svm = SVC(C=1.0, kernel="linear", tol=1e-10).fit(X, y)
    assert len(X) - 1 not in svm.support_
    np.testing.assert_allclose(poisoning_gradient(svm, X, y, X_val, y_val), 0.0, atol=1e-12)


def test_validation_hinge_loss_is_the_summed_hinge_loss(blobs):
    X_train, y_train, X_val, y_val = blobs
    svm = SVC(kernel="linear").fit(X_train, y_train)
    margins = np.where(y_val == 1, 1, -1) * svm.decision_function(X_val)
    assert validation_hinge_loss(svm, X_val, y_val) == pytest.approx(np.maximum(0, 1 - margins).sum())


# --------------------------------------------------------------------------------------------------
# the ascent
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_attack_raises_the_validation_loss_monotonically(demo, kernel):
    X_train, y_train, X_val, y_val = demo
    attack = SVMPoisoningAttack(kernel=kernel, gamma=0.5, step_size=1.0, n_iter=30, bounds=(-4, 4))
    attack.fit(X_train, y_train, X_val, y_val, X_init=X_train[[17]])  # a point of class 1, relabelled 0
    assert attack.y_poison_[0] == 0
    loss = attack.history_[0]["val_loss"]
    assert len(loss) == attack.n_iter_[0] + 1 >= 5
    assert np.all(np.diff(loss) >= -1e-9)
    assert loss[-1] > (1.5 if kernel == "linear" else 1.05) * loss[0]
    # the recorded loss is the one of the SVM retrained with the final poison
    X_mixed, y_mixed, _ = poison_dataset(X_train, y_train, attack.X_poison_, attack.y_poison_)
    svm = SVC(kernel=kernel, gamma=0.5, tol=1e-6).fit(X_mixed, y_mixed)
    assert validation_hinge_loss(svm, X_val, y_val) == pytest.approx(loss[-1], rel=1e-6)
    assert validation_hinge_loss(attack.svm_, X_val, y_val) == pytest.approx(loss[-1])


@pytest.mark.parametrize("bounds", [None, (-1.0, 1.0), ([-2.0, -0.5], [2.0, 0.5])])
def test_poison_stays_within_the_bounds(demo, bounds):
    X_train, y_train, X_val, y_val = demo
    low, high = (X_train.min(0), X_train.max(0)) if bounds is None else bounds
    for seed in range(3):
        attack = SVMPoisoningAttack(step_size=1.0, n_iter=20, n_poison=2, bounds=bounds, random_state=seed)
        attack.fit(X_train, y_train, X_val, y_val)
        for record in attack.history_:
            assert np.all(record["trajectory"] >= np.asarray(low) - 1e-12)
            assert np.all(record["trajectory"] <= np.asarray(high) + 1e-12)


def test_the_box_stops_the_poison(demo):
    X_train, y_train, X_val, y_val = demo
    attack = SVMPoisoningAttack(step_size=1.0, n_iter=30, bounds=(-4, 4)).fit(X_train, y_train, X_val, y_val,
                                                                            X_init=X_train[[17]])
    far = attack.X_poison_[0]
    assert np.any(np.abs(far) > 2)  # in the big box the point leaves the data's bounding box
    attack.set_params(bounds=None).fit(X_train, y_train, X_val, y_val, X_init=X_train[[17]])
    np.testing.assert_array_equal(attack.bounds_[0], X_train.min(0))
    np.testing.assert_array_equal(attack.bounds_[1], X_train.max(0))
    on_box = np.isclose(attack.X_poison_, X_train.min(0)) | np.isclose(attack.X_poison_, X_train.max(0))
    assert on_box.any()  # ... which now stops it


def test_sequential_poisons_and_reproducibility(blobs):
    X_train, y_train, X_val, y_val = blobs
    params = dict(step_size=0.5, n_iter=10, n_poison=3, random_state=2)
    attack = SVMPoisoningAttack(**params).fit(X_train, y_train, X_val, y_val)
    assert attack.X_poison_.shape == (3, 2) and attack.X_init_.shape == (3, 2)
    assert attack.y_poison_.shape == (3,) and set(attack.y_poison_) <= {0, 1}
    assert len(attack.history_) == len(attack.n_iter_) == 3
    assert attack.svm_.shape_fit_ == (23, 2)
    # each point's first record is the start, with the earlier poisons already in the training set
    assert attack.history_[1]["val_loss"][0] != pytest.approx(attack.history_[0]["val_loss"][0])
    X_poison, y_poison = svm_poisons(X_train, y_train, X_val, y_val, **params)
    np.testing.assert_array_equal(X_poison, attack.X_poison_)
    np.testing.assert_array_equal(y_poison, attack.y_poison_)
    # scikit-learn conventions: parameters untouched by fit, clone gives an unfitted copy
    assert attack.get_params()["n_poison"] == 3
    assert not hasattr(clone(attack), "X_poison_")


def test_without_a_validation_set_the_training_set_is_the_objective(blobs):
    X_train, y_train, _, _ = blobs
    params = dict(step_size=0.5, n_iter=5, random_state=1)
    alone = SVMPoisoningAttack(**params).fit(X_train, y_train)
    explicit = SVMPoisoningAttack(**params).fit(X_train, y_train, X_train, y_train)
    np.testing.assert_array_equal(alone.X_poison_, explicit.X_poison_)
    np.testing.assert_array_equal(alone.history_[0]["val_loss"], explicit.history_[0]["val_loss"])
    # the recorded objective is the hinge loss of the clean training set under the poisoned SVM
    assert alone.history_[0]["val_loss"][-1] == pytest.approx(validation_hinge_loss(alone.svm_, X_train, y_train))
    assert alone.n_features_in_ == 2


def test_every_kind_of_random_state_is_deterministic(blobs):
    X_train, y_train, X_val, y_val = blobs

    def poisons(random_state):
        return SVMPoisoningAttack(n_iter=3, n_poison=2, random_state=random_state).generate(X_train, y_train,
                                                                                          X_val, y_val)[0]

    np.testing.assert_array_equal(poisons(4), poisons(np.random.RandomState(4)))
    np.testing.assert_array_equal(poisons(np.random.default_rng(4)), poisons(np.random.default_rng(4)))
    seed = int(np.random.default_rng(4).integers(0, 2**32, dtype=np.uint64))
    np.testing.assert_array_equal(poisons(np.random.default_rng(4)), poisons(seed))
    assert poisons(None).shape == (2, 2)


def test_initial_points_and_labels_can_be_given(blobs):
    X_train, y_train, X_val, y_val = blobs
    attack = SVMPoisoningAttack(n_iter=5, random_state=0)
    attack.fit(X_train, y_train, X_val, y_val, X_init=[[1.0, 0.0]])
    np.testing.assert_array_equal(attack.X_init_, [[1.0, 0.0]])
    assert attack.y_poison_[0] == 0  # the clean SVM predicts 1 there, so the poison is labelled 0
    attack = SVMPoisoningAttack(n_iter=5, n_poison=2, poison_label=1, random_state=0)
    attack.fit(X_train, y_train, X_val, y_val)
    np.testing.assert_array_equal(attack.y_poison_, [1, 1])
    # each start is a copy of a training point of the other class
    assert all(any(np.allclose(x, x_0) for x_0 in X_train[y_train == 0]) for x in attack.X_init_)


def test_several_candidate_starts_keep_the_most_harmful_one(blobs):
    X_train, y_train, X_val, y_val = blobs
    params = dict(n_iter=1, poison_label=0, random_state=3)
    one = SVMPoisoningAttack(n_init=1, **params).fit(X_train, y_train, X_val, y_val)
    best = SVMPoisoningAttack(n_init=10, **params).fit(X_train, y_train, X_val, y_val)
    # the ten candidates include the single one, so the chosen start is at least as harmful
    assert best.history_[0]["val_loss"][0] >= one.history_[0]["val_loss"][0]
    losses = []
    for x in X_train[y_train == 1]:
        X_mixed, y_mixed, _ = poison_dataset(X_train, y_train, [x], [0])
        losses.append(validation_hinge_loss(clone(best.svm_clean_).fit(X_mixed, y_mixed), X_val, y_val))
    assert best.history_[0]["val_loss"][0] == pytest.approx(max(losses), rel=1e-6)  # all ten were tried


# --------------------------------------------------------------------------------------------------
# MNIST 7 vs 1, as in the paper
# --------------------------------------------------------------------------------------------------
def test_one_point_at_least_doubles_the_mnist_test_error_and_beats_a_label_flip(mnist_7_vs_1):
    X_train, y_train, X_val, y_val, X_test, y_test = mnist_7_vs_1
    attack = SVMPoisoningAttack(C=1.0, step_size=4.0, n_iter=30, tol=1e-2, bounds=(0, 1), poison_label=1,
                                random_state=0)
    attack.fit(X_train, y_train, X_val, y_val, X_test, y_test)
    clean_error = empirical_risk(attack.svm_clean_, X_test, y_test)
    poisoned_error = empirical_risk(attack.svm_, X_test, y_test)
    assert 0 < clean_error < 0.05
    assert poisoned_error >= 2 * clean_error
    assert poisoned_error == pytest.approx(attack.history_[0]["test_error"][-1])
    assert attack.X_poison_.min() >= 0 and attack.X_poison_.max() <= 1

    flip_errors = []
    for seed in range(5):
        X_poison, y_poison = label_flip_poisons(X_train, y_train, 1, random_state=seed)
        X_mixed, y_mixed, _ = poison_dataset(X_train, y_train, X_poison, y_poison)
        flip_errors.append(empirical_risk(clone(attack.svm_clean_).fit(X_mixed, y_mixed), X_test, y_test))
    assert poisoned_error > max(flip_errors)


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors(blobs):
    X_train, y_train, X_val, y_val = blobs
    attack = SVMPoisoningAttack(n_iter=2)
    with pytest.raises(ValueError, match="exactly two classes"):
        attack.fit(X_train, np.zeros(20, int), X_val, y_val)
    with pytest.raises(ValueError, match="exactly two classes"):
        attack.fit(X_train, np.arange(20) % 3, X_val, y_val)
    with pytest.raises(ValueError, match=r"X_train must have shape \(n, d\)"):
        attack.fit(X_train[:, 0], y_train, X_val, y_val)
    with pytest.raises(ValueError, match=r"y_train must have shape \(20,\)"):
        attack.fit(X_train, y_train[:5], X_val, y_val)
    with pytest.raises(ValueError, match="X_val must have 2 features"):
        attack.fit(X_train, y_train, X_val[:, :1], y_val)
    with pytest.raises(ValueError, match="not among the training classes"):
        attack.fit(X_train, y_train, X_val, y_val + 5)
    with pytest.raises(ValueError, match="NaN"):
        attack.fit(np.where(X_train > 1, np.nan, X_train), y_train, X_val, y_val)
    with pytest.raises(ValueError, match="X_test and y_test"):
        attack.fit(X_train, y_train, X_val, y_val, X_test=X_val)
    with pytest.raises(ValueError, match=r"X_init must have shape \(1, 2\)"):
        attack.fit(X_train, y_train, X_val, y_val, X_init=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="X_init must lie within the bounds"):
        attack.fit(X_train, y_train, X_val, y_val, X_init=[[100.0, 0.0]])

    # bad values: ValueError; bad types (a float for a count, a string or None for a number): TypeError
    bad_params = [
        (dict(kernel="poly"), ValueError, "kernel must be one of"),
        (dict(C=0), ValueError, "C must be a positive number, got 0"),
        (dict(C="1"), TypeError, "C must be a positive number, got '1'"),
        (dict(gamma=-1.0), ValueError, "gamma must be a positive number"),
        (dict(step_size=-0.1), ValueError, "step_size must be a positive number"),
        (dict(step_size=None), TypeError, "step_size must be a positive number, got None"),
        (dict(n_iter=0), ValueError, "n_iter must be a positive integer, got 0"),
        (dict(n_iter=2.5), TypeError, "n_iter must be a positive integer, got 2.5"),
        (dict(n_poison=0), ValueError, "n_poison must be a positive integer"),
        (dict(n_poison=1.0), TypeError, "n_poison must be a positive integer"),
        (dict(n_init=0), ValueError, "n_init must be a positive integer"),
        (dict(tol=-1.0), ValueError, "tol must be a non-negative number"),
        (dict(tol=np.nan), ValueError, "tol must be a non-negative number"),
        (dict(max_halvings=-1), ValueError, "max_halvings must be a non-negative integer"),
        (dict(max_halvings=True), TypeError, "max_halvings must be a non-negative integer"),
        (dict(poison_label=3), ValueError, "poison_label must be one of the classes"),
        (dict(bounds=(1.0, 0.0)), ValueError, "low <= high"),
        (dict(bounds=([0.0, 0.0, 0.0], 1.0)), ValueError, r"shape \(2,\)"),
        (dict(bounds=0.5), TypeError, "bounds must be None or a pair"),
        (dict(bounds=(0.0, 0.5, 1.0)), ValueError, "bounds must be None or a pair"),
        (dict(bounds=(0.0, "top")), TypeError, r"bounds\[1\] must be an array of numbers"),
        (dict(bounds=(0.0, np.inf)), ValueError, "finite"),
        (dict(random_state="seed"), TypeError, "random_state"),
    ]
    for params, error, message in bad_params:
        with pytest.raises(error, match=message):
            SVMPoisoningAttack(**{"n_iter": 2, **params}).fit(X_train, y_train, X_val, y_val)
    with pytest.raises(TypeError, match="X_train must be an array of numbers"):
        attack.fit(X_train.astype(str), y_train, X_val, y_val)
    with pytest.raises(TypeError, match="X_val must be an array of numbers"):
        validation_hinge_loss(SVC(kernel="linear").fit(X_train, y_train), [["a", "b"]], [0])
    with pytest.raises(ValueError, match="give both X_val and y_val"):
        attack.fit(X_train, y_train, X_val)
    with pytest.raises(TypeError, match="X_init must be an array of numbers"):
        attack.fit(X_train, y_train, X_val, y_val, X_init=[["a", "b"]])

    svm = SVC(kernel="rbf", gamma="scale").fit(X_train, y_train)
    with pytest.raises(ValueError, match="fixed positive number as gamma"):
        poisoning_gradient(svm, X_train, y_train, X_val, y_val)
    svm = SVC(kernel="poly").fit(X_train, y_train)
    with pytest.raises(ValueError, match="kernel must be one of"):
        poisoning_gradient(svm, X_train, y_train, X_val, y_val)
    svm = SVC(kernel="linear").fit(X_train, y_train)
    with pytest.raises(ValueError, match="out of range"):
        poisoning_gradient(svm, X_train, y_train, X_val, y_val, index=20)
