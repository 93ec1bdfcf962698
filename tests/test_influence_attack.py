"""The influence attack (``poisoning.influence_attack``): poisons stay feasible, the test loss rises, and under the
sphere and slab defences the attack does more damage than label flips of the same budget."""

import numpy as np
import pytest

from poisoning.data import load_mnist, train_test_split_balanced
from poisoning.influence_attack import InfluenceAttack, defended_test_error, smooth_hinge_test_error
from poisoning.sanitization import L2Defence, SlabDefence
from poisoning.threat_model import label_flip_poisons


@pytest.fixture(scope="module")
def mnist_17():
    X, y = load_mnist([1, 7])
    y = np.where(y == 7, 1, -1)
    return train_test_split_balanced(X, y, 150, 100, random_state=0)


@pytest.fixture(scope="module")
def attack(mnist_17):
    X_train, X_test, y_train, y_test = mnist_17
    return InfluenceAttack(epsilon=0.03, n_iter=10, step_size=0.5, random_state=0).fit(X_train, y_train,
                                                                                        X_test, y_test)


def test_poisons_stay_in_the_feasible_set_after_every_projection(attack):
    assert attack.history_["max_violation"].max() <= 1e-8
    assert attack.feasible_set_.contains(attack.X_poison_, attack.y_poison_).all()
    assert attack.X_poison_.shape == (9, 784) and set(attack.y_poison_) <= {-1, 1}
    assert attack.X_poison_.min() >= 0.0 and attack.X_poison_.max() <= 1.0  # the pixel box


def test_the_test_loss_rises_over_the_iterations(attack):
    loss = attack.history_["test_loss"]
    assert len(loss) == 11
    assert loss[attack.best_iteration_] == loss.max() > 1.5 * loss[0]
    assert np.mean(np.diff(loss) > 0) >= 0.8  # mostly uphill: a gradient ascent


def test_under_sphere_and_slab_the_attack_beats_label_flips(mnist_17, attack):
    X_train, X_test, y_train, y_test = mnist_17
    defences = [L2Defence(), SlabDefence()]
    clean, _ = defended_test_error(X_train, y_train, X_test, y_test, defences)
    X_flip, y_flip = label_flip_poisons(X_train, y_train, len(attack.y_poison_), random_state=0)
    flips, _ = defended_test_error(np.vstack([X_train, X_flip]), np.concatenate([y_train, y_flip]), X_test, y_test,
                                   defences)
    poisoned, keep = defended_test_error(np.vstack([X_train, attack.X_poison_]),
                                         np.concatenate([y_train, attack.y_poison_]), X_test, y_test, defences)
    assert poisoned > flips and poisoned > clean, (clean, flips, poisoned)
    assert keep[len(X_train):].all()  # no poison is caught: they were made inside the feasible set
    assert 0.05 <= 1 - keep.mean() < 0.12  # each defence removes 5% of every class


def test_deterministic_and_bad_input(mnist_17):
    X_train, X_test, y_train, y_test = mnist_17
    a = InfluenceAttack(epsilon=0.02, n_iter=2, random_state=3).fit(X_train, y_train, X_test, y_test)
    b = InfluenceAttack(epsilon=0.02, n_iter=2, random_state=3).fit(X_train, y_train, X_test, y_test)
    np.testing.assert_array_equal(a.X_poison_, b.X_poison_)
    with pytest.raises(ValueError, match="epsilon must be a number in"):
        InfluenceAttack(epsilon=0).fit(X_train, y_train, X_test, y_test)
    with pytest.raises(ValueError, match="less than one poison"):
        InfluenceAttack(epsilon=0.001).fit(X_train, y_train, X_test, y_test)
    with pytest.raises(ValueError, match="two labels"):
        smooth_hinge_test_error(X_train, np.arange(len(X_train)) % 3, X_test, y_test)
