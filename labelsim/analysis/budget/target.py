"""Cost to reach a target, measured: ``budget --simulate --target T``.

The prediction (``cost_to_reach``) says at which budget each strategy's *predicted* objective
reaches T. Here each strategy is also trained: its plans at a ladder of budgets around that
predicted cost (``LADDER`` times it; around the sweep's top budget when the prediction never
reaches T) are trained as one batched grid, and a strategy's measured cost is the cost of its
cheapest rung whose mean measured objective reaches T. The ladder's rungs bound the answer:
"reached at $X" means the rung below did not reach T (or was not trained), so the true cost
lies between the two.

The answer is the cheapest rung of any strategy that reached T. Picking the cheapest of many
noisy rungs flatters it (a rung can pass T by chance), so that rung and the cheapest simple
strategy's are trained again on fresh repeats (new seeds) that play no part in choosing; the
verdict quotes those, and says so when the fresh repeats fall short of T.

Training is a callable the caller passes (a ``loop.Trainer``), so this module needs no jax.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from labelsim.analysis.budget.answer import BudgetResult, plan_at
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.plans import OPTIMIZED, build_optimizer, objective_value
from labelsim.analysis.budget.problem import BudgetProblem, minimum_cost

TARGET_DIR = "budget_target"  # RUN_DIR/budget_target/ladder_<digest>, fresh_<digest>: simulated runs

NOT_TRAINED = np.zeros(0)  # a rung's measurements when it could not be trained

# Rungs as multiples of a strategy's predicted cost to reach the target: the predictions
# have been off by a few points of accuracy, which is tens of percent of cost on a flat curve.
LADDER = (0.7, 0.85, 1.0, 1.2, 1.45)


@dataclass(frozen=True)
class Rung:
    """One strategy's plan at one budget of the ladder, with its measurements once trained."""

    strategy: str
    budget: float
    counts: np.ndarray  # (C, T)
    cost: float
    predicted: float  # the predicted objective (nan when the plan is outside the curves)
    measured: np.ndarray = field(default_factory=lambda: np.zeros(0))  # objective per replica

    @property
    def label(self) -> str:
        return f"{self.strategy} @ {self.budget:,.2f}"  # unique: a strategy's rungs differ to the cent

    @property
    def mean(self) -> float:
        return float(np.mean(self.measured)) if len(self.measured) else math.nan

    @property
    def stderr(self) -> float:
        n = len(self.measured)
        return float(np.std(self.measured, ddof=1) / math.sqrt(n)) if n > 1 else math.nan


@dataclass
class TargetAnswer:
    """Every strategy's measured rungs, its cheapest rung reaching the target, and the fresh
    repeats of the answer and of the cheapest simple strategy."""

    target: float
    rungs: list[Rung]
    reached: dict[str, Rung | None]  # strategy -> its cheapest rung reaching the target
    ladder: tuple[float, ...] = LADDER
    fresh: dict[str, Rung] = field(default_factory=dict)  # label -> the rung on fresh repeats

    @property
    def answer(self) -> Rung | None:
        """The cheapest rung of any strategy that reached the target."""
        found = [r for r in self.reached.values() if r is not None]
        return min(found, key=lambda r: (r.cost, -r.mean)) if found else None

    @property
    def best_simple(self) -> Rung | None:
        """The cheapest rung of a simple strategy that reached the target."""
        found = [r for name, r in self.reached.items() if r is not None and name != OPTIMIZED]
        return min(found, key=lambda r: (r.cost, -r.mean)) if found else None


def target_rungs(result: BudgetResult, ladder: Sequence[float] = LADDER) -> list[Rung]:
    """Each strategy's plans at ``ladder`` times its predicted cost to the target (or below
    the sweep's top budget when it never reaches the target), at or above the cheapest useful
    plan; BudgetError when the answer has no target."""
    if result.target is None:
        raise BudgetError("--simulate measures the cost to a target only when --target is given")
    problem = result.problem
    top = max(p["budget"] for curve in result.curves for p in curve["points"])
    low = minimum_cost(problem)
    optimizer = build_optimizer(problem, top * max(ladder))
    rungs = []
    for strategy, cost in result.cost_to_target.items():
        centre = cost if cost is not None else top / max(ladder)
        for budget in sorted({round(centre * f, 2) for f in ladder}):
            if budget < low:
                continue
            plan = plan_at(problem, strategy, budget, optimizer)
            predicted = plan.objective if plan.predicted else math.nan
            rungs.append(Rung(strategy, budget, plan.counts, plan.cost, float(predicted)))
    return rungs


def measure_target(result: BudgetResult, train: Any, repeats: int, ladder: Sequence[float] = LADDER) -> TargetAnswer:
    """Train the rungs (one grid, each purchase once), find each strategy's cheapest rung
    reaching the target, and train the answer and the cheapest simple strategy again on fresh
    repeats (numbered after the ladder's, so new seeds). ``train`` is a ``loop.Trainer``."""
    if repeats < 2:
        raise BudgetError(f"--repeats {repeats}: a measured cost to a target needs a spread; give at least 2")
    problem, target = result.problem, float(result.target)
    rungs = target_rungs(result, ladder)
    measured = _train_once(problem, train, rungs, repeats, 0, "ladder")
    rungs = [replace(r, measured=measured.get(r.counts.tobytes(), NOT_TRAINED)) for r in rungs]
    reached: dict[str, Rung | None] = {}
    for strategy in result.cost_to_target:
        passing = [r for r in rungs if r.strategy == strategy and len(r.measured) and r.mean >= target]
        reached[strategy] = min(passing, key=lambda r: r.cost) if passing else None
    answer = TargetAnswer(target, rungs, reached, tuple(ladder))
    finals = [r for r in (answer.answer, answer.best_simple) if r is not None]
    if finals:
        fresh = _train_once(problem, train, finals, repeats, repeats, "fresh")
        answer.fresh = {r.label: replace(r, measured=fresh.get(r.counts.tobytes(), NOT_TRAINED)) for r in finals}
    return answer


def _train_once(
    problem: BudgetProblem, train: Any, rungs: Sequence[Rung], repeats: int, first: int, name: str
) -> dict[bytes, np.ndarray]:
    """Objective per replica of each distinct purchase among ``rungs`` (missing when it could
    not be trained, e.g. fewer labels than one batch)."""
    candidates: dict[bytes, tuple[str, np.ndarray]] = {}
    for rung in rungs:
        candidates.setdefault(rung.counts.tobytes(), (rung.label, rung.counts))
    # one folder per distinct set of purchases: another question trains beside it, the same resumes
    digest = hashlib.sha256(b"".join(sorted(candidates)) + f"{repeats},{first}".encode()).hexdigest()[:10]
    results = train(list(candidates.values()), repeats, first, f"{name}_{digest}")
    return {
        key: np.asarray(objective_value(problem, results[label]), dtype=float)
        for key, (label, _) in candidates.items()
        if label in results
    }


def target_verdict(answer: TargetAnswer) -> str:
    """One sentence: the cheapest plan measured to reach the target, its fresh repeats, and the
    cheapest simple strategy's cost."""
    goal = f"{100 * answer.target:.1f}%"
    best = answer.answer
    if best is None:
        top = max((r.cost for r in answer.rungs), default=math.nan)
        return f"no plan measured reached {goal} on the ladder (dearest rung {top:,.2f}); raise --max-budget"
    fresh = answer.fresh.get(best.label)
    text = f"cheapest plan measured to reach {goal}: {best.label!r}, cost {best.cost:,.2f}"
    if fresh is not None and len(fresh.measured):
        text += f" ({_pm(fresh)} on fresh repeats"
        text += ")" if fresh.mean >= answer.target else f", below {goal}: not confirmed, the next rung is safer)"
    simple = answer.best_simple
    if simple is None:
        return text + f"; no simple strategy reached {goal} on the ladder"
    if simple is best:
        return text + "; it is a simple strategy"
    saving = 1 - best.cost / simple.cost
    than = f"{100 * saving:.0f}% less" if saving >= 0.005 else "about the same"
    text += f"; the cheapest simple strategy, {simple.label!r}, cost {simple.cost:,.2f} ({than}"
    simple_fresh = answer.fresh.get(simple.label)
    if simple_fresh is not None and len(simple_fresh.measured):
        text += f"; {_pm(simple_fresh)} on fresh repeats"
    return text + ")"


def _pm(rung: Rung) -> str:
    se = "" if math.isnan(rung.stderr) else f" +- {100 * rung.stderr:.1f}"
    return f"{100 * rung.mean:.1f}%{se}"


def _distinct(rungs: Sequence[Rung]) -> list[tuple[str, Rung]]:
    """Rungs that buy the same labels shown once, under all their names ("all crowd = equal per
    class, crowd @ 13.10"), in the order of their first appearance."""
    groups: dict[bytes, list[Rung]] = {}
    for rung in rungs:
        groups.setdefault(rung.counts.tobytes(), []).append(rung)
    out = []
    for group in groups.values():
        if len({r.budget for r in group}) == 1:
            label = " = ".join(r.strategy for r in group) + f" @ {group[0].budget:,.2f}"
        else:
            label = " = ".join(r.label for r in group)
        out.append((label, group[0]))
    return out


def target_to_dict(answer: TargetAnswer) -> dict[str, Any]:
    """The measured cost to the target, JSON-ready."""

    def row(r: Rung) -> dict[str, Any]:
        return {
            "strategy": r.strategy, "budget": r.budget, "cost": r.cost, "label": r.label,
            "predicted": None if math.isnan(r.predicted) else r.predicted,
            "measured": None if math.isnan(r.mean) else r.mean,
            "measured_se": None if math.isnan(r.stderr) else r.stderr,
            "replicas": len(r.measured),
        }  # fmt: skip

    return {
        "target": answer.target,
        "ladder": list(answer.ladder),
        "verdict": target_verdict(answer),
        "rungs": [row(r) | {"label": label} for label, r in _distinct(answer.rungs)],
        "measured_cost": {name: (r.cost if r is not None else None) for name, r in answer.reached.items()},
        "fresh": [row(r) for r in answer.fresh.values()],
    }
