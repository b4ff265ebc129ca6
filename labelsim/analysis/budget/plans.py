"""Plans: a purchase (labels per class and tier) with its cost and predictions; the
optimizer (the solver's plan, kept only if no simple strategy beats it) and the simple
strategies (all from one tier, or equal labels per class)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from labelsim.analysis.budget.problem import BudgetProblem, check_affordable
from labelsim.analysis.budget.solver import (
    _VALUE_TOL,
    ClassOptions,
    CostGrid,
    Table,
    backtrack,
    class_options,
    cost_grid,
    knapsack_table,
    label_step,
    option_cells,
    ratio_windows,
    solve,
    solve_windows,
)

OPTIMIZED = "optimized"


# --------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Labels per class and tier (K, T) with cost and predictions (nan: outside the model)."""

    strategy: str
    counts: np.ndarray
    cost: float
    acc: np.ndarray
    acc_ci: np.ndarray  # (K, 2), nan without bootstrap samples
    overall: float
    overall_ci: tuple[float, float]
    objective: float
    objective_ci: tuple[float, float]
    source: str = ""  # for the optimized plan: "dp" or the strategy it fell back to

    @property
    def labels(self) -> np.ndarray:
        """Labels per class (K,)."""
        return self.counts.sum(axis=1)

    @property
    def predicted(self) -> bool:
        """True when every class is within the model's range."""
        return bool(np.all(np.isfinite(self.acc)))

    def class_noise(self, problem: BudgetProblem) -> np.ndarray:
        """Effective noise rate per class (K,); 0 for a class with no labels."""
        return _effective_noise(problem, self.counts)


def plan_cost(problem: BudgetProblem, counts: np.ndarray) -> float:
    """Total price of a purchase (K, T)."""
    return float(np.sum(counts * problem.prices()))


def predict_counts(problem: BudgetProblem, counts: np.ndarray) -> np.ndarray:
    """Per-class predicted accuracy of a purchase; nan for a class below its floor. Labels
    past a class's ceiling are predicted to add nothing."""
    n = counts.sum(axis=1)
    acc = curve_accuracy(problem, n, _effective_noise(problem, counts))
    return np.where(n >= problem.floors(), acc, np.nan)


def curve_accuracy(problem: BudgetProblem, n: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Each class's curve at its label count (C,) and noise (C,); counts past a class's
    ceiling add nothing."""
    n_model = np.maximum(np.minimum(np.asarray(n, dtype=float), problem.ceilings()), 1.0)
    return np.array([c.accuracy(np.array([m]), np.array([e]))[0]
                     for c, m, e in zip(problem.curves, n_model, np.asarray(eps, dtype=float))])  # fmt: skip


def _effective_noise(problem: BudgetProblem, counts: np.ndarray) -> np.ndarray:
    """Label-weighted tier noise rate per class (K,); 0 for a class with no labels."""
    n = counts.sum(axis=1)
    return np.divide(counts @ problem.noise_rates(), n, out=np.zeros(len(n)), where=n > 0)


def objective_value(problem: BudgetProblem, acc: np.ndarray) -> np.ndarray:
    """The objective of per-class accuracies (..., K): weighted mean or worst class."""
    if problem.objective == "worst":
        return np.min(acc, axis=-1)
    w = problem.weight_vector()
    return acc @ w / w.sum()


def evaluate_plan(
    problem: BudgetProblem, strategy: str, counts: np.ndarray, *, intervals: bool = True, source: str = ""
) -> Plan:
    """Cost and predictions (with bootstrap intervals when asked and available) of a purchase."""
    counts = np.asarray(counts, dtype=np.int64)
    acc = predict_counts(problem, counts)
    samples = _plan_samples(problem, counts) if intervals and np.all(np.isfinite(acc)) else None
    return Plan(
        strategy=strategy,
        counts=counts,
        cost=plan_cost(problem, counts),
        acc=acc,
        acc_ci=_percentiles(samples, axis=0, width=len(acc)),
        overall=float(np.mean(acc)),
        overall_ci=_interval(None if samples is None else samples.mean(axis=1)),
        objective=float(objective_value(problem, acc)),
        objective_ci=_interval(None if samples is None else objective_value(problem, samples)),
        source=source,
    )


def _plan_samples(problem: BudgetProblem, counts: np.ndarray) -> np.ndarray | None:
    """Bootstrap predictions (B, K) of a purchase, or None when any class lacks samples."""
    n = np.maximum(np.minimum(counts.sum(axis=1), problem.ceilings()), 1)
    eps = _effective_noise(problem, counts)
    columns = [c.samples(np.array([m]), np.array([e])) for c, m, e in zip(problem.curves, n, eps)]
    if any(col is None for col in columns):
        return None
    size = min(len(col) for col in columns)
    return np.concatenate([col[:size] for col in columns], axis=1)


def _percentiles(samples: np.ndarray | None, axis: int, width: int) -> np.ndarray:
    if samples is None:
        return np.full((width, 2), np.nan)
    return np.percentile(samples, [2.5, 97.5], axis=axis).T


def _interval(samples: np.ndarray | None) -> tuple[float, float]:
    if samples is None:
        return (math.nan, math.nan)
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return (float(lo), float(hi))


def _better(problem: BudgetProblem, a: Plan, b: Plan) -> bool:
    """True when plan a beats plan b: objective, then mean, then lower cost."""
    if not a.predicted:
        return False
    if not b.predicted:
        return True
    for x, y in ((a.objective, b.objective), (a.overall, b.overall)):
        if abs(x - y) > _VALUE_TOL:
            return x > y
    return a.cost < b.cost - 1e-9


# --------------------------------------------------------------------------------------
# The optimizer and the simple strategies
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Optimizer:
    """The candidate purchases and cost grid of a problem, reusable across budgets up to
    ``grid.cells`` cells; with a max ratio, the windows of candidates that keep within it."""

    problem: BudgetProblem
    step: int
    options: list[ClassOptions]
    grid: CostGrid
    table: Table | None = field(default=None, compare=False)
    windows: list[list[np.ndarray]] | None = field(default=None, compare=False)

    def choose(self, budget: float) -> np.ndarray | None:
        """Chosen option per class at a budget (None if nothing fits)."""
        if self.table is not None:
            return backtrack(self.table, self.grid.to_cells(budget))
        w = self.problem.weight_vector()
        if self.windows is not None:
            return solve_windows(self.options, self.windows, budget, w, self.problem.objective, self.grid)
        return solve(self.options, budget, w, self.problem.objective, self.grid)

    def counts(self, chosen: np.ndarray) -> np.ndarray:
        """Labels per class and tier (K, T) of a choice."""
        return np.stack([o.counts[i] for o, i in zip(self.options, chosen)])


def build_optimizer(problem: BudgetProblem, max_budget: float | None = None) -> Optimizer:
    """Candidates and cost grid for budgets up to ``max_budget`` (default: the problem's)."""
    top = max(problem.budget, max_budget or 0.0)
    step = label_step(problem)
    options = class_options(problem, step)
    grid = cost_grid(problem.prices() * step, top, problem.max_cells)
    if problem.max_ratio is not None:
        return Optimizer(problem, step, options, grid, windows=ratio_windows(options, problem.max_ratio))
    table = None
    if problem.objective == "mean":
        cells = [option_cells(o, grid) for o in options]
        values = [w * o.acc for o, w in zip(options, problem.weight_vector())]
        table = knapsack_table(cells, values, grid.to_cells(top))
    return Optimizer(problem, step, options, grid, table)


def optimize(problem: BudgetProblem, optimizer: Optimizer | None = None, *, intervals: bool = True) -> Plan:
    """The best plan at the problem's budget (raises BudgetError if the budget is too low);
    a simple strategy is adopted only if it keeps within the max ratio."""
    check_affordable(problem)
    opt = optimizer or build_optimizer(problem)
    chosen = opt.choose(problem.budget)
    best = None
    if chosen is not None:
        best = evaluate_plan(problem, OPTIMIZED, opt.counts(chosen), intervals=False, source="dp")
    for rival in simple_strategies(problem, intervals=False):
        allowed = rival.cost <= problem.budget + 1e-9 and problem.within_ratio(rival.labels)
        if allowed and (best is None or _better(problem, rival, best)):
            best = dataclasses.replace(rival, strategy=OPTIMIZED, source=rival.strategy)
    if best is None:
        best = _cheapest_plan(problem, opt)
    return evaluate_plan(problem, OPTIMIZED, best.counts, intervals=intervals, source=best.source)


def _cheapest_plan(problem: BudgetProblem, opt: Optimizer) -> Plan:
    """Each class's cheapest candidate, in the cheapest max-ratio window if capped (used only
    when rounding cost up left no plan)."""
    if opt.windows is None:
        chosen = np.array([int(np.argmin(o.cost)) for o in opt.options])
    else:
        picks = min(opt.windows, key=lambda w: sum(o.cost[p].min() for o, p in zip(opt.options, w)))
        chosen = np.array([p[np.argmin(o.cost[p])] for o, p in zip(opt.options, picks)])
    return evaluate_plan(problem, OPTIMIZED, opt.counts(chosen), intervals=False, source="cheapest")


def strategy_names(problem: BudgetProblem) -> list[str]:
    """Names of the simple strategies, in display order."""
    return [name for name, _ in _strategy_specs(problem)]


def _strategy_specs(problem: BudgetProblem) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(name, purchase maker) of each simple strategy; one 'all' strategy when one tier."""
    cheap, dear = _cheapest_tier(problem), _dearest_tier(problem)
    specs = [(f"all {problem.tiers[cheap].name} (cheapest)", lambda: pooled_counts(problem, cheap))]
    if dear != cheap:
        specs.append((f"all {problem.tiers[dear].name} (dearest)", lambda: pooled_counts(problem, dear)))
    for t, tier in enumerate(problem.tiers):
        specs.append((f"equal per class, {tier.name}", lambda t=t: equal_counts(problem, t)))
    return specs


def _cheapest_tier(problem: BudgetProblem) -> int:
    return int(np.argmin([t.price for t in problem.tiers]))


def _dearest_tier(problem: BudgetProblem) -> int:
    return int(np.argmax([t.price for t in problem.tiers]))


def simple_strategies(problem: BudgetProblem, *, intervals: bool = True) -> list[Plan]:
    """The budget spent by each simple strategy: all cheapest tier, all dearest tier (both
    on images drawn at random, so in proportion to availability), and equal labels per
    class from each tier."""
    specs = _strategy_specs(problem)
    return [evaluate_plan(problem, name, make(), intervals=intervals) for name, make in specs]


def _single_tier(problem: BudgetProblem, tier: int, per_class: np.ndarray) -> np.ndarray:
    counts = np.zeros((len(problem.curves), len(problem.tiers)), dtype=np.int64)
    counts[:, tier] = per_class
    return counts


def pooled_counts(problem: BudgetProblem, tier: int) -> np.ndarray:
    """All labels from one tier on randomly drawn images: class k gets floor(f * pool_k) for
    the largest fraction f the budget allows (pool = available images, else the ceiling),
    never past its ceiling."""
    ceilings = problem.ceilings()
    pool = ceilings.astype(float) if problem.available is None else np.asarray(problem.available, float)
    prices = problem.prices()[:, tier]

    def labels(f: float) -> np.ndarray:
        return np.minimum(np.floor(f * pool + 1e-9).astype(np.int64), ceilings)

    f = _largest_affordable(lambda f: float(labels(f) @ prices), problem.budget, 1.0)
    return _single_tier(problem, tier, labels(f))


def equal_counts(problem: BudgetProblem, tier: int) -> np.ndarray:
    """Labels from one tier, the same count per class (capped at each class's ceiling),
    as many as the budget allows."""
    ceilings = problem.ceilings()
    prices = problem.prices()[:, tier]
    lo, hi = 0, int(ceilings.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if float(np.minimum(mid, ceilings) @ prices) <= problem.budget + 1e-9:
            lo = mid
        else:
            hi = mid - 1
    return _single_tier(problem, tier, np.minimum(lo, ceilings))


def _largest_affordable(cost: Callable[[float], float], budget: float, top: float) -> float:
    """Largest f in [0, top] with cost(f) <= budget (cost non-decreasing in f)."""
    if cost(top) <= budget + 1e-9:
        return top
    lo, hi = 0.0, top
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) <= budget + 1e-9 else (lo, mid)
    return lo
