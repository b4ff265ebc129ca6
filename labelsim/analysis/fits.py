"""Curve fits of per-class accuracy against label noise and training volume.

* noise:  accuracy = a - b * noise_rate (least squares; b > 0 means accuracy falls)
* volume: accuracy = a - b * n ** (-c) ("power") or a - b * exp(-n / c) ("exp"), the better by
  AIC; n is the per-class training count and a the asymptote in both forms
* joint (noise x size cross grid): accuracy = a - b * n ** (-c) - noise * (s + t * (u - 1)),
  u = (n / n_ref) ** (-c); s is the noise slope at n_ref (full data), t its growth at smaller
  sizes ("interaction"); t = 0 is the "additive" form; the better by AIC is kept.

Intervals are percentile bootstraps that resample repeats within each grid level, widened for
few repeats (see ``boot_values``); without repeats there are no intervals (NaN). A bootstrap fit
that fails is dropped and counted, never raised. Every fit is a separable least-squares problem
(linear in all parameters but one shape parameter), solved by a 1-D search vectorised over the
bootstrap samples; ``scipy.optimize.curve_fit`` polishes each point estimate.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import optimize, stats

from labelsim.analysis.metrics import class_accuracy, overall_accuracy
from labelsim.analysis.runs import Replica, Run, RunDirError, load_run

ALPHA = 0.05  # two-sided: 95% intervals
R2_MIN = 0.9  # without repeats to test against, a line below this R^2 is a poor fit
FIXED_EXPONENT = 0.5  # power-law exponent used when only two sizes exist (c not identifiable)
MIN_BOOT = 10  # fewer successful bootstrap fits than this give NaN intervals

Interval = tuple[float, float]
NAN_CI: Interval = (math.nan, math.nan)


class FitError(ValueError):
    """Data that cannot be fitted (too few levels or points)."""


@dataclass(frozen=True)
class NoiseFit:
    """accuracy = intercept - slope * noise_rate, slope with a bootstrap interval."""

    intercept: float
    slope: float
    slope_ci: Interval
    r2: float  # of the level means
    linear_ok: bool
    n_points: int
    intercept_ci: Interval = NAN_CI
    curvature_p: float = math.nan  # F test of a quadratic term (NaN when untestable)
    lack_of_fit_p: float = math.nan  # level means vs the line, against repeat scatter
    levels: int = 0
    boot_failed: int = 0

    def predict(self, noise: float | np.ndarray) -> np.ndarray:
        """Accuracy at a noise rate (array ok)."""
        return self.intercept - self.slope * np.asarray(noise, dtype=float)


@dataclass(frozen=True)
class VolumeFit:
    """Saturating accuracy vs per-class training count n; ``a`` is the asymptote."""

    form: str  # "power": a - b * n**-c ; "exp": a - b * exp(-n / c)
    a: float
    b: float
    c: float
    a_ci: Interval
    b_ci: Interval
    c_ci: Interval
    aic: float
    alt_form: str
    alt_aic: float
    size_unit: str = "per_class"  # n is a per-class training count
    n_points: int = 0
    n_range: Interval = NAN_CI  # smallest and largest per-class count in the data
    boot_failed: int = 0
    note: str = ""

    def predict(self, n: float | np.ndarray) -> np.ndarray:
        """Accuracy at per-class count n (array ok)."""
        return volume_curve(self.form, n, self.a, self.b, self.c)

    def size_for(self, accuracy: float | np.ndarray) -> np.ndarray:
        """Per-class count at which the curve reaches ``accuracy`` (inf if never)."""
        return volume_size_for(self.form, accuracy, self.a, self.b, self.c)

    @property
    def full_accuracy(self) -> float:
        """Fitted accuracy at the largest per-class count of the data (full data)."""
        return float(self.predict(self.n_range[1]))


@dataclass(frozen=True)
class JointFit:
    """accuracy = a - b * n**-c - noise * (s + t * ((n / n_ref)**-c - 1)), n per class."""

    form: str  # "additive" (t = 0) or "interaction"
    a: float
    b: float
    c: float
    s: float  # accuracy lost per unit noise rate at n_ref (full data)
    t: float  # growth of that loss as n falls below n_ref
    a_ci: Interval
    b_ci: Interval
    c_ci: Interval
    s_ci: Interval
    t_ci: Interval
    n_ref: float
    aic: float
    alt_form: str
    alt_aic: float
    n_points: int
    size_unit: str = "per_class"
    boot_failed: int = 0

    def predict(self, n_per_class: float | np.ndarray, noise: float | np.ndarray) -> np.ndarray:
        """Accuracy at a per-class count and noise rate (arrays broadcast)."""
        params = np.array([self.a, self.b, self.c, self.s, self.t])
        return joint_curve(params, n_per_class, noise, self.n_ref)

    def noise_slope_at(self, n_per_class: float | np.ndarray) -> np.ndarray:
        """Accuracy lost per unit noise rate at a per-class count."""
        u = (np.asarray(n_per_class, float) / self.n_ref) ** (-self.c)
        return self.s + self.t * (u - 1.0)


@dataclass(frozen=True)
class RunFits:
    """Every fit of one model / noise model of a run, per class and overall."""

    classes: tuple[str, ...]
    noise: dict[str, NoiseFit]
    volume: dict[str, VolumeFit]
    joint: dict[str, JointFit] | None
    overall_noise: NoiseFit | None
    overall_volume: VolumeFit | None
    samples: dict = field(repr=False)
    overall_joint: JointFit | None = None
    model: str = ""
    noise_model: str = ""
    excluded: tuple[int, ...] = ()  # replicas left out (diverged or unfinished)


# ---------------------------------------------------------------- bootstrap helpers


def boot_index(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, m) indices that resample points with replacement within each group."""
    groups = np.asarray(groups)
    idx = np.empty((n_boot, len(groups)), dtype=int)
    for g in np.unique(groups, axis=0):
        members = np.flatnonzero(np.all(groups.reshape(len(groups), -1) == g, axis=1))
        idx[:, members] = rng.choice(members, size=(n_boot, len(members)))
    return idx


def percentile_ci(samples: np.ndarray, alpha: float = ALPHA) -> Interval:
    """Percentile interval of bootstrap samples (NaN dropped; inf allowed; NaN if too few)."""
    s = np.asarray(samples, dtype=float)
    s = s[~np.isnan(s)]
    if len(s) < MIN_BOOT:
        return NAN_CI
    lo = np.quantile(s, alpha / 2, method="lower")
    hi = np.quantile(s, 1 - alpha / 2, method="higher")
    return float(lo), float(hi)


def _aic(rss: float, m: int, k: int) -> float:
    """Gaussian AIC with k curve parameters plus the error variance."""
    return m * math.log(max(rss, 1e-300) / m) + 2 * (k + 1)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


# ---------------------------------------------------------------- noise


def fit_noise(
    noise: np.ndarray, accuracy: np.ndarray, n_boot: int = 200,
    rng: np.random.Generator | None = None,
) -> tuple[NoiseFit, np.ndarray]:
    """Line through replica-level points; returns the fit and (B, 2) [intercept, slope] samples."""
    x, y = _finite(noise, accuracy)
    if len(np.unique(x)) < 2:
        raise FitError("a noise fit needs at least two noise levels with finished replicas")
    rng = rng or np.random.default_rng(0)
    intercept, slope = _line(x, y)
    b_int, b_slope = _line(x, boot_values(x, y, n_boot, rng))
    samples = np.column_stack([b_int, b_slope])
    ok = np.all(np.isfinite(samples), axis=1)
    slope_ci = percentile_ci(samples[ok, 1])
    r2 = _r2_of_means(x, y, intercept, slope)
    p_curve, p_lof = curvature_p(x, y), lack_of_fit_p(x, y, intercept, slope)
    return NoiseFit(
        intercept=intercept, slope=slope, slope_ci=slope_ci, r2=r2,
        linear_ok=_linear_ok(r2, p_curve, p_lof), n_points=len(x),
        intercept_ci=percentile_ci(samples[ok, 0]), curvature_p=p_curve, lack_of_fit_p=p_lof,
        levels=len(np.unique(x)), boot_failed=int((~ok).sum()),
    ), samples[ok]


def _finite(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    x = np.asarray(x, dtype=float)
    arrays = [np.asarray(y, dtype=float) for y in ys]
    keep = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    for arr in arrays:
        keep &= np.isfinite(arr)
    return (x[keep], *(arr[keep] for arr in arrays))


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares intercept and (positive = falling) slope along the last axis."""
    xm = x.mean(axis=-1, keepdims=True)
    ym = y.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = ((x - xm) * (y - ym)).sum(axis=-1) / ((x - xm) ** 2).sum(axis=-1)
    intercept = ym[..., 0] - beta * xm[..., 0]
    return intercept if intercept.ndim else float(intercept), -beta if beta.ndim else -float(beta)


def _r2_of_means(x: np.ndarray, y: np.ndarray, intercept: float, slope: float) -> float:
    levels = np.unique(x)
    means = np.array([y[x == v].mean() for v in levels])
    ss_res = float(((means - (intercept - slope * levels)) ** 2).sum())
    ss_tot = float(((means - means.mean()) ** 2).sum())
    if ss_tot <= 1e-15:
        return 1.0 if ss_res <= 1e-15 else 0.0
    return 1.0 - ss_res / ss_tot


def curvature_p(x: np.ndarray, y: np.ndarray) -> float:
    """p-value of adding a quadratic term to the line (extra-sum-of-squares F test)."""
    m = len(x)
    if len(np.unique(x)) < 3 or m <= 3:
        return math.nan
    rss_lin = float(np.sum((y - np.polyval(np.polyfit(x, y, 1), x)) ** 2))
    rss_quad = float(np.sum((y - np.polyval(np.polyfit(x, y, 2), x)) ** 2))
    if rss_quad <= 1e-15 * max(rss_lin, 1e-300):
        return 0.0 if rss_lin > 1e-15 else 1.0
    f = (rss_lin - rss_quad) / (rss_quad / (m - 3))
    return float(stats.f.sf(f, 1, m - 3))


def lack_of_fit_p(x: np.ndarray, y: np.ndarray, intercept: float, slope: float) -> float:
    """p-value of the level means' distance from the line against the scatter of repeats
    (pure-error lack-of-fit F test; NaN without repeats or with only two levels)."""
    levels = np.unique(x)
    m, n_levels = len(x), len(levels)
    if n_levels < 3 or m <= n_levels:
        return math.nan
    means = np.array([y[x == v].mean() for v in levels])
    sizes = np.array([(x == v).sum() for v in levels])
    ss_lof = float((sizes * (means - (intercept - slope * levels)) ** 2).sum())
    ss_pe = float(sum(((y[x == v] - mu) ** 2).sum() for v, mu in zip(levels, means)))
    if ss_pe <= 1e-15:
        return 0.0 if ss_lof > 1e-12 else 1.0
    f = (ss_lof / (n_levels - 2)) / (ss_pe / (m - n_levels))
    return float(stats.f.sf(f, n_levels - 2, m - n_levels))


def _linear_ok(r2: float, p_curve: float, p_lof: float) -> bool:
    """Poor: significant curvature or lack of fit; untestable (no repeats): R^2 below R2_MIN."""
    tests = [p for p in (p_curve, p_lof) if np.isfinite(p)]
    if not tests:
        return r2 >= R2_MIN
    return min(tests) >= ALPHA


# ---------------------------------------------------------------- separable least squares
#
# Every curve here is linear in all parameters but one shape parameter (the exponent c, or
# the scale of the exponential). For a given shape the others have a closed form, so a fit is
# a 1-D search over the shape: a log-spaced grid, then golden-section refinement, vectorised
# over all bootstrap samples at once. scipy's curve_fit then polishes the point estimate.

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _separable(evaluate: Callable, lo: float, hi: float, grid: int = 96, iters: int = 30):
    """Minimise RSS over the shape parameter in [lo, hi] for each row of the data.

    ``evaluate(c)`` returns (linear params (..., P), rss (...)); c of shape (K, 1) is paired
    with every data row (grid stage), c of shape (B,) row by row (refinement).
    Returns (params (B, P + 1) with the shape last, rss (B,)).
    """
    cs = np.geomspace(lo, hi, grid)
    _, rss = evaluate(cs[:, None])
    rss = np.where(np.isfinite(rss), rss, np.inf)
    best = np.argmin(rss, axis=0)
    left = np.log(cs[np.maximum(best - 1, 0)])
    right = np.log(cs[np.minimum(best + 1, grid - 1)])
    for _ in range(iters):
        c1 = right - _GOLDEN * (right - left)
        c2 = left + _GOLDEN * (right - left)
        r1 = np.nan_to_num(evaluate(np.exp(c1))[1], nan=np.inf)
        r2 = np.nan_to_num(evaluate(np.exp(c2))[1], nan=np.inf)
        right = np.where(r1 < r2, c2, right)
        left = np.where(r1 < r2, left, c1)
    c = np.exp((left + right) / 2)
    grid_rss = rss[best, np.arange(rss.shape[1])]
    params, final_rss = evaluate(c)
    worse = ~(final_rss <= grid_rss)
    c = np.where(worse, cs[best], c)
    params, final_rss = evaluate(c)
    return np.column_stack([params, c]), final_rss


def _solve_bounded_line(
    g: np.ndarray, y: np.ndarray, d_max: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of y = a - d * g with a <= 1 and 0 <= d <= d_max, over leading axes.

    The optimum of a convex problem in a box is the unconstrained one if feasible, else on an
    edge: each edge's optimum (clipped into the box) is a candidate; the best feasible wins."""
    g, y = np.broadcast_arrays(g, y)
    gm, ym = g.mean(axis=-1), y.mean(axis=-1)
    var = ((g - gm[..., None]) ** 2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_free = -((g - gm[..., None]) * (y - ym[..., None])).sum(axis=-1) / var
        d_top = np.clip(((1.0 - y) * g).sum(axis=-1) / (g**2).sum(axis=-1), 0.0, d_max)
    d_cap = np.full_like(ym, d_max if np.isfinite(d_max) else 0.0)
    candidates = [
        (ym + d_free * gm, d_free),  # interior
        (np.minimum(ym, 1.0), np.zeros_like(ym)),  # d = 0
        (np.minimum(ym + d_cap * gm, 1.0), d_cap),  # d = d_max
        (np.ones_like(ym), d_top),  # a = 1
    ]
    best_p, best_rss = None, None
    for a, d in candidates:
        feasible = (a <= 1.0 + 1e-12) & (d >= 0.0) & (d <= d_max)
        resid = y - (a[..., None] - d[..., None] * g)
        rss = np.where(feasible, (resid**2).sum(axis=-1), np.inf)
        p = np.stack([a, d], axis=-1)
        if best_rss is None:
            best_p, best_rss = p, rss
        else:
            take = rss < best_rss
            best_p = np.where(take[..., None], p, best_p)
            best_rss = np.where(take, rss, best_rss)
    return best_p, best_rss


def _solve_free(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbounded least squares y ~ design @ beta, broadcast over leading axes."""
    beta = np.linalg.pinv(design) @ y[..., None]
    rss = ((y - (design @ beta)[..., 0]) ** 2).sum(axis=-1)
    return beta[..., 0], rss


def _polish(model: Callable, x, y, p0, lower, upper) -> np.ndarray:
    """curve_fit from a good start within bounds; the start itself if that fails or is worse."""
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    start = np.clip(np.asarray(p0, float), lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = optimize.curve_fit(model, x, y, p0=start, bounds=(lo, hi), max_nfev=2000)
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
        return np.asarray(p0, float)
    rss = lambda q: float(np.sum((y - model(x, *q)) ** 2))  # noqa: E731
    return p if np.all(np.isfinite(p)) and rss(p) <= rss(p0) else np.asarray(p0, float)


def boot_values(
    groups: np.ndarray, y: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """(B, m) bootstrap data: repeats resampled within each group (grid level), deviations from
    the group mean scaled by sqrt(n / (n - 1)) * t / z.

    Plain resampling shrinks a group mean's variance by (n - 1) / n (half at two repeats), and
    a percentile interval uses normal quantiles where the few repeats call for Student's t with
    the pure-error degrees of freedom (points minus groups): the scaling undoes both, in the
    manner of an expanded percentile interval. Without repeats (no degrees of freedom) there is
    nothing to resample: the result has no rows."""
    groups = np.asarray(groups).reshape(len(y), -1)
    _, label = np.unique(groups, axis=0, return_inverse=True)
    label = label.ravel()
    size = np.bincount(label)
    dof = len(y) - len(size)
    if dof <= 0:
        return np.empty((0, len(y)))
    mean = np.bincount(label, weights=y) / size
    widen = stats.t.ppf(1 - ALPHA / 2, dof) / stats.norm.ppf(1 - ALPHA / 2)
    inflate = np.sqrt(np.where(size > 1, size / np.maximum(size - 1, 1), 1.0)) * widen
    idx = boot_index(label, n_boot, rng)
    return mean[label] + inflate[label] * (y[idx] - mean[label])


# ---------------------------------------------------------------- volume


def volume_curve(form: str, n: float | np.ndarray, a, b, c) -> np.ndarray:
    """Accuracy at per-class count n under a volume form ("power" or "exp"); params broadcast."""
    n = np.asarray(n, dtype=float)
    if form == "power":
        return a - b * n ** (-np.asarray(c, float))
    if form == "exp":
        return a - b * np.exp(-n / c)
    raise ValueError(f"unknown volume form {form!r}; use 'power' or 'exp'")


def volume_size_for(form: str, accuracy, a, b, c) -> np.ndarray:
    """Per-class count at which a volume curve reaches ``accuracy`` (inf if it never does)."""
    y, a, b, c = (np.asarray(v, dtype=float) for v in (accuracy, a, b, c))
    gap = a - y
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if form == "power":
            n = (b / gap) ** (1.0 / c)
        elif form == "exp":
            n = np.maximum(-c * np.log(gap / b), 0.0)
        else:
            raise ValueError(f"unknown volume form {form!r}; use 'power' or 'exp'")
    return np.where(gap <= 0, np.inf, n)


def _power_basis(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return x ** (-c)


def _exp_basis(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.exp(-x / k)


def _power_model(x, a, d, c):
    return a - d * x ** (-c)


def _exp_model(x, a, d, k):
    return a - d * np.exp(-x / k)


@dataclass(frozen=True)
class _Form:
    """A volume form in scaled units x = n / n_min: y = a - d * basis(x, shape)."""

    basis: Callable[[np.ndarray, np.ndarray], np.ndarray]
    model: Callable[..., np.ndarray]
    shape_range: tuple[float, float]
    d_max: float

    def to_public(self, p: np.ndarray, n_ref: float, name: str) -> np.ndarray:
        """Scaled (a, d, shape) rows -> public (a, b, c) rows in per-class counts."""
        p = np.atleast_2d(p)
        if name == "power":
            return np.column_stack([p[:, 0], p[:, 1] * n_ref ** p[:, 2], p[:, 2]])
        return np.column_stack([p[:, 0], p[:, 1], p[:, 2] * n_ref])


FORMS = {
    # d is the gap between the asymptote and the accuracy at the smallest size: at most 1
    "power": _Form(_power_basis, _power_model, (1e-3, 4.0), 1.0),
    # d = b is the accuracy lost at n = 0, so at most 1 (accuracy at zero data >= 0)
    "exp": _Form(_exp_basis, _exp_model, (1e-2, 1e3), 1.0),
}


def _fit_form(form: _Form, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled parameters (B, 3) and RSS (B,) of one form for each row of y (B, m)."""

    def evaluate(c):
        return _solve_bounded_line(form.basis(x, np.asarray(c)[..., None]), y, form.d_max)

    return _separable(evaluate, *form.shape_range)


def fit_volume(
    n_per_class: np.ndarray, accuracy: np.ndarray, n_boot: int = 200,
    rng: np.random.Generator | None = None, forms: tuple[str, ...] = ("power", "exp"),
) -> tuple[VolumeFit, np.ndarray]:
    """Fit each form, keep the best by AIC; returns the fit and (B, 3) [a, b, c] samples."""
    n, y = _finite(n_per_class, accuracy)
    levels = len(np.unique(n))
    if levels < 2:
        raise FitError("a volume fit needs at least two training sizes with finished replicas")
    rng = rng or np.random.default_rng(0)
    if levels == 2:
        return _fit_volume_fixed(n, y, n_boot, rng)
    n_ref = float(n.min())
    x = n / n_ref
    points = {name: _point_volume(FORMS[name], x, y) for name in forms}
    aics = {name: _aic(rss, len(y), 3) for name, (_, rss) in points.items()}
    ranked = sorted(aics, key=aics.get)
    best, alt = ranked[0], (ranked[1] if len(ranked) > 1 else "")
    form = FORMS[best]
    params, _ = _fit_form(form, x, boot_values(n, y, n_boot, rng))
    samples = form.to_public(params, n_ref, best)
    ok = np.all(np.isfinite(samples), axis=1)
    public = form.to_public(points[best][0], n_ref, best)[0]
    notes = ["three sizes: the curve passes near the level means; intervals are wide"
             if levels == 3 else "", _bound_note(public[0])]
    note = "; ".join(n for n in notes if n)
    fit = _volume_fit(best, public, samples[ok], aics[best], alt, aics.get(alt, math.nan), n,
                      int((~ok).sum()), note)
    return fit, samples[ok]


def _point_volume(form: _Form, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    p, _ = _fit_form(form, x, y[None, :])
    lo, hi = form.shape_range
    p = _polish(form.model, x, y, p[0], (0.0, 0.0, lo), (1.0, form.d_max, hi))
    return p, float(np.sum((y - form.model(x, *p)) ** 2))


def _bound_note(asymptote: float) -> str:
    """A warning when the asymptote sits at its bound (accuracy 1): the sizes do not pin it."""
    return "asymptote at its bound 1: not determined by these sizes" if asymptote > 0.999 else ""


def _volume_fit(form, p, samples, aic, alt, alt_aic, n, failed, note="") -> VolumeFit:
    cis = [percentile_ci(samples[:, k]) for k in range(3)]
    return VolumeFit(
        form=form, a=float(p[0]), b=float(p[1]), c=float(p[2]),
        a_ci=cis[0], b_ci=cis[1], c_ci=cis[2], aic=float(aic), alt_form=alt,
        alt_aic=float(alt_aic), n_points=len(n), n_range=(float(n.min()), float(n.max())),
        boot_failed=int(failed), note=note,
    )


def _fit_volume_fixed(n, y, n_boot, rng) -> tuple[VolumeFit, np.ndarray]:
    """Two sizes: power law with the exponent fixed, a and b by bounded least squares."""
    u = n ** (-FIXED_EXPONENT)
    (a, b), rss = _solve_bounded_line(u, y)
    boot, _ = _solve_bounded_line(u, boot_values(n, y, n_boot, rng))
    samples = np.column_stack([boot, np.full(len(boot), FIXED_EXPONENT)])
    ok = np.all(np.isfinite(samples), axis=1)
    note = "; ".join(n for n in (f"only two sizes: exponent fixed at {FIXED_EXPONENT}",
                                 _bound_note(a)) if n)
    fit = _volume_fit("power", (a, b, FIXED_EXPONENT), samples[ok], _aic(rss, len(y), 2), "",
                      math.nan, n, int((~ok).sum()), note)
    return fit, samples[ok]


# ---------------------------------------------------------------- joint


def joint_curve(params: np.ndarray, n: np.ndarray, noise: np.ndarray, n_ref: float) -> np.ndarray:
    """The joint form at per-class count n and noise rate; params = [a, b, c, s, t]."""
    a, b, c, s, t = params
    n = np.asarray(n, dtype=float)
    u = (n / n_ref) ** (-c)
    return a - b * n ** (-c) - np.asarray(noise, float) * (s + t * (u - 1.0))


def _joint_design(x: np.ndarray, r: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Columns [1, -u, -r, -r (u - 1)][:k] with u = x ** -c, broadcast over c."""
    u = x ** (-np.asarray(c)[..., None])
    ones = np.ones_like(u)
    cols = [ones, -u, -r * ones, -r * (u - 1.0)]
    return np.stack(cols[:k], axis=-1)


def _joint_model(xr: np.ndarray, a, d, s, t, c) -> np.ndarray:
    x, r = xr
    u = x ** (-c)
    return a - d * u - r * (s + t * (u - 1.0))


def _fit_joint_form(x, r, y, k: int) -> tuple[np.ndarray, np.ndarray]:
    def evaluate(c):
        return _solve_free(_joint_design(x, r, c, k), y)

    return _separable(evaluate, 1e-3, 4.0)


_JOINT_LOWER = (-1.0, -10.0, -10.0, -10.0, 1e-3)
_JOINT_UPPER = (2.0, 10.0, 10.0, 10.0, 4.0)


def _additive_model(xr: np.ndarray, a, d, s, c) -> np.ndarray:
    return _joint_model(xr, a, d, s, 0.0, c)


def _point_joint(x, r, y, k: int) -> tuple[np.ndarray, float]:
    """Scaled [a, d, s, t, c] of one joint form (k linear parameters) and its RSS."""
    p, _ = _fit_joint_form(x, r, y[None, :], k)
    xr = np.vstack([x, r])
    if k == 4:
        full = _polish(_joint_model, xr, y, p[0], _JOINT_LOWER, _JOINT_UPPER)
    else:
        keep = [0, 1, 2, 4]
        q = _polish(_additive_model, xr, y, p[0],
                    [_JOINT_LOWER[i] for i in keep], [_JOINT_UPPER[i] for i in keep])
        full = np.array([q[0], q[1], q[2], 0.0, q[3]])
    return full, float(np.sum((y - _joint_model(xr, *full)) ** 2))


def fit_joint(
    n_per_class: np.ndarray, noise: np.ndarray, accuracy: np.ndarray, n_boot: int = 200,
    rng: np.random.Generator | None = None,
) -> tuple[JointFit, np.ndarray]:
    """Additive and interaction joint forms, the better by AIC; (B, 5) [a, b, c, s, t] samples.

    The linear parameters are unbounded; c lies in [0.001, 4]."""
    nr, y = _finite(np.column_stack([n_per_class, noise]), accuracy)
    if len(np.unique(nr[:, 0])) < 2 or len(np.unique(nr[:, 1])) < 2:
        raise FitError("a joint fit needs at least two sizes and two noise levels")
    rng = rng or np.random.default_rng(0)
    n_ref = float(nr[:, 0].max())
    x, r = nr[:, 0] / n_ref, nr[:, 1]
    ks = {"additive": 3, "interaction": 4}
    points = {name: _point_joint(x, r, y, k) for name, k in ks.items()}
    aics = {name: _aic(rss, len(y), ks[name] + 1) for name, (_, rss) in points.items()}
    best = min(aics, key=aics.get)
    alt = next(name for name in aics if name != best)
    boot, _ = _fit_joint_form(x, r, boot_values(nr, y, n_boot, rng), ks[best])
    boot = np.column_stack([boot[:, :ks[best]], np.zeros((len(boot), 4 - ks[best])), boot[:, -1]])
    samples = _joint_public(boot, n_ref)
    ok = np.all(np.isfinite(samples), axis=1)
    public = _joint_public(points[best][0], n_ref)[0]
    cis = [percentile_ci(samples[ok, j]) for j in range(5)]
    fit = JointFit(best, *(float(v) for v in public), *cis, n_ref=n_ref, aic=aics[best],
                   alt_form=alt, alt_aic=aics[alt], n_points=len(y),
                   boot_failed=int((~ok).sum()))
    return fit, samples[ok]


def _joint_public(p: np.ndarray, n_ref: float) -> np.ndarray:
    """Scaled [a, d, s, t, c] rows -> public [a, b, c, s, t] rows (b = d * n_ref ** c)."""
    p = np.atleast_2d(np.asarray(p, dtype=float))
    return np.column_stack([p[:, 0], p[:, 1] * n_ref ** p[:, 4], p[:, 4], p[:, 2], p[:, 3]])



# ---------------------------------------------------------------- data of a run


def _axis_replicas(run: Run, model: str, noise_model: str, *, axis: str) -> list[Replica]:
    """Finished grid replicas of one model on the noise axis, size axis, or both ('joint')."""
    full = run.full_size(model)
    out = []
    for r in run.finished():
        if r.model != model or r.is_custom:
            continue
        if r.noise_rate != 0 and r.noise_model != noise_model:
            continue
        on_noise = r.train_size == full
        on_size = r.noise_rate == 0
        if axis == "joint" or (axis == "noise" and on_noise) or (axis == "volume" and on_size):
            out.append(r)
    return out


def _accuracies(run: Run, reps: list[Replica]) -> tuple[np.ndarray, np.ndarray]:
    counts = run.counts[[r.replica for r in reps]]
    return class_accuracy(counts), overall_accuracy(counts)


def pick_model(run: Run, model: str | None, noise_model: str | None) -> tuple[str, str]:
    """The model and noise model to fit: the given ones (checked) or the run's first."""
    models = run.models()
    model = model or models[0]
    if model not in models:
        raise RunDirError(f"model {model!r} is not in the run; choose one of: {', '.join(models)}")
    noisy = [r.noise_model for r in run.replicas if r.model == model and r.noise_rate > 0]
    choices = list(dict.fromkeys(noisy)) or run.noise_models()
    noise_model = noise_model or choices[0]
    if noise_model not in choices:
        raise RunDirError(
            f"noise model {noise_model!r} is not in the run; choose one of: {', '.join(choices)}")
    return model, noise_model


def fit_run(
    run_dir: str | Path | Run, model: str | None = None, noise_model: str | None = None,
    n_boot: int = 200, seed: int = 0,
) -> RunFits:
    """Noise, volume and (with a cross grid) joint fits of every class and overall."""
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    model, noise_model = pick_model(run, model, noise_model)
    samples: dict = {"noise": {}, "volume": {}, "joint": {}}
    noise, overall_noise = _fit_noise_axis(run, model, noise_model, n_boot, seed, samples)
    volume, overall_volume = _fit_volume_axis(run, model, n_boot, seed, samples)
    joint, overall_joint = _fit_joint_axis(run, model, noise_model, n_boot, seed, samples)
    excluded = tuple(r.replica for r in run.replicas if not r.finished)
    return RunFits(run.classes, noise, volume, joint, overall_noise, overall_volume, samples,
                   overall_joint, model, noise_model, excluded)


def _fit_noise_axis(run, model, noise_model, n_boot, seed, samples):
    reps = _axis_replicas(run, model, noise_model, axis="noise")
    x = np.array([r.noise_rate for r in reps])
    if len(np.unique(x)) < 2:
        return {}, None
    acc, overall = _accuracies(run, reps)
    fits = {}
    for k, cls in enumerate(run.classes):
        fit = _try(fit_noise, x, acc[:, k], n_boot, _rng(seed, 1, k))
        if fit is not None:
            fits[cls], samples["noise"][cls] = fit
    fit = _try(fit_noise, x, overall, n_boot, _rng(seed, 1, 10**6))
    if fit is None:
        return fits, None
    samples["overall_noise"] = fit[1]
    return fits, fit[0]


def _fit_volume_axis(run, model, n_boot, seed, samples):
    reps = _axis_replicas(run, model, "", axis="volume")
    if len({r.train_size for r in reps}) < 2:
        return {}, None
    acc, overall = _accuracies(run, reps)
    n = np.array([run.per_class_counts(r) for r in reps])
    fits = {}
    for k, cls in enumerate(run.classes):
        fit = _try(fit_volume, n[:, k], acc[:, k], n_boot, _rng(seed, 2, k))
        if fit is not None:
            fits[cls], samples["volume"][cls] = fit
    mean_n = np.array([r.train_size / run.num_classes for r in reps])
    fit = _try(fit_volume, mean_n, overall, n_boot, _rng(seed, 2, 10**6))
    if fit is None:
        return fits, None
    samples["overall_volume"] = fit[1]
    return fits, fit[0]


def _fit_joint_axis(run, model, noise_model, n_boot, seed, samples):
    reps = _axis_replicas(run, model, noise_model, axis="joint")
    if not any(r.experiment == "cross" for r in reps):
        return None, None
    acc, overall = _accuracies(run, reps)
    n = np.array([run.per_class_counts(r) for r in reps])
    noise = np.array([r.noise_rate for r in reps])
    fits = {}
    for k, cls in enumerate(run.classes):
        fit = _try(fit_joint, n[:, k], noise, acc[:, k], n_boot, _rng(seed, 3, k))
        if fit is not None:
            fits[cls], samples["joint"][cls] = fit
    mean_n = np.array([r.train_size / run.num_classes for r in reps])
    fit = _try(fit_joint, mean_n, noise, overall, n_boot, _rng(seed, 3, 10**6))
    if fit is not None:
        samples["overall_joint"] = fit[1]
    return fits, fit[0] if fit is not None else None


def _try(fitter: Callable, *args):
    try:
        return fitter(*args)
    except FitError:
        return None


def fits_to_json(fits: RunFits) -> dict:
    """A JSON-ready dict of the fits (no bootstrap samples; NaN and inf become null)."""
    from dataclasses import asdict

    out = {
        "model": fits.model, "noise_model": fits.noise_model, "classes": list(fits.classes),
        "excluded_replicas": list(fits.excluded),
        "noise": {k: asdict(v) for k, v in fits.noise.items()},
        "volume": {k: asdict(v) for k, v in fits.volume.items()},
        "joint": {k: asdict(v) for k, v in (fits.joint or {}).items()} if fits.joint is not None
        else None,
        "overall_noise": asdict(fits.overall_noise) if fits.overall_noise else None,
        "overall_volume": asdict(fits.overall_volume) if fits.overall_volume else None,
        "overall_joint": asdict(fits.overall_joint) if fits.overall_joint else None,
        "bootstrap_samples_kept": _sample_counts(fits.samples),
    }
    return json_ready(out)


def _sample_counts(samples: dict) -> dict:
    out: dict = {}
    for key, value in samples.items():
        if isinstance(value, dict):
            out[key] = {k: int(len(v)) for k, v in value.items()}
        else:
            out[key] = int(len(value))
    return out


def json_ready(value):
    """Recursively turn tuples, numpy scalars and non-finite floats into JSON-safe values."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
