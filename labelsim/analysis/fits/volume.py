"""The volume fit: accuracy = a - b * n ** (-c) ("power") or a - b * exp(-n / c) ("exp"), the
better by AIC; n is the per-class training count and a the asymptote in both forms. A curve
with a shape parameter needs at least MIN_LEVELS distinct sizes; fewer raise FitError."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from labelsim.analysis.fits.common import (
    MIN_LEVELS,
    NAN_CI,
    NOT_ENOUGH_LEVELS,
    FitError,
    Interval,
    boot_values,
    fewest_repeats,
    finite_points,
    gaussian_aic,
    percentile_ci,
)
from labelsim.analysis.fits.solvers import polish, separable, solve_bounded_line


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
    levels: int = 0  # distinct training sizes
    repeats: int = 0  # the fewest finished repeats at any size

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


def _power_model(x: np.ndarray, a: float, d: float, c: float) -> np.ndarray:
    return a - d * x ** (-c)


def _exp_model(x: np.ndarray, a: float, d: float, k: float) -> np.ndarray:
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
        return solve_bounded_line(form.basis(x, np.asarray(c)[..., None]), y, form.d_max)

    return separable(evaluate, *form.shape_range)


def fit_volume(
    n_per_class: np.ndarray, accuracy: np.ndarray, n_boot: int = 200,
    rng: np.random.Generator | None = None, forms: tuple[str, ...] = ("power", "exp"),
) -> tuple[VolumeFit, np.ndarray]:
    """Fit each form, keep the best by AIC; returns the fit and (B, 3) [a, b, c] samples."""
    n, y = finite_points(n_per_class, accuracy)
    levels = len(np.unique(n))
    if levels < MIN_LEVELS:
        raise FitError(f"{NOT_ENOUGH_LEVELS}: {levels} training size(s) with finished replicas; "
                       f"a volume curve needs {MIN_LEVELS}")
    rng = rng or np.random.default_rng(0)
    n_ref = float(n.min())
    x = n / n_ref
    points = {name: _point_volume(FORMS[name], x, y) for name in forms}
    aics = {name: gaussian_aic(rss, len(y), 3) for name, (_, rss) in points.items()}
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
    p = polish(form.model, x, y, p[0], (0.0, 0.0, lo), (1.0, form.d_max, hi))
    return p, float(np.sum((y - form.model(x, *p)) ** 2))


def _bound_note(asymptote: float) -> str:
    """A warning when the asymptote sits at its bound (accuracy 1): the sizes do not pin it."""
    return "asymptote at its bound 1: not determined by these sizes" if asymptote > 0.999 else ""


def _volume_fit(
    form: str, p: Sequence[float], samples: np.ndarray, aic: float, alt: str, alt_aic: float,
    n: np.ndarray, failed: int, note: str = "",
) -> VolumeFit:
    cis = [percentile_ci(samples[:, k]) for k in range(3)]
    return VolumeFit(
        form=form, a=float(p[0]), b=float(p[1]), c=float(p[2]),
        a_ci=cis[0], b_ci=cis[1], c_ci=cis[2], aic=float(aic), alt_form=alt,
        alt_aic=float(alt_aic), n_points=len(n), n_range=(float(n.min()), float(n.max())),
        boot_failed=int(failed), note=note, levels=len(np.unique(n)), repeats=fewest_repeats(n),
    )

