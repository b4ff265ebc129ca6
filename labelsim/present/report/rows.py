"""The charts of a run's report: each chart's data rows and the list of charts the run supports.

Rows are plain dicts (points with intervals, fitted curves with bands); ``report_charts`` pairs
each chart with its id and caption.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from labelsim.analysis import Analysis, confusion_pairs, confusion_rows
from labelsim.analysis.derived import noise_band, volume_band
from labelsim.analysis.metrics import PointMetrics, bump_rows, pair_rows
from labelsim.analysis.units import CLASS, ranked_point
from labelsim.present import charts

CURVE_POINTS = 40  # points along each fitted curve

Item = tuple[str, str, Any]  # (chart id, caption, chart)


def noise_chart_rows(an: Analysis) -> list[dict]:
    """Points (means with 95% intervals) and fitted lines with bands, per class, vs noise."""
    rows = _point_rows(an, an.noise_points, "noise_rate")
    if not an.noise_points:
        return rows
    xs = np.linspace(0.0, max(pm.point.noise_rate for pm in an.noise_points), CURVE_POINTS)
    for cls, fit in an.fits.noise.items():
        fitted, lo, hi = noise_band(fit, an.fits.samples["noise"][cls], xs)
        rows += _curve_rows(cls, xs, fitted, lo, hi)
    return rows


def size_chart_rows(an: Analysis) -> list[dict]:
    """Points and fitted volume curves with bands, per class, vs total training size."""
    rows = _point_rows(an, an.size_points, "train_size")
    if not an.size_points:
        return rows
    sizes = [pm.point.train_size for pm in an.size_points]
    xs = np.geomspace(min(sizes), max(sizes), CURVE_POINTS)
    for k, cls in enumerate(an.unit.names):
        fit = an.fits.volume.get(cls)
        if fit is not None:
            n = xs * an.unit.shares[k]
            fitted, lo, hi = volume_band(fit, an.fits.samples["volume"][cls], n)
            rows += _curve_rows(cls, xs, fitted, lo, hi)
    return rows


def _point_rows(an: Analysis, points: Sequence[Any], axis: str) -> list[dict]:
    """Mean accuracy of each class at each grid point (x: the point's ``axis`` field), with
    error bars of one std over repeats and the 95% interval."""
    return [row for pm in points for row in _class_rows(an, pm, getattr(pm.point, axis))]


def _class_rows(an: Analysis, pm: Any, x: float) -> list[dict]:
    """Mean accuracy of each unit (class or cluster) at one grid point."""
    acc = pm.accuracy
    return [
        {"kind": "point", "class": cls, "x": float(x), "accuracy": float(acc.mean[k]),
         "lo": float(acc.mean[k] - acc.std[k]), "hi": float(acc.mean[k] + acc.std[k]),
         "ci_lo": float(acc.lo[k]), "ci_hi": float(acc.hi[k]), "n": acc.n}
        for k, cls in enumerate(an.unit.names)
    ]


def _curve_rows(cls: str, xs: np.ndarray, fitted: np.ndarray, lo: np.ndarray,
                hi: np.ndarray) -> list[dict]:
    """A fitted curve of one class with its band, one row per x."""
    return [
        {"kind": "curve", "class": cls, "x": float(x), "fit": float(f), "fit_lo": float(a),
         "fit_hi": float(b)}
        for x, f, a, b in zip(xs, fitted, lo, hi)
    ]


def _condition(an: Analysis, prefix: str) -> Any:
    """The first named condition (grid point metrics) whose name starts with ``prefix``."""
    return next((pm for name, pm in an.conditions if name.startswith(prefix)), None)


def report_charts(an: Analysis, *, independent_y: bool = False) -> list[Item]:
    """(id, caption, chart) of every chart the run's data supports; the per-class panels share
    one accuracy scale unless ``independent_y``."""
    out: list[Item] = []
    classes = an.run.classes
    if an.unit.kind != CLASS:
        return _curve_charts(an, independent_y) + _unit_bump(an) + _sensitivity_chart(an)
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
    out += _curve_charts(an, independent_y)
    out += _pair_charts(an)
    bump = bump_rows(an.points, an.run, an.model, an.noise_model, classes)
    if bump:
        out.append(("ranking_bump", "Rank of each class (1 = least accurate) from the smallest "
                    "size through the baseline to the highest noise.", charts.ranking_bump(bump)))
    out += _sensitivity_chart(an)
    return out


def _unit_bump(an: Analysis) -> list[Item]:
    """The ranking's bump chart over the ranked units (clusters with enough test records)."""
    points = [ranked_point(an.unit, pm) for pm in an.points]
    names = tuple(an.unit.names[k] for k in an.unit.ranked())
    bump = bump_rows(points, an.run, an.model, an.noise_model, names)
    if not bump:
        return []
    return [("ranking_bump", f"Rank of each ranked {an.unit.kind} (1 = least accurate) from the "
             "smallest size through the baseline to the highest noise.",
             charts.ranking_bump(bump, f"{an.unit.kind.capitalize()} ranking across conditions"))]


def measured_sizes(an: Analysis) -> tuple[float, float] | None:
    """The smallest and largest per-class training counts the volume fits saw, if any."""
    ranges = [fit.n_range for fit in an.fits.volume.values() if fit is not None]
    if not ranges:
        return None
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return (float(lo), float(hi)) if 0 < lo < hi else None


def _sensitivity_chart(an: Analysis) -> list[Item]:
    """Noise slope vs volume need, its y axis the measured sizes, when the run has both."""
    sens, unit = an.sensitivity, an.unit
    ranked = {unit.names[k] for k in unit.ranked()}
    rows = [r for r in sens["rows"] if r["class"] in ranked]
    measured = measured_sizes(an)
    if measured is None or not any("slope" in r and "need" in r for r in rows):
        return []
    target = sens.get("need_target") or f"{sens.get('fraction', 0.95):.0%} of its asymptote"
    need = f"images per {unit.kind} to reach {target}"
    caption = (f"Which classes does label noise hurt most (right), and which need the most "
               f"images (top)? Noise slope against {need}, with 95% intervals. The y axis spans "
               f"the measured sizes ({measured[0]:,.0f}-{measured[1]:,.0f} per class): a "
               "triangle on its top or bottom edge lies beyond or below them (hover for its "
               "value); bars are cut at the chart's edges. Classes without a label are named "
               "in the legend.")
    if unit.kind != CLASS:
        caption = (caption.replace("classes", f"{unit.kind}s").replace("per class", f"per {unit.kind}")
                   + " Flagged clusters (too few test records) are left out.")
        return [("sensitivity", caption, charts.sensitivity_scatter(
            rows, measured, title=f"Per-{unit.kind} sensitivity: label noise vs volume",
            need_title=f"training {need}"))]
    return [("sensitivity", caption,
             charts.sensitivity_scatter(rows, measured, need_title=f"training {need}"))]


def _curve_charts(an: Analysis, independent_y: bool = False) -> list[Item]:
    """Accuracy vs noise and vs size, each when the run has more than one point."""
    out: list[Item] = []
    scale = "each class on its own accuracy scale" if independent_y else \
        "every class on the same accuracy scale"
    if len(an.noise_points) > 1:
        out.append(("accuracy_vs_noise", "How fast does each class lose accuracy to label "
                    "noise? Means over repeats with ±1 std bars, fitted line with its 95% "
                    f"bootstrap band; {scale}.",
                    charts.accuracy_vs_noise(noise_chart_rows(an), independent_y=independent_y)))
    if len(an.size_points) > 1:
        out.append(("accuracy_vs_size", "How much does each class gain from more training "
                    "images? Means with ±1 std bars at the measured sizes (log axis), fitted "
                    f"saturating curve with its 95% bootstrap band; {scale}.",
                    charts.accuracy_vs_size(size_chart_rows(an), independent_y=independent_y)))
    return out


def _pair_charts(an: Analysis) -> list[Item]:
    """The most frequent confusions vs noise and vs size."""
    pairs = confusion_pairs(an)
    out: list[Item] = []
    if len(an.noise_points) > 1:
        out.append(("pairs_vs_noise", "Most frequent confusions (and their reverses) vs noise: "
                    "rate = count / true-class total, ±1 std over repeats.",
                    charts.pair_confusions(_pair_bars(an, an.noise_points, pairs), "noise_rate",
                                           "Pair confusions vs noise")))
    if len(an.size_points) > 1:
        out.append(("pairs_vs_size", "Most frequent confusions (and their reverses) vs size: "
                    "rate = count / true-class total, ±1 std over repeats.",
                    charts.pair_confusions(_pair_bars(an, an.size_points, pairs), "train_size",
                                           "Pair confusions vs size")))
    return out


def _pair_bars(
    an: Analysis, points: list[PointMetrics], pairs: list[tuple[int, int]]
) -> list[dict]:
    """Pair-confusion rows of some points with ±1 std bars (lo, hi)."""
    return [r | {"lo": max(r["rate"] - r["rate_std"], 0.0), "hi": r["rate"] + r["rate_std"]}
            for r in pair_rows(points, an.run.classes, pairs)]

