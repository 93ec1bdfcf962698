"""The five random-data corruptions of Zhang et al.: each keeps what it should and destroys what it should."""

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline

from poisoning.random_data import (SETTINGS, GaussianPixels, RandomPixels, ShuffledPixels, corrupt_dataset,
                                   corrupt_labels, random_labels)

K = 10


@pytest.fixture(scope="module")
def labels():
    # deliberately unbalanced, so that "uniform" cannot come from the input marginal
    rng = np.random.RandomState(0)
    return rng.choice(K, size=20_000, p=np.r_[0.3, np.full(K - 1, 0.7 / (K - 1))]).astype(np.int64)


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(1)
    X = rng.beta(0.3, 1.5, size=(300, 49))  # skewed "pixel" values in [0, 1], like ink on paper
    return X, rng.randint(0, K, 300)


def column_ids(n, d):
    """Images whose pixel j holds the value j: after a permutation each row *is* its permutation."""
    return np.tile(np.arange(d, dtype=np.float64), (n, 1))


# --------------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_partial_corruption_changes_about_p_times_one_minus_one_over_k(labels, p):
    y_new = corrupt_labels(labels, p, random_state=3)
    changed = np.mean(y_new != labels)
    expected = p * (1 - 1 / K)
    sd = np.sqrt(expected * (1 - expected) / len(labels))
    assert abs(changed - expected) < 5 * sd


def test_partial_corruption_has_the_mixture_marginal(labels):
    # P[new label = c] = (1 - p) P[y = c] + p / K
    p = 0.4
    y_new = corrupt_labels(labels, p, random_state=4)
    expected = (1 - p) * np.bincount(labels, minlength=K) + p * len(labels) / K
    assert stats.chisquare(np.bincount(y_new, minlength=K), expected).pvalue > 1e-3


def test_label_corruption_keeps_shape_and_dtype_and_leaves_input_alone(labels):
    for dtype in (np.int64, np.int32, np.uint8):
        y = labels[:500].astype(dtype)
        before = y.copy()
        y_new = corrupt_labels(y, 0.5, random_state=0)
        assert y_new.shape == y.shape and y_new.dtype == dtype
        np.testing.assert_array_equal(y, before)
        assert set(np.unique(y_new)) <= set(np.unique(y))
    np.testing.assert_array_equal(corrupt_labels(labels, 0.0, random_state=0), labels)


def test_random_labels_are_uniform_and_independent_of_the_true_labels(labels):
    y_rand = random_labels(labels, random_state=5)
    counts = np.bincount(y_rand, minlength=K)
    assert stats.chisquare(counts).pvalue > 1e-3  # uniform, though the true labels are not
    table = np.histogram2d(labels, y_rand, bins=K)[0]
    assert stats.chi2_contingency(table).pvalue > 1e-3
    assert abs(np.mean(y_rand == labels) - 1 / K) < 0.01  # only chance agreement is left


def test_random_labels_is_corruption_with_p_one(labels):
    np.testing.assert_array_equal(random_labels(labels, random_state=7), corrupt_labels(labels, 1.0, random_state=7))


def test_label_corruption_is_seeded(labels):
    a = corrupt_labels(labels, 0.5, random_state=9)
    np.testing.assert_array_equal(a, corrupt_labels(labels, 0.5, random_state=9))
    np.testing.assert_array_equal(a, corrupt_labels(labels, 0.5, random_state=np.random.RandomState(9)))
    assert not np.array_equal(a, corrupt_labels(labels, 0.5, random_state=10))
    # a numpy Generator: the same state gives the same labels; the generator advances, so the next call differs
    generator = np.random.default_rng(9)
    b = corrupt_labels(labels, 0.5, random_state=generator)
    np.testing.assert_array_equal(b, corrupt_labels(labels, 0.5, random_state=np.random.default_rng(9)))
    assert not np.array_equal(b, corrupt_labels(labels, 0.5, random_state=generator))
    # a Generator seeds a RandomState with its first draw of [0, 2**32)
    seed = int(np.random.default_rng(9).integers(0, 2**32, dtype=np.uint64))
    np.testing.assert_array_equal(b, corrupt_labels(labels, 0.5, random_state=seed))


def test_larger_p_corrupts_a_superset_under_the_same_seed(labels):
    changed = [corrupt_labels(labels, p, random_state=8) != labels for p in (0.2, 0.5, 0.9)]
    assert not np.any(changed[0] & ~changed[1]) and not np.any(changed[1] & ~changed[2])


def test_classes_argument_sets_the_label_space():
    y = np.array([1, 7] * 500)
    assert set(random_labels(y, random_state=0)) == {1, 7}  # default: the classes present in y
    assert set(random_labels(y, classes=range(10), random_state=0)) == set(range(10))
    with pytest.raises(ValueError, match="not among the classes"):
        random_labels(y, classes=[0, 1])


@pytest.mark.parametrize("p, error", [(-0.1, ValueError), (1.01, ValueError), (float("nan"), ValueError),
                                      ("0.5", TypeError), (None, TypeError), (True, TypeError)])
def test_bad_probability_is_refused(p, error):
    with pytest.raises(error, match=r"p must be a number in \[0, 1\]"):
        corrupt_labels(np.arange(5), p)


def test_labels_must_be_one_dimensional():
    with pytest.raises(ValueError, match="one-dimensional"):
        corrupt_labels(np.zeros((3, 2), dtype=int), 0.5)
    with pytest.raises(ValueError, match="no classes"):
        random_labels(np.array([], dtype=int))


# --------------------------------------------------------------------------------------------------
# shuffled pixels
# --------------------------------------------------------------------------------------------------
def test_shuffled_pixels_is_one_permutation_for_all_images_of_train_and_test(images):
    X, _ = images
    shuffle = ShuffledPixels(random_state=0)
    assert shuffle.fit(X[:200]) is shuffle
    perm = shuffle.permutation_
    np.testing.assert_array_equal(np.sort(perm), np.arange(X.shape[1]))
    assert not np.array_equal(perm, np.arange(X.shape[1]))
    # pixel j of every output image is pixel perm[j] of its input, in training and test images alike
    np.testing.assert_array_equal(shuffle.transform(X[:200]), X[:200, perm])
    np.testing.assert_array_equal(shuffle.transform(X[200:]), X[200:, perm])
    ids = shuffle.transform(column_ids(50, X.shape[1]))
    assert (ids == ids[0]).all()


def test_shuffled_pixels_keeps_each_images_values_shape_and_dtype(images):
    X, _ = images
    for data in (X, X.astype(np.float32), (255 * X).astype(np.uint8)):
        out = ShuffledPixels(random_state=1).fit_transform(data)
        assert out.shape == data.shape and out.dtype == data.dtype
        np.testing.assert_array_equal(np.sort(out, axis=1), np.sort(data, axis=1))


def test_shuffled_pixels_fit_transform_matches_fit_then_transform_and_clones(images):
    X, _ = images
    np.testing.assert_array_equal(ShuffledPixels(random_state=2).fit_transform(X),
                                  ShuffledPixels(random_state=2).fit(X).transform(X))
    twin = clone(ShuffledPixels(random_state=2)).fit(X)
    np.testing.assert_array_equal(twin.permutation_, ShuffledPixels(random_state=2).fit(X).permutation_)
    assert not np.array_equal(ShuffledPixels(random_state=3).fit(X).permutation_, twin.permutation_)


# --------------------------------------------------------------------------------------------------
# random pixels
# --------------------------------------------------------------------------------------------------
def test_random_pixels_permutes_each_image_differently(images):
    X, _ = images
    n, d = X.shape
    ids = RandomPixels(random_state=0).fit_transform(column_ids(n, d))
    np.testing.assert_array_equal(np.sort(ids, axis=1), column_ids(n, d))  # every row is a permutation
    assert len({tuple(row) for row in ids}) == n  # and no two images share one
    # where pixel 0 lands is uniform over the d positions
    landing = np.argmax(RandomPixels(random_state=1).fit_transform(column_ids(5000, d)) == 0, axis=1)
    assert stats.chisquare(np.bincount(landing, minlength=d)).pvalue > 1e-3


def test_random_pixels_keeps_each_images_values_shape_and_dtype(images):
    X, _ = images
    for data in (X, X.astype(np.float32), (255 * X).astype(np.uint8)):
        out = RandomPixels(random_state=1).fit(data).transform(data)
        assert out.shape == data.shape and out.dtype == data.dtype
        np.testing.assert_array_equal(np.sort(out, axis=1), np.sort(data, axis=1))
        assert not np.array_equal(out, data)


# --------------------------------------------------------------------------------------------------
# Gaussian
# --------------------------------------------------------------------------------------------------
def test_gaussian_matches_the_data_mean_and_variance(images):
    X, _ = images
    gauss = GaussianPixels(random_state=0).fit(X)
    assert gauss.mean_ == pytest.approx(X.mean()) and gauss.var_ == pytest.approx(X.var())
    noise = gauss.transform(np.zeros((4000, X.shape[1])))  # only the shape of the input is used
    m = noise.size
    assert abs(noise.mean() - X.mean()) < 5 * np.sqrt(X.var() / m)
    assert noise.var() == pytest.approx(X.var(), rel=5 * np.sqrt(2 / m))
    # and it is Gaussian: about 68.3% within one standard deviation, no skew
    z = (noise - X.mean()) / X.std()
    assert np.mean(np.abs(z) < 1) == pytest.approx(0.6827, abs=0.005)
    assert abs(stats.skew(z.ravel())) < 0.02


def test_gaussian_per_pixel_matches_each_pixel(images):
    X, _ = images
    gauss = GaussianPixels(per_pixel=True, random_state=0).fit(X)
    np.testing.assert_allclose(gauss.mean_, X.mean(axis=0))
    noise = gauss.transform(np.zeros((20_000, X.shape[1])))
    np.testing.assert_allclose(noise.mean(axis=0), X.mean(axis=0), atol=5 * np.sqrt(X.var(axis=0).max() / 20_000))
    np.testing.assert_allclose(noise.var(axis=0), X.var(axis=0), rtol=0.05)


def test_gaussian_shape_and_dtype(images):
    X, _ = images
    assert GaussianPixels(random_state=0).fit_transform(X.astype(np.float32)).dtype == np.float32
    out = GaussianPixels(random_state=0).fit_transform((255 * X).astype(np.uint8))
    assert out.dtype == np.float64 and out.shape == X.shape


# --------------------------------------------------------------------------------------------------
# all pixel transforms: seeding and errors
# --------------------------------------------------------------------------------------------------
PIXEL_TRANSFORMS = [ShuffledPixels, RandomPixels, GaussianPixels]


@pytest.mark.parametrize("Transform", PIXEL_TRANSFORMS)
def test_same_seed_same_output_other_seed_other_output(images, Transform):
    X, _ = images
    a = Transform(random_state=4).fit_transform(X)
    np.testing.assert_array_equal(a, Transform(random_state=4).fit_transform(X))
    np.testing.assert_array_equal(a, Transform(random_state=np.random.RandomState(4)).fit_transform(X))
    assert not np.array_equal(a, Transform(random_state=5).fit_transform(X))
    b = Transform(random_state=np.random.default_rng(4)).fit_transform(X)
    np.testing.assert_array_equal(b, Transform(random_state=np.random.default_rng(4)).fit_transform(X))


@pytest.mark.parametrize("Transform", PIXEL_TRANSFORMS)
def test_pixel_transforms_refuse_bad_input(images, Transform):
    X, _ = images
    with pytest.raises(NotFittedError):
        Transform().transform(X)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        Transform().fit(X[0])
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        Transform().fit(X.reshape(len(X), 7, 7))
    with pytest.raises(ValueError, match="fitted on 49"):
        Transform().fit(X).transform(X[:, :10])
    with pytest.raises(TypeError, match="X must hold numbers, got dtype <U1"):
        Transform().fit(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="random_state"):
        Transform(random_state="seed").fit(X).transform(X)


@pytest.mark.parametrize("Transform", PIXEL_TRANSFORMS)
def test_pixel_transforms_work_in_a_pipeline(images, Transform):
    X, _ = images
    out = make_pipeline(Transform(random_state=0)).fit_transform(X)
    assert out.shape == X.shape


# --------------------------------------------------------------------------------------------------
# whole data sets
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split(images):
    X, y = images
    return X[:200], y[:200], X[200:], y[200:]


@pytest.mark.parametrize("setting", SETTINGS)
def test_corrupt_dataset_keeps_shapes_and_inputs(split, setting):
    before = [a.copy() for a in split]
    p = 0.5 if setting == "partially corrupted labels" else None
    out = corrupt_dataset(setting, *split, p=p, random_state=0)
    for new, old in zip(out, split):
        assert new.shape == old.shape and new.dtype == old.dtype
    for arr, old in zip(split, before):
        np.testing.assert_array_equal(arr, old)
    again = corrupt_dataset(setting, *split, p=p, random_state=0)
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a, b)


def test_corrupt_dataset_does_what_each_setting_says(split):
    X_tr, y_tr, X_te, y_te = split
    same = corrupt_dataset("true labels", *split)
    for a, b in zip(same, split):
        np.testing.assert_array_equal(a, b)
    for setting, p in [("random labels", None), ("partially corrupted labels", 0.5)]:
        Xa, ya, Xb, yb = corrupt_dataset(setting, *split, p=p, random_state=0)
        np.testing.assert_array_equal(Xa, X_tr)
        np.testing.assert_array_equal(Xb, X_te)
        np.testing.assert_array_equal(yb, y_te)  # test labels stay true
        assert np.mean(ya != y_tr) > 0.2
    Xa, ya, Xb, yb = corrupt_dataset("shuffled pixels", *split, random_state=0)
    perm = ShuffledPixels(random_state=np.random.RandomState(0)).fit(X_tr).permutation_
    np.testing.assert_array_equal(Xa, X_tr[:, perm])
    np.testing.assert_array_equal(Xb, X_te[:, perm])  # the test set gets the same permutation
    np.testing.assert_array_equal(ya, y_tr)
    for setting in ("random pixels", "gaussian"):
        Xa, ya, Xb, yb = corrupt_dataset(setting, *split, random_state=0)
        assert not np.array_equal(Xa, X_tr) and not np.array_equal(Xb, X_te)
        np.testing.assert_array_equal(ya, y_tr)


def test_corrupt_dataset_refuses_bad_arguments(split):
    with pytest.raises(ValueError, match="unknown setting"):
        corrupt_dataset("random", *split)
    with pytest.raises(ValueError, match="p must be given"):
        corrupt_dataset("partially corrupted labels", *split)
    with pytest.raises(ValueError, match="p must be given"):
        corrupt_dataset("random labels", *split, p=0.5)
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\]"):
        corrupt_dataset("partially corrupted labels", *split, p=2)
    X_tr, y_tr, X_te, y_te = split
    with pytest.raises(ValueError, match="lengths differ"):
        corrupt_dataset("true labels", X_tr, y_tr[:-1], X_te, y_te)
    with pytest.raises(ValueError, match="different numbers of pixels"):
        corrupt_dataset("true labels", X_tr, y_tr, X_te[:, :5], y_te)
