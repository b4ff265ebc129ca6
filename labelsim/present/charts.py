"""Altair chart builders. Each takes tidy rows (a list of dicts) and computes nothing heavy;
``export_chart`` writes a chart as offline HTML, PNG, SVG or Vega-Lite JSON.

altair and vl_convert are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from labelsim.analysis.derived import BELOW, BEYOND, WITHIN

if TYPE_CHECKING:
    import altair as alt

FORMATS = ("html", "png", "svg", "json")
PANEL_WIDTH = 150  # pixels of one small-multiple panel
PANEL_HEIGHT = 120
FACET_COLUMNS = 5


def _alt():
    import altair as alt

    return alt


def clean_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows with NaN/inf replaced by None (Vega-Lite data must be valid JSON)."""
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in rows
    ]


def _data(rows: Iterable[dict]) -> alt.Data:
    return _alt().Data(values=clean_rows(rows))


def confusion_heatmap(rows: list[dict], title: str = "Average confusion matrix") -> alt.Chart:
    """Heatmap of mean counts (true class in rows, predicted in columns) with counts as text.

    Rows need: true, predicted, count (and optionally rate)."""
    alt = _alt()
    top = max((r["count"] for r in rows), default=0.0)
    base = alt.Chart(_data(rows), title=title).encode(
        x=alt.X("predicted:N", sort=None, title="predicted class"),
        y=alt.Y("true:N", sort=None, title="true class"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="mean count"),
        tooltip=["true:N", "predicted:N", alt.Tooltip("count:Q", format=".1f"),
                 alt.Tooltip("rate:Q", format=".3f")],
    )
    text = base.mark_text(fontSize=9).encode(
        text=alt.Text("count:Q", format=".0f"),
        color=alt.condition(alt.datum.count > top / 2, alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(width=360, height=360)


def confusion_diff_heatmap(
    rows: list[dict], title: str = "Difference from baseline", field: str = "count_diff"
) -> alt.Chart:
    """Diverging heatmap of a confusion matrix minus the baseline's (centred on zero).

    Rows need: true, predicted and ``field``."""
    alt = _alt()
    values = [abs(r[field]) for r in rows if r.get(field) is not None and math.isfinite(r[field])]
    span = max(values, default=1.0) or 1.0
    base = alt.Chart(_data(rows), title=title).encode(
        x=alt.X("predicted:N", sort=None, title="predicted class"),
        y=alt.Y("true:N", sort=None, title="true class"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(f"{field}:Q", title="change",
                        scale=alt.Scale(scheme="redblue", domain=[-span, span], reverse=True)),
        tooltip=["true:N", "predicted:N", alt.Tooltip(f"{field}:Q", format="+.1f")],
    )
    strong = (alt.datum[field] > span / 2) | (alt.datum[field] < -span / 2)
    text = base.mark_text(fontSize=9).encode(
        text=alt.Text(f"{field}:Q", format="+.0f"),
        color=alt.condition(strong, alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(width=360, height=360)


def _curve_panels(
    rows: list[dict], x_title: str, x_scale: alt.Scale, title: str, y_title: str = "accuracy"
) -> alt.FacetChart:
    """Per-class panels: fitted line with its interval band, points with error bars.

    Rows need: class, x, kind ('point' or 'curve'); points: accuracy and error-bar ends lo,
    hi; curves: fit, fit_lo, fit_hi."""
    alt = _alt()
    x = alt.X("x:Q", title=x_title, scale=x_scale)
    point = alt.datum.kind == "point"
    curve = alt.datum.kind == "curve"
    band = alt.Chart().mark_area(opacity=0.25).encode(x=x, y=alt.Y("fit_lo:Q", title=y_title),
                                                      y2="fit_hi:Q").transform_filter(curve)
    line = alt.Chart().mark_line().encode(x=x, y="fit:Q").transform_filter(curve)
    bars = alt.Chart().mark_rule().encode(x=x, y="lo:Q", y2="hi:Q").transform_filter(point)
    dots = alt.Chart().mark_point(filled=True, color="black", size=25).encode(
        x=x, y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False)),
        tooltip=["class:N", "x:Q", alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f")],
    ).transform_filter(point)
    layered = alt.layer(band, line, bars, dots, data=_data(rows)).properties(
        width=PANEL_WIDTH, height=PANEL_HEIGHT)
    return layered.facet(facet=alt.Facet("class:N", sort=None, title=None),
                         columns=FACET_COLUMNS, title=title).resolve_scale(y="independent")


def accuracy_vs_noise(
    rows: list[dict], title: str = "Accuracy vs label-noise rate"
) -> alt.FacetChart:
    """Per-class accuracy against the noise rate: repeats' means with intervals, fitted lines."""
    return _curve_panels(rows, "label-noise rate", _alt().Scale(zero=True, padding=8), title)


def accuracy_vs_size(
    rows: list[dict], title: str = "Accuracy vs training-set size"
) -> alt.FacetChart:
    """Per-class accuracy against the training-set size (log axis) with fitted curves."""
    return _curve_panels(rows, "training-set size (total)", _log_scale(), title)


def _log_scale() -> alt.Scale:
    """Log axis fitted to the data (no rounding out to powers of ten), with a little padding."""
    return _alt().Scale(type="log", nice=False, padding=12)


def pair_confusions(
    rows: list[dict], x_field: str = "noise_rate", title: str = "Pair confusions"
) -> alt.Chart:
    """Rate of each (true -> predicted) pair against noise rate or size, with intervals.

    Rows need: pair, ``x_field``, rate and error-bar ends lo, hi."""
    alt = _alt()
    log = x_field == "train_size"
    levels = sorted({r[x_field] for r in rows if r.get(x_field) is not None})
    x = alt.X(f"{x_field}:Q", scale=_log_scale() if log else alt.Scale(zero=True, padding=8),
              title="training-set size" if log else "label-noise rate",
              axis=alt.Axis() if log else alt.Axis(values=levels, format=".0%"))
    color = alt.Color("pair:N", title="true -> predicted")
    base = alt.Chart(_data(rows), title=title)
    lines = base.mark_line(point=True).encode(
        x=x, y=alt.Y("rate:Q", title="rate (count / true-class total)"), color=color,
        tooltip=["pair:N", f"{x_field}:Q", alt.Tooltip("rate:Q", format=".3f")])
    bars = base.mark_rule().encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    return (bars + lines).properties(width=420, height=260)


def ranking_bump(rows: list[dict], title: str = "Class ranking across conditions") -> alt.Chart:
    """Bump chart: each class's rank (1 = least accurate, on top) across conditions.

    Rows need: condition, order, class, rank, accuracy."""
    alt = _alt()
    order = [r["condition"] for r in sorted(rows, key=lambda r: r["order"])]
    x = alt.X("condition:N", sort=list(dict.fromkeys(order)), title=None,
              axis=alt.Axis(labelAngle=0))
    y = alt.Y("rank:O", title="rank (1 = least accurate)")
    base = alt.Chart(_data(rows), title=title).encode(x=x, y=y, color=alt.Color(
        "class:N", legend=None))
    last = max((r["order"] for r in rows), default=0)
    lines = base.mark_line() + base.mark_point(filled=True, size=60).encode(
        tooltip=["class:N", "condition:N", "rank:O", alt.Tooltip("accuracy:Q", format=".3f")])
    labels = base.mark_text(align="left", dx=8).encode(text="class:N").transform_filter(
        alt.datum.order == last)
    return (lines + labels).properties(width=120 * max(len(set(order)), 1), height=300)


def sensitivity_scatter(
    rows: list[dict], title: str = "Per-class sensitivity: label noise vs volume"
) -> alt.Chart:
    """Noise slope against volume need, each with its interval as error bars, labelled; the
    marker says whether the need lies within, below or beyond the measured sizes.

    Rows need: class, slope, slope_lo, slope_hi, need, need_lo, need_hi, need_where."""
    alt = _alt()
    rows = [r for r in rows if r.get("slope") is not None and r.get("need") is not None]
    x = alt.X("slope:Q", title="accuracy lost per unit noise rate")
    top = max((r.get("need_hi") or r["need"] for r in clean_rows(rows)), default=1.0)
    ticks = [0.0, *_decade_ticks(top)]
    y = alt.Y("need:Q", scale=alt.Scale(type="symlog"),  # symlog: a need of 0 stays on the axis
              axis=alt.Axis(values=ticks),
              title="training images per class to reach 95% of asymptote")
    base = alt.Chart(_data(rows), title=title)
    xbars = base.mark_rule(opacity=0.5).encode(x="slope_lo:Q", x2="slope_hi:Q", y=y)
    ybars = base.mark_rule(opacity=0.5).encode(x=x, y="need_lo:Q", y2="need_hi:Q")
    shape = alt.Shape("need_where:N", title="volume need", scale=alt.Scale(
        domain=[WITHIN, BELOW, BEYOND], range=["circle", "triangle-down", "triangle-up"]))
    dots = base.mark_point(filled=True, size=70).encode(
        x=x, y=y, color=alt.Color("class:N", legend=None), shape=shape,
        tooltip=["class:N", alt.Tooltip("slope:Q", format=".3f"),
                 alt.Tooltip("need:Q", format=".0f"), "need_where:N"])
    labels = base.mark_text(align="left", dx=6, dy=-6).encode(x=x, y=y, text="class:N")
    return (xbars + ybars + dots + labels).properties(width=420, height=320)


def _decade_ticks(top: float) -> list[float]:
    """1, 10, 100, ... up to the first power of ten at or above ``top``."""
    ticks = [1.0]
    while ticks[-1] < top and len(ticks) < 12:
        ticks.append(ticks[-1] * 10)
    return ticks


def slope_comparison(
    rows: list[dict], title: str = "Noise slope per class, by noise model"
) -> alt.FacetChart:
    """Per-class noise slope with its 95% interval, one colour per noise model, one column per
    model. Rows need: model, noise_model, class, slope, slope_lo, slope_hi."""
    alt = _alt()
    rows = [r for r in rows if r.get("slope") is not None]
    classes = list(dict.fromkeys(r["class"] for r in rows))
    x = alt.X("class:N", sort=classes, title=None, axis=alt.Axis(labelAngle=-40))
    offset = alt.XOffset("noise_model:N", sort=None)
    color = alt.Color("noise_model:N", sort=None, title="noise model")
    bars = alt.Chart().mark_rule(strokeWidth=1.5).encode(
        x=x, xOffset=offset, y=alt.Y("slope_lo:Q", title="accuracy lost per unit realized noise"),
        y2="slope_hi:Q", color=color)
    dots = alt.Chart().mark_point(filled=True, size=40).encode(
        x=x, xOffset=offset, y="slope:Q", color=color,
        tooltip=["model:N", "noise_model:N", "class:N", alt.Tooltip("slope:Q", format=".3f"),
                 alt.Tooltip("slope_lo:Q", format=".3f"), alt.Tooltip("slope_hi:Q", format=".3f"),
                 alt.Tooltip("realized_max:Q", format=".1%", title="realized up to")])
    zero = alt.Chart().mark_rule(color="#999", strokeDash=[3, 3]).encode(y=alt.datum(0))
    layered = alt.layer(zero, bars, dots, data=_data(rows)).properties(
        width=max(34 * len(classes), 240), height=260)
    return layered.facet(column=alt.Column("model:N", sort=None, title="model"), title=title)


def human_vs_synthetic(
    rows: list[dict], title: str = "Human vs synthetic noise, per class"
) -> alt.FacetChart:
    """Each class's slope under human noise (y) against a synthetic noise model (x), with
    intervals both ways and the line y = x; one panel per (model, human, synthetic).

    Rows need: model, human, synthetic, class, human_slope/_lo/_hi, synthetic_slope/_lo/_hi."""
    alt = _alt()
    rows = [r | {"panel": f"{r['model']}: {r['human']} vs {r['synthetic']}"}
            for r in rows if r["class"] != "overall"]
    top = max((v for r in clean_rows(rows) for v in (r.get("human_hi"), r.get("synthetic_hi"),
                                                      r.get("human_slope"))
               if v is not None), default=1.0)
    lo = min((v for r in clean_rows(rows) for v in (r.get("human_lo"), r.get("synthetic_lo"))
              if v is not None), default=0.0)
    scale = alt.Scale(domain=[min(lo, 0.0), top * 1.05], nice=False)
    x = alt.X("synthetic_slope:Q", scale=scale, title="slope under synthetic noise")
    y = alt.Y("human_slope:Q", scale=scale, title="slope under human noise")
    low = min(lo, 0.0)
    diagonal = alt.Chart().mark_rule(color="#999", strokeDash=[4, 4]).encode(
        x=alt.datum(low), y=alt.datum(low), x2=alt.datum(top * 1.05), y2=alt.datum(top * 1.05))
    xbars = alt.Chart().mark_rule(opacity=0.5).encode(x="synthetic_lo:Q", x2="synthetic_hi:Q", y=y)
    ybars = alt.Chart().mark_rule(opacity=0.5).encode(x=x, y="human_lo:Q", y2="human_hi:Q")
    dots = alt.Chart().mark_point(filled=True, size=50).encode(
        x=x, y=y, color=alt.Color("verdict:N", title="synthetic noise", scale=_verdict_scale(rows)),
        tooltip=["class:N", alt.Tooltip("human_slope:Q", format=".3f"),
                 alt.Tooltip("synthetic_slope:Q", format=".3f"),
                 alt.Tooltip("diff:Q", format="+.3f"), "verdict:N"])
    labels = alt.Chart().mark_text(align="left", dx=6, dy=-6, fontSize=10).encode(
        x=x, y=y, text="class:N")
    layered = alt.layer(diagonal, xbars, ybars, dots, labels, data=_data(rows)).properties(
        width=300, height=300)
    return layered.facet(facet=alt.Facet("panel:N", sort=None, title=None), columns=3,
                         title=title)


_VERDICT_COLOURS = {"consistent": "#4c78a8", "synthetic under-predicts": "#e45756",
                    "synthetic over-predicts": "#54a24b", "-": "#999999"}


def _verdict_scale(rows: list[dict]) -> alt.Scale:
    """Fixed colours for the verdicts present (so a colour means the same in every report)."""
    present = [v for v in _VERDICT_COLOURS if any(r.get("verdict") == v for r in rows)]
    return _alt().Scale(domain=present, range=[_VERDICT_COLOURS[v] for v in present])


def transition_heatmaps(
    rows: list[dict], title: str = "Realized label transitions (row = true class)"
) -> alt.FacetChart:
    """One heatmap per noise model of the share of each true class's training labels given
    each label; diagonal cells grey so the off-diagonal structure keeps the colour scale (one
    scale per noise model: the structure matters here, the amounts are in the tables).

    Rows need: noise_model, true, given, share, diagonal."""
    alt = _alt()
    classes = list(dict.fromkeys(r["true"] for r in rows))
    x = alt.X("given:N", sort=classes, title="label given")
    y = alt.Y("true:N", sort=classes, title="true class")
    off = alt.datum.diagonal == False  # noqa: E712 (a Vega expression, not Python)
    cells = alt.Chart().mark_rect().encode(
        x=x, y=y, color=alt.Color("share:Q", title="share of class",
                                  scale=alt.Scale(scheme="oranges"),
                                  legend=alt.Legend(format=".1%")),
        tooltip=["noise_model:N", "true:N", "given:N", alt.Tooltip("share:Q", format=".2%"),
                 "count:Q"]).transform_filter(off)
    diag = alt.Chart().mark_rect(color="#e8e8e8").encode(
        x=x, y=y, tooltip=["true:N", alt.Tooltip("share:Q", format=".1%", title="kept")]
    ).transform_filter(alt.datum.diagonal == True)  # noqa: E712
    text = alt.Chart().mark_text(fontSize=7).encode(
        x=x, y=y, text=alt.Text("share:Q", format=".0%")).transform_filter(
        alt.datum.share >= 0.005)
    models = list(dict.fromkeys(r["noise_model"] for r in rows))
    layered = alt.layer(cells, diag, text, data=_data(rows)).properties(width=230, height=230)
    return layered.facet(facet=alt.Facet("noise_model:N", sort=models, title=None), columns=3,
                         title=title).resolve_scale(color="independent")


def reference_dots(
    rows: list[dict], title: str = "Per-class accuracy: this run vs the reference study"
) -> alt.FacetChart:
    """Dot plot per condition: each class's accuracy x1000 in the run and in the study.

    Rows need: condition, class, source ('run' or 'study'), accuracy_x1000."""
    alt = _alt()
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    classes = list(dict.fromkeys(r["class"] for r in rows))
    y = alt.Y("class:N", sort=classes, title=None)
    x = alt.X("accuracy_x1000:Q", title="accuracy x1000", scale=alt.Scale(zero=False))
    link = alt.Chart().mark_rule(color="#bbb").encode(
        y=y, x="min(accuracy_x1000):Q", x2="max(accuracy_x1000):Q")
    dots = alt.Chart().mark_point(filled=True, size=60).encode(
        y=y, x=x, color=alt.Color("source:N", title="source", sort=["run", "study"]),
        shape=alt.Shape("source:N", sort=["run", "study"], legend=None),
        tooltip=["condition:N", "class:N", "source:N", "accuracy_x1000:Q"])
    layered = alt.layer(link, dots, data=_data(rows)).properties(width=220, height=220)
    return layered.facet(column=alt.Column("condition:N", sort=conditions, title=None),
                         title=title)


def budget_curves(
    rows: list[dict], budget: float, measure: str = "predicted accuracy", *,
    x_field: str = "budget", markers: list[dict] | None = None, target: float | None = None,
) -> alt.LayerChart:
    """Predicted accuracy against money per strategy (lines), the chosen budget as a dashed
    rule; optionally each strategy's plan at that budget (labelled points) and the target.

    Rows need: strategy, budget, cost, accuracy; markers: strategy, cost, accuracy."""
    alt = _alt()
    title = "labeling cost (spent)" if x_field == "cost" else "budget"
    x = alt.X(f"{x_field}:Q", title=title, axis=alt.Axis(format="$,.0f"))
    y = alt.Y("accuracy:Q", title=measure, scale=alt.Scale(zero=False),
              axis=alt.Axis(format="%"))
    color = alt.Color("strategy:N", title="strategy")
    lines = alt.Chart(_data(rows)).mark_line(point=True).encode(
        x=x, y=y, color=color,
        tooltip=["strategy:N", alt.Tooltip("budget:Q", format="$,.2f"),
                 alt.Tooltip("cost:Q", format="$,.2f"), alt.Tooltip("accuracy:Q", format=".2%")])
    rule = alt.Chart(_data([{x_field: budget, "label": f"budget ${budget:,.0f}"}])).mark_rule(
        strokeDash=[4, 4], color="black").encode(x=f"{x_field}:Q", tooltip=["label:N"])
    layers = [lines, rule]
    if markers:
        layers += _budget_markers(markers, x_field, y, color)
    if target is not None:
        layers.append(alt.Chart(_data([{"accuracy": target}])).mark_rule(
            color="#888", strokeDash=[2, 2]).encode(y="accuracy:Q"))
    heading = f"{measure} vs labeling {'cost' if x_field == 'cost' else 'budget'}"
    return alt.layer(*layers).properties(title=heading, width=560, height=340)


def _budget_markers(markers: list[dict], x_field: str, y: alt.Y, color: alt.Color) -> list:
    alt = _alt()
    x = alt.X(f"{x_field}:Q")
    base = alt.Chart(_data(markers))
    dots = base.mark_point(size=140, shape="diamond", filled=True, stroke="black").encode(
        x=x, y=y, color=color,
        tooltip=["strategy:N", alt.Tooltip("cost:Q", format="$,.2f"),
                 alt.Tooltip("accuracy:Q", format=".2%")])
    text = base.mark_text(align="left", dx=9, fontSize=10).encode(x=x, y=y, text="label:N")
    return [dots, text]


def chart_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The Vega-Lite specification of a chart as a dict."""
    return chart.to_dict()


def export_chart(
    chart: alt.TopLevelMixin | dict, stem: str | Path, formats: Iterable[str] = FORMATS
) -> list[Path]:
    """Write a chart as STEM.html (offline, libraries inlined), .png, .svg and/or .json."""
    import vl_convert as vlc

    spec = chart if isinstance(chart, dict) else chart_spec(chart)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        if fmt == "html":
            path.write_text(vlc.vegalite_to_html(spec, bundle=True), encoding="utf-8")
        elif fmt == "png":
            path.write_bytes(vlc.vegalite_to_png(spec, scale=2))
        elif fmt == "svg":
            path.write_text(vlc.vegalite_to_svg(spec), encoding="utf-8")
        elif fmt == "json":
            path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
        else:
            raise ValueError(f"unknown chart format {fmt!r}; choose from {', '.join(FORMATS)}")
        written.append(path)
    return written
