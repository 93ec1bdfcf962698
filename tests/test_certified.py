"""The certified defences of chapter "Certified defences": DPA, Finite Aggregation and label-flip smoothing.

Ground truth: hand-made vote tables, brute force over vote changes and over the buckets an attacker can reach, the
official Finite Aggregation partition code, exhaustive and greedy poisoning searches with retraining, enumeration
of all label flips (with scikit-learn's ``Ridge`` as the base classifier) and of all events of a tiny label space.
"""

import itertools
import random
from collections import deque

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split

from poisoning.certified import (FA_SHIFT_SEED, DPAClassifier, FAClassifier, LabelFlipSmoothing, certified_accuracy,
                                 content_hash, dpa_certificate, dpa_partition, fa_certificate, fa_partition, fa_shifts,
                                 label_flip_radius, median_certified_radius, search_poisoning_attacks)
from poisoning.data import load_digits, train_test_split_balanced


class Centroids(ClassifierMixin, BaseEstimator):
    """Nearest class centroid: a base classifier cheap enough to retrain thousands of times."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        distances = ((X[:, None, :] - self.centroids_[None, :, :]) ** 2).sum(axis=2)
        return self.classes_[np.argmin(distances, axis=1)]


@pytest.fixture(scope="module")
def digits():
    """All 8x8 digits in [0, 1], split 75/25 (stratified)."""
    X, y = load_digits()
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def three_digits():
    """Digits 0, 1 and 7: 50 training and 12 test points per class."""
    X, y = load_digits(classes=(0, 1, 7))
    return train_test_split_balanced(X, y, 50, 12, random_state=0)


# --------------------------------------------------------------------------------------------------
# the DPA certificate on vote tables
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("votes, radius", [
    ([5, 3, 2], 1),   # gap 2 to class 1
    ([3, 5, 2], 0),   # gap 5 - 3 - 1 = 1 to the smaller class 0
    ([4, 4, 2], 0),   # a tie goes to class 0, nothing certified
    ([2, 4, 4], 0),   # a tie between 1 and 2 goes to 1
    ([0, 7, 3], 2),   # min(floor(6 / 2), floor(4 / 2))
    ([10, 0, 0], 5),
    ([0, 0, 9], 4),   # floor((9 - 0 - 1) / 2) against both smaller classes
    ([0, 0, 0], 0),   # every base classifier abstains: class 0 by the tie rule
    ([6, 4], 1), ([7, 4], 1), ([8, 4], 2),
    ([4, 6], 0), ([4, 7], 1), ([4, 8], 1), ([4, 9], 2),
])
def test_dpa_certificate_on_hand_made_tables(votes, radius):
    assert dpa_certificate([votes]).tolist() == [radius]


def test_dpa_certificate_is_minus_one_for_wrong_predictions():
    votes = [[5, 3, 2], [3, 5, 2], [4, 4, 2], [1, 1, 8]]
    assert dpa_certificate(votes).tolist() == [1, 0, 0, 3]
    assert dpa_certificate(votes, y_true=[0, 0, 1, 2]).tolist() == [1, -1, -1, 3]


def fewest_vote_changes(votes, abstentions):
    """Breadth-first search: the fewest base classifiers that must change their vote (or abstention) to change
    the plurality vote (ties to the smaller class)."""
    n_classes = len(votes)
    start = tuple(votes) + (abstentions,)
    winner = int(np.argmax(votes))
    seen, queue = {start}, deque([(start, 0)])
    while queue:
        state, depth = queue.popleft()
        if int(np.argmax(state[:n_classes])) != winner:
            return depth
        for a in range(n_classes + 1):
            if state[a] == 0:
                continue
            for b in range(n_classes + 1):
                if b != a:
                    nxt = list(state)
                    nxt[a] -= 1
                    nxt[b] += 1
                    nxt = tuple(nxt)
                    if nxt not in seen:
                        seen.add(nxt)
                        queue.append((nxt, depth + 1))
    raise AssertionError("with at least one base classifier the prediction can always be changed")


def test_dpa_certificate_is_the_fewest_vote_changes_minus_one():
    rng = np.random.RandomState(0)
    for _ in range(150):
        n_classes = rng.randint(2, 5)
        preds = rng.randint(-1, n_classes, size=rng.randint(1, 8))  # -1: an abstaining (empty) partition
        votes = np.bincount(preds[preds >= 0], minlength=n_classes)
        expected = fewest_vote_changes(votes.tolist(), int(np.sum(preds < 0))) - 1
        assert dpa_certificate([votes])[0] == expected, preds


# --------------------------------------------------------------------------------------------------
# the Finite Aggregation certificate
# --------------------------------------------------------------------------------------------------
def brute_force_fa_radius(preds, shifts, n_classes):
    """The fewest hash values whose learners, set to anything, change the plurality vote, minus one."""
    n_learners = len(preds)
    groups = [{(h + s) % n_learners for s in shifts} for h in range(n_learners)]
    winner = int(np.argmax(np.bincount(preds[preds >= 0], minlength=n_classes)))
    for size in range(1, n_learners + 1):
        for hashes in itertools.combinations(range(n_learners), size):
            touched = sorted(set().union(*(groups[h] for h in hashes)))
            for c in range(n_classes):
                if c == winner:
                    continue
                attacked = preds.copy()
                attacked[touched] = c  # the best the attacker can do against winner for class c
                votes = np.bincount(attacked[attacked >= 0], minlength=n_classes)
                if int(np.argmax(votes)) != winner:
                    return size - 1
    raise AssertionError("unreachable")


def test_fa_certificate_is_sound_against_brute_force():
    rng = np.random.RandomState(1)
    k, d, n_classes = 3, 2, 3
    shifts = fa_shifts(k, d)
    preds = rng.randint(-1, n_classes, size=(120, k * d))
    preds[:40, :4] = 0  # some clear majorities, so that radii above 0 occur
    radius = fa_certificate(preds, shifts, n_classes)
    truth = np.array([brute_force_fa_radius(p, shifts, n_classes) for p in preds])
    assert np.all(radius <= truth)
    assert radius.max() >= 1 and np.mean(radius == truth) > 0.5


def test_fa_certificate_hand_made():
    # k = 3, d = 2, shifts (0, 3): hash h reaches learners {h, h + 3 mod 6}.
    # Votes 5 for class 0, 1 for class 2. Against c = 1: gap 5, every hash reaches two learners voting 0 (delta 4)
    # except h = 2 and h = 5 (learners 2 and 5: delta 2 + 1 = 3): 4 <= 5 < 8, radius 1. Against c = 2: gap 4,
    # deltas 4 and 2 (h = 2, 5): 4 <= 4 < 8, radius 1.
    preds = np.array([[0, 0, 0, 0, 0, 2]])
    assert fa_certificate(preds, [0, 3], 3).tolist() == [1]
    # a learner voting the runner-up costs the attacker nothing: with votes 4 : 2 the radius is 0
    assert fa_certificate(np.array([[0, 0, 0, 0, 2, 2]]), [0, 3], 3).tolist() == [0]
    # the true label is 2, the prediction 0: -1
    assert fa_certificate(preds, [0, 3], 3, y_true=[2]).tolist() == [-1]


def test_fa_with_d_equal_to_one_is_dpa_on_vote_tables():
    rng = np.random.RandomState(2)
    for k in (1, 4, 9):
        preds = rng.randint(-1, 4, size=(200, k))
        votes = np.stack([np.bincount(p[p >= 0], minlength=4) for p in preds])
        y_true = rng.randint(0, 4, size=200)
        np.testing.assert_array_equal(fa_certificate(preds, [0], 4), dpa_certificate(votes))
        np.testing.assert_array_equal(fa_certificate(preds, [0], 4, y_true), dpa_certificate(votes, y_true))
        # any single shift is a renaming of the buckets
        np.testing.assert_array_equal(fa_certificate(preds, [k - 1], 4), dpa_certificate(votes))


# --------------------------------------------------------------------------------------------------
# partitions
# --------------------------------------------------------------------------------------------------
def test_content_hash_and_dpa_partition_by_hand():
    X = np.array([[0.2, 1.0], [0.5, 0.0], [0.0, 0.0]])
    # 0.2 * 255 = 51, 1.0 * 255 = 255; 0.5 * 255 = 127.5 rounds (half to even) to 128
    assert content_hash(X).tolist() == [306, 128, 0]
    assert dpa_partition(X, 10).tolist() == [6, 8, 0]
    assert content_hash(X, scale=16).tolist() == [round(3.2) + 16, 8, 0]


def test_fa_shifts_follow_the_official_code():
    for k, d in [(10, 4), (50, 1), (7, 3)]:
        n = k * d
        official = random.Random(FA_SHIFT_SEED).sample(range(n), d)  # random.seed(...); random.sample(...)
        shifts = fa_shifts(k, d)
        assert shifts[0] == 0 and len(set(shifts.tolist())) == d
        np.testing.assert_array_equal(shifts, np.mod(np.array(official) - official[0], n))


def test_fa_partition_renames_the_official_buckets():
    X, _ = load_digits()
    k, d = 10, 4
    n = k * d
    # FiniteAggregation_data_norm_hash.py, with the pixel sum of the digits
    hashes = (np.rint(X * 255).astype(int).sum(axis=1) % n).tolist()
    official_shifts = random.Random(FA_SHIFT_SEED).sample(range(n), d)
    official = [[] for _ in range(n)]
    for i, h in enumerate(hashes):
        for shift in official_shifts:
            official[(h + shift) % n].append(i)
    ours = fa_partition(X, k, d)
    for b in range(n):
        members = np.flatnonzero((ours == b).any(axis=1)).tolist()
        assert members == official[(b + official_shifts[0]) % n]


def test_partition_and_ensemble_do_not_depend_on_the_order(digits):
    X_train, X_test, y_train, _ = digits
    perm = np.random.RandomState(3).permutation(len(X_train))
    for make in (lambda: DPAClassifier(10, random_state=0), lambda: FAClassifier(4, 3, random_state=0)):
        a = make().fit(X_train, y_train)
        b = make().fit(X_train[perm], y_train[perm])
        np.testing.assert_array_equal(a.partition_[perm], b.partition_)
        np.testing.assert_array_equal(a.bucket_sizes_, b.bucket_sizes_)
        np.testing.assert_array_equal(a.learner_predictions(X_test), b.learner_predictions(X_test))
        for ea, eb in zip(a.estimators_, b.estimators_):
            np.testing.assert_array_equal(ea.coef_, eb.coef_)


def test_fa_with_d_equal_to_one_is_dpa_on_trained_models(digits):
    X_train, X_test, y_train, y_test = digits
    dpa = DPAClassifier(12, random_state=5).fit(X_train, y_train)
    fa = FAClassifier(12, 1, random_state=5).fit(X_train, y_train)
    np.testing.assert_array_equal(dpa.partition_, fa.partition_[:, 0])
    np.testing.assert_array_equal(dpa.learner_predictions(X_test), fa.learner_predictions(X_test))
    np.testing.assert_array_equal(dpa.certified_radius(X_test, y_test), fa.certified_radius(X_test, y_test))
    np.testing.assert_array_equal(dpa.predict(X_test), fa.predict(X_test))


def test_every_sample_trains_d_learners_and_single_class_buckets_are_constant():
    X, y = load_digits(classes=(3, 5))
    fa = FAClassifier(3, 2, Centroids()).fit(X[:40], y[:40])
    assert fa.partition_.shape == (40, 2) and fa.bucket_sizes_.sum() == 80
    # a set with one sample per bucket: every base classifier predicts the label of its only sample
    X_one = np.zeros((4, 3))
    X_one[np.arange(4), 0] = np.arange(4) / 255  # pixel sums 0, 1, 2, 3
    y_one = np.array([0, 1, 1, 0])
    dpa = DPAClassifier(5).fit(X_one, y_one)
    assert dpa.bucket_sizes_.tolist() == [1, 1, 1, 1, 0]
    assert dpa.learner_predictions(X_one[:1]).tolist() == [[0, 1, 1, 0, -1]]  # the empty bucket abstains
    assert dpa.votes(X_one[:1]).tolist() == [[2, 2]]
    assert dpa.predict(X_one[:1]).tolist() == [0] and dpa.certified_radius(X_one[:1]).tolist() == [0]


# --------------------------------------------------------------------------------------------------
# soundness by search
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [DPAClassifier(5, Centroids()), FAClassifier(3, 2, Centroids())],
                         ids=["DPA k=5", "FA k=3 d=2"])
def test_no_small_attack_changes_a_certified_prediction_exhaustive(model):
    X, y = load_digits(classes=(0, 1, 7))
    X_train, X_test, y_train, _ = train_test_split_balanced(X, y, 10, 4, random_state=0)
    model.fit(X_train, y_train)
    # every attack of up to two insertions and removals: any training point removed, any test point inserted
    # with any label into any bucket (set)
    result = search_poisoning_attacks(model, X_train, y_train, X_test, budget=2)
    assert result.n_attacks > 4000
    assert result.violations == []
    # the search has teeth: it changes predictions that are not certified at its budget
    assert len(result.changed) >= 3
    assert all(a.size == a.radius + 1 for a in result.changed)
    np.testing.assert_array_equal(result.radius, model.certified_radius(X_test))


def test_no_greedy_attack_changes_a_certified_prediction_and_dpa_is_often_tight(three_digits):
    X_train, X_test, y_train, _ = three_digits
    X_test = X_test[:12]
    dpa = DPAClassifier(15, Centroids()).fit(X_train, y_train)
    result = search_poisoning_attacks(dpa, X_train, y_train, X_test, strategy="greedy")
    assert result.violations == []
    assert result.radius.max() >= 5
    # one poison more than the certificate allows does change several predictions: the certificate is tight there
    tight = [a for a in result.changed if a.size == a.radius + 1]
    assert len(tight) >= 3
    # Finite Aggregation on a smaller training set (ten points per class), where single poisons move votes
    X, y = load_digits(classes=(0, 1, 7))
    X_train, X_test, y_train, _ = train_test_split_balanced(X, y, 10, 4, random_state=0)
    fa = FAClassifier(7, 2, Centroids()).fit(X_train, y_train)
    result = search_poisoning_attacks(fa, X_train, y_train, X_test, strategy="greedy")
    assert result.violations == []
    assert result.radius.max() >= 2
    assert len([a for a in result.changed if a.size == a.radius + 1]) >= 3


def test_a_found_attack_is_real_when_replayed(three_digits):
    X_train, X_test, y_train, _ = three_digits
    dpa = DPAClassifier(15, Centroids()).fit(X_train, y_train)
    result = search_poisoning_attacks(dpa, X_train, y_train, X_test[:12], strategy="greedy")
    attack = result.changed[0]
    removed = [op[1] for op in attack.operations if op[0] == "remove"]
    keep = np.setdiff1d(np.arange(len(X_train)), removed)
    X_new, y_new = X_train[keep], y_train[keep]
    for op in attack.operations:
        if op[0] == "insert":
            x = X_test[:12][op[1]].copy()
            # realise the chosen bucket by nudging one pixel: the pixel sum must be h mod 15
            x[0] = 0.0
            x[0] = ((op[3] - content_hash(x[None])[0]) % 15) / 255
            X_new, y_new = np.vstack([X_new, x]), np.append(y_new, op[2])
    retrained = DPAClassifier(15, Centroids()).fit(X_new, y_new)
    assert retrained.predict(X_test[:12][attack.index][None])[0] == attack.after != attack.before


# --------------------------------------------------------------------------------------------------
# parallel training
# --------------------------------------------------------------------------------------------------
def test_joblib_training_equals_serial(digits):
    X_train, X_test, y_train, _ = digits
    serial = FAClassifier(5, 2, random_state=0).fit(X_train, y_train)
    parallel = FAClassifier(5, 2, random_state=0, n_jobs=2).fit(X_train, y_train)
    np.testing.assert_array_equal(serial.learner_predictions(X_test), parallel.learner_predictions(X_test))
    for a, b in zip(serial.estimators_, parallel.estimators_):
        np.testing.assert_array_equal(a.coef_, b.coef_)


def test_progress_bar(capsys, three_digits):
    X_train, _, y_train, _ = three_digits
    DPAClassifier(4, Centroids(), progress=True).fit(X_train, y_train)
    assert "DPAClassifier: 4 base classifiers" in capsys.readouterr().err


@pytest.mark.slow
def test_dask_training_equals_serial(digits):
    distributed = pytest.importorskip("distributed")
    X_train, X_test, y_train, _ = digits
    serial = DPAClassifier(8, random_state=0).fit(X_train, y_train)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        by_client = DPAClassifier(8, random_state=0, scheduler=client).fit(X_train, y_train)
        by_address = FAClassifier(4, 2, random_state=0, scheduler=cluster.scheduler_address).fit(X_train, y_train)
    np.testing.assert_array_equal(serial.learner_predictions(X_test), by_client.learner_predictions(X_test))
    for a, b in zip(serial.estimators_, by_client.estimators_):
        np.testing.assert_array_equal(a.coef_, b.coef_)
    fa = FAClassifier(4, 2, random_state=0).fit(X_train, y_train)
    np.testing.assert_array_equal(fa.learner_predictions(X_test), by_address.learner_predictions(X_test))


# --------------------------------------------------------------------------------------------------
# the reference numbers
# --------------------------------------------------------------------------------------------------
def test_certified_accuracy_and_median_radius_by_hand():
    radii = np.array([-1, 0, 3, 5])
    np.testing.assert_allclose(certified_accuracy(radii, [0, 1, 3, 4, 6]), [0.75, 0.5, 0.5, 0.25, 0.0])
    assert certified_accuracy(radii, 0) == 0.75
    assert median_certified_radius(radii) == 3
    assert median_certified_radius([0, 1, 2]) == 1
    assert median_certified_radius([-1, -1, -1, 2]) == -1


def test_dpa_on_digits_reproduces_the_reference_numbers(digits):
    """Logistic-regression base models, the digits' own 0..16 pixel values hashed (scale=16).

    Measured: k = 10, 25, 50 -> clean accuracy 0.940, 0.936, 0.918 and median certified radius 4, 10, 12 (with
    scale=255: 0.942, 0.942, 0.927 and 4, 9, 12).
    """
    X_train, X_test, y_train, y_test = digits
    expected = {10: (0.92, 0.96, 4, 4), 25: (0.92, 0.96, 9, 11), 50: (0.90, 0.94, 11, 13)}
    for k, (acc_lo, acc_hi, r_lo, r_hi) in expected.items():
        radii = DPAClassifier(k, scale=16, random_state=0).fit(X_train, y_train).certified_radius(X_test, y_test)
        assert acc_lo <= certified_accuracy(radii, 0) <= acc_hi
        assert r_lo <= median_certified_radius(radii) <= r_hi
        assert radii.max() <= k // 2


# --------------------------------------------------------------------------------------------------
# label-flip smoothing
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_binary():
    """Ten training points in two blobs and eight test points."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(5, 2) + [2, 0], rng.randn(5, 2) - [2, 0]])
    y = np.r_[np.ones(5), np.zeros(5)].astype(int)
    X_test = rng.randn(8, 2) * 2
    return X, y, X_test


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_label_flip_base_classifier_is_ridge(tiny_binary, fit_intercept):
    X, y, X_test = tiny_binary
    model = LabelFlipSmoothing(q=0.1, l2=0.5, fit_intercept=fit_intercept).fit(X, y)
    labels = np.random.RandomState(1).randint(0, 2, len(y))
    ridge = Ridge(alpha=0.5, fit_intercept=fit_intercept).fit(X, labels)
    np.testing.assert_allclose(model.weights(X_test) @ labels, ridge.predict(X_test), atol=1e-12)
    np.testing.assert_allclose(model.decision_function(X_test, labels) + 0.5, ridge.predict(X_test), atol=1e-12)


def test_exact_smoothed_probability_against_enumeration(tiny_binary):
    X, y, X_test = tiny_binary
    q = 0.2
    p1 = np.zeros(len(X_test))
    for flips in itertools.product([0, 1], repeat=len(y)):
        flips = np.array(flips)
        labels = np.abs(y - flips)
        weight = q ** flips.sum() * (1 - q) ** (len(y) - flips.sum())
        p1 += weight * (Ridge(alpha=0.5).fit(X, labels).predict(X_test) > 0.5)
    exact = LabelFlipSmoothing(q=q, l2=0.5, method="exact").fit(X, y)
    lower, upper = exact.probability_bounds(X_test)
    np.testing.assert_allclose(lower, p1, atol=1e-12)
    np.testing.assert_allclose(upper, p1, atol=1e-12)
    np.testing.assert_array_equal(exact.predict(X_test), (p1 > 0.5).astype(int))
    # the Chernoff bounds bracket the exact probability and certify less
    chernoff = LabelFlipSmoothing(q=q, l2=0.5).fit(X, y)
    c_lower, c_upper = chernoff.probability_bounds(X_test)
    assert np.all(c_lower <= p1 + 1e-12) and np.all(c_upper >= p1 - 1e-12)
    assert np.all(chernoff.certified_radius(X_test) <= exact.certified_radius(X_test))
    certified = chernoff.certified_radius(X_test) >= 0
    np.testing.assert_array_equal(chernoff.predict(X_test)[certified], exact.predict(X_test)[certified])


def test_label_flip_certificate_against_all_flips(tiny_binary):
    X, y, X_test = tiny_binary
    q = 0.05
    model = LabelFlipSmoothing(q=q, l2=0.5, method="exact").fit(X, y)
    radius, pred = model.certified_radius(X_test), model.predict(X_test)
    assert radius.max() >= 2
    for r in range(1, radius.max() + 1):
        for flipped in itertools.combinations(range(len(y)), r):
            labels = y.copy()
            labels[list(flipped)] ^= 1
            attacked = LabelFlipSmoothing(q=q, l2=0.5, method="exact").fit(X, labels)
            lower, _ = attacked.probability_bounds(X_test)
            p_pred = np.where(pred == 1, lower, 1 - lower)
            covered = radius >= r
            assert np.all(p_pred[covered] > 0.5)
            np.testing.assert_array_equal(attacked.predict(X_test)[covered], pred[covered])
    assert np.all(model.certified_radius(X_test, 1 - pred) == -1)


def test_label_flip_radius_is_sound_and_tight_on_a_tiny_label_space():
    """Four training labels: every event B of the 16 noisy labellings, every attack that flips r labels."""
    q, y = 0.2, np.array([1, 0, 1, 1])
    space = np.array(list(itertools.product([0, 1], repeat=4)))

    def noise(labels):
        flips = (space != labels).sum(axis=1)
        return q ** flips * (1 - q) ** (4 - flips)

    mu = noise(y)
    events = ((np.arange(1 << 16)[:, None] >> np.arange(16)[None, :]) & 1).astype(bool)
    mu_b = events @ mu
    radius = label_flip_radius(np.clip(1 - mu_b, 0, 1), q, 4)  # B is where the base classifier disagrees
    assert set(radius.tolist()) == {-1, 0, 1, 2, 4}
    for r in range(1, 5):
        for flipped in itertools.combinations(range(4), r):
            attacked = y.copy()
            attacked[list(flipped)] ^= 1
            nu_b = events @ noise(attacked)
            assert np.all(nu_b[radius >= r] < 0.5)  # sound
            if r <= 3:  # tight: some event certified for r - 1 flips is pushed to 1/2 by r flips
                assert np.any(nu_b[radius == r - 1] >= 0.5)


def test_label_flip_radius_by_hand():
    # r = 2: 1 - p = 0.005 fits in the level a = 0 (mass 0.01, likelihood ratio 81): 0.405 < 1/2.
    # r = 3: the level a = 0 has mass 0.001 (nu: 0.729 > 1/2 already): not certified.
    assert label_flip_radius(0.995, 0.1, 100) == 2
    assert label_flip_radius(0.995, 0.1, 1) == 1
    assert label_flip_radius(0.6, 0.1, 100) == 0
    assert label_flip_radius(0.5, 0.1, 100) == -1
    assert label_flip_radius(1.0, 0.1, 7) == 7
    assert label_flip_radius([0.995, 0.6], 0.1, 100).tolist() == [2, 0]


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def test_errors(three_digits):
    X_train, X_test, y_train, _ = three_digits
    cases = [
        (lambda: DPAClassifier(0).fit(X_train, y_train), "n_partitions must be a positive integer"),
        (lambda: FAClassifier(5, 0).fit(X_train, y_train), "d must be a positive integer"),
        (lambda: DPAClassifier(5, scale=-1).fit(X_train, y_train), "scale must be a positive number"),
        (lambda: DPAClassifier(5).fit(X_train, np.zeros(len(X_train))), "at least two classes"),
        (lambda: DPAClassifier(5).fit(X_train, y_train[:-1]), "y must have shape"),
        (lambda: DPAClassifier(5, scheduler=3).fit(X_train, y_train), "scheduler must be"),
        (lambda: dpa_certificate([[1, -1]]), "non-negative"),
        (lambda: dpa_certificate([[3]]), "at least two classes"),
        (lambda: dpa_certificate([[1.5, 2]]), "integers"),
        (lambda: dpa_certificate([[1, 2]], y_true=[2]), r"class indices in \[0, 2\)"),
        (lambda: fa_certificate([[0, 1, 0, 1]], [0, 0]), "distinct"),
        (lambda: fa_certificate([[0, 1, 0]], [0, 1]), "multiple of d"),
        (lambda: fa_certificate([[0, 3, 0, 1]], [0, 2], n_classes=2), "class indices"),
        (lambda: fa_partition(X_train, 5, 2, shifts=[0, 1, 2]), "expected d = 2"),
        (lambda: median_certified_radius([]), "empty"),
        (lambda: label_flip_radius(1.5, 0.1, 3), "probability"),
        (lambda: label_flip_radius(0.9, 0.5, 3), r"q must be a number in \(0, 1/2\)"),
        (lambda: LabelFlipSmoothing(q=0.0).fit(X_train, y_train), "q must be"),
        (lambda: LabelFlipSmoothing().fit(X_train, y_train), "exactly two classes"),
        (lambda: LabelFlipSmoothing(method="exact").fit(X_train[:30], y_train[:30] > 0), "max_exact"),
        (lambda: LabelFlipSmoothing(method="sampling").fit(X_train, y_train > 0), "method must be"),
        (lambda: LabelFlipSmoothing(l2=-1).fit(X_train, y_train > 0), "l2 must be"),
        (lambda: LabelFlipSmoothing(l2=0).fit(np.ones((4, 2)), [0, 1, 0, 1]), "singular"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    dpa = DPAClassifier(5, Centroids()).fit(X_train, y_train)
    with pytest.raises(ValueError, match="features"):
        dpa.predict(X_test[:, :10])
    with pytest.raises(ValueError, match="needs budget"):
        search_poisoning_attacks(dpa, X_train, y_train, X_test)
    with pytest.raises(ValueError, match="max_attacks"):
        search_poisoning_attacks(dpa, X_train, y_train, X_test, budget=3, max_attacks=1000)
    with pytest.raises(ValueError, match="not the training set"):
        search_poisoning_attacks(dpa, X_train[::-1], y_train, X_test, budget=1)
    with pytest.raises(ValueError, match="strategy"):
        search_poisoning_attacks(dpa, X_train, y_train, X_test, strategy="random")
