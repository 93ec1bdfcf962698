"""Mean estimation under data poisoning: estimators, the distance-filter defence and attacks on it.

Defined in chapter "Poisoning the mean" (``chapters/02_mean_estimation.md``) and used by assignment 1.

The setting: ``n`` samples, of which a fraction ``epsilon`` may be chosen by an adversary, and we want the
mean of the clean distribution. Every function accepts one-dimensional data (shape ``(n,)``) or
``d``-dimensional data (shape ``(n, d)``) and answers in the same form: a float or a length-``d`` vector
for estimates, an array shaped like the input for points.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erfc

from poisoning._validation import as_float_array, check_number, check_random_state
from poisoning._validation import check_count as _check_count
from poisoning._validation import check_positive as _check_positive
from poisoning._validation import check_samples as _as_samples

__all__ = [
    "empirical_mean",
    "coordinatewise_median",
    "trimmed_mean",
    "distance_filter",
    "filtered_mean",
    "pruning_radius",
    "naive_attack",
    "adaptive_attack",
    "spectral_filter_mean",
    "make_contaminated_gaussian",
    "trimmed_mean_attack",
    "trimmed_mean_shift_bound",
]


# --------------------------------------------------------------------------------------------------
# input checks (the shared ones are imported above: _as_samples, _check_positive, _check_count)
# --------------------------------------------------------------------------------------------------
def _as_output(vector, is_1d):
    """A length-d estimate back in the caller's form: a float for 1-D data."""
    return float(vector[0]) if is_1d else vector


def _unit_direction(direction, d):
    """``direction`` normalised to unit length; default: the first coordinate axis."""
    if direction is None:
        u = np.zeros(d)
        u[0] = 1.0
        return u
    u = np.atleast_1d(as_float_array(direction, "direction")).ravel()
    if u.shape != (d,):
        raise ValueError(f"direction must have {d} entries, got {u.shape[0]}")
    norm = np.linalg.norm(u)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("direction must be a finite, non-zero vector")
    return u / norm


# --------------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------------
def empirical_mean(X):
    r"""The empirical mean :math:`\hat\mu = \frac1n \sum_i x_i`.

    The best estimator on clean Gaussian data, and the least robust one: a single point at distance
    :math:`r` moves it by :math:`r/n`, so an :math:`\epsilon` fraction of poisons moves it arbitrarily far.
    """
    X2, is_1d = _as_samples(X)
    return _as_output(X2.mean(axis=0), is_1d)


def coordinatewise_median(X):
    r"""The median of each coordinate separately.

    In one dimension its breakdown point is 1/2: :math:`\epsilon < 1/2` poisons move it by
    :math:`O(\epsilon)` standard deviations. In :math:`d` dimensions the per-coordinate errors add up:
    :math:`\Theta(\epsilon\sqrt d)` in :math:`\ell_2`, the same rate as the naive estimators.
    """
    X2, is_1d = _as_samples(X)
    return _as_output(np.median(X2, axis=0), is_1d)


def trimmed_mean(X, trim_fraction=0.1):
    r"""The coordinate-wise trimmed mean: in each coordinate, drop the ``k = floor(trim_fraction * n)``
    smallest and ``k`` largest values and average the rest.

    Equal to :func:`scipy.stats.trim_mean` (which the tests check). ``trim_fraction`` must lie in
    ``[0, 0.5)``; 0 gives the empirical mean. With ``trim_fraction >= epsilon`` every poison sitting
    outside the clean range is cut, but poisons *inside* the clean range still shift it.
    """
    X2, is_1d = _as_samples(X)
    trim_fraction = check_number(trim_fraction, "trim_fraction", low=0, high=0.5, high_open=True)
    n = X2.shape[0]
    k = int(np.floor(trim_fraction * n))
    kept = np.sort(X2, axis=0)[k : n - k]
    return _as_output(kept.mean(axis=0), is_1d)


# --------------------------------------------------------------------------------------------------
# the distance-filter defence
# --------------------------------------------------------------------------------------------------
def distance_filter(X, radius, center=None):
    r"""The filter defence: keep the points within ``radius`` of a robust centre.

    Returns a boolean mask, ``True`` for each point kept: :math:`\|x_i - c\|_2 \le r`. The centre
    :math:`c` defaults to the coordinate-wise median of ``X`` itself (poisons included), which an
    :math:`\epsilon < 1/2` fraction of poisons cannot drag far.
    """
    X2, is_1d = _as_samples(X)
    radius = _check_positive(radius, "radius")
    if center is None:
        c = np.median(X2, axis=0)
    else:
        c = np.atleast_1d(as_float_array(center, "center")).ravel()
        if c.shape != (X2.shape[1],):
            raise ValueError(f"center must have {X2.shape[1]} entries, got {c.shape[0]}")
        if not np.all(np.isfinite(c)):
            raise ValueError("center contains NaN or infinite values")
    return np.linalg.norm(X2 - c, axis=1) <= radius


def filtered_mean(X, radius, center=None):
    """The empirical mean of the points that :func:`distance_filter` keeps.

    Raises ``ValueError`` when the filter keeps no point.
    """
    X2, is_1d = _as_samples(X)
    keep = distance_filter(X2, radius, center)
    if not keep.any():
        raise ValueError(f"the filter with radius {radius} removed every point")
    return _as_output(X2[keep].mean(axis=0), is_1d)


def pruning_radius(n, d, epsilon):
    r"""The naive-pruning radius of Diakonikolas et al. (2017): :math:`0.33\sqrt{d \log(n/\epsilon)}`.

    Clean :math:`N(\mu, I)` points lie at distance about :math:`\sqrt d` from :math:`\mu`. With the
    paper's sample size :math:`n = 10 d/\epsilon^2` the radius is about :math:`1.2\sqrt d`, so pruning at
    it removes only far outliers; with far fewer samples (:math:`n \approx 50 d`, say) it is close to
    :math:`\sqrt d` and also cuts into the clean points in low dimension.
    """
    if _check_count(n, "n") < 1 or _check_count(d, "d") < 1:
        raise ValueError(f"n and d must be at least 1, got n={n!r}, d={d!r}")
    epsilon = check_number(epsilon, "epsilon", low=0, high=1, low_open=True, high_open=True)
    return 0.33 * np.sqrt(d * np.log(n / epsilon))


# --------------------------------------------------------------------------------------------------
# attacks
# --------------------------------------------------------------------------------------------------
def naive_attack(X_clean, n_poison, distance, direction=None):
    r"""``n_poison`` copies of one far point: :math:`\bar x + \text{distance}\cdot u`.

    :math:`\bar x` is the empirical mean of ``X_clean`` and :math:`u` the unit ``direction`` (default:
    the first coordinate axis, i.e. ``+1`` in one dimension). Against the empirical mean this is the
    strongest attack for its budget: the mean moves by
    :math:`\frac{k}{n+k}\,\text{distance}`. Any distance filter with a radius below ``distance`` removes it.
    """
    X2, is_1d = _as_samples(X_clean, "X_clean")
    n_poison = _check_count(n_poison, "n_poison")
    distance = _check_positive(distance, "distance")
    u = _unit_direction(direction, X2.shape[1])
    point = X2.mean(axis=0) + distance * u
    X_poison = np.tile(point, (n_poison, 1))
    return X_poison[:, 0] if is_1d else X_poison


def adaptive_attack(X_clean, n_poison, radius, direction=None, margin=0.01):
    r"""Poisons placed just inside the distance filter, all on one side.

    Every poison sits at :math:`m + (1 - \text{margin})\,r\,u`, where :math:`m` is the coordinate-wise
    median of ``X_clean``, :math:`r` the filter ``radius`` and :math:`u` the unit ``direction`` (default:
    the first coordinate axis). The poisons pull the median of the poisoned set towards themselves, so
    they stay within :math:`r` of the centre the filter uses and all survive it; the filtered mean moves by
    about :math:`\frac{k}{n+k}\,r`: bounded by the radius, but not zero. ``margin`` in ``[0, 1)`` keeps
    the points strictly inside.
    """
    X2, is_1d = _as_samples(X_clean, "X_clean")
    n_poison = _check_count(n_poison, "n_poison")
    radius = _check_positive(radius, "radius")
    margin = check_number(margin, "margin", low=0, high=1, high_open=True)
    u = _unit_direction(direction, X2.shape[1])
    point = np.median(X2, axis=0) + (1.0 - margin) * radius * u
    X_poison = np.tile(point, (n_poison, 1))
    return X_poison[:, 0] if is_1d else X_poison


# --------------------------------------------------------------------------------------------------
# the spectral filter (Diakonikolas, Kamath, Kane, Li, Moitra, Stewart 2017)
# --------------------------------------------------------------------------------------------------
def _top_eigenpair(X_centered):
    """Largest eigenvalue and its eigenvector of ``X_centered.T @ X_centered / n``."""
    n, d = X_centered.shape
    cov = X_centered.T @ X_centered / n
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    return eigenvalues[-1], eigenvectors[:, -1]


def spectral_filter_mean(X, epsilon, tau=0.1, cher=2.5, return_mask=False):
    r"""The iterative spectral filter for the mean of :math:`N(\mu, I)` under an :math:`\eta` fraction
    of arbitrary outliers (Diakonikolas et al., 2017, the ``filterGaussianMean`` of their code).

    Repeat: let :math:`\lambda, v` be the top eigenpair of the empirical covariance.

    * If :math:`\lambda < 1 + 3\eta\log(1/\eta)`, no direction has suspiciously large variance:
      return the empirical mean of the points left.
    * Otherwise project on :math:`v`, measure :math:`|\langle x, v\rangle - \mathrm{med}|` and remove the
      points beyond the first threshold :math:`T` at which more points lie above :math:`T + 2\eta` than
      a Gaussian tail allows: more than
      :math:`\texttt{cher}\cdot n\,(\Pr[|Z| > T] / 2 + \eta / (d \log(d\eta/\tau)))`.

    Outliers that shift the mean by :math:`\Delta` must add variance :math:`\approx \Delta^2/\eta` along
    :math:`\Delta`, so they are either harmless or visible; the error is :math:`O(\eta\sqrt{\log
    1/\eta})`, independent of :math:`d`.

    The argument ``epsilon`` is this :math:`\eta`, the fraction of the whole sample that is poisoned (the name
    of the paper's code). With ``return_mask`` also returns the boolean mask of the points kept.
    """
    X2, is_1d = _as_samples(X)
    epsilon = check_number(epsilon, "epsilon", low=0, high=0.5, low_open=True, high_open=True)
    n_total, d = X2.shape
    # log(d eps / tau) <= 1 would make the slack term negative or infinite in low dimension
    slack = epsilon / (d * max(np.log(d * epsilon / tau), 1.0))
    stop_threshold = 1.0 + 3.0 * epsilon * np.log(1.0 / epsilon)
    kept = np.arange(n_total)
    while True:
        current = X2[kept]
        n = len(current)
        mean = current.mean(axis=0)
        if n < 2:
            break
        eigenvalue, v = _top_eigenpair(current - mean)
        if eigenvalue < stop_threshold:
            break
        projected = np.abs(current @ v - np.median(current @ v))
        order = np.argsort(projected, kind="stable")
        sorted_projection = projected[order]
        count_kept = np.arange(1, n + 1)  # keeping the i smallest
        gaussian_tail = erfc((sorted_projection - 2.0 * epsilon) / np.sqrt(2.0)) / 2.0
        too_many_beyond = (n - count_kept) > cher * n * (gaussian_tail + slack)
        if not too_many_beyond.any():
            break
        i = int(np.argmax(too_many_beyond)) + 1
        if i == 1 or i == n:
            break
        kept = kept[np.sort(order[:i])]
    estimate = _as_output(X2[kept].mean(axis=0), is_1d)
    if return_mask:
        mask = np.zeros(n_total, dtype=bool)
        mask[kept] = True
        return estimate, mask
    return estimate


def make_contaminated_gaussian(n, d, epsilon, random_state=None):
    r"""The synthetic benchmark of Diakonikolas et al. (2017), Figure 1.

    ``round((1 - epsilon) n)`` inliers from :math:`N(\mathbf 1, I_d)`; the outliers are half uniform on
    the cube :math:`\{0, 1\}^d` and half at the single point :math:`(12, -2, 0, \dots, 0)`. Neither kind
    is far from the inliers in :math:`\ell_2` (distance :math:`\approx\sqrt{d/2}` and :math:`\approx\sqrt d`
    against the inliers' own :math:`\approx\sqrt d`), so no distance filter can tell them apart.

    Returns ``X`` (shuffled), ``is_poison`` (boolean mask) and ``true_mean`` (the all-ones vector).
    """
    n = _check_count(n, "n")
    d = _check_count(d, "d")
    if n < 1:
        raise ValueError("make_contaminated_gaussian needs n >= 1")
    if d < 2:
        raise ValueError("make_contaminated_gaussian needs d >= 2")
    epsilon = check_number(epsilon, "epsilon", low=0, high=0.5, high_open=True)
    rng = check_random_state(random_state)
    n_clean = int(round((1 - epsilon) * n))
    n_poison = n - n_clean
    n_cube = n_poison // 2
    true_mean = np.ones(d)
    inliers = rng.standard_normal((n_clean, d)) + true_mean
    cube = rng.randint(0, 2, size=(n_cube, d)).astype(np.float64)
    far = np.zeros((n_poison - n_cube, d))
    far[:, 0], far[:, 1] = 12.0, -2.0
    X = np.vstack([inliers, cube, far])
    is_poison = np.r_[np.zeros(n_clean, bool), np.ones(n_poison, bool)]
    order = rng.permutation(n)
    return X[order], is_poison[order], true_mean


# --------------------------------------------------------------------------------------------------
# attacking the trimmed mean (assignment 1, Part D)
# --------------------------------------------------------------------------------------------------


def _trimmed_mean_attack_setting(X_clean, n_poison, trim_fraction, radius):
    """The checked inputs and what the attack and its bound share: ``(X2, is_1d, m, beta, r, k, median, c,
    slope)``, with ``k`` the count cut at each end of the poisoned set, ``c`` the shift of the trimmed mean by ``m``
    poisons at the clean median itself, and ``slope = m / (N - 2k)``."""
    from poisoning._validation import check_count, check_number, check_samples

    X2, is_1d = check_samples(X_clean, "X_clean")
    m = check_count(n_poison, "n_poison")
    beta = check_number(trim_fraction, "trim_fraction", low=0, high=0.5, high_open=True)
    r = check_number(radius, "radius", low=0, low_open=True)
    n = X2.shape[0]
    k = int(np.floor(beta * (n + m)))
    median = np.median(X2, axis=0)
    c = np.atleast_1d(trimmed_mean(np.vstack([X2, np.tile(median, (m, 1))]), beta) - trimmed_mean(X2, beta))
    return X2, is_1d, m, beta, r, k, median, c, m / (n + m - 2 * k)


def _water_fill(low, high, budget):
    """``u = clip(tau, low, high)`` (entry by entry) with the largest ``tau`` such that ``||u|| <= budget``;
    ``high`` may hold ``inf``. Needs ``||low|| <= budget``; gives ``high`` when ``||high|| <= budget``."""
    if np.all(np.isfinite(high)) and np.linalg.norm(high) <= budget:
        return high.copy()
    below, above = 0.0, float(budget)  # ||clip(budget, low, high)|| >= budget here
    for _ in range(100):
        tau = 0.5 * (below + above)
        if np.linalg.norm(np.clip(tau, low, high)) <= budget:
            below = tau
        else:
            above = tau
    return np.clip(below, low, high)


def trimmed_mean_attack(X_clean, n_poison, trim_fraction, radius):
    r"""Poisons within ``radius`` of the clean median that move the coordinate-wise trimmed mean far.

    The reference attack of assignment 1, Part D, against :func:`trimmed_mean` of chapter "Poisoning the mean".
    The attacker adds :math:`m` = ``n_poison`` points to the :math:`n` clean points :math:`X`, each within distance
    :math:`r` = ``radius`` of the clean coordinate-wise median :math:`\tilde x`; the defender computes the trimmed
    mean :math:`T` with :math:`\beta` = ``trim_fraction`` of all :math:`N = n + m` points, which cuts
    :math:`k = \lfloor \beta N \rfloor` values at each end of every coordinate. The damage is
    :math:`\|T(X \cup P) - T(X)\|_2`.

    * **What one poison can do.** In each coordinate, :math:`T` is non-decreasing in every input, and moving one
      input by :math:`\Delta` moves it by at most :math:`|\Delta| / (N - 2k)` (the order statistics all move the
      same way and their changes add up to :math:`\Delta`). With :math:`c = T(X \cup \{\tilde x\}^m) - T(X)`, the
      small shift of :math:`m` poisons at the median itself, every poison set within the radius does at most
      :math:`\|c\| + m r / (N - 2k)` (:func:`trimmed_mean_shift_bound`).
    * **Where poisons count.** Let :math:`x_{(1)} \le \dots \le x_{(n)}` be the clean values of one coordinate.
      While all poisons sit in :math:`[x_{(k)}, x_{(n-k+1)}]` none of them is cut, and :math:`T` moves exactly
      linearly, by :math:`m / (N - 2k)` per unit the poisons move. Beyond :math:`x_{(n-k+m)}` (when
      :math:`m \le k`) every poison is cut and :math:`T` stops moving, though not back: the cut poisons have pushed
      the window of kept clean values by :math:`m` places. So far outliers are not harmless to the trimmed mean;
      they are merely outside the radius.

    The attack puts every poison at the one point :math:`\tilde x + s \odot u`: :math:`s_j` is the sign of
    :math:`c_j` and :math:`u_j = \min(\tau, t_j)`, with :math:`t_j` the distance from :math:`\tilde x_j` to the
    end of the linear window on side :math:`s_j` and :math:`\tau` such that :math:`\|u\| = r` (water filling: the
    radius is spent over all coordinates, none pushed past the point where its poisons start being cut). When the
    windows hold the whole radius (:math:`\sum_j t_j^2 \ge r^2`) the damage is at least :math:`m r / (N - 2k)`,
    within :math:`\|c\|` of the bound: the attack is optimal up to :math:`\|c\|`. Otherwise the rest of the radius
    goes, again by water filling, up to :math:`x_{(n-k+m)}` (or :math:`x_{(k-m+1)}` below), beyond which nothing
    counts. For clean :math:`N(\mu, I_d)` data and a radius of the clean points' typical distance
    :math:`\approx\sqrt d`, the damage is about :math:`\frac{\epsilon}{1 - 2\beta}\sqrt d`: in :math:`\ell_2` the
    trimmed mean loses :math:`\epsilon\sqrt d`, as the coordinate-wise median does, although every coordinate of
    every poison lies well inside the clean range.

    Returns ``n_poison`` copies of that point: shape ``(n_poison, d)``, or ``(n_poison,)`` for 1-D ``X_clean``.
    """
    X2, is_1d, m, beta, r, k, median, c, _ = _trimmed_mean_attack_setting(X_clean, n_poison, trim_fraction,
                                                                          radius)
    n, d = X2.shape
    if m == 0:
        return np.zeros((0,) if is_1d else (0, d))
    ordered = np.sort(X2, axis=0)
    up = c >= 0
    if k == 0:  # nothing is cut: T is the mean, linear everywhere
        window = np.full(d, np.inf)
    elif 2 * k <= n:
        window = np.where(up, ordered[n - k] - median, median - ordered[k - 1])
    else:  # so many poisons that some are cut wherever they are
        window = np.zeros(d)
    window = np.maximum(window, 0.0)
    if m <= k:
        cut = np.where(up, ordered[n - k + m - 1] - median, median - ordered[k - m])
        cut = np.maximum(cut, window)
    else:  # more poisons than cut values: some always count
        cut = np.full(d, np.inf)
    if np.linalg.norm(np.minimum(window, r)) >= r:
        u = _water_fill(np.zeros(d), window, r)
    else:
        u = _water_fill(window, cut, r)
    point = median + np.where(up, 1.0, -1.0) * u
    X_poison = np.tile(point, (m, 1))
    return X_poison[:, 0] if is_1d else X_poison


def trimmed_mean_shift_bound(X_clean, n_poison, trim_fraction, radius):
    r"""An upper bound on how far ``n_poison`` poisons within ``radius`` of the clean coordinate-wise median can
    move the trimmed mean: :math:`\|c\| + m r / (N - 2k)`, in the notation of :func:`trimmed_mean_attack` (the
    bound holds for any poisons in the ball, also different ones; with :math:`m \le k` it is loose once the radius
    reaches past the points beyond which poisons are cut)."""
    _, _, m, _, r, _, _, c, slope = _trimmed_mean_attack_setting(X_clean, n_poison, trim_fraction, radius)
    return float(np.linalg.norm(c) + slope * r)
