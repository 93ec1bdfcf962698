"""The threat-model helpers of chapter 1, against ground truth."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import zero_one_loss

from poisoning.data import load_mnist, train_test_split_balanced
from poisoning.threat_model import (attack_report, empirical_risk, label_flip_poisons, poison_dataset,
                                    targeted_poisons)


@pytest.fixture(scope="module")
def mnist_1_vs_7():
    X, y = load_mnist(classes=(1, 7))
    return train_test_split_balanced(X, y, n_train_per_class=150, random_state=0)


def test_empirical_risk_is_the_zero_one_loss():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((50, 3))
    y = rng.randint(0, 2, 50)
    predict = lambda X: (X[:, 0] > 0).astype(int)  # noqa: E731
    assert empirical_risk(predict, X, y) == pytest.approx(zero_one_loss(y, predict(X)))


def test_empirical_risk_refuses_bad_input():
    with pytest.raises(ValueError, match="shape"):
        empirical_risk(lambda X: X, np.zeros(3), np.zeros(3))
    with pytest.raises(TypeError, match="predict must be a fitted estimator"):
        empirical_risk(42, np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(TypeError, match="X must be an array of numbers"):
        empirical_risk(lambda X: X, [["a"], ["b"]], [0, 1])
    with pytest.raises(ValueError, match=r"y must have shape \(3,\) to match X"):
        empirical_risk(lambda X: X, np.zeros((3, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        empirical_risk(lambda X: X, np.full((3, 1), np.nan), np.zeros(3))


def test_poison_dataset_appends_poisons_and_marks_them():
    X_clean, y_clean = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    X_poison, y_poison = np.ones((2, 2)), np.array([1, 1])
    X, y, is_poison = poison_dataset(X_clean, y_clean, X_poison, y_poison)
    np.testing.assert_array_equal(X[is_poison], X_poison)
    np.testing.assert_array_equal(y, [0, 1, 0, 1, 1, 1])
    X, y, is_poison = poison_dataset(X_clean, y_clean, [], [])  # no poison at all
    assert len(X) == 4 and not is_poison.any()
    with pytest.raises(ValueError, match=r"X_poison must have shape \(k, 2\)"):
        poison_dataset(X_clean, y_clean, np.ones((2, 3)), [0, 1])
    with pytest.raises(TypeError, match="X_poison must be an array of numbers"):
        poison_dataset(X_clean, y_clean, [["a", "b"]], [0])
    with pytest.raises(ValueError, match="X_poison has 2 points but y_poison has 1 labels"):
        poison_dataset(X_clean, y_clean, np.ones((2, 2)), [0])
    with pytest.raises(ValueError, match=r"y_clean must have shape \(4,\) to match X_clean"):
        poison_dataset(X_clean, y_clean[:3], X_poison, y_poison)


def test_label_flips_copy_training_points_with_a_different_label():
    rng = np.random.RandomState(1)
    X = rng.standard_normal((30, 4))
    y = rng.randint(0, 3, 30)
    X_poison, y_poison = label_flip_poisons(X, y, 10, random_state=2)
    for x, label in zip(X_poison, y_poison):
        (row,) = np.flatnonzero((X == x).all(axis=1))
        assert label != y[row]
    assert set(y_poison) <= set(y)
    with pytest.raises(ValueError, match=r"n_poison must be an integer in \[0, 30\], got 31"):
        label_flip_poisons(X, y, 31)
    with pytest.raises(TypeError, match=r"n_poison must be an integer in \[0, 30\], got 3.0"):
        label_flip_poisons(X, y, 3.0)
    with pytest.raises(TypeError, match="random_state"):
        label_flip_poisons(X, y, 3, random_state="seed")
    # every kind of random_state: an integer and the RandomState it seeds agree, a Generator is deterministic
    np.testing.assert_array_equal(label_flip_poisons(X, y, 5, random_state=4)[0],
                                  label_flip_poisons(X, y, 5, random_state=np.random.RandomState(4))[0])
    np.testing.assert_array_equal(label_flip_poisons(X, y, 5, random_state=np.random.default_rng(4))[0],
                                  label_flip_poisons(X, y, 5, random_state=np.random.default_rng(4))[0])


def test_targeted_poisons_sit_near_the_target_with_the_wrong_label():
    x_target = np.full(16, 0.5)
    X_poison, y_poison = targeted_poisons(x_target, 7, 5, noise_scale=0.01, random_state=0)
    assert X_poison.shape == (5, 16) and (y_poison == 7).all()
    assert np.abs(X_poison - x_target).max() < 0.06
    X_poison, _ = targeted_poisons(np.ones(4), 0, 3, noise_scale=1.0, random_state=0)
    assert X_poison.max() <= 1.0  # clipped to the pixel range
    with pytest.raises(ValueError, match="n_poison must be a non-negative integer, got -1"):
        targeted_poisons(x_target, 7, -1)
    with pytest.raises(TypeError, match="n_poison must be a non-negative integer, got '5'"):
        targeted_poisons(x_target, 7, "5")
    with pytest.raises(ValueError, match="noise_scale must be a non-negative number, got -0.1"):
        targeted_poisons(x_target, 7, 5, noise_scale=-0.1)
    with pytest.raises(TypeError, match="noise_scale must be a non-negative number, got None"):
        targeted_poisons(x_target, 7, 5, noise_scale=None)
    with pytest.raises(TypeError, match="x_target must be an array of numbers"):
        targeted_poisons("image", 7, 5)
    with pytest.raises(ValueError, match="x_target must be a non-empty vector of finite numbers"):
        targeted_poisons(np.array([0.5, np.nan]), 7, 5)


def test_attack_report_takes_fitted_models_and_predict_functions():
    """The same two classifiers as estimators and as plain functions give the same report, which matches the
    errors and predictions counted by hand."""
    X_test = np.array([[-2.0], [-1.0], [0.5], [1.0], [3.0]])
    y_test = np.array([0, 0, 1, 1, 1])
    clean = LogisticRegression().fit(X_test, y_test)  # separates at about 0: no error on these points
    predict_clean = clean.predict
    predict_poisoned = lambda X: (np.asarray(X)[:, 0] > 2.0).astype(int)  # noqa: E731 - a shifted threshold

    class Poisoned:
        def predict(self, X):
            return predict_poisoned(X)

    expected = {"clean test error": 0.0, "poisoned test error": 2 / 5, "target label": 1, "clean prediction": 1,
                "poisoned prediction": 0, "target misclassified": True}
    for model_clean, model_poisoned in [(clean, Poisoned()), (predict_clean, predict_poisoned),
                                        (clean, predict_poisoned), (predict_clean, Poisoned())]:
        report = attack_report(model_clean, model_poisoned, X_test, y_test, x_target=[1.5], y_target=1)
        assert report == expected
        assert attack_report(model_clean, model_poisoned, X_test, y_test) == {
            "clean test error": 0.0, "poisoned test error": 2 / 5}
    with pytest.raises(TypeError, match="model_poisoned must be a fitted estimator"):
        attack_report(clean, "model", X_test, y_test)


def test_the_two_attacker_goals_on_mnist(mnist_1_vs_7):
    """Chapter 1's claims: flips raise the test error; a few targeted copies flip the target but not the error."""
    X_train, X_test, y_train, y_test = mnist_1_vs_7
    clean = LogisticRegression(max_iter=2000).fit(X_train, y_train)
    X_poison, y_poison = label_flip_poisons(X_train, y_train, 120, random_state=1)
    flipped = LogisticRegression(max_iter=2000).fit(*poison_dataset(X_train, y_train, X_poison, y_poison)[:2])
    report = attack_report(clean, flipped, X_test, y_test)
    assert report["poisoned test error"] > 2 * report["clean test error"]

    x_target, y_target = X_test[0], y_test[0]
    X_poison, y_poison = targeted_poisons(x_target, 8 - y_target, 5, random_state=0)  # 1 <-> 7
    targeted = LogisticRegression(max_iter=2000).fit(*poison_dataset(X_train, y_train, X_poison, y_poison)[:2])
    report = attack_report(clean, targeted, X_test, y_test, x_target, y_target)
    assert report["clean prediction"] == y_target
    assert report["target misclassified"]
    assert report["poisoned test error"] - report["clean test error"] < 0.02
