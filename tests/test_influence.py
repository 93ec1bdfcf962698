"""Influence functions (Part II, "Influence functions"): derivatives against finite differences, the solvers
against each other, and every influence against actual retraining, which pins the 1/n convention."""

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from poisoning.data import load_mnist, train_test_split_balanced
from poisoning.influence import (
    IHVPResult, LeaveOneOut, LogisticModel, SmoothHingeModel, TorchModel, fit_logistic, fit_smooth_hinge,
    influence_on_params, influence_on_test_loss, input_gradient_of_test_loss, inverse_hvp, leave_one_out,
    removal_effect,
)
from poisoning.training import make_mlp


@pytest.fixture(autouse=True)
def one_torch_thread():
    # tiny tensors: extra threads only add overhead on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_data(n=60, d=4, seed=0, labels=(-1, 1)):
    """Two overlapping Gaussian classes (so that the logistic loss has a finite minimiser even unregularised)."""
    rng = np.random.RandomState(seed)
    y = np.where(rng.rand(n) < 0.5, labels[0], labels[1])
    X = rng.randn(n, d) + 0.8 * np.where(y == labels[1], 1.0, -1.0)[:, None] * np.linspace(1, 0.2, d)
    return X, y


@pytest.fixture(scope="module")
def blobs():
    X, y = make_data(60, 4, seed=0)
    X_test, y_test = make_data(20, 4, seed=1)
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def mnist():
    """MNIST 7 vs 1 (labels 0 and 1): 250 + 250 training and 100 + 100 test images."""
    X, y = load_mnist(classes=(7, 1), relabel=True)
    return train_test_split_balanced(X, y, n_train_per_class=250, n_test_per_class=100, random_state=0)


LINEAR = [LogisticModel(l2=0.1), SmoothHingeModel(l2=0.1, temperature=0.5)]
LINEAR_IDS = ["logistic", "smooth-hinge"]


def retrain(model, X, y, sample_weight=None, theta0=None):
    """The minimiser of the model's objective to machine precision: L-BFGS, then two Newton steps. (L-BFGS stalls
    near a gradient of 1e-11, where the objective stops decreasing in floating point; the Newton steps only use
    H as a preconditioner, their fixed point is grad R = 0 whatever H is.)"""
    theta = model.fit(X, y, sample_weight=sample_weight, theta0=theta0).theta_
    for _ in range(2):
        _, grad = model.objective(X, y, theta, sample_weight)
        theta = theta - np.linalg.solve(model.hessian(X, y, theta, sample_weight), grad)
    return theta


def central_difference(f, x, h=1e-5):
    """d f / d x for array-valued f, one coordinate of x at a time: shape f(x).shape + x.shape."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = h
        cols.append((f(x + e.reshape(x.shape)) - f(x - e.reshape(x.shape))) / (2 * h))
    return np.moveaxis(np.array(cols), 0, -1).reshape(np.shape(f(x)) + x.shape)


# --------------------------------------------------------------------------------------------------
# derivatives against finite differences
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", LINEAR, ids=LINEAR_IDS)
def test_linear_gradients_hessian_and_hvp_match_finite_differences(blobs, model):
    X, y, _, _ = blobs
    rng = np.random.RandomState(1)
    theta = rng.randn(X.shape[1] + 1) * 0.5
    w = rng.rand(len(X)) * 2  # any weights: n stays len(X)
    G = model.gradients(X, y, theta)
    assert G.shape == (len(X), X.shape[1] + 1)
    np.testing.assert_allclose(G, central_difference(lambda t: model.losses(X, y, t), theta), rtol=1e-6, atol=1e-9)
    value, grad = model.objective(X, y, theta, sample_weight=w)
    lam = model.l2
    expected = np.mean(w * model.losses(X, y, theta)) + lam / 2 * theta[:-1] @ theta[:-1]  # bias not regularised
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, central_difference(lambda t: model.objective(X, y, t, w)[0], theta),
                               rtol=1e-6, atol=1e-9)
    H = model.hessian(X, y, theta, sample_weight=w)
    np.testing.assert_allclose(H, central_difference(lambda t: model.objective(X, y, t, w)[1], theta),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(H, H.T, atol=1e-14)
    v = rng.randn(theta.size)
    np.testing.assert_allclose(model.hvp(X, y, v, theta, sample_weight=w), H @ v, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("model", LINEAR, ids=LINEAR_IDS)
def test_linear_mixed_derivative_matches_finite_differences(blobs, model):
    X, y, _, _ = blobs
    n, d = X.shape
    theta = np.random.RandomState(2).randn(d + 1) * 0.5
    J = model.mixed_derivatives(X, y, theta)
    assert J.shape == (n, d + 1, d)
    # row i of the gradients depends on x_i only: move column b of every row at once
    for b in range(d):
        step = np.zeros_like(X)
        step[:, b] = 1e-5
        fd = (model.gradients(X + step, y, theta) - model.gradients(X - step, y, theta)) / 2e-5
        np.testing.assert_allclose(J[:, :, b], fd, rtol=1e-6, atol=1e-9)
    u = np.random.RandomState(3).randn(d + 1)
    np.testing.assert_allclose(model.mixed_vjp(X, y, u, theta), np.einsum("a,iab->ib", u, J), rtol=1e-12,
                               atol=1e-13)


def test_torch_mlp_derivatives_match_finite_differences():
    X, y = make_data(12, 3, seed=4, labels=(0, 2))
    model = TorchModel(make_mlp(3, 3, hidden=(4,), activation="tanh", random_state=0), l2=0.05, device="cpu")
    theta = model.theta_
    p = theta.size
    assert p == 3 * 4 + 4 + 4 * 3 + 3
    G = model.gradients(X, y)
    assert G.shape == (12, p) and G.dtype == np.float64
    np.testing.assert_allclose(G, central_difference(lambda t: model.losses(X, y, t), theta), rtol=1e-6, atol=1e-9)
    value, grad = model.objective(X, y)
    weights = torch.cat([torch.full((m.numel(),), float(not name.endswith("bias")))
                         for name, m in model.module.named_parameters()]).numpy()
    assert value == pytest.approx(model.losses(X, y).mean() + 0.025 * np.sum((weights * theta) ** 2), rel=1e-12)
    np.testing.assert_allclose(grad, central_difference(lambda t: model.objective(X, y, t)[0], theta),
                               rtol=1e-6, atol=1e-9)
    H = model.hessian(X, y)
    np.testing.assert_allclose(H, central_difference(lambda t: model.objective(X, y, t)[1], theta),
                               rtol=1e-6, atol=1e-8)
    v = np.random.RandomState(5).randn(p)
    np.testing.assert_allclose(model.hvp(X, y, v), H @ v, rtol=1e-10, atol=1e-12)
    J = model.mixed_derivatives(X, y)
    assert J.shape == (12, p, 3)
    for b in range(3):
        step = np.zeros_like(X)
        step[:, b] = 1e-5
        fd = (model.gradients(X + step, y) - model.gradients(X - step, y)) / 2e-5
        np.testing.assert_allclose(J[:, :, b], fd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.mixed_vjp(X, y, v), np.einsum("a,iab->ib", v, J), rtol=1e-10, atol=1e-12)


class BinaryLogit(nn.Module):
    """Logistic regression as a torch classifier: logits (0, w.x + b), so cross-entropy is log(1 + e^{-y f})."""

    def __init__(self, d):
        super().__init__()
        self.linear = nn.Linear(d, 1)

    def forward(self, x):
        f = self.linear(x)
        return torch.cat([torch.zeros_like(f), f], dim=1)


def test_torch_logistic_regression_equals_the_closed_form_model(blobs):
    X, y, X_test, y_test = blobs
    y01, y01_test = (y + 1) // 2, (y_test + 1) // 2
    torch.manual_seed(0)
    tm = TorchModel(BinaryLogit(X.shape[1]), l2=0.1, device="cpu").fit(X, y01)
    lm = fit_logistic(X, y, l2=0.1)
    np.testing.assert_allclose(tm.theta_, lm.theta_, atol=1e-8)  # (w, b) in both; the bias is not regularised
    theta = lm.theta_
    np.testing.assert_allclose(tm.gradients(X, y01, theta), lm.gradients(X, y), atol=1e-12)
    np.testing.assert_allclose(tm.hessian(X, y01, theta), lm.hessian(X, y), atol=1e-12)
    np.testing.assert_allclose(tm.mixed_derivatives(X, y01, theta), lm.mixed_derivatives(X, y), atol=1e-12)
    a = removal_effect(tm, X, y01, X_test, y01_test)
    b = removal_effect(lm, X, y, X_test, y_test)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9 * np.abs(b).max())
    np.testing.assert_allclose(removal_effect(tm, X, y01, X_test, y01_test, method="cg"), a, rtol=1e-8,
                               atol=1e-12)
    tm.theta_ = theta  # the same parameters: the influences agree to rounding
    np.testing.assert_allclose(influence_on_params(tm, X, y01, indices=[0, 5]),
                               influence_on_params(lm, X, y, indices=[0, 5]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(input_gradient_of_test_loss(tm, X, y01, X_test, y01_test, indices=[1, 2]),
                               input_gradient_of_test_loss(lm, X, y, X_test, y_test, indices=[1, 2]), rtol=1e-10,
                               atol=1e-14)
    lissa = dict(method="lissa", scale=2.0, depth=300, repeats=2, batch_size=10, random_state=0)
    np.testing.assert_allclose(removal_effect(tm, X, y01, X_test, y01_test, **lissa),
                               removal_effect(lm, X, y, X_test, y_test, **lissa), rtol=1e-8, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# inverse Hessian-vector products
# --------------------------------------------------------------------------------------------------
def test_inverse_hvp_exact_cg_and_lissa_agree(blobs):
    X, y, _, _ = blobs
    model = fit_logistic(X, y, l2=0.1)
    H = model.hessian(X, y)
    v = np.random.RandomState(6).randn(H.shape[0])
    reference = np.linalg.solve(H, v)

    exact = inverse_hvp(H, v)
    assert isinstance(exact, IHVPResult) and exact.solver == "cholesky" and exact.n_iter == 0
    np.testing.assert_allclose(exact.x, reference, rtol=1e-12)
    assert exact.residual < 1e-13
    hvp = lambda u: model.hvp(X, y, u)  # noqa: E731
    from_function = inverse_hvp(hvp, v)
    assert from_function.n_iter == H.shape[0]
    np.testing.assert_allclose(from_function.x, reference, rtol=1e-12)

    cg = inverse_hvp(hvp, v, method="cg")
    assert np.linalg.norm(cg.x - reference) <= 1e-10 * np.linalg.norm(reference)
    assert cg.residual < 1e-11 and 0 < cg.n_iter <= 10 * H.shape[0]

    # LiSSA converges when scale exceeds the largest eigenvalue; error ~ (1 - mu_min / scale)^depth
    eig = np.linalg.eigvalsh(H)
    scale = 1.1 * eig[-1]
    lissa = inverse_hvp(hvp, v, method="lissa", scale=scale, depth=2000, repeats=1)
    assert lissa.n_iter == 2000
    assert np.linalg.norm(lissa.x - reference) <= 1e-6 * np.linalg.norm(reference)
    assert lissa.residual < 1e-6
    # mini-batch LiSSA (Agarwal et al.): a random estimate, close, and reproducible with random_state
    options = dict(method="lissa", scale=3 * eig[-1], depth=1000, repeats=10, batch_size=20, random_state=0)
    s1, info = removal_effect(model, X, y, X[:3], y[:3], return_info=True, **options)
    s2 = removal_effect(model, X, y, X[:3], y[:3], **options)
    s_exact = removal_effect(model, X, y, X[:3], y[:3])
    np.testing.assert_array_equal(s1, s2)
    assert np.linalg.norm(s1 - s_exact) <= 5e-2 * np.linalg.norm(s_exact)
    assert info.residual < 5e-2

    # damping solves (H + damping I) x = v with every method; several right-hand sides at once
    V = np.random.RandomState(7).randn(H.shape[0], 3)
    damped = np.linalg.solve(H + 0.5 * np.eye(len(H)), V)
    for method in ("exact", "cg"):
        result = inverse_hvp(H, V, method=method, damping=0.5)
        assert result.x.shape == V.shape and result.residual.shape == (3,)
        np.testing.assert_allclose(result.x, damped, rtol=1e-10)
    damped_lissa = inverse_hvp(H, V[:, 0], method="lissa", damping=0.5, scale=scale + 0.5, depth=500, repeats=1)
    np.testing.assert_allclose(damped_lissa.x, damped[:, 0], rtol=1e-8)
    assert inverse_hvp(H, np.zeros(len(H))).residual == 0.0


def test_exact_solve_falls_back_to_lu_and_lissa_divergence_is_reported():
    indefinite = np.diag([2.0, -1.0, 0.5])
    result = inverse_hvp(indefinite, np.ones(3))
    assert result.solver == "lu"
    np.testing.assert_allclose(result.x, [0.5, -1.0, 2.0])
    with pytest.raises(ValueError, match="singular"):
        inverse_hvp(np.zeros((3, 3)), np.ones(3))
    with pytest.raises(ValueError, match="LiSSA diverged"):
        inverse_hvp(np.diag([10.0, 1.0]), np.ones(2), method="lissa", scale=1.0, depth=1000, repeats=1)


# --------------------------------------------------------------------------------------------------
# the convention, pinned by retraining
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", LINEAR, ids=LINEAR_IDS)
def test_influence_on_params_is_the_derivative_of_the_weighted_refit(blobs, model):
    X, y, X_test, y_test = blobs
    n = len(X)
    model = clone(model)
    model.theta_ = retrain(model, X, y)
    influence = influence_on_params(model, X, y)
    assert influence.shape == (n, X.shape[1] + 1)
    eps = 1e-6
    for i in (0, 17, 42):
        # adding eps * loss(z_i) to R = (1/n) sum_j w_j loss_j + ... is the weight w_i = 1 + n * eps
        thetas = []
        for sign in (1, -1):
            w = np.ones(n)
            w[i] += sign * n * eps
            thetas.append(retrain(clone(model), X, y, sample_weight=w, theta0=model.theta_))
        np.testing.assert_allclose((thetas[0] - thetas[1]) / (2 * eps), influence[i], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(influence_on_params(model, X, y, indices=[17, -1]), influence[[17, n - 1]])
    # I_up,loss = g_test . I_up,params, and removal is eps = -1/n
    g_test = model.gradients(X_test, y_test).mean(axis=0)
    np.testing.assert_allclose(influence_on_test_loss(model, X, y, X_test, y_test), influence @ g_test,
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(removal_effect(model, X, y, X_test, y_test), -influence @ g_test / n,
                               rtol=1e-10, atol=1e-14)


def test_leave_one_out_keeps_the_1_over_n_and_the_regulariser(blobs):
    X, y, X_test, y_test = blobs
    n = len(X)
    model = fit_logistic(X, y, l2=0.1)
    indices = [3, 11, 29]
    loo = leave_one_out(model, X, y, indices, X_test, y_test)
    assert isinstance(loo, LeaveOneOut) and loo.param_change.shape == (3, X.shape[1] + 1)
    np.testing.assert_array_equal(loo.indices, indices)
    for k, i in enumerate(indices):
        keep = np.arange(n) != i
        # the ground truth: the same objective with weight 0, i.e. the same 1/n and the same lambda ...
        refit = fit_logistic(X, y, l2=0.1, sample_weight=keep.astype(float))
        np.testing.assert_allclose(loo.param_change[k], refit.theta_ - model.theta_, atol=1e-7)
        assert loo.test_loss_change[k] == pytest.approx(
            refit.losses(X_test, y_test).mean() - model.losses(X_test, y_test).mean(), abs=1e-8)
        # ... whereas a mean over the n - 1 others is the weighted problem with lambda (n - 1) / n
        naive = fit_logistic(X[keep], y[keep], l2=0.1).theta_
        shrunk = fit_logistic(X, y, l2=0.1 * (n - 1) / n, sample_weight=keep.astype(float)).theta_
        np.testing.assert_allclose(naive, shrunk, atol=1e-7)
    assert np.all(np.isnan(leave_one_out(model, X, y, [0]).test_loss_change))
    assert np.all(leave_one_out(model, X, y, [0]).n_iter > 0)


def test_first_order_removal_error_vanishes_but_the_n_minus_1_mean_does_not():
    X, y = make_data(600, 4, seed=0)
    n = len(X)
    model = fit_logistic(X, y, l2=0.1)
    predicted = -influence_on_params(model, X, y) / n  # theta_{-z} - theta ~ (1/n) H^-1 grad loss(z)
    indices = [3, 11, 29]
    loo = leave_one_out(model, X, y, indices)
    for k, i in enumerate(indices):
        size = np.linalg.norm(predicted[i])
        first_order_error = np.linalg.norm(loo.param_change[k] - predicted[i])
        assert first_order_error < 0.02 * size  # second order: O(1/n^2) against O(1/n)
        keep = np.arange(n) != i
        naive = fit_logistic(X[keep], y[keep], l2=0.1).theta_ - model.theta_
        # the lambda / n change of the regulariser: O(1/n) as well, the size of the influence itself
        assert np.linalg.norm(naive - predicted[i]) > 0.05 * size
        assert np.linalg.norm(naive - predicted[i]) > 3 * first_order_error


def test_removal_effect_predicts_leave_one_out_on_mnist(mnist):
    X_train, X_test, y_train, y_test = mnist
    model = fit_logistic(X_train, y_train, l2=0.01)
    j = int(np.argmax(model.losses(X_test, y_test)))  # the test point the model gets most wrong
    predicted = removal_effect(model, X_train, y_train, X_test[j], y_test[j])
    assert predicted.shape == (len(X_train),)
    top = np.argsort(-np.abs(predicted))[:30]
    actual = leave_one_out(model, X_train, y_train, top, X_test[j], y_test[j]).test_loss_change
    assert pearsonr(predicted[top], actual)[0] >= 0.97
    # the sign convention: removing the most helpful point raises the test loss, the most harmful lowers it
    helpful, harmful = int(np.argmax(predicted)), int(np.argmin(predicted))
    assert predicted[helpful] > 0 > predicted[harmful]
    change = leave_one_out(model, X_train, y_train, [helpful, harmful], X_test[j], y_test[j]).test_loss_change
    assert change[0] > 0 > change[1]
    assert np.all(np.sign(actual) == np.sign(predicted[top]))


def retrained_test_loss(model, X, y, X_test, y_test):
    """The mean test loss after retraining on (X, y) to machine precision, warm-started from model.theta_."""
    theta = retrain(clone(model), X, y, theta0=model.theta_)
    return model.losses(X_test, y_test, theta).mean()


@pytest.mark.parametrize("model", LINEAR, ids=LINEAR_IDS)
def test_input_gradient_matches_finite_differences_of_retraining(blobs, model):
    X, y, X_test, y_test = blobs
    model = clone(model)
    model.theta_ = retrain(model, X, y)
    i = int(np.argmax(np.abs(removal_effect(model, X, y, X_test, y_test))))
    grad = input_gradient_of_test_loss(model, X, y, X_test, y_test)
    assert grad.shape == X.shape
    np.testing.assert_allclose(input_gradient_of_test_loss(model, X, y, X_test, y_test, indices=[i]), grad[[i]])
    delta = 1e-3
    fd = np.empty(X.shape[1])
    for b in range(X.shape[1]):
        losses = []
        for sign in (1, -1):
            moved = X.copy()
            moved[i, b] += sign * delta
            losses.append(retrained_test_loss(model, moved, y, X_test, y_test))
        fd[b] = (losses[0] - losses[1]) / (2 * delta)
    np.testing.assert_allclose(grad[i], fd, rtol=1e-5, atol=1e-10)


def test_input_gradient_on_mnist(mnist):
    X_train, X_test, y_train, y_test = mnist
    model = LogisticModel(l2=0.01)
    model.theta_ = retrain(model, X_train, y_train)
    j = int(np.argmax(model.losses(X_test, y_test)))
    grad = input_gradient_of_test_loss(model, X_train, y_train, X_test[j], y_test[j], method="cg")
    i = int(np.argmax(np.abs(grad).max(axis=1)))
    delta = 1e-3
    for b in np.argsort(-np.abs(grad[i]))[:3]:
        losses = []
        for sign in (1, -1):
            moved = X_train.copy()
            moved[i, b] += sign * delta
            losses.append(retrained_test_loss(model, moved, y_train, X_test[j:j + 1], y_test[j:j + 1]))
        assert (losses[0] - losses[1]) / (2 * delta) == pytest.approx(grad[i, b], rel=1e-5)


def test_torch_influence_matches_leave_one_out():
    X, y = make_data(80, 5, seed=8, labels=(0, 1))
    X_test, y_test = make_data(10, 5, seed=9, labels=(0, 1))
    torch.manual_seed(0)
    model = TorchModel(BinaryLogit(5), l2=0.05, device="cpu").fit(X, y)
    predicted = removal_effect(model, X, y, X_test, y_test)
    top = np.argsort(-np.abs(predicted))[:8]
    loo = leave_one_out(model, X, y, top, X_test, y_test)
    assert pearsonr(predicted[top], loo.test_loss_change)[0] >= 0.99
    assert np.all(np.sign(loo.test_loss_change) == np.sign(predicted[top]))
    params = -influence_on_params(model, X, y, indices=top) / len(X)
    assert np.linalg.norm(loo.param_change - params) < 0.25 * np.linalg.norm(params)
    # the same numbers as the closed-form model, prediction and ground truth alike
    numpy_model = fit_logistic(X, y, l2=0.05)
    np.testing.assert_allclose(removal_effect(numpy_model, X, y, X_test, y_test), predicted, rtol=1e-6,
                               atol=1e-9 * np.abs(predicted).max())
    numpy_loo = leave_one_out(numpy_model, X, y, top, X_test, y_test)
    np.testing.assert_allclose(numpy_loo.test_loss_change, loo.test_loss_change, rtol=1e-5)


def test_smooth_hinge_tends_to_the_hinge():
    margins = np.linspace(-2, 3, 501)
    X, y = margins[:, None], np.ones_like(margins)
    theta = np.array([1.0, 0.0])
    hinge = np.maximum(0.0, 1.0 - margins)
    for t in (0.1, 0.01, 0.001):
        loss = SmoothHingeModel(temperature=t).losses(X, y, theta)
        assert np.all(loss >= hinge - 1e-14) and np.max(loss - hinge) <= t * np.log(2) * (1 + 1e-12)
        assert loss[np.argmin(np.abs(margins - 1))] == pytest.approx(t * np.log(2))
    # the gradient tends to the hinge's subgradient -1[m < 1] away from the kink
    g = SmoothHingeModel(temperature=1e-3).gradients(X, y, theta)[:, 0]
    far = np.abs(margins - 1) > 0.05
    np.testing.assert_allclose(g[far], np.where(margins[far] < 1, -margins[far], 0.0), atol=1e-12)


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(blobs):
    X, y, X_test, y_test = blobs
    model = fit_logistic(X, y, l2=0.1)
    with pytest.raises(NotFittedError):
        LogisticModel().gradients(X, y)
    with pytest.raises(NotFittedError):
        removal_effect(LogisticModel(), X, y, X_test, y_test)
    with pytest.raises(ValueError, match="labels"):
        model.gradients(X, np.arange(len(X)) % 3)
    with pytest.raises(TypeError, match="numeric labels"):
        model.gradients(X, np.array(["a"] * len(X)))
    with pytest.raises(ValueError, match="shape"):
        model.gradients(X, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        model.gradients(np.where(np.eye(*X.shape) > 0, np.nan, X), y)
    with pytest.raises(ValueError, match="theta must have shape"):
        model.gradients(X, y, theta=np.zeros(3))
    with pytest.raises(ValueError, match="X_test has points of shape"):
        removal_effect(model, X, y, X_test[:, :2], y_test)
    with pytest.raises(ValueError, match="l2"):
        fit_logistic(X, y, l2=-1.0)
    with pytest.raises(TypeError, match="l2"):
        fit_logistic(X, y, l2="0.1")
    with pytest.raises(ValueError, match="temperature"):
        fit_smooth_hinge(X, y, temperature=0.0)
    with pytest.raises(ValueError, match="sample_weight"):
        fit_logistic(X, y, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match="method"):
        removal_effect(model, X, y, X_test, y_test, method="newton")
    with pytest.raises(ValueError, match="damping"):
        removal_effect(model, X, y, X_test, y_test, damping=-1.0)
    with pytest.raises(ValueError, match="batch_size is for method='lissa'"):
        removal_effect(model, X, y, X_test, y_test, batch_size=10)
    with pytest.raises(TypeError, match="unexpected keyword"):
        removal_effect(model, X, y, X_test, y_test, tolerance=1e-3)
    with pytest.raises(ValueError, match="indices"):
        leave_one_out(model, X, y, [len(X)])
    with pytest.raises(TypeError, match="indices"):
        influence_on_params(model, X, y, indices=[0.5])
    with pytest.raises(ValueError, match="both X_test and y_test"):
        leave_one_out(model, X, y, [0], X_test=X_test)
    with pytest.raises(TypeError, match="model must be"):
        removal_effect(object(), X, y, X_test, y_test)
    with pytest.raises(TypeError, match="hvp_or_matrix"):
        inverse_hvp("H", np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        inverse_hvp(np.eye(3), np.ones(4))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        TorchModel(lambda x: x)
    torch_model = TorchModel(make_mlp(4, 3, hidden=(), random_state=0), device="cpu")
    with pytest.raises(ValueError, match="class labels 0..2"):
        torch_model.gradients(X, np.full(len(X), 3))
    with pytest.raises(TypeError, match="integer class labels"):
        torch_model.gradients(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="max_hessian_params"):
        TorchModel(make_mlp(4, 3, hidden=(8,), random_state=0), device="cpu", max_hessian_params=10).hessian(
            X, np.zeros(len(X), dtype=int))


def test_labels_0_1_and_minus_1_plus_1_are_the_same_problem(blobs):
    X, y, X_test, y_test = blobs
    a = fit_logistic(X, y, l2=0.1)
    b = fit_logistic(X, (y + 1) // 2, l2=0.1)
    np.testing.assert_allclose(a.theta_, b.theta_)
    single = removal_effect(a, X, y, X_test[0], y_test[0])  # one point: X_test with one dimension fewer
    np.testing.assert_allclose(single, removal_effect(b, X, (y + 1) // 2, X_test[:1], (y_test[:1] + 1) // 2))
