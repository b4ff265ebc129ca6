"""The budget command's chart: predicted accuracy against budget per strategy, from the
answer's cost curves, written where --chart says."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelsim.analysis.budget import BudgetError
from labelsim.present.charts import budget_curves

if TYPE_CHECKING:
    import altair as alt


def curve_rows(curves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tidy rows {strategy, budget, cost, accuracy} of the cost curves (objective measure)."""
    return [
        {"strategy": c["strategy"], "budget": p["budget"], "cost": p["cost"], "accuracy": p["objective"]}
        for c in curves
        for p in c["points"]
        if p["objective"] is not None
    ]


def budget_chart(
    curves: list[dict[str, Any]], budget: float, measure: str = "predicted accuracy"
) -> alt.LayerChart:
    """Altair chart: predicted accuracy against budget per strategy, the chosen budget marked."""
    return budget_curves(curve_rows(curves), budget, measure)


def save_chart(chart: alt.TopLevelMixin, path: Path) -> None:
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
