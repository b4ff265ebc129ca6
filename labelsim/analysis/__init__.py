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
from typing import Callable

from labelsim.analysis.derived import (
    NEED_FRACTION,
    fraction_of_full,
    impact,
    impact_index,
    sensitivity,
    size_needed,
    volume_need,
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
from labelsim.analysis.units import CLASS, Units, class_units
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
    "summary_notes",
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
    units: Units | None = None  # what the per-unit figures follow; None: the classes

    @property
    def unit(self) -> Units:
        """The units of the per-unit figures (the run's classes unless set)."""
        return self.units if self.units is not None else class_units(self.run)


def analyze_run(
    run_dir: str | Path | Run, model: str | None = None, noise_model: str | None = None,
    n_boot: int = 200, seed: int = 0, units: Units | Callable[[Run], Units] | None = None,
) -> Analysis:
    """Load a run and compute its metrics, fits and sensitivity summary, per class or per the
    given ``units`` (or a function of the loaded run that gives them). Units other than classes
    leave out the class-only comparisons (models and noise models side by side, the study)."""
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    if not run.finished():
        raise RunDirError(nothing_finished(run))
    model, noise_model = pick_model(run, model, noise_model)
    units = units(run) if callable(units) else units or class_units(run)
    points = all_point_metrics(run, units)
    fits = fit_run(run, model, noise_model, n_boot=n_boot, seed=seed, units=units)
    by_class = units.kind == CLASS
    unranked = [name for name, flag in zip(units.names, units.flags) if flag]
    return Analysis(
        run=run, model=model, noise_model=noise_model, points=points,
        baseline=baseline(points, run, model),
        conditions=ranking_conditions(points, run, model, noise_model),
        noise_points=noise_axis(points, run, model, noise_model),
        size_points=size_axis(points, model),
        fits=fits, sensitivity=sensitivity(fits, unit=units.kind, unranked=unranked),
        comparison=compare_run(run, points, n_boot=n_boot, seed=seed) if by_class else None,
        reference=tuple(compare_models(run, points)) if by_class else (),
        units=units,
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


def need_columns(fraction: float = NEED_FRACTION) -> tuple[str, str]:
    """Column stems of the size to ``fraction`` of full-data accuracy: per class and total."""
    pct = f"{fraction * 100:g}pct"
    return f"images_per_class_to_{pct}_full", f"train_size_to_{pct}_full"


def summary_columns(an: Analysis) -> tuple[str, ...]:
    """The columns of ``summary_rows``."""
    per_class, total = need_columns(an.sensitivity["fraction"])
    return ("class", "baseline_x1000", "baseline_std_x1000", "baseline_lo_x1000",
            "baseline_hi_x1000", "baseline_repeats", *(k for k in _condition_keys(an) if k),
            "noise_slope", "noise_slope_lo", "noise_slope_hi", "noise_levels", "noise_repeats",
            "r2", "linear_ok", "asymptote", "asymptote_lo", "asymptote_hi", "volume_form",
            "size_levels", "size_repeats", "smallest_per_class",
            *(f"{stem}{end}" for stem in (per_class, total) for end in ("", "_lo", "_hi")))


def summary_rows(an: Analysis) -> list[dict]:
    """Per-class summary: baseline (with its Wilson interval and repeats), highest-noise and
    smallest-size accuracy (x1000), the noise slope with its interval, levels, repeats and R^2,
    the volume asymptote, and the size reaching 95% of full-data accuracy per class and as a
    total training size: the very figures ``an.sensitivity`` ranks (``volume_need``)."""
    noisy, small = _condition(an, "noise"), _condition(an, "size")
    noise_key, size_key = _condition_keys(an)
    per_class, total = need_columns(an.sensitivity["fraction"])
    needs = {r["class"]: r for r in an.sensitivity["rows"] if "need" in r}
    units = an.unit
    rows = []
    for k, cls in enumerate(units.names):
        row: dict = {"class": cls}
        if an.baseline is not None:
            acc = an.baseline.accuracy
            row |= {"baseline_x1000": x1000(acc.mean[k]), "baseline_std_x1000": x1000(acc.std[k]),
                    "baseline_lo_x1000": x1000(acc.lo[k]), "baseline_hi_x1000": x1000(acc.hi[k]),
                    "baseline_repeats": acc.n}
        if noisy is not None:
            row[noise_key] = x1000(noisy.accuracy.mean[k])
        if small is not None:
            row[size_key] = x1000(small.accuracy.mean[k])
        row |= _noise_columns(an.fits.noise.get(cls))
        vf, need = an.fits.volume.get(cls), needs.get(cls)
        if vf is not None and need is not None:
            per_total = 1.0 / units.shares[k]  # per-unit count -> total training size
            row |= {"asymptote": vf.a, "asymptote_lo": vf.a_ci[0], "asymptote_hi": vf.a_ci[1],
                    "volume_form": vf.form, "size_levels": vf.levels, "size_repeats": vf.repeats,
                    "smallest_per_class": vf.n_range[0]}
            for end in ("", "_lo", "_hi"):
                row[f"{per_class}{end}"] = need[f"need{end}"]
                row[f"{total}{end}"] = need[f"need{end}"] * per_total
        rows.append(row)
    return rows


def summary_table(an: Analysis) -> tuple[list[str], list[list[str]]]:
    """``summary_rows`` as display text: (headers, rows), one row per class. Repeats behind
    each figure are in ``summary_notes``."""
    rows = summary_rows(an)
    noisy, small = _condition(an, "noise"), _condition(an, "size")
    noise_key, size_key = _condition_keys(an)
    per_class, _ = need_columns(an.sensitivity["fraction"])
    headers = ["class", "baseline ±std [CI]", f"noise {noisy.point.noise_rate:.0%}" if noisy else
               "noise", f"n={small.point.train_size}" if small else "size",
               "noise slope [CI]", "R2", "line", "asymptote [CI]",
               f"images/class to {an.sensitivity['fraction']:.0%} of full [CI]"]
    table = []
    for r in rows:
        table.append([
            r["class"],
            _baseline_cell(r),
            fmt_num(r.get(noise_key), "d"), fmt_num(r.get(size_key), "d"),
            _with_ci(r, "noise_slope", ".3f"), fmt_num(r.get("r2"), ".2f"), _line_cell(r),
            _with_ci(r, "asymptote", ".3f"),
            size_cell(r, per_class, r.get("smallest_per_class", 0.0)),
        ])
    return headers, table


def _baseline_cell(row: dict) -> str:
    """'889 ±13 [862, 912]' (x1000); the std is left out with a single repeat."""
    if "baseline_x1000" not in row:
        return "-"
    std = row["baseline_std_x1000"]
    return " ".join([fmt_num(row["baseline_x1000"], "d"), *([f"±{std}"] if std is not None else []),
                     fmt_ci(row["baseline_lo_x1000"], row["baseline_hi_x1000"], "d")])


def _line_cell(row: dict) -> str:
    """'ok' / 'POOR' for a judged line; 'too few levels' when it could not be judged."""
    if "noise_slope" not in row:
        return "-"
    if row.get("linear_ok") is None:
        return "too few levels"
    return "ok" if row["linear_ok"] else "POOR"


def summary_notes(an: Analysis) -> list[str]:
    """What stands behind the per-class table: repeats per figure, and what its words mean."""
    notes = []
    if an.baseline is not None:
        notes.append(f"baseline: {an.baseline.accuracy.n} repeat(s) of "
                     f"{an.baseline.point.name()}; interval: {an.baseline.accuracy.method}")
    fits = [f for f in an.fits.noise.values()]
    if fits:
        notes.append(f"noise slope: {fits[0].levels} noise levels, at least "
                     f"{min(f.repeats for f in fits)} repeat(s) each"
                     + (f"; R2 and line: {fits[0].note}" if fits[0].note else ""))
    elif "noise" in an.fits.skipped:
        notes.append(f"noise slope: {an.fits.skipped['noise']}")
    volume = list(an.fits.volume.values())
    if volume:
        notes.append(f"volume fit: {volume[0].levels} sizes, at least "
                     f"{min(f.repeats for f in volume)} repeat(s) each")
    elif "volume" in an.fits.skipped:
        notes.append(f"asymptote and size: {an.fits.skipped['volume']}")
    if volume:
        notes.append(f"images/class to {an.sensitivity['fraction']:.0%} of full: training images "
                     f"per class at which the class's fitted volume curve reaches "
                     f"{an.sensitivity['need_target']} (its own fitted clean accuracy at the "
                     "largest measured size); '<N': below the smallest measured size N; the same "
                     "figure ranks the most volume-hungry class")
    return notes


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
            "noise_slope_hi": nf.slope_ci[1], "noise_levels": nf.levels,
            "noise_repeats": nf.repeats, "r2": nf.r2, "linear_ok": nf.linear_ok}


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
                     "smallest_total", "largest_total", "levels", "repeats")


def size_need_table(an: Analysis, fractions: tuple[float, ...] = (0.9, NEED_FRACTION)) -> list[dict]:
    """Per-class and overall size reaching each fraction of full-data accuracy (the fitted
    curve's value at the largest measured size), with 95% bootstrap intervals, as per-class
    counts and total training sizes; ``of`` names the target."""
    units = an.unit
    entries = [(cls, an.fits.volume[cls], an.fits.samples["volume"][cls], 1.0 / units.shares[k])
               for k, cls in enumerate(units.names) if cls in an.fits.volume]
    if an.fits.overall_volume is not None:
        entries.append(("overall", an.fits.overall_volume, an.fits.samples["overall_volume"],
                        float(an.run.num_classes)))
    rows = []
    for cls, fit, samples, per_total in entries:
        for q in fractions:
            need = volume_need(fit, samples, q)
            n, lo, hi = need["need"], need["need_lo"], need["need_hi"]
            rows.append({"class": cls, "fraction": q, "of": "full-data accuracy",
                         "per_class": n, "per_class_lo": lo, "per_class_hi": hi,
                         "total": n * per_total, "total_lo": lo * per_total,
                         "total_hi": hi * per_total, "where": need["need_where"],
                         "smallest_per_class": fit.n_range[0],
                         "smallest_total": fit.n_range[0] * per_total,
                         "largest_total": fit.n_range[1] * per_total, "levels": fit.levels,
                         "repeats": fit.repeats})
    return rows


SIZE_FRACTION_COLUMNS = ("train_size", "repeats", "accuracy", "fraction_observed", "fraction_fit")


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
        row = {"train_size": size, "repeats": pm.overall.n, "accuracy": float(pm.overall.mean),
               "fraction_observed": float(pm.overall.mean) / full}
        if fit is not None:
            row["fraction_fit"] = float(fraction_of_full(fit, size / an.run.num_classes))
        rows.append(row)
    return rows


IMPACT_COLUMNS = ("class", "fraction", "noise_loss", "volume_loss", "impact", "impact_lo",
                  "impact_hi", "repeats", "note")


def impact_table(an: Analysis, fraction: float = 0.1) -> list[dict]:
    """Impact index per class and overall: accuracy lost to ``fraction`` label noise over that
    lost to a ``fraction`` volume cut (> 1: noise hurts more); ``note`` says why an interval is
    missing or unbounded (``derived.impact``)."""
    rows = []
    for cls in (*an.unit.names, None):
        found = impact(an.fits, cls, fraction)
        rows.append({"class": cls or "overall", "fraction": fraction,
                     "noise_loss": found.noise_loss, "volume_loss": found.volume_loss,
                     "impact": found.value, "impact_lo": found.lo, "impact_hi": found.hi,
                     "repeats": found.repeats, "note": found.note})
    return rows
