"""Analysis of a run directory: per-class metrics and curve fits with intervals (numpy/scipy).

``analyze_run`` gathers everything the ``analyze`` and ``report`` commands show; the pieces
live in ``runs`` (reading), ``metrics`` (counts -> rates), ``fits`` (curves), ``derived``
(sizes needed, impact, sensitivity), ``compare`` (every model x noise model on the realized
noise axis, human vs synthetic noise), ``reference`` (the reference study beside CIFAR-10 runs)
and ``saved_budget`` (a budget answer saved for the report); ``budget`` plans labeling budgets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from labelsim.analysis.derived import (
    fraction_of_full,
    measured_range,
    impact_index,
    impact_losses,
    sensitivity,
    size_needed,
)
from labelsim.analysis.fits import (
    FitError,
    JointFit,
    NoiseFit,
    RunFits,
    VolumeFit,
    fit_run,
    pick_model,
)
from labelsim.analysis.metrics import (
    PointMetrics,
    all_point_metrics,
    asymmetry_rows,
    baseline,
    confusion_rows,
    grid_point,
    noise_axis,
    pair_rows,
    ranking_conditions,
    size_axis,
    top_pairs,
    x1000,
)
from labelsim.analysis.compare import Comparison, compare_run
from labelsim.analysis.reference import ReferenceComparison, compare_models
from labelsim.rundir import Replica, Run, RunDirError, load_run
from labelsim.analysis.text import fmt_ci, fmt_num

__all__ = [
    "IMPACT_COLUMNS",
    "SIZE_FRACTION_COLUMNS",
    "SIZE_NEED_COLUMNS",
    "Analysis",
    "Comparison",
    "FitError",
    "JointFit",
    "NoiseFit",
    "ReferenceComparison",
    "Replica",
    "Run",
    "RunDirError",
    "RunFits",
    "VolumeFit",
    "analyze_run",
    "confusion_pairs",
    "fit_run",
    "impact_index",
    "load_run",
    "nothing_finished",
    "progress_banner",
    "progress_notes",
    "sensitivity",
    "size_cell",
    "size_needed",
    "summary_columns",
    "summary_rows",
    "summary_table",
]


@dataclass(frozen=True)
class Analysis:
    """Everything derived from one run for one model and noise model."""

    run: Run
    model: str
    noise_model: str
    points: list[PointMetrics]  # every grid point of the run (all models)
    baseline: PointMetrics | None
    conditions: list[tuple[str, PointMetrics]]  # baseline, highest noise, smallest size
    noise_points: list[PointMetrics]  # full size, rising noise
    size_points: list[PointMetrics]  # clean, rising size
    fits: RunFits
    sensitivity: dict
    comparison: Comparison | None = None  # every (model, noise model), realized-noise axis
    reference: tuple[ReferenceComparison, ...] = ()  # CIFAR-10 runs: the study beside the run


def analyze_run(
    run_dir: str | Path | Run, model: str | None = None, noise_model: str | None = None,
    n_boot: int = 200, seed: int = 0,
) -> Analysis:
    """Load a run and compute its metrics, fits and sensitivity summary."""
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    if not run.finished():
        raise RunDirError(nothing_finished(run))
    model, noise_model = pick_model(run, model, noise_model)
    points = all_point_metrics(run)
    fits = fit_run(run, model, noise_model, n_boot=n_boot, seed=seed)
    return Analysis(
        run=run, model=model, noise_model=noise_model, points=points,
        baseline=baseline(points, run, model),
        conditions=ranking_conditions(points, run, model, noise_model),
        noise_points=noise_axis(points, run, model, noise_model),
        size_points=size_axis(points, model),
        fits=fits, sensitivity=sensitivity(fits),
        comparison=compare_run(run, points, n_boot=n_boot, seed=seed),
        reference=tuple(compare_models(run, points)),
    )


def nothing_finished(run: Run) -> str:
    """Why a run without a finished replica cannot be analysed, and what to do about it."""
    if run.unfinished():
        return (f"{run.path}: none of its {len(run.replicas)} replicas has finished yet; wait for "
                "the run, or continue a stopped one with: "
                f"python run_grid.py --resume --out {run.path}")
    return (f"{run.path}: every replica diverged, so there is nothing to analyse; start a new run "
            "(a new --out) with a lower --set recipe.learning_rate")


def progress_banner(run: Run) -> str:
    """One line for a run that is still training: how many replicas finished and that the tables
    use those only; '' once no replica is pending or running."""
    pending = len(run.unfinished())
    if not pending:
        return ""
    diverged = f", {len(run.diverged())} diverged" if run.diverged() else ""
    return (f"{len(run.finished())} of {len(run.replicas)} replicas finished ({pending} pending or "
            f"running{diverged}); the tables below use the finished ones only")


def progress_notes(an: Analysis, shown: int = 6) -> list[str]:
    """What a partly trained run lacks: the grid points without a finished replica, and the
    size that stands in for full data while the full-size replicas are missing."""
    run, notes = an.run, []
    done = {grid_point(r) for r in run.finished()}
    missing = [p for p in dict.fromkeys(grid_point(r) for r in run.replicas) if p not in done]
    if missing:
        names = [p.name() for p in missing[:shown]]
        more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
        notes.append(f"no finished replica at {len(missing)} grid point(s): "
                     f"{', '.join(names)}{more}")
    full, vf = run.full_size(an.model), an.fits.overall_volume
    if vf is not None and an.baseline is None:
        largest = vf.n_range[1] * run.num_classes
        notes.append(f"'full data' in the fitted figures (size needed, impact index) is "
                     f"n={largest:.0f}, the largest clean size finished so far (the grid's full "
                     f"size is {full})")
    return notes


def _condition(an: Analysis, prefix: str) -> PointMetrics | None:
    return next((pm for name, pm in an.conditions if name.startswith(prefix)), None)


def _condition_keys(an: Analysis) -> tuple[str, str]:
    """The per_class columns of the highest-noise and smallest-size conditions ('' if absent)."""
    noisy, small = _condition(an, "noise"), _condition(an, "size")
    return (f"noise_{noisy.point.noise_rate:g}_x1000" if noisy is not None else "",
            f"size_{small.point.train_size}_x1000" if small is not None else "")


def summary_columns(an: Analysis, fraction: float = 0.95) -> tuple[str, ...]:
    """The columns of ``summary_rows``."""
    need = f"size_{fraction:g}"
    return ("class", "baseline_x1000", "baseline_std_x1000", *(k for k in _condition_keys(an) if k),
            "noise_slope", "noise_slope_lo", "noise_slope_hi", "r2", "linear_ok", "smallest_size",
            "asymptote", "asymptote_lo", "asymptote_hi", "volume_form", need, f"{need}_lo",
            f"{need}_hi")


def summary_rows(an: Analysis, fraction: float = 0.95) -> list[dict]:
    """Per-class summary: baseline, highest-noise and smallest-size accuracy (x1000), the noise
    slope with its interval and R^2, the volume asymptote and the training size (total) that
    reaches ``fraction`` of full-data accuracy, with its interval."""
    noisy, small = _condition(an, "noise"), _condition(an, "size")
    noise_key, size_key = _condition_keys(an)
    rows = []
    for k, cls in enumerate(an.run.classes):
        row: dict = {"class": cls}
        if an.baseline is not None:
            row["baseline_x1000"] = x1000(an.baseline.accuracy.mean[k])
            row["baseline_std_x1000"] = x1000(an.baseline.accuracy.std[k])
        if noisy is not None:
            row[noise_key] = x1000(noisy.accuracy.mean[k])
        if small is not None:
            row[size_key] = x1000(small.accuracy.mean[k])
        row |= _noise_columns(an.fits.noise.get(cls))
        vf = an.fits.volume.get(cls)
        per_total = 1.0 / an.run.class_shares[k]  # per-class count -> total training size
        if vf is not None:
            need = size_needed(vf, an.fits.samples["volume"][cls], fraction, of="full")
            row["smallest_size"] = vf.n_range[0] * per_total
            row |= {"asymptote": vf.a, "asymptote_lo": vf.a_ci[0], "asymptote_hi": vf.a_ci[1],
                    "volume_form": vf.form, f"size_{fraction:g}": need[0] * per_total,
                    f"size_{fraction:g}_lo": need[1] * per_total,
                    f"size_{fraction:g}_hi": need[2] * per_total}
        rows.append(row)
    return rows


def summary_table(an: Analysis, fraction: float = 0.95) -> tuple[list[str], list[list[str]]]:
    """``summary_rows`` as display text: (headers, rows), one row per class."""
    rows = summary_rows(an, fraction)
    noisy, small = _condition(an, "noise"), _condition(an, "size")
    noise_key, size_key = _condition_keys(an)
    need = f"size_{fraction:g}"
    headers = ["class", "baseline ±std", f"noise {noisy.point.noise_rate:.0%}" if noisy else
               "noise", f"n={small.point.train_size}" if small else "size",
               "noise slope [CI]", "R2", "line", "asymptote [CI]",
               f"size to {fraction:.0%} [CI]"]
    table = []
    for r in rows:
        table.append([
            r["class"],
            f"{fmt_num(r.get('baseline_x1000'), 'd')} "
            f"±{fmt_num(r.get('baseline_std_x1000'), 'd')}",
            fmt_num(r.get(noise_key), "d"), fmt_num(r.get(size_key), "d"),
            _with_ci(r, "noise_slope", ".3f"), fmt_num(r.get("r2"), ".2f"),
            ("ok" if r["linear_ok"] else "POOR") if "linear_ok" in r else "-",
            _with_ci(r, "asymptote", ".3f"), size_cell(r, need, r.get("smallest_size", 0.0)),
        ])
    return headers, table


def size_cell(row: dict, key: str, smallest: float) -> str:
    """A needed size with its interval; values below the smallest measured size (the curve is
    already past the target there) show as '<SMALLEST' rather than an extrapolated number."""
    if key not in row:
        return "-"
    value, lo, hi = row[key], row[f"{key}_lo"], row[f"{key}_hi"]

    def cell(v: float) -> str:
        return f"<{smallest:.0f}" if v < smallest - 0.5 else fmt_num(v, ".0f")

    if math.isfinite(hi) and hi < smallest - 0.5:
        return f"<{smallest:.0f} (below smallest size)"
    if math.isnan(lo) or math.isnan(hi):
        return cell(value)
    return f"{cell(value)} [{cell(lo)}, {cell(hi)}]"


def _with_ci(row: dict, key: str, fmt: str) -> str:
    if key not in row:
        return "-"
    return f"{fmt_num(row[key], fmt)} {fmt_ci(row[f'{key}_lo'], row[f'{key}_hi'], fmt)}"


def _noise_columns(nf: NoiseFit | None) -> dict:
    if nf is None:
        return {}
    return {"noise_slope": nf.slope, "noise_slope_lo": nf.slope_ci[0],
            "noise_slope_hi": nf.slope_ci[1], "r2": nf.r2, "linear_ok": nf.linear_ok}


def confusion_table(an: Analysis) -> list[dict]:
    """Average confusion of every point of the model, with its difference from the baseline."""
    rows = []
    for pm in an.points:
        if pm.point.model == an.model:
            rows += confusion_rows(pm, an.run.classes, an.baseline)
    return rows


def _axis_points(an: Analysis) -> list[PointMetrics]:
    """The points of both grid axes, each once."""
    return list({pm.point: pm for pm in an.noise_points + an.size_points}.values())


def confusion_pairs(an: Analysis, k: int = 6) -> list[tuple[int, int]]:
    """The k most frequent confusions along both grid axes, and their reverses."""
    pairs = top_pairs(_axis_points(an), an.run.classes, k)
    return pairs + [(j, i) for i, j in pairs if (j, i) not in pairs]


def pair_table(an: Analysis, k: int = 6) -> list[dict]:
    """Rates of the k most frequent confusions (and their reverses) along both grid axes."""
    return pair_rows(_axis_points(an), an.run.classes, confusion_pairs(an, k))


def asymmetry_table(an: Analysis) -> list[dict]:
    """Asymmetry of every class pair at every point of the model, largest |difference| first."""
    rows = []
    for pm in an.points:
        if pm.point.model == an.model:
            rows += asymmetry_rows(pm, an.run.classes, k=None)
    return rows


SIZE_NEED_COLUMNS = ("class", "fraction", "of", "per_class", "per_class_lo", "per_class_hi",
                     "total", "total_lo", "total_hi", "where", "smallest_per_class",
                     "smallest_total", "largest_total")


def size_need_table(an: Analysis, fractions: tuple[float, ...] = (0.9, 0.95)) -> list[dict]:
    """Per-class and overall size reaching each fraction of full-data accuracy and of the
    asymptote, with intervals, as per-class counts and total training sizes."""
    entries = [(cls, an.fits.volume[cls], an.fits.samples["volume"][cls],
                1.0 / an.run.class_shares[k])
               for k, cls in enumerate(an.run.classes) if cls in an.fits.volume]
    if an.fits.overall_volume is not None:
        entries.append(("overall", an.fits.overall_volume, an.fits.samples["overall_volume"],
                        float(an.run.num_classes)))
    rows = []
    for cls, fit, samples, per_total in entries:
        for of in ("full", "asymptote"):
            for q in fractions:
                n, lo, hi = size_needed(fit, samples, q, of=of)
                rows.append({"class": cls, "fraction": q, "of": of, "per_class": n,
                             "per_class_lo": lo, "per_class_hi": hi, "total": n * per_total,
                             "total_lo": lo * per_total, "total_hi": hi * per_total,
                             "where": measured_range(n, fit.n_range),
                             "smallest_per_class": fit.n_range[0],
                             "smallest_total": fit.n_range[0] * per_total,
                             "largest_total": fit.n_range[1] * per_total})
    return rows


SIZE_FRACTION_COLUMNS = ("train_size", "accuracy", "fraction_observed", "fraction_fit")


def size_fraction_table(an: Analysis) -> list[dict]:
    """Overall accuracy at each clean size as a fraction of full-data accuracy, observed and
    from the overall volume fit."""
    if an.baseline is None:
        return []
    full = float(an.baseline.overall.mean)
    fit = an.fits.overall_volume
    rows = []
    for pm in an.size_points:
        size = pm.point.train_size
        row = {"train_size": size, "accuracy": float(pm.overall.mean),
               "fraction_observed": float(pm.overall.mean) / full}
        if fit is not None:
            row["fraction_fit"] = float(fraction_of_full(fit, size / an.run.num_classes))
        rows.append(row)
    return rows


IMPACT_COLUMNS = ("class", "fraction", "noise_loss", "volume_loss", "impact", "impact_lo",
                  "impact_hi")


def impact_table(an: Analysis, fraction: float = 0.1) -> list[dict]:
    """Impact index per class and overall: accuracy lost to ``fraction`` label noise over that
    lost to a ``fraction`` volume cut (> 1: noise hurts more)."""
    rows = []
    for cls in (*an.run.classes, None):
        value, lo, hi = impact_index(an.fits, cls, fraction)
        noise_loss, volume_loss = impact_losses(an.fits, cls, fraction)
        rows.append({"class": cls or "overall", "fraction": fraction,
                     "noise_loss": noise_loss, "volume_loss": volume_loss, "impact": value,
                     "impact_lo": lo, "impact_hi": hi})
    return rows
