"""Budget-solver benchmark: 100 classes x 5 tiers (mean and worst objectives) and the full
10-class, 2-tier answer of the ``budget`` command (plan, strategies, curves, cost to target).

Warms up first, times the median of several runs, prints and saves JSON to
benchmarks/results/budget_solver.json.

    python benchmarks/budget_solver.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from labelsim.analysis.budget import (  # noqa: E402
    BudgetProblem,
    Tier,
    build_optimizer,
    optimize,
    plan_budget,
    power_law_curve,
)

RESULTS = Path(__file__).parent / "results" / "budget_solver.json"
REPEATS = 5
TIERS_5 = ((0.02, 0.35), (0.04, 0.20), (0.08, 0.10), (0.15, 0.04), (0.30, 0.00))


def random_problem(
    classes: int,
    tiers: tuple[tuple[float, float], ...],
    budget: float,
    n_range: tuple[float, float],
    objective: str,
    seed: int = 0,
) -> BudgetProblem:
    """Random power-law classes with noise slopes."""
    rng = np.random.default_rng(seed)
    curves = tuple(
        power_law_curve(f"c{k}", rng.uniform(0.85, 0.97), rng.uniform(1, 4), rng.uniform(0.5, 1.0),
                        rng.uniform(0, 0.5), n_range)
        for k in range(classes)
    )  # fmt: skip
    tier_list = tuple(Tier(f"t{i}", p, e) for i, (p, e) in enumerate(tiers))
    return BudgetProblem(curves, tier_list, budget, objective=objective)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    """Median seconds over REPEATS runs after one warm-up run, and the last result."""
    result = work()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def solver_case(objective: str) -> dict[str, Any]:
    """Candidates + exact solve of 100 classes x 5 tiers at a budget of 8,000."""
    problem = random_problem(100, TIERS_5, 8000.0, (50, 2000), objective)

    def work() -> tuple[Any, Any]:
        opt = build_optimizer(problem)
        return opt, optimize(problem, opt, intervals=False)

    seconds, (opt, plan) = timed(work)
    return {
        "case": f"100 classes x 5 tiers, {objective} objective",
        "seconds": round(seconds, 4),
        "label_step": opt.step,
        "cost_cells": opt.grid.to_cells(problem.budget),
        "cost_unit": opt.grid.unit,
        "cost_exact": opt.grid.exact,
        "candidates": int(sum(len(o.cost) for o in opt.options)),
        "plan_cost": round(plan.cost, 2),
        "predicted_objective": round(plan.objective, 5),
    }


def command_case() -> dict[str, Any]:
    """The whole answer for a CIFAR-10-like question: 10 classes, crowd vs expert, $2,000."""
    problem = random_problem(10, ((0.04, 0.20), (0.15, 0.02)), 2000.0, (500, 5000), "mean")
    seconds, result = timed(lambda: plan_budget(problem, target=0.9, points=25))
    return {
        "case": "full answer: 10 classes x 2 tiers, 25-point curves, cost to target",
        "seconds": round(seconds, 4),
        "label_step": result.step,
        "cost_exact": result.grid.exact,
    }


def main() -> int:
    """Run the cases, print and save the JSON."""
    cases = [solver_case("mean"), solver_case("worst"), command_case()]
    payload = {
        "benchmark": "budget_solver",
        "repeats": REPEATS,
        "statistic": "median seconds after one warm-up run",
        "cases": cases,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__},
    }
    text = json.dumps(payload, indent=2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
