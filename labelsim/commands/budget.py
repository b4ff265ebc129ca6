"""``python -m labelsim budget RUN_DIR``: plan a labeling budget on a run's per-class curves.

Example::

    python -m labelsim budget runs/demo --budget 2000 \\
        --tier crowd:0.04:0.20 --tier expert:0.15:0.02 --target 0.87

prints the optimized plan (labels per class and tier, cost, predicted accuracy with
intervals), the same budget spent by simple strategies, and the cost of reaching the target
with each. ``--simulate`` trains the plans as one batched grid and sets the measured
accuracies beside the predicted ones. ``--design N`` first trains (or reuses) N space-filling
mixes of per-class label counts and noise rates as RUN_DIR/budget_design, data for a model in
which every class's counts and noise matter to each class. The predictive model and its
limits are described in ``labelsim.analysis.budget``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Sequence

from labelsim.analysis.budget import (
    DEFAULT_MAX_RATIO,
    DESIGN_DIR,
    SIMULATION_DIR,
    BudgetError,
    BudgetProblem,
    BudgetResult,
    RunContext,
    Tier,
    answer_payload,
    check_design_args,
    check_tiers,
    compare_simulation,
    design_note,
    load_context,
    measure_title,
    parse_class_values,
    parse_tier,
    plan_budget,
    prepare_design,
    prepare_simulation,
    run_problem,
    save_result,
)
from labelsim.analysis.budget.loop import (
    LOOP_DIR,
    LoopAnswer,
    baseline_confusion,
    check_loop_args,
    closed_loop,
    design_observations,
    grid_trainer,
    loop_to_dict,
    searched_proposer,
)
from labelsim.analysis.budget.plans import OPTIMIZED
from labelsim.analysis.budget.problem import check_budget_size
from labelsim.analysis.budget.simulation import describe_training, simulation_verdict
from labelsim.analysis.budget.target import TARGET_DIR, TargetAnswer, measure_target, target_to_dict
from labelsim.analysis.by_cluster import (
    GROUPING,
    SAVED_BUDGET,
    cluster_context,
    cluster_groupings,
    measured_by_cluster,
    simulate_refusal,
)
from labelsim.analysis.saved_budget import SAVED_NAME
from labelsim.analysis.units import CLASS, CLUSTER
from labelsim.config import ConfigError, RunConfig
from labelsim.present.budget_chart import budget_chart, save_chart
from labelsim.present.budget_text import format_loop, format_result, format_simulation, format_target
from labelsim.rundir import RunDirError, load_run

# Budgets on each cost curve: every point solves the problem once per strategy.
MIN_POINTS, MAX_POINTS = 2, 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The budget command's options."""
    add = parser.add_argument
    add("run_dir", type=Path, help="a finished run directory (with noise and size grids)")
    add("--budget", type=float, required=True, help="money to spend, in the tiers' currency")
    add("--tier", action="append", default=[], metavar="NAME:PRICE:NOISE",
        help="a labeling tier: price per label and expected noise rate (repeatable)")
    add("--class-price", action="append", default=[], metavar="CLASS=X[,..]|FILE",
        help="per-class price multipliers (default 1), or a .json/.csv file (repeatable); with "
             "--by cluster, per cluster (CLUSTER=X, by the names in RUN_DIR/clusters.npz)")
    add("--available", metavar="N|CLASS=N[,..]|FILE",
        help="images available to label per class (default: the run's training set)")
    add("--weights", metavar="CLASS=W[,..]|FILE", help="per-class weights of the mean objective")
    add("--objective", choices=("mean", "worst"), default="mean",
        help="maximise the (weighted) mean per-class accuracy, or the worst class's")
    add("--target", type=float,
        help="report the cost to reach this accuracy (0-1); with --simulate, also measured: each strategy "
             f"trained at a ladder of budgets around its predicted cost (in RUN_DIR/{TARGET_DIR})")
    add("--step", type=int, default=0,
        help="labels per purchase step (default: automatic, about 1/40 of a class)")
    add("--extrapolate", type=float, default=1.0,
        help="allow per-class counts up to this multiple of the largest measured one")
    add("--max-ratio", type=_ratio_arg, default=DEFAULT_MAX_RATIO, metavar="R|none",
        help="keep the optimized plan's largest per-class label count within R x its "
             f"smallest (default {DEFAULT_MAX_RATIO:g}; 'none': no cap). The curves come from "
             "class-balanced grids, so a lopsided plan is an extrapolation: a class given far "
             "fewer labels than the others loses more accuracy than predicted")
    add("--max-budget", type=float, help="right end of the cost curves")
    add("--points", type=int, default=25, help="budgets on each cost curve")
    add("--json", action="store_true", help="print the answer as JSON")
    add("--chart", type=Path, help="write the accuracy-vs-cost chart (.html, .json, .png, .svg)")
    add("--save", type=Path, metavar="FILE",
        help=f"save the answer as JSON for the report (default RUN_DIR/{SAVED_NAME})")
    add("--no-save", action="store_true", help="do not save the answer for the report")
    add("--simulate", action="store_true",
        help="train the plans as one batched grid and compare measured with predicted")
    add("--simulate-out", type=Path,
        help=f"folder of the simulated run (default RUN_DIR/{SIMULATION_DIR})")
    add("--repeats", type=int, help="repeats per simulated plan (default: the run's)")
    add("--resume", action="store_true", help="continue an interrupted simulated run")
    add("--rounds", type=int, metavar="K",
        help="with --simulate: K rounds of train, refit, re-plan, then the best measured plan "
             "against the best simple strategy on fresh repeats; the recommendation is never a plan "
             "that measured below a simple strategy (see labelsim.analysis.budget.loop)")
    add("--fresh-repeats", type=int, metavar="N",
        help="with --rounds: fresh repeats of the recommendation and the best simple strategy (default: "
             "--repeats); more make its measured figure firmer, and running again with more trains only the "
             "missing ones")
    add("--confirm-repeats", type=int, metavar="N",
        help="with --rounds: when the best plan leads the best simple strategy by less than 2 standard "
             "errors, train both N more times before choosing (default: 2 x --repeats; 0: choose at once)")
    add("--design", type=int, metavar="N",
        help="first train (or reuse) N >= 2 space-filling mixes of per-class label counts and "
             "noise rates, data for a cross-class model")
    add("--design-seed", type=int, default=0, help="seed of the design's points (default 0)")
    add("--design-repeats", type=int, default=1, help="repeats per design point (default 1)")
    add("--design-out", type=Path,
        help=f"folder of the design run (default RUN_DIR/{DESIGN_DIR})")
    add("--by", choices=(CLASS, CLUSTER), default=CLASS,
        help="plan per class (default) or per cluster of RUN_DIR/clusters.npz, each cluster a unit "
             "with its own curve, price (--class-price), availability and weight; saved by default "
             f"to RUN_DIR/{SAVED_BUDGET}")


def _ratio_arg(text: str) -> float | None:
    """--max-ratio's value: a number (checked by BudgetProblem), or 'none' for no cap."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number >= 1 or 'none'") from None


def run(args: argparse.Namespace) -> int:
    """Answer the budget question; 2 with a one-line message on bad input (raised instead
    under ``python -m labelsim --debug``)."""
    try:
        return _run(args)
    except (ConfigError, RunDirError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def next_step(args: argparse.Namespace, err: BaseException) -> str | None:
    """What to do after an interrupt or an OS error: continue what was being trained (the
    simulated run needs --resume; the rounds and the design continue by themselves); None
    when nothing was trained."""
    sim_out = args.simulate_out or args.run_dir / SIMULATION_DIR
    if args.simulate and args.rounds is None and os.path.isfile(sim_out / "run.json"):
        again = "run the same command again" if args.resume else "run the same command again with --resume"
        return f"{again} to continue the simulated run in {sim_out}"
    loop_dir = args.simulate_out or args.run_dir / LOOP_DIR
    if args.rounds is not None and os.path.isdir(loop_dir):
        return f"run the same command again to continue the rounds in {loop_dir} (finished rounds are kept)"
    if args.simulate and args.target is not None and os.path.isdir(args.run_dir / TARGET_DIR):
        return f"run the same command again to continue the target's runs in {args.run_dir / TARGET_DIR}"
    design_dir = args.design_out or args.run_dir / DESIGN_DIR
    if args.design is not None and os.path.isfile(design_dir / "run.json"):
        return f"run the same command again to continue the design run in {design_dir}"
    return None


def _run(args: argparse.Namespace) -> int:
    tiers = check_tiers([parse_tier(spec) for spec in args.tier])
    _check_numbers(args)
    by_cluster = args.by == CLUSTER
    context = cluster_context(args.run_dir) if by_cluster else load_context(args.run_dir)
    problem = build_problem(args, context, tiers)
    if by_cluster:
        _cluster_size_note(context, args)
    check_budget_size(problem, args.budget, "--budget")
    if args.max_budget is not None:
        check_budget_size(problem, args.max_budget, "--max-budget")
    if args.design is not None:
        print(train_design(problem, context, args), file=sys.stderr if args.json else sys.stdout)
    result = plan_budget(problem, target=args.target, points=args.points, top=args.max_budget)
    loop = close_loop(result, context, args) if args.rounds is not None else None
    simulation = simulate(result, context, args) if args.simulate and loop is None else None
    reach = measure_cost_to_target(result, context, args) if args.simulate and args.target is not None else None
    if args.chart is not None:
        save_chart(budget_chart(result.curves, problem.budget, measure_title(problem)), args.chart)
    payload = answer_payload(result, simulation)
    if simulation:
        payload["simulation_verdict"] = simulation_verdict(simulation)
    if loop is not None:
        payload["loop"] = loop_to_dict(loop, problem, context.classes)
    if reach is not None:
        payload["target_simulation"] = target_to_dict(reach)
    if args.json:
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        print(format_result(result))
        if simulation is not None:
            print()
            print(format_simulation(simulation))
        if loop is not None:
            print()
            print(format_loop(payload["loop"]))
        if reach is not None:
            print()
            print(format_target(payload["target_simulation"]))
    if not args.no_save:
        note = save_result(payload, args.save or args.run_dir / (SAVED_BUDGET if by_cluster else SAVED_NAME))
        print(note, file=sys.stderr if args.json else sys.stdout)
    return 0


def _check_numbers(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.budget) and args.budget > 0):
        raise BudgetError(f"--budget {args.budget:g}: give a positive amount of money to spend, e.g. --budget 2000")
    top = args.max_budget
    if top is not None and not (math.isfinite(top) and top > args.budget):
        raise BudgetError(
            f"--max-budget {top:g} is the right end of the cost curves: give an amount above --budget "
            f"{args.budget:g}, or leave it out for the default"
        )
    if args.target is not None and not (0.0 < args.target < 1.0):
        raise BudgetError(f"--target {args.target} must be an accuracy between 0 and 1, e.g. 0.87")
    if not MIN_POINTS <= args.points <= MAX_POINTS:
        raise BudgetError(
            f"--points {args.points}: give {MIN_POINTS} to {MAX_POINTS} budgets per cost curve (default 25)"
        )
    if args.repeats is not None and args.repeats < 1:
        raise BudgetError("--repeats must be at least 1")
    if args.by == CLUSTER:
        refused = (("--design", args.design is not None), ("--rounds", args.rounds is not None),
                   ("--simulate --target", args.simulate and args.target is not None))
        for flag, given in refused:
            if given:
                raise BudgetError(simulate_refusal(flag))
    if args.simulate and args.target is not None and args.repeats is not None and args.repeats < 2:
        raise BudgetError(f"--repeats {args.repeats}: a measured cost to --target needs a spread; give at least 2")
    if args.design is not None:
        check_design_args(args.design, args.design_repeats)
    if args.rounds is not None:
        if not args.simulate:
            raise BudgetError("--rounds needs --simulate: the loop trains its plans")
        check_loop_args(args.rounds, args.repeats or 3, args.fresh_repeats, args.confirm_repeats)
    else:
        for flag, value in (("--fresh-repeats", args.fresh_repeats), ("--confirm-repeats", args.confirm_repeats)):
            if value is not None:
                raise BudgetError(f"{flag} needs --simulate --rounds K: it sets repeats of the loop")


def _cluster_size_note(context: RunContext, args: argparse.Namespace) -> None:
    """--max-ratio caps raw label counts; say so when the clusters' sizes alone differ more."""
    sizes = [n for n in context.available if n > 0]
    if args.max_ratio is not None and sizes and max(sizes) > args.max_ratio * min(sizes):
        print(f"note: --max-ratio {args.max_ratio:g} caps the ratio of raw label counts, and the "
              f"clusters' training records differ {max(sizes) / min(sizes):.1f} times; pass "
              "--max-ratio none to let the plan follow the clusters' sizes",
              file=sys.stderr if args.json else sys.stdout)


def build_problem(args: argparse.Namespace, context: RunContext, tiers: Sequence[Tier]) -> BudgetProblem:
    """The BudgetProblem the command line asks for."""
    classes = context.classes
    prices: dict[str, float] = {}
    for spec in args.class_price:
        prices.update(parse_class_values(spec, classes, "--class-price"))
    available: dict[str, float] = {}
    if args.available:
        available = parse_class_values(args.available, classes, "--available", allow_all=True)
    weights = parse_class_values(args.weights, classes, "--weights") if args.weights else {}
    return run_problem(
        context,
        tiers,
        args.budget,
        prices=prices,
        available=available,
        weights=weights,
        objective=args.objective,
        step=args.step,
        extrapolate=args.extrapolate,
        max_ratio=args.max_ratio,
    )


def simulate(result: BudgetResult, context: RunContext, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train the distinct plans as one grid and return measured-vs-predicted rows (per cluster with
    --by cluster: each plan's labels and noise per cluster of the run's clusters)."""
    from labelsim.sim.runner import run_grid  # training needs jax: imported for --simulate only

    by_cluster = args.by == CLUSTER
    sim = prepare_simulation(result, context, out=args.simulate_out, repeats=args.repeats, resume=args.resume,
                             grouping=GROUPING if by_cluster else "")
    per_cluster = {"groupings": cluster_groupings(args.run_dir)} if by_cluster else {}
    named = [(" = ".join(p.strategy for p in group), group[0]) for group in sim.plans.values()]
    print(describe_training(named, len(sim.specs), sim.out), file=sys.stderr, flush=True)
    with _folder_flag("--simulate-out"):
        run_grid(sim.config, sim.out, resume=args.resume, replicas=sim.specs, progress=not args.json,
                 **per_cluster)
    measured = measured_by_cluster(sim.out, args.run_dir) if by_cluster else None
    return compare_simulation(sim.out, sim.plans, context.classes, measured)


def train_design(problem: BudgetProblem, context: RunContext, args: argparse.Namespace) -> str:
    """Train (or resume, or reuse) the --design run; its one-line note."""
    design = prepare_design(
        problem, context, args.design, seed=args.design_seed, repeats=args.design_repeats, out=args.design_out
    )
    if design.needs_training:
        from labelsim.sim.runner import run_grid  # training needs jax: imported to train only

        with _folder_flag("--design-out"):
            run_grid(design.config, design.out, resume=design.resume, replicas=design.specs, progress=not args.json)
    return design_note(design)


def close_loop(result: BudgetResult, context: RunContext, args: argparse.Namespace) -> LoopAnswer:
    """--simulate --rounds K: train, refit and re-plan K rounds, then check on fresh repeats."""
    from labelsim.sim.runner import run_grid  # training needs jax: imported for --simulate only

    config = RunConfig.from_dict(context.meta["config"])
    base = args.simulate_out or args.run_dir / LOOP_DIR
    train = grid_trainer(result.problem, config, base, run_grid, progress=not args.json)
    simple = [p for p in result.strategies if p.strategy != OPTIMIZED]
    prior = design_observations(args.design_out or args.run_dir / DESIGN_DIR)
    confusion = baseline_confusion(load_run(args.run_dir))
    propose = searched_proposer(result.plan.counts, [p.counts for p in simple], confusion, prior)
    with _folder_flag("--simulate-out"):
        repeats = args.repeats or 3
        confirm = 2 * repeats if args.confirm_repeats is None else args.confirm_repeats
        return closed_loop(result.problem, simple, propose, train, rounds=args.rounds, repeats=repeats,
                           fresh_repeats=args.fresh_repeats, confirm_repeats=confirm)


def measure_cost_to_target(result: BudgetResult, context: RunContext, args: argparse.Namespace) -> TargetAnswer:
    """--simulate --target T: train each strategy at a ladder of budgets around its predicted
    cost to T (in RUN_DIR/budget_target), then the cheapest that reached T on fresh repeats."""
    from labelsim.sim.runner import run_grid  # training needs jax: imported for --simulate only

    config = RunConfig.from_dict(context.meta["config"])
    train = grid_trainer(result.problem, config, args.run_dir / TARGET_DIR, run_grid, progress=not args.json)
    return measure_target(result, train, repeats=args.repeats or 3)


@contextlib.contextmanager
def _folder_flag(flag: str) -> Iterator[None]:
    """Training's messages about its folder name the train command's --out; here that folder
    comes from ``flag``, so they name ``flag`` instead."""
    try:
        yield
    except RunDirError as err:
        raise BudgetError(re.sub(r"--out\b", flag, str(err))) from err
