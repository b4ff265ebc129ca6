"""Separable least squares behind every fit.

Every curve here is linear in all parameters but one shape parameter (the exponent c, or the
scale of the exponential). For a given shape the others have a closed form, so a fit is a 1-D
search over the shape: a log-spaced grid, then golden-section refinement, vectorised over all
bootstrap samples at once. ``scipy.optimize.curve_fit`` then polishes the point estimate.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import optimize

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def separable(
    evaluate: Callable, lo: float, hi: float, grid: int = 96, iters: int = 30
) -> tuple[np.ndarray, np.ndarray]:
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


def solve_bounded_line(
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


def solve_free(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbounded least squares y ~ design @ beta, broadcast over leading axes."""
    beta = np.linalg.pinv(design) @ y[..., None]
    rss = ((y - (design @ beta)[..., 0]) ** 2).sum(axis=-1)
    return beta[..., 0], rss


def polish(
    model: Callable, x: np.ndarray, y: np.ndarray, p0: np.ndarray,
    lower: Sequence[float], upper: Sequence[float],
) -> np.ndarray:
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
