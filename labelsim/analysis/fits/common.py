"""What every fit shares: its error, the interval level, AIC, and bootstrap intervals.

Intervals are percentile bootstraps that resample repeats within each grid level, widened for
few repeats (see ``boot_values``); without repeats there are no intervals (NaN). A bootstrap fit
that fails is dropped and counted, never raised.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05  # two-sided: 95% intervals
MIN_BOOT = 10  # fewer successful bootstrap fits than this give NaN intervals
MIN_LEVELS = 3  # distinct levels a curve's shape needs (two only give a straight difference)
NOT_ENOUGH_LEVELS = "not enough levels to fit"

Interval = tuple[float, float]
NAN_CI: Interval = (math.nan, math.nan)


class FitError(ValueError):
    """Data that cannot be fitted (too few levels or points)."""


def finite_points(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """x and each y restricted to the points where all of them are finite."""
    x = np.asarray(x, dtype=float)
    arrays = [np.asarray(y, dtype=float) for y in ys]
    keep = np.isfinite(x).all(axis=tuple(range(1, x.ndim)))  # a point's every coordinate
    for arr in arrays:
        keep &= np.isfinite(arr)
    return (x[keep], *(arr[keep] for arr in arrays))


def fewest_repeats(groups: np.ndarray) -> int:
    """The fewest points at any level (a level: a distinct row of ``groups``); 0 if empty."""
    groups = np.asarray(groups)
    if not len(groups):
        return 0
    _, sizes = np.unique(groups.reshape(len(groups), -1), axis=0, return_counts=True)
    return int(sizes.min())


def gaussian_aic(rss: float, m: int, k: int) -> float:
    """Gaussian AIC with k curve parameters plus the error variance."""
    return m * math.log(max(rss, 1e-300) / m) + 2 * (k + 1)


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
