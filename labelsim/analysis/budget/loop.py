"""Closing the loop by simulation: the model proposes plans, the simulator decides.

Each round trains, as one batched grid, the plans the model rates best (with a few
perturbations of them) and every simple strategy; their measured per-class accuracies become
observations for the next round's model. After the last round the best *measured* plan is
compared with the best simple strategy on fresh repeats (new seeds, no part in choosing it):
choosing the best of many measured plans flatters it (the winner's curse), so the accuracy
reported for the recommendation comes from those fresh repeats only, and a plan that
measures below the best simple strategy there is never the recommendation.

Training is a callable the caller passes (the command trains with ``labelsim.sim.runner``),
so this module stays jax-free and testable with a stand-in simulator.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from labelsim.analysis.budget.crossclass import Observation, curve_predictor, select_model
from labelsim.analysis.budget.curves import Predictor
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.plans import Plan, _effective_noise, evaluate_plan, objective_value, plan_cost
from labelsim.analysis.budget.problem import BudgetProblem
from labelsim.analysis.budget.design import load_design
from labelsim.analysis.budget.search import feasible, local_search
from labelsim.analysis.budget.simulation import custom_specs, describe_training, read_measured
from labelsim.config import ReplicaSpec, RunConfig
from labelsim.rundir import Run, load_run
from labelsim.rundir.store import grid_point

LOOP_DIR = "budget_loop"  # RUN_DIR/budget_loop/round_1, ..., fresh: one simulated run each

# A searched plan is recommended only when its rounds' mean beats the best simple strategy's
# by more than this many standard errors of the difference (a guard against replica noise).
MARGIN_SE = 2.0

# Confirming repeats (a close call's extra trainings) are numbered from here: a range the rounds'
# repeats (0..) and the fresh ones (after the rounds') never reach, so they are new seeds.
CONFIRM_FIRST = 1_000_000

# A plan to train: (label, counts (C, T)).
Candidate = tuple[str, np.ndarray]
# (candidates, repeats, first repeat, round name) -> label -> per-class accuracy (replicas, C)
Trainer = Callable[[Sequence[Candidate], int, int, str], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Proposal:
    """A round's candidate plans and the model that chose them; the model also predicts every
    plan the round trains (the simple strategies too), before it is trained."""

    candidates: list[Candidate]
    predict: Predictor
    model: str = "separable curves"  # what the model is, with its held-out error when known
    error: float = math.nan  # the model's held-out mean absolute error of overall accuracy


# (problem, observations so far, round) -> the plans the model rates best, and the model
Proposer = Callable[[BudgetProblem, list["Measured"], int], Proposal]


@dataclass(frozen=True)
class Measured:
    """A plan and the per-class accuracies its trained replicas measured."""

    label: str
    counts: np.ndarray  # (C, T)
    acc: np.ndarray  # (replicas, C)
    simple: bool = False
    round: int = 0
    predicted: np.ndarray | None = None  # (C,) the round's model, before training
    model_error: float = math.nan  # that model's held-out mean absolute error of overall accuracy
    confirming: int = 0  # of the replicas, those a close call added after the rounds

    def predicted_objective(self, problem: BudgetProblem) -> float:
        """The objective the model predicted for the plan (nan without a prediction)."""
        if self.predicted is None or not np.all(np.isfinite(self.predicted)):
            return math.nan
        return float(objective_value(problem, self.predicted))

    def objective(self, problem: BudgetProblem) -> np.ndarray:
        """The objective of each replica (replicas,)."""
        return np.asarray(objective_value(problem, self.acc), dtype=float)

    def mean(self, problem: BudgetProblem) -> float:
        """Mean objective over the replicas."""
        return float(np.mean(self.objective(problem)))

    def stderr(self, problem: BudgetProblem) -> float:
        """Standard error of the mean objective (nan with one replica)."""
        values = self.objective(problem)
        return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan

    def class_noise(self, problem: BudgetProblem) -> np.ndarray:
        """Wrong-label fraction per class (C,)."""
        return _effective_noise(problem, self.counts)


@dataclass
class LoopAnswer:
    """The loop's measurements and its recommendation."""

    measured: list[Measured]
    chosen: Measured  # the best measured plan of the rounds
    best_simple: Measured  # the best measured simple strategy of the rounds
    fresh: dict[str, Measured] = field(default_factory=dict)  # label -> fresh repeats
    recommended: str = ""  # label of the recommendation
    models: list[str] = field(default_factory=list)  # each round's model
    confirmed: bool = False  # the close call between chosen and best_simple was trained again

    def fresh_gain(self, problem: BudgetProblem) -> tuple[float, float]:
        """The recommendation's fresh mean minus the best simple strategy's, and its standard
        error (0, 0 when the simple strategy is the recommendation)."""
        return _difference(self.fresh[self.recommended], self.fresh[self.best_simple.label], problem)

    def expected(self, problem: BudgetProblem) -> tuple[float, float]:
        """What the recommendation should measure on new trainings, and its standard error,
        from what was known before the fresh repeats: the rounds' mean of the plan and the
        model's prediction of it, each weighted by its precision. The model's error is the
        larger of its held-out error (a mean absolute error, so times sqrt(pi / 2) for a
        standard deviation) and its root mean squared error on the rounds' other plans, net of
        their measurement noise: a model that missed the plans beside this one is not trusted
        on it. Either alone when the other is unknown."""
        plan = self.chosen if self.recommended == self.chosen.label else self.best_simple
        mean, se = plan.mean(problem), plan.stderr(problem)
        predicted, model_var = plan.predicted_objective(problem), self._model_variance(problem, plan)
        if not (math.isfinite(predicted) and model_var > 0):
            return mean, se
        if not (math.isfinite(se) and se > 0):
            return predicted, math.sqrt(model_var)
        w_rounds, w_model = se**-2, 1 / model_var
        return (w_rounds * mean + w_model * predicted) / (w_rounds + w_model), (w_rounds + w_model) ** -0.5

    def _model_variance(self, problem: BudgetProblem, plan: Measured) -> float:
        """The larger of the model's held-out variance and its mean squared miss on the rounds'
        other plans net of their measurement noise (nan when neither is known)."""
        held_out = (plan.model_error * math.sqrt(math.pi / 2)) ** 2
        misses = []
        for m in self.measured:
            predicted, se = m.predicted_objective(problem), m.stderr(problem)
            if m is not plan and math.isfinite(predicted) and math.isfinite(se):
                misses.append((predicted - m.mean(problem)) ** 2 - se**2)
        if not misses:
            return held_out
        return max(float(np.mean(misses)), held_out if math.isfinite(held_out) else 0.0)

    def verdict(self, problem: BudgetProblem) -> str:
        """One sentence: what is recommended and why, with the fresh measurements."""
        simple = self.fresh[self.best_simple.label]
        on_fresh = f"{_pct(simple.mean(problem))} on fresh repeats"
        where = "in the rounds"
        if self.confirmed:
            where += f" and {self.chosen.confirming} confirming repeats each"
        if self.recommended == simple.label:
            if self.chosen.label == simple.label:
                return (f"no plan the search reached measured better than {simple.label!r} in the rounds; "
                        f"it is the recommendation ({on_fresh})")
            gain, se = _difference(self.chosen, self.best_simple, problem)
            chosen = self.fresh[self.chosen.label]
            return (f"the best searched plan {chosen.label!r} measured {gain * 100:+.1f} +- {se * 100:.1f} "
                    f"points over {simple.label!r} {where}, within {MARGIN_SE:g} standard errors: "
                    f"{simple.label!r} is the recommendation ({on_fresh}; {chosen.label!r} "
                    f"{_pct(chosen.mean(problem))})")
        rec = self.fresh[self.recommended]
        gain, se = self.fresh_gain(problem)
        text = (f"{rec.label!r} measured {_pct(rec.mean(problem))} on fresh repeats, {gain * 100:+.1f} "
                f"+- {se * 100:.1f} points over {simple.label!r} ({_pct(simple.mean(problem))})")
        if gain <= 0:
            text += (f"; the fresh repeats do not confirm the rounds' gain, so it is not shown to be better than "
                     f"{simple.label!r}, which is the safer choice")
        return text


def _difference(a: Measured, b: Measured, problem: BudgetProblem) -> tuple[float, float]:
    """Mean objective of a minus b, and the standard error of that difference (0 for a == b)."""
    if a is b or a.label == b.label:
        return 0.0, 0.0
    return a.mean(problem) - b.mean(problem), math.hypot(a.stderr(problem), b.stderr(problem))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def check_loop_args(rounds: int, repeats: int, fresh_repeats: int | None = None,
                    confirm_repeats: int | None = None) -> None:
    """Rounds and repeats the loop can use, or a BudgetError that says what to give."""
    if rounds < 1:
        raise BudgetError(f"--rounds {rounds}: give at least 1 round of simulation (e.g. --rounds 2)")
    if repeats < 2:
        raise BudgetError(f"--repeats {repeats}: the loop compares plans by their spread; give at least 2")
    if fresh_repeats is not None and fresh_repeats < 2:
        raise BudgetError(f"--fresh-repeats {fresh_repeats}: the recommendation's figure needs a spread; "
                          "give at least 2 (default: --repeats)")
    if confirm_repeats is not None and (confirm_repeats < 0 or confirm_repeats == 1):
        raise BudgetError(f"--confirm-repeats {confirm_repeats}: give 0 (choose without confirming) or at "
                          "least 2 (default: 2 x --repeats)")


def closed_loop(
    problem: BudgetProblem,
    simple: Sequence[Plan],
    propose: Proposer,
    train: Trainer,
    *,
    rounds: int,
    repeats: int,
    fresh_repeats: int | None = None,
    confirm_repeats: int = 0,
) -> LoopAnswer:
    """Train the proposed plans and the simple strategies for ``rounds`` rounds; recommend the
    best measured plan only if it beat the best simple strategy there by more than
    ``MARGIN_SE`` standard errors (else the simple strategy); then measure both on
    ``fresh_repeats`` fresh repeats (default ``repeats``; more make the reported figure firmer,
    and a later call with more adds only the missing ones).

    A close call (the best plan ahead, but within the margin) is trained again on
    ``confirm_repeats`` new repeats of both plans before the choice, which is then made on all
    their repeats: replica noise, not the plans, decides most close calls at a few repeats."""
    fresh_repeats = repeats if fresh_repeats is None else fresh_repeats
    check_loop_args(rounds, repeats, fresh_repeats, confirm_repeats)
    measured: dict[bytes, Measured] = {}
    models: list[str] = []
    simple_plans = [(p.strategy, p.counts) for p in simple if p.predicted or np.all(p.counts.sum(1) > 0)]
    if not simple_plans:
        raise BudgetError("no simple strategy can be trained at this budget; raise --budget")
    for round_ in range(1, rounds + 1):
        proposal = propose(problem, list(measured.values()), round_)
        # simple strategies first: a proposal that buys what one of them buys is that strategy
        fresh_candidates = _new_candidates((simple_plans if round_ == 1 else []) + proposal.candidates, measured)
        if not fresh_candidates:
            break
        models.append(proposal.model)
        results = train(fresh_candidates, repeats, 0, f"round_{round_}")
        simple_keys = {np.asarray(counts, dtype=np.int64).tobytes() for _, counts in simple_plans}
        for label, counts in fresh_candidates:
            if label in results:
                predicted = _predict(problem, proposal.predict, counts)
                measured[counts.tobytes()] = Measured(
                    label, counts, results[label], counts.tobytes() in simple_keys, round_, predicted,
                    proposal.error,
                )
    found = list(measured.values())
    simples = [m for m in found if m.simple]
    if not simples:
        raise BudgetError("no simple strategy finished training; see the simulated runs' replicas.csv")
    best_simple = max(simples, key=lambda m: m.mean(problem))
    chosen = max(found, key=lambda m: m.mean(problem))
    gain, se = _difference(chosen, best_simple, problem)
    confirmed = chosen.label != best_simple.label and 0 < gain <= MARGIN_SE * se and confirm_repeats > 0
    if confirmed:
        pair = [(best_simple.label, best_simple.counts), (chosen.label, chosen.counts)]
        results = train(pair, confirm_repeats, CONFIRM_FIRST, "confirm")
        if best_simple.label not in results or chosen.label not in results:
            raise BudgetError("the confirming repeats did not finish; run the same command again to resume them")
        more = {m.label: _with_confirming(m, results[m.label]) for m in (best_simple, chosen)}
        found = [more.get(m.label, m) for m in found]
        best_simple, chosen = more[best_simple.label], more[chosen.label]
    answer = LoopAnswer(found, chosen, best_simple, models=models, confirmed=confirmed)
    finals = [(best_simple.label, best_simple.counts)]
    if chosen.label != best_simple.label:
        finals.append((chosen.label, chosen.counts))
    results = train(finals, fresh_repeats, repeats, "fresh")  # numbered after the rounds' repeats: new seeds
    rounds_of = {best_simple.label: best_simple, chosen.label: chosen}
    answer.fresh = {
        label: dataclasses.replace(rounds_of[label], acc=results[label], confirming=0)
        for label, _ in finals if label in results
    }
    if best_simple.label not in answer.fresh or chosen.label not in answer.fresh:
        raise BudgetError("the fresh repeats did not finish; run the same command again to resume them")
    gain, se = _difference(chosen, best_simple, problem)
    answer.recommended = chosen.label if gain > MARGIN_SE * se and gain > 0 else best_simple.label
    return answer


def _with_confirming(m: Measured, acc: np.ndarray) -> Measured:
    """The plan with its confirming replicas added to its rounds' ones."""
    return dataclasses.replace(m, acc=np.concatenate([m.acc, acc]), confirming=len(acc))


def _predict(problem: BudgetProblem, predict: Predictor, counts: np.ndarray) -> np.ndarray:
    """A predictor's per-class accuracy (C,) for a plan."""
    n = counts.sum(axis=1)
    return np.asarray(predict(n.astype(float), _effective_noise(problem, counts)), dtype=float)


def _new_candidates(candidates: Sequence[Candidate], measured: dict[bytes, Measured]) -> list[Candidate]:
    """Candidates whose purchase has not been trained yet, each purchase once."""
    seen: set[bytes] = set(measured)
    out: list[Candidate] = []
    for label, counts in candidates:
        counts = np.asarray(counts, dtype=np.int64)
        key = counts.tobytes()
        if key not in seen:
            seen.add(key)
            out.append((label, counts))
    return out


# Fewer observations than this and the cross-class forms are not fitted (5-fold held-out
# error needs a few replicas per fold); the separable curves then rate the plans.
MIN_OBSERVATIONS = 10


def searched_proposer(
    knapsack: np.ndarray,
    starts: Sequence[np.ndarray],
    confusion: np.ndarray,
    prior: Sequence[Observation] = (),
) -> Proposer:
    """Round 1: the knapsack plan and the best plan a local search finds from it and from
    ``starts`` (e.g. the simple strategies) on the best cross-class model of ``prior`` (a
    designed grid); later rounds: the search again on the model refitted with every replica
    measured so far. The model is chosen by held-out error (``select_model``)."""

    def propose(problem: BudgetProblem, measured: list[Measured], round_: int) -> list[Candidate]:
        observations = list(prior) + [
            Observation(m.counts.sum(axis=1), m.class_noise(problem), acc) for m in measured for acc in m.acc
        ]
        predict: Predictor = curve_predictor(problem)
        model = f"separable curves ({len(observations)} observations: too few for a cross-class model)"
        overall_error = math.nan
        if len(observations) >= MIN_OBSERVATIONS:
            selection = select_model(observations, confusion, predict)
            predict = selection.model
            error = selection.error_of(selection.form)
            overall_error = error.overall
            model = (f"{selection.form} ({len(observations)} observations; held-out error per class "
                     f"{100 * error.per_class:.1f}, overall {100 * error.overall:.1f} points)")
        found = [local_search(problem, predict, start) for start in (knapsack, *starts) if _feasible(problem, start)]
        best = max(found, key=lambda r: (r.objective, -plan_cost(problem, r.counts)))
        proposals = [(f"searched, round {round_}", best.counts)]
        first = [("optimized (knapsack)", np.asarray(knapsack))] if round_ == 1 else []
        return Proposal(first + proposals, predict, model, overall_error)

    return propose


def _feasible(problem: BudgetProblem, counts: np.ndarray) -> bool:
    return bool(feasible(problem, np.asarray(counts, dtype=np.int64)[None])[0])


def baseline_confusion(run: Run) -> np.ndarray:
    """Confusion rates (C, C) of the run's clean full-size replicas, rows summing to 1."""
    full = max((r.train_size for r in run.finished() if not r.is_custom), default=0)
    clean = [r.replica for r in run.finished() if not r.is_custom and r.noise_rate == 0 and r.train_size == full]
    if not clean:
        raise BudgetError(f"{run.path} has no finished clean full-size replica to take confusions from")
    counts = run.counts[clean].sum(axis=0).astype(float)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)


def loop_to_dict(answer: LoopAnswer, problem: BudgetProblem, classes: Sequence[str]) -> dict:
    """The loop's measurements and recommendation, JSON-ready."""

    def row(m: Measured, stage: str) -> dict:
        return {
            "label": m.label, "stage": stage, "simple": m.simple, "round": m.round,
            "labels_per_class": dict(zip(classes, m.counts.sum(axis=1).tolist())),
            "labels_per_tier": dict(zip((t.name for t in problem.tiers), m.counts.sum(axis=0).tolist())),
            "cost": plan_cost(problem, m.counts), "replicas": len(m.acc),
            "confirming": m.confirming if stage == "rounds" else 0,
            "measured": m.mean(problem), "measured_se": _finite(m.stderr(problem)),
            "measured_per_class": dict(zip(classes, m.acc.mean(axis=0).tolist())),
            "predicted": _finite(m.predicted_objective(problem)),
        }  # fmt: skip

    gain, se = answer.fresh_gain(problem)
    expected, expected_se = answer.expected(problem)
    return {
        "recommended": answer.recommended,
        "expected": expected,
        "expected_se": _finite(expected_se),
        "best_simple": answer.best_simple.label,
        "verdict": answer.verdict(problem),
        "fresh_gain": gain,
        "fresh_gain_se": se,
        "margin_se": MARGIN_SE,
        "confirmed": answer.confirmed,
        "models": answer.models,
        "rounds": [row(m, "rounds") for m in answer.measured],
        "fresh": [row(m, "fresh") for m in answer.fresh.values()],
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def grid_trainer(problem: BudgetProblem, config: RunConfig, base: Path, run_grid: Callable[..., Any], *,
                 progress: bool = True) -> Trainer:
    """A Trainer that trains each call's plans as one simulated run ``base/NAME`` with
    ``run_grid`` (``labelsim.sim.runner.run_grid``; passed in, so this module needs no jax) and
    reads their per-class accuracies; a run folder that exists is resumed, and grows when more
    repeats are asked for than it holds (its stored replicas are kept and read too). A plan with
    fewer labels than one training batch (a dear tier at a small budget) is not trained, so it has
    no measurement."""

    def train(candidates: Sequence[Candidate], repeats: int, first: int, name: str) -> dict[str, np.ndarray]:
        points = [
            (label, counts.sum(axis=1), _effective_noise(problem, counts))
            for label, counts in candidates
            if counts.sum() >= config.recipe.batch_size  # fewer labels than one batch: not trainable
        ]
        out = Path(base) / name
        specs = custom_specs(points, config.model.name, repeats, first_repeat=first)
        resume = (out / "run.json").exists()
        if resume:  # repeats it holds beyond those asked for stay part of it
            specs = _with_stored(specs, out)
        trained = {label for label, _, _ in points}
        plans = [(label, evaluate_plan(problem, label, counts, intervals=False))
                 for label, counts in candidates if label in trained]  # fmt: skip
        print(describe_training(plans, len(specs), out), file=sys.stderr, flush=True)
        run_grid(config, out, resume=resume, replicas=specs, progress=progress, grow=True)
        return read_measured(out)

    return train


def _with_stored(specs: list[ReplicaSpec], out: Path) -> list[ReplicaSpec]:
    """``specs`` and, after them, the replicas ``out`` stores that they lack (renumbered)."""
    wanted = {grid_point(spec) for spec in specs}
    stored = [r.spec for r in load_run(out).replicas if grid_point(r.spec) not in wanted]
    return specs + [dataclasses.replace(spec, replica=len(specs) + i) for i, spec in enumerate(stored)]


def design_observations(design_dir: Path) -> list[Observation]:
    """The finished replicas of a --design run as observations (none when there is no design)."""
    if not (Path(design_dir) / "run.json").exists():
        return []
    return [Observation(*row) for row in load_design(design_dir)]
