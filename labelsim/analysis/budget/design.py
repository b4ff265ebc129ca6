"""``--design N`` without the training: a space-filling mix of per-class label counts and noise
rates over the region a budget question can reach, trained as its own run folder, so that a
model in which a class's accuracy depends on every class's counts and noise has data.

Each design point gives every class its own label count (log-uniform between the problem's
floor and ceiling for the class) and its own wrong-label fraction (uniform between the
smallest and the largest tier noise rate), independently of the other classes, so the
points include lopsided and unevenly noisy mixes that the class-balanced grids never train.
The design trains as custom replicas (labels ``design 0``, ``design 1``, ...) in
``RUN_DIR/budget_design``, with ``design.json`` beside the run files recording the points'
recipe (n, seed, repeats, region) and the parent run; a later call with the same recipe reuses
a finished design and resumes a partly trained one. Training itself
(``labelsim.sim.runner.run_grid``) is left to the caller, so nothing here imports jax.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import qmc

from labelsim.analysis.budget.context import RunContext
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.problem import BudgetProblem
from labelsim.analysis.budget.simulation import custom_specs, per_class_accuracy
from labelsim.config import ReplicaSpec, RunConfig
from labelsim.rundir import RUN_FILE, load_run, read_meta, write_json

DESIGN_DIR = "budget_design"
DESIGN_FILE = "design.json"
DESIGN_LABEL = "design"
SAMPLER = "latin hypercube, random-cd"
NOISE_DIGITS = 4  # wrong-label fractions are stored rounded, so the table round-trips exactly

# What a stored design must share with the requested one to be reused.
_RECIPE_KEYS = ("n", "seed", "repeats", "sampler", "region")

DesignPoints = tuple[np.ndarray, np.ndarray]  # labels per class (n, C) int, noise (n, C) float
DesignRow = tuple[np.ndarray, np.ndarray, np.ndarray]  # class sizes, class noise, accuracy (C,)


@dataclass(frozen=True)
class Design:
    """A design run to train or reuse: its config, folder, replicas and state.

    ``state`` is "new" (nothing trained yet), "partial" (to resume) or "finished" (reuse).
    """

    config: RunConfig
    out: Path
    specs: list[ReplicaSpec]
    record: dict[str, Any]
    state: str

    @property
    def needs_training(self) -> bool:
        """True unless the stored design has finished."""
        return self.state != "finished"

    @property
    def resume(self) -> bool:
        """True when a partly trained design is to be continued."""
        return self.state == "partial"


def check_design_args(n: int, repeats: int) -> None:
    """Raise BudgetError for a design size or repeat count that cannot make a design."""
    if n < 2:
        raise BudgetError(f"--design {n}: a design needs at least 2 points; give --design 2 or more (e.g. 48)")
    if repeats < 1:
        raise BudgetError(f"--design-repeats {repeats} must be at least 1")


def design_region(problem: BudgetProblem) -> dict[str, Any]:
    """The region a design covers: per-class label floors and ceilings, tier noise range."""
    rates = problem.noise_rates()
    return {
        "classes": list(problem.classes),
        "floors": [int(v) for v in problem.floors()],
        "ceilings": [int(v) for v in problem.ceilings()],
        "noise": [float(rates.min()), float(rates.max())],
    }


def unit_design(dims: int, n: int, seed: int) -> np.ndarray:
    """n space-filling points in the unit cube [0, 1)^dims, reproducible from the seed.

    A scrambled Latin hypercube, its centered discrepancy lowered by random coordinate swaps
    (scipy's "random-cd"), rather than a Sobol sequence: the number of points is the user's
    (48, say, not a power of two, where Sobol points lose their balance), and every
    one-dimensional projection has exactly one point in each 1/n stratum, so each class's
    count and noise are spread evenly whatever n is.
    """
    sampler = qmc.LatinHypercube(d=dims, scramble=True, optimization="random-cd", seed=seed)
    return sampler.random(n)


def design_points(problem: BudgetProblem, n: int, seed: int = 0) -> DesignPoints:
    """n design points over the problem's region: labels per class (n, C), log-uniform between
    floor and ceiling, and wrong-label fraction per class (n, C), uniform over the tier range."""
    check_design_args(n, 1)
    region = design_region(problem)
    c = len(region["classes"])
    unit = unit_design(2 * c, n, seed)
    lo = np.log(np.maximum(region["floors"], 1))
    hi = np.log(np.maximum(region["ceilings"], 1))
    sizes = np.rint(np.exp(lo + unit[:, :c] * (hi - lo))).astype(np.int64)
    sizes = np.clip(sizes, region["floors"], region["ceilings"])
    low, high = region["noise"]
    noise = np.round(low + unit[:, c:] * (high - low), NOISE_DIGITS)
    return sizes, noise


def design_specs(points: DesignPoints, repeats: int, model: str) -> list[ReplicaSpec]:
    """Custom replicas ("design i"), ``repeats`` per design point."""
    sizes, noise = points
    labelled = [(f"{DESIGN_LABEL} {i}", s, e) for i, (s, e) in enumerate(zip(sizes, noise))]
    return custom_specs(labelled, model, repeats)


def design_record(problem: BudgetProblem, context: RunContext, n: int, seed: int, repeats: int) -> dict[str, Any]:
    """design.json's contents: the recipe of the points and the parent run's identity."""
    return {
        "n": n,
        "seed": seed,
        "repeats": repeats,
        "sampler": SAMPLER,
        "region": design_region(problem),
        "parent": {
            "path": str(context.path),
            "started": context.meta.get("started"),
            "classes": list(context.classes),
        },
    }


def prepare_design(
    problem: BudgetProblem,
    context: RunContext,
    n: int,
    *,
    seed: int = 0,
    repeats: int = 1,
    out: Path | None = None,
) -> Design:
    """The design to train or reuse (default folder RUN_DIR/budget_design); records design.json
    before a fresh design trains. BudgetError when the folder holds another design or run."""
    check_design_args(n, repeats)
    config = RunConfig.from_dict(context.meta["config"])
    out = Path(out) if out is not None else context.path / DESIGN_DIR
    record = design_record(problem, context, n, seed, repeats)
    state = stored_state(out, record)
    if state == "new":
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / DESIGN_FILE, record)
    specs = design_specs(design_points(problem, n, seed), repeats, config.model.name)
    return Design(config, out, specs, record, state)


def stored_state(out: Path, record: dict[str, Any]) -> str:
    """"new", "partial" or "finished" for the design in ``out``; BudgetError when ``out``
    holds a run without design.json, or a design of another run or recipe."""
    has_run = (out / RUN_FILE).exists()
    if not (out / DESIGN_FILE).exists():
        if has_run:
            raise BudgetError(
                f"{out} holds a run that is not a budget design (no {DESIGN_FILE}); "
                "pass --design-out NEW_FOLDER for the design"
            )
        return "new"
    _check_matches(out, read_record(out), record)
    if not has_run:
        return "new"
    return "finished" if read_meta(out).get("status") == "finished" else "partial"


def read_record(out: Path) -> dict[str, Any]:
    """A design folder's design.json; BudgetError when it is unreadable."""
    file = out / DESIGN_FILE
    try:
        stored = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise BudgetError(f"{file} is unreadable ({exc}); delete {out} to train the design again") from None
    if not isinstance(stored, dict):
        raise BudgetError(f"{file} holds no design record; delete {out} to train the design again")
    return stored


def _check_matches(out: Path, stored: dict[str, Any], record: dict[str, Any]) -> None:
    """BudgetError unless the stored design belongs to the same run and recipe."""
    parent, wanted = stored.get("parent") or {}, record["parent"]
    fresh = f"pass --design-out NEW_FOLDER for a new design, or delete {out} to replace it"
    if parent.get("classes") != wanted["classes"] or parent.get("started") != wanted["started"]:
        raise BudgetError(
            f"{out} holds a design of another run ({parent.get('path')}, started "
            f"{parent.get('started')}), not of {wanted['path']} (started {wanted['started']}); {fresh}"
        )
    if stored.get("n") != record["n"]:
        raise BudgetError(
            f"{out} holds a design of {stored.get('n')} points, not {record['n']}: pass --design "
            f"{stored.get('n')} --design-seed {stored.get('seed')} to reuse it, or {fresh}"
        )
    differing = [key for key in _RECIPE_KEYS if stored.get(key) != record[key]]
    if differing:
        raise BudgetError(
            f"{out} holds a design with another {', '.join(differing)} (stored seed "
            f"{stored.get('seed')}, {stored.get('repeats')} repeats); reuse it with the same "
            f"--design-seed, --design-repeats, tiers and class limits, or {fresh}"
        )


def design_note(design: Design) -> str:
    """One line: whether the design was trained, resumed or reused, and its replicas."""
    run = load_run(design.out)
    done = {"new": "trained", "partial": "resumed and finished", "finished": "reused"}[design.state]
    points, repeats = design.record["n"], design.record["repeats"]
    each = f"{repeats} repeat{'s' if repeats != 1 else ''}"
    return (
        f"Design: {done} {len(run.replicas)} replicas ({points} points x {each}, "
        f"{len(run.finished())} finished) in {design.out}"
    )


def load_design(run_dir: str | Path) -> list[DesignRow]:
    """(class sizes, class noise, per-class accuracy) of each finished design replica, from a
    design folder or a run whose budget_design folder holds one."""
    path = Path(run_dir)
    if not (path / DESIGN_FILE).exists() and (path / DESIGN_DIR / DESIGN_FILE).exists():
        path = path / DESIGN_DIR
    if not (path / DESIGN_FILE).exists():
        raise BudgetError(f"{path} holds no budget design ({DESIGN_FILE}); train one with budget --design N")
    run = load_run(path)
    return [
        (np.asarray(r.class_sizes, dtype=np.int64), np.asarray(r.class_noise, dtype=float),
         per_class_accuracy(run.counts[r.replica]))
        for r in run.finished()
        if r.class_sizes is not None and r.class_noise is not None
    ]  # fmt: skip
