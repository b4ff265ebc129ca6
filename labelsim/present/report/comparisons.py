"""Report sections a run has only sometimes: every model x noise model side by side, human vs
synthetic noise, the reference study, and a budget answer saved by the budget command.
"""

from __future__ import annotations

import html
from pathlib import Path

from labelsim.analysis import Analysis
from labelsim.analysis import compare, reference, saved_budget
from labelsim.analysis.by_cluster import SAVED_BUDGET
from labelsim.analysis.units import CLASS
from labelsim.present import charts
from labelsim.present.report.rows import Item
from labelsim.present.report.sections import chart_section, html_grid, html_table

_REALIZED_NOTE = (
    "<p>Every slope here is accuracy lost per unit of <b>realized</b> noise: the share of "
    "training labels actually changed (replicas.csv <code>realized_noise</code>, the mean over "
    "a grid point's repeats), not the requested level. Noise models realize different amounts "
    "at the same level (shuffle about r(1 - 1/C), since a shuffled label may land on its own "
    "class; human-* r times the annotators' disagreement), so this axis compares them at the "
    "same amount of wrong labels. Baseline: clean full-data accuracy x1000. Intervals are 95% "
    "bootstrap intervals over repeats.</p>")


def comparison_items(an: Analysis) -> list[Item]:
    """Charts of the side-by-side comparison: slopes by noise model and model, transitions."""
    comp = an.comparison
    if comp is None or not comp.side_by_side:
        return []
    items: list[Item] = [(
        "compare_slopes", "Per-class noise slope (accuracy lost per unit realized noise) with "
        "95% intervals; colour: noise model, column: model.",
        charts.slope_comparison(compare.slope_rows(comp)))]
    if comp.transitions:
        items.append(("transitions", "Realized label transitions summed over each noise "
                      "model's noisy replicas, row-normalised: the share of each true class's "
                      "training labels given each label (diagonal, kept labels, in grey).",
                      charts.transition_heatmaps(compare.transition_rows(comp))))
    return items


def _comparison_section(an: Analysis, items: list[Item]) -> str:
    """Slopes per unit realized noise for every model x noise model, requested vs realized."""
    comp = an.comparison
    assert comp is not None
    realized = html_table(compare.realized_rows(comp), formats={
        "requested": ".0%", "realized": ".1%", "ratio": ".3f"})
    unfitted = "".join(f"<p>{html.escape(line)}.</p>" for line in compare.unfitted_lines(comp))
    return (_REALIZED_NOTE + html_grid(*compare.slope_table(comp)) + unfitted
            + "<h3>Requested vs realized noise rate</h3>" + realized + chart_section(items))


def human_items(an: Analysis) -> list[Item]:
    """The human-vs-synthetic scatter, when the run has both kinds of noise."""
    comp = an.comparison
    rows = compare.human_vs_synthetic_rows(comp) if comp is not None else []
    if not rows:
        return []
    return [("human_vs_synthetic", "Each class's slope under human noise against its slope "
             "under a synthetic noise model (per unit realized noise), 95% intervals both ways "
             "(cut at the panel's edges; hover for their ends); on the dashed line the synthetic "
             "model predicts the annotators exactly.",
             charts.human_vs_synthetic(rows))]


def _human_section(an: Analysis, items: list[Item]) -> str:
    """Human vs synthetic slopes per model and human noise model, and their agreement."""
    comp = an.comparison
    assert comp is not None
    parts = ["<p>Does synthetic noise predict what real annotators do to each class? Slopes "
             "per unit realized noise; difference = human - synthetic with a 95% interval "
             "(the two fits' bootstrap samples taken as independent; they share the clean "
             "replicas, so the interval is a little conservative). "
             f"{html.escape(compare.VERDICT_LEGEND)}.</p>"]
    for model in comp.models:
        for human in comp.human_models:
            headers, table = compare.human_table(comp, model, human)
            if table:
                parts.append(f"<h3>{html.escape(model)}: {html.escape(human)}</h3>"
                             + html_grid(headers, table))
    parts.append("<h3>Agreement over the classes</h3>" + html_table(
        compare.agreement_rows(comp), formats={"spearman": ".2f", "spearman_p": ".2g",
                                               "mean_abs_diff": ".3f",
                                               "human_realized_max": ".1%",
                                               "synthetic_realized_max": ".1%",
                                               "common_realized_max": ".1%"}))
    return "".join(parts) + chart_section(items)


def _chart_id(prefix: str, index: int) -> str:
    """``prefix`` for the first chart of a kind, ``prefix_i`` for the others."""
    return f"{prefix}_{index}" if index else prefix


def reference_items(an: Analysis) -> list[Item]:
    """Per model with usable conditions: the run's per-class accuracy beside the study's."""
    items: list[Item] = []
    for i, ref in enumerate(r for r in an.reference if r.usable):
        rows = [{"condition": cond.label, "class": row["class"], "source": source,
                 "accuracy_x1000": row[f"{cond.key}_{source}"]}
                for row in reference.reference_rows(an.run, ref)
                for cond in reference.CONDITIONS if cond.key in ref.found
                for source in ("run", "study")]
        items.append((_chart_id("reference", i), f"Per-class accuracy x1000 of {ref.model} "
                      "beside the reference study's, in each of its conditions the run has.",
                      charts.reference_dots(rows, f"{ref.model} vs the reference study")))
    return items


def _reference_section(an: Analysis, items: list[Item]) -> str:
    """Per model: the run beside the reference study, and the conditions it lacks."""
    parts = [f"<p>Source: {html.escape(reference.SOURCE)}. Its CNN reached "
             f"{reference.BASELINE_ACCURACY:.2%} on CIFAR-10 (clean, 50,000 training images). "
             "Conditions: baseline (clean, 50k), 30% label noise (shuffle protocol, 50k) and "
             "5k clean images. diff = run - study (accuracy x1000); rank agreement is "
             "Spearman's rho over the classes.</p>"]
    for ref in an.reference:
        parts.append(f"<h3>{html.escape(ref.model)}</h3>")
        if ref.usable:
            parts.append(html_grid(*reference.reference_table(an.run, ref)))
            parts.append(html_table(reference.agreement_rows(an.run, ref), formats={
                "spearman": ".2f", "spearman_p": ".2g", "run_mean": ".3f",
                "study_mean": ".3f"}))
        if ref.missing:
            parts.append("<p>Not compared (the run lacks the grid point):</p><ul>"
                         + "".join(f"<li>{html.escape(m)}</li>" for m in ref.missing)
                         + "</ul>")
    return "".join(parts) + chart_section(items)


def budget_items(saved: saved_budget.SavedBudget) -> list[Item]:
    """The accuracy-vs-cost chart of a saved budget answer, the chosen budget marked, and the
    simulated plans' measured beside predicted accuracy when ``--simulate`` ran."""
    chart = charts.budget_curves(saved_budget.curve_rows(saved), saved.budget, saved.measure,
                                 x_field="cost", markers=saved_budget.marker_rows(saved),
                                 target=saved.target)
    items: list[Item] = [(
        "budget_curves", "Predicted accuracy of each strategy against the money it spends; "
        "dashed rule: the chosen budget; diamonds: each strategy's plan at that budget"
        + ("; dotted line: the target" if saved.target is not None else "")
        + ". Strategies that buy the same labels draw the same line.", chart)]
    simulated = saved_budget.simulation_chart_rows(saved)
    if simulated:
        items.append((SIMULATION_CHART, "Did the plans measure what the curves predicted, and "
                      "which measured best? Per plan: measured mean per-class accuracy (black, "
                      "bar: ±1 sd over its replicas) beside the predicted accuracy (red "
                      "diamond). Identical plans are one row under all their names.",
                      charts.simulation_dots(simulated)))
    return items


SIMULATION_CHART = "budget_simulation"


def _budget_section(saved: saved_budget.SavedBudget, items: list[Item]) -> str:
    """The saved budget answer: its optimized plan, the strategies at the same budget, and what
    --simulate measured (verdict, table, chart) and the closed loop recommended."""
    money = {"cost": "$,.2f", "cost to reach target": "$,.2f"}
    formats = {"noise": ".1%", "predicted": ".1%", "lo": ".1%", "hi": ".1%",
               "worst class": ".1%", "labels": ",d"} | money
    tiers = {t["name"]: ",d" for t in saved.data["tiers"]}
    notes = "".join(f"<p class='caption'>note: {html.escape(w)}</p>"
                    for w in saved.data.get("warnings", []))
    curves = [item for item in items if item[0] != SIMULATION_CHART]
    simulated = [item for item in items if item[0] == SIMULATION_CHART]
    return (f"<p>{html.escape(saved_budget.header_text(saved))} Saved by the budget command "
            f"in {html.escape(str(saved.path))}. Predicted accuracies come from the run's "
            "fitted curves, with 95% intervals (lo, hi).</p>"
            "<h3>Optimized plan</h3>" + html_table(saved_budget.plan_rows(saved),
                                                   formats=formats | tiers)
            + "<h3>Strategies at the same budget</h3><p>Strategies that buy the same labels "
            "at this budget are one row, named by all of them joined by '='.</p>"
            + html_table(saved_budget.strategy_rows(saved), formats=formats)
            + notes + chart_section(curves) + _simulation_section(saved, simulated)
            + _loop_section(saved))


_PERCENT = {"predicted": ".1%", "measured": ".1%", "sd": ".1%", "se": ".1%", "error": "+.1%",
            "replicas": "d", "cost": "$,.2f"}


def _simulation_section(saved: saved_budget.SavedBudget, items: list[Item]) -> str:
    """The --simulate verdict, the measured-vs-predicted table per plan and per class, and
    the chart; empty when the answer has no simulation."""
    verdict = saved_budget.simulation_verdict_text(saved)
    if verdict is None:
        return ""
    overall = saved_budget.simulation_overall_rows(saved)
    per_class = saved_budget.simulation_class_rows(saved)
    details = ("<details><summary>Per class</summary>"
               + html_table(per_class, formats=_PERCENT) + "</details>") if per_class else ""
    return ("<h3 id='simulation'>Simulation: measured vs predicted</h3>"
            f"<p class='verdict'><b>Verdict:</b> {html.escape(verdict)}.</p>"
            "<p>--simulate trained each distinct plan (strategies that buy the same labels are "
            "one plan, named by all of them joined by '='). measured: mean per-class test "
            "accuracy over its replicas; sd: their spread; error: measured - predicted.</p>"
            + html_table(overall, formats=_PERCENT) + details + chart_section(items))


def _loop_section(saved: saved_budget.SavedBudget) -> str:
    """The closed loop's recommendation and the plans it measured; empty without a loop."""
    line = saved_budget.loop_text(saved)
    if line is None:
        return ""
    return ("<h3 id='closed-loop'>Closed loop</h3>"
            f"<p class='verdict'><b>{html.escape(line)}</b></p>"
            "<p>Plans measured in each round (mean objective over replicas ± standard error, "
            "and the prediction made before training), then the recommended plan and the best "
            "simple strategy on fresh repeats.</p>"
            + html_table(saved_budget.loop_rows(saved), formats=_PERCENT))


def _load_budget(an: Analysis, path: Path | None) -> saved_budget.SavedBudget | str | None:
    """The saved budget answer, an error message to show instead, or None when there is none."""
    if an.unit.kind == CLASS:
        found = saved_budget.find_saved_budget(an.run.path, path)
    else:
        found = path or (an.run.path / SAVED_BUDGET if (an.run.path / SAVED_BUDGET).is_file() else None)
    if found is None:
        return None
    try:
        return saved_budget.load_saved_budget(found, an.unit.names)
    except saved_budget.SavedBudgetError as exc:
        return str(exc)


def comparison_sections(
    an: Analysis, budget_file: Path | None
) -> tuple[list[tuple[str, str]], list[Item]]:
    """Sections (title, html) and their charts for every model x noise model, the reference
    study and the budget answer saved in ``budget_file`` (default: the run's), where the run
    has them."""
    budget = _load_budget(an, budget_file)
    sections: list[tuple[str, str]] = []
    items: list[Item] = []
    builders = [("Models and noise models", comparison_items, _comparison_section),
                ("Human vs synthetic noise", human_items, _human_section)]
    for title, make_items, render in builders:
        made = make_items(an)
        if made:
            sections.append((title, render(an, made)))
            items += made
    if an.reference:
        made = reference_items(an)
        sections.append(("Reference study", _reference_section(an, made)))
        items += made
    if isinstance(budget, str):
        sections.append(("Labeling budget", f"<p>Budget answer not shown: "
                                            f"{html.escape(budget)}</p>"))
    elif budget is not None:
        made = budget_items(budget)
        sections.append(("Labeling budget", _budget_section(budget, made)))
        items += made
    return sections, items

