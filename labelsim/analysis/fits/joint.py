"""The joint fit over a noise x size cross grid:
accuracy = a - b * n ** (-c) - noise * (s + t * (u - 1)), u = (n / n_ref) ** (-c).

s is the noise slope at n_ref (full data), t its growth at smaller sizes ("interaction");
t = 0 is the "additive" form; the better by AIC is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelsim.analysis.fits.common import (
    MIN_LEVELS,
    NOT_ENOUGH_LEVELS,
    FitError,
    Interval,
    boot_values,
    fewest_repeats,
    finite_points,
    gaussian_aic,
    percentile_ci,
)
from labelsim.analysis.fits.solvers import polish, separable, solve_free


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
    levels: int = 0  # distinct (size, noise rate) grid points
    repeats: int = 0  # the fewest finished repeats at any of them

    def predict(self, n_per_class: float | np.ndarray, noise: float | np.ndarray) -> np.ndarray:
        """Accuracy at a per-class count and noise rate (arrays broadcast)."""
        params = np.array([self.a, self.b, self.c, self.s, self.t])
        return joint_curve(params, n_per_class, noise, self.n_ref)

    def noise_slope_at(self, n_per_class: float | np.ndarray) -> np.ndarray:
        """Accuracy lost per unit noise rate at a per-class count."""
        u = (np.asarray(n_per_class, float) / self.n_ref) ** (-self.c)
        return self.s + self.t * (u - 1.0)


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


def _joint_model(xr: np.ndarray, a: float, d: float, s: float, t: float, c: float) -> np.ndarray:
    x, r = xr
    u = x ** (-c)
    return a - d * u - r * (s + t * (u - 1.0))


def _fit_joint_form(
    x: np.ndarray, r: np.ndarray, y: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    def evaluate(c):
        return solve_free(_joint_design(x, r, c, k), y)

    return separable(evaluate, 1e-3, 4.0)


_JOINT_LOWER = (-1.0, -10.0, -10.0, -10.0, 1e-3)
_JOINT_UPPER = (2.0, 10.0, 10.0, 10.0, 4.0)


def _additive_model(xr: np.ndarray, a: float, d: float, s: float, c: float) -> np.ndarray:
    return _joint_model(xr, a, d, s, 0.0, c)


def _point_joint(x: np.ndarray, r: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Scaled [a, d, s, t, c] of one joint form (k linear parameters) and its RSS."""
    p, _ = _fit_joint_form(x, r, y[None, :], k)
    xr = np.vstack([x, r])
    if k == 4:
        full = polish(_joint_model, xr, y, p[0], _JOINT_LOWER, _JOINT_UPPER)
    else:
        keep = [0, 1, 2, 4]
        q = polish(_additive_model, xr, y, p[0],
                   [_JOINT_LOWER[i] for i in keep], [_JOINT_UPPER[i] for i in keep])
        full = np.array([q[0], q[1], q[2], 0.0, q[3]])
    return full, float(np.sum((y - _joint_model(xr, *full)) ** 2))


def fit_joint(
    n_per_class: np.ndarray, noise: np.ndarray, accuracy: np.ndarray, n_boot: int = 200,
    rng: np.random.Generator | None = None,
) -> tuple[JointFit, np.ndarray]:
    """Additive and interaction joint forms, the better by AIC; (B, 5) [a, b, c, s, t] samples.

    The linear parameters are unbounded; c lies in [0.001, 4]."""
    nr, y = finite_points(np.column_stack([n_per_class, noise]), accuracy)
    sizes, rates = len(np.unique(nr[:, 0])), len(np.unique(nr[:, 1]))
    if sizes < MIN_LEVELS or rates < 2:
        raise FitError(f"{NOT_ENOUGH_LEVELS}: {sizes} size(s) and {rates} noise level(s); a "
                       f"joint fit needs {MIN_LEVELS} sizes and 2 noise levels")
    rng = rng or np.random.default_rng(0)
    n_ref = float(nr[:, 0].max())
    x, r = nr[:, 0] / n_ref, nr[:, 1]
    ks = {"additive": 3, "interaction": 4}
    points = {name: _point_joint(x, r, y, k) for name, k in ks.items()}
    aics = {name: gaussian_aic(rss, len(y), ks[name] + 1) for name, (_, rss) in points.items()}
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
                   boot_failed=int((~ok).sum()), levels=len(np.unique(nr, axis=0)),
                   repeats=fewest_repeats(nr))
    return fit, samples[ok]


def _joint_public(p: np.ndarray, n_ref: float) -> np.ndarray:
    """Scaled [a, d, s, t, c] rows -> public [a, b, c, s, t] rows (b = d * n_ref ** c)."""
    p = np.atleast_2d(np.asarray(p, dtype=float))
    return np.column_stack([p[:, 0], p[:, 1] * n_ref ** p[:, 4], p[:, 4], p[:, 2], p[:, 3]])
