"""Altair chart builders. Each takes tidy rows (a list of dicts) and computes nothing heavy;
``export_chart`` writes a chart as offline HTML, PNG, SVG or Vega-Lite JSON.

altair and vl_convert are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from labelsim.analysis.derived import BELOW, BEYOND, WITHIN, measured_range

if TYPE_CHECKING:
    import altair as alt

FORMATS = ("html", "png", "svg", "json")
PANEL_WIDTH = 150  # pixels of one small-multiple panel
PANEL_HEIGHT = 120
FACET_COLUMNS = 5
LABEL_FONT = 11  # pixels, the direct labels of scatter charts
CHAR_WIDTH = 7.0  # pixels a label character may take at LABEL_FONT (sans-serif, generous)
LABEL_HEIGHT = 13.0
MARKER_RADIUS = 6.0  # pixels around a point that no label may cover


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
    rows: list[dict], x: alt.X, title: str, independent_y: bool, y_title: str = "accuracy"
) -> alt.FacetChart:
    """Per-class panels: fitted line with its interval band, points with error bars; one
    y-scale for every panel (clipped to [0, 1]) unless ``independent_y``.

    Rows need: class, x, kind ('point' or 'curve'); points: accuracy and error-bar ends lo,
    hi; curves: fit, fit_lo, fit_hi."""
    alt = _alt()
    scale = (alt.Scale(zero=False) if independent_y
             else alt.Scale(domain=list(accuracy_domain(rows)), nice=False, zero=False))

    def y(field: str) -> alt.Y:
        return alt.Y(field, title=y_title, scale=scale)

    point = alt.datum.kind == "point"
    curve = alt.datum.kind == "curve"
    band = alt.Chart().mark_area(opacity=0.25, clip=True).encode(
        x=x, y=y("fit_lo:Q"), y2="fit_hi:Q").transform_filter(curve)
    line = alt.Chart().mark_line(clip=True).encode(x=x, y=y("fit:Q")).transform_filter(curve)
    bars = alt.Chart().mark_rule(clip=True).encode(x=x, y=y("lo:Q"), y2="hi:Q").transform_filter(
        point)
    dots = alt.Chart().mark_point(filled=True, color="black", size=25, clip=True).encode(
        x=x, y=y("accuracy:Q"),
        tooltip=["class:N", "x:Q", alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f")],
    ).transform_filter(point)
    layered = alt.layer(band, line, bars, dots, data=_data(rows)).properties(
        width=PANEL_WIDTH, height=PANEL_HEIGHT)
    faceted = layered.facet(facet=alt.Facet("class:N", sort=None, title=None),
                            columns=FACET_COLUMNS, title=title)
    return faceted.resolve_scale(y="independent") if independent_y else faceted


def accuracy_domain(rows: Iterable[dict]) -> tuple[float, float]:
    """The accuracy range every panel shares: all points, bars and bands, a little padding,
    never beyond [0, 1]."""
    fields = ("accuracy", "lo", "hi", "fit", "fit_lo", "fit_hi")
    values = [float(r[f]) for r in rows for f in fields
              if isinstance(r.get(f), (int, float)) and math.isfinite(r[f])]
    if not values:
        return 0.0, 1.0
    lo, hi = max(min(values), 0.0), min(max(values), 1.0)
    pad = 0.04 * (hi - lo) if hi > lo else 0.05
    return max(lo - pad, 0.0), min(hi + pad, 1.0)


def _levels(rows: Iterable[dict], field: str) -> list[float]:
    """The distinct measured values of ``field`` (the grid's levels), sorted."""
    return sorted({float(r[field]) for r in rows
                   if r.get(field) is not None and r.get("kind", "point") == "point"})


def accuracy_vs_noise(
    rows: list[dict], title: str = "Accuracy vs label-noise rate", *, independent_y: bool = False
) -> alt.FacetChart:
    """Per-class accuracy against the noise rate: repeats' means with intervals, fitted lines;
    every panel on one accuracy scale unless ``independent_y``."""
    alt = _alt()
    x = alt.X("x:Q", title="label-noise rate", scale=alt.Scale(zero=True, padding=8),
              axis=alt.Axis(values=_levels(rows, "x"), format=".0%"))
    return _curve_panels(rows, x, title, independent_y)


def accuracy_vs_size(
    rows: list[dict], title: str = "Accuracy vs training-set size", *, independent_y: bool = False
) -> alt.FacetChart:
    """Per-class accuracy against the training-set size (log axis, ticks at the measured sizes)
    with fitted curves; every panel on one accuracy scale unless ``independent_y``."""
    alt = _alt()
    x = alt.X("x:Q", title="training-set size (total)", scale=_log_scale(),
              axis=alt.Axis(values=_levels(rows, "x"), format="~s"))
    return _curve_panels(rows, x, title, independent_y)


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
              axis=alt.Axis(values=levels, format="~s" if log else ".0%"))
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


@dataclass(frozen=True)
class Frame:
    """The plot area of a chart in pixels and its axes' domains: maps data to pixels (y down)."""

    width: float
    height: float
    x_domain: tuple[float, float]
    y_domain: tuple[float, float]
    x_log: bool = False
    y_log: bool = False

    @staticmethod
    def _unit(value: float, domain: tuple[float, float], log: bool) -> float:
        f = math.log10 if log else float
        return (f(value) - f(domain[0])) / (f(domain[1]) - f(domain[0]))

    @staticmethod
    def _value(unit: float, domain: tuple[float, float], log: bool) -> float:
        if log:
            lo, hi = math.log10(domain[0]), math.log10(domain[1])
            return 10 ** (lo + unit * (hi - lo))
        return domain[0] + unit * (domain[1] - domain[0])

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        """Where the data point (x, y) lies in the plot area."""
        return (self.width * self._unit(x, self.x_domain, self.x_log),
                self.height * (1 - self._unit(y, self.y_domain, self.y_log)))

    def value(self, px: float, py: float) -> tuple[float, float]:
        """The data coordinates of a pixel of the plot area."""
        return (self._value(px / self.width, self.x_domain, self.x_log),
                self._value(1 - py / self.height, self.y_domain, self.y_log))


Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels
Spot = tuple[float, float] | None  # where a label starts, in data coordinates; None: no label


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _candidates(px: float, py: float, width: float) -> list[Box]:
    """Label boxes around a marker at (px, py): right, left, above, below, then the corners."""
    r, h = MARKER_RADIUS + 1, LABEL_HEIGHT
    mid, up, down = py - h / 2, py - r - h, py + r
    lefts = (px + r, px - r - width, px - width / 2, px - width / 2,
             px + r, px - r - width, px + r, px - r - width)
    tops = (mid, mid, up, down, up, up, down, down)
    return [(x, y, x + width, y + h) for x, y in zip(lefts, tops)]


def place_labels(points: Sequence[tuple[str, float, float]], frame: Frame) -> list[Spot]:
    """Direct labels that overlap no other label, no marker and stay in the plot area: for each
    (text, x, y) the data coordinates of its label's left-middle point, or None where no place
    is free (the legend names that point)."""
    pixels = [frame.pixel(x, y) for _, x, y in points]
    r = MARKER_RADIUS
    taken: list[Box] = [(px - r, py - r, px + r, py + r) for px, py in pixels]
    placed: list[Spot] = []
    for (text, _, _), (px, py) in zip(points, pixels):
        width = CHAR_WIDTH * len(text) + 2
        free = next((box for box in _candidates(px, py, width)
                     if box[0] >= 0 and box[1] >= 0 and box[2] <= frame.width
                     and box[3] <= frame.height and not any(_overlap(box, t) for t in taken)),
                    None)
        if free is None:
            placed.append(None)
            continue
        taken.append(free)
        placed.append(frame.value(free[0], (free[1] + free[3]) / 2))
    return placed


def _label_layer(x: alt.X, y: alt.Y) -> alt.Chart:
    """Text at each row's (label_x, label_y), left-aligned; rows without a place get none."""
    alt = _alt()
    return alt.Chart().mark_text(align="left", baseline="middle", fontSize=LABEL_FONT).encode(
        x=x, y=y, text="label:N").transform_filter("isValid(datum.label_x)")


def _clamp(
    value: float | None, domain: tuple[float, float], missing: float | None = None
) -> float | None:
    """``value`` moved into ``domain`` (infinities to its ends); ``missing`` when there is none."""
    if value is None or math.isnan(value):
        return missing
    return min(max(value, domain[0]), domain[1])


def _count_text(value: float | None) -> str:
    """An image count as text: 'never' for infinity, '–' when missing."""
    if value is None or math.isnan(value):
        return "–"
    return "never" if math.isinf(value) else f"{value:,.0f}"


def _padded(values: Sequence[float], share: float = 0.08) -> tuple[float, float]:
    """The range of ``values`` and 0, widened by ``share`` of its span each way."""
    lo, hi = min(*values, 0.0), max(*values, 0.0)
    pad = share * (hi - lo) if hi > lo else 0.1
    return lo - pad, hi + pad


def log_ticks(lo: float, hi: float) -> list[float]:
    """Axis values of a log axis from ``lo`` to ``hi``: both ends and the 1-2-5 steps between
    (only the powers of ten when those are many), none crowding an end."""
    steps = [m * 10 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5)]
    inside = [v for v in steps if lo * 1.3 < v < hi / 1.3]
    if len(inside) > 7:
        inside = [v for v in inside if math.log10(v).is_integer()]
    return [lo, *inside, hi]


SENSITIVITY_SIZE = (420, 320)  # pixels of the sensitivity chart's plot area


def sensitivity_scatter(
    rows: list[dict], measured: tuple[float, float],
    title: str = "Per-class sensitivity: label noise vs volume",
    need_title: str = "training images per class to reach 95% of asymptote",
) -> alt.Chart:
    """Noise slope against volume need per class with 95% intervals as error bars. The y axis
    spans the ``measured`` per-class sizes: a need beyond (or below) them is drawn as a triangle
    on the top (or bottom) edge, its value in the tooltip; bars are cut at the edges. The x
    axis spans the slopes and 0; labels that would overlap are left to the colour legend.

    Rows need: class, slope, slope_lo, slope_hi, need, need_lo, need_hi."""
    alt = _alt()
    lo, hi = float(measured[0]), float(measured[1])
    if not 0 < lo < hi:
        raise ValueError(f"measured sizes {measured} are not a range of positive counts")
    data = sensitivity_rows(rows, (lo, hi))
    width, height = SENSITIVITY_SIZE
    x_domain = _padded([r["slope"] for r in data]) if data else (-0.1, 0.1)
    frame = Frame(width, height, x_domain, (lo, hi), y_log=True)
    spots = place_labels([(r["class"], r["slope"], r["need_shown"]) for r in data], frame)
    for r, spot in zip(data, spots):
        r |= {"label": r["class"], "label_x": spot[0], "label_y": spot[1]} if spot else {}
        r |= {k: _clamp(r[k], x_domain, r["slope"]) for k in ("slope_lo", "slope_hi")}
    x_scale = alt.Scale(domain=list(x_domain), nice=False, zero=False)
    y_scale = alt.Scale(type="log", domain=[lo, hi], nice=False, zero=False)

    def x(field: str) -> alt.X:
        return alt.X(field, scale=x_scale, title="accuracy lost per unit noise rate")

    def y(field: str) -> alt.Y:
        return alt.Y(field, scale=y_scale, title=need_title,
                     axis=alt.Axis(values=log_ticks(lo, hi), format=",.0f"))

    xbars = alt.Chart().mark_rule(opacity=0.5).encode(
        x=x("slope_lo:Q"), x2="slope_hi:Q", y=y("need_shown:Q"))
    ybars = alt.Chart().mark_rule(opacity=0.5).encode(
        x=x("slope:Q"), y=y("need_lo_shown:Q"), y2="need_hi_shown:Q")
    shape = alt.Shape("where:N", title="volume need", scale=alt.Scale(
        domain=[WITHIN, BELOW, BEYOND], range=["circle", "triangle-down", "triangle-up"]))
    dots = alt.Chart().mark_point(filled=True, size=70).encode(
        x=x("slope:Q"), y=y("need_shown:Q"), shape=shape,
        color=alt.Color("class:N", sort=None, title="class"),
        tooltip=["class:N", alt.Tooltip("slope:Q", format=".3f", title="noise slope"),
                 alt.Tooltip("slope_ci:N", title="slope 95% interval"),
                 alt.Tooltip("need:N", title="images per class"),
                 alt.Tooltip("need_ci:N", title="95% interval"), alt.Tooltip("where:N")])
    labels = _label_layer(x("label_x:Q"), y("label_y:Q"))
    return alt.layer(xbars, ybars, dots, labels, data=_data(data), title=title).properties(
        width=width, height=height)


def sensitivity_rows(rows: Iterable[dict], measured: tuple[float, float]) -> list[dict]:
    """Rows of the sensitivity chart: needs clamped to the ``measured`` sizes for drawing
    (need_shown, need_lo_shown, need_hi_shown), where each need lies, and the true values as
    text for the tooltip. Classes without both a slope and a need are left out."""
    out = []
    for r in rows:
        slope, need = r.get("slope"), r.get("need")
        if slope is None or need is None or math.isnan(slope) or math.isnan(need):
            continue
        need_lo, need_hi = r.get("need_lo"), r.get("need_hi")
        shown = _clamp(need, measured)
        out.append({
            "class": r["class"], "slope": slope, "slope_lo": r.get("slope_lo"),
            "slope_hi": r.get("slope_hi"),
            "slope_ci": f"[{_num_text(r.get('slope_lo'))}, {_num_text(r.get('slope_hi'))}]",
            "need_shown": shown, "need_lo_shown": _clamp(need_lo, measured, shown),
            "need_hi_shown": _clamp(need_hi, measured, shown),
            "where": measured_range(need, measured), "need": _count_text(need),
            "need_ci": f"[{_count_text(need_lo)}, {_count_text(need_hi)}]",
        })  # fmt: skip
    return out


def _num_text(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return ("∞" if value > 0 else "-∞") if math.isinf(value) else f"{value:.3f}"


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
    intervals both ways (cut at the panel's edge) and the line y = x; one panel per (model,
    human, synthetic). Both axes span the slopes and 0; labels that would overlap are left out.

    Rows need: model, human, synthetic, class, human_slope/_lo/_hi, synthetic_slope/_lo/_hi."""
    alt = _alt()
    rows = [r | {"panel": f"{r['model']}: {r['human']} vs {r['synthetic']}",
                 "human_ci": f"[{_num_text(r.get('human_lo'))}, {_num_text(r.get('human_hi'))}]",
                 "synthetic_ci": f"[{_num_text(r.get('synthetic_lo'))}, "
                                 f"{_num_text(r.get('synthetic_hi'))}]"}
            for r in rows if r["class"] != "overall"]
    slopes = [v for r in clean_rows(rows) for v in (r.get("human_slope"), r.get("synthetic_slope"))
              if v is not None]
    low, top = _padded(slopes) if slopes else (-0.1, 0.1)
    size = 300
    frame = Frame(size, size, (low, top), (low, top))
    for panel in dict.fromkeys(r["panel"] for r in rows):
        members = [r for r in rows if r["panel"] == panel and _finite(r.get("synthetic_slope"))
                   and _finite(r.get("human_slope"))]
        spots = place_labels([(r["class"], r["synthetic_slope"], r["human_slope"])
                              for r in members], frame)
        for r, spot in zip(members, spots):
            r |= {"label": r["class"], "label_x": spot[0], "label_y": spot[1]} if spot else {}
    scale = alt.Scale(domain=[low, top], nice=False, zero=False)

    def x(field: str) -> alt.X:
        return alt.X(field, scale=scale, title="slope under synthetic noise")

    def y(field: str) -> alt.Y:
        return alt.Y(field, scale=scale, title="slope under human noise")

    diagonal = alt.Chart().mark_rule(color="#999", strokeDash=[4, 4]).encode(
        x=alt.datum(low), y=alt.datum(low), x2=alt.datum(top), y2=alt.datum(top))
    xbars = alt.Chart().mark_rule(opacity=0.5, clip=True).encode(
        x=x("synthetic_lo:Q"), x2="synthetic_hi:Q", y=y("human_slope:Q"))
    ybars = alt.Chart().mark_rule(opacity=0.5, clip=True).encode(
        x=x("synthetic_slope:Q"), y=y("human_lo:Q"), y2="human_hi:Q")
    dots = alt.Chart().mark_point(filled=True, size=50).encode(
        x=x("synthetic_slope:Q"), y=y("human_slope:Q"),
        color=alt.Color("verdict:N", title="synthetic noise", scale=_verdict_scale(rows)),
        tooltip=["class:N", alt.Tooltip("human_slope:Q", format=".3f"),
                 alt.Tooltip("human_ci:N", title="human 95% interval"),
                 alt.Tooltip("synthetic_slope:Q", format=".3f"),
                 alt.Tooltip("synthetic_ci:N", title="synthetic 95% interval"),
                 alt.Tooltip("diff:Q", format="+.3f"), "verdict:N"])
    labels = _label_layer(x("label_x:Q"), y("label_y:Q"))
    layered = alt.layer(diagonal, xbars, ybars, dots, labels, data=_data(rows)).properties(
        width=size, height=size)
    return layered.facet(facet=alt.Facet("panel:N", sort=None, title=None), columns=3,
                         title=title)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


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


def replay_curves(rows: list[dict], title: str = "Replay: test accuracy vs money spent") -> alt.LayerChart:
    """Measured test accuracy against the money each strategy has spent, round by round (lines),
    with a bar of one standard error over the repeats.

    Rows need: strategy, spent, accuracy, lo, hi."""
    alt = _alt()
    x = alt.X("spent:Q", title="money spent beyond the start labels")
    y = alt.Y("accuracy:Q", title="mean per-class test accuracy", scale=alt.Scale(zero=False),
              axis=alt.Axis(format="%"))
    color = alt.Color("strategy:N", title="strategy")
    base = alt.Chart(_data(rows))
    lines = base.mark_line(point=True).encode(
        x=x, y=y, color=color,
        tooltip=["strategy:N", alt.Tooltip("spent:Q", format=",.4g"), alt.Tooltip("accuracy:Q", format=".2%")])
    bars = base.mark_rule().encode(x=x, y="lo:Q", y2="hi:Q", color=color).transform_filter("isValid(datum.lo)")
    return alt.layer(bars, lines).properties(title=title, width=520, height=320)


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


def simulation_dots(
    rows: list[dict], title: str = "Simulated plans: measured vs predicted",
    measure: str = "mean per-class accuracy",
) -> alt.LayerChart:
    """Per simulated plan (one row of the chart each), its measured accuracy with a bar of one
    sd over its replicas, and just below it the accuracy the fitted curves predicted.

    Rows need: plan, source ('measured' or 'predicted'), accuracy, lo, hi, replicas."""
    alt = _alt()
    plans = list(dict.fromkeys(r["plan"] for r in rows))
    sources = ["measured", "predicted"]
    y = alt.Y("plan:N", sort=plans, title=None, axis=alt.Axis(labelLimit=360))
    offset = alt.YOffset("source:N", sort=sources)
    x_scale = alt.Scale(zero=False, padding=10)
    color = alt.Color("source:N", title=None, scale=alt.Scale(
        domain=sources, range=["black", "#e45756"]))
    shape = alt.Shape("source:N", title=None, scale=alt.Scale(
        domain=sources, range=["circle", "diamond"]))
    bars = alt.Chart().mark_rule(strokeWidth=2).encode(
        x=alt.X("lo:Q", scale=x_scale, title=measure, axis=alt.Axis(format=".1%", tickCount=6)),
        x2="hi:Q",
        y=y, yOffset=offset, color=color).transform_filter("isValid(datum.lo)")
    dots = alt.Chart().mark_point(filled=True, size=80).encode(
        x=alt.X("accuracy:Q", scale=x_scale, title=measure), y=y, yOffset=offset,
        color=color, shape=shape,
        tooltip=["plan:N", "source:N", alt.Tooltip("accuracy:Q", format=".2%"),
                 alt.Tooltip("lo:Q", format=".2%", title="- 1 sd"),
                 alt.Tooltip("hi:Q", format=".2%", title="+ 1 sd"), "replicas:Q"])
    return alt.layer(bars, dots, data=_data(rows), title=title).properties(
        width=420, height=alt.Step(22))


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
