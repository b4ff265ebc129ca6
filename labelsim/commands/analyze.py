"""``python -m labelsim analyze RUN_DIR``: per-class tables and fits on the terminal, and the
same tables as CSV plus fits.json under RUN_DIR/analysis (or --out DIR)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from labelsim.analysis import (
    IMPACT_COLUMNS,
    SIZE_FRACTION_COLUMNS,
    SIZE_NEED_COLUMNS,
    Analysis,
    RunDirError,
    analyze_run,
    asymmetry_table,
    confusion_table,
    impact_table,
    pair_table,
    progress_banner,
    progress_notes,
    size_fraction_table,
    size_need_table,
    summary_columns,
    summary_notes,
    summary_rows,
    summary_table,
)
from labelsim.analysis import compare, reference
from labelsim.analysis import fmt_ci, fmt_num
from labelsim.analysis.by_cluster import (
    ACCURACY_ONLY,
    INFO_COLUMNS,
    MIN_RECORDS,
    cluster_info,
    cluster_key,
    cluster_units,
    flagged_note,
    renamed,
)
from labelsim.analysis.derived import SENSITIVITY_COLUMNS
from labelsim.analysis.fits import JointFit, NoiseFit, VolumeFit, fits_to_json, json_ready
from labelsim.analysis.metrics import (
    ASYMMETRY_COLUMNS,
    CLASS_METRIC_COLUMNS,
    CONFUSION_COLUMNS,
    LABEL_NOISE_COLUMNS,
    OVERALL_COLUMNS,
    PAIR_COLUMNS,
    asymmetry_rows,
    biggest_movers,
    class_metric_rows,
    firm_movers,
    label_noise_rows,
    movers_evidence,
    overall_rows,
    ranking_columns,
    ranking_rows,
)
from labelsim.analysis.units import CLASS, CLUSTER, Units, ranked_conditions
from labelsim.rundir import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the analyze command."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder a run wrote (with run.json)")
    parser.add_argument("--out", metavar="DIR",
                        help="write the CSV/JSON tables here (default RUN_DIR/analysis)")
    parser.add_argument("--model", help="model to fit (default: the run's first)")
    parser.add_argument("--noise-model", help="noise model to fit (default: the run's first)")
    parser.add_argument("--n-boot", type=int, default=200, metavar="B",
                        help="bootstrap samples per fit (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    add_unit_arguments(parser)


def add_unit_arguments(parser: argparse.ArgumentParser) -> None:
    """--by and --min-records, shared by analyze and report."""
    parser.add_argument(
        "--by", choices=(CLASS, CLUSTER), default=CLASS,
        help="the units of the per-unit figures: classes (default), or the run's clusters "
             "(RUN_DIR/clusters.npz from 'labelsim clusters'; needs RUN_DIR/test_predictions.npy)")
    parser.add_argument(
        "--min-records", type=_positive, default=MIN_RECORDS, metavar="N",
        help=f"with --by cluster: a cluster with fewer test records is flagged and left out of the "
             f"rankings (default {MIN_RECORDS})")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of test records >= 1")
    return value


def units_option(args: argparse.Namespace) -> Callable[[Run], Units] | None:
    """What ``analyze_run`` takes for --by: None for classes, else the run's clusters."""
    if args.by == CLASS:
        return None
    return lambda run: cluster_units(run, args.min_records)


def run(args: argparse.Namespace) -> int:
    """Print the tables, write the files; 2 on a bad run directory, 1 when the operating system
    refuses a read or the write (the tables are printed before the write is tried)."""
    try:
        an = analyze_run(args.run_dir, args.model, args.noise_model, args.n_boot, args.seed,
                         units=units_option(args))
    except RunDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {args.run_dir} ({exc.strerror or exc}); check the folder's permissions",
              file=sys.stderr)
        return 1
    print(render(an))
    out = Path(args.out) if args.out else default_out(an)
    try:
        written = write_tables(an, out)
    except OSError as exc:
        print(f"error: nothing written: cannot write to {out} ({exc.strerror or exc}); "
              "pass --out DIR to save the tables elsewhere", file=sys.stderr)
        return 1
    print(f"\nwrote {len(written)} files to {out}")
    return 0


# ---------------------------------------------------------------- files


def default_out(an: Analysis) -> Path:
    """RUN_DIR/analysis, or RUN_DIR/analysis/by_cluster for the per-cluster tables."""
    folder = an.run.path / "analysis"
    return folder if an.unit.kind == CLASS else folder / "by_cluster"


class Table(NamedTuple):
    """A CSV table: its columns (known even when it has no rows) and its rows."""

    columns: tuple[str, ...]
    rows: list[dict]


def table_files(an: Analysis) -> dict[str, Table]:
    """Every table of an analysis, by CSV file name: per class, or per cluster (the per-unit
    tables only, with cluster words in their names and columns)."""
    fits, units = an.fits, an.unit
    conditions, names = ranked_conditions(units, an.conditions)
    shared = {
        "overall.csv": Table(OVERALL_COLUMNS, overall_rows(an.points)),
        "ranking.csv": Table(ranking_columns(conditions), ranking_rows(conditions, names)),
        "sensitivity.csv": Table(SENSITIVITY_COLUMNS, an.sensitivity["rows"]),
        "sizes_needed.csv": Table(SIZE_NEED_COLUMNS, size_need_table(an)),
        "size_fractions.csv": Table(SIZE_FRACTION_COLUMNS, size_fraction_table(an)),
        "impact.csv": Table(IMPACT_COLUMNS, impact_table(an)),
        "fits_noise.csv": _fit_table(NoiseFit, fits.noise, fits.overall_noise),
        "fits_volume.csv": _fit_table(VolumeFit, fits.volume, fits.overall_volume),
        "fits_joint.csv": _fit_table(JointFit, fits.joint or {}, fits.overall_joint),
        "excluded.csv": Table(EXCLUDED_COLUMNS, excluded_rows(an)),
    }
    if units.kind != CLASS:
        return cluster_files(an) | {name: _renamed(table) for name, table in shared.items()}
    return {
        "per_class.csv": Table(summary_columns(an), summary_rows(an)),
        "class_metrics.csv": Table(CLASS_METRIC_COLUMNS,
                                   class_metric_rows(an.points, an.run.classes)),
        "confusion.csv": Table(CONFUSION_COLUMNS, confusion_table(an)),
        "pairs.csv": Table(PAIR_COLUMNS, pair_table(an)),
        "asymmetry.csv": Table(ASYMMETRY_COLUMNS, asymmetry_table(an)),
        "label_noise.csv": Table(LABEL_NOISE_COLUMNS, label_noise_rows(an.run, an.points)),
    } | shared | comparison_files(an) | reference_files(an)


def _renamed(table: Table) -> Table:
    """A per-unit table with cluster words in its columns."""
    return Table(tuple(cluster_key(c) for c in table.columns), renamed(table.rows))


UNIT_METRIC_COLUMNS = ("model", "noise_model", "noise_rate", "train_size", "label", "class",
                       "repeats", "test_images", "interval", "accuracy", "accuracy_std",
                       "accuracy_lo", "accuracy_hi", "accuracy_x1000")


def cluster_files(an: Analysis) -> dict[str, Table]:
    """The tables only clusters have: the summary with each cluster's class, test records and
    ranking status, and the accuracy of every cluster at every point (no one-vs-rest rates)."""
    info = {r["cluster"]: r for r in cluster_info(an.run, an.unit)}
    summary = _renamed(Table(summary_columns(an), summary_rows(an)))
    rows = [{"cluster": r["cluster"], **{c: info[r["cluster"]][c] for c in INFO_COLUMNS}, **r}
            for r in summary.rows]
    metrics = [{c: r[c] for c in UNIT_METRIC_COLUMNS}
               for r in class_metric_rows(an.points, an.unit.names)]
    return {
        "per_cluster.csv": Table(("cluster", *INFO_COLUMNS, *summary.columns[1:]), rows),
        "cluster_metrics.csv": _renamed(Table(UNIT_METRIC_COLUMNS, metrics)),
    }


def comparison_files(an: Analysis) -> dict[str, Table]:
    """The side-by-side tables (every model and noise model, realized-noise axis)."""
    comp = an.comparison
    if comp is None:
        return {}
    return {
        "compare_slopes.csv": Table(compare.SLOPE_COLUMNS, compare.slope_rows(comp)),
        "compare_realized.csv": Table(compare.REALIZED_COLUMNS, compare.realized_rows(comp)),
        "human_vs_synthetic.csv": Table(compare.HUMAN_COLUMNS,
                                        compare.human_vs_synthetic_rows(comp)),
        "human_agreement.csv": Table(compare.AGREEMENT_COLUMNS, compare.agreement_rows(comp)),
        "transitions.csv": Table(compare.TRANSITION_COLUMNS, compare.transition_rows(comp)),
    }


def reference_files(an: Analysis) -> dict[str, Table]:
    """The reference study beside the run (CIFAR-10 runs only)."""
    if not an.reference:
        return {}
    return {
        "reference.csv": Table(reference.REFERENCE_COLUMNS, [
            r for ref in an.reference for r in reference.reference_rows(an.run, ref)]),
        "reference_agreement.csv": Table(reference.AGREEMENT_COLUMNS, [
            r for ref in an.reference for r in reference.agreement_rows(an.run, ref)]),
    }


def fit_columns(fit_type: type) -> tuple[str, ...]:
    """The columns of a fit table: the class, then each field of the fit's dataclass, an
    interval field as two columns (name_lo, name_hi)."""
    hints = typing.get_type_hints(fit_type)
    columns = ["class"]
    for f in fields(fit_type):
        interval = typing.get_origin(hints[f.name]) is tuple
        columns += [f"{f.name}_lo", f"{f.name}_hi"] if interval else [f.name]
    return tuple(columns)


def _fit_table(fit_type: type, fits: dict[str, Any], overall: Any) -> Table:
    items = list(fits.items()) + ([("overall", overall)] if overall is not None else [])
    rows = []
    for cls, fit in items:
        row: dict = {"class": cls}
        for key, value in asdict(fit).items():
            if isinstance(value, tuple):
                row[f"{key}_lo"], row[f"{key}_hi"] = value
            else:
                row[key] = value
        rows.append(row)
    return Table(fit_columns(fit_type), rows)


EXCLUDED_COLUMNS = ("replica", "status", "experiment", "model", "noise_model", "noise_rate",
                    "train_size", "repeat", "diverged_step", "label")


def excluded_rows(an: Analysis) -> list[dict]:
    """Replicas left out of every average: diverged, pending or running."""
    return [
        {"replica": r.replica, "status": r.status, "experiment": r.experiment, "model": r.model,
         "noise_model": r.noise_model, "noise_rate": r.noise_rate, "train_size": r.train_size,
         "repeat": r.repeat, "diverged_step": r.diverged_step, "label": r.label}
        for r in an.run.replicas if not r.finished
    ]


def write_tables(an: Analysis, out: Path) -> list[Path]:
    """Write every table as CSV and the fits as fits.json; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in table_files(an).items():
        written.append(write_csv(out / name, table))
    fits_json = fits_to_json(an.fits) | {
        "sensitivity": json_ready(an.sensitivity),
        "impact": json_ready(impact_table(an)),
        "sizes_needed": json_ready(size_need_table(an)),
    }
    if an.unit.kind != CLASS:
        fits_json = renamed(fits_json) | {"units": an.unit.kind,
                                          "clusters_info": json_ready(cluster_info(an.run, an.unit)),
                                          "note": ACCURACY_ONLY}
    path = out / "fits.json"
    path.write_text(json.dumps(fits_json, indent=1), encoding="utf-8")
    return written + [path]


def write_csv(path: Path, table: Table) -> Path:
    """A table as CSV: the header row always (a table without rows too), a missing value empty."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=table.columns)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in table.rows)
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


# ---------------------------------------------------------------- terminal


def format_table(headers: list[str], rows: Iterable[list[str]]) -> str:
    """Plain text table, columns left-aligned (first) or right-aligned (others)."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render(an: Analysis) -> str:
    """The whole terminal report of an analysis (per cluster: the per-unit parts only)."""
    if an.unit.kind != CLASS:
        parts = [progress_banner(an.run), _render_header(an), _render_classes(an),
                 _render_overall(an), _render_sensitivity(an), _render_ranking(an)]
        return "\n\n".join(p for p in parts if p)
    parts = [
        progress_banner(an.run),
        _render_header(an),
        _render_classes(an),
        _render_overall(an),
        _render_sensitivity(an),
        _render_ranking(an),
        _render_asymmetry(an),
        render_comparison(an),
        render_human(an),
        render_reference(an),
    ]
    return "\n\n".join(p for p in parts if p)


def _render_header(an: Analysis) -> str:
    run = an.run
    lines = [
        f"run {run.path}: status {run.meta.get('status', '?')}, {len(run.replicas)} replicas: "
        f"{len(run.finished())} finished, {len(run.diverged())} diverged, "
        f"{len(run.unfinished())} pending or running",
        f"model {an.model}, noise model {an.noise_model}; accuracy x1000 (mean over repeats, "
        "std); intervals are 95%: accuracies and rates by Wilson's score interval from the test "
        "counts and the spread between repeats (inside [0, 1]), fits by a bootstrap over "
        "repeats within each level",
    ]
    comp = an.comparison
    if comp is not None and comp.side_by_side:
        lines.append(f"  the run has {len(comp.combos)} model x noise model combinations "
                     f"(models {', '.join(comp.models)}; noise models "
                     f"{', '.join(comp.noise_models)}): side by side after the tables below")
    lines += [f"  {note}" for note in progress_notes(an)]
    fewest = min((pm.accuracy.n for pm in an.points), default=0)
    if fewest < 2:
        lines.append("  note: some grid points have a single finished repeat: their accuracy "
                     "intervals cover test-set sampling only, fits have no interval there, and no "
                     "class is ranked on them (claims need at least two repeats)")
    if an.unit.kind != CLASS:
        lines.append(f"  units: {len(an.unit.names)} clusters of {run.path / 'clusters.npz'}; a "
                     "cluster's accuracy comes from each replica's test predictions, its training "
                     "records in a replica from the replica's per-class counts times the cluster's "
                     "share of its class (see labelsim.analysis.by_cluster)")
    for r in run.replicas:
        if not r.finished:
            step = f" at step {r.diverged_step}" if r.diverged_step is not None else ""
            lines.append(f"  left out: replica {r.replica} ({r.status}{step}): {r.experiment} "
                         f"{r.noise_model} {r.noise_rate:g} n={r.train_size} repeat {r.repeat}")
    return "\n".join(lines)


def unit_words(text: str, unit: str) -> str:
    """A text of the shared per-unit code with ``unit`` (e.g. 'cluster') for 'class'."""
    if unit == CLASS:
        return text
    for old in ("images/class", "per class", "class's", "no class", "every class", "a class",
                "Per class", "one class", "hungry class"):
        text = text.replace(old, old.replace("class", unit))
    return text.replace("classes", f"{unit}s")


def _render_classes(an: Analysis) -> str:
    headers, table = summary_table(an)
    note = ("Per class (baseline: mean ± std over repeats; noise slope: accuracy lost per unit "
            "of requested noise rate)")
    lines = [f"  {unit_words(line, an.unit.kind)}" for line in summary_notes(an)]
    if an.unit.kind != CLASS:
        headers, table = _cluster_columns(an, headers, table)
        note = unit_words(note, an.unit.kind)
        lines += [f"  {line}" for line in (flagged_note(an.unit), f"accuracy only: {ACCURACY_ONLY}")
                  if line]
    return "\n".join([note, format_table(headers, table), *lines])


def _cluster_columns(an: Analysis, headers: list[str], table: list[list[str]]) -> tuple:
    """The per-unit table with each cluster's class, test records and ranking status."""
    info = cluster_info(an.run, an.unit)
    headers = [CLUSTER, "class", "tests", "ranked", *headers[1:-1],
               unit_words(headers[-1], CLUSTER)]
    table = [[row[0], i["class"], str(i["test_records"]), "yes" if i["ranked"] else "NO (few tests)",
              *row[1:]] for row, i in zip(table, info)]
    return headers, table


def _evidence(levels: int, repeats: int, unit: str) -> str:
    """'3 noise levels x >= 2 repeats': the data behind a fit."""
    return f"{levels} {unit}{'s' if levels != 1 else ''} x >= {repeats} repeat(s)"


def _describe_noise(fit: NoiseFit) -> str:
    line = (f"accuracy = {fit.intercept:.3f} - {fit.slope:.3f} {fmt_ci(*fit.slope_ci)} x noise "
            f"({_evidence(fit.levels, fit.repeats, 'noise level')})")
    if fit.linear_ok is None:
        return f"{line}; {fit.note}"
    shape = "linear" if fit.linear_ok else "POOR linear fit"
    return f"{line}; R2 {fit.r2:.2f}, {shape} (curvature p {fmt_num(fit.curvature_p, '.2g')})"


def _describe_volume(fit: VolumeFit) -> str:
    formula = "a - b*n^-c" if fit.form == "power" else "a - b*exp(-n/c)"
    alt = f"; AIC {fit.aic:.1f} vs {fit.alt_aic:.1f} for {fit.alt_form}" if fit.alt_form else ""
    note = f" ({fit.note})" if fit.note else ""
    return (f"{fit.form}: {formula}, n per class ({_evidence(fit.levels, fit.repeats, 'size')}); "
            f"asymptote a {fit.a:.3f} {fmt_ci(*fit.a_ci)}, b {fit.b:.3g}, c {fit.c:.3g} "
            f"{fmt_ci(*fit.c_ci, '.3g')}{alt}{note}")


def _describe_joint(fit: JointFit) -> str:
    return (f"{fit.form} ({_evidence(fit.levels, fit.repeats, 'grid point')}): a {fit.a:.3f}, "
            f"b {fit.b:.3g}, c {fit.c:.3g}, noise slope at full data s {fit.s:.3f} "
            f"{fmt_ci(*fit.s_ci)}, interaction t {fit.t:.3f} {fmt_ci(*fit.t_ci)}; "
            f"AIC {fit.aic:.1f} vs {fit.alt_aic:.1f} for {fit.alt_form}")


def _render_overall(an: Analysis) -> str:
    fits = an.fits
    lines = ["Overall accuracy"]
    if an.baseline is not None:
        b = an.baseline.overall
        lines.append(f"  baseline (clean, n={an.baseline.point.train_size}): "
                     f"{float(b.mean):.4f} ± {fmt_num(float(b.std), '.4f')} "
                     f"{fmt_ci(float(b.lo), float(b.hi), '.4f')} over {b.n} repeat(s)")
    if fits.overall_noise is not None:
        lines.append("  noise fit:  " + _describe_noise(fits.overall_noise))
    if fits.overall_volume is not None:
        lines.append("  volume fit: " + _describe_volume(fits.overall_volume))
        for row in size_fraction_table(an):
            lines.append(f"    n={row['train_size']}: {row['fraction_observed']:.1%} of full-data "
                         f"accuracy (fit {fmt_num(row.get('fraction_fit'), '.1%')})")
    if fits.overall_joint is not None:
        lines.append("  joint fit:  " + _describe_joint(fits.overall_joint))
    lines += [f"  {axis} fit: {reason}" for axis, reason in fits.skipped.items()]
    impact = impact_table(an)[-1]
    if math.isfinite(impact["noise_loss"]):
        interval = (f"({impact['note']})" if impact["note"] else
                    fmt_ci(impact["impact_lo"], impact["impact_hi"], ".2f"))
        lines.append(f"  impact index (10% noise vs 10% fewer labels, >1: noise hurts more): "
                     f"{fmt_num(impact['impact'], '.2f')} {interval}")
    return "\n".join(lines) if len(lines) > 1 else ""


def _render_sensitivity(an: Analysis) -> str:
    s = an.sensitivity
    word = an.unit.kind
    lines = [f"  {line}" for line in (flagged_note(an.unit),) if line]
    if s["noise_order"]:
        lines.append(f"  most noise-sensitive (noise slope): {s['noise_claim']}")
        if s["most_noise_sensitive"]:
            lines.append(f"    point estimates, steepest first: {', '.join(s['noise_order'])}")
    if s["volume_order"]:
        lines.append(f"  most volume-hungry (images/{word} to {s['need_target']}): "
                     f"{s['volume_claim']}")
        if s["most_volume_sensitive"]:
            lines.append(f"    point estimates, largest first: {', '.join(s['volume_order'])}")
    return "Sensitivity\n" + "\n".join(lines) if lines else ""


def _render_ranking(an: Analysis) -> str:
    conditions, units = ranked_conditions(an.unit, an.conditions)
    text = _ranking_text(conditions, units)
    note = flagged_note(an.unit)
    return unit_words(text, an.unit.kind) + (f"\n  {note}" if text and note else "")


def _ranking_text(conditions: list, units: tuple[str, ...]) -> str:
    rows = ranking_rows(conditions, units)
    if not rows:
        return ""
    names = [name for name, _ in conditions]
    by_rank = []
    for position in range(1, len(rows) + 1):
        cells = [str(position)]
        for name in names:
            r = next(r for r in rows if r[f"{name} rank"] == position)
            cells.append(f"{r['class']} {fmt_num(r[f'{name} acc_x1000'], 'd')}")
        by_rank.append(cells)
    repeats = ", ".join(f"{name} {pm.accuracy.n}" for name, pm in conditions)
    text = (f"Ranking (1 = least accurate; mean accuracy x1000 over repeats: {repeats})\n"
            + format_table(["#"] + names, by_rank))
    why_not = movers_evidence(conditions)
    if why_not:
        return text + f"\n  rank moves not assessed: {why_not}"
    firm = set(firm_movers(conditions, units))
    moves = []
    for cls in [c for c in biggest_movers(rows, k=len(rows)) if c in firm][:3]:
        r = next(r for r in rows if r["class"] == cls)
        changes = ", ".join(f"{n} {r[f'{n} change']:+d}" for n in names[1:])
        moves.append(f"{cls} ({changes})")
    if moves:
        return text + ("\n  largest rank moves beyond the 95% intervals (negative: toward least "
                       "accurate): " + "; ".join(moves))
    if len(names) > 1:
        return text + ("\n  no rank move clears the 95% intervals: every class's possible ranks "
                       "overlap its baseline ones")
    return text


def _render_asymmetry(an: Analysis, k: int = 6) -> str:
    if an.baseline is None:
        return ""
    rows = asymmetry_rows(an.baseline, an.run.classes, k)
    table = [[r["pair"], fmt_num(r["rate"], ".3f"), fmt_num(r["reverse_rate"], ".3f"),
              f"{fmt_num(r['diff'], '+.3f')} {fmt_ci(r['diff_lo'], r['diff_hi'], '+.3f')}",
              f"{fmt_num(r['ratio'], '.2f')}",
              f"{fmt_num(r['log_ratio'], '+.2f')} "
              f"{fmt_ci(r['log_ratio_lo'], r['log_ratio_hi'], '+.2f')}"]
             for r in rows]
    headers = ["pair i->j", "rate", "j->i rate", "difference [CI]", "ratio", "log ratio [CI]"]
    return (f"Most asymmetric confusions at baseline ({an.baseline.accuracy.n} repeat(s); rate = "
            "count / true-class total; intervals: t over repeats)\n"
            + format_table(headers, table))


def render_comparison(an: Analysis) -> str:
    """Noise slopes side by side for every model and noise model (realized-noise axis)."""
    comp = an.comparison
    if comp is None or not comp.side_by_side:
        return ""
    repeats = ", ".join(f"{c.model}/{c.noise_model} {c.repeats}" for c in comp.combos)
    lines = [
        "Noise sensitivity by model and noise model: accuracy lost per unit of REALIZED noise "
        "(share of training labels actually changed, replicas.csv realized_noise), so noise "
        "models are compared at the same amount of wrong labels; baseline x1000 (clean, full "
        f"data); fewest repeats per level: {repeats}",
        format_table(*compare.slope_table(comp)),
        *(f"  {line}" for line in compare.unfitted_lines(comp)),
        "  realized vs requested noise rate:",
        *(f"    {line}" for line in compare.realized_summary(comp)),
    ]
    if comp.transitions:
        lines.append("  most frequent realized label changes (share of the true class's labels):")
        lines += [f"    {line}" for line in compare.top_transitions(comp)]
    return "\n".join(lines)


def render_human(an: Analysis) -> str:
    """Per class: does each synthetic noise model predict what human annotators do?"""
    comp = an.comparison
    if comp is None or not compare.human_pairs(comp):
        return ""
    parts = []
    for model in comp.models:
        for human in comp.human_models:
            headers, table = compare.human_table(comp, model, human)
            if table:
                pair = [c for c in comp.combos if c.model == model
                        and c.noise_model in (human, *comp.synthetic_models)]
                fewest = min((c.repeats for c in pair), default=0)
                parts.append(f"Does synthetic noise predict what real annotators do? Model "
                             f"{model}, {human}: slope per unit realized noise; difference = "
                             f"human - synthetic with its 95% interval; at least {fewest} "
                             "repeat(s) per level\n"
                             + format_table(headers, table))
    summary = [f"  {compare.agreement_text(r)}" for r in compare.agreement_rows(comp)]
    return "\n\n".join(parts) + "\n" + "\n".join(summary) + f"\n  {compare.VERDICT_LEGEND}"


def render_reference(an: Analysis) -> str:
    """The reference study's per-class figures beside the run's (CIFAR-10 runs)."""
    parts = []
    for ref in an.reference:
        head = (f"Reference study ({reference.SOURCE}), model {ref.model}: per-class accuracy "
                "x1000, run vs study (diff = run - study)")
        lines = [head]
        if ref.usable:
            lines.append(format_table(*reference.reference_table(an.run, ref)))
            overall = reference.overall_row(ref)
            if overall is not None:
                lines.append(f"  overall baseline accuracy: run {overall['run']:.4f}, study "
                             f"{overall['study']:.4f} ({overall['diff']:+.4f})")
            lines += [f"  rank agreement, {r['compared']}: Spearman "
                      f"{fmt_num(r['spearman'], '.2f')} (p {fmt_num(r['spearman_p'], '.2g')}, "
                      f"{r['classes']} classes)" for r in reference.agreement_rows(an.run, ref)]
        lines += [f"  missing: {m}" for m in ref.missing]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
