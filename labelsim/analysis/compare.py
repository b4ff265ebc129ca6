"""Per-class noise sensitivity side by side across every model and noise model of a run.

Noise models differ in how many labels a grid level actually changes. ``shuffle`` permutes
the labels of round(r * n) records among themselves, so some land on their own class (about
r * (1 - 1/C) change); human noise hands records their annotators' labels, which are often
right (r times the set's disagreement); ``cifar10-semantic`` touches five classes only.
Slopes against the requested level would compare different amounts of wrong labels, so every
slope here is fitted against the REALIZED rate of each grid point (the mean ``realized_noise``
of its repeats in replicas.csv): accuracy lost per unit share of training labels actually
changed. Clean replicas (rate 0) are shared by every noise model of a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from labelsim.analysis.fits import FitError, NoiseFit, fit_noise, percentile_ci
from labelsim.analysis.metrics import (
    PointMetrics,
    baseline,
    class_accuracy,
    overall_accuracy,
    x1000,
)
from labelsim.rundir import Replica, Run
from labelsim.sim.noise import is_human_model
from labelsim.analysis.text import fmt_ci, fmt_num

OVERALL = "overall"


@dataclass(frozen=True)
class Level:
    """One requested noise level of a noise model and the share of labels it changed."""

    requested: float
    realized: float
    replicas: int


@dataclass(frozen=True)
class ComboFit:
    """Per-class noise lines of one (model, noise model) against the realized noise rate."""

    model: str
    noise_model: str
    noise: dict[str, NoiseFit]
    overall: NoiseFit | None
    samples: dict[str, np.ndarray] = field(repr=False)  # class or OVERALL -> (B, 2)
    levels: tuple[Level, ...] = ()
    dropped_levels: tuple[float, ...] = ()  # noisy levels without a recorded realized rate

    @property
    def repeats(self) -> int:
        """The fewest finished repeats at any of the fit's levels (0 without levels)."""
        return min((lv.replicas for lv in self.levels), default=0)

    @property
    def realized_max(self) -> float:
        """The largest realized noise rate the fit saw (0 without noisy levels)."""
        return max((lv.realized for lv in self.levels), default=0.0)

    def fit(self, cls: str) -> NoiseFit | None:
        """A class's fit, or the overall one for ``OVERALL``."""
        return self.overall if cls == OVERALL else self.noise.get(cls)


@dataclass(frozen=True)
class Comparison:
    """Every (model, noise model) fit of a run, the models' baselines and realized transitions."""

    classes: tuple[str, ...]
    models: tuple[str, ...]
    noise_models: tuple[str, ...]
    combos: tuple[ComboFit, ...]
    baselines: dict[str, PointMetrics | None]
    transitions: dict[str, np.ndarray]  # noise model -> (C, C) summed counts (clean, given)
    transition_replicas: dict[str, int] = field(default_factory=dict)  # replicas summed

    def combo(self, model: str, noise_model: str) -> ComboFit | None:
        """The fit of one combination, if the run has it."""
        return next((c for c in self.combos
                     if (c.model, c.noise_model) == (model, noise_model)), None)

    @property
    def human_models(self) -> tuple[str, ...]:
        """Noise models that replay human annotators."""
        return tuple(nm for nm in self.noise_models if is_human_model(nm))

    @property
    def synthetic_models(self) -> tuple[str, ...]:
        """Noise models drawn by a protocol (every non-human one)."""
        return tuple(nm for nm in self.noise_models if not is_human_model(nm))

    @property
    def side_by_side(self) -> bool:
        """Whether the run has more than one (model, noise model) combination."""
        return len(self.combos) > 1


# ---------------------------------------------------------------- data and fits


def combinations(run: Run) -> list[tuple[str, str]]:
    """Every (model, noise model) with noisy grid replicas, in the run's order."""
    seen: dict[tuple[str, str], None] = {}
    for r in run.replicas:
        if r.noise_rate > 0 and not r.is_custom:
            seen[(r.model, r.noise_model)] = None
    return list(seen)


def _full_size_replicas(run: Run, model: str, noise_model: str) -> list[Replica]:
    """Finished grid replicas of a model at full size: clean ones and those of the noise model."""
    full = run.full_size(model)
    return [r for r in run.finished()
            if r.model == model and not r.is_custom and r.train_size == full
            and (r.noise_rate == 0 or r.noise_model == noise_model)]


def realized_levels(reps: list[Replica]) -> tuple[dict[float, float], tuple[float, ...]]:
    """Mean realized rate of each requested level (clean: 0), and the noisy levels lacking one."""
    groups: dict[float, list[float]] = {}
    for r in reps:
        groups.setdefault(r.noise_rate, []).append(r.realized_noise)
    levels, dropped = {}, []
    for rate, values in sorted(groups.items()):
        finite = [v for v in values if math.isfinite(v)]
        if rate == 0:
            levels[rate] = float(np.mean(finite)) if finite else 0.0
        elif finite:
            levels[rate] = float(np.mean(finite))
        else:
            dropped.append(rate)
    return levels, tuple(dropped)


def fit_combination(
    run: Run, model: str, noise_model: str, n_boot: int = 200, seed: int = 0
) -> ComboFit:
    """Per-class and overall noise lines of one combination against the realized rate."""
    reps = _full_size_replicas(run, model, noise_model)
    realized, dropped = realized_levels(reps)
    reps = [r for r in reps if r.noise_rate in realized]
    x = np.array([realized[r.noise_rate] for r in reps])
    counts = run.counts[[r.replica for r in reps]]
    acc, overall = class_accuracy(counts), overall_accuracy(counts)
    ident = _ident(run, model, noise_model)
    noise, samples = {}, {}
    for k, cls in enumerate(run.classes):
        got = _try_fit(x, acc[:, k], n_boot, np.random.default_rng([seed, 4, *ident, k]))
        if got is not None:
            noise[cls], samples[cls] = got
    got = _try_fit(x, overall, n_boot, np.random.default_rng([seed, 4, *ident, 10**6]))
    if got is not None:
        samples[OVERALL] = got[1]
    levels = tuple(Level(rate, realized[rate], sum(r.noise_rate == rate for r in reps))
                   for rate in realized)
    return ComboFit(model, noise_model, noise, got[0] if got else None, samples, levels, dropped)


def _ident(run: Run, model: str, noise_model: str) -> tuple[int, int]:
    return run.models().index(model), run.noise_models().index(noise_model)


def _try_fit(x: np.ndarray, y: np.ndarray, n_boot: int,
             rng: np.random.Generator) -> tuple[NoiseFit, np.ndarray] | None:
    try:
        return fit_noise(x, y, n_boot, rng)
    except FitError:
        return None


def _transition_replicas(run: Run, noise_model: str) -> list[int]:
    """The noise model's noisy grid replicas, whose label transitions are summed."""
    return [r.replica for r in run.replicas
            if r.noise_model == noise_model and r.noise_rate > 0 and not r.is_custom]


def realized_transitions(run: Run, noise_model: str) -> np.ndarray | None:
    """(C, C) label-transition counts (clean, given) summed over the noise model's noisy grid
    replicas; None if the run recorded none."""
    if run.transitions is None:
        return None
    idx = _transition_replicas(run, noise_model)
    total = run.transitions[idx].sum(axis=0) if idx else None
    return total if total is not None and total.sum() > 0 else None


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row over its total (NaN for empty rows)."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    out = np.full(counts.shape, np.nan)
    np.divide(counts, totals, out=out, where=totals > 0)
    return out


def compare_run(
    run: Run, points: list[PointMetrics], n_boot: int = 200, seed: int = 0
) -> Comparison:
    """Fit every (model, noise model) combination of a run on the realized-noise axis."""
    pairs = combinations(run)
    combos = tuple(fit_combination(run, m, nm, n_boot, seed) for m, nm in pairs)
    models = tuple(dict.fromkeys(m for m, _ in pairs))
    noise_models = tuple(dict.fromkeys(nm for _, nm in pairs))
    transitions = {nm: t for nm in noise_models
                   if (t := realized_transitions(run, nm)) is not None}
    return Comparison(run.classes, models, noise_models, combos,
                      {m: baseline(points, run, m) for m in models}, transitions,
                      {nm: len(_transition_replicas(run, nm)) for nm in transitions})


# ---------------------------------------------------------------- tables


SLOPE_COLUMNS = ("model", "noise_model", "class", "realized_max", "levels", "repeats", "baseline",
                 "slope", "slope_lo", "slope_hi", "r2", "linear_ok")


def slope_rows(comp: Comparison) -> list[dict]:
    """Tidy rows: one per (model, noise model, class or overall) with the realized-axis slope."""
    rows = []
    for combo in comp.combos:
        base = comp.baselines.get(combo.model)
        for k, cls in enumerate((*comp.classes, OVERALL)):
            fit = combo.fit(cls)
            row = {"model": combo.model, "noise_model": combo.noise_model, "class": cls,
                   "realized_max": combo.realized_max, "levels": len(combo.levels),
                   "repeats": combo.repeats}
            if base is not None:
                acc = base.overall.mean if cls == OVERALL else base.accuracy.mean[k]
                row["baseline"] = float(acc)
            if fit is not None:
                row |= {"slope": fit.slope, "slope_lo": fit.slope_ci[0],
                        "slope_hi": fit.slope_ci[1], "r2": fit.r2, "linear_ok": fit.linear_ok}
            rows.append(row)
    return rows


REALIZED_COLUMNS = ("noise_model", "requested", "realized", "ratio", "replicas")


def realized_rows(comp: Comparison) -> list[dict]:
    """Requested vs realized noise rate of each noise model's levels (over every model: the
    corruption of a level does not depend on the model trained on it)."""
    groups: dict[tuple[str, float], list[Level]] = {}
    for c in comp.combos:
        for lv in c.levels:
            if lv.requested > 0:
                groups.setdefault((c.noise_model, lv.requested), []).append(lv)
    rows = []
    for (nm, requested), levels in groups.items():
        replicas = sum(lv.replicas for lv in levels)
        realized = sum(lv.realized * lv.replicas for lv in levels) / replicas
        rows.append({"noise_model": nm, "requested": requested, "realized": realized,
                     "ratio": realized / requested, "replicas": replicas})
    return rows


TRANSITION_COLUMNS = ("noise_model", "replicas", "true", "given", "count", "share", "diagonal")


def transition_rows(comp: Comparison) -> list[dict]:
    """Tidy rows of each noise model's row-normalised realized transition matrix."""
    rows = []
    for nm, counts in comp.transitions.items():
        share = row_normalised(counts)
        for i, true in enumerate(comp.classes):
            for j, given in enumerate(comp.classes):
                rows.append({"noise_model": nm, "replicas": comp.transition_replicas.get(nm, 0),
                             "true": true, "given": given,
                             "count": int(counts[i, j]), "share": float(share[i, j]),
                             "diagonal": i == j})
    return rows


def verdict(lo: float, hi: float) -> str:
    """How the human slope stands against the synthetic one, from the difference's interval."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "-"
    if lo > 0:
        return "synthetic under-predicts"
    if hi < 0:
        return "synthetic over-predicts"
    return "consistent"


def _difference(human: ComboFit, synthetic: ComboFit, cls: str) -> dict:
    """Human slope minus synthetic slope with a 95% interval from independent bootstraps."""
    h, s = human.fit(cls), synthetic.fit(cls)
    if h is None or s is None:
        return {}
    hs, ss = human.samples.get(cls), synthetic.samples.get(cls)
    m = min(len(hs), len(ss)) if hs is not None and ss is not None else 0
    lo, hi = percentile_ci(hs[:m, 1] - ss[:m, 1]) if m else (math.nan, math.nan)
    return {"human_slope": h.slope, "human_lo": h.slope_ci[0], "human_hi": h.slope_ci[1],
            "synthetic_slope": s.slope, "synthetic_lo": s.slope_ci[0],
            "synthetic_hi": s.slope_ci[1], "diff": h.slope - s.slope, "diff_lo": lo,
            "diff_hi": hi, "verdict": verdict(lo, hi)}


def human_pairs(comp: Comparison) -> list[tuple[ComboFit, ComboFit]]:
    """(human, synthetic) fits of the same model, for every pair the run has."""
    pairs = []
    for model in comp.models:
        for h in comp.human_models:
            for s in comp.synthetic_models:
                hc, sc = comp.combo(model, h), comp.combo(model, s)
                if hc is not None and sc is not None:
                    pairs.append((hc, sc))
    return pairs


HUMAN_COLUMNS = ("model", "human", "synthetic", "class", "repeats", "human_slope", "human_lo",
                 "human_hi", "synthetic_slope", "synthetic_lo", "synthetic_hi", "diff", "diff_lo",
                 "diff_hi", "verdict")


def human_vs_synthetic_rows(comp: Comparison) -> list[dict]:
    """Per class and overall: slope under human noise vs under each synthetic noise model of
    the same model, and their difference (human - synthetic) with its 95% interval."""
    rows = []
    for hc, sc in human_pairs(comp):
        for cls in (*comp.classes, OVERALL):
            diff = _difference(hc, sc, cls)
            if diff:
                rows.append({"model": hc.model, "human": hc.noise_model,
                             "synthetic": sc.noise_model, "class": cls,
                             "repeats": min(hc.repeats, sc.repeats)} | diff)
    return rows


AGREEMENT_COLUMNS = ("model", "human", "synthetic", "classes", "repeats", "spearman",
                     "spearman_p", "consistent", "under_predicted", "over_predicted", "mean_abs_diff",
                     "human_realized_max", "synthetic_realized_max", "common_realized_max")


def agreement_rows(comp: Comparison) -> list[dict]:
    """Per (model, human, synthetic): rank agreement of the per-class slopes (Spearman), how
    many classes are consistent, and the realized range both fits cover."""
    rows = []
    for hc, sc in human_pairs(comp):
        diffs = [_difference(hc, sc, cls) for cls in comp.classes]
        diffs = [d for d in diffs if d]
        rho, p = spearman([d["human_slope"] for d in diffs], [d["synthetic_slope"] for d in diffs])
        rows.append({
            "model": hc.model, "human": hc.noise_model, "synthetic": sc.noise_model,
            "classes": len(diffs), "repeats": min(hc.repeats, sc.repeats),
            "spearman": rho, "spearman_p": p,
            "consistent": sum(d["verdict"] == "consistent" for d in diffs),
            "under_predicted": sum(d["verdict"] == "synthetic under-predicts" for d in diffs),
            "over_predicted": sum(d["verdict"] == "synthetic over-predicts" for d in diffs),
            "mean_abs_diff": float(np.mean([abs(d["diff"]) for d in diffs])) if diffs
            else math.nan,
            "human_realized_max": hc.realized_max, "synthetic_realized_max": sc.realized_max,
            "common_realized_max": min(hc.realized_max, sc.realized_max),
        })
    return rows


def spearman(a: list[float], b: list[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its p-value (NaN with fewer than 3 pairs or no spread)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    result = stats.spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


# ---------------------------------------------------------------- display text

SHORT_VERDICT = {"consistent": "same", "synthetic under-predicts": "worse",
                 "synthetic over-predicts": "milder", "-": "-"}
VERDICT_LEGEND = ("worse / milder: under human noise the class loses more / less accuracy per "
                  "wrong label than the synthetic model predicts (interval excludes 0); "
                  "same: the interval includes 0")


def _slope_text(fit: NoiseFit | None) -> str:
    if fit is None:
        return "-"
    return f"{fmt_num(fit.slope)} {fmt_ci(*fit.slope_ci)}"


def _baseline_text(base: PointMetrics | None, k: int | None) -> str:
    if base is None:
        return "-"
    mean = base.overall.mean if k is None else base.accuracy.mean[k]
    return fmt_num(x1000(float(mean)), "d")


def slope_table(comp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Per class (and model): baseline accuracy x1000 and the realized-axis noise slope [CI]
    under each noise model, side by side."""
    several = len(comp.models) > 1
    headers = ["class", *(["model"] if several else []), "baseline",
               *(f"{nm} [CI]" for nm in comp.noise_models)]
    rows = []
    for k, cls in [*enumerate(comp.classes), (None, OVERALL)]:
        for model in comp.models:
            cells = [cls if model == comp.models[0] or not several else ""]
            cells += [model] if several else []
            cells.append(_baseline_text(comp.baselines.get(model), k))
            for nm in comp.noise_models:
                combo = comp.combo(model, nm)
                cells.append(_slope_text(combo.fit(cls) if combo else None))
            rows.append(cells)
    return headers, rows


def unfitted_lines(comp: Comparison) -> list[str]:
    """One line per (model, noise model) without an overall slope: the data it lacks."""
    return [f"{c.model} with {c.noise_model}: not enough data (finished full-size replicas at "
            f"{len(c.levels)} noise level(s); a slope needs 2)"
            for c in comp.combos if c.overall is None]


def realized_summary(comp: Comparison) -> list[str]:
    """One line per noise model: requested level -> realized rate (over every model)."""
    rows = realized_rows(comp)
    lines = []
    for nm in comp.noise_models:
        combo = next(c for c in comp.combos if c.noise_model == nm)
        pairs = ", ".join(f"{r['requested']:.0%} -> {r['realized']:.1%}"
                          for r in rows if r["noise_model"] == nm)
        dropped = (f" (levels {', '.join(f'{r:g}' for r in combo.dropped_levels)} left out: "
                   "no realized rate recorded)" if combo.dropped_levels else "")
        lines.append(f"{nm}: {pairs or 'no noisy level finished'}{dropped}")
    return lines


def human_table(comp: Comparison, model: str, human: str) -> tuple[list[str], list[list[str]]]:
    """Per class: slope under a human noise model beside each synthetic one, the difference
    (human - synthetic) with its interval and a short verdict."""
    rows = [r for r in human_vs_synthetic_rows(comp)
            if r["model"] == model and r["human"] == human]
    synthetic = list(dict.fromkeys(r["synthetic"] for r in rows))
    headers = ["class", f"{human} [CI]"]
    for s in synthetic:
        headers += [f"{s}", f"human - {s} [CI]", "verdict"]
    table = []
    for cls in (*comp.classes, OVERALL):
        mine = [r for r in rows if r["class"] == cls]
        if not mine:
            continue
        cells = [cls, f"{fmt_num(mine[0]['human_slope'])} "
                      f"{fmt_ci(mine[0]['human_lo'], mine[0]['human_hi'])}"]
        for s in synthetic:
            r = next((r for r in mine if r["synthetic"] == s), None)
            cells += ["-", "-", "-"] if r is None else [
                fmt_num(r["synthetic_slope"]),
                f"{fmt_num(r['diff'], '+.3f')} {fmt_ci(r['diff_lo'], r['diff_hi'], '+.3f')}",
                SHORT_VERDICT[r["verdict"]]]
        table.append(cells)
    return headers, table


def agreement_text(row: dict) -> str:
    """One sentence on how well a synthetic model's per-class slopes predict the human ones."""
    if not row["classes"]:
        return (f"{row['human']} vs {row['synthetic']} ({row['model']}): not enough data (no "
                "class has a fitted slope under both yet)")
    return (f"{row['human']} vs {row['synthetic']} ({row['model']}): Spearman "
            f"{fmt_num(row['spearman'], '.2f')} (p {fmt_num(row['spearman_p'], '.2g')}) over "
            f"{row['classes']} classes; {row['consistent']} same, {row['under_predicted']} "
            f"worse, {row['over_predicted']} milder under humans; realized noise reached "
            f"{row['human_realized_max']:.1%} ({row['human']}) and "
            f"{row['synthetic_realized_max']:.1%} ({row['synthetic']})")


def top_transitions(comp: Comparison, k: int = 4) -> list[str]:
    """Per noise model, its k most frequent realized label changes (share of the true class)."""
    lines = []
    for nm, counts in comp.transitions.items():
        share = row_normalised(counts)
        off = share[~np.eye(len(share), dtype=bool)]
        off = off[np.isfinite(off)]
        if len(off) and off.max() > 0 and off.min() >= 0.8 * off.max():
            low, high = f"{off.min():.1%}", f"{off.max():.1%}"
            each = f"about {low}" if low == high else f"{low}-{high}"
            lines.append(f"{nm}: spread evenly over the other classes ({each} of a class's "
                         "labels each)")
            continue
        np.fill_diagonal(share, -np.inf)
        order = np.argsort(np.nan_to_num(share, nan=-np.inf), axis=None)[::-1][:k]
        cells = [f"{comp.classes[i]}->{comp.classes[j]} {share[i, j]:.1%}"
                 for i, j in (np.unravel_index(o, share.shape) for o in order)
                 if share[i, j] > 0]
        lines.append(f"{nm}: {', '.join(cells) or 'no label changed'}")
    return lines
