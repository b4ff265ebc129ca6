"""The one offline HTML page of a run (report.html): its chart rows, sections and page shell.

``build_report`` writes the page; ``report_charts`` lists the charts the run's data supports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from labelsim.analysis import Analysis, analyze_run, progress_banner
from labelsim.present import charts
from labelsim.present.report.comparisons import comparison_sections
from labelsim.present.report.page import render_page, vega_bundle
from labelsim.present.report.rows import report_charts
from labelsim.present.report.sections import (
    chart_section,
    config_section,
    run_section,
    tables_sections,
)

__all__ = ["build_report", "report_charts"]


def build_report(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    analysis: Analysis | None = None,
    formats: Sequence[str] = (),
    charts_dir: str | Path | None = None,
    n_boot: int = 200,
    budget_file: str | Path | None = None,
    independent_y: bool = False,
) -> Path:
    """Write the run's report.html (default RUN_DIR/report.html) and return its path.

    ``formats`` (html, png, svg, json) also exports each chart under ``charts_dir`` (default
    RUN_DIR/charts). A budget answer saved by the budget command (``budget_file``, default
    RUN_DIR/analysis/budget.json) adds a budget section. The per-class panels share one
    accuracy scale unless ``independent_y``."""
    an = analysis or analyze_run(run_dir, n_boot=n_boot)
    items = report_charts(an, independent_y=independent_y)
    more_sections, more_items = comparison_sections(
        an, Path(budget_file) if budget_file else None)
    specs = {cid: charts.chart_spec(chart) for cid, _, chart in items + more_items}
    sections = [("Run", run_section(an)),
                ("Charts", chart_section(items)),
                *tables_sections(an),
                *more_sections,
                ("Configuration", config_section(an))]
    page = render_page(f"labelsim report: {an.run.path.name}", sections, specs, vega_bundle(),
                       banner=progress_banner(an.run))
    path = Path(out) if out else an.run.path / "report.html"
    path.write_text(page, encoding="utf-8")
    if formats:
        target = Path(charts_dir) if charts_dir else an.run.path / "charts"
        for cid, spec in specs.items():
            charts.export_chart(spec, target / cid, formats)
    return path
