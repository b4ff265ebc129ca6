"""One offline HTML page per run: every chart and table, the config and the run's metadata.

The page inlines one Vega/Vega-Lite/vega-embed bundle (from vl-convert) and embeds each
chart's Vega-Lite spec with ``vegaEmbed``: it renders with no network at all.
"""

from __future__ import annotations

import functools
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from labelsim.present import charts
from labelsim.analysis import (
    Analysis,
    analyze_run,
    asymmetry_rows,
    confusion_rows,
    impact_table,
    pair_table,
    size_fraction_table,
    size_cell,
    size_need_table,
    summary_table,
)
from labelsim.analysis import compare, reference, saved_budget
from labelsim.analysis.derived import noise_band, volume_band
from labelsim.analysis.metrics import bump_rows, overall_rows, ranking_rows

if TYPE_CHECKING:
    import altair as alt

CURVE_POINTS = 40  # points along each fitted curve


# ---------------------------------------------------------------- chart data


def noise_chart_rows(an: Analysis) -> list[dict]:
    """Points (means with 95% intervals) and fitted lines with bands, per class, vs noise."""
    rows = []
    for pm in an.noise_points:
        rows += _point_rows(an, pm, pm.point.noise_rate)
    if not an.noise_points:
        return rows
    xs = np.linspace(0.0, max(pm.point.noise_rate for pm in an.noise_points), CURVE_POINTS)
    for cls, fit in an.fits.noise.items():
        fitted, lo, hi = noise_band(fit, an.fits.samples["noise"][cls], xs)
        rows += _curve_rows(cls, xs, fitted, lo, hi)
    return rows


def size_chart_rows(an: Analysis) -> list[dict]:
    """Points and fitted volume curves with bands, per class, vs total training size."""
    rows = []
    for pm in an.size_points:
        rows += _point_rows(an, pm, pm.point.train_size)
    if not an.size_points:
        return rows
    sizes = [pm.point.train_size for pm in an.size_points]
    xs = np.geomspace(min(sizes), max(sizes), CURVE_POINTS)
    for k, cls in enumerate(an.run.classes):
        fit = an.fits.volume.get(cls)
        if fit is not None:
            n = xs * an.run.class_shares[k]
            fitted, lo, hi = volume_band(fit, an.fits.samples["volume"][cls], n)
            rows += _curve_rows(cls, xs, fitted, lo, hi)
    return rows


def _point_rows(an: Analysis, pm: Any, x: float) -> list[dict]:
    """Mean accuracy of each class with error bars of one std over repeats."""
    acc = pm.accuracy
    return [
        {"kind": "point", "class": cls, "x": float(x), "accuracy": float(acc.mean[k]),
         "lo": float(acc.mean[k] - acc.std[k]), "hi": float(acc.mean[k] + acc.std[k]),
         "ci_lo": float(acc.lo[k]), "ci_hi": float(acc.hi[k]), "n": acc.n}
        for k, cls in enumerate(an.run.classes)
    ]


def _curve_rows(cls: str, xs, fitted, lo, hi) -> list[dict]:
    return [
        {"kind": "curve", "class": cls, "x": float(x), "fit": float(f), "fit_lo": float(a),
         "fit_hi": float(b)}
        for x, f, a, b in zip(xs, fitted, lo, hi)
    ]


def _condition(an: Analysis, prefix: str) -> Any:
    return next((pm for name, pm in an.conditions if name.startswith(prefix)), None)


def report_charts(an: Analysis) -> list[tuple[str, str, alt.TopLevelMixin]]:
    """(id, caption, chart) of every chart the run's data supports."""
    out: list[tuple[str, str, Any]] = []
    classes = an.run.classes
    if an.baseline is not None:
        out.append(("confusion_baseline", "Average confusion matrix of the clean full-data "
                    "baseline (counts).",
                    charts.confusion_heatmap(confusion_rows(an.baseline, classes),
                                             f"Baseline: {an.baseline.point.name()}")))
        for prefix, label in (("noise", "highest noise"), ("size", "smallest size")):
            pm = _condition(an, prefix)
            if pm is not None:
                rows = confusion_rows(pm, classes, an.baseline)
                out.append((f"confusion_diff_{prefix}", f"Average confusion at the {label} minus "
                            "the baseline's (counts; red: more, blue: fewer).",
                            charts.confusion_diff_heatmap(rows, f"{pm.point.name()} - baseline")))
    out += _curve_charts(an)
    out += _pair_charts(an)
    bump = bump_rows(an.points, an.run, an.model, an.noise_model, classes)
    if bump:
        out.append(("ranking_bump", "Rank of each class (1 = least accurate) from the smallest "
                    "size through the baseline to the highest noise.", charts.ranking_bump(bump)))
    sens = an.sensitivity["rows"]
    if any("slope" in r and "need" in r for r in sens):
        out.append(("sensitivity", "Noise slope vs volume need per class, with 95% intervals.",
                    charts.sensitivity_scatter(sens)))
    return out


def _curve_charts(an: Analysis) -> list[tuple[str, str, Any]]:
    out = []
    if len(an.noise_points) > 1:
        out.append(("accuracy_vs_noise", "Per-class accuracy vs label-noise rate: means over "
                    "repeats with ±1 std bars, fitted line with its 95% bootstrap band.",
                    charts.accuracy_vs_noise(noise_chart_rows(an))))
    if len(an.size_points) > 1:
        out.append(("accuracy_vs_size", "Per-class accuracy vs training-set size (log axis): "
                    "means with ±1 std bars, fitted saturating curve with its 95% bootstrap band.",
                    charts.accuracy_vs_size(size_chart_rows(an))))
    return out


def _pair_charts(an: Analysis) -> list[tuple[str, str, Any]]:
    rows = pair_table(an)
    out = []
    noisy = {pm.point for pm in an.noise_points}
    sized = {pm.point for pm in an.size_points}
    rows = [r | {"lo": max(r["rate"] - r["rate_std"], 0.0), "hi": r["rate"] + r["rate_std"]}
            for r in rows]
    by_noise = [r for r in rows if _row_point(an, r) in noisy]
    by_size = [r for r in rows if _row_point(an, r) in sized]
    if len(noisy) > 1:
        out.append(("pairs_vs_noise", "Most frequent confusions (and their reverses) vs noise: "
                    "rate = count / true-class total, ±1 std over repeats.",
                    charts.pair_confusions(by_noise, "noise_rate", "Pair confusions vs noise")))
    if len(sized) > 1:
        out.append(("pairs_vs_size", "Most frequent confusions (and their reverses) vs size: "
                    "rate = count / true-class total, ±1 std over repeats.",
                    charts.pair_confusions(by_size, "train_size", "Pair confusions vs size")))
    return out


def _row_point(an: Analysis, row: dict) -> Any:
    from labelsim.analysis.metrics import GridPoint

    return GridPoint(row["model"], row["noise_model"], row["noise_rate"], row["train_size"],
                     row["label"])


# ---------------------------------------------------------------- HTML pieces


def _fmt(value: Any, fmt: str = ".3f", infinite: str = "∞") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)) and math.isinf(value):
        return infinite if value > 0 else f"-{infinite}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) and fmt.endswith("d"):
        return format(int(value), fmt)
    if isinstance(value, (float, np.floating)):
        money = fmt.startswith("$")
        text = format(float(value), fmt.lstrip("$"))
        if text.startswith("-") and float(text.replace(",", "").rstrip("%")) == 0:
            text = text[1:]  # no "-0.00"
        return "$" + text if money else text
    return str(value)


def html_table(rows: Sequence[dict], columns: Sequence[str] | None = None,
               formats: dict[str, str] | None = None, infinite: str = "∞") -> str:
    """An HTML table of dict rows (columns: the union of keys unless given); ``infinite`` is
    the text for an infinite value (e.g. 'never' for a size that is never reached)."""
    if not rows:
        return "<p class='empty'>No data.</p>"
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    formats = formats or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(_cell(r.get(c), formats.get(c, ".3f"), infinite) for c in columns)
        + "</tr>"
        for r in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div class='wide'>{table}</div>"


def _cell(value: Any, fmt: str, infinite: str) -> str:
    """A table cell; text (not numbers) is left-aligned."""
    css = " class='t'" if isinstance(value, str) else ""
    return f"<td{css}>{html.escape(_fmt(value, fmt, infinite))}</td>"


def html_grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of already formatted cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _meta_section(an: Analysis) -> str:
    run, meta = an.run, an.run.meta
    seconds = [r.seconds for r in run.replicas if math.isfinite(r.seconds)]
    facts = {
        "run directory": str(run.path),
        "status": meta.get("status"),
        "dataset": json.dumps(meta.get("dataset")),
        "classes": ", ".join(run.classes),
        "model / noise model analysed": f"{an.model} / {an.noise_model}",
        "models x noise models": _combos_text(an),
        "replicas": f"{len(run.replicas)} ({len(run.finished())} finished, "
                    f"{len(run.diverged())} diverged, {len(run.unfinished())} pending or running)",
        "started / finished": f"{meta.get('started')} / {meta.get('finished')}",
        "replica seconds (sum / mean)":
            f"{sum(seconds):.1f} / {np.mean(seconds):.1f}" if seconds else None,
        "device": meta.get("device"),
        "git commit": meta.get("git_commit"),
        "labelsim version": meta.get("labelsim_version"),
        "versions": json.dumps(meta.get("versions")),
    }
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in facts.items())
    return f"<table class='meta'>{rows}</table>"


def _combos_text(an: Analysis) -> str:
    comp = an.comparison
    if comp is None or not comp.combos:
        return "-"
    text = f"{', '.join(comp.models)} x {', '.join(comp.noise_models)}"
    return text + (" (side by side below)" if comp.side_by_side else "")


def _excluded_section(an: Analysis) -> str:
    rows = [
        {"replica": r.replica, "status": r.status, "experiment": r.experiment,
         "noise": f"{r.noise_model} {r.noise_rate:g}", "train_size": r.train_size,
         "repeat": r.repeat, "diverged at step": r.diverged_step}
        for r in an.run.replicas if not r.finished
    ]
    if not rows:
        return "<p>Every replica finished; none was left out.</p>"
    return ("<p>Left out of every average and fit:</p>" + html_table(rows))


def _fits_section(an: Analysis) -> str:
    fits = an.fits
    parts = []
    for title, fit in (("noise", fits.overall_noise), ("volume", fits.overall_volume),
                       ("joint", fits.overall_joint)):
        if fit is not None:
            parts.append(f"<h3>Overall {title} fit</h3>" + _fit_table(fit))
    fractions = size_fraction_table(an)
    if fractions:
        parts.append("<h3>Fraction of full-data accuracy by size</h3>"
                     + html_table(fractions, formats={"fraction_observed": ".1%",
                                                      "fraction_fit": ".1%", "accuracy": ".4f"}))
    parts.append("<h3>Training size needed</h3><p>Per-class count and total training size at "
                 "which the fitted curve reaches 90% / 95% of full-data accuracy or of its "
                 "asymptote, with 95% bootstrap intervals. '&lt;N': already reached at the "
                 "smallest measured size N; beyond the largest size the curve is "
                 "extrapolated.</p>" + html_table(size_need_display(size_need_table(an))))
    parts.append("<h3>Impact index</h3><p>Accuracy lost to 10% label noise over accuracy lost "
                 "to 10% fewer labels, at full data (&gt; 1: noise hurts more).</p>"
                 + html_table(impact_table(an), formats={"fraction": ".2f", "impact": ".2f",
                                                         "impact_lo": ".2f", "impact_hi": ".2f",
                                                         "noise_loss": ".4f",
                                                         "volume_loss": ".4f"}))
    return "".join(parts)


def size_need_display(rows: list[dict]) -> list[dict]:
    """Rows of ``size_need_table`` as text: sizes with intervals, '<N' below the smallest size."""
    return [{"class": r["class"], "target": f"{r['fraction']:.0%} of {r['of']}",
             "total [CI]": size_cell(r, "total", r["smallest_total"]),
             "per class [CI]": size_cell(r, "per_class", r["smallest_per_class"]),
             "where": r["where"]} for r in rows]


def _fit_table(fit: Any) -> str:
    from dataclasses import asdict

    row = {k: (f"[{_fmt(v[0], '.4g')}, {_fmt(v[1], '.4g')}]" if isinstance(v, tuple) else v)
           for k, v in asdict(fit).items()}
    return html_table([row], formats={k: ".4g" for k in row})


def _sensitivity_section(an: Analysis) -> str:
    s = an.sensitivity
    lines = []
    if s["most_noise_sensitive"]:
        lines.append(f"Most noise-sensitive: <b>{_ties(s, 'noise')}</b>.")
    if s["most_volume_sensitive"]:
        lines.append(f"Most volume-hungry (size to {s['fraction']:.0%} of asymptote): "
                     f"<b>{_ties(s, 'volume')}</b>.")
    text = " ".join(lines) + " Classes whose 95% intervals overlap the top one are a tie."
    return f"<p>{text}</p>" + html_table(s["rows"], formats={
        "need": ".0f", "need_lo": ".0f", "need_hi": ".0f", "slope_rank": "d", "need_rank": "d"},
        infinite="never")


def _ties(sens: dict, kind: str) -> str:
    key = "most_noise_sensitive" if kind == "noise" else "most_volume_sensitive"
    classes, total = sens[key], len(sens[f"{kind}_order"])
    first = html.escape(classes[0])
    if len(classes) == 1:
        return first
    if len(classes) == total:
        return f"none stands out (every class's interval overlaps {first}'s)"
    return f"{first} (tied with {html.escape(', '.join(classes[1:]))})"


def _tables_sections(an: Analysis) -> list[tuple[str, str]]:
    classes = an.run.classes
    ranking = ranking_rows(an.conditions, classes)
    sections = [
        ("Per-class summary", "<p>Accuracy x1000 (mean over repeats ± std); noise slope = "
         "accuracy lost per unit of requested noise rate (the grid level) with its 95% "
         "bootstrap interval; line: whether a straight line fits (no significant curvature or "
         "lack of fit); size to 95% = total training size reaching 95% of full-data accuracy, "
         "from the volume fit ('&lt;N': already reached at the smallest size N).</p>"
         + html_grid(*summary_table(an))),
        ("Fits", _fits_section(an)),
        ("Sensitivity", _sensitivity_section(an)),
        ("Ranking", "<p>1 = least accurate; change = rank minus baseline rank (negative: toward "
         "the least accurate end).</p>" + html_table(ranking)),
    ]
    if an.baseline is not None:
        asym = asymmetry_rows(an.baseline, classes, 10)
        sections.append(("Confusion asymmetry", "<p>Pairs at the baseline with the largest "
                         "difference between i→j and j→i rates (count / true-class total); log "
                         "ratio with a +0.5 count correction; 95% intervals over repeats.</p>"
                         + html_table(asym, columns=["pair", "rate", "reverse_rate", "diff",
                                                     "diff_lo", "diff_hi", "ratio", "log_ratio",
                                                     "log_ratio_lo", "log_ratio_hi", "n"])))
    sections.append(("Every grid point", html_table(overall_rows(an.points), formats={
        "accuracy": ".4f", "accuracy_std": ".4f", "accuracy_lo": ".4f", "accuracy_hi": ".4f"})))
    return sections


# ---------------------------------------------------------------- side by side, reference, budget

Item = tuple[str, str, Any]  # (chart id, caption, chart)

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
    comp = an.comparison
    assert comp is not None
    realized = html_table(compare.realized_rows(comp), formats={
        "requested": ".0%", "realized": ".1%", "ratio": ".3f"})
    return (_REALIZED_NOTE + html_grid(*compare.slope_table(comp))
            + "<h3>Requested vs realized noise rate</h3>" + realized + _chart_section(items))


def human_items(an: Analysis) -> list[Item]:
    """The human-vs-synthetic scatter, when the run has both kinds of noise."""
    comp = an.comparison
    rows = compare.human_vs_synthetic_rows(comp) if comp is not None else []
    if not rows:
        return []
    return [("human_vs_synthetic", "Each class's slope under human noise against its slope "
             "under a synthetic noise model (per unit realized noise), 95% intervals both ways; "
             "on the dashed line the synthetic model predicts the annotators exactly.",
             charts.human_vs_synthetic(rows))]


def _human_section(an: Analysis, items: list[Item]) -> str:
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
    return "".join(parts) + _chart_section(items)


def _chart_id(prefix: str, index: int) -> str:
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
    return "".join(parts) + _chart_section(items)


def budget_items(saved: saved_budget.SavedBudget) -> list[Item]:
    """The accuracy-vs-cost chart of a saved budget answer, the chosen budget marked."""
    chart = charts.budget_curves(saved_budget.curve_rows(saved), saved.budget, saved.measure,
                                 x_field="cost", markers=saved_budget.marker_rows(saved),
                                 target=saved.target)
    return [("budget_curves", "Predicted accuracy of each strategy against the money it "
             "spends; dashed rule: the chosen budget; diamonds: each strategy's plan at that "
             "budget" + ("; dotted line: the target" if saved.target is not None else "")
             + ". Strategies that buy the same labels draw the same line.",
             chart)]


def _budget_section(saved: saved_budget.SavedBudget, items: list[Item]) -> str:
    money = {"cost": "$,.2f", "cost to reach target": "$,.2f"}
    formats = {"noise": ".1%", "predicted": ".1%", "lo": ".1%", "hi": ".1%",
               "worst class": ".1%", "labels": ",d"} | money
    tiers = {t["name"]: ",d" for t in saved.data["tiers"]}
    notes = "".join(f"<p class='caption'>note: {html.escape(w)}</p>"
                    for w in saved.data.get("warnings", []))
    return (f"<p>{html.escape(saved_budget.header_text(saved))} Saved by the budget command "
            f"in {html.escape(str(saved.path))}. Predicted accuracies come from the run's "
            "fitted curves, with 95% intervals (lo, hi).</p>"
            "<h3>Optimized plan</h3>" + html_table(saved_budget.plan_rows(saved),
                                                   formats=formats | tiers)
            + "<h3>Strategies at the same budget</h3>"
            + html_table(saved_budget.strategy_rows(saved), formats=formats)
            + notes + _chart_section(items))


def _load_budget(an: Analysis, path: Path | None) -> saved_budget.SavedBudget | str | None:
    """The saved budget answer, an error message to show instead, or None when there is none."""
    found = saved_budget.find_saved_budget(an.run.path, path)
    if found is None:
        return None
    try:
        return saved_budget.load_saved_budget(found, an.run.classes)
    except saved_budget.SavedBudgetError as exc:
        return str(exc)


def extra_analysis_sections(
    an: Analysis, budget: saved_budget.SavedBudget | str | None
) -> tuple[list[tuple[str, str]], list[Item]]:
    """Sections (title, html) and their charts for every model x noise model, the reference
    study and the saved budget, where the run has them."""
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


# ---------------------------------------------------------------- the page


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """The Vega, Vega-Lite and vega-embed JavaScript, as one inline-safe string."""
    import altair as alt
    import vl_convert as vlc

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    version = wanted if wanted in vlc.get_vegalite_versions() else None
    bundle = vlc.javascript_bundle(vl_version=version) if version else vlc.javascript_bundle()
    return bundle.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f4f4f4} table.meta th,table.meta td{text-align:left}
td:first-child,th:first-child,td.t{text-align:left}
.wide{overflow-x:auto;max-width:100%}
.charts{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}
.chart{margin:.5em 0 1em;max-width:100%;overflow-x:auto}
.caption{color:#555;font-size:.9em;max-width:640px} nav a{margin-right:1em}
"""

_EMBED = """
(function () {
  var specs = JSON.parse(document.getElementById("labelsim-specs").textContent);
  var options = {renderer: "svg", actions: {export: true, source: false, compiled: false,
                 editor: false}};
  Object.keys(specs).forEach(function (id) {
    vegaEmbed("#" + id, specs[id], options).catch(function (err) {
      document.getElementById(id).textContent = "chart failed to render: " + err;
    });
  });
})();
"""


def _slug(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def render_page(
    title: str, sections: Iterable[tuple[str, str]], specs: dict[str, dict], bundle: str
) -> str:
    """The HTML page: sections (title, html), charts by id (each in a div of that id)."""
    sections = list(sections)
    nav = "".join(f"<a href='#{_slug(t)}'>{html.escape(t)}</a>" for t, _ in sections)
    body = "".join(f"<section id='{_slug(t)}'><h2>{html.escape(t)}</h2>{content}</section>"
                   for t, content in sections)
    data = json.dumps(specs, separators=(",", ":")).replace("<", "\\u003c")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}"
        f"<script type='application/json' id='labelsim-specs'>{data}</script>"
        f"<script>{bundle}</script><script>{_EMBED}</script></body></html>"
    )


def _config_section(an: Analysis) -> str:
    config = json.dumps(an.run.meta.get("config"), indent=1)
    return f"<pre>{html.escape(config)}</pre>"


def _chart_section(items: list[tuple[str, str, Any]]) -> str:
    charts_html = "".join(
        f"<div class='chart'><div id='{cid}'></div><p class='caption'>{html.escape(cap)}</p></div>"
        for cid, cap, _ in items
    )
    return f"<div class='charts'>{charts_html}</div>"


def build_report(
    run_dir: str | Path,
    extra_sections: Sequence[tuple[str, str]] = (),
    *,
    out: str | Path | None = None,
    analysis: Analysis | None = None,
    formats: Sequence[str] = (),
    charts_dir: str | Path | None = None,
    n_boot: int = 200,
    extra_specs: Mapping[str, dict] | None = None,
    budget_file: str | Path | None = None,
) -> Path:
    """Write the run's report.html (default RUN_DIR/report.html) and return its path.

    ``extra_sections`` are (title, html) pairs appended to the page. A section can hold charts:
    put ``<div id='ID'></div>`` in its html and pass the Vega-Lite spec as ``extra_specs[ID]``.
    ``formats`` (html, png, svg, json) also exports each chart under ``charts_dir`` (default
    RUN_DIR/charts). A budget answer saved by the budget command (``budget_file``, default
    RUN_DIR/analysis/budget.json) adds a budget section."""
    an = analysis or analyze_run(run_dir, n_boot=n_boot)
    items = report_charts(an)
    more_sections, more_items = extra_analysis_sections(
        an, _load_budget(an, Path(budget_file) if budget_file else None))
    specs = {cid: charts.chart_spec(chart) for cid, _, chart in items + more_items}
    clash = set(specs) & set(extra_specs or {})
    if clash:
        raise ValueError(f"extra chart id(s) {sorted(clash)} are taken; choose other ids")
    specs |= dict(extra_specs or {})
    sections = [("Run", _meta_section(an) + _excluded_section(an)),
                ("Charts", _chart_section(items)),
                *_tables_sections(an),
                *more_sections,
                *[(t, h) for t, h in extra_sections],
                ("Configuration", _config_section(an))]
    page = render_page(f"labelsim report: {an.run.path.name}", sections, specs, vega_bundle())
    path = Path(out) if out else an.run.path / "report.html"
    path.write_text(page, encoding="utf-8")
    if formats:
        target = Path(charts_dir) if charts_dir else an.run.path / "charts"
        for cid, spec in specs.items():
            charts.export_chart(spec, target / cid, formats)
    return path
