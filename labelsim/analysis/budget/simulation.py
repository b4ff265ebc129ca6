"""``--simulate`` without the training: which plans to train, as which custom replicas and
where, and measured beside predicted accuracy once the simulated run has finished.

Training itself (``labelsim.sim.runner.run_grid``) needs jax; the budget command calls it
with a :class:`Simulation` from here, so this module stays jax-free.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from labelsim.analysis.budget.answer import BudgetResult, measured_vs_predicted
from labelsim.analysis.budget.context import RunContext
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.plans import OPTIMIZED, Plan
from labelsim.analysis.budget.problem import BudgetProblem
from labelsim.rundir import load_run
from labelsim.config import ReplicaSpec, RunConfig

SIMULATION_DIR = "budget_sim"
_FINISHED = "finished"


@dataclass(frozen=True)
class Simulation:
    """A simulated run to train: its config, folder, plans (label -> plans) and replicas (per
    group of ``grouping`` when it is given, else per class)."""

    config: RunConfig
    out: Path
    plans: dict[str, list[Plan]]
    specs: list[ReplicaSpec]
    grouping: str = ""


def prepare_simulation(
    result: BudgetResult,
    context: RunContext,
    *,
    out: Path | None = None,
    repeats: int | None = None,
    resume: bool = False,
    grouping: str = "",
) -> Simulation:
    """The run that trains the distinct plans (default: the run's repeats, in RUN_DIR/budget_sim);
    BudgetError when the folder already holds a run that is not to be resumed. With ``grouping``
    the plans' units are that grouping's groups (e.g. clusters) instead of classes."""
    config = RunConfig.from_dict(context.meta["config"])
    repeats = repeats or config.grid.repeats
    out = out or context.path / SIMULATION_DIR
    if (out / "run.json").exists() and not resume:
        raise BudgetError(
            f"{out} already holds a simulated run; pass --resume to continue it "
            "or --simulate-out NEW_FOLDER for a new one"
        )
    plans = simulation_plans(result)
    specs = replica_specs(plans, result.problem, config.model.name, repeats, grouping)
    return Simulation(config, out, plans, specs, grouping)


def describe_training(plans: Sequence[tuple[str, Plan]], replicas: int, out: Path) -> str:
    """What a simulated run is about to train, before it starts: a line for the run, then one per plan
    with its name(s), labels, cost and the accuracy the per-class curves predict for it."""
    lines = [f"training {len(plans)} plans ({replicas} replicas) in {out}:"]
    for name, plan in plans:
        predicted = f"{100 * plan.objective:.1f}%" if plan.predicted else "- (outside the curves)"
        lines.append(f"  {name}: {int(plan.labels.sum()):,} labels, cost {plan.cost:,.2f}, predicted {predicted}")
    return "\n".join(lines)


def simulation_plans(result: BudgetResult) -> dict[str, list[Plan]]:
    """Plans worth training, grouped by identical purchases (first name -> all its plans);
    plans with a class outside the model's range are left out."""
    groups: dict[bytes, list[Plan]] = {}
    for plan in [result.plan] + [p for p in result.strategies if p.strategy != OPTIMIZED]:
        if plan.predicted:
            groups.setdefault(plan.counts.tobytes(), []).append(plan)
    return {plans[0].strategy: plans for plans in groups.values()}


def replica_specs(
    plans: dict[str, list[Plan]], problem: BudgetProblem, model: str, repeats: int, grouping: str = ""
) -> list[ReplicaSpec]:
    """One custom replica per distinct plan and repeat (per group of ``grouping`` when given)."""
    points = [(label, group[0].labels, group[0].class_noise(problem)) for label, group in plans.items()]
    return custom_specs(points, model, repeats, grouping=grouping)


def custom_specs(
    points: Iterable[tuple[str, Sequence[int], Sequence[float]]], model: str, repeats: int, first_repeat: int = 0,
    grouping: str = "",
) -> list[ReplicaSpec]:
    """Custom replicas, ``repeats`` per point (label, labels per unit, wrong-label fraction
    per unit), numbered from ``first_repeat`` (other numbers: other seeds); the units are classes,
    or the groups of ``grouping`` when given. The overall noise rate is the label-weighted mean of
    the units' rates."""
    specs = []
    for label, class_sizes, class_noise in points:
        sizes = tuple(int(n) for n in class_sizes)
        noise = tuple(float(e) for e in class_noise)
        overall = float(np.dot(sizes, noise) / max(sum(sizes), 1))
        per_unit = (dict(grouping=grouping, group_sizes=sizes, group_noise=noise) if grouping
                    else dict(class_sizes=sizes, class_noise=noise))
        for repeat in range(first_repeat, first_repeat + repeats):
            specs.append(ReplicaSpec(
                replica=len(specs), experiment="custom", repeat=repeat, noise_model="shuffle",
                noise_rate=overall, train_size=sum(sizes), model=model, label=label, **per_unit,
            ))  # fmt: skip
    return specs


def compare_simulation(
    sim_dir: Path, plans: dict[str, list[Plan]], classes: Sequence[str],
    measured: Mapping[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Measured-vs-predicted rows of a simulated run directory; identical plans are one plan,
    shown once under all their names ("all crowd = equal per class, crowd"). ``measured``: each
    label's per-unit accuracy (replicas, units) when the units are not the classes (default: per
    class, ``read_measured``)."""
    measured = read_measured(sim_dir) if measured is None else measured
    by_strategy: dict[str, np.ndarray] = {}
    merged, names = [], {}
    for label, group in plans.items():
        plan = dataclasses.replace(group[0], strategy=" = ".join(p.strategy for p in group))
        merged.append(plan)
        names[plan.strategy] = [p.strategy for p in group]
        if label in measured:
            by_strategy[plan.strategy] = measured[label]
    rows = measured_vs_predicted(merged, by_strategy, classes)
    return [row | {"names": names[row["strategy"]]} for row in rows]


def simulation_verdict(rows: Sequence[dict[str, Any]]) -> str:
    """One line: the optimized plan's measured mean per-class accuracy against the best measured
    simple strategy's: better or worse when they differ by more than 2 standard errors of the
    difference, else the same within the spread."""
    overall = [r for r in rows if r["class"] == "overall"]
    ours = next((r for r in overall if OPTIMIZED in r["names"]), None)
    if ours is None:
        return "no replica of the optimized plan finished; nothing to compare"
    if len(ours["names"]) > 1:
        others = ", ".join(repr(n) for n in ours["names"] if n != OPTIMIZED)
        return f"the optimized plan is the simple strategy {others} itself: measured {100 * ours['measured']:.1f}%"
    rivals = [r for r in overall if r is not ours]
    if not rivals:
        return "no simple strategy finished; nothing to compare the optimized plan with"
    best = max(rivals, key=lambda r: r["measured"])
    if ours["measured_sd"] is None or best["measured_sd"] is None:
        return (f"the optimized plan measured {100 * ours['measured']:.1f}% and {best['strategy']!r} "
                f"{100 * best['measured']:.1f}% on 1 replica: too few to compare; use --repeats 3 or more")
    gain = ours["measured"] - best["measured"]
    se = math.hypot(ours["measured_sd"] / math.sqrt(ours["replicas"]), best["measured_sd"] / math.sqrt(best["replicas"]))
    if gain > 2 * se:
        word = "better than"
    elif gain < -2 * se:
        word = "worse than"
    else:
        word = "the same, within the spread, as"
    text = (f"the optimized plan measured {100 * ours['measured']:.1f}%, {word} the best simple strategy "
            f"{best['strategy']!r} at {100 * best['measured']:.1f}% ({100 * gain:+.1f} +- {100 * se:.1f} points)")
    if gain < -2 * se:
        text += f": prefer {best['strategy']!r}, or let --rounds search and decide by simulation"
    return text


def read_measured(sim_dir: Path) -> dict[str, np.ndarray]:
    """Per-class accuracy (replicas, K) of each label's finished replicas in a run directory."""
    run = load_run(sim_dir)
    out: dict[str, list[np.ndarray]] = {}
    for rep in run.replicas:
        if rep.status != _FINISHED:
            continue
        out.setdefault(rep.label, []).append(per_class_accuracy(run.counts[rep.replica]))
    return {label: np.stack(values) for label, values in out.items()}


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Per-class accuracy (C,) of a confusion matrix (rows true): diagonal over row sums
    (nan for a class with no test images)."""
    matrix = np.asarray(matrix, dtype=float)
    rows = matrix.sum(axis=1)
    return np.divide(np.diag(matrix), rows, out=np.full(len(rows), np.nan), where=rows > 0)
