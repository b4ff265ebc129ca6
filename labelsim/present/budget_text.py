"""The budget answer as terminal text: header, optimized plan, strategies at the same budget,
costs to reach a target, warnings, and measured vs predicted accuracy after --simulate."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from labelsim.analysis.budget import OPTIMIZED, BudgetProblem, BudgetResult, Plan, measure_title
from labelsim.analysis.budget.simulation import simulation_verdict
from labelsim.analysis.saved_budget import loop_expected_text


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
        f"Objective: {measure_title(p)}. Labels bought in steps of {result.step} per class "
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
    width = max(len(p.strategy) for p in _distinct(result.strategies))
    lines = [
        f"The same budget, spent by each strategy ({measure_title(result.problem)}):",
        f"{'strategy':<{width}} {'labels':>8} {'cost':>11}  {'predicted [95% interval]':<32} worst class",
    ]
    for plan in _distinct(result.strategies):
        worst = float(np.min(plan.acc)) if plan.predicted else math.nan
        lines.append(
            f"{plan.strategy:<{width}} {int(plan.labels.sum()):>8,} {money(plan.cost):>11}  "
            f"{_with_ci(plan.objective, plan.objective_ci):<32} {pct(worst)}"
        )
    return "\n".join(lines)


def _distinct(plans: Sequence[Plan]) -> list[Plan]:
    """Plans with identical purchases merged into one, named by all their names."""
    groups: dict[bytes, list[Plan]] = {}
    for plan in plans:
        groups.setdefault(np.asarray(plan.counts).tobytes(), []).append(plan)
    return [dataclasses.replace(g[0], strategy=" = ".join(p.strategy for p in g)) for g in groups.values()]


def format_targets(result: BudgetResult) -> str:
    """Cost to reach the target with each strategy, and the headline comparison."""
    lines = [f"Cost to reach {pct(result.target)} ({measure_title(result.problem)}):"]
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
    """Measured vs predicted accuracy of the simulated plans, overall rows first, then the verdict."""
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
    lines.append(f"Verdict: {simulation_verdict(rows)}")
    return "\n".join(lines)


def format_loop(loop: dict[str, Any]) -> str:
    """The closed loop's table (plans measured in the rounds, then the fresh repeats) and verdict."""
    lines = ["Closed loop: measured plans (mean objective over replicas, +- standard error), and the "
             "round's prediction made before training"]
    lines += [f"  round {i} model: {model}" for i, model in enumerate(loop.get("models", []), start=1)]
    for row in loop["rounds"] + loop["fresh"]:
        se = "" if row["measured_se"] is None else f" +- {100 * row['measured_se']:.1f}"
        where = "fresh repeats" if row["stage"] == "fresh" else f"round {row['round']}"
        if row.get("confirming"):
            where += f" + {row['confirming']} conf."
        labels = row["labels_per_class"].values()
        predicted = "" if row.get("predicted") is None else f"  predicted {pct(row['predicted'])}"
        lines.append(
            f"  {row['label']:<28} {where:<22} {pct(row['measured'])}{se:<8} n={row['replicas']}{predicted}  "
            f"cost {money(row['cost'])}  labels/class {min(labels)}-{max(labels)}"
        )
    lines.append(f"Recommendation: {loop['recommended']} ({loop['verdict']})")
    expected = loop_expected_text(loop)
    if expected is not None:
        lines.append(expected)
    return "\n".join(lines)


def format_target(reach: dict[str, Any]) -> str:
    """The measured cost to the target: every strategy's rungs (cost, predicted, measured),
    the fresh repeats of the cheapest rungs that reached it, and the verdict."""
    goal = pct(reach["target"])
    factors = ", ".join(f"{f:g}" for f in reach["ladder"])
    lines = [f"Measured cost to reach {goal}: each strategy trained at {factors} x its predicted cost"]
    width = max((len(r["label"]) for r in reach["rungs"] + reach["fresh"]), default=8)
    lines.append(f"  {'plan':<{width}} {'cost':>11} {'predicted':>9} {'measured':>15}  runs")
    for row, stage in [(r, "") for r in reach["rungs"]] + [(r, " (fresh)") for r in reach["fresh"]]:
        predicted = "-" if row["predicted"] is None else pct(row["predicted"])
        if row["measured"] is None:
            measured = "not trained"
        else:
            se = "" if row["measured_se"] is None else f" +- {100 * row['measured_se']:.1f}"
            measured = f"{pct(row['measured'])}{se}"
        mark = " *" if row["measured"] is not None and row["measured"] >= reach["target"] else ""
        lines.append(f"  {row['label']:<{width}} {money(row['cost']):>11} {predicted:>9} {measured:>15}  "
                     f"{row['replicas']}{stage}{mark}")
    lines.append(f"  (* reached {goal})")
    lines.append(f"Verdict: {reach['verdict']}")
    return "\n".join(lines)
