"""Per-class metrics derived from confusion counts, grouped by grid point, with their spread.

Everything here is derived from counts (rows = true class, columns = predicted class):
evaluation returns counts, never rates. Only finished replicas enter any average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from scipy import stats

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


def one_vs_rest(counts: np.ndarray) -> dict[str, np.ndarray]:
    """True/false positive/negative rates of each class, one class against the rest.

    ``counts`` is (..., C, C); each returned array is (..., C). ``tpr`` is the per-class
    accuracy (recall): correct predictions of the class over its test images.
    """
    counts = np.asarray(counts, dtype=float)
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    fn = counts.sum(axis=-1) - tp
    fp = counts.sum(axis=-2) - tp
    tn = counts.sum(axis=(-2, -1))[..., None] - tp - fn - fp
    return {
        "tpr": _divide(tp, tp + fn),
        "fnr": _divide(fn, tp + fn),
        "fpr": _divide(fp, fp + tn),
        "tnr": _divide(tn, fp + tn),
    }


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


@dataclass(frozen=True)
class Spread:
    """Mean over repeats with sample std and a 95% t-interval of the mean (NaN if n < 2)."""

    mean: np.ndarray
    std: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int


def spread(values: np.ndarray, axis: int = 0) -> Spread:
    """Mean, std and 95% interval of the mean of ``values`` along ``axis`` (the repeats)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    mean = values.mean(axis=axis) if n else np.full(np.delete(values.shape, axis), np.nan)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return Spread(mean, nan, nan, nan, n)
    std = values.std(axis=axis, ddof=1)
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
    return Spread(mean, std, mean - half, mean + half, n)


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
    accuracy: Spread  # (C,) per-class accuracy
    overall: Spread  # () overall accuracy
    rates: dict[str, Spread]  # one-vs-rest rates, each (C,)
    realized_noise: float
    recorded_noise_model: str  # as replicas.csv records it ('a+b' if the replicas differ)

    @property
    def mean_confusion(self) -> np.ndarray:
        """Average confusion counts over repeats (C, C)."""
        return self.counts.mean(axis=0)

    @property
    def confusion_rate(self) -> Spread:
        """Spread over repeats of the (C, C) rate matrices."""
        return spread(confusion_rates(self.counts))


def point_metrics(run: Run, point: GridPoint, replicas: Iterable[int]) -> PointMetrics:
    """Metrics of one grid point from the counts of its finished replicas."""
    idx = tuple(sorted(replicas))
    counts = run.counts[list(idx)]
    rates = one_vs_rest(counts)
    realized = [v for i in idx if math.isfinite(v := run.replicas[i].realized_noise)]
    return PointMetrics(
        point=point,
        replicas=idx,
        counts=counts,
        accuracy=spread(rates["tpr"]),
        overall=spread(overall_accuracy(counts)),
        rates={name: spread(rates[name]) for name in RATE_NAMES},
        realized_noise=float(np.mean(realized)) if realized else math.nan,
        recorded_noise_model="+".join(dict.fromkeys(run.replicas[i].noise_model for i in idx)),
    )


def all_point_metrics(run: Run) -> list[PointMetrics]:
    """Metrics of every grid point that has at least one finished replica, sorted."""
    groups: dict[GridPoint, list[int]] = {}
    for rep in run.finished():
        groups.setdefault(grid_point(rep), []).append(rep.replica)
    return [point_metrics(run, p, idx) for p, idx in sorted(groups.items())]


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
    *POINT_COLUMNS, "class", "n", "accuracy", "accuracy_std", "accuracy_lo", "accuracy_hi",
    "accuracy_x1000", *(f"{name}{suffix}" for name in RATE_NAMES for suffix in ("", "_std")),
)


def class_metric_rows(metrics: list[PointMetrics], classes: tuple[str, ...]) -> list[dict]:
    """Tidy rows: one per grid point and class, accuracy with spread and the four rates."""
    rows = []
    for pm in metrics:
        for k, cls in enumerate(classes):
            acc = pm.accuracy
            row = _point_fields(pm) | {
                "class": cls,
                "n": pm.accuracy.n,
                "accuracy": float(acc.mean[k]),
                "accuracy_std": float(acc.std[k]),
                "accuracy_lo": float(acc.lo[k]),
                "accuracy_hi": float(acc.hi[k]),
                "accuracy_x1000": x1000(acc.mean[k]),
            }
            for name in RATE_NAMES:
                row[name] = float(pm.rates[name].mean[k])
                row[f"{name}_std"] = float(pm.rates[name].std[k])
            rows.append(row)
    return rows


def x1000(value: float) -> int | None:
    """Accuracy as the study's 'x 1000' integer (None for NaN)."""
    return None if not np.isfinite(value) else int(round(float(value) * 1000))


OVERALL_COLUMNS = (*POINT_COLUMNS, "n", "replicas", "realized_noise", "accuracy", "accuracy_std",
                   "accuracy_lo", "accuracy_hi", "accuracy_x1000")


def overall_rows(metrics: list[PointMetrics]) -> list[dict]:
    """Tidy rows: overall accuracy of each grid point with spread and realized noise."""
    return [
        _point_fields(pm) | {
            "n": pm.overall.n,
            "replicas": " ".join(str(i) for i in pm.replicas),
            "realized_noise": pm.realized_noise,
            "accuracy": float(pm.overall.mean),
            "accuracy_std": float(pm.overall.std),
            "accuracy_lo": float(pm.overall.lo),
            "accuracy_hi": float(pm.overall.hi),
            "accuracy_x1000": x1000(float(pm.overall.mean)),
        }
        for pm in metrics
    ]


CONFUSION_COLUMNS = (*POINT_COLUMNS, "true", "predicted", "count", "rate", "count_diff",
                     "rate_diff")


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
                "true": true, "predicted": pred,
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
                "rate_hi", "n")


def pair_rows(
    points: list[PointMetrics], classes: tuple[str, ...], pairs: list[tuple[int, int]]
) -> list[dict]:
    """Tidy rows: rate of each (true -> predicted) pair at each point, with spread."""
    rows = []
    for pm in points:
        per_rep = confusion_rates(pm.counts)
        for i, j in pairs:
            s = spread(per_rep[:, i, j])
            rows.append(_point_fields(pm) | {
                "pair": f"{classes[i]}->{classes[j]}", "true": classes[i],
                "predicted": classes[j], "rate": float(s.mean), "rate_std": float(s.std),
                "rate_lo": float(s.lo), "rate_hi": float(s.hi), "n": s.n,
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
                     "diff_hi", "log_ratio", "log_ratio_lo", "log_ratio_hi", "ratio", "n")


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
        "ratio": float(np.exp(lr.mean)), "n": d.n,
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
    """The columns of ``ranking_rows``: accuracy, rank and (after the first) rank change of each
    condition."""
    per_condition = [(f"{name} acc_x1000", f"{name} rank", *((f"{name} change",) if i else ()))
                     for i, (name, _) in enumerate(conditions)]
    return ("class", *(c for cols in per_condition for c in cols), "total_move")


def ranking_rows(
    conditions: list[tuple[str, PointMetrics]], classes: tuple[str, ...]
) -> list[dict]:
    """One row per class: accuracy and rank in each condition, and the rank change vs the first.

    A negative change means the class moved toward the least accurate end.
    """
    if not conditions:
        return []
    table = {name: (pm.accuracy.mean, ranks(pm.accuracy.mean)) for name, pm in conditions}
    ref_rank = table[conditions[0][0]][1]
    rows = []
    for k, cls in enumerate(classes):
        row: dict[str, Any] = {"class": cls}
        moves = []
        for name, (acc, rk) in table.items():
            row[f"{name} acc_x1000"] = x1000(acc[k])
            row[f"{name} rank"] = int(rk[k])
            if name != conditions[0][0]:
                row[f"{name} change"] = int(rk[k] - ref_rank[k])
                moves.append(abs(int(rk[k] - ref_rank[k])))
        row["total_move"] = int(sum(moves))
        rows.append(row)
    return rows


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


LABEL_NOISE_COLUMNS = (*POINT_COLUMNS, "class", "realized_noise", "realized_noise_std", "n")


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
                                 "realized_noise_std": float(s.std[k]), "n": s.n}
            for k, cls in enumerate(run.classes)
        ]
    return rows
