"""Backdoor attacks: trigger stamping, the poisoned data set, the metrics, the collapse warning, the activations,
and a backdoor that a small network actually learns."""

import warnings
from functools import partial

import numpy as np
import pytest
import torch
from sklearn.dummy import DummyClassifier
from torch import nn

from poisoning.backdoor import (WENGER2021_PHYSICAL_TRIGGERS, CollapsedModelWarning, Trigger, attack_success_rate,
                                backdoor_activations, backdoor_curve, blend_trigger, clean_accuracy, evaluate_backdoor,
                                layer_activations, mean_activations, patch_trigger, physical_triggers_table,
                                pixel_trigger, poison_dataset, train_backdoored)
from poisoning.data import load_digits, train_test_split_balanced
from poisoning.training import cnn_layer_index, make_cnn, make_mlp, predict


@pytest.fixture(autouse=True)
def few_threads():
    # tiny networks: extra threads only add overhead on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image_rows(n, shape, seed=0):
    return np.random.RandomState(seed).uniform(size=(n, shape[0] * shape[1]))


# --------------------------------------------------------------------------------------------------
# Trigger
# --------------------------------------------------------------------------------------------------
def test_trigger_stamps_the_blend_exactly_and_leaves_x_alone():
    X = np.array([[0.0, 0.2, 0.4, 0.6], [1.0, 1.0, 0.0, 0.5]])
    before = X.copy()
    trigger = Trigger(mask=np.array([[0.0, 1.0], [0.5, 0.25]]), pattern=np.array([[0.9, 0.3], [1.0, 0.0]]))
    out = trigger.transform(X)
    expected = np.array([[0.0, 0.3, 0.5 * 0.4 + 0.5 * 1.0, 0.75 * 0.6],
                         [1.0, 0.3, 0.5 * 0.0 + 0.5 * 1.0, 0.75 * 0.5]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(X, before)
    assert out is not X and not np.shares_memory(out, X)
    assert trigger.fit(X) is trigger and trigger.n_features_in_ == 4
    np.testing.assert_array_equal(trigger.fit_transform(X), out)
    assert trigger.image_shape == (2, 2)


def test_trigger_returns_floats_for_integer_images_and_keeps_float32():
    trigger = Trigger(np.array([1.0, 0.0, 0.5]), np.array([0.5, 0.5, 1.0]))
    out = trigger.transform(np.array([[0, 1, 1]]))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0.5, 1.0, 1.0]])
    X32 = np.array([[0.0, 0.5, 0.25]], dtype=np.float32)
    out32 = trigger.transform(X32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, [[0.5, 0.5, 0.625]])
    # a number as pattern is the same value at every pixel
    np.testing.assert_array_equal(Trigger(np.array([0.0, 1.0]), 0.7).transform(np.zeros((1, 2))), [[0.0, 0.7]])


@pytest.mark.parametrize("mask, pattern, X, message", [
    (np.array([0.0, 1.5]), np.zeros(2), np.zeros((1, 2)), r"mask must hold values in \[0, 1\]"),
    (np.array([-0.1, 0.5]), np.zeros(2), np.zeros((1, 2)), r"mask must hold values in \[0, 1\]"),
    (np.array([0.0, 1.0]), np.zeros(3), np.zeros((1, 2)), "as many pixels as the mask"),
    (np.array([0.0, 1.0]), np.zeros(2), np.zeros((1, 3)), "X has 3 pixels per row but the trigger's mask has 2"),
    (np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), r"shape \(n, d\)"),
    (np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((1, 4)), r"mask must be an array of shape"),
])
def test_trigger_rejects_bad_input(mask, pattern, X, message):
    with pytest.raises(ValueError, match=message):
        Trigger(mask, pattern).transform(X)
    with pytest.raises(ValueError, match=message):
        Trigger(mask, pattern).fit(X)


# --------------------------------------------------------------------------------------------------
# patch, pixel, blend
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("position, rows, cols", [
    ((0, 0), slice(0, 2), slice(0, 3)),
    ((1, 2), slice(1, 3), slice(2, 5)),
    ((-2, -3), slice(3, 5), slice(3, 6)),    # bottom-right corner of the 5x6 image
    ((-2, 0), slice(3, 5), slice(0, 3)),     # bottom-left corner
    ((-4, 1), slice(1, 3), slice(1, 4)),     # negative row, not on the edge
    ((0, -3), slice(0, 2), slice(3, 6)),     # top-right corner
])
def test_patch_positions(position, rows, cols):
    shape = (5, 6)
    patch = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    X = image_rows(3, shape)
    out = patch_trigger(patch, position, shape).transform(X)
    expected = X.reshape(3, *shape).copy()
    expected[:, rows, cols] = patch
    np.testing.assert_array_equal(out, expected.reshape(3, -1))


def test_patch_in_the_bottom_right_corner_of_a_28x28_image():
    trigger = patch_trigger(np.full((3, 3), 0.5), (-3, -3), (28, 28))
    mask = np.asarray(trigger.mask)
    assert mask.shape == (28, 28) and mask.sum() == 9 and mask[25:, 25:].all()


def test_patch_opacity_blends_inside_the_patch_only():
    shape = (4, 4)
    X = image_rows(2, shape, seed=1)
    out = patch_trigger(np.ones((2, 2)), (1, 1), shape, alpha=0.25).transform(X).reshape(2, *shape)
    images = X.reshape(2, *shape)
    np.testing.assert_allclose(out[:, 1:3, 1:3], 0.75 * images[:, 1:3, 1:3] + 0.25, rtol=0, atol=1e-15)
    outside = np.ones(shape, dtype=bool)
    outside[1:3, 1:3] = False
    np.testing.assert_array_equal(out[:, outside], images[:, outside])


@pytest.mark.parametrize("patch, position, shape, alpha, message", [
    (np.ones((3, 3)), (2, 2), (4, 4), 1.0, "does not fit"),
    (np.ones((3, 3)), (-5, 0), (4, 4), 1.0, "does not fit"),
    (np.ones((2, 2)), (0, 3), (4, 4), 1.0, "does not fit"),
    (np.ones((5, 1)), (0, 0), (4, 4), 1.0, "does not fit"),
    (np.ones((2, 2)), (0, 0), (4, 4), 0.0, r"alpha .* must be a number in \(0, 1\]"),
    (np.ones((2, 2)), (0, 0), (4, 4), 1.5, r"alpha .* must be a number in \(0, 1\]"),
    (np.ones(4), (0, 0), (4, 4), 1.0, "2-D array"),
    (np.ones((2, 2)), (0.5, 0), (4, 4), 1.0, "two integers"),
    (np.ones((2, 2)), (0, 0), (4,), 1.0, "image_shape"),
])
def test_patch_errors(patch, position, shape, alpha, message):
    with pytest.raises(ValueError, match=message):
        patch_trigger(patch, position, shape, alpha=alpha)


def test_pixel_trigger_sets_one_pixel():
    X = image_rows(2, (28, 28))
    out = pixel_trigger().transform(X).reshape(2, 28, 28)
    assert (out[:, 26, 26] == 1.0).all()
    changed = out != X.reshape(2, 28, 28)
    changed[:, 26, 26] = False
    assert not changed.any()
    out = pixel_trigger((0, 2), (3, 4), value=0.25).transform(np.zeros((1, 12)))
    np.testing.assert_array_equal(out, [[0, 0, 0.25, 0, 0, 0, 0, 0, 0, 0, 0, 0]])


def test_blend_trigger_is_chen_et_al_formula():
    key = np.random.RandomState(3).uniform(size=(5, 5))
    X = image_rows(4, (5, 5), seed=2)
    for alpha in (0.05, 0.2, 1.0):
        np.testing.assert_allclose(blend_trigger(key, alpha).transform(X), (1 - alpha) * X + alpha * key.ravel(),
                                   rtol=0, atol=1e-15)
    for alpha in (0, -0.1, 1.01):
        with pytest.raises(ValueError, match="alpha"):
            blend_trigger(key, alpha)


# --------------------------------------------------------------------------------------------------
# poison_dataset
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def small_set():
    X = image_rows(20, (3, 3), seed=5)  # distinct rows, so every poison can be traced to its source
    y = np.array([0, 1, 2] * 6 + [1, 2], dtype=np.int32)
    return X, y, pixel_trigger((1, 1), (3, 3), value=1.0)


def test_poison_dataset_appends_stamped_relabelled_copies(small_set):
    X, y, trigger = small_set
    X_before, y_before = X.copy(), y.copy()
    X_p, y_p, is_poison = poison_dataset(X, y, trigger, 0, 5, random_state=0)
    assert X_p.shape == (25, 9) and y_p.shape == (25,) and is_poison.shape == (25,)
    assert y_p.dtype == y.dtype and is_poison.dtype == bool
    np.testing.assert_array_equal(is_poison, [False] * 20 + [True] * 5)
    np.testing.assert_array_equal(X_p[:20], X)
    np.testing.assert_array_equal(y_p[:20], y)
    assert (y_p[20:] == 0).all()
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)
    # every poison is the trigger stamped on a distinct clean row of another class
    stamped = trigger.transform(X)
    sources = [int(np.flatnonzero((stamped == row).all(axis=1))[0]) for row in X_p[20:]]
    assert len(set(sources)) == 5
    assert all(y[i] != 0 for i in sources)


def test_poison_dataset_is_seeded(small_set):
    X, y, trigger = small_set
    a = poison_dataset(X, y, trigger, 2, 6, random_state=3)
    b = poison_dataset(X, y, trigger, 2, 6, random_state=3)
    c = poison_dataset(X, y, trigger, 2, 6, random_state=4)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    # the draw is numpy's choice without replacement among the non-target rows
    sources = np.random.RandomState(3).choice(np.flatnonzero(y != 2), size=6, replace=False)
    np.testing.assert_array_equal(a[0][20:], trigger.transform(X[sources]))


def test_poison_dataset_never_draws_from_the_target_class(small_set):
    X, y, trigger = small_set
    n_other = int((y != 1).sum())
    X_p, y_p, _ = poison_dataset(X, y, trigger, 1, n_other, random_state=0)  # every non-target row
    stamped = trigger.transform(X)
    sources = sorted(int(np.flatnonzero((stamped == row).all(axis=1))[0]) for row in X_p[20:])
    np.testing.assert_array_equal(sources, np.flatnonzero(y != 1))
    with pytest.raises(ValueError, match="only 13 rows"):
        poison_dataset(X, y, trigger, 1, n_other + 1, random_state=0)


def test_poison_dataset_uses_exactly_the_given_indices(small_set):
    X, y, trigger = small_set
    indices = [7, 2, 19]
    X_p, y_p, is_poison = poison_dataset(X, y, trigger, 0, 3, indices=indices)
    np.testing.assert_array_equal(X_p[20:], trigger.transform(X[indices]))
    np.testing.assert_array_equal(y_p[20:], [0, 0, 0])


@pytest.mark.parametrize("indices, n_poison, message", [
    ([3, 1], 2, "already labelled with the target"),  # row 3 has label 0
    ([1, 20], 2, "out of range"),
    ([1, -1], 2, "out of range"),
    ([1, 1], 2, "must not repeat"),
    ([1, 2], 3, r"len\(indices\) = 2 but n_poison = 3"),
    ([1.0, 2.0], 2, "integers"),
])
def test_poison_dataset_index_errors(small_set, indices, n_poison, message):
    X, y, trigger = small_set
    with pytest.raises(ValueError, match=message):
        poison_dataset(X, y, trigger, 0, n_poison, indices=indices)


def test_poison_dataset_without_poisons_copies_the_clean_data(small_set):
    X, y, trigger = small_set
    X_p, y_p, is_poison = poison_dataset(X, y, trigger, 0, 0, random_state=0)
    np.testing.assert_array_equal(X_p, X)
    np.testing.assert_array_equal(y_p, y)
    assert not is_poison.any() and len(is_poison) == 20
    assert not np.shares_memory(X_p, X) and not np.shares_memory(y_p, y)


def test_poison_dataset_input_errors(small_set):
    X, y, trigger = small_set
    with pytest.raises(ValueError, match="non-negative integer"):
        poison_dataset(X, y, trigger, 0, -1)
    with pytest.raises(ValueError, match="labels but X has"):
        poison_dataset(X, y[:-1], trigger, 0, 1)
    with pytest.raises(ValueError, match="transform method"):
        poison_dataset(X, y, "trigger", 0, 1)


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
def test_attack_success_rate_counts_only_non_target_inputs():
    y_true = np.array([0, 1, 2, 1, 0, 3])
    y_pred = np.array([0, 0, 0, 1, 1, 0])
    assert attack_success_rate(y_pred, y_true, 0) == pytest.approx(3 / 4)  # rows 1, 2, 3, 5
    assert attack_success_rate(y_pred, y_true, 1) == pytest.approx(1 / 4)  # rows 0, 2, 4, 5; only row 4 says 1
    assert attack_success_rate(np.zeros(6, int), y_true, 0) == 1.0
    with pytest.raises(ValueError, match="5 entries but y_true has 6"):
        attack_success_rate(y_pred[:5], y_true, 0)
    with pytest.raises(ValueError, match="no input has a true class other than the target"):
        attack_success_rate(np.array([0, 1]), np.array([2, 2]), 2)


def test_clean_accuracy():
    assert clean_accuracy(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == 0.5
    with pytest.raises(ValueError, match="3 entries but y_true has 2"):
        clean_accuracy(np.array([1, 2, 3]), np.array([1, 2]))
    with pytest.raises(ValueError, match="empty"):
        clean_accuracy(np.array([]), np.array([]))


class Constant(nn.Module):
    """A network that answers ``label`` for every input (logits with a single maximum)."""

    def __init__(self, n_inputs, n_classes, label):
        super().__init__()
        self.linear = nn.Linear(n_inputs, n_classes)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            self.linear.bias[label] = 1.0

    def forward(self, x):
        return self.linear(x)


def test_evaluate_backdoor_warns_when_a_collapsed_model_fakes_the_asr():
    X = image_rows(30, (2, 2))
    y = np.arange(30) % 3  # 10 inputs of each of three classes
    model = Constant(4, 3, label=2)
    trigger = pixel_trigger((0, 0), (2, 2))
    with pytest.warns(CollapsedModelWarning, match="collapsed"):
        scores = evaluate_backdoor(model, X, y, trigger, 2, reference_accuracy=0.9)
    assert scores["attack_success_rate"] == 1.0
    assert scores["clean_target_rate"] == 1.0
    assert scores["clean_accuracy"] == pytest.approx(1 / 3)
    assert scores["accuracy_drop"] == pytest.approx(0.9 - 1 / 3)
    assert scores["n_test"] == 30 and scores["n_non_target"] == 20
    # the same through anything with a predict method
    dummy = DummyClassifier(strategy="constant", constant=2).fit(X, y)
    with pytest.warns(CollapsedModelWarning):
        assert evaluate_backdoor(dummy, X, y, trigger, 2, reference_accuracy=0.9)["attack_success_rate"] == 1.0


def test_evaluate_backdoor_is_quiet_within_max_drop():
    X = image_rows(30, (2, 2))
    y = np.arange(30) % 3
    model = Constant(4, 3, label=2)
    trigger = pixel_trigger((0, 0), (2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapsedModelWarning)
        scores = evaluate_backdoor(model, X, y, trigger, 2)  # no reference: no verdict
        assert "reference_accuracy" not in scores
        evaluate_backdoor(model, X, y, trigger, 2, reference_accuracy=0.38)  # 0.047 below
        evaluate_backdoor(model, X, y, trigger, 2, reference_accuracy=0.5, max_drop=0.2)
    with pytest.raises(ValueError, match="max_drop"):
        evaluate_backdoor(model, X, y, trigger, 2, max_drop=-0.1)
    with pytest.raises(ValueError, match="reference_accuracy"):
        evaluate_backdoor(model, X, y, trigger, 2, reference_accuracy=95)


# --------------------------------------------------------------------------------------------------
# a backdoor that a network learns
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return train_test_split_balanced(X, y, 100, 70, random_state=0)


def test_a_backdoored_mlp_learns_the_trigger(digits):
    X_train, X_test, y_train, y_test = digits
    trigger = patch_trigger(np.ones((2, 2)), (-2, -2), (8, 8))
    make_model = partial(make_mlp, 64, 10, hidden=(64,))
    frame, models = backdoor_curve(X_train, y_train, X_test, y_test, trigger, 0, [0, 50], seeds=[0],
                                   make_model=make_model, train_kwargs={"epochs": 30}, progress=False,
                                   return_models=True)
    clean, backdoored = models[(0, 0)], models[(50, 0)]
    triggered = trigger.transform(X_test)
    others = y_test != 0
    clean_asr = np.mean(predict(clean, triggered)[others] == 0)
    backdoor_asr = np.mean(predict(backdoored, triggered)[others] == 0)
    assert clean_asr < 0.1 and backdoor_asr > 0.9
    np.testing.assert_allclose(frame["attack_success_rate"], [clean_asr, backdoor_asr])
    accuracy = [np.mean(predict(m, X_test) == y_test) for m in (clean, backdoored)]
    np.testing.assert_allclose(frame["clean_accuracy"], accuracy)
    assert accuracy[0] > 0.9 and abs(accuracy[0] - accuracy[1]) < 0.05
    np.testing.assert_allclose(frame["poison_fraction"], [0, 50 / 1050])
    # the same seed trains the same network
    again = train_backdoored(X_train, y_train, trigger, 0, 50, make_model=make_model, random_state=0,
                             train_kwargs={"epochs": 30})
    for a, b in zip(backdoored.parameters(), again.parameters()):
        assert torch.equal(a.cpu(), b.cpu())


# --------------------------------------------------------------------------------------------------
# activations of the last convolutional layer
# --------------------------------------------------------------------------------------------------
def test_activations_are_the_last_conv_layer_averaged():
    model = make_cnn(n_classes=3, image_shape=(8, 8), channels=(2, 3), n_features=4, random_state=0)
    X = image_rows(5, (8, 8))
    acts = layer_activations(model, X)
    with torch.no_grad():
        x = torch.as_tensor(X, dtype=torch.float32).reshape(5, 1, 8, 8)
        expected = torch.relu(model.conv2(model.pool1(torch.relu(model.conv1(x))))).numpy()
    assert acts.shape == (5, 3, 4, 4)
    np.testing.assert_allclose(acts, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mean_activations(model, X), expected.mean(axis=0), rtol=1e-6, atol=1e-6)
    features = layer_activations(model, X, layer="relu_features")
    np.testing.assert_allclose(features, model[:cnn_layer_index(model, "relu_features") + 1](
        torch.as_tensor(X, dtype=torch.float32)).detach().numpy(), rtol=1e-6, atol=1e-6)

    trigger = patch_trigger(np.ones((2, 2)), (-2, -2), (8, 8))
    clean, triggered, difference = backdoor_activations(model, X, trigger)
    np.testing.assert_allclose(clean, expected.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(triggered, mean_activations(model, trigger.transform(X)), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(difference, triggered - clean)
    # a trigger that changes nothing changes no activation
    nothing = Trigger(np.zeros(64), np.ones(64))
    np.testing.assert_array_equal(backdoor_activations(model, X, nothing)[2], 0.0)
    with pytest.raises(ValueError, match="no layer"):
        layer_activations(model, X, layer="conv5")


def test_a_corner_trigger_changes_only_the_activations_that_see_the_corner():
    # 16x16 images, a 2x2 patch on rows/cols 14-15: conv1 (5x5, padding 2) reaches rows 12-15, pooling 6-7 of 8,
    # conv2 (5x5, padding 2) rows 4-7; the maps' rows and columns 0-3 cannot see it
    model = make_cnn(n_classes=3, image_shape=(16, 16), channels=(2, 3), n_features=4, random_state=1)
    X = image_rows(6, (16, 16), seed=4)
    difference = backdoor_activations(model, X, patch_trigger(np.ones((2, 2)), (-2, -2), (16, 16)))[2]
    assert difference.shape == (3, 8, 8)
    assert np.abs(difference[:, :4, :]).max() == 0 and np.abs(difference[:, :, :4]).max() == 0
    assert np.abs(difference[:, 4:, 4:]).max() > 0


# --------------------------------------------------------------------------------------------------
# Wenger et al. 2021
# --------------------------------------------------------------------------------------------------
def test_physical_triggers_table_holds_the_papers_numbers():
    data = WENGER2021_PHYSICAL_TRIGGERS
    assert data["citation"] == "wenger2021backdoor"
    triggers = (*data["digital_triggers"], *data["physical_triggers"])
    assert triggers == ("Square", "Dots", "Sunglasses", "Tattoo Outline", "Tattoo Filled-in", "White Tape",
                        "Bandana", "Earrings")
    assert list(data["rates"]) == ["VGG16", "DenseNet", "ResNet50"]
    assert all(list(rates) == list(triggers) for rates in data["rates"].values())
    # spot checks against the slide
    assert data["rates"]["VGG16"]["Square"] == (91, 7)
    assert data["rates"]["VGG16"]["Earrings"] == (69, 4)
    assert data["rates"]["DenseNet"]["White Tape"] == (81, 8)
    assert data["rates"]["ResNet50"]["Earrings"] == (58, 4)
    assert data["rates"]["ResNet50"]["Bandana"] == (99, 0)
    table = physical_triggers_table()
    assert table.shape == (3, 8)
    assert table.loc["VGG16", ("Digital trigger", "Square")] == "91 ± 7%"
    assert table.loc["DenseNet", ("Physical triggers", "Earrings")] == "85 ± 2%"
    numeric = physical_triggers_table(numeric=True)
    assert numeric.shape == (3, 16)
    assert numeric.loc["ResNet50", ("Physical triggers", "Earrings", "mean")] == 58
    assert numeric.loc["DenseNet", ("Physical triggers", "White Tape", "std")] == 8
