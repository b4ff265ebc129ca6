"""``python -m labelsim budget RUN_DIR``: plan a labeling budget on a run's per-class curves.

Example::

    python -m labelsim budget runs/demo --budget 2000 \\
        --tier crowd:0.04:0.20 --tier expert:0.15:0.02 --target 0.87

prints the optimized plan (labels per class and tier, cost, predicted accuracy with
intervals), the same budget spent by simple strategies, and the cost of reaching the target
with each. ``--simulate`` trains the plans as one batched grid and sets the measured
accuracies beside the predicted ones. The predictive model and its limits are described in
``labelsim.analysis.budget``.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labelsim.analysis.budget import (
    OPTIMIZED,
    BudgetError,
    BudgetProblem,
    BudgetResult,
    ClassCurve,
    Plan,
    check_tiers,
    curves_from_fits,
    measured_vs_predicted,
    parse_class_values,
    parse_tier,
    plan_budget,
    result_to_dict,
)
from labelsim.analysis.runs import RunDirError, load_run
from labelsim.analysis.saved_budget import SAVED_NAME
from labelsim.config import ConfigError, ReplicaSpec, RunConfig

SIMULATION_DIR = "budget_sim"
_FINISHED = "finished"

# --max-ratio's default. The curves come from class-balanced grids, and an uncapped plan may
# starve a class; measured on the demo run (CPU, 2026-11-27; python -m labelsim budget
# runs/demo --budget 40 --tier crowd:0.01:0.20 --tier expert:0.05:0.02 --simulate
# --repeats 4), the uncapped plan (50 to 200 labels per class) predicted 89.7% mean accuracy
# and measured 85.0%, cat 29.5% against 61.5% predicted; with a cap of 2 it predicted 89.6%
# and measured 87.5%, cat 50.0%. Tighter caps (1.5: 87.4%, 1: 87.9%) measured the same
# within the replicas' spread. BudgetProblem itself has no cap unless given one.
DEFAULT_MAX_RATIO = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The budget command's options."""
    add = parser.add_argument
    add("run_dir", type=Path, help="a finished run directory (with noise and size grids)")
    add("--budget", type=float, required=True, help="money to spend, in the tiers' currency")
    add("--tier", action="append", default=[], metavar="NAME:PRICE:NOISE",
        help="a labeling tier: price per label and expected noise rate (repeatable)")
    add("--class-price", action="append", default=[], metavar="CLASS=X[,..]|FILE",
        help="per-class price multipliers (default 1), or a .json/.csv file (repeatable)")
    add("--available", metavar="N|CLASS=N[,..]|FILE",
        help="images available to label per class (default: the run's training set)")
    add("--weights", metavar="CLASS=W[,..]|FILE", help="per-class weights of the mean objective")
    add("--objective", choices=("mean", "worst"), default="mean",
        help="maximise the (weighted) mean per-class accuracy, or the worst class's")
    add("--target", type=float, help="report the cost to reach this accuracy (0-1)")
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


def _ratio_arg(text: str) -> float | None:
    """--max-ratio's value: a number (checked by BudgetProblem), or 'none' for no cap."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number >= 1 or 'none'") from None


def run(args: argparse.Namespace) -> int:
    """Answer the budget question; 2 with a one-line message on bad input."""
    try:
        return _run(args)
    except (ConfigError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    tiers = check_tiers([parse_tier(spec) for spec in args.tier])
    _check_numbers(args)
    context = load_context(args.run_dir)
    problem = build_problem(args, context, tiers)
    result = plan_budget(problem, target=args.target, points=args.points, top=args.max_budget)
    simulation = simulate(result, context, args) if args.simulate else None
    if args.chart is not None:
        save_chart(budget_chart(result.curves, problem.budget, _measure_title(problem)), args.chart)
    payload = result_to_dict(result) | {"measure": _measure_title(problem)}
    if simulation is not None:
        payload["simulation"] = simulation
    if args.json:
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        print(format_result(result))
        if simulation is not None:
            print()
            print(format_simulation(simulation))
    if not args.no_save:
        note = save_result(payload, args.save or args.run_dir / SAVED_NAME)
        print(note, file=sys.stderr if args.json else sys.stdout)
    return 0


def save_result(payload: dict[str, Any], path: Path) -> str:
    """Write the answer as JSON for the report; a one-line note says where, or why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1, allow_nan=False), encoding="utf-8")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return (f"note: not saved for the report: cannot write {path} ({reason}); "
                "pass --save FILE to save it elsewhere")
    return f"saved for the report: {path}"


def _check_numbers(args: argparse.Namespace) -> None:
    if args.target is not None and not (0.0 < args.target < 1.0):
        raise BudgetError(f"--target {args.target} must be an accuracy between 0 and 1, e.g. 0.87")
    if args.points < 2:
        raise BudgetError("--points must be at least 2")
    if args.repeats is not None and args.repeats < 1:
        raise BudgetError("--repeats must be at least 1")


# --------------------------------------------------------------------------------------
# The run's curves and the problem
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """What the budget needs from a run: classes, curves, images per class, metadata."""

    path: Path
    classes: tuple[str, ...]
    curves: tuple[ClassCurve, ...]
    available: tuple[int, ...]
    meta: dict[str, Any]


def load_context(run_dir: Path) -> RunContext:
    """Fit the run's curves and read its images per class."""
    from labelsim.analysis.fits import FitError, fit_run

    run = load_run(run_dir)
    try:
        fits = fit_run(run)
    except FitError as exc:
        raise BudgetError(f"cannot fit {run_dir}: {exc}") from None
    rates = [r.noise_rate for r in run.finished() if not r.is_custom]
    scale = wrong_label_scale(run)
    curves = tuple(
        dataclasses.replace(c, predict=_rescaled(c.predict, scale), draws=c.draws and _rescaled(c.draws, scale))
        for c in curves_from_fits(fits, noise_max=max(rates, default=0.0))
    )
    return RunContext(Path(run_dir), run.classes, curves, training_class_counts(run), run.meta)


def wrong_label_scale(run: Any) -> float:
    """Noise-axis units per unit of wrong-label fraction: requested / realized rate.

    A tier's noise rate is its fraction of wrong labels; the fits' axis is the run's requested
    rate, and under the study's shuffle protocol only about (C-1)/C of a requested rate ends
    up wrong. The ratio is measured on the run's own noisy replicas (1 when there are none).
    """
    noisy = [r for r in run.finished() if not r.is_custom and r.noise_rate > 0 and r.realized_noise > 0]
    if not noisy:
        return 1.0
    return sum(r.noise_rate for r in noisy) / sum(r.realized_noise for r in noisy)


def _rescaled(predict: Any, scale: float) -> Any:
    """``predict(n, eps)`` with eps given as a wrong-label fraction."""
    return lambda n, eps: predict(n, np.asarray(eps, dtype=float) * scale)


def training_class_counts(run: Any) -> tuple[int, ...]:
    """Training images per class: recorded counts, else the training size split by class share."""
    recorded = run.meta.get("train_class_counts")
    if isinstance(recorded, list) and len(recorded) == run.num_classes:
        return tuple(int(v) for v in recorded)
    dataset = run.meta.get("dataset") or {}
    total = dataset.get("train_size") or max((r.train_size for r in run.replicas), default=0)
    return tuple(int(v) for v in np.floor(total * run.class_shares + 1e-9))


def build_problem(args: argparse.Namespace, context: RunContext, tiers: Sequence[Any]) -> BudgetProblem:
    """The BudgetProblem the command line asks for."""
    classes = context.classes
    prices: dict[str, float] = {}
    for spec in args.class_price:
        prices.update(parse_class_values(spec, classes, "--class-price"))
    available = dict(zip(classes, context.available))
    if args.available:
        available.update(parse_class_values(args.available, classes, "--available", allow_all=True))
    weights = parse_class_values(args.weights, classes, "--weights") if args.weights else {}
    return BudgetProblem(
        curves=context.curves,
        tiers=tuple(tiers),
        budget=args.budget,
        price_multipliers=tuple(prices.get(c, 1.0) for c in classes),
        available=tuple(_whole(available[c], c) for c in classes),
        weights=tuple(weights.get(c, 1.0) for c in classes) if weights else None,
        objective=args.objective,
        step=args.step,
        extrapolate=args.extrapolate,
        max_ratio=args.max_ratio,
    )


def _whole(value: float, name: str) -> int:
    if not (math.isfinite(value) and value >= 0 and value == int(value)):
        raise BudgetError(f"--available for class {name} is {value!r}; give a whole number >= 0")
    return int(value)


# --------------------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------------------


def money(x: float | None) -> str:
    """An amount as $1,234.50 ('-' when missing)."""
    return "-" if x is None or not math.isfinite(x) else f"${x:,.2f}"


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal ('-' when missing)."""
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _with_ci(x: float, ci: Sequence[float]) -> str:
    if not math.isfinite(x):
        return "- (outside the measured range)"
    if not all(math.isfinite(v) for v in ci):
        return pct(x)
    return f"{pct(x)} [{pct(ci[0])}, {pct(ci[1])}]"


def _measure_title(problem: BudgetProblem) -> str:
    if problem.objective == "worst":
        return "worst-class accuracy"
    return "weighted mean accuracy" if problem.weights is not None else "mean per-class accuracy"


def format_result(result: BudgetResult) -> str:
    """The whole answer as text: header, plan, strategies, targets, warnings."""
    parts = [_header(result), format_plan(result.problem, result.plan), format_strategies(result)]
    if result.target is not None:
        parts.append(format_targets(result))
    if result.warnings:
        parts.append("\n".join(f"note: {w}" for w in result.warnings))
    return "\n\n".join(parts)


def _header(result: BudgetResult) -> str:
    p = result.problem
    tiers = ", ".join(f"{t.name} {money(t.price)}/label at {pct(t.noise)} noise" for t in p.tiers)
    exact = "exact" if result.grid.exact else f"rounded up to {money(result.grid.unit)}"
    return (
        f"Budget {money(p.budget)} over {len(p.classes)} classes; tiers: {tiers}\n"
        f"Objective: {_measure_title(p)}. Labels bought in steps of {result.step} per class "
        f"and tier; costs {exact}.{_ratio_text(p.max_ratio)}"
    )


def _ratio_text(max_ratio: float | None) -> str:
    """' The optimized plan keeps ... (--max-ratio R).', or '' without a cap."""
    if max_ratio is None:
        return ""
    return (f" The optimized plan keeps each class within {max_ratio:g}x the labels of the "
            f"class with fewest (--max-ratio {max_ratio:g}).")


def format_plan(problem: BudgetProblem, plan: Plan) -> str:
    """The plan as a table: labels per tier, noise, cost and prediction per class."""
    tiers = [t.name for t in problem.tiers]
    width = max(8, *(len(c) for c in problem.classes))
    head = f"{'class':<{width}} " + " ".join(f"{t:>8}" for t in tiers)
    head += f" {'labels':>8} {'noise':>6} {'cost':>11}  predicted [95% interval]"
    noise = plan.class_noise(problem)
    lines = [_plan_title(problem, plan), head]
    for k, name in enumerate(problem.classes):
        cells = " ".join(f"{int(n):>8,}" for n in plan.counts[k])
        cost = float(plan.counts[k] @ problem.prices()[k])
        lines.append(
            f"{name:<{width}} {cells} {int(plan.labels[k]):>8,} {pct(noise[k]):>6} {money(cost):>11}  "
            f"{_with_ci(plan.acc[k], plan.acc_ci[k])}"
        )
    totals = " ".join(f"{int(n):>8,}" for n in plan.counts.sum(axis=0))
    lines.append(
        f"{'overall':<{width}} {totals} {int(plan.labels.sum()):>8,} {'':>6} {money(plan.cost):>11}  "
        f"{_with_ci(plan.overall, plan.overall_ci)}"
    )
    return "\n".join(lines)


def _plan_title(problem: BudgetProblem, plan: Plan) -> str:
    title = f"Optimized plan: {money(plan.cost)} of {money(problem.budget)}"
    if plan.source and plan.source != "dp":
        title += f" (the label grid found nothing better than '{plan.source}')"
    return title


def format_strategies(result: BudgetResult) -> str:
    """Every strategy at the budget: labels, cost, predicted accuracy, worst class."""
    width = max(len(p.strategy) for p in result.strategies)
    lines = [
        f"The same budget, spent by each strategy ({_measure_title(result.problem)}):",
        f"{'strategy':<{width}} {'labels':>8} {'cost':>11}  {'predicted [95% interval]':<32} worst class",
    ]
    for plan in result.strategies:
        worst = float(np.min(plan.acc)) if plan.predicted else math.nan
        lines.append(
            f"{plan.strategy:<{width}} {int(plan.labels.sum()):>8,} {money(plan.cost):>11}  "
            f"{_with_ci(plan.objective, plan.objective_ci):<32} {pct(worst)}"
        )
    return "\n".join(lines)


def format_targets(result: BudgetResult) -> str:
    """Cost to reach the target with each strategy, and the headline comparison."""
    lines = [f"Cost to reach {pct(result.target)} ({_measure_title(result.problem)}):"]
    width = max(len(name) for name in result.cost_to_target)
    for name, cost in result.cost_to_target.items():
        shown = money(cost) if cost is not None else "not reached within the curves"
        lines.append(f"  {name:<{width}} {shown}")
    headline = target_headline(result)
    if headline:
        lines.append(headline)
    return "\n".join(lines)


def target_headline(result: BudgetResult) -> str:
    """'To reach 87.0%: $7,500.00 with X vs $4,750.00 with optimized' (empty if not comparable)."""
    reach = {k: v for k, v in result.cost_to_target.items() if v is not None}
    ours = reach.get(OPTIMIZED)
    others = {k: v for k, v in reach.items() if k != OPTIMIZED}
    if ours is None or not others:
        return ""
    best_other = min(others, key=others.get)
    return (
        f"To reach {pct(result.target)}: {money(others[best_other])} with {best_other} "
        f"(the cheapest simple strategy) vs {money(ours)} with the optimized plan."
    )


def format_simulation(rows: list[dict[str, Any]]) -> str:
    """Measured vs predicted accuracy of the simulated plans, overall rows first."""
    if not rows:
        return "Simulation: no replica finished; nothing to compare."
    width = max(len(r["strategy"]) for r in rows)
    lines = [
        "Simulation: measured vs predicted accuracy",
        f"{'strategy':<{width}} {'class':<12} {'predicted':>9} {'measured':>9} "
        f"{'sd':>6} {'runs':>4} {'error':>7}",
    ]
    ordered = sorted(rows, key=lambda r: (r["class"] != "overall", r["strategy"], r["class"]))
    for r in ordered:
        sd = "-" if r["measured_sd"] is None else f"{100 * r['measured_sd']:.1f}"
        err = "-" if r["error"] is None else f"{100 * r['error']:+.1f}"
        lines.append(
            f"{r['strategy']:<{width}} {r['class']:<12} {pct(r['predicted']):>9} {pct(r['measured']):>9} "
            f"{sd:>6} {r['replicas']:>4} {err:>7}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# --simulate: train the plans, compare measured with predicted
# --------------------------------------------------------------------------------------


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
    specs = []
    for label, group in plans.items():
        plan = group[0]
        sizes = tuple(int(n) for n in plan.labels)
        noise = tuple(float(e) for e in plan.class_noise(problem))
        overall = float(np.dot(sizes, noise) / max(sum(sizes), 1))
        for repeat in range(repeats):
            specs.append(ReplicaSpec(
                replica=len(specs), experiment="custom", repeat=repeat, noise_model="shuffle",
                noise_rate=overall, train_size=sum(sizes), model=model,
                class_sizes=sizes, class_noise=noise, label=label,
            ))  # fmt: skip
    return specs


def simulate(result: BudgetResult, context: RunContext, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train the distinct plans as one grid and return measured-vs-predicted rows."""
    from labelsim.sim.runner import run_grid

    config = RunConfig.from_dict(context.meta["config"])
    repeats = args.repeats or config.grid.repeats
    out = args.simulate_out or context.path / SIMULATION_DIR
    if (out / "run.json").exists() and not args.resume:
        raise BudgetError(
            f"{out} already holds a simulated run; pass --resume to continue it "
            "or --simulate-out NEW_FOLDER for a new one"
        )
    plans = simulation_plans(result)
    specs = replica_specs(plans, result.problem, config.model.name, repeats)
    run_grid(config, out, resume=args.resume, replicas=specs, progress=not args.json)
    return compare_simulation(out, plans, context.classes)


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
    counts = run.counts.astype(float)
    out: dict[str, list[np.ndarray]] = {}
    for rep in run.replicas:
        if rep.status != _FINISHED:
            continue
        matrix = counts[rep.replica]
        rows = matrix.sum(axis=1)
        acc = np.divide(np.diag(matrix), rows, out=np.full(len(rows), np.nan), where=rows > 0)
        out.setdefault(rep.label, []).append(acc)
    return {label: np.stack(values) for label, values in out.items()}


# --------------------------------------------------------------------------------------
# Chart and report section
# --------------------------------------------------------------------------------------


def curve_rows(curves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tidy rows {strategy, budget, cost, accuracy} of the cost curves (objective measure)."""
    return [
        {"strategy": c["strategy"], "budget": p["budget"], "cost": p["cost"], "accuracy": p["objective"]}
        for c in curves
        for p in c["points"]
        if p["objective"] is not None
    ]


def budget_chart(curves: list[dict[str, Any]], budget: float, measure: str = "predicted accuracy") -> Any:
    """Altair chart: predicted accuracy against budget per strategy, the chosen budget marked."""
    from labelsim.present.charts import budget_curves

    return budget_curves(curve_rows(curves), budget, measure)


def save_chart(chart: Any, path: Path) -> None:
    """Write a chart as .json (Vega-Lite spec) or .html/.png/.svg (Altair's savers)."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".html", ".png", ".svg"):
        raise BudgetError(f"--chart {path}: give a .json, .html, .png or .svg file name")
    try:
        if suffix == ".json":
            path.write_text(chart.to_json(), encoding="utf-8")
        else:
            chart.save(str(path))
    except (OSError, ValueError) as exc:
        raise BudgetError(f"cannot write the chart to {path} ({exc})") from None


def budget_report_section(result: BudgetResult) -> tuple[str, str]:
    """(title, html) of the budget answer for the run report: summary, plan, strategies,
    targets and the chart (rendered with vegaEmbed when the page provides it)."""
    chart = budget_chart(result.curves, result.problem.budget, _measure_title(result.problem))
    parts = [
        f"<p>{html.escape(_header(result))}</p>",
        _plan_table(result.problem, result.plan),
        _strategy_table(result),
    ]
    if result.target is not None:
        parts.append(f"<pre>{html.escape(format_targets(result))}</pre>")
    parts += [f"<p class='note'>{html.escape(w)}</p>" for w in result.warnings]
    parts.append(_chart_embed(chart.to_json(indent=None), "labelsim-budget-chart"))
    return "Labeling budget", "\n".join(parts)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _plan_table(problem: BudgetProblem, plan: Plan) -> str:
    noise = plan.class_noise(problem)
    header = ["class", *(t.name for t in problem.tiers), "labels", "noise", "cost", "predicted [95%]"]
    rows = [
        [name, *(f"{int(n):,}" for n in plan.counts[k]), f"{int(plan.labels[k]):,}", pct(noise[k]),
         money(float(plan.counts[k] @ problem.prices()[k])), _with_ci(plan.acc[k], plan.acc_ci[k])]
        for k, name in enumerate(problem.classes)
    ]  # fmt: skip
    rows.append(["overall", *(f"{int(n):,}" for n in plan.counts.sum(axis=0)), f"{int(plan.labels.sum()):,}",
                 "", money(plan.cost), _with_ci(plan.overall, plan.overall_ci)])  # fmt: skip
    return f"<h3>{html.escape(_plan_title(problem, plan))}</h3>" + _html_table(header, rows)


def _strategy_table(result: BudgetResult) -> str:
    rows = [
        [p.strategy, f"{int(p.labels.sum()):,}", money(p.cost), _with_ci(p.objective, p.objective_ci),
         pct(float(np.min(p.acc)) if p.predicted else math.nan)]
        for p in result.strategies
    ]  # fmt: skip
    header = ["strategy", "labels", "cost", "predicted [95%]", "worst class"]
    return "<h3>Strategies at the same budget</h3>" + _html_table(header, rows)


def _chart_embed(spec_json: str, element_id: str) -> str:
    spec = spec_json.replace("</", "<\\/")
    return (
        f'<div id="{element_id}"></div>\n'
        f"<script>(function () {{ var spec = {spec}; "
        f"if (window.vegaEmbed) {{ vegaEmbed('#{element_id}', spec, {{actions: false}}); }} }})();</script>"
    )
