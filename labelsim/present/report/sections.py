"""The HTML sections of a run's report: tables, the run's metadata, fits, sensitivity, rankings.

Each section function returns an HTML fragment; ``html_table`` and ``html_grid`` format the
tables every section shares.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labelsim.analysis import (
    Analysis,
    asymmetry_rows,
    impact_table,
    progress_notes,
    size_cell,
    size_fraction_table,
    size_need_table,
    summary_table,
)
from labelsim.analysis.by_cluster import ACCURACY_ONLY, cluster_info, flagged_note
from labelsim.analysis.metrics import overall_rows, ranking_rows
from labelsim.analysis.units import CLASS, CLUSTER, ranked_conditions
from labelsim.present.report.rows import Item


def _fmt(value: Any, fmt: str = ".3f", infinite: str = "∞") -> str:
    """One value as text: '–' for missing, yes/no for booleans, ``fmt`` for numbers."""
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


def run_section(an: Analysis) -> str:
    """The run's metadata, then the replicas left out of every average and fit."""
    return _meta_section(an) + _excluded_section(an)


def _meta_section(an: Analysis) -> str:
    """The run's facts: folder, dataset, classes, replicas, timing, versions."""
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
    notes = "".join(f"<p>Note: {html.escape(n)}.</p>" for n in progress_notes(an))
    return f"<table class='meta'>{rows}</table>{notes}"


def _combos_text(an: Analysis) -> str:
    """The models x noise models of the run, or '-' when it has no comparison."""
    comp = an.comparison
    if comp is None or not comp.combos:
        return "-"
    text = f"{', '.join(comp.models)} x {', '.join(comp.noise_models)}"
    return text + (" (side by side below)" if comp.side_by_side else "")


def _excluded_section(an: Analysis) -> str:
    """The replicas that did not finish (diverged, pending or running)."""
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
    """Overall fits, fraction of full-data accuracy, training size needed, impact index."""
    fits = an.fits
    parts = []
    for title, fit in (("noise", fits.overall_noise), ("volume", fits.overall_volume),
                       ("joint", fits.overall_joint)):
        if fit is not None:
            parts.append(f"<h3>Overall {title} fit</h3>" + _fit_table(fit))
        elif title in fits.skipped:
            parts.append(f"<h3>Overall {title} fit</h3><p>{html.escape(fits.skipped[title])}.</p>")
    fractions = size_fraction_table(an)
    if fractions:
        parts.append("<h3>Fraction of full-data accuracy by size</h3>"
                     + html_table(fractions, formats={"fraction_observed": ".1%",
                                                      "fraction_fit": ".1%", "accuracy": ".4f"}))
    parts.append("<h3>Training size needed</h3><p>Per-class count and total training size at "
                 "which the fitted curve reaches 90% / 95% of full-data accuracy (the class's "
                 "fitted clean accuracy at the largest measured size), with 95% bootstrap intervals. '&lt;N': already reached at the "
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
    """One fit's parameters as a one-row table, intervals as '[lo, hi]'."""
    row = {k: (f"[{_fmt(v[0], '.4g')}, {_fmt(v[1], '.4g')}]" if isinstance(v, tuple) else v)
           for k, v in asdict(fit).items()}
    return html_table([row], formats={k: ".4g" for k in row})


def _sensitivity_section(an: Analysis) -> str:
    """The most noise-sensitive and most volume-hungry classes, each claimed only when the
    evidence separates it (the analysis's claim text says which, or why none), and the table."""
    s = an.sensitivity
    lines = []
    if s.get("noise_claim"):
        lines.append(f"Most noise-sensitive: <b>{html.escape(s['noise_claim'])}</b>.")
    if s.get("volume_claim"):
        target = s.get("need_target", f"{s['fraction']:.0%} of full-data accuracy")
        lines.append(f"Most volume-hungry (images per {an.unit.kind} to {html.escape(target)}): "
                     f"<b>{html.escape(s['volume_claim'])}</b>.")
    return f"<p>{' '.join(lines)}</p>" + html_table(s["rows"], formats={
        "need": ".0f", "need_lo": ".0f", "need_hi": ".0f", "slope_rank": "d", "need_rank": "d"},
        infinite="never")


def _clusters_section(an: Analysis) -> str:
    """Each cluster's class, test records, share of the training set and ranking status."""
    note = flagged_note(an.unit)
    return (f"<p>Accuracy only: {html.escape(ACCURACY_ONLY)}. Training records of a cluster in a "
            "replica: the replica's per-class count times the cluster's share of its class's "
            "training records (across classes: of the training set).</p>"
            + (f"<p>{html.escape(note)}.</p>" if note else "")
            + html_table(cluster_info(an.run, an.unit), formats={"train_share": ".4f"}))


def tables_sections(an: Analysis) -> list[tuple[str, str]]:
    """(title, html) of the summary, fits, sensitivity, ranking, asymmetry and grid tables; per
    cluster, the clusters' table instead of the class-only asymmetry."""
    classes = an.run.classes
    conditions, names = ranked_conditions(an.unit, an.conditions)
    ranking = ranking_rows(conditions, names)
    if an.unit.kind != CLASS:
        headers, grid = summary_table(an)
        return [
            ("Clusters", _clusters_section(an)),
            ("Per-cluster summary", "<p>As the per-class summary, per cluster: accuracy x1000 "
             "(mean over repeats ± std), noise slope with its 95% bootstrap interval, size to 95% "
             "= training images of the cluster at which its volume fit reaches 95% of its "
             "full-data accuracy.</p>" + html_grid([CLUSTER, *headers[1:]], grid)),
            ("Fits", _fits_section(an)),
            ("Sensitivity", _sensitivity_section(an)),
            ("Ranking", "<p>Ranked clusters only; 1 = least accurate; change = rank minus "
             "baseline rank.</p>" + html_table(ranking)),
            ("Every grid point", html_table(overall_rows(an.points), formats={
                "accuracy": ".4f", "accuracy_std": ".4f", "accuracy_lo": ".4f",
                "accuracy_hi": ".4f"})),
        ]
    sections = [
        ("Per-class summary", "<p>Accuracy x1000 (mean over repeats ± std); noise slope = "
         "accuracy lost per unit of requested noise rate (the grid level) with its 95% "
         "bootstrap interval; line: whether a straight line fits (no significant curvature or "
         "lack of fit); size to 95% = images per class at which the class's volume fit reaches "
         "95% of its full-data accuracy ('&lt;N': already reached at the smallest size N).</p>"
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
    return sections + replay_sections(an.run.path)


def replay_sections(run_dir: Path) -> list[tuple[str, str]]:
    """A section per replay in RUN/replay/*/replay.json (``python -m labelsim replay``): test
    accuracy vs money spent per strategy (a chart drawn inline as SVG), the rounds' table and
    the corrections per unit cost."""
    from labelsim.analysis.replay import REPLAY_DIR, REPLAY_FILE, correction_rows, read_replay, replay_rows

    paths = sorted(Path(run_dir).glob(f"{REPLAY_DIR}/*/{REPLAY_FILE}"))
    if not paths:
        return []
    import vl_convert

    from labelsim.present.charts import chart_spec, replay_curves

    sections = []
    for path in paths:
        result = read_replay(path)
        rows = replay_rows(result)
        points = [{"strategy": r["strategy"], "spent": r["spent"], "accuracy": r["accuracy"],
                   "lo": None if r["se"] is None else r["accuracy"] - r["se"],
                   "hi": None if r["se"] is None else r["accuracy"] + r["se"]} for r in rows]
        q = result["settings"]
        tiers = ", ".join(f"{n} (price {p:g}, noise {e:g})" for n, p, e in q["tiers"])
        note = (f"<p>Budget {q['budget']:g} in {q['rounds']} round(s) from {result['start']['labeled']} labels "
                f"of the cheapest tier ({result['start']['wrong']} wrong); tiers {html.escape(tiers)}; "
                f"{q['repeats']} training(s) per labeling and round; bars: ± 1 SE."
                f"{'' if result.get('complete') else ' Unfinished: the rounds so far.'}</p>")
        svg = vl_convert.vegalite_to_svg(chart_spec(replay_curves(points)))
        sections.append((f"Replay {path.parent.name}", note + f"<div class='chart'>{svg}</div>"
                         + html_table(rows, formats={"spent": ".4g", "accuracy": ".4f", "se": ".4f"})
                         + html_table(correction_rows(result))))
    return sections


def config_section(an: Analysis) -> str:
    """The run's configuration as indented JSON."""
    config = json.dumps(an.run.meta.get("config"), indent=1)
    return f"<pre>{html.escape(config)}</pre>"


def chart_section(items: list[Item]) -> str:
    """A div per chart, of the chart's id, with its caption below."""
    charts_html = "".join(
        f"<div class='chart'><div id='{cid}'></div><p class='caption'>{html.escape(cap)}</p></div>"
        for cid, cap, _ in items
    )
    return f"<div class='charts'>{charts_html}</div>"

