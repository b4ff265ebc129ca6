"""Local search on any predictor: improve a plan (typically the knapsack's) one label step at a
time under a model where a class's accuracy may depend on every class's labels.

The exact knapsack (``solver``) needs each class's accuracy to depend on that class's own
purchase only. A cross-class model (``crossclass``) breaks that, so the plan is refined by
hill climbing instead: each round tries every move of one label step (the solver's step)
of one class and tier, to another class or tier, onto the budget left over (a sale) or from
it (a purchase), keeps the moves that stay within the budget, every class's floor and
ceiling and the max ratio, and takes the best one that improves the plan: objective, then
mean accuracy, then lower cost. The objective never falls, so the result is never rated
below its start; the search stops when no move helps or after ``max_iters`` moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelsim.analysis.budget.curves import Predictor
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.plans import objective_value
from labelsim.analysis.budget.problem import BudgetProblem
from labelsim.analysis.budget.solver import _VALUE_TOL, label_step

DEFAULT_MAX_ITERS = 200


@dataclass(frozen=True)
class SearchResult:
    """The improved plan (C, T), its predicted per-class accuracy and objective, the start's
    objective and the number of moves taken."""

    counts: np.ndarray
    acc: np.ndarray
    objective: float
    start_objective: float
    moves: int


def local_search(
    problem: BudgetProblem,
    predict: Predictor,
    start_counts: np.ndarray,
    *,
    max_iters: int = DEFAULT_MAX_ITERS,
) -> SearchResult:
    """Best-improvement hill climbing from ``start_counts`` with ``predict(n, eps) -> acc``."""
    counts = np.asarray(start_counts, dtype=np.int64).copy()
    if not feasible(problem, counts[None])[0]:
        raise BudgetError("the search's start plan is outside the budget, floors, ceilings or max ratio")
    deltas = move_deltas(counts.shape, label_step(problem))
    current = _rating(problem, predict, counts)
    start, moves = current, 0
    while moves < max_iters:
        candidates = counts[None] + deltas
        best, best_rating = None, current
        for cand in candidates[feasible(problem, candidates)]:
            rating = _rating(problem, predict, cand)
            if _improves(rating, best_rating):
                best, best_rating = cand, rating
        if best is None:
            break
        counts, current, moves = best, best_rating, moves + 1
    acc = _accuracy(problem, predict, counts)
    return SearchResult(counts, acc, current[0], start[0], moves)


def move_deltas(shape: tuple[int, int], step: int) -> np.ndarray:
    """Every one-step move (M, C, T): step labels from one cell (class, tier) to another, to
    the budget (a sale) or from it (a purchase)."""
    cells = shape[0] * shape[1]
    unit = np.eye(cells, dtype=np.int64) * step
    ends = np.concatenate([unit, np.zeros((1, cells), dtype=np.int64)])  # last row: the budget
    src, dst = np.nonzero(~np.eye(len(ends), dtype=bool))
    return (ends[dst] - ends[src]).reshape(-1, *shape)


def feasible(problem: BudgetProblem, plans: np.ndarray) -> np.ndarray:
    """Which plans (M, C, T) keep within budget, floors, ceilings and max ratio (M,)."""
    labels = plans.sum(axis=2)
    ok = np.all(plans >= 0, axis=(1, 2))
    ok &= np.all((labels >= problem.floors()) & (labels <= problem.ceilings()), axis=1)
    ok &= np.sum(plans * problem.prices(), axis=(1, 2)) <= problem.budget + 1e-9
    if problem.max_ratio is not None:
        ok &= labels.max(axis=1) <= problem.max_ratio * labels.min(axis=1) + 1e-9
    return ok


def _accuracy(problem: BudgetProblem, predict: Predictor, counts: np.ndarray) -> np.ndarray:
    n = counts.sum(axis=1)
    eps = counts @ problem.noise_rates() / np.maximum(n, 1)
    return np.asarray(predict(n.astype(float), eps), dtype=float)


def _rating(problem: BudgetProblem, predict: Predictor, counts: np.ndarray) -> tuple[float, float, float]:
    """(objective, mean accuracy, -cost); -inf when the predictor gives no finite accuracy."""
    acc = _accuracy(problem, predict, counts)
    if not np.all(np.isfinite(acc)):
        return (-np.inf, -np.inf, -np.inf)
    cost = float(np.sum(counts * problem.prices()))
    return (float(objective_value(problem, acc)), float(np.mean(acc)), -cost)


def _improves(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """True when rating a beats b (objective, then mean, then cost) and its objective is no lower."""
    if a[0] < b[0]:
        return False
    for x, y in zip(a, b):
        if abs(x - y) > _VALUE_TOL:
            return x > y
    return False
