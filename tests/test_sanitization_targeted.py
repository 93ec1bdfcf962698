"""The targeted attack past the sphere and slab defences, :func:`poisoning.sanitization.centroid_shift_poisons`.

It is the reference of assignment 2, Part F: a decoy drags the centroid of the wrong class onto the target, and
copies of the target, labelled with the wrong class, sit on that centroid. Checked here against what the defences
really compute on the poisoned training set: the centroid is the target, the copies score 0 and are kept at any
removal fraction, the decoy is removed; a defence whose budget removes every naive copy of the target lets these
through, and the victim trained on what it keeps classifies the target as the wrong class. Then the form of the
output and the input checks.
"""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from poisoning.data import load_digits, train_test_split_balanced
from poisoning.sanitization import L2Defence, SlabDefence, centroid_shift_poisons


def gaussian_classes(seed, labels=(2, 5), n=60, d=4, spread=3.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(labels), n)
    means = spread * rng.normal(size=(len(labels), d))
    return means[np.searchsorted(np.sort(labels), y)] + rng.normal(size=(len(y), d)), y


def poisoned(X, y, X_poison, y_poison):
    return np.vstack([X, X_poison]), np.concatenate([y, y_poison])


@pytest.mark.parametrize("labels", [(2, 5), (0, 1, 2), (-1, 4, 7, 9)])
def test_the_centroid_of_the_wrong_class_becomes_the_target(labels):
    X, y = gaussian_classes(0, labels)
    x_target, wrong = X[0], labels[-1]
    for n_poison in (2, 7, 30):
        X_all, y_all = poisoned(X, y, *centroid_shift_poisons(X, y, x_target, wrong, n_poison))
        np.testing.assert_allclose(X_all[y_all == wrong].mean(axis=0), x_target, atol=1e-10)
        others = [label for label in labels if label != wrong]  # the other classes do not move
        for label in others:
            np.testing.assert_array_equal(X_all[y_all == label], X[y == label])


@pytest.mark.parametrize("labels", [(2, 5), (0, 1, 2)])
@pytest.mark.parametrize("removal_fraction", [0.0, 0.05, 0.1, 0.3])
def test_the_copies_score_zero_and_pass_both_defences_and_the_decoy_is_removed(labels, removal_fraction):
    X, y = gaussian_classes(1, labels)
    X_poison, y_poison = centroid_shift_poisons(X, y, X[3], labels[-1], 10)
    X_all, y_all = poisoned(X, y, X_poison, y_poison)
    copies, decoy = np.arange(len(X), len(X) + 9), len(X) + 9
    in_class = np.flatnonzero(y_all == labels[-1])
    for defence in (L2Defence(removal_fraction=removal_fraction), SlabDefence(removal_fraction=removal_fraction)):
        defence.fit(X_all, y_all)
        assert np.all(defence.scores_[copies] < 1e-8 * defence.scores_[in_class].max())
        assert defence.keep_mask_[copies].all()
        assert defence.scores_[decoy] == defence.scores_[in_class].max()  # the most suspicious point of its class
        assert defence.keep_mask_[decoy] == (removal_fraction == 0.0)


def test_a_defence_that_removes_every_naive_copy_lets_these_through():
    """150 points per class, 15 poisons, 10% removed per class (16 points): 15 copies of a point of the other class
    are the most suspicious points of their class and all go; the reference's copies all stay."""
    X, y = gaussian_classes(2, (0, 1), n=150, d=6)
    x_target = X[np.flatnonzero(y == 0)[0]]
    naive = (np.tile(x_target, (15, 1)), np.ones(15, dtype=y.dtype))
    for X_poison, y_poison, kept in [(*naive, 0), (*centroid_shift_poisons(X, y, x_target, 1, 15), 14)]:
        X_all, y_all = poisoned(X, y, X_poison, y_poison)
        keep = (L2Defence(removal_fraction=0.1).fit(X_all, y_all).keep_mask_
                & SlabDefence(removal_fraction=0.1).fit(X_all, y_all).keep_mask_)
        assert keep[len(X):].sum() == kept


def test_the_sanitized_victim_classifies_the_target_as_the_wrong_class():
    """The visible instance of assignment 2, Part F: a 2 of the 8 x 8 digits, to be read as a 7. Without poisons, and
    with 15 copies of it, the victim (sphere and slab at 10% per class, then logistic regression) reads a 2; with
    the reference's 15 poisons, and already with 4, a 7."""
    X_pair, y_pair = load_digits(classes=(2, 7))
    X, X_test, y, y_test = train_test_split_balanced(X_pair, y_pair, 150, random_state=0)
    x_target = X_test[11]
    assert y_test[11] == 2

    def victim_reads(X_poison, y_poison):
        X_all, y_all = poisoned(X, y, X_poison, y_poison)
        keep = (L2Defence(removal_fraction=0.1).fit(X_all, y_all).keep_mask_
                & SlabDefence(removal_fraction=0.1).fit(X_all, y_all).keep_mask_)
        return LogisticRegression(max_iter=1000).fit(X_all[keep], y_all[keep]).predict(x_target[None, :])[0]

    assert victim_reads(X[:0], y[:0]) == 2
    assert victim_reads(np.tile(x_target, (15, 1)), np.full(15, 7)) == 2
    for n_poison in (15, 4):
        assert victim_reads(*centroid_shift_poisons(X, y, x_target, 7, n_poison)) == 7


def test_the_output():
    X, y = gaussian_classes(3, (3, 8))
    y = y.astype(np.int32)
    X_before, y_before, x_target = X.copy(), y.copy(), X[5].copy()
    X_poison, y_poison = centroid_shift_poisons(X, y, x_target, 3, 6)
    assert X_poison.shape == (6, X.shape[1]) and X_poison.dtype == np.float64
    np.testing.assert_array_equal(X_poison[:5], np.tile(x_target, (5, 1)))  # the copies first, the decoy last
    assert np.linalg.norm(X_poison[5] - x_target) > 10 * np.linalg.norm(X[y == 3] - x_target, axis=1).max()
    assert y_poison.dtype == np.int32 and y_poison.tolist() == [3] * 6
    np.testing.assert_array_equal(X, X_before)  # the inputs are left alone
    np.testing.assert_array_equal(y, y_before)
    again = centroid_shift_poisons(X, y, x_target, 3, 6)  # deterministic
    np.testing.assert_array_equal(again[0], X_poison)
    # lists work as well as arrays
    X_list, y_list = centroid_shift_poisons(X.tolist(), y.tolist(), x_target.tolist(), 3, 6)
    np.testing.assert_allclose(X_list, X_poison)


def test_bad_input_raises_a_clear_error():
    X, y = gaussian_classes(4, (0, 1))
    x = X[0]
    cases = [
        ((X, y, x, 1, 1), ValueError, "n_poison must be an integer >= 2, got 1"),
        ((X, y, x, 1, 0), ValueError, "n_poison must be an integer >= 2"),
        ((X, y, x, 1, 3.0), TypeError, "n_poison must be an integer >= 2, got 3.0 of type float"),
        ((X, y, x, 1, True), TypeError, "n_poison must be an integer >= 2"),
        ((X, y, x, 7, 5), ValueError, "wrong_label must be one of the labels of y_clean [0, 1], got 7"),
        ((X, y, x[:-1], 1, 5), ValueError, f"x_target must have shape ({X.shape[1]},)"),
        ((X, y, x[None, :], 1, 5), ValueError, f"x_target must have shape ({X.shape[1]},)"),
        ((X, y, np.full_like(x, np.nan), 1, 5), ValueError, "x_target contains NaN or infinite values"),
        ((X, y, "target", 1, 5), TypeError, "x_target must be an array of numbers"),
        ((X, y[:-1], x, 1, 5), ValueError, "y_clean must have shape"),
        ((np.where(np.eye(*X.shape) == 1, np.inf, X), y, x, 1, 5), ValueError, "X_clean contains NaN or infinite"),
    ]
    for args, error, message in cases:
        with pytest.raises(error) as raised:
            centroid_shift_poisons(*args)
        assert message in str(raised.value), (message, str(raised.value))


def test_it_is_a_public_name_of_the_module():
    import poisoning.sanitization as sanitization

    assert "centroid_shift_poisons" in sanitization.__all__
    assert "assignment 2, Part F" in sanitization.centroid_shift_poisons.__doc__
