"""A run as a budget question: its classes, fitted per-class curves (with the noise axis read
as a fraction of wrong labels) and images per class, and the BudgetProblem on them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from labelsim.analysis.budget.curves import ClassCurve, Predictor, curves_from_fits
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.problem import DEFAULT_MAX_RATIO, BudgetProblem
from labelsim.analysis.budget.tiers import Tier
from labelsim.analysis.fits import FitError, fit_run
from labelsim.rundir import load_run


@dataclass(frozen=True)
class RunContext:
    """What the budget needs from a run: classes, curves, images per class, metadata."""

    path: Path
    classes: tuple[str, ...]
    curves: tuple[ClassCurve, ...]
    available: tuple[int, ...]
    meta: dict[str, Any]


def load_context(run_dir: Path) -> RunContext:
    """Fit the run's curves and read its images per class."""
    run = load_run(run_dir)
    return fitted_context(run, run.classes, training_class_counts(run))


def fitted_context(run: Any, names: Sequence[str], available: Sequence[int], units: Any = None) -> RunContext:
    """The budget context of a run's units (its classes, or ``units`` such as its clusters): each
    unit's fitted curve with the noise axis read as a fraction of wrong labels, and the images
    ``available`` to label per unit."""
    try:
        fits = fit_run(run, units=units)
    except FitError as exc:
        raise BudgetError(f"cannot fit {run.path}: {exc}") from None
    rates = [r.noise_rate for r in run.finished() if not r.is_custom]
    scale = wrong_label_scale(run)
    curves = tuple(
        dataclasses.replace(c, predict=_rescaled(c.predict, scale), draws=c.draws and _rescaled(c.draws, scale))
        for c in curves_from_fits(fits, noise_max=max(rates, default=0.0))
    )
    return RunContext(Path(run.path), tuple(names), curves, tuple(int(v) for v in available), run.meta)


def wrong_label_scale(run: Any) -> float:
    """Noise-axis units per unit of wrong-label fraction: requested / realized rate.

    A tier's noise rate is its fraction of wrong labels; the fits' axis is the run's requested
    rate, and under the study's shuffle protocol only about (C-1)/C of a requested rate ends
    up wrong. The ratio is measured on the run's own noisy replicas (1 when there are none).
    """
    noisy = [r for r in run.finished() if not r.is_custom and r.noise_rate > 0 and r.realized_noise > 0]
    if not noisy:
        return 1.0
    return sum(r.noise_rate for r in noisy) / sum(r.realized_noise for r in noisy)


def _rescaled(predict: Predictor, scale: float) -> Predictor:
    """``predict(n, eps)`` with eps given as a wrong-label fraction."""
    return lambda n, eps: predict(n, np.asarray(eps, dtype=float) * scale)


def training_class_counts(run: Any) -> tuple[int, ...]:
    """Training images per class: recorded counts, else the training size split by class share."""
    recorded = run.meta.get("train_class_counts")
    if isinstance(recorded, list) and len(recorded) == run.num_classes:
        return tuple(int(v) for v in recorded)
    dataset = run.meta.get("dataset") or {}
    total = dataset.get("train_size") or max((r.train_size for r in run.replicas), default=0)
    return tuple(int(v) for v in np.floor(total * run.class_shares + 1e-9))


def run_problem(
    context: RunContext,
    tiers: Sequence[Tier],
    budget: float,
    *,
    prices: Mapping[str, float] | None = None,
    available: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    objective: str = "mean",
    step: int = 0,
    extrapolate: float = 1.0,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
) -> BudgetProblem:
    """The BudgetProblem on a run's curves; per-class values go by class name (a class not
    named keeps price multiplier 1, the run's training images and, with any weight, weight 1)."""
    classes = context.classes
    prices = prices or {}
    counts = dict(zip(classes, context.available)) | dict(available or {})
    return BudgetProblem(
        curves=context.curves,
        tiers=tuple(tiers),
        budget=budget,
        price_multipliers=tuple(prices.get(c, 1.0) for c in classes),
        available=tuple(_whole(counts[c], c) for c in classes),
        weights=tuple(weights.get(c, 1.0) for c in classes) if weights else None,
        objective=objective,
        step=step,
        extrapolate=extrapolate,
        max_ratio=max_ratio,
    )


def _whole(value: float, name: str) -> int:
    if not (math.isfinite(value) and value >= 0 and value == int(value)):
        raise BudgetError(f"--available for class {name} is {value!r}; give a whole number >= 0")
    return int(value)
