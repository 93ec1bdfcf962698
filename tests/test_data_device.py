"""The offline data helpers and the device helper."""

import numpy as np
import pytest

from poisoning.data import load_digits, load_mnist, train_test_split_balanced
from poisoning.device import get_device


def test_mnist_is_the_bundled_5000_digit_sample():
    X, y = load_mnist()
    assert X.shape == (5000, 784)
    assert np.bincount(y).tolist() == [500] * 10
    assert X.min() == 0.0 and X.max() == 1.0


def test_mnist_class_selection_and_relabel_keep_images_with_their_digit():
    X_all, y_all = load_mnist(scale=False)
    X, y = load_mnist(classes=(7, 1), relabel=True, scale=False)
    assert len(X) == 1000 and sorted(np.unique(y)) == [0, 1]
    # relabel follows the order given: 7 -> 0 and 1 -> 1, image for image
    np.testing.assert_array_equal(X[y == 0], X_all[y_all == 7])
    np.testing.assert_array_equal(X[y == 1], X_all[y_all == 1])


def test_digits_scaled_to_unit_interval():
    X, y = load_digits(classes=(0, 1))
    assert X.shape[1] == 64 and set(np.unique(y)) == {0, 1}
    assert X.max() == 1.0 and X.min() == 0.0


@pytest.mark.parametrize("classes, message", [((1, 11), "do not occur"), ((1, 1), "distinct")])
def test_bad_class_selection_is_refused(classes, message):
    with pytest.raises(ValueError, match=message):
        load_mnist(classes=classes)


def test_relabel_needs_classes():
    with pytest.raises(ValueError, match="relabel"):
        load_digits(relabel=True)


def test_balanced_split_is_balanced_disjoint_and_seeded():
    X = np.arange(200, dtype=float).reshape(100, 2)
    y = np.repeat([0, 1], 50)
    X_train, X_test, y_train, y_test = train_test_split_balanced(X, y, 10, 30, random_state=3)
    assert np.bincount(y_train).tolist() == [10, 10] and np.bincount(y_test).tolist() == [30, 30]
    train_rows, test_rows = {tuple(r) for r in X_train}, {tuple(r) for r in X_test}
    assert not train_rows & test_rows
    # each point keeps its own label
    np.testing.assert_array_equal(y_train, (X_train[:, 0] >= 100).astype(int))
    again = train_test_split_balanced(X, y, 10, 30, random_state=3)
    np.testing.assert_array_equal(again[0], X_train)


def test_balanced_split_refuses_too_few_points():
    with pytest.raises(ValueError, match="fewer than"):
        train_test_split_balanced(np.zeros((10, 2)), np.repeat([0, 1], 5), 5, 1)


def test_device_defaults_to_cuda_exactly_when_available(monkeypatch):
    import torch

    monkeypatch.delenv("POISONING_DEVICE", raising=False)
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("POISONING_DEVICE", "cpu")
    assert get_device().type == "cpu"


def test_device_errors_are_clear(monkeypatch):
    import torch

    with pytest.raises(ValueError, match="unknown device"):
        get_device("not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device("cuda")
