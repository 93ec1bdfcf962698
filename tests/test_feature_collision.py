"""Feature collisions (``poisoning.feature_collision``): the proximal step against its closed form, the feature
gradient against finite differences, the poisons within their budget and closer to the target in feature space,
the watermark on small arrays, the victims against their definitions, and a one-shot attack that succeeds."""

import copy

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from poisoning.data import load_mnist, train_test_split_balanced
from poisoning.feature_collision import (AttackResult, FeatureCollision, LinearHeadVictim, collision_beta,
                                         craft_poisons, end_to_end_attack, extract_features,
                                         feature_collision_term, frozen_feature_extractor, one_shot_attack,
                                         proximal_step, transfer_attack, watermark)
from poisoning.training import cnn_layer_index, make_cnn, train

BASE, TARGET = 9, 4


@pytest.fixture(scope="module")
def setting():
    """A small CNN trained on 60 images of every digit; the victim tells 4 from 9 on its frozen features."""
    torch.set_num_threads(1)
    X, y = load_mnist()
    X_train, X_test, y_train, y_test = train_test_split_balanced(X, y, 60, random_state=0)
    network = make_cnn(n_classes=10, random_state=0)
    train(network, X_train, y_train, epochs=8, batch_size=64, optimizer="adam", lr=3e-3, random_state=0,
          progress=False)
    h = frozen_feature_extractor(network)
    in_task = np.isin(y_train, [BASE, TARGET])
    victim = LinearHeadVictim(h, device="cpu").fit(X_train[in_task], y_train[in_task])
    targets = X_test[y_test == TARGET]
    targets = targets[victim.predict(targets) == TARGET]
    return dict(network=network, h=h, victim=victim, X_victim=X_train[in_task], y_victim=y_train[in_task],
                targets=targets, bases=X_test[y_test == BASE])


def smooth_extractor(d=6, k=3, seed=0):
    """A smooth (tanh) feature map in float64, for derivative checks without ReLU kinks."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, k), nn.Tanh()).double()


# --------------------------------------------------------------------------------------------------- maths


def test_collision_beta_is_the_papers_scaling():
    assert collision_beta(784) == pytest.approx(0.25 * (2048 / 784) ** 2)
    assert collision_beta(299 * 299 * 3) == pytest.approx(0.25 * 2048 ** 2 / (299 * 299 * 3) ** 2)
    assert collision_beta(784, beta0=0.05, n_features=64) == pytest.approx(0.05 * (64 / 784) ** 2)


def test_watermark_on_small_arrays_is_exact():
    base = np.array([0.0, 1.0, 0.5, 0.2])
    target = np.array([1.0, 0.0, 0.5, 0.6])
    np.testing.assert_allclose(watermark(base, target, 0.25), [0.25, 0.75, 0.5, 0.3], atol=1e-15)
    np.testing.assert_array_equal(watermark(base, target, 0.0), base)
    np.testing.assert_array_equal(watermark(base, target, 1.0), target)
    bases = np.array([[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(watermark(bases, np.array([1.0, 0.0]), 0.5), [[0.5, 0.0], [1.0, 0.5]])
    np.testing.assert_allclose(watermark(bases, bases[::-1], 0.5), [[0.5, 0.5], [0.5, 0.5]])


def test_proximal_step_is_the_minimiser_of_the_backward_problem():
    rng = np.random.default_rng(0)
    x_hat, base = rng.normal(size=5), rng.uniform(size=5)
    beta, lam = 0.7, 0.3
    x = proximal_step(x_hat, base, beta, lam)
    # the optimality condition of  beta ||x - b||^2 + ||x - x_hat||^2 / (2 lam)
    np.testing.assert_allclose(2 * beta * (x - base) + (x - x_hat) / lam, 0.0, atol=1e-12)
    # and a numerical minimisation of the same problem
    numeric = minimize(lambda z: beta * np.sum((z - base) ** 2) + np.sum((z - x_hat) ** 2) / (2 * lam),
                       np.zeros(5), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(x, numeric, atol=1e-6)
    # one step size per row, and the torch path, give the same
    X_hat, B = rng.normal(size=(3, 4)), rng.uniform(size=(3, 4))
    lams = np.array([0.1, 1.0, 5.0])
    rows = np.stack([proximal_step(X_hat[i], B[i], beta, lams[i]) for i in range(3)])
    np.testing.assert_allclose(proximal_step(X_hat, B, beta, lams), rows, atol=1e-14)
    torch_rows = proximal_step(torch.tensor(X_hat), torch.tensor(B), beta, torch.tensor(lams)).numpy()
    np.testing.assert_allclose(torch_rows, rows, atol=1e-14)
    # beta = 0: the step is the identity
    np.testing.assert_array_equal(proximal_step(X_hat, B, 0.0, 1.0), X_hat)


def test_feature_term_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    h = smooth_extractor()
    X, T = rng.uniform(size=(2, 6)), rng.uniform(size=(2, 6))
    values, grad = feature_collision_term(h, X, T, device="cpu")
    with torch.no_grad():
        expected = ((h(torch.tensor(X)) - h(torch.tensor(T))) ** 2).sum(dim=1).numpy()
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    eps = 1e-6
    for i in range(2):
        for j in range(6):
            step = np.zeros_like(X)
            step[i, j] = eps
            plus, _ = feature_collision_term(h, X + step, T, device="cpu")
            minus, _ = feature_collision_term(h, X - step, T, device="cpu")
            assert grad[i, j] == pytest.approx((plus[i] - minus[i]) / (2 * eps), rel=1e-6, abs=1e-9)


def test_feature_term_gradient_of_the_cnn_matches_directional_differences():
    network = make_cnn(n_classes=2, image_shape=(8, 8), channels=(2, 3), n_features=4, random_state=0).double()
    h = network[:cnn_layer_index(network, "relu_features") + 1]
    rng = np.random.default_rng(2)
    X, T = rng.uniform(size=(3, 64)), rng.uniform(size=(3, 64))
    _, grad = feature_collision_term(h, X, T, device="cpu")
    eps = 1e-7
    for _ in range(3):
        direction = rng.normal(size=X.shape)
        plus, _ = feature_collision_term(h, X + eps * direction, T, device="cpu")
        minus, _ = feature_collision_term(h, X - eps * direction, T, device="cpu")
        # piecewise smooth (ReLU, max pooling): away from a kink the derivative is exact to rounding
        np.testing.assert_allclose((plus - minus) / (2 * eps), np.sum(grad * direction, axis=1), rtol=1e-5,
                                   atol=1e-8)


# --------------------------------------------------------------------------------------------------- the attack


def test_plain_iteration_with_a_small_step_decreases_the_objective():
    rng = np.random.default_rng(3)
    h = smooth_extractor()
    B, T = rng.uniform(0.2, 0.8, size=(4, 6)), rng.uniform(0.2, 0.8, size=(4, 6))
    attack = FeatureCollision(h, beta=0.1, n_iter=60, step_size=0.05, adaptive_step=False, device="cpu").fit(T, B)
    assert attack.objective_.shape == (61, 4)
    assert np.all(np.diff(attack.objective_, axis=0) < 0)  # strictly, every poison, every step
    np.testing.assert_allclose(attack.objective_, attack.feature_term_ + 0.1 * attack.base_term_)
    np.testing.assert_array_equal(attack.base_term_[0], 0.0)  # it starts at the base
    assert np.all(attack.n_accepted_ == 60) and np.all(attack.step_size_ == 0.05)


def test_adaptive_collision_on_the_cnn(setting):
    h, targets, bases = setting["h"], setting["targets"][:6], setting["bases"][:6]
    attack = FeatureCollision(h, beta0=0.05, n_iter=60, device="cpu").fit(targets, bases)
    objective = attack.objective_
    assert attack.beta_ == pytest.approx(collision_beta(784, 0.05))
    assert np.all(np.diff(objective, axis=0) <= 0)  # a step that raises the objective is undone
    assert np.all(objective[-1] < 0.2 * objective[0])
    # the collision brings the poison much closer to the target in feature space than its base was
    F_target, F_base, F_poison = (extract_features(h, A, device="cpu") for A in (targets, bases, attack.X_poison_))
    before = np.linalg.norm(F_base - F_target, axis=1)
    after = np.linalg.norm(F_poison - F_target, axis=1)
    assert np.all(after < 0.3 * before)
    np.testing.assert_allclose(after ** 2, attack.feature_term_[-1], rtol=1e-4)
    assert attack.X_poison_.min() >= 0.0 and attack.X_poison_.max() <= 1.0


@pytest.mark.parametrize("norm, budget", [("linf", 0.1), ("l2", 1.5)])
def test_poisons_stay_within_their_budget_and_the_pixel_box(setting, norm, budget):
    h, targets, bases = setting["h"], setting["targets"][:4], setting["bases"][:4]
    attack = FeatureCollision(h, beta=0.0, n_iter=30, max_distortion=budget, norm=norm, device="cpu")
    attack.fit(targets, bases)
    diff = attack.X_poison_ - bases
    size = np.abs(diff).max(axis=1) if norm == "linf" else np.linalg.norm(diff, axis=1)
    assert np.all(size <= budget + 1e-5)
    assert np.all(size >= 0.5 * budget)  # with beta = 0 the budget is used
    assert attack.X_poison_.min() >= 0.0 and attack.X_poison_.max() <= 1.0
    assert np.all(attack.feature_term_[-1] < attack.feature_term_[0])


def test_batch_crafting_equals_one_pair_at_a_time(setting):
    h, targets, bases = setting["h"], setting["targets"][:3], setting["bases"][:3]
    params = dict(beta0=0.05, n_iter=20, device="cpu")
    batch = FeatureCollision(h, **params).fit(targets, bases).X_poison_
    alone = np.vstack([FeatureCollision(h, **params).fit(targets[i], bases[i]).X_poison_ for i in range(3)])
    np.testing.assert_allclose(batch, alone, atol=1e-4)
    again = FeatureCollision(h, **params).fit(targets, bases).X_poison_
    np.testing.assert_array_equal(batch, again)  # deterministic


def test_craft_poisons_keeps_the_closest_candidate(setting):
    h, targets, pool = setting["h"], setting["targets"][:3], setting["bases"][:40]
    X_poison, base_index, attack = craft_poisons(h, targets, pool, n_poisons=2, n_candidates=3, random_state=0,
                                                 beta0=0.05, n_iter=10, device="cpu")
    assert X_poison.shape == (3, 2, 784) and base_index.shape == (3, 2)
    final = attack.feature_term_[-1].reshape(3, 2, 3)
    X_all = attack.X_poison_.reshape(3, 2, 3, 784)
    for i in range(3):
        for j in range(2):
            best = final[i, j].argmin()
            np.testing.assert_array_equal(X_poison[i, j], X_all[i, j, best])
    assert all(len(set(row)) == 2 for row in base_index)  # different bases for the poisons of one target
    # a watermark moves every base towards its target before the optimisation
    _, _, marked = craft_poisons(h, targets[:1], pool, n_poisons=2, opacity=0.3, random_state=0, n_iter=0,
                                 device="cpu")
    _, idx, _ = craft_poisons(h, targets[:1], pool, n_poisons=2, random_state=0, n_iter=0, device="cpu")
    np.testing.assert_allclose(marked.X_poison_, watermark(pool[idx[0]], targets[0], 0.3), atol=1e-6)


# --------------------------------------------------------------------------------------------------- victims


def test_frozen_feature_extractor_is_an_independent_frozen_copy(setting):
    network, h = setting["network"].cpu(), setting["h"].cpu()
    assert not any(p.requires_grad for p in h.parameters()) and not h.training
    assert len(h) == cnn_layer_index(network, "relu_features") + 1
    X = torch.tensor(setting["targets"][:5], dtype=torch.float32)
    with torch.no_grad():
        np.testing.assert_allclose(h(X).numpy(), network[:len(h)](X).numpy(), atol=1e-6)
        other = copy.deepcopy(network)
        other.features.weight.add_(1.0)  # changing a copy of the network leaves h alone
        assert not torch.allclose(h(X), other[:len(h)](X))


def test_victim_as_a_torch_network_gives_the_same_probabilities(setting):
    victim = setting["victim"]
    X = setting["targets"][:5]
    net = victim.to_torch().cpu().eval()
    with torch.no_grad():
        proba = torch.softmax(net(torch.tensor(X, dtype=torch.float32)), dim=1).numpy()
    np.testing.assert_allclose(proba, victim.predict_proba(X), atol=1e-5)
    assert all(p.requires_grad for p in net.parameters())


def test_one_shot_attack_succeeds_on_a_small_fixed_case(setting):
    targets = setting["targets"][:5]
    result = one_shot_attack(setting["h"], setting["X_victim"], setting["y_victim"], targets, TARGET,
                             setting["bases"], BASE, n_candidates=3, random_state=0, beta0=0.05, n_iter=100,
                             device="cpu")
    assert isinstance(result, AttackResult) and result.n_trials == 5
    assert result.clean_correct.all() and np.all(result.p_base_clean < 0.5)  # the clean victim gets them right
    assert result.success_rate >= 0.8, result.success
    assert np.all(result.p_base_poisoned[result.success] > 0.5)
    assert np.all(result.p_base_poisoned > result.p_base_clean)
    assert result.X_poison.shape == (5, 1, 784) and result.base_index.shape == (5, 1)
    assert result.collision.objective_.shape == (101, 15)


def test_transfer_attack_without_poison_effect_and_with_evaluation(setting):
    """"Poisons" that are copies of training 9s, far from the targets in feature space, change nothing that matters:
    the clean and poisoned heads agree on the targets."""
    h, X_v, y_v = setting["h"], setting["X_victim"], setting["y_victim"]
    targets = setting["targets"][:3]
    nines = X_v[y_v == BASE][:3][:, None, :]  # "poisons" that are real 9s, far from the targets
    result = transfer_attack(h, X_v, y_v, targets, TARGET, nines, BASE, X_eval=X_v, y_eval=y_v, device="cpu")
    assert not result.success.any()
    np.testing.assert_allclose(result.p_base_poisoned, result.p_base_clean, atol=1e-3)
    assert result.accuracy_clean == pytest.approx(np.mean(setting["victim"].predict(X_v) == y_v))
    assert result.accuracy_poisoned.shape == (3,)


def test_end_to_end_attack_without_learning_is_the_transfer_victim(setting):
    """With a learning rate too small to move any weight, end-to-end fine-tuning leaves the clean transfer model,
    whose probabilities are the victim's."""
    victim, targets = setting["victim"], setting["targets"][:2]
    X_poison = setting["bases"][:2][:, None, :]
    result = end_to_end_attack(victim, setting["X_victim"], setting["y_victim"], targets, TARGET, X_poison, BASE,
                               epochs=1, optimizer="sgd", lr=1e-30, device="cpu")
    expected = victim.predict_proba(targets)[:, list(victim.classes_).index(BASE)]
    np.testing.assert_allclose(result.p_base_clean, expected, atol=1e-5)
    np.testing.assert_allclose(result.p_base_poisoned, expected, atol=1e-5)
    assert result.clean_correct.all() and not result.success.any()


# --------------------------------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors(setting):
    h = smooth_extractor()
    ok = np.full((2, 6), 0.5)
    with pytest.raises(ValueError, match="opacity must be a number in"):
        watermark(ok, ok[0], 1.5)
    with pytest.raises(ValueError, match="x_target must have shape"):
        watermark(ok, np.zeros(5), 0.5)
    with pytest.raises(ValueError, match="n_input_dims must be a positive integer"):
        collision_beta(0)
    with pytest.raises(ValueError, match="step_size must be positive"):
        proximal_step(ok, ok, 0.1, -1.0)
    with pytest.raises(ValueError, match="beta must be a non-negative"):
        proximal_step(ok, ok, -0.1, 1.0)
    with pytest.raises(TypeError, match="feature_extractor must be a torch.nn.Module"):
        FeatureCollision(lambda x: x).fit(ok, ok)
    with pytest.raises(ValueError, match="the bases must lie in the box"):
        FeatureCollision(h, n_iter=1).fit(ok, ok + 1.0)
    with pytest.raises(ValueError, match="X_target has 5 features, expected 6"):
        FeatureCollision(h, n_iter=1).fit(np.zeros((2, 5)), ok)
    with pytest.raises(ValueError, match="X_target must hold one target or one per base"):
        FeatureCollision(h, n_iter=1).fit(np.zeros((3, 6)), ok)
    with pytest.raises(ValueError, match="norm must be 'linf' or 'l2'"):
        FeatureCollision(h, norm="l1").fit(ok, ok)
    with pytest.raises(ValueError, match="box must be"):
        FeatureCollision(h, box=(1.0, 0.0)).fit(ok, ok)
    with pytest.raises(ValueError, match="max_distortion must be a positive"):
        FeatureCollision(h, max_distortion=0.0).fit(ok, ok)
    with pytest.raises(ValueError, match="n_iter must be a non-negative integer"):
        FeatureCollision(h, n_iter=-1).fit(ok, ok)
    with pytest.raises(ValueError, match="contains NaN"):
        FeatureCollision(h).fit(ok, np.full((2, 6), np.nan))
    with pytest.raises(ValueError, match="distinct bases are needed per target"):
        craft_poisons(h, ok[:1], ok, n_poisons=2, n_candidates=2)
    X_v, y_v = setting["X_victim"], setting["y_victim"]
    targets = setting["targets"][:2]
    poisons = setting["bases"][:2][:, None, :]
    with pytest.raises(ValueError, match="base_class 3 does not occur in y_train"):
        transfer_attack(setting["h"], X_v, y_v, targets, TARGET, poisons, 3)
    with pytest.raises(ValueError, match="y_target must hold classes of y_train"):
        transfer_attack(setting["h"], X_v, y_v, targets, BASE, poisons, BASE)
    with pytest.raises(ValueError, match="X_poison must have shape"):
        transfer_attack(setting["h"], X_v, y_v, targets, TARGET, poisons[:1], BASE)
    with pytest.raises(ValueError, match="give both X_eval and y_eval"):
        transfer_attack(setting["h"], X_v, y_v, targets, TARGET, poisons, BASE, X_eval=X_v)
    with pytest.raises(TypeError, match="victim must be a fitted LinearHeadVictim"):
        end_to_end_attack(LinearHeadVictim(setting["h"]), X_v, y_v, targets, TARGET, poisons, BASE)
    with pytest.raises(ValueError, match="y must hold at least two classes"):
        LinearHeadVictim(setting["h"]).fit(X_v[:3], np.full(3, BASE))
