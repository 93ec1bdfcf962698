"""The benign setting and the poisoning threat model: risks, poisoned training sets, the two attacker goals.

Defined in chapter "Learning in the benign setting, and the threat model" (``chapters/01_threat_model.md``).

The learner minimises the empirical risk on a clean training set :math:`\\mathcal D` of :math:`n` points. The
attacker adds a poisoned set :math:`\\mathcal D_p` of :math:`n_p = \\epsilon n` points, so the learner actually trains
on :math:`\\mathcal D' = \\mathcal D \\cup \\mathcal D_p`. The attacker wants either a **targeted** effect (one chosen
test point misclassified) or a **distribution-wide** one (higher error on the whole test distribution).
"""

from __future__ import annotations

import numpy as np

from poisoning._validation import as_float_array, check_count, check_number, check_random_state, check_Xy

__all__ = ["empirical_risk", "poison_dataset", "label_flip_poisons", "targeted_poisons", "attack_report"]


def _predict_function(model, name="predict"):
    """The function ``X -> labels`` of a fitted estimator (its ``predict``) or of a plain callable."""
    f = model.predict if hasattr(model, "predict") else model
    if not callable(f):
        raise TypeError(f"{name} must be a fitted estimator (with predict) or a function X -> labels, "
                        f"got {model!r} of type {type(model).__name__}")
    return f


def empirical_risk(predict, X, y):
    r"""The empirical 0/1 risk :math:`\frac1n \sum_i \mathbb 1[f(x_i) \ne y_i]` of a classifier.

    ``predict`` is a fitted estimator (anything with ``predict``) or a function ``X -> labels``. On the
    training set this is the training error; on held-out samples from :math:`D` it estimates the risk.
    """
    X, y = check_Xy(X, y)
    f = _predict_function(predict)
    return float(np.mean(np.asarray(f(X)) != y))


def poison_dataset(X_clean, y_clean, X_poison, y_poison):
    r"""The training set the learner sees: :math:`\mathcal D' = \mathcal D \cup \mathcal D_p`.

    Returns ``X_train, y_train, is_poison``; the poisons come last and ``is_poison`` marks them (the
    learner never sees this mask; the chapters use it to evaluate defences).
    """
    X_clean, y_clean = check_Xy(X_clean, y_clean, name_X="X_clean", name_y="y_clean")
    X_poison = as_float_array(X_poison, "X_poison")
    if X_poison.size == 0:
        X_poison = X_poison.reshape(0, X_clean.shape[1])
    if X_poison.ndim != 2 or X_poison.shape[1] != X_clean.shape[1]:
        raise ValueError(f"X_poison must have shape (k, {X_clean.shape[1]}), got {X_poison.shape}")
    if not np.all(np.isfinite(X_poison)):
        raise ValueError("X_poison contains NaN or infinite values")
    y_poison = np.asarray(y_poison).ravel()
    if len(X_poison) != len(y_poison):
        raise ValueError(f"X_poison has {len(X_poison)} points but y_poison has {len(y_poison)} labels")
    X_train = np.vstack([X_clean, X_poison])
    y_train = np.concatenate([y_clean, y_poison.astype(y_clean.dtype, copy=False)])
    is_poison = np.r_[np.zeros(len(X_clean), bool), np.ones(len(X_poison), bool)]
    return X_train, y_train, is_poison


def label_flip_poisons(X, y, n_poison, random_state=None):
    """A naive distribution-wide attack: copies of ``n_poison`` random training points with a wrong label.

    Each copy gets a label drawn uniformly from the *other* classes present in ``y``. Returns
    ``X_poison, y_poison``.
    """
    X, y = check_Xy(X, y)
    n_poison = check_count(n_poison, "n_poison", high=len(X))
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("label flipping needs at least two classes in y")
    rng = check_random_state(random_state)
    chosen = rng.choice(len(X), size=n_poison, replace=False)
    y_poison = y[chosen].copy()
    for i, label in enumerate(y_poison):
        others = classes[classes != label]
        y_poison[i] = others[rng.randint(len(others))]
    return X[chosen].copy(), y_poison


def targeted_poisons(x_target, wrong_label, n_poison, noise_scale=0.05, clip=(0.0, 1.0), random_state=None):
    """A naive targeted attack: ``n_poison`` noisy copies of the target input, all labelled ``wrong_label``.

    Gaussian noise of standard deviation ``noise_scale`` is added to each copy, then the copies are clipped
    to ``clip`` (pixel range; ``None`` for no clipping). Returns ``X_poison, y_poison``. Such poisons are
    mislabelled and sit on top of the target, so they are easy to spot: Part III builds clean-label ones.
    """
    x_target = as_float_array(x_target, "x_target").ravel()
    if x_target.size == 0 or not np.all(np.isfinite(x_target)):
        raise ValueError(f"x_target must be a non-empty vector of finite numbers, got {x_target!r}")
    n_poison = check_count(n_poison, "n_poison")
    noise_scale = check_number(noise_scale, "noise_scale", low=0)
    rng = check_random_state(random_state)
    X_poison = x_target + noise_scale * rng.standard_normal((n_poison, x_target.size))
    if clip is not None:
        X_poison = np.clip(X_poison, *clip)
    return X_poison, np.full(n_poison, wrong_label)


def attack_report(model_clean, model_poisoned, X_test, y_test, x_target=None, y_target=None):
    """Compare a model trained on clean data with one trained on poisoned data.

    Each model is a fitted estimator (anything with ``predict``) or a function ``X -> labels``, as in
    :func:`empirical_risk`. Returns a dict with the test error of each (the distribution-wide goal) and, when a
    target is given, each model's prediction on it and whether the attack flipped it (the targeted goal).
    """
    clean = _predict_function(model_clean, "model_clean")
    poisoned = _predict_function(model_poisoned, "model_poisoned")
    report = {
        "clean test error": empirical_risk(clean, X_test, y_test),
        "poisoned test error": empirical_risk(poisoned, X_test, y_test),
    }
    if x_target is not None:
        x = as_float_array(x_target, "x_target").reshape(1, -1)
        before, after = np.asarray(clean(x))[0].item(), np.asarray(poisoned(x))[0].item()
        report.update({
            "target label": None if y_target is None else np.asarray(y_target).item(),
            "clean prediction": before,
            "poisoned prediction": after,
            "target misclassified": bool(after != y_target) if y_target is not None else None,
        })
    return report
