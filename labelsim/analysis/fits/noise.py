"""The noise fit: accuracy = a - b * noise_rate (least squares; b > 0 means accuracy falls),
with tests of whether a line describes the data at all (curvature, lack of fit).

Two noise levels give a slope (the difference between them) but no test of the line: R^2 is
NaN, ``linear_ok`` None and ``note`` says there are not enough levels to fit (MIN_LEVELS)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from labelsim.analysis.fits.common import (
    ALPHA,
    MIN_LEVELS,
    NAN_CI,
    NOT_ENOUGH_LEVELS,
    FitError,
    Interval,
    boot_values,
    fewest_repeats,
    finite_points,
    percentile_ci,
)

R2_MIN = 0.9  # without repeats to test against, a line below this R^2 is a poor fit


@dataclass(frozen=True)
class NoiseFit:
    """accuracy = intercept - slope * noise_rate, slope with a bootstrap interval."""

    intercept: float
    slope: float
    slope_ci: Interval
    r2: float  # of the level means (NaN with fewer than MIN_LEVELS levels)
    linear_ok: bool | None  # None: too few levels to judge the line
    n_points: int
    intercept_ci: Interval = NAN_CI
    curvature_p: float = math.nan  # F test of a quadratic term (NaN when untestable)
    lack_of_fit_p: float = math.nan  # level means vs the line, against repeat scatter
    levels: int = 0
    boot_failed: int = 0
    repeats: int = 0  # the fewest finished repeats at any noise level
    note: str = ""

    def predict(self, noise: float | np.ndarray) -> np.ndarray:
        """Accuracy at a noise rate (array ok)."""
        return self.intercept - self.slope * np.asarray(noise, dtype=float)


def fit_noise(
    noise: np.ndarray, accuracy: np.ndarray, n_boot: int = 200,
    rng: np.random.Generator | None = None,
) -> tuple[NoiseFit, np.ndarray]:
    """Line through replica-level points; returns the fit and (B, 2) [intercept, slope] samples."""
    x, y = finite_points(noise, accuracy)
    if len(np.unique(x)) < 2:
        raise FitError(f"{NOT_ENOUGH_LEVELS}: {len(np.unique(x))} noise level with finished "
                       "replicas; a noise slope needs 2")
    rng = rng or np.random.default_rng(0)
    intercept, slope = _line(x, y)
    b_int, b_slope = _line(x, boot_values(x, y, n_boot, rng))
    samples = np.column_stack([b_int, b_slope])
    ok = np.all(np.isfinite(samples), axis=1)
    levels = len(np.unique(x))
    p_curve, p_lof = curvature_p(x, y), lack_of_fit_p(x, y, intercept, slope)
    r2, linear_ok, note = math.nan, None, ""
    if levels < MIN_LEVELS:
        note = (f"{NOT_ENOUGH_LEVELS} a line: {levels} noise levels (judging a line needs "
                f"{MIN_LEVELS}); the slope is the difference between them")
    else:
        r2 = _r2_of_means(x, y, intercept, slope)
        linear_ok = _linear_ok(r2, p_curve, p_lof)
    return NoiseFit(
        intercept=intercept, slope=slope, slope_ci=percentile_ci(samples[ok, 1]), r2=r2,
        linear_ok=linear_ok, n_points=len(x), intercept_ci=percentile_ci(samples[ok, 0]),
        curvature_p=p_curve, lack_of_fit_p=p_lof, levels=levels, boot_failed=int((~ok).sum()),
        repeats=fewest_repeats(x), note=note,
    ), samples[ok]


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
