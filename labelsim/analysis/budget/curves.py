"""Per-class curves: a class's predicted accuracy against its label count n and noise rate
eps, from power-law parameters or from a run's fits (the joint fit if any, else the volume
fit minus the noise slope times eps), with bootstrap draws for intervals."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from labelsim.analysis.budget.errors import BudgetError

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ClassCurve:
    """One class's predicted accuracy against its label count n and noise rate eps.

    ``predict(n, eps)`` takes equal-length arrays; ``draws(n, eps)`` (optional) returns
    (samples, len(n)) bootstrap predictions. ``n_range`` is the measured per-class count
    range and ``noise_max`` the largest measured noise rate. ``predict`` must not rise
    with eps.
    """

    name: str
    predict: Predictor
    n_range: tuple[float, float]
    noise_max: float = 1.0
    draws: Predictor | None = None

    def accuracy(self, n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Predicted accuracy, clipped to [0, 1]."""
        n = np.asarray(n, dtype=float)
        eps = np.asarray(eps, dtype=float)
        value = np.asarray(self.predict(n, eps), dtype=float).reshape(n.shape)
        return np.clip(value, 0.0, 1.0)

    def samples(self, n: np.ndarray, eps: np.ndarray) -> np.ndarray | None:
        """Bootstrap predictions (samples, len(n)), clipped to [0, 1]; None without samples."""
        if self.draws is None:
            return None
        n = np.atleast_1d(np.asarray(n, dtype=float))
        eps = np.atleast_1d(np.asarray(eps, dtype=float))
        return np.clip(np.asarray(self.draws(n, eps), dtype=float).reshape(-1, n.size), 0.0, 1.0)


def power_law_curve(
    name: str,
    a: float,
    b: float,
    c: float,
    slope: float,
    n_range: tuple[float, float],
    *,
    noise_max: float = 1.0,
    volume_samples: np.ndarray | None = None,
    slope_samples: np.ndarray | None = None,
) -> ClassCurve:
    """A curve acc = a - b * n^(-c) - slope * eps, with optional bootstrap samples.

    ``volume_samples`` is (B, 3) of (a, b, c); ``slope_samples`` is (B,).
    """
    slope = max(float(slope), 0.0)

    def predict(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return a - b * np.power(n, -c) - slope * eps

    draws = _power_law_draws(a, b, c, slope, volume_samples, slope_samples)
    return ClassCurve(name, predict, _check_range(name, n_range), float(noise_max), draws)


def _power_law_draws(
    a: float,
    b: float,
    c: float,
    slope: float,
    volume_samples: np.ndarray | None,
    slope_samples: np.ndarray | None,
) -> Predictor | None:
    if volume_samples is None and slope_samples is None:
        return None
    vol = np.array([[a, b, c]]) if volume_samples is None else np.asarray(volume_samples, float)
    slo = np.array([slope]) if slope_samples is None else np.asarray(slope_samples, float)
    size = min((n for n in (len(vol), len(slo)) if n > 1), default=1)
    vol = np.broadcast_to(vol[:size], (size, 3))  # a single row broadcasts to every sample
    slo = np.maximum(np.broadcast_to(slo[:size], (size,)), 0.0)

    def draws(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        power = np.power(n[None, :], -vol[:, 2:3])
        return vol[:, 0:1] - vol[:, 1:2] * power - slo[:, None] * eps[None, :]

    return draws


def _check_range(name: str, n_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(n_range[0]), float(n_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise BudgetError(f"class {name}: measured count range {n_range} is not 0 < low <= high")
    return lo, hi


def curves_from_fits(
    fits: Any,
    n_range: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
    noise_max: float = 1.0,
    *,
    max_samples: int = 200,
) -> tuple[ClassCurve, ...]:
    """One ClassCurve per class of a RunFits: its joint fit if any, else volume fit - slope * eps.

    ``n_range`` defaults to each volume fit's measured range.
    """
    missing = [c for c in fits.classes if c not in fits.volume or c not in fits.noise]
    if missing:
        raise BudgetError(
            f"class(es) {', '.join(missing)} lack a noise or volume fit; the budget needs both "
            "for every class: run a grid with at least two noise levels and two sizes"
        )
    curves = []
    for name in fits.classes:
        rng = n_range[name] if isinstance(n_range, Mapping) else n_range
        rng = rng if rng is not None else tuple(fits.volume[name].n_range)
        curves.append(_curve_from_fit(fits, name, rng, noise_max, max_samples))
    return tuple(curves)


def _curve_from_fit(
    fits: Any, name: str, n_range: tuple[float, float], noise_max: float, max_samples: int
) -> ClassCurve:
    samples = getattr(fits, "samples", None) or {}
    volume, slope = fits.volume[name], max(float(fits.noise[name].slope), 0.0)
    separable = _separable(volume, slope)
    draws = _separable_draws(
        volume,
        slope,
        _thin(samples.get("volume", {}).get(name), max_samples),
        _thin(samples.get("noise", {}).get(name), max_samples),
    )
    joint = (fits.joint or {}).get(name)
    predict = separable
    if joint is not None:
        predict = _monotone_in_noise(joint.predict)
        joint_samples = _thin(samples.get("joint", {}).get(name), max_samples)
        if joint_samples is not None and joint_samples.ndim == 2 and joint_samples.shape[1] == 5:
            draws = _joint_draws(joint, joint_samples)
        elif draws is not None:
            draws = _recentred(draws, separable, predict)
    n_range = _check_range(name, n_range)
    if not np.all(np.isfinite(predict(np.array(n_range), np.zeros(2)))):
        raise BudgetError(f"class {name}'s fit predicts no finite accuracy; check the run's fits")
    return ClassCurve(name, predict, n_range, float(noise_max), draws)


def _separable(volume: Any, slope: float) -> Predictor:
    def predict(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return np.asarray(volume.predict(n), dtype=float) - slope * eps

    return predict


def _monotone_in_noise(function: Callable[[np.ndarray, np.ndarray], Any]) -> Predictor:
    """A predictor linear in noise (as the joint fit is) with its noise slope floored at 0."""

    def predict(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        clean = np.asarray(function(n, np.zeros_like(n)), dtype=float)
        slope = np.maximum(clean - np.asarray(function(n, np.ones_like(n)), dtype=float), 0.0)
        return clean - slope * eps

    return predict


def _separable_draws(
    volume: Any, slope: float, volume_samples: np.ndarray | None, noise_samples: np.ndarray | None
) -> Predictor | None:
    """Bootstrap predictor from (a, b, c) volume samples and (intercept, slope) noise samples."""
    if volume_samples is None and noise_samples is None:
        return None
    volumes = [volume] if volume_samples is None else [
        dataclasses.replace(volume, a=float(a), b=float(b), c=float(c)) for a, b, c in volume_samples
    ]
    slopes = [slope] if noise_samples is None else list(np.maximum(noise_samples[:, 1], 0.0))
    size = min((n for n in (len(volumes), len(slopes)) if n > 1), default=1)

    def draws(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        rows = [
            np.asarray(volumes[min(i, len(volumes) - 1)].predict(n), dtype=float)
            - slopes[min(i, len(slopes) - 1)] * eps
            for i in range(size)
        ]
        return np.stack(rows)

    return draws


def _joint_draws(joint: Any, samples: np.ndarray) -> Predictor:
    """Bootstrap predictor from (a, b, c, s, t) joint samples."""
    fits = [
        _monotone_in_noise(dataclasses.replace(joint, a=a, b=b, c=c, s=s, t=t).predict)
        for a, b, c, s, t in samples.astype(float).tolist()
    ]

    def draws(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return np.stack([f(n, eps) for f in fits])

    return draws


def _thin(samples: np.ndarray | None, limit: int) -> np.ndarray | None:
    if samples is None:
        return None
    arr = np.asarray(samples, dtype=float)
    if len(arr) == 0:
        return None
    if len(arr) <= limit:
        return arr
    return arr[np.linspace(0, len(arr) - 1, limit).round().astype(int)]


def _recentred(draws: Predictor, base: Predictor, centre: Predictor) -> Predictor:
    """Draws moved so that they scatter around ``centre`` as they scatter around ``base``."""

    def shifted(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return draws(n, eps) - base(n, eps)[None, :] + centre(n, eps)[None, :]

    return shifted
