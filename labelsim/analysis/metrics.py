"""Per-class metrics derived from confusion counts, grouped by grid point, with their spread.

Everything here is derived from counts (rows = true class, columns = predicted class):
evaluation returns counts, never rates. Only finished replicas enter any average.

Intervals: a proportion (per-class accuracy, overall accuracy, TPR/FNR/FPR/TNR, a confusion
rate) gets a 95% Wilson score interval, which stays in [0, 1], computed from the mean over
repeats with two sources of error added: test-set sampling (the binomial variance over the
test images behind one repeat) and the spread between repeats (sample variance over the number
of repeats); the critical value is Student's t with Welch-Satterthwaite degrees of freedom.
This fits repeats scored on one shared test set (the usual case); with a fresh test set per
repeat it is conservative. With one repeat only test-set sampling is covered (``Spread.method``
says so). Unbounded
quantities (differences, log ratios) keep a t-interval of the mean over repeats (NaN below two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from scipy import stats

from labelsim.analysis.units import CLASS, Units, class_units
from labelsim.rundir import Replica, Run

RATE_NAMES = ("tpr", "fnr", "fpr", "tnr")
# Grouping key of clean (rate 0) grid points, whatever noise model their replicas record: the
# protocol is moot there. Tables show the noise model replicas.csv records instead.
CLEAN = "none"


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, float), np.asarray(den, float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def one_vs_rest_counts(counts: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(numerator, denominator) counts of each one-vs-rest rate, each (..., C)."""
    counts = np.asarray(counts, dtype=float)
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    fn = counts.sum(axis=-1) - tp
    fp = counts.sum(axis=-2) - tp
    tn = counts.sum(axis=(-2, -1))[..., None] - tp - fn - fp
    return {"tpr": (tp, tp + fn), "fnr": (fn, tp + fn), "fpr": (fp, fp + tn),
            "tnr": (tn, fp + tn)}


def one_vs_rest(counts: np.ndarray) -> dict[str, np.ndarray]:
    """True/false positive/negative rates of each class, one class against the rest.

    ``counts`` is (..., C, C); each returned array is (..., C). ``tpr`` is the per-class
    accuracy (recall): correct predictions of the class over its test images.
    """
    return {name: _divide(num, den) for name, (num, den) in one_vs_rest_counts(counts).items()}


def class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Per-class accuracy (recall) of (..., C, C) counts -> (..., C)."""
    return one_vs_rest(counts)["tpr"]


def overall_accuracy(counts: np.ndarray) -> np.ndarray:
    """Share of all test images classified correctly, (..., C, C) -> (...)."""
    counts = np.asarray(counts, dtype=float)
    return _divide(np.trace(counts, axis1=-2, axis2=-1), counts.sum(axis=(-2, -1)))


def confusion_rates(counts: np.ndarray) -> np.ndarray:
    """Each count over its true-class total: rate of true class i predicted as j."""
    counts = np.asarray(counts, dtype=float)
    return _divide(counts, counts.sum(axis=-1, keepdims=True))


T_INTERVAL = "t over repeats"
WILSON = "wilson: test counts and repeat spread"
WILSON_TEST_ONLY = "wilson: test counts only (1 repeat)"


@dataclass(frozen=True)
class Spread:
    """Mean over n repeats with sample std (NaN if n < 2) and a 95% interval; ``method`` names
    how the interval was computed (T_INTERVAL, WILSON or WILSON_TEST_ONLY)."""

    mean: np.ndarray
    std: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int
    method: str = T_INTERVAL


def spread(values: np.ndarray, axis: int = 0) -> Spread:
    """Mean, std and 95% t-interval of the mean of ``values`` along ``axis`` (the repeats);
    for unbounded quantities such as differences (NaN interval with fewer than 2 repeats)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    mean = values.mean(axis=axis) if n else np.full(np.delete(values.shape, axis), np.nan)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return Spread(mean, nan, nan, nan, n)
    std = values.std(axis=axis, ddof=1)
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
    return Spread(mean, std, mean - half, mean + half, n)


def wilson(p: np.ndarray, n: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion p observed over n trials at critical value z."""
    p, n, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (p, n, z)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z2n = z**2 / n
        centre = (p + z2n / 2) / (1 + z2n)
        half = z / (1 + z2n) * np.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def proportion_spread(successes: np.ndarray, trials: np.ndarray) -> Spread:
    """Mean over repeats (axis 0) of successes / trials with a 95% interval inside [0, 1].

    Variance of the mean: p(1 - p) / m (test-set sampling, m the mean trials of one repeat)
    plus s^2 / R (spread between R repeats). The interval is Wilson's at the effective number
    of trials p(1 - p) / variance, with Student's t at the Welch-Satterthwaite degrees of
    freedom as critical value; with one repeat it covers test-set sampling only."""
    k, m = (np.asarray(v, dtype=float) for v in (successes, trials))
    share = _divide(k, m)
    repeats = share.shape[0]
    if not repeats:
        return spread(share)
    mean = share.mean(axis=0)
    trials_per_repeat = m.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        test_var = mean * (1 - mean) / trials_per_repeat
        if repeats < 2:
            repeat_var = np.zeros_like(mean)
            std = np.full_like(mean, np.nan)
        else:
            std = share.std(axis=0, ddof=1)
            repeat_var = std**2 / repeats
        total = test_var + repeat_var
        n_eff = np.where(total > 0, mean * (1 - mean) / total, trials_per_repeat)
        dof = np.where(repeat_var > 0, total**2 * max(repeats - 1, 1) / repeat_var**2, np.inf)
    z = stats.t.ppf(0.975, dof)
    lo, hi = wilson(mean, n_eff, z)
    method = WILSON if repeats > 1 else WILSON_TEST_ONLY
    return Spread(mean, std, lo, hi, repeats, method)


@dataclass(frozen=True, order=True)
class GridPoint:
    """Coordinates of one grid point; repeats of a point are averaged together."""

    model: str
    noise_model: str
    noise_rate: float
    train_size: int
    label: str = ""

    def name(self) -> str:
        """Short human-readable name, e.g. 'small_cnn shuffle 20% n=2000'."""
        noise = "clean" if self.noise_rate == 0 else f"{self.noise_model} {self.noise_rate:.0%}"
        text = f"{self.model} {noise} n={self.train_size}"
        return f"{text} [{self.label}]" if self.label else text


def grid_point(replica: Replica) -> GridPoint:
    """The grid point of a replica (clean grid points share the key CLEAN as noise model)."""
    if replica.is_custom:
        label = replica.label or f"custom {replica.replica}"
        return GridPoint(replica.model, replica.noise_model, replica.noise_rate,
                         replica.train_size, label)
    nm = CLEAN if replica.noise_rate == 0 else replica.noise_model
    return GridPoint(replica.model, nm, replica.noise_rate, replica.train_size)


@dataclass(frozen=True)
class PointMetrics:
    """All metrics of one grid point over its finished repeats."""

    point: GridPoint
    replicas: tuple[int, ...]
    counts: np.ndarray  # (n, C, C) counts of each finished repeat
    accuracy: Spread  # (U,) accuracy of each unit (the classes, or clusters)
    overall: Spread  # () overall accuracy
    rates: dict[str, Spread]  # one-vs-rest rates, each (C,); empty for units other than classes
    realized_noise: float
    recorded_noise_model: str  # as replicas.csv records it ('a+b' if the replicas differ)
    unit_tests: np.ndarray  # (U,) test records of each unit behind one repeat (mean over repeats)

    @property
    def mean_confusion(self) -> np.ndarray:
        """Average confusion counts over repeats (C, C)."""
        return self.counts.mean(axis=0)

    @property
    def confusion_rate(self) -> Spread:
        """Spread over repeats of the (C, C) rate matrices (Wilson intervals)."""
        return proportion_spread(self.counts, self.counts.sum(axis=-1, keepdims=True))

    @property
    def test_images(self) -> np.ndarray:
        """Test images of each class behind one repeat (mean over repeats), (C,)."""
        return self.counts.sum(axis=-1).mean(axis=0)


def point_metrics(
    run: Run, point: GridPoint, replicas: Iterable[int], units: Units | None = None
) -> PointMetrics:
    """Metrics of one grid point from its finished replicas: per-unit accuracy from ``units``
    (default: the classes), overall accuracy and, for classes, the one-vs-rest rates from the
    confusion counts (a cluster is a slice of its true class, so only its accuracy is defined)."""
    units = units or class_units(run)
    idx = tuple(sorted(replicas))
    counts = run.counts[list(idx)]
    parts = one_vs_rest_counts(counts) if units.kind == CLASS else {}
    realized = [v for i in idx if math.isfinite(v := run.replicas[i].realized_noise)]
    return PointMetrics(
        point=point,
        replicas=idx,
        counts=counts,
        accuracy=proportion_spread(units.correct[list(idx)], units.tests[list(idx)]),
        overall=proportion_spread(np.trace(counts, axis1=-2, axis2=-1),
                                  counts.sum(axis=(-2, -1))),
        rates={name: proportion_spread(*parts[name]) for name in RATE_NAMES if name in parts},
        realized_noise=float(np.mean(realized)) if realized else math.nan,
        recorded_noise_model="+".join(dict.fromkeys(run.replicas[i].noise_model for i in idx)),
        unit_tests=units.tests[list(idx)].mean(axis=0),
    )


def all_point_metrics(run: Run, units: Units | None = None) -> list[PointMetrics]:
    """Metrics of every grid point that has at least one finished replica, sorted; per-unit
    accuracy of ``units`` (default: the classes)."""
    units = units or class_units(run)
    groups: dict[GridPoint, list[int]] = {}
    for rep in run.finished():
        groups.setdefault(grid_point(rep), []).append(rep.replica)
    return [point_metrics(run, p, idx, units) for p, idx in sorted(groups.items())]


def find_point(
    metrics: list[PointMetrics], model: str, noise_rate: float, train_size: int,
    noise_model: str | None = None,
) -> PointMetrics | None:
    """The (non-custom) grid point with these coordinates, or None."""
    nm = CLEAN if noise_rate == 0 else noise_model
    for pm in metrics:
        p = pm.point
        if (p.model, p.noise_rate, p.train_size, p.label) == (model, noise_rate, train_size, ""):
            if nm is None or p.noise_model == nm:
                return pm
    return None


def baseline(metrics: list[PointMetrics], run: Run, model: str) -> PointMetrics | None:
    """The clean full-data point of a model: noise rate 0 at its largest training size."""
    return find_point(metrics, model, 0.0, run.full_size(model))


def noise_axis(
    metrics: list[PointMetrics], run: Run, model: str, noise_model: str
) -> list[PointMetrics]:
    """Full-size points of a model by rising noise rate (clean point first)."""
    full = run.full_size(model)
    points = [
        pm for pm in metrics
        if pm.point.model == model and pm.point.train_size == full and not pm.point.label
        and pm.point.noise_model in (CLEAN, noise_model)
    ]
    return sorted(points, key=lambda pm: pm.point.noise_rate)


def size_axis(metrics: list[PointMetrics], model: str) -> list[PointMetrics]:
    """Clean points of a model by rising training size."""
    points = [
        pm for pm in metrics
        if pm.point.model == model and pm.point.noise_rate == 0 and not pm.point.label
    ]
    return sorted(points, key=lambda pm: pm.point.train_size)


POINT_COLUMNS = ("model", "noise_model", "noise_rate", "train_size", "label")


def _point_fields(pm: PointMetrics) -> dict[str, Any]:
    """The coordinates of a point as replicas.csv names them (POINT_COLUMNS)."""
    point = pm.point
    return {
        "model": point.model,
        "noise_model": pm.recorded_noise_model,
        "noise_rate": point.noise_rate,
        "train_size": point.train_size,
        "label": point.label,
    }


CLASS_METRIC_COLUMNS = (
    *POINT_COLUMNS, "class", "repeats", "test_images", "interval", "accuracy", "accuracy_std",
    "accuracy_lo", "accuracy_hi", "accuracy_x1000",
    *(f"{name}{suffix}" for name in RATE_NAMES for suffix in ("", "_std", "_lo", "_hi")),
)


def class_metric_rows(metrics: list[PointMetrics], classes: tuple[str, ...]) -> list[dict]:
    """Tidy rows: one per grid point and unit (``classes``: the units' names), accuracy and, for
    classes, the four rates, each with its std over repeats and its 95% interval (``interval``
    names the method, see the module doc)."""
    rows = []
    for pm in metrics:
        acc, tests = pm.accuracy, pm.unit_tests
        for k, cls in enumerate(classes):
            row = _point_fields(pm) | {
                "class": cls,
                "repeats": acc.n,
                "test_images": float(tests[k]),
                "interval": acc.method,
                "accuracy": float(acc.mean[k]),
                "accuracy_std": float(acc.std[k]),
                "accuracy_lo": float(acc.lo[k]),
                "accuracy_hi": float(acc.hi[k]),
                "accuracy_x1000": x1000(acc.mean[k]),
            }
            for name, rate in pm.rates.items():
                row |= {name: float(rate.mean[k]), f"{name}_std": float(rate.std[k]),
                        f"{name}_lo": float(rate.lo[k]), f"{name}_hi": float(rate.hi[k])}
            rows.append(row)
    return rows


def x1000(value: float) -> int | None:
    """Accuracy as the study's 'x 1000' integer (None for NaN)."""
    return None if not np.isfinite(value) else int(round(float(value) * 1000))


OVERALL_COLUMNS = (*POINT_COLUMNS, "repeats", "replicas", "realized_noise", "interval", "accuracy",
                   "accuracy_std", "accuracy_lo", "accuracy_hi", "accuracy_x1000")


def overall_rows(metrics: list[PointMetrics]) -> list[dict]:
    """Tidy rows: overall accuracy of each grid point with spread, 95% interval (method in
    ``interval``) and realized noise."""
    return [
        _point_fields(pm) | {
            "repeats": pm.overall.n,
            "replicas": " ".join(str(i) for i in pm.replicas),
            "interval": pm.overall.method,
            "realized_noise": pm.realized_noise,
            "accuracy": float(pm.overall.mean),
            "accuracy_std": float(pm.overall.std),
            "accuracy_lo": float(pm.overall.lo),
            "accuracy_hi": float(pm.overall.hi),
            "accuracy_x1000": x1000(float(pm.overall.mean)),
        }
        for pm in metrics
    ]


CONFUSION_COLUMNS = (*POINT_COLUMNS, "repeats", "true", "predicted", "count", "rate",
                     "count_diff", "rate_diff")


def confusion_rows(
    pm: PointMetrics, classes: tuple[str, ...], base: PointMetrics | None = None
) -> list[dict]:
    """Tidy rows of a point's average confusion matrix, with the difference from baseline."""
    mean = pm.mean_confusion
    rate = confusion_rates(mean)
    base_mean = base.mean_confusion if base is not None else None
    base_rate = confusion_rates(base_mean) if base_mean is not None else None
    rows = []
    for i, true in enumerate(classes):
        for j, pred in enumerate(classes):
            row = _point_fields(pm) | {
                "repeats": len(pm.replicas), "true": true, "predicted": pred,
                "count": float(mean[i, j]), "rate": float(rate[i, j]),
            }
            if base_mean is not None:
                row["count_diff"] = float(mean[i, j] - base_mean[i, j])
                row["rate_diff"] = float(rate[i, j] - base_rate[i, j])
            rows.append(row)
    return rows


def top_pairs(
    metrics: list[PointMetrics], classes: tuple[str, ...], k: int = 6
) -> list[tuple[int, int]]:
    """The k off-diagonal (true, predicted) pairs with the highest mean rate over the points."""
    if not metrics:
        return []
    rates = np.nanmean([confusion_rates(pm.mean_confusion) for pm in metrics], axis=0)
    np.fill_diagonal(rates, -np.inf)
    order = np.argsort(rates, axis=None)[::-1][:k]
    return [tuple(int(v) for v in np.unravel_index(o, rates.shape)) for o in order]


PAIR_COLUMNS = (*POINT_COLUMNS, "pair", "true", "predicted", "rate", "rate_std", "rate_lo",
                "rate_hi", "interval", "repeats")


def pair_rows(
    points: list[PointMetrics], classes: tuple[str, ...], pairs: list[tuple[int, int]]
) -> list[dict]:
    """Tidy rows: rate of each (true -> predicted) pair at each point, with spread and a 95%
    Wilson interval (see the module doc)."""
    rows = []
    for pm in points:
        totals = pm.counts.sum(axis=-1)
        for i, j in pairs:
            s = proportion_spread(pm.counts[:, i, j], totals[:, i])
            rows.append(_point_fields(pm) | {
                "pair": f"{classes[i]}->{classes[j]}", "true": classes[i],
                "predicted": classes[j], "rate": float(s.mean), "rate_std": float(s.std),
                "rate_lo": float(s.lo), "rate_hi": float(s.hi), "interval": s.method,
                "repeats": s.n,
            })
    return rows


def pair_asymmetry(counts: np.ndarray, i: int, j: int) -> dict[str, Spread]:
    """Asymmetry of i->j vs j->i over repeats: rate difference and log rate ratio.

    The log ratio uses a +0.5 count (and +1 total) correction so empty cells stay finite.
    """
    counts = np.asarray(counts, dtype=float)
    rows = counts.sum(axis=-1)
    r_ij = _divide(counts[:, i, j], rows[:, i])
    r_ji = _divide(counts[:, j, i], rows[:, j])
    log_ij = np.log((counts[:, i, j] + 0.5) / (rows[:, i] + 1.0))
    log_ji = np.log((counts[:, j, i] + 0.5) / (rows[:, j] + 1.0))
    return {"diff": spread(r_ij - r_ji), "log_ratio": spread(log_ij - log_ji),
            "rate_ij": spread(r_ij), "rate_ji": spread(r_ji)}


ASYMMETRY_COLUMNS = (*POINT_COLUMNS, "pair", "reverse", "rate", "reverse_rate", "diff", "diff_lo",
                     "diff_hi", "log_ratio", "log_ratio_lo", "log_ratio_hi", "ratio", "n",
                     "repeats")


def asymmetry_rows(pm: PointMetrics, classes: tuple[str, ...], k: int | None = 10) -> list[dict]:
    """Every unordered class pair at a point, oriented so i->j is the larger, by |difference|."""
    rows = []
    c = len(classes)
    for i in range(c):
        for j in range(i + 1, c):
            asym = pair_asymmetry(pm.counts, i, j)
            if asym["diff"].mean < 0:
                i2, j2, asym = j, i, pair_asymmetry(pm.counts, j, i)
            else:
                i2, j2 = i, j
            rows.append(_asymmetry_row(pm, classes, i2, j2, asym))
    rows.sort(key=lambda r: -abs(r["diff"]))
    return rows if k is None else rows[:k]


def _asymmetry_row(pm: PointMetrics, classes, i: int, j: int, asym: dict[str, Spread]) -> dict:
    d, lr = asym["diff"], asym["log_ratio"]
    return _point_fields(pm) | {
        "pair": f"{classes[i]}->{classes[j]}", "reverse": f"{classes[j]}->{classes[i]}",
        "rate": float(asym["rate_ij"].mean), "reverse_rate": float(asym["rate_ji"].mean),
        "diff": float(d.mean), "diff_lo": float(d.lo), "diff_hi": float(d.hi),
        "log_ratio": float(lr.mean), "log_ratio_lo": float(lr.lo), "log_ratio_hi": float(lr.hi),
        "ratio": float(np.exp(lr.mean)), "n": d.n, "repeats": d.n,
    }


def ranks(accuracy: np.ndarray) -> np.ndarray:
    """Rank of each class, 1 = least accurate (the study's order); ties by class order."""
    order = np.argsort(np.asarray(accuracy, float), kind="stable")
    out = np.empty(len(order), dtype=int)
    out[order] = np.arange(1, len(order) + 1)
    return out


def ranking_conditions(
    metrics: list[PointMetrics], run: Run, model: str, noise_model: str
) -> list[tuple[str, PointMetrics]]:
    """The study's three conditions found in the run: baseline, highest noise, smallest size."""
    out = []
    base = baseline(metrics, run, model)
    if base is not None:
        out.append(("baseline", base))
    noisy = [pm for pm in noise_axis(metrics, run, model, noise_model) if pm.point.noise_rate > 0]
    if noisy:
        top = max(noisy, key=lambda pm: pm.point.noise_rate)
        out.append((f"noise {top.point.noise_rate:.0%}", top))
    small = [pm for pm in size_axis(metrics, model) if pm.point.train_size < run.full_size(model)]
    if small:
        out.append((f"size {small[0].point.train_size}", small[0]))
    return out


def ranking_columns(conditions: list[tuple[str, PointMetrics]]) -> tuple[str, ...]:
    """The columns of ``ranking_rows``: accuracy, repeats, rank and (after the first) rank
    change of each condition."""
    per_condition = [(f"{name} acc_x1000", f"{name} repeats", f"{name} rank",
                      *((f"{name} change",) if i else ()))
                     for i, (name, _) in enumerate(conditions)]
    return ("class", *(c for cols in per_condition for c in cols), "total_move")


def ranking_rows(
    conditions: list[tuple[str, PointMetrics]], classes: tuple[str, ...]
) -> list[dict]:
    """One row per class: accuracy, repeats and rank (of the mean accuracies) in each
    condition, and the rank change vs the first.

    A negative change means the class moved toward the least accurate end.
    """
    if not conditions:
        return []
    table = {name: (pm.accuracy.mean, ranks(pm.accuracy.mean), pm.accuracy.n)
             for name, pm in conditions}
    ref_rank = table[conditions[0][0]][1]
    rows = []
    for k, cls in enumerate(classes):
        row: dict[str, Any] = {"class": cls}
        moves = []
        for name, (acc, rk, repeats) in table.items():
            row[f"{name} acc_x1000"] = x1000(acc[k])
            row[f"{name} repeats"] = repeats
            row[f"{name} rank"] = int(rk[k])
            if name != conditions[0][0]:
                row[f"{name} change"] = int(rk[k] - ref_rank[k])
                moves.append(abs(int(rk[k] - ref_rank[k])))
        row["total_move"] = int(sum(moves))
        rows.append(row)
    return rows


MIN_REPEATS = 2  # a ranking claim needs a spread to compare against


def movers_evidence(conditions: list[tuple[str, PointMetrics]]) -> str:
    """Why rank moves cannot be claimed ('' when they can): every condition needs at least
    MIN_REPEATS finished repeats."""
    thin = [f"{name} ({pm.accuracy.n})" for name, pm in conditions
            if pm.accuracy.n < MIN_REPEATS]
    if not thin:
        return ""
    return (f"too few repeats at {', '.join(thin)}; a rank move needs at least {MIN_REPEATS} "
            "repeats in every condition")


def rank_range(acc: Spread) -> tuple[np.ndarray, np.ndarray]:
    """The ranks (1 = least accurate) each class could hold given the 95% intervals: above
    every class whose interval lies entirely below its own, below every class entirely above."""
    lo, hi = np.asarray(acc.lo, float), np.asarray(acc.hi, float)
    below = (hi[None, :] < lo[:, None]).sum(axis=1)  # classes clearly less accurate
    above = (lo[None, :] > hi[:, None]).sum(axis=1)  # classes clearly more accurate
    return below + 1, len(lo) - above


def firm_movers(conditions: list[tuple[str, PointMetrics]], classes: tuple[str, ...]) -> list[str]:
    """Classes whose possible ranks (``rank_range``) in some condition do not overlap those in
    the first: a rank move beyond the intervals. Empty with fewer than two conditions."""
    if len(conditions) < 2:
        return []
    ref_lo, ref_hi = rank_range(conditions[0][1].accuracy)
    moved = np.zeros(len(classes), dtype=bool)
    for _, pm in conditions[1:]:
        lo, hi = rank_range(pm.accuracy)
        moved |= (lo > ref_hi) | (hi < ref_lo)
    return [cls for cls, m in zip(classes, moved) if m]


def biggest_movers(rows: list[dict], k: int = 3) -> list[str]:
    """Classes whose rank moves most in total across conditions (ties broken by class order)."""
    moving = [r for r in rows if r.get("total_move", 0) > 0]
    moving.sort(key=lambda r: -r["total_move"])
    return [r["class"] for r in moving[:k]]


def bump_rows(
    metrics: list[PointMetrics], run: Run, model: str, noise_model: str, classes: tuple[str, ...]
) -> list[dict]:
    """Rank of each class along sizes (rising) then noise (rising): the bump chart's data."""
    sizes = size_axis(metrics, model)
    noisy = [pm for pm in noise_axis(metrics, run, model, noise_model) if pm.point.noise_rate > 0]
    rows = []
    for order, pm in enumerate(sizes + noisy):
        p = pm.point
        name = f"n={p.train_size}" if p.noise_rate == 0 else f"noise {p.noise_rate:.0%}"
        if p.noise_rate == 0 and p.train_size == run.full_size(model):
            name = f"baseline n={p.train_size}"
        rk = ranks(pm.accuracy.mean)
        rows += [
            {"condition": name, "order": order, "class": cls, "rank": int(rk[k]),
             "accuracy": float(pm.accuracy.mean[k])}
            for k, cls in enumerate(classes)
        ]
    return rows


LABEL_NOISE_COLUMNS = (*POINT_COLUMNS, "class", "realized_noise", "realized_noise_std", "repeats")


def label_noise_rows(run: Run, metrics: list[PointMetrics]) -> list[dict]:
    """Realized label noise of each class at each point (share of its training labels that the
    corruption moved to another class), from the run's transition counts; [] if not recorded."""
    if run.transitions is None:
        return []
    rows = []
    for pm in metrics:
        moved = 1.0 - np.diagonal(confusion_rates(run.transitions[list(pm.replicas)]),
                                  axis1=-2, axis2=-1)
        s = spread(moved)
        rows += [
            _point_fields(pm) | {"class": cls, "realized_noise": float(s.mean[k]),
                                 "realized_noise_std": float(s.std[k]), "repeats": s.n}
            for k, cls in enumerate(run.classes)
        ]
    return rows
