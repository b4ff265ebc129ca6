"""``python -m labelsim report RUN_DIR``: one offline HTML page with every chart and table of a
run (RUN_DIR/report.html, or --out FILE), and optionally each chart as a file. Every model and
noise model of the run is compared side by side; CIFAR-10 runs are set beside the reference
study; a budget answer saved by ``python -m labelsim budget`` adds a budget section. ``--by cluster``
writes the per-cluster page instead (RUN_DIR/report_by_cluster.html)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelsim.analysis import RunDirError, analyze_run, progress_banner
from labelsim.analysis.units import CLASS
from labelsim.commands.analyze import add_unit_arguments, units_option
from labelsim.present.charts import FORMATS
from labelsim.present.report import build_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the report command."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder a run wrote (with run.json)")
    parser.add_argument("--out", metavar="FILE", help="page to write (default RUN_DIR/report.html; "
                                                      "RUN_DIR/report_by_cluster.html with --by cluster)")
    parser.add_argument(
        "--formats", default="", metavar="LIST",
        help="also export each chart in these formats, comma-separated from "
             f"{','.join(FORMATS)}, under RUN_DIR/charts (beside FILE with --out)")
    parser.add_argument(
        "--budget-json", metavar="FILE",
        help="budget answer to show (default RUN_DIR/analysis/budget.json, which the budget "
             "command saves; the section is left out when there is none)")
    parser.add_argument("--model", help="model to fit (default: the run's first)")
    parser.add_argument("--noise-model", help="noise model to fit (default: the run's first)")
    parser.add_argument("--n-boot", type=int, default=200, metavar="B",
                        help="bootstrap samples per fit (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--independent-y", action="store_true",
                        help="give each class's accuracy panel its own y scale (default: one shared scale, "
                             "so panels compare at a glance)")
    add_unit_arguments(parser)


def parse_formats(text: str) -> tuple[str, ...]:
    """Comma-separated chart formats, checked; raises ValueError naming the valid ones."""
    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {','.join(FORMATS)}")
    return formats


def run(args: argparse.Namespace) -> int:
    """Build the report; 2 on a bad run directory, bad option or unwritable destination."""
    try:
        formats = parse_formats(args.formats)
        an = analyze_run(args.run_dir, args.model, args.noise_model, args.n_boot, args.seed,
                         units=units_option(args))
    except (RunDirError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {args.run_dir} ({exc.strerror or exc}); check the folder's permissions",
              file=sys.stderr)
        return 1
    banner = progress_banner(an.run)
    if banner:
        print(banner)
    by_class = an.unit.kind == CLASS
    out = Path(args.out) if args.out else None if by_class else an.run.path / "report_by_cluster.html"
    charts_dir = out.parent / ("charts" if by_class else "charts_by_cluster") if out else None
    try:
        path = build_report(an.run.path, out=out, analysis=an, formats=formats,
                            charts_dir=charts_dir, budget_file=args.budget_json,
                            independent_y=args.independent_y)
    except OSError as exc:
        target = out or an.run.path / "report.html"
        print(f"error: cannot write {target} ({exc.strerror or exc}); pass --out FILE to write "
              "the page elsewhere", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    if formats:
        print(f"exported charts ({', '.join(formats)}) to {charts_dir or an.run.path / 'charts'}")
    return 0
