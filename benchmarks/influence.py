"""Influence functions against leave-one-out retraining: logistic regression on MNIST 7 vs 1 (chapter "Influence
functions", Part II; library module ``poisoning.influence``).

    .venv/bin/python benchmarks/influence.py

800 training points (400 a class), 200 test points, lambda = 0.01, the bias not regularised. The test point is
the one with the highest test loss (fixed rule, chosen before looking at the figures). Prints:

* the time to get the influence of every training point on that test loss (one inverse-HVP, then one
  matrix-vector product) by a dense Cholesky solve, by conjugate gradients and by LiSSA, and their errors
  against a dense LU solve (``numpy.linalg.solve``);
* the time of actually retraining without each of the n points (warm-started L-BFGS, one BLAS thread; all n
  retrains are run, nothing is extrapolated);
* Pearson and Spearman correlations of predicted and actual leave-one-out changes of the test loss on the 50
  most influential points (by |predicted|), and for the 10 test points of highest loss.

Targets, printed beside the figures: exact and CG within 1e-10 of the dense solve; Pearson >= 0.97 and Spearman
>= 0.99 on the 50 most influential; all n influences in under 0.05 s and at least 100x faster than retraining n
times. It measures and prints; it asserts nothing (the first-order approximation stops short of Pearson 1 here:
removing an influential point also removes its curvature from H, which influence ignores).
"""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import pearsonr, spearmanr

from poisoning.data import load_mnist, train_test_split_balanced
from poisoning.influence import fit_logistic, leave_one_out, removal_effect

L2 = 0.01
TOP = 50


def best_time(f, repeats=7):
    """(result, median seconds) over ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - start)
    return out, float(np.median(times))


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def row(name, value, target=""):
    print(f"  {name:<68}{value:>24}   {target}".rstrip())


def main():
    X, y = load_mnist(classes=(7, 1), relabel=True)
    X_train, X_test, y_train, y_test = train_test_split_balanced(X, y, n_train_per_class=400, n_test_per_class=100,
                                                                 random_state=0)
    n, d = X_train.shape
    start = time.perf_counter()
    model = fit_logistic(X_train, y_train, l2=L2)
    fit_time = time.perf_counter() - start
    grad = model.objective(X_train, y_train)[1]
    H = model.hessian(X_train, y_train)
    eig = np.linalg.eigvalsh(H)
    losses = model.losses(X_test, y_test)
    j = int(np.argmax(losses))
    x_t, y_t = X_test[j], y_test[j]
    print(f"MNIST 7 vs 1: n = {n} training points, d = {d} pixels, p = {d + 1} parameters, lambda = {L2}")
    print(f"  fit: {fit_time:.3f} s, {model.n_iter_} L-BFGS iterations, max |grad R| = {np.abs(grad).max():.1e}; "
          f"test error {np.mean((model.decision_function(X_test) > 0) != (y_test == 1)):.3f}")
    print(f"  eigenvalues of H: {eig[0]:.2e} .. {eig[-1]:.3f} (condition number {eig[-1] / eig[0]:.0f})")
    print(f"  test point {j} (label {y_t}, the highest test loss: {losses[j]:.3f})")

    # the dense reference: an LU solve of H s = g_test
    g_test = model.gradients(x_t[None], [y_t])[0]
    G = model.gradients(X_train, y_train)
    reference = G @ np.linalg.solve(H, g_test) / n

    print("\nall n influences on the test loss (removal_effect: one inverse-HVP + one matrix-vector product)")
    (exact, info_exact), t_exact = best_time(lambda: removal_effect(model, X_train, y_train, x_t, y_t,
                                                                    return_info=True))
    (cg, info_cg), t_cg = best_time(lambda: removal_effect(model, X_train, y_train, x_t, y_t, method="cg",
                                                           return_info=True))
    (lissa, info_lissa), t_lissa = best_time(lambda: removal_effect(
        model, X_train, y_train, x_t, y_t, method="lissa", scale=25.0, depth=5000, repeats=10, batch_size=100,
        random_state=0, return_info=True), repeats=1)
    scale = float(np.ceil(1.1 * eig[-1] * 10) / 10)
    (lissa_full, info_full), t_full = best_time(lambda: removal_effect(
        model, X_train, y_train, x_t, y_t, method="lissa", scale=scale, depth=5000, repeats=1,
        return_info=True), repeats=1)
    row("exact (Cholesky): time", f"{t_exact * 1e3:.1f} ms", "target < 50 ms")
    row("  relative error vs dense LU solve", f"{rel(exact, reference):.1e}", "target <= 1e-10")
    row("  residual |Hx - g| / |g|", f"{info_exact.residual:.1e}")
    row("CG (rtol 1e-12): time", f"{t_cg * 1e3:.1f} ms", "target < 50 ms")
    row("  relative error vs dense LU solve", f"{rel(cg, reference):.1e}", "target <= 1e-10")
    row("  residual, iterations", f"{info_cg.residual:.1e}, {info_cg.n_iter}")
    row("LiSSA, Koh & Liang (scale 25, depth 5000, 10 repeats, batch 100)", f"{t_lissa:.2f} s")
    row("  relative error vs dense LU solve", f"{rel(lissa, reference):.1e}")
    row("  residual; Pearson with exact", f"{info_lissa.residual:.1e}; {pearsonr(lissa, reference)[0]:.4f}")
    row(f"LiSSA, full batch, scale {scale} (1.1 x largest eigenvalue), depth 5000", f"{t_full:.2f} s")
    row("  relative error vs dense LU solve", f"{rel(lissa_full, reference):.1e}")
    row("  residual", f"{info_full.residual:.1e}")

    print("\nleave-one-out retraining of all n points (warm-started L-BFGS, gtol 1e-10, one BLAS thread)")
    start = time.perf_counter()
    loo = leave_one_out(model, X_train, y_train, np.arange(n), x_t, y_t)
    t_loo = time.perf_counter() - start
    row("time for all n retrains", f"{t_loo:.1f} s")
    row("  per retrain (median L-BFGS iterations)", f"{t_loo / n * 1e3:.1f} ms ({int(np.median(loo.n_iter))})")
    row("speed-up of exact influence over n retrains", f"{t_loo / t_exact:,.0f}x", "target >= 100x")
    row("speed-up of CG influence over n retrains", f"{t_loo / t_cg:,.0f}x", "target >= 100x")

    actual = loo.test_loss_change
    top = np.argsort(-np.abs(exact))[:TOP]
    print(f"\npredicted vs actual change of the test loss on removal (test point {j})")
    row(f"Pearson, {TOP} most influential", f"{pearsonr(exact[top], actual[top])[0]:.4f}", "target >= 0.97")
    row(f"Spearman, {TOP} most influential", f"{spearmanr(exact[top], actual[top])[0]:.4f}", "target >= 0.99")
    row(f"signs agree, {TOP} most influential", f"{np.mean(np.sign(exact[top]) == np.sign(actual[top])):.2f}")
    row(f"median actual / predicted, {TOP} most influential", f"{np.median(actual[top] / exact[top]):.2f}")
    row("Pearson, all n", f"{pearsonr(exact, actual)[0]:.4f}")
    row("Spearman, all n", f"{spearmanr(exact, actual)[0]:.4f}")
    row(f"LiSSA (Koh & Liang): Pearson, {TOP} most influential", f"{pearsonr(lissa[top], actual[top])[0]:.4f}")

    print(f"\nthe 10 test points of highest loss, {TOP} most influential each (exact solve, {TOP} retrains each)")
    pearsons, spearmans = [], []
    for k in np.argsort(-losses)[:10]:
        pred = removal_effect(model, X_train, y_train, X_test[k], y_test[k])
        top_k = np.argsort(-np.abs(pred))[:TOP]
        act = leave_one_out(model, X_train, y_train, top_k, X_test[k], y_test[k]).test_loss_change
        pearsons.append(pearsonr(pred[top_k], act)[0])
        spearmans.append(spearmanr(pred[top_k], act)[0])
    row("Pearson: median (min .. max)", f"{np.median(pearsons):.3f} ({min(pearsons):.3f} .. {max(pearsons):.3f})")
    row("Spearman: median (min .. max)",
        f"{np.median(spearmans):.3f} ({min(spearmans):.3f} .. {max(spearmans):.3f})")


if __name__ == "__main__":
    main()
