"""The exact solver on the discretised problem: candidate purchases per class, integer cost
cells and the multiple-choice knapsack.

Labels are bought in steps of ``step`` labels per class and tier (1 for small problems;
otherwise about 1/40 of the largest per-class count). For each class the candidate
purchases are all tier splits of each total on that grid, pruned to those that no other
split beats on both cost and accuracy (splits of one total are first pruned on cost and
summed noise, which is exact because both add up). Choosing one candidate per class is a
multiple-choice knapsack, solved exactly by dynamic programming over cost counted in an
integer unit: the greatest common divisor of the per-label prices (exact), or, when that
would need more than ``max_cells`` cells, budget / ``max_cells`` with every candidate's cost
rounded up (so no plan exceeds the budget). Ties go to the cheaper plan. The worst-class
objective bisects on the target level, with each class's cheapest candidate reaching it.
The returned plan is also compared with the simple strategies' plans and the best is kept
(that only matters when the step is coarser than one label).

With a max ratio r (largest per-class count at most r x the smallest), candidates are pruned
only against splits of the same total, since the cap may rule out the total that dominates
them. The optimum's smallest total m is one of the candidate totals, so the solver tries
each: every class restricted to totals in [m, r*m] (a "window", where any plan keeps within
the cap), pruned there, solved as above; the best plan over the windows is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labelsim.analysis.budget.curves import ClassCurve
from labelsim.analysis.budget.problem import BudgetProblem

_VALUE_TOL = 1e-9  # objective values closer than this count as ties


# --------------------------------------------------------------------------------------
# Candidate purchases per class
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassOptions:
    """A class's candidate purchases: labels per tier (L, T), cost (L,), accuracy (L,)."""

    counts: np.ndarray
    cost: np.ndarray
    acc: np.ndarray


def label_step(problem: BudgetProblem) -> int:
    """The label step: the problem's, else the largest class ceiling / levels, so that every
    class still has a grid point between its floor and ceiling (and, with a max ratio, the
    grid holds a plan within it)."""
    floors, ceilings = problem.floors(), problem.ceilings()
    step = problem.step or max(1, math.ceil(int(ceilings.max()) / problem.levels))
    while step > 1 and not (np.all(ceilings // step * step >= floors) and _ratio_fits(problem, step)):
        step -= 1
    return int(step)


def _ratio_fits(problem: BudgetProblem, step: int) -> bool:
    """True when some plan on the label grid keeps within the max ratio: the smallest total
    that every class can reach within ratio x it is at most every class's ceiling."""
    if problem.max_ratio is None:
        return True
    lo, hi = -(-problem.floors() // step), problem.ceilings() // step
    smallest = max(int(lo.min()), math.ceil(lo.max() / problem.max_ratio - 1e-9))
    return smallest <= int(hi.min())


def composition_frontier(
    prices: np.ndarray, noises: np.ndarray, max_total: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each total j in 0..max_total: the splits of j units over tiers (L, T) that no other
    split of j beats on both summed price and summed noise, with those sums."""
    t_count = len(prices)
    front = [(_unit_row(t_count, 0, j), np.array([j * prices[0]]), np.array([j * noises[0]]))
             for j in range(max_total + 1)]  # fmt: skip
    for t in range(1, t_count):
        front = [_extend(front, j, t, prices[t], noises[t]) for j in range(max_total + 1)]
    return front


def _unit_row(t_count: int, tier: int, amount: int) -> np.ndarray:
    row = np.zeros((1, t_count), dtype=np.int64)
    row[0, tier] = amount
    return row


def _extend(front: list, j: int, tier: int, price: float, noise: float) -> tuple:
    counts, cost, total_noise = [], [], []
    for i in range(j + 1):
        c, p, e = front[j - i]
        c = c.copy()
        c[:, tier] = i
        counts.append(c)
        cost.append(p + i * price)
        total_noise.append(e + i * noise)
    counts_a, cost_a, noise_a = np.concatenate(counts), np.concatenate(cost), np.concatenate(total_noise)
    keep = _pareto(cost_a, -noise_a)
    return counts_a[keep], cost_a[keep], noise_a[keep]


def _pareto(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Indices, by increasing cost, of points no cheaper-or-equal point matches in value."""
    order = np.lexsort((-value, cost))
    v = value[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(v)[:-1]))
    return order[v > best_before]


def class_options(problem: BudgetProblem, step: int | None = None) -> list[ClassOptions]:
    """Every class's undominated candidate purchases on the label grid (with a max ratio,
    undominated among purchases of the same total: the windows prune the rest)."""
    step = label_step(problem) if step is None else step
    floors, ceilings = problem.floors(), problem.ceilings()
    j_lo = -(-floors // step)
    j_hi = ceilings // step
    base_prices = np.array([t.price for t in problem.tiers])
    frontier = composition_frontier(base_prices, problem.noise_rates(), int(j_hi.max()))
    multipliers = problem.multipliers()
    prune = problem.max_ratio is None
    return [
        _options_for(curve, frontier, int(lo), int(hi), step, m, prune)
        for curve, lo, hi, m in zip(problem.curves, j_lo, j_hi, multipliers)
    ]


def _options_for(
    curve: ClassCurve, frontier: list, j_lo: int, j_hi: int, step: int, multiplier: float, prune: bool = True
) -> ClassOptions:
    parts = frontier[j_lo : j_hi + 1]
    units = np.concatenate([p[0] for p in parts])
    raw_cost = np.concatenate([p[1] for p in parts])
    noise_sum = np.concatenate([p[2] for p in parts])
    totals = units.sum(axis=1)
    acc = curve.accuracy(totals * step, noise_sum / totals)
    cost = raw_cost * step * multiplier
    keep = _pareto(cost, acc) if prune else np.arange(len(cost))
    return ClassOptions(units[keep] * step, cost[keep], acc[keep])


def ratio_windows(options: list[ClassOptions], max_ratio: float) -> list[list[np.ndarray]]:
    """For each candidate smallest total m (every candidate's total): per class, the indices
    of its undominated candidates with totals in [m, max_ratio * m]. Windows in which some
    class has no candidate, and repeats, are left out; so are those after the first window
    that reaches every class's largest total, since they hold no candidate it lacks."""
    totals = [o.counts.sum(axis=1) for o in options]
    largest = max(int(n.max()) for n in totals)
    windows, seen = [], set()
    for m in np.unique(np.concatenate(totals)):
        picks = []
        for o, n in zip(options, totals):
            inside = np.flatnonzero((n >= m) & (n <= max_ratio * m + 1e-9))
            picks.append(inside[_pareto(o.cost[inside], o.acc[inside])])
        key = tuple(p.tobytes() for p in picks)
        if all(len(p) for p in picks) and key not in seen:
            seen.add(key)
            windows.append(picks)
            if max_ratio * m + 1e-9 >= largest:
                break
    return windows


# --------------------------------------------------------------------------------------
# Integer cost cells
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostGrid:
    """Cost counted in integer cells of ``unit``; ``exact`` when no cost was rounded."""

    unit: float
    exact: bool
    cells: int  # cells of the largest budget asked about

    def to_cells(self, budget: float) -> int:
        """Whole cells within a budget."""
        return int(math.floor(budget / self.unit + 1e-9))


def cost_grid(atoms: np.ndarray, budget: float, max_cells: int) -> CostGrid:
    """The cell size for per-label prices ``atoms``: their exact common divisor on a decimal
    scale when the budget fits in ``max_cells`` cells of it, else budget / max_cells."""
    atoms = np.asarray(atoms, dtype=float).ravel()
    for digits in range(0, 10):
        scale = 10.0**digits
        scaled = atoms * scale
        ints = np.round(scaled)
        if np.all(np.abs(scaled - ints) <= 1e-7 * np.maximum(1.0, scaled)):
            unit = float(np.gcd.reduce(ints.astype(np.int64))) / scale
            cells = int(math.floor(budget / unit + 1e-9))
            if cells <= max_cells:
                return CostGrid(unit, True, cells)
            break
    return CostGrid(budget / max_cells, False, max_cells)


def option_cells(options: ClassOptions, grid: CostGrid) -> np.ndarray:
    """Option costs in whole cells (rounded up unless the grid is exact)."""
    ratio = options.cost / grid.unit
    if grid.exact:
        return np.round(ratio).astype(np.int64)
    return np.ceil(ratio - 1e-9).astype(np.int64)


# --------------------------------------------------------------------------------------
# The exact solver on the discretised problem
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """Dynamic-programme table: layers[k][c] = best summed value of classes < k within c
    cells (-inf: none fits); cells[k], values[k] = class k's option costs and values."""

    layers: np.ndarray
    cells: list[np.ndarray]
    values: list[np.ndarray]

    @property
    def best(self) -> np.ndarray:
        """Best value of all classes within each number of cells."""
        return self.layers[-1]


def knapsack_table(cells: list[np.ndarray], values: list[np.ndarray], capacity: int) -> Table:
    """Multiple-choice knapsack by dynamic programming: one option per class, total cells
    <= c, maximal summed value, for every c up to ``capacity``."""
    layers = np.empty((len(cells) + 1, capacity + 1))
    layers[0] = 0.0
    for k, (cost, value) in enumerate(zip(cells, values)):
        layers[k + 1] = _add_class(layers[k], cost, value, capacity)
    return Table(layers, cells, values)


def _option_order(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Options cheapest first, then most valuable: the order that settles ties."""
    return np.lexsort((-value, cost))


def _add_class(best: np.ndarray, cost: np.ndarray, value: np.ndarray, capacity: int) -> np.ndarray:
    new = np.full(capacity + 1, -np.inf)
    for o in _option_order(cost, value):
        c = int(cost[o])
        if c > capacity:
            break
        segment = new[c:]
        np.maximum(segment, best[: capacity + 1 - c] + value[o], out=segment)
    return new


def backtrack(table: Table, capacity: int) -> np.ndarray | None:
    """Chosen option per class of the best plan within ``capacity`` cells (cheapest among
    ties), or None when no plan fits."""
    top = table.best[capacity]
    if not np.isfinite(top):
        return None
    c = int(np.argmax(table.best[: capacity + 1] >= top - _VALUE_TOL * max(1.0, abs(top))))
    chosen = np.empty(len(table.cells), dtype=np.int64)
    for k in range(len(table.cells) - 1, -1, -1):
        chosen[k] = _option_reaching(table, k, c)
        c -= int(table.cells[k][chosen[k]])
    return chosen


def _option_reaching(table: Table, k: int, c: int) -> int:
    """The first option (in tie order) of class k that attains layers[k + 1][c] exactly."""
    cost, value = table.cells[k], table.values[k]
    order = _option_order(cost, value)
    order = order[cost[order] <= c]
    reached = table.layers[k][c - cost[order]] + value[order] == table.layers[k + 1][c]
    return int(order[np.argmax(reached)])


def worst_level(cells: list[np.ndarray], accs: list[np.ndarray], capacity: int) -> float | None:
    """The highest accuracy every class can reach within ``capacity`` cells (bisection on
    the candidate levels, each class at its cheapest option reaching the level)."""
    by_acc = [_cheapest_reaching(c, a) for c, a in zip(cells, accs)]
    levels = np.unique(np.concatenate(accs))
    lo, hi = -1, len(levels) - 1  # levels[lo] feasible (or none), find the last feasible
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _level_cost(by_acc, levels[mid]) <= capacity:
            lo = mid
        else:
            hi = mid - 1
    return None if lo < 0 else float(levels[lo])


def _cheapest_reaching(cost: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accuracies descending, cheapest cost among options at least that accurate)."""
    order = np.argsort(-acc, kind="stable")
    return acc[order], np.minimum.accumulate(cost[order])


def _level_cost(by_acc: list[tuple[np.ndarray, np.ndarray]], level: float) -> float:
    total = 0.0
    for acc_desc, cheapest in by_acc:
        reach = int(np.searchsorted(-acc_desc, -level, side="right"))
        if reach == 0:
            return math.inf
        total += cheapest[reach - 1]
    return total


def solve(
    options: list[ClassOptions],
    budget: float,
    weights: np.ndarray,
    objective: str,
    grid: CostGrid,
) -> np.ndarray | None:
    """Chosen option per class of the best plan within budget, or None if none fits."""
    cells = [option_cells(o, grid) for o in options]
    capacity = grid.to_cells(budget)
    if objective == "worst":
        level = worst_level(cells, [o.acc for o in options], capacity)
        if level is None:
            return None
        keep = [o.acc >= level for o in options]
        cells = [c[m] for c, m in zip(cells, keep)]
        chosen = backtrack(_weighted_table(options, cells, keep, weights, capacity), capacity)
        return None if chosen is None else np.array([np.flatnonzero(m)[i] for m, i in zip(keep, chosen)])
    keep = [np.ones(len(o.acc), bool) for o in options]
    return backtrack(_weighted_table(options, cells, keep, weights, capacity), capacity)


def solve_windows(
    options: list[ClassOptions],
    windows: list[list[np.ndarray]],
    budget: float,
    weights: np.ndarray,
    objective: str,
    grid: CostGrid,
) -> np.ndarray | None:
    """Chosen option per class (indices into ``options``) of the best plan within budget
    over the max-ratio windows, or None if none fits: objective, then weighted mean, then
    fewer cost cells. Windows are solved from the highest upper bound on their objective
    down (the first solved wins ties), stopping once no window left can match the best."""
    bounds = np.array([_window_bound(options, picks, budget, weights, objective) for picks in windows])
    best, best_key = None, None
    for w in np.argsort(-bounds, kind="stable"):
        if bounds[w] == -np.inf:
            break  # this window's cheapest plan, and every later one's, is over budget
        if best_key is not None and bounds[w] < best_key[0] - _VALUE_TOL * max(1.0, abs(best_key[0])):
            break
        picks = windows[w]
        inside = [ClassOptions(o.counts[p], o.cost[p], o.acc[p]) for o, p in zip(options, picks)]
        chosen = solve(inside, budget, weights, objective, grid)
        if chosen is None:
            continue
        acc = np.array([o.acc[i] for o, i in zip(inside, chosen)])
        total = float(weights @ acc)
        primary = float(acc.min()) if objective == "worst" else total
        cells = sum(int(option_cells(o, grid)[i]) for o, i in zip(inside, chosen))
        key = (primary, total, -cells)
        if best_key is None or _key_beats(key, best_key):
            best, best_key = np.array([p[i] for p, i in zip(picks, chosen)]), key
    return best


def _window_bound(
    options: list[ClassOptions], picks: list[np.ndarray], budget: float, weights: np.ndarray, objective: str
) -> float:
    """An upper bound on a window's objective within budget: each class at its most accurate
    candidate that fits beside the others' cheapest (-inf when even the cheapest plan does not)."""
    cheapest = np.array([o.cost[p].min() for o, p in zip(options, picks)])
    room = budget + 1e-9 - (cheapest.sum() - cheapest)
    if cheapest.sum() > budget + 1e-9:
        return -np.inf
    top = np.array([o.acc[p][o.cost[p] <= r].max() for o, p, r in zip(options, picks, room)])
    return float(top.min()) if objective == "worst" else float(weights @ top)


def _key_beats(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    for x, y in zip(a[:2], b[:2]):
        if abs(x - y) > _VALUE_TOL * max(1.0, abs(y)):
            return x > y
    return a[2] > b[2]


def _weighted_table(
    options: list[ClassOptions],
    cells: list[np.ndarray],
    keep: list[np.ndarray],
    weights: np.ndarray,
    capacity: int,
) -> Table:
    values = [w * o.acc[m] for o, m, w in zip(options, keep, weights)]
    return knapsack_table(cells, values, capacity)
