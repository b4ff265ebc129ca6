"""The budget question: curves, tiers, budget and per-class options, its checks, and the
cheapest useful plan (every class at the smallest count the run measured)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelsim.analysis.budget.curves import ClassCurve
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.tiers import MAX_PRICE, MIN_PRICE, Tier, check_tiers

OBJECTIVES = ("mean", "worst")
DEFAULT_LEVELS = 40  # label-count grid points per class when the step is automatic
DEFAULT_MAX_CELLS = 20000  # cost cells of the dynamic programme
# Most labels a budget the user gives may buy at the cheapest price: far beyond any run, and it
# keeps the solver's cost cells (budget / a price's divisor) well within integers.
MAX_LABELS = 1e9

# The budget command's --max-ratio default. The curves come from class-balanced grids, and an
# uncapped plan may starve a class; measured on the demo run (CPU, 2026-11-27; python -m
# labelsim budget runs/demo --budget 40 --tier crowd:0.01:0.20 --tier expert:0.05:0.02
# --simulate --repeats 4), the uncapped plan (50 to 200 labels per class) predicted 89.7% mean
# accuracy and measured 85.0%, cat 29.5% against 61.5% predicted; with a cap of 2 it predicted
# 89.6% and measured 87.5%, cat 50.0%. Tighter caps (1.5: 87.4%, 1: 87.9%) measured the same
# within the replicas' spread. BudgetProblem itself has no cap unless given one.
DEFAULT_MAX_RATIO = 2.0


@dataclass(frozen=True)
class BudgetProblem:
    """A budget question: curves, tiers, budget and the per-class options.

    ``price_multipliers``, ``available`` and ``weights`` are per class (None = 1, no limit,
    1). ``step`` is the label step (0 = automatic). ``extrapolate`` scales the largest
    measured count to the most labels a class may get. ``max_ratio`` caps every plan's
    largest per-class label count at that multiple of its smallest (None = no cap): the
    curves come from class-balanced grids, so a lopsided plan is outside what they measured.
    """

    curves: tuple[ClassCurve, ...]
    tiers: tuple[Tier, ...]
    budget: float
    price_multipliers: tuple[float, ...] | None = None
    available: tuple[int, ...] | None = None
    weights: tuple[float, ...] | None = None
    objective: str = "mean"
    step: int = 0
    extrapolate: float = 1.0
    max_ratio: float | None = None
    levels: int = DEFAULT_LEVELS
    max_cells: int = DEFAULT_MAX_CELLS

    def __post_init__(self) -> None:
        check_problem(self)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in order."""
        return tuple(c.name for c in self.curves)

    def multipliers(self) -> np.ndarray:
        """Per-class price multipliers (K,)."""
        k = len(self.curves)
        return np.ones(k) if self.price_multipliers is None else np.asarray(self.price_multipliers, float)

    def weight_vector(self) -> np.ndarray:
        """Per-class objective weights (K,)."""
        k = len(self.curves)
        return np.ones(k) if self.weights is None else np.asarray(self.weights, float)

    def prices(self) -> np.ndarray:
        """Per-class, per-tier price of one label (K, T)."""
        return self.multipliers()[:, None] * np.array([t.price for t in self.tiers])[None, :]

    def noise_rates(self) -> np.ndarray:
        """Per-tier noise rates (T,)."""
        return np.array([t.noise for t in self.tiers])

    def floors(self) -> np.ndarray:
        """Fewest labels a class may get: its smallest measured count (K,)."""
        return np.array([math.ceil(c.n_range[0] - 1e-9) for c in self.curves], dtype=np.int64)

    def ceilings(self) -> np.ndarray:
        """Most labels a class may get: measured maximum x extrapolate, capped by availability (K,)."""
        top = np.array([math.floor(c.n_range[1] * self.extrapolate + 1e-9) for c in self.curves])
        if self.available is not None:
            top = np.minimum(top, np.asarray(self.available))
        return top.astype(np.int64)

    def least_labels(self) -> np.ndarray:
        """Fewest labels per class of any plan (K,): the floors, with the smaller ones raised
        to the largest / max_ratio so that the plan keeps within the cap."""
        floors = self.floors()
        if self.max_ratio is None:
            return floors
        smallest = max(int(floors.min()), math.ceil(floors.max() / self.max_ratio - 1e-9))
        return np.maximum(floors, smallest)

    def within_ratio(self, labels: np.ndarray) -> bool:
        """True when per-class label counts (K,) keep within max_ratio (always without a cap)."""
        if self.max_ratio is None:
            return True
        return bool(labels.max() <= self.max_ratio * labels.min() + 1e-9)

    def with_budget(self, budget: float) -> BudgetProblem:
        """The same problem at another budget."""
        return dataclasses.replace(self, budget=float(budget))


def measure_title(problem: BudgetProblem) -> str:
    """What the objective measures, as a chart axis or table heading names it."""
    if problem.objective == "worst":
        return "worst-class accuracy"
    return "weighted mean accuracy" if problem.weights is not None else "mean per-class accuracy"


def check_problem(problem: BudgetProblem) -> None:
    """Raise BudgetError for any input that cannot be planned, saying what to change."""
    k = len(problem.curves)
    if k == 0:
        raise BudgetError("no classes to plan for; the run's fits list no class")
    check_tiers(problem.tiers)
    if not (math.isfinite(problem.budget) and problem.budget > 0):
        raise BudgetError(f"budget {problem.budget!r} must be a positive amount; give --budget")
    if problem.objective not in OBJECTIVES:
        raise BudgetError(f"objective {problem.objective!r}: choose one of {', '.join(OBJECTIVES)}")
    _check_per_class(problem.price_multipliers, k, "--class-price", positive=True)
    _check_prices(problem)
    _check_per_class(problem.weights, k, "--weights", positive=False)
    if problem.weights is not None and not any(w > 0 for w in problem.weights):
        raise BudgetError("every class weight is zero; give at least one class a positive --weights value")
    _check_per_class(problem.available, k, "--available", positive=False)
    if problem.step < 0:
        raise BudgetError(f"label step {problem.step} must be >= 0 (0 = automatic); fix --step")
    if problem.levels < 1 or problem.max_cells < 10:
        raise BudgetError("levels must be >= 1 and max_cells >= 10")
    if not (math.isfinite(problem.extrapolate) and problem.extrapolate >= 1.0):
        raise BudgetError(f"--extrapolate {problem.extrapolate!r}: give a multiple of 1 or more (1 = no extrapolation)")
    ratio = problem.max_ratio
    if ratio is not None and not (math.isfinite(ratio) and ratio >= 1.0):
        raise BudgetError(
            f"max ratio {ratio!r} is not allowed: it is the largest per-class label count over "
            "the smallest, so pass --max-ratio 1 or more (1 = equal counts), or leave it out "
            "for no cap"
        )
    _check_room(problem)


def _check_per_class(values: Sequence[float] | None, k: int, flag: str, *, positive: bool) -> None:
    if values is None:
        return
    if len(values) != k:
        raise BudgetError(f"{len(values)} {flag} values given for {k} classes; give one per class")
    for v in values:
        bad = not math.isfinite(v) or v < 0 or (positive and v == 0)
        if bad:
            bound = "a positive value" if positive else "a value of zero or more"
            raise BudgetError(f"{flag} value {v!r} is not allowed; give each class {bound}")


def _check_prices(problem: BudgetProblem) -> None:
    """Every class's price per label from every tier within [MIN_PRICE, MAX_PRICE]."""
    prices = problem.prices()
    outside = np.argwhere((prices < MIN_PRICE) | (prices > MAX_PRICE))
    if len(outside):
        k, t = outside[0]
        raise BudgetError(
            f"--class-price makes a label of class {problem.classes[k]} from tier {problem.tiers[t].name} "
            f"cost {prices[k, t]:g}, outside [{MIN_PRICE:g}, {MAX_PRICE:g}]; give multipliers nearer 1"
        )


def check_budget_size(problem: BudgetProblem, budget: float, flag: str = "--budget") -> None:
    """Raise BudgetError, naming ``flag``, when ``budget`` buys more than MAX_LABELS labels at
    the problem's cheapest price per label."""
    cheapest = float(problem.prices().min())
    if budget / cheapest > MAX_LABELS:
        raise BudgetError(
            f"{flag} {budget:g} would buy over {MAX_LABELS:.0e} labels at the cheapest price ({cheapest:g} per "
            f"label), beyond what this planner handles; give {flag} {MAX_LABELS * cheapest:g} or less"
        )


def _check_room(problem: BudgetProblem) -> None:
    floors, ceilings = problem.floors(), problem.ceilings()
    for name, lo, hi in zip(problem.classes, floors, ceilings):
        if hi < lo:
            raise BudgetError(
                f"class {name} can get at most {hi} labels (images available), fewer than the "
                f"smallest count the run measured ({lo}); the fits cannot predict it: raise "
                "--available or measure smaller sizes"
            )
    if problem.step > ceilings.max():
        raise BudgetError(
            f"--step {problem.step} is more labels than any class can get (at most {ceilings.max()}); "
            f"give --step {ceilings.max()} or less, or 0 for automatic"
        )
    least = problem.least_labels()
    if problem.max_ratio is not None and np.any(least > ceilings):
        k = int(np.argmax(least - ceilings))
        raise BudgetError(
            f"--max-ratio {problem.max_ratio:g} cannot be met: class {problem.classes[k]} can get "
            f"at most {ceilings[k]} labels, but another class needs at least {floors.max()} "
            f"(the smallest count the run measured for it); pass --max-ratio "
            f"{math.ceil(floors.max() / ceilings.min() * 100) / 100:g} or more, or raise --available"
        )


def minimum_cost(problem: BudgetProblem) -> float:
    """Cost of the cheapest useful plan: every class at its floor (raised to keep within
    max_ratio) from its cheapest tier."""
    return float(np.sum(problem.least_labels() * problem.prices().min(axis=1)))


def check_affordable(problem: BudgetProblem) -> None:
    """Raise BudgetError when the budget is below the cheapest useful plan."""
    least = minimum_cost(problem)
    if problem.budget < least - 1e-9:
        capped = "" if problem.max_ratio is None else f", within --max-ratio {problem.max_ratio:g}"
        raise BudgetError(
            f"budget {problem.budget:,.2f} is below the cheapest useful plan, {least:,.2f} "
            f"(each class at the smallest count the run measured{capped}, from the cheapest "
            f"tier); give --budget {math.ceil(least * 100 - 1e-6) / 100:.2f} or more"
        )
