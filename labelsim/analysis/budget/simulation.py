"""``--simulate`` without the training: which plans to train, as which custom replicas and
where, and measured beside predicted accuracy once the simulated run has finished.

Training itself (``labelsim.sim.runner.run_grid``) needs jax; the budget command calls it
with a :class:`Simulation` from here, so this module stays jax-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

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
    """A simulated run to train: its config, folder, plans (label -> plans) and replicas."""

    config: RunConfig
    out: Path
    plans: dict[str, list[Plan]]
    specs: list[ReplicaSpec]


def prepare_simulation(
    result: BudgetResult,
    context: RunContext,
    *,
    out: Path | None = None,
    repeats: int | None = None,
    resume: bool = False,
) -> Simulation:
    """The run that trains the distinct plans (default: the run's repeats, in RUN_DIR/budget_sim);
    BudgetError when the folder already holds a run that is not to be resumed."""
    config = RunConfig.from_dict(context.meta["config"])
    repeats = repeats or config.grid.repeats
    out = out or context.path / SIMULATION_DIR
    if (out / "run.json").exists() and not resume:
        raise BudgetError(
            f"{out} already holds a simulated run; pass --resume to continue it "
            "or --simulate-out NEW_FOLDER for a new one"
        )
    plans = simulation_plans(result)
    specs = replica_specs(plans, result.problem, config.model.name, repeats)
    return Simulation(config, out, plans, specs)


def simulation_plans(result: BudgetResult) -> dict[str, list[Plan]]:
    """Plans worth training, grouped by identical purchases (first name -> all its plans);
    plans with a class outside the model's range are left out."""
    groups: dict[bytes, list[Plan]] = {}
    for plan in [result.plan] + [p for p in result.strategies if p.strategy != OPTIMIZED]:
        if plan.predicted:
            groups.setdefault(plan.counts.tobytes(), []).append(plan)
    return {plans[0].strategy: plans for plans in groups.values()}


def replica_specs(
    plans: dict[str, list[Plan]], problem: BudgetProblem, model: str, repeats: int
) -> list[ReplicaSpec]:
    """One custom replica per distinct plan and repeat."""
    points = [(label, group[0].labels, group[0].class_noise(problem)) for label, group in plans.items()]
    return custom_specs(points, model, repeats)


def custom_specs(
    points: Iterable[tuple[str, Sequence[int], Sequence[float]]], model: str, repeats: int, first_repeat: int = 0
) -> list[ReplicaSpec]:
    """Custom replicas, ``repeats`` per point (label, labels per class, wrong-label fraction
    per class), numbered from ``first_repeat`` (other numbers: other seeds); the overall noise
    rate is the label-weighted mean of the classes' rates."""
    specs = []
    for label, class_sizes, class_noise in points:
        sizes = tuple(int(n) for n in class_sizes)
        noise = tuple(float(e) for e in class_noise)
        overall = float(np.dot(sizes, noise) / max(sum(sizes), 1))
        for repeat in range(first_repeat, first_repeat + repeats):
            specs.append(ReplicaSpec(
                replica=len(specs), experiment="custom", repeat=repeat, noise_model="shuffle",
                noise_rate=overall, train_size=sum(sizes), model=model,
                class_sizes=sizes, class_noise=noise, label=label,
            ))  # fmt: skip
    return specs


def compare_simulation(
    sim_dir: Path, plans: dict[str, list[Plan]], classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Measured-vs-predicted rows of a simulated run directory."""
    measured = read_measured(sim_dir)
    by_strategy: dict[str, np.ndarray] = {}
    flat = []
    for label, group in plans.items():
        for plan in group:
            flat.append(plan)
            if label in measured:
                by_strategy[plan.strategy] = measured[label]
    return measured_vs_predicted(flat, by_strategy, classes)


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
