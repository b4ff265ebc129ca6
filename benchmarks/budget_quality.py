"""Do labelsim's budget recommendations measure at least as well as the simple strategies?

Seeded random budget questions (2-4 tiers with random prices and noise rates, dearer tiers
cleaner, random budgets, per-class prices in half of them) on the demo run. Each scenario
runs the closed loop of ``labelsim budget --simulate --rounds K`` (one shared ``--design``
as its prior): round 1 trains the per-class curves' knapsack plan, the cross-class model's
searched plan and every simple strategy; the loop picks its recommendation on those
measurements (a close call, the best plan ahead of the best simple strategy by less than 2
standard errors, is first trained again on ``--confirm-repeats`` new repeats of both), and the
recommendation and the best simple strategy are then trained again on fresh repeats (new
seeds), which decide nothing and give the figures below.

Three recommenders are scored against the best simple strategy's fresh measurement:

- ``per-class curves``: the knapsack plan alone (the answer without ``--rounds``), measured
  on its round-1 repeats, and its confirming ones when it was in a close call (chosen by the
  model, not by measurement, so unbiased);
- ``closed loop, choosing at once``: the loop choosing on the rounds alone (its choice is one
  of the two plans the fresh repeats measure either way);
- ``closed loop``: the loop's recommendation, measured on its fresh repeats.

A win / loss is a difference of more than 2 standard errors (of the difference of two means
over the replicas) either way, else a tie. The prediction error compares, with the fresh
measurement, what each recommender said before it: the curves' prediction of the knapsack
plan; the loop's expectation (its rounds' mean and its model's prediction, weighted by their
precision; the model alone is scored beside it). Where the tiers differ most, the summary also
says whether any plan the search reached beat the best simple strategy in the rounds. Runs go
to ``--work`` and are resumed; results are saved after each scenario to
benchmarks/results/budget_quality.json.

    python run_grid.py --preset demo --out runs/demo
    python benchmarks/budget_quality.py --run runs/demo      # about 90 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from common import RESULTS_DIR, print_table, save_json  # noqa: E402
from labelsim.analysis.budget import (  # noqa: E402
    OPTIMIZED,
    Tier,
    load_context,
    plan_budget,
    prepare_design,
    run_problem,
)
from labelsim.analysis.budget.loop import (  # noqa: E402
    MARGIN_SE,
    LoopAnswer,
    Measured,
    baseline_confusion,
    closed_loop,
    design_observations,
    grid_trainer,
    searched_proposer,
)
from labelsim.config import RunConfig  # noqa: E402
from labelsim.rundir import load_run  # noqa: E402

NAME = "budget_quality"
NOISE_RANGE = (0.0, 0.4)  # the shared design's noise range: every scenario's tiers lie inside it
LABELS_PER_CLASS = (50, 120)  # the cheapest tier's labels per class that a budget buys
SEED_BASE = 1000  # scenario i trains with grid seed SEED_BASE + i (the demo run and design use others)
CONTRAST = (3.0, 5.0)  # "tiers differ": dearest/cheapest price >= 3x and noise ratio >= 5x
LOOP = "closed loop"  # the loop as labelsim runs it: a close call is trained again before the choice
AT_ONCE = "closed loop, choosing at once"  # the same loop choosing on the rounds alone


def scenario(index: int, seed: int, classes: list[str]) -> dict[str, Any]:
    """A seeded random budget question: tiers (cheapest first), budget, per-class prices."""
    rng = np.random.default_rng([seed, index])
    n_tiers = int(rng.integers(2, 5))
    price, noise = float(rng.uniform(0.005, 0.02)), float(rng.uniform(0.15, NOISE_RANGE[1]))
    tiers = []
    for t in range(n_tiers):
        tiers.append({"name": f"t{t}", "price": round(price, 5), "noise": round(noise, 4)})
        price *= float(rng.uniform(1.5, 4.0))
        noise *= float(rng.uniform(0.1, 0.6))
    multipliers = {c: round(float(rng.uniform(0.5, 2.0)), 3) for c in classes} if rng.random() < 0.5 else {}
    per_class = float(rng.uniform(*LABELS_PER_CLASS))
    mult = np.array([multipliers.get(c, 1.0) for c in classes])
    budget = round(float(per_class * tiers[0]["price"] * mult.sum()), 2)
    price_ratio = tiers[-1]["price"] / tiers[0]["price"]
    noise_ratio = tiers[0]["noise"] / max(tiers[-1]["noise"], 1e-9)
    return {
        "index": index, "tiers": tiers, "budget": budget, "class_prices": multipliers,
        "contrast": bool(price_ratio >= CONTRAST[0] and noise_ratio >= CONTRAST[1]),
    }  # fmt: skip


def difference(a: Measured, b: Measured, problem: Any) -> tuple[float, float]:
    """Mean objective of a minus b and the standard error of the difference."""
    return a.mean(problem) - b.mean(problem), math.hypot(a.stderr(problem), b.stderr(problem))


def outcome(gain: float, se: float) -> str:
    """win / tie / loss at 2 standard errors."""
    if gain > 2 * se:
        return "win"
    return "loss" if gain < -2 * se else "tie"


def score(label: str, plan: Measured, predicted: float, simple: Measured, problem: Any) -> dict[str, Any]:
    """One recommender's row: measured, predicted, gain over the best simple strategy."""
    gain, se = (0.0, 0.0) if plan is simple else difference(plan, simple, problem)
    return {
        "recommender": label, "plan": plan.label, "replicas": len(plan.acc),
        "measured": plan.mean(problem), "measured_se": plan.stderr(problem), "predicted": predicted,
        "abs_error": abs(predicted - plan.mean(problem)) if math.isfinite(predicted) else None,
        "gain": gain, "gain_se": se, "outcome": outcome(gain, se),
    }  # fmt: skip


def run_scenario(spec: dict[str, Any], args: argparse.Namespace, context: Any, prior: list, confusion: np.ndarray,
                 run_grid: Any) -> dict[str, Any]:
    """Train one scenario's loop and score both recommenders."""
    tiers = [Tier(t["name"], t["price"], t["noise"]) for t in spec["tiers"]]
    problem = run_problem(context, tiers, spec["budget"], prices=spec["class_prices"])
    result = plan_budget(problem, points=2)
    simple = [p for p in result.strategies if p.strategy != OPTIMIZED]
    # Every scenario its own seeds: with one shared set, the same few initializations and batch
    # orders would tilt every scenario's rounds (or fresh repeats) the same way.
    config = RunConfig.from_dict(context.meta["config"])
    config = dataclasses.replace(config, grid=dataclasses.replace(config.grid, seed=SEED_BASE + spec["index"]))
    train = grid_trainer(problem, config, args.work / f"scenario_{spec['index']:02d}", run_grid, progress=False)
    propose = searched_proposer(result.plan.counts, [p.counts for p in simple], confusion, prior)
    answer: LoopAnswer = closed_loop(problem, simple, propose, train, rounds=args.rounds, repeats=args.repeats,
                                     fresh_repeats=args.fresh_repeats, confirm_repeats=args.confirm_repeats)
    by_counts = {m.counts.tobytes(): m for m in answer.measured}
    knapsack = by_counts[np.asarray(result.plan.counts, dtype=np.int64).tobytes()]
    best_simple = answer.fresh[answer.best_simple.label]
    if knapsack.label == best_simple.label:  # the same purchase: one plan, scored on the same repeats
        knapsack = best_simple
    rows = [score("per-class curves", knapsack, result.plan.objective, best_simple, problem),
            loop_score(AT_ONCE, choosing_at_once(answer, problem), problem),
            loop_score(LOOP, answer, problem)]  # fmt: skip
    strategies = [
        {"strategy": m.label, "measured": m.mean(problem), "measured_se": m.stderr(problem),
         "predicted_curves": next((p.objective for p in simple if p.strategy == m.label), None),
         "predicted_model": m.predicted_objective(problem), "round": m.round, "simple": m.simple,
         "replicas": len(m.acc), "confirming": m.confirming}
        for m in answer.measured
    ]  # fmt: skip
    return {**spec, "recommenders": rows, "plans": strategies, "best_simple": best_simple.label,
            "best_simple_fresh": best_simple.mean(problem), "models": answer.models,
            "verdict": answer.verdict(problem)}  # fmt: skip


def loop_score(label: str, answer: LoopAnswer, problem: Any) -> dict[str, Any]:
    """The loop's row: its recommendation's fresh measurement against its expectation, and the
    model's prediction alone beside it."""
    recommended, best_simple = answer.fresh[answer.recommended], answer.fresh[answer.best_simple.label]
    expected, expected_se = answer.expected(problem)
    model_alone = recommended.predicted_objective(problem)
    row = score(label, recommended, expected, best_simple, problem)
    row.update(expected_se=expected_se, model_predicted=model_alone, confirmed=answer.confirmed,
               model_abs_error=abs(model_alone - recommended.mean(problem)))  # fmt: skip
    return row


def choosing_at_once(answer: LoopAnswer, problem: Any) -> LoopAnswer:
    """The loop as it would have chosen on the rounds alone, without the confirming repeats (the
    same fresh repeats measure it: without confirming, the same two plans are trained fresh)."""
    rounds_only = {m.label: dataclasses.replace(m, acc=m.acc[: len(m.acc) - m.confirming], confirming=0)
                   for m in answer.measured}  # fmt: skip
    chosen, simple = rounds_only[answer.chosen.label], rounds_only[answer.best_simple.label]
    at_once = LoopAnswer(list(rounds_only.values()), chosen, simple, fresh=answer.fresh, models=answer.models)
    gain, se = difference(chosen, simple, problem)
    at_once.recommended = chosen.label if gain > MARGIN_SE * se and gain > 0 else simple.label
    return at_once


def same_plan_scored_once(scenario: dict[str, Any]) -> dict[str, Any]:
    """A recommender whose plan is the best simple strategy itself scores a tie (gain 0) on the
    strategy's fresh repeats; results saved before that rule compared the plan with itself across
    seeds, so they are brought in line here."""
    rows = []
    for r in scenario["recommenders"]:
        if r["plan"] == scenario["best_simple"] and r["gain"] != 0.0:
            fresh = scenario["best_simple_fresh"]
            error = abs(r["predicted"] - fresh) if r["predicted"] is not None else None
            r = {**r, "measured": fresh, "measured_se": None, "abs_error": error, "gain": 0.0, "gain_se": 0.0,
                 "outcome": "tie"}
        rows.append(r)
    return {**scenario, "recommenders": rows}


def summary(scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wins / ties / losses, mean gain and mean absolute prediction error per recommender."""
    rows = []
    for label in ("per-class curves", AT_ONCE, LOOP):
        scored = [(s, next(r for r in s["recommenders"] if r["recommender"] == label)) for s in scenarios]
        gains = [r["gain"] for _, r in scored]
        contrast = [r["gain"] for s, r in scored if s["contrast"]]
        errors = [r["abs_error"] for _, r in scored if r["abs_error"] is not None]
        # The measurement is a mean of a few trainings: even an exact prediction misses it by
        # E|N(0, se)| = se * sqrt(2 / pi). Net of that noise, the error is sqrt(E[err^2] - E[se^2]).
        noisy = [(r["abs_error"], r["measured_se"]) for _, r in scored
                 if r["abs_error"] is not None and r["measured_se"] is not None]  # fmt: skip
        floor = float(np.mean([se for _, se in noisy])) * math.sqrt(2 / math.pi) if noisy else None
        net = math.sqrt(max(0.0, float(np.mean([e * e - se * se for e, se in noisy])))) if noisy else None
        rows.append({
            "recommender": label, "scenarios": len(scored),
            "wins": sum(r["outcome"] == "win" for _, r in scored),
            "ties": sum(r["outcome"] == "tie" for _, r in scored),
            "losses": sum(r["outcome"] == "loss" for _, r in scored),
            "mean_gain_points": 100 * float(np.mean(gains)) if gains else None,
            "contrast_scenarios": len(contrast),
            "contrast_mean_gain_points": 100 * float(np.mean(contrast)) if contrast else None,
            "mean_abs_error_points": 100 * float(np.mean(errors)) if errors else None,
            "error_of_an_exact_prediction_points": 100 * floor if floor is not None else None,
            "rms_error_net_of_measurement_noise_points": 100 * net if net is not None else None,
            "plan_not_the_best_simple": sum(r["plan"] != s["best_simple"] for s, r in scored),
        })  # fmt: skip
        alone = [r["model_abs_error"] for _, r in scored if r.get("model_abs_error") is not None]
        if alone:  # the loop's expectation is its rounds and its model combined; the model alone:
            rows[-1]["mean_abs_error_of_the_model_alone_points"] = 100 * float(np.mean(alone))
    return rows


def search_in_rounds(scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the tiers differ most: did any plan the search reached measure above the best simple
    strategy in the rounds? The best non-simple plan's rounds mean minus the best simple one's."""
    gaps = [searched_against_simple(s) for s in scenarios if s["contrast"]]
    gaps = [g for g in gaps if g is not None]
    return {
        "contrast_scenarios_with_a_searched_plan": len(gaps),
        "best_searched_minus_best_simple_points": 100 * float(np.mean([g for g, _ in gaps])) if gaps else None,
        "above_by_2_se": sum(g > 2 * se for g, se in gaps),
        "below_by_2_se": sum(g < -2 * se for g, se in gaps),
    }


def searched_against_simple(scenario: dict[str, Any]) -> tuple[float, float] | None:
    """The best non-simple plan's rounds mean minus the best simple strategy's, and its standard
    error (None when the search proposed nothing trainable)."""
    plans = [p for p in scenario["plans"] if p["measured_se"] is not None]
    searched = [p for p in plans if not p["simple"]]
    simple = [p for p in plans if p["simple"]]
    if not searched or not simple:
        return None
    a, b = max(searched, key=lambda p: p["measured"]), max(simple, key=lambda p: p["measured"])
    return a["measured"] - b["measured"], math.hypot(a["measured_se"], b["measured_se"])


def train_design(args: argparse.Namespace, context: Any, run_grid: Any) -> list:
    """The shared design over NOISE_RANGE (trained once, reused), as prior observations."""
    span = (Tier("clean", 1.0, NOISE_RANGE[0]), Tier("noisy", 1.0, NOISE_RANGE[1]))
    problem = run_problem(context, span, 1e9)
    design = prepare_design(problem, context, args.design, seed=args.seed, out=args.work / "design")
    if design.needs_training:
        print(f"training the shared design: {args.design} points in {design.out}", flush=True)
        run_grid(design.config, design.out, resume=design.resume, replicas=design.specs, progress=True)
    return design_observations(design.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="the demo run (default runs/demo)")
    parser.add_argument("--work", type=Path, default=Path("runs/budget_quality"), help="where the runs go")
    parser.add_argument("--scenarios", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=4,
                        help="repeats per plan in the rounds (and fresh, unless --fresh-repeats)")
    parser.add_argument("--fresh-repeats", type=int, default=None,
                        help="fresh repeats of the recommendation and the best simple strategy (default --repeats; "
                             "more firm up the measurement the errors are scored against; a rerun with more "
                             "trains only the missing ones)")
    parser.add_argument("--confirm-repeats", type=int, default=None,
                        help="repeats that settle a close call before the choice (default 2 x --repeats; 0: none)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--design", type=int, default=48, help="points of the shared design")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", type=int, default=0,
                        help="start at this scenario (a second process can take the later ones; a run "
                             "without --first then reads their finished runs from --work)")
    parser.add_argument("--name", default=NAME, help=f"results file name under benchmarks/results (default {NAME})")
    args = parser.parse_args(argv)
    if not (args.run / "run.json").exists():
        print(f"error: no run at {args.run}; train it first: python run_grid.py --preset demo --out {args.run}",
              file=sys.stderr)
        return 2
    from labelsim.sim.runner import run_grid

    context = load_context(args.run)
    prior = train_design(args, context, run_grid)
    confusion = baseline_confusion(load_run(args.run))
    args.fresh_repeats = args.fresh_repeats or args.repeats
    args.confirm_repeats = 2 * args.repeats if args.confirm_repeats is None else args.confirm_repeats
    recipe = {"repeats": args.repeats, "fresh_repeats": args.fresh_repeats, "confirm_repeats": args.confirm_repeats,
              "rounds": args.rounds, "design": args.design,
              "seed": args.seed, "margin_se": MARGIN_SE, "noise_range": NOISE_RANGE,
              "labels_per_class": LABELS_PER_CLASS,
              "loop_prediction": "the rounds' mean and the model's prediction, weighted by precision",
              "scenario_seeds": f"{SEED_BASE} + index"}  # fmt: skip
    saved = RESULTS_DIR / f"{args.name}.json"
    done: dict[int, dict] = {}
    if saved.exists():
        old = json.loads(saved.read_text())
        if old.get("recipe") == json.loads(json.dumps(recipe)):
            done = {s["index"]: same_plan_scored_once(s) for s in old.get("scenarios", [])}
    start, ran = time.perf_counter(), 0
    for index in range(args.first, args.scenarios):
        if index in done:
            continue
        spec = scenario(index, args.seed, list(context.classes))
        t0 = time.perf_counter()
        done[index] = {**run_scenario(spec, args, context, prior, confusion, run_grid),
                       "seconds": round(time.perf_counter() - t0, 1)}
        ran += 1
        eta = (time.perf_counter() - start) / ran * (args.scenarios - len(done))
        print(f"scenario {index + 1}/{args.scenarios}: {done[index]['verdict']} "
              f"({done[index]['seconds']:.0f} s; about {eta / 60:.0f} min left)", flush=True)
        scenarios = [done[i] for i in sorted(done)]
        save_json(args.name, {"recipe": recipe, "summary": summary(scenarios),
                              "search_in_rounds": search_in_rounds(scenarios), "scenarios": scenarios})
    scenarios = [done[i] for i in sorted(done)]
    rows = summary(scenarios)
    print_table(rows, list(rows[0]))
    evidence = search_in_rounds(scenarios)
    print("contrast scenarios, best searched plan against the best simple strategy in the rounds:", evidence)
    saved = save_json(args.name, {"recipe": recipe, "summary": rows, "search_in_rounds": evidence,
                                  "scenarios": scenarios})
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
