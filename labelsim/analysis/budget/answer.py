"""The full answer to a budget question: the plan, the simple strategies, budget sweeps and
costs to reach a target; measured beside predicted accuracy after --simulate; and JSON (the
answer the budget command prints and saves for the report)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from labelsim.analysis.budget.plans import (
    OPTIMIZED,
    Optimizer,
    Plan,
    _dearest_tier,
    build_optimizer,
    optimize,
    simple_strategies,
    strategy_names,
)
from labelsim.analysis.budget.problem import (
    BudgetProblem,
    check_affordable,
    measure_title,
    minimum_cost,
)
from labelsim.analysis.budget.solver import CostGrid

# --------------------------------------------------------------------------------------
# Budget sweeps and the full answer
# --------------------------------------------------------------------------------------


def sweep_budgets(problem: BudgetProblem, points: int = 25, top: float | None = None) -> np.ndarray:
    """Budgets from the cheapest useful plan to ``top`` (default: enough to buy every class's
    ceiling from the dearest tier, or the budget if larger), including the budget itself."""
    low = minimum_cost(problem)
    dear = problem.prices()[:, _dearest_tier(problem)]
    high = max(problem.budget, float(problem.ceilings() @ dear)) if top is None else max(top, low)
    grid = np.linspace(low, high, points)
    return np.unique(np.concatenate([grid, [problem.budget]]))


def cost_curves(
    problem: BudgetProblem, budgets: np.ndarray, optimizer: Optimizer | None = None
) -> list[dict[str, Any]]:
    """Predicted accuracy of every strategy at each budget: a list of
    {"strategy", "points": [{"budget", "cost", "accuracy", "objective"}]}."""
    opt = optimizer or build_optimizer(problem, float(np.max(budgets)))
    names = [OPTIMIZED] + strategy_names(problem)
    series: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for b in budgets:
        at = problem.with_budget(float(b))
        plans = [optimize(at, opt, intervals=False)] + simple_strategies(at, intervals=False)
        for plan in plans:
            series[plan.strategy].append(_curve_point(float(b), plan))
    return [{"strategy": name, "points": points} for name, points in series.items()]


def _curve_point(budget: float, plan: Plan) -> dict[str, Any]:
    return {
        "budget": budget,
        "cost": plan.cost,
        "accuracy": _finite_or_none(plan.overall),
        "objective": _finite_or_none(plan.objective),
    }


def plan_at(problem: BudgetProblem, strategy: str, budget: float, optimizer: Optimizer | None = None) -> Plan:
    """A strategy's plan at another budget (point predictions, no intervals)."""
    at = problem.with_budget(budget)
    if strategy == OPTIMIZED:
        return optimize(at, optimizer, intervals=False)
    return next(p for p in simple_strategies(at, intervals=False) if p.strategy == strategy)


def cost_to_reach(
    problem: BudgetProblem, strategy: str, target: float, top: float, optimizer: Optimizer | None = None
) -> float | None:
    """Smallest budget (to 0.1%) at which a strategy's predicted objective reaches ``target``,
    searched up to ``top``; None if it never does. The cost reported is the plan's own cost."""

    def reaches(b: float) -> bool:
        return bool(plan_at(problem, strategy, b, optimizer).objective >= target - 1e-12)

    low = minimum_cost(problem)
    if not reaches(top):
        return None
    if reaches(low):
        return plan_at(problem, strategy, low, optimizer).cost
    lo, hi = low, top
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return plan_at(problem, strategy, hi, optimizer).cost


@dataclass(frozen=True)
class BudgetResult:
    """The answer to a budget question: the plan, the strategies, curves and targets."""

    problem: BudgetProblem
    plan: Plan
    strategies: list[Plan]
    curves: list[dict[str, Any]]
    step: int
    grid: CostGrid
    target: float | None = None
    cost_to_target: dict[str, float | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def plan_budget(
    problem: BudgetProblem,
    *,
    target: float | None = None,
    points: int = 25,
    top: float | None = None,
) -> BudgetResult:
    """Optimize the budget, compare the simple strategies, sweep budgets and costs to target."""
    check_affordable(problem)
    budgets = sweep_budgets(problem, points, top)
    opt = build_optimizer(problem, float(budgets.max()))
    # Rounded cells are sized to the largest budget; the plan itself gets cells of its own.
    plan = optimize(problem, opt if opt.grid.exact else None)
    strategies = simple_strategies(problem) + [plan]
    curves = cost_curves(problem, budgets, opt)
    reach: dict[str, float | None] = {}
    if target is not None:
        top_budget = float(budgets.max())
        reach = {p.strategy: cost_to_reach(problem, p.strategy, target, top_budget, opt) for p in strategies}
    notes = _warnings(problem, opt)
    return BudgetResult(problem, plan, strategies, curves, opt.step, opt.grid, target, reach, notes)


def _warnings(problem: BudgetProblem, opt: Optimizer) -> list[str]:
    notes = []
    for tier in problem.tiers:
        over = [c.name for c in problem.curves if tier.noise > c.noise_max + 1e-12]
        if over:
            notes.append(
                f"tier {tier.name} noise {tier.noise:g} is above the largest measured rate "
                f"for {len(over)} class(es); the noise line is extrapolated"
            )
    if problem.extrapolate > 1:
        notes.append(
            f"label counts up to {problem.extrapolate:g}x the largest measured count are extrapolated"
        )
    if not opt.grid.exact:
        notes.append(
            f"costs were rounded up to cells of {opt.grid.unit:.4g}; "
            "the plan may leave a little budget unspent"
        )
    return notes


# --------------------------------------------------------------------------------------
# Measured vs predicted (after --simulate)
# --------------------------------------------------------------------------------------


def measured_vs_predicted(
    plans: Sequence[Plan], measured: Mapping[str, np.ndarray], classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows {strategy, class, predicted, measured, measured_sd, replicas, error} comparing each
    plan's prediction with measured per-class accuracy (R, K) of the trained replicas; the
    class "overall" is the mean over classes."""
    rows = []
    for plan in plans:
        runs = measured.get(plan.strategy)
        if runs is None or len(runs) == 0:
            continue
        runs = np.asarray(runs, dtype=float)
        per_class = list(zip(classes, plan.acc, runs.T))
        per_class.append(("overall", plan.overall, runs.mean(axis=1)))
        for name, predicted, values in per_class:
            rows.append(_comparison_row(plan.strategy, name, float(predicted), values))
    return rows


def _comparison_row(strategy: str, name: str, predicted: float, values: np.ndarray) -> dict[str, Any]:
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return {
        "strategy": strategy,
        "class": name,
        "predicted": _finite_or_none(predicted),
        "measured": mean,
        "measured_sd": _finite_or_none(sd),
        "replicas": int(len(values)),
        "error": _finite_or_none(mean - predicted),
    }


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _estimate(value: float, ci: Sequence[float]) -> dict[str, Any]:
    return {"predicted": _finite_or_none(value), "ci": [_finite_or_none(x) for x in ci]}


def plan_to_dict(problem: BudgetProblem, plan: Plan) -> dict[str, Any]:
    """A JSON-ready plan: totals and one row per class."""
    noise = plan.class_noise(problem)
    prices = problem.prices()
    rows = [
        {
            "class": name,
            "labels": {t.name: int(n) for t, n in zip(problem.tiers, plan.counts[k])},
            "total": int(plan.labels[k]),
            "noise": float(noise[k]),
            "cost": float(plan.counts[k] @ prices[k]),
            **_estimate(plan.acc[k], plan.acc_ci[k]),
        }
        for k, name in enumerate(problem.classes)
    ]
    return {
        "strategy": plan.strategy,
        "cost": plan.cost,
        "labels": int(plan.labels.sum()),
        "labels_by_tier": {t.name: int(n) for t, n in zip(problem.tiers, plan.counts.sum(axis=0))},
        "overall": _estimate(plan.overall, plan.overall_ci),
        "objective": _estimate(plan.objective, plan.objective_ci),
        "worst_class": _finite_or_none(float(np.min(plan.acc))),
        "source": plan.source or None,
        "classes": rows,
    }


def result_to_dict(result: BudgetResult) -> dict[str, Any]:
    """The whole answer as a JSON-ready dict."""
    p = result.problem
    return {
        "budget": p.budget,
        "objective": p.objective if p.weights is None or p.objective == "worst" else "weighted",
        "tiers": [dataclasses.asdict(t) for t in p.tiers],
        "classes": list(p.classes),
        "price_multipliers": p.multipliers().tolist(),
        "weights": p.weight_vector().tolist(),
        "floors": p.floors().tolist(),
        "ceilings": p.ceilings().tolist(),
        "max_ratio": p.max_ratio,
        "minimum_cost": minimum_cost(p),
        "label_step": result.step,
        "cost_unit": result.grid.unit,
        "cost_exact": result.grid.exact,
        "plan": plan_to_dict(p, result.plan),
        "strategies": [plan_to_dict(p, s) for s in result.strategies],
        "curves": result.curves,
        "target": result.target,
        "cost_to_target": result.cost_to_target,
        "warnings": result.warnings,
    }


def answer_payload(result: BudgetResult, simulation: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON the budget command prints and saves: the answer, its measure and any
    measured-vs-predicted rows of --simulate."""
    payload = result_to_dict(result) | {"measure": measure_title(result.problem)}
    if simulation is not None:
        payload["simulation"] = simulation
    return payload


def save_result(payload: dict[str, Any], path: Path) -> str:
    """Write the answer as JSON for the report; a one-line note says where, or why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1, allow_nan=False), encoding="utf-8")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return (f"note: not saved for the report: cannot write {path} ({reason}); "
                "pass --save FILE to save it elsewhere")
    return f"saved for the report: {path}"
