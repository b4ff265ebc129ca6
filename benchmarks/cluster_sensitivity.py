"""Does sensitivity to label noise and volume vary within classes, and does a per-cluster budget
plan measure better than the per-class plan at the same budget?

Scale (``SCALES``): the synthetic data with built-in sub-classes (``make_synthetic_subclasses``), 3,000
training and 3,000 test images of 16 px, 10 epochs; CIFAR-10, a stratified 2,500-image training subset
and the first 2,000 test images, 3 epochs; both ``small_cnn`` width 16, noise 0/0.2/0.4 at full size
and clean sizes 1/4, 1/2 and 1 of the set, 2 repeats.

For each dataset, a small noise x volume grid is trained (``labelsim train``), its records are
clustered within each class (``labelsim clusters --k``, 3 clusters per class) and analysed per
cluster (``labelsim analyze --by cluster``). From every replica's test predictions:

- per unit (class, cluster, or built-in sub-class), the noise slope (accuracy points lost per unit
  of noise rate, full-size replicas) and the volume slope (points gained per doubling of the clean
  training set);
- the within-class spread: the pooled SD of the clusters' slopes around their class's mean, against
  the between-class spread: the SD of the class slopes. Intervals: 95% basic (reverse percentile)
  bootstrap over test records, resampled within each cluster (an SD of noisy slopes is biased
  upwards; the basic interval corrects for it). What test-record sampling alone gives: the
  within-class SD of clusters drawn at random inside each class (same sizes; 200 permutations, mean
  and 95% quantile);
- reproducibility: the correlation of the clusters' within-class deviations measured on repeat 0
  with half of the test records against repeat 1 with the other half (independent training runs and
  test records: a correlation near 0 means the within-class differences are noise); the same for
  the classes' deviations from the mean of all classes, as the reference of a real difference.

On the synthetic data with built-in sub-classes, the clusters are compared with the sub-classes
(adjusted Rand index) and the same figures are computed with the true sub-classes as units.

Then budget questions: the optimized per-class plan (``budget``) and the optimized per-cluster plan
(``budget --by cluster``, cluster weights = their share of their class's test records, so both
maximise the mean per-class accuracy) are trained on the same repeats as ``budget --simulate`` trains
them (per-class replicas; per-cluster replicas with the clusters as their grouping), and their
measured test accuracy is compared, paired by repeat (same initialization and batch order).

    python benchmarks/cluster_sensitivity.py            # both datasets: about 45 minutes on 2 CPU cores
    python benchmarks/cluster_sensitivity.py --only synthetic-sub

CIFAR-10 is read from LABELSIM_CIFAR10_DIR (or --cifar10-dir). Runs go to --work and are reused
when finished (resumed when not); the results go to benchmarks/results/cluster_sensitivity.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from common import print_table, save_json  # noqa: E402
from labelsim.__main__ import main as labelsim_main  # noqa: E402
from labelsim.analysis.budget import BudgetError, Tier, load_context, plan_budget, run_problem  # noqa: E402
from labelsim.analysis.budget.problem import DEFAULT_MAX_RATIO  # noqa: E402
from labelsim.analysis.budget.simulation import custom_specs  # noqa: E402
from labelsim.analysis.by_cluster import GROUPING, cluster_context, cluster_groupings, read_clusters  # noqa: E402
from labelsim.config import RunConfig  # noqa: E402
from labelsim.rundir import load_run  # noqa: E402
from labelsim.rundir.predictions import read_test_predictions  # noqa: E402

NAME = "cluster_sensitivity"
SYNTHETIC, CIFAR10 = "synthetic-sub", "cifar10"
PER_CLASS = 3  # clusters per class: clusters --k 3 * classes
NOISE = (0.0, 0.2, 0.4)
TIERS = (Tier("crowd", 0.01, 0.30), Tier("expert", 0.04, 0.03))
BOOT, PERMUTATIONS = 500, 200


@dataclasses.dataclass(frozen=True)
class Scale:
    """One dataset's size and recipe."""

    train: int
    test: int
    size: int
    epochs: int
    budgets: tuple[float, ...]  # as multiples of all-crowd labels for every training record


SCALES = {
    SYNTHETIC: Scale(train=3000, test=3000, size=16, epochs=10, budgets=(0.5, 1.5)),
    CIFAR10: Scale(train=2500, test=2000, size=32, epochs=3, budgets=(0.75,)),
}


# ------------------------------------------------------------------ data and runs


def write_data(name: str, scale: Scale, folder: Path, cifar10_dir: Path | None) -> tuple[Path, np.ndarray | None]:
    """The dataset as an npz file (and, for the synthetic data, the true sub-class of every record:
    training records first, then test)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data.npz"
    truth = folder / "subclasses.npy"
    if name == SYNTHETIC:
        from labelsim.sim.data.synthetic import make_synthetic_subclasses

        made = make_synthetic_subclasses(scale.train, scale.test, scale.size, seed=0)
        ds = made.dataset
        if not data.exists():
            np.save(truth, np.concatenate([made.train_subclass, made.test_subclass]))
            _save_npz(data, ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.class_names)
        return data, np.load(truth)
    if not data.exists():
        from labelsim.sim.data import load_cifar10_local

        if cifar10_dir is None:
            raise SystemExit("CIFAR-10 not found: set LABELSIM_CIFAR10_DIR or pass --cifar10-dir")
        ds = load_cifar10_local(cifar10_dir)
        rng = np.random.default_rng(0)
        per_class = scale.train // ds.num_classes
        keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(ds.y_train == k), per_class, replace=False)
                                       for k in range(ds.num_classes)]))
        _save_npz(data, ds.x_train[keep], ds.y_train[keep], ds.x_test[: scale.test], ds.y_test[: scale.test],
                  ds.class_names)
    return data, None


def _save_npz(path: Path, x_train, y_train, x_test, y_test, names) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=np.array(names))
    tmp.replace(path)


def _cli(argv: list[str]) -> None:
    """A labelsim command in this process; its printed tables are kept out of the benchmark's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        code = labelsim_main(argv)
    if code != 0:
        raise SystemExit(f"labelsim {' '.join(argv)} exited with {code}")


def _finished(run: Path) -> bool:
    meta = run / "run.json"
    return meta.exists() and json.loads(meta.read_text()).get("status") == "finished"


def train_grid(data: Path, scale: Scale, run: Path, repeats: int) -> float:
    """Train (or resume, or reuse) the noise x volume grid; seconds spent."""
    if _finished(run):
        return 0.0
    start = time.monotonic()
    sizes = f"{scale.train // 4},{scale.train // 2}"
    argv = ["train", "--dataset", f"npz:{data}", "--model", "small_cnn", "--width", "16", "--epochs",
            str(scale.epochs), "--noise", ",".join(map(str, NOISE)), "--sizes", sizes, "--repeats", str(repeats),
            "--out", str(run), "--no-progress"]
    _cli(argv + (["--resume"] if (run / "run.json").exists() else []))
    return time.monotonic() - start


def make_clusters(run: Path, num_classes: int) -> float:
    """clusters --k (3 per class, within class) and analyze --by cluster; seconds spent."""
    start = time.monotonic()
    if not (run / "clusters.npz").exists():
        _cli(["clusters", str(run), "--k", str(PER_CLASS * num_classes)])
    if not (run / "analysis" / "by_cluster" / "fits_noise.csv").exists():
        _cli(["analyze", str(run), "--by", "cluster"])
    return time.monotonic() - start


# ------------------------------------------------------------------ slopes and spreads


@dataclasses.dataclass(frozen=True)
class Grid:
    """What the slopes need: each record's correctness per replica, and the replicas' coordinates."""

    correct: np.ndarray  # (R, M) bool: replica r got test record m right
    noise_rows: np.ndarray  # replica indices of the full-size noise grid
    noise_rate: np.ndarray  # their nominal noise rates
    volume_rows: np.ndarray  # replica indices of the clean replicas at every size
    log2_size: np.ndarray  # their log2 training sizes
    repeat: np.ndarray  # (R,) repeat of every replica


def read_grid(run_dir: Path, y_test: np.ndarray) -> Grid:
    """Correctness of every finished replica on every test record, from RUN/test_predictions.npy."""
    run = load_run(run_dir)
    predictions = read_test_predictions(run.path)
    finished = [r for r in run.finished() if not r.is_custom]
    full = max(r.train_size for r in finished)
    noise = [r for r in finished if r.train_size == full]
    clean = [r for r in finished if r.noise_rate == 0]
    return Grid(
        correct=predictions.astype(np.int64) == y_test[None, :],
        noise_rows=np.array([r.replica for r in noise]), noise_rate=np.array([r.noise_rate for r in noise]),
        volume_rows=np.array([r.replica for r in clean]), log2_size=np.log2([r.train_size for r in clean]),
        repeat=np.array([r.repeat for r in run.replicas]),
    )


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of y (points, ...) on x (points,), along the first axis."""
    xc = x - x.mean()
    return np.tensordot(xc, y - y.mean(axis=0), axes=(0, 0)) / float(xc @ xc)


def unit_slopes(grid: Grid, onehot: np.ndarray, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Noise slope (points lost per unit noise rate) and volume slope (points per doubling) of every
    unit; ``onehot`` (M, U[, B]) weighs the test records of each unit (a bootstrap draw: counts)."""
    keep = np.ones(len(grid.repeat), bool) if rows is None else np.isin(np.arange(len(grid.repeat)), rows)
    out = {}
    for key, idx, x, sign in (("noise", grid.noise_rows, grid.noise_rate, -1.0),
                              ("volume", grid.volume_rows, grid.log2_size, 1.0)):
        mask = keep[idx]
        hits = np.tensordot(grid.correct[idx[mask]].astype(float), onehot, axes=(1, 0))
        acc = hits / np.maximum(onehot.sum(axis=0), 1e-12)
        out[key] = sign * 100.0 * _slope(x[mask], acc)
    return out


def spreads(slopes: np.ndarray, class_slopes: np.ndarray, class_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled within-class SD of unit slopes around their class mean, SD of the class slopes), along
    the first axis (units / classes), for every trailing draw."""
    classes = np.unique(class_of)
    squares, dof = 0.0, 0
    for k in classes:
        part = slopes[class_of == k]
        if len(part) > 1:
            squares = squares + ((part - part.mean(axis=0)) ** 2).sum(axis=0)
            dof += len(part) - 1
    return np.sqrt(squares / dof), class_slopes.std(axis=0, ddof=1)


def decomposition(grid: Grid, unit_test: np.ndarray, class_of: np.ndarray, y_test: np.ndarray,
                  rng: np.random.Generator) -> dict[str, Any]:
    """Within- against between-class spread of the noise and volume slopes, with their intervals, the
    spread test-record sampling alone gives, and the split-half reproducibility of the deviations."""
    n_units, n_classes = len(class_of), int(y_test.max()) + 1
    onehot = np.eye(n_units)[unit_test]
    class_onehot = np.eye(n_classes)[y_test]
    observed = unit_slopes(grid, onehot)
    classes = unit_slopes(grid, class_onehot)
    # bootstrap: test records resampled within each unit (the class figures pool the same draws)
    weights = np.zeros((len(unit_test), BOOT))
    for u in range(n_units):
        members = np.flatnonzero(unit_test == u)
        draws = rng.integers(0, len(members), size=(len(members), BOOT))
        np.add.at(weights, (members[draws], np.arange(BOOT)[None, :]), 1.0)
    boot = unit_slopes(grid, onehot[:, :, None] * weights[:, None, :])
    boot_classes = unit_slopes(grid, class_onehot[:, :, None] * weights[:, None, :])
    # null: units drawn at random within each class, same sizes
    null = {"noise": [], "volume": []}
    for _ in range(PERMUTATIONS):
        shuffled = unit_test.copy()
        for k in range(n_classes):
            members = np.flatnonzero(y_test == k)
            shuffled[members] = rng.permutation(unit_test[members])
        permuted = unit_slopes(grid, np.eye(n_units)[shuffled])
        for key in null:
            null[key].append(spreads(permuted[key], classes[key], class_of)[0])
    halves = _split_half(grid, unit_test, class_of, rng)
    class_halves = _split_half(grid, y_test, np.zeros(n_classes, np.int64), rng)
    out: dict[str, Any] = {}
    for key in ("noise", "volume"):
        within, between = spreads(observed[key], classes[key], class_of)
        b_within, b_between = spreads(boot[key], boot_classes[key], class_of)
        out[key] = {
            "within_sd": float(within), "within_ci": _ci(within, b_within),
            "between_sd": float(between), "between_ci": _ci(between, b_between),
            "ratio": float(within / between), "ratio_ci": _ci(within / between, b_within / b_between),
            "null_within_mean": float(np.mean(null[key])), "null_within_q95": float(np.quantile(null[key], 0.95)),
            "split_half_r": halves[key], "class_split_half_r": class_halves[key],
            "unit_slopes": observed[key].tolist(), "class_slopes": classes[key].tolist(),
        }
    return out


def _split_half(grid: Grid, unit_test: np.ndarray, class_of: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Correlation of the units' within-class deviations from repeat 0 on half of the test records
    with those from repeat 1 on the other half."""
    half = np.zeros(len(unit_test), bool)
    for u in np.unique(unit_test):
        members = rng.permutation(np.flatnonzero(unit_test == u))
        half[members[: len(members) // 2]] = True
    n_units = len(class_of)
    parts = []
    for repeat, side in ((0, half), (1, ~half)):
        onehot = np.eye(n_units)[unit_test] * side[:, None]
        parts.append(unit_slopes(grid, onehot, rows=np.flatnonzero(grid.repeat == repeat)))
    out = {}
    for key in ("noise", "volume"):
        devs = []
        for slopes in (parts[0][key], parts[1][key]):
            dev = slopes.copy()
            for k in np.unique(class_of):
                dev[class_of == k] -= slopes[class_of == k].mean()
            devs.append(dev)
        out[key] = float(np.corrcoef(devs[0], devs[1])[0, 1])
    return out


def _ci(estimate: float, draws: np.ndarray) -> list[float]:
    """95% basic bootstrap interval: the estimate minus the draws' deviations from it."""
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return [float(max(2 * estimate - hi, 0.0)), float(2 * estimate - lo)]


# ------------------------------------------------------------------ budget plans


def budget_questions(run: Path, scale: Scale, y_test: np.ndarray, work: Path, repeats: int) -> tuple[list[dict], float]:
    """The optimized per-class and per-cluster plans of each budget, trained on the same repeats;
    rows with their predictions, measured accuracies and the paired difference; seconds spent."""
    from labelsim.sim.runner import run_grid

    clusters = read_clusters(run)
    class_ctx, cluster_ctx = load_context(run), cluster_context(run)
    in_class = np.bincount(clusters.test, minlength=len(clusters.names))
    of_class = np.bincount(y_test)[clusters.class_of]
    weights = {name: float(n / m) for name, n, m in zip(clusters.names, in_class, of_class)}
    config = RunConfig.from_dict(load_run(run).meta["config"])
    questions, specs = [], []
    for multiple in scale.budgets:
        budget = round(multiple * scale.train * TIERS[0].price, 2)
        try:
            plans, max_ratio = _plans(budget, class_ctx, cluster_ctx, weights, DEFAULT_MAX_RATIO), DEFAULT_MAX_RATIO
        except BudgetError:  # a cluster too small for the default --max-ratio: both ways without the cap
            plans, max_ratio = _plans(budget, class_ctx, cluster_ctx, weights, None), None
        for way, (label, plan, problem) in plans.items():
            specs += custom_specs([(label, plan.labels, plan.class_noise(problem))], config.model.name, repeats,
                                  grouping=GROUPING if way == "cluster" else "")
        questions.append((budget, max_ratio, plans))
    specs = [dataclasses.replace(s, replica=i) for i, s in enumerate(specs)]
    out = work / "budget_sim"
    start = time.monotonic()
    if not _finished(out):
        run_grid(config, out, resume=(out / "run.json").exists(), replicas=specs, progress=False,
                 groupings=cluster_groupings(run))
    seconds = time.monotonic() - start
    sim = load_run(out)
    measured: dict[str, dict[int, float]] = {}
    for rep in sim.finished():
        measured.setdefault(rep.label, {})[rep.repeat] = rep.accuracy
    rows = []
    for budget, max_ratio, plans in questions:
        row: dict[str, Any] = {"budget": budget, "max_ratio": max_ratio}
        for way, (label, plan, problem) in plans.items():
            noise = plan.class_noise(problem)
            row[f"{way}_labels"] = int(plan.labels.sum())
            row[f"{way}_expert_share"] = float(plan.counts[:, 1].sum() / max(plan.labels.sum(), 1))
            row[f"{way}_mean_noise"] = float(np.dot(plan.labels, noise) / max(plan.labels.sum(), 1))
            row[f"{way}_predicted"] = float(plan.objective)
            row[f"{way}_measured"] = [measured.get(label, {}).get(r) for r in range(repeats)]
        diffs = np.array([u - c for u, c in zip(row["cluster_measured"], row["class_measured"])
                          if u is not None and c is not None])
        row["difference"] = float(diffs.mean()) if len(diffs) else None
        row["difference_ci"] = _t_interval(diffs)
        rows.append(row)
    return rows, seconds


def _plans(budget: float, class_ctx: Any, cluster_ctx: Any, weights: dict[str, float],
           max_ratio: float | None) -> dict[str, tuple[str, Any, Any]]:
    """way -> (replica label, optimized plan, problem) of one budget, per class and per cluster."""
    plans = {}
    for way, ctx, w in (("class", class_ctx, None), ("cluster", cluster_ctx, weights)):
        problem = run_problem(ctx, TIERS, budget, weights=w, max_ratio=max_ratio)
        plans[way] = (f"{budget:g}:{way}", plan_budget(problem, points=2).plan, problem)
    return plans


def _t_interval(values: np.ndarray) -> list[float] | None:
    """95% t interval of a mean."""
    from scipy import stats

    if len(values) < 2:
        return None
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return [float(values.mean() - half), float(values.mean() + half)]


# ------------------------------------------------------------------ one dataset


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one dataset."""
    from sklearn.metrics import adjusted_rand_score

    scale = SCALES[name]
    folder = args.work / name
    rng = np.random.default_rng(0)
    data, truth = write_data(name, scale, folder, args.cifar10_dir)
    with np.load(data) as arrays:
        y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
    run = folder / "run"
    seconds = {"train": train_grid(data, scale, run, args.repeats)}
    seconds["clusters_analyze"] = make_clusters(run, int(y_train.max()) + 1)
    clusters = read_clusters(run)
    grid = read_grid(run, y_test)
    result: dict[str, Any] = {
        "dataset": name, "scale": dataclasses.asdict(scale), "repeats": args.repeats, "noise_levels": NOISE,
        "sizes": [scale.train // 4, scale.train // 2, scale.train], "clusters": len(clusters.names),
        "test_records_per_cluster": [int(v) for v in np.bincount(clusters.test).tolist()],
        "clean_full_accuracy": float(grid.correct[grid.noise_rows[grid.noise_rate == 0]].mean()),
        "by_cluster": decomposition(grid, clusters.test, clusters.class_of, y_test, rng),
        "analyze_fits_noise": _analyze_slopes(run),
    }
    if truth is not None:
        train_truth, test_truth = truth[: len(y_train)], truth[len(y_train):]
        per_class = [adjusted_rand_score(train_truth[y_train == k], clusters.train[y_train == k])
                     for k in np.unique(y_train)]
        result["subclass_recovery"] = {
            "ari_train": float(adjusted_rand_score(train_truth, clusters.train)),
            "ari_test": float(adjusted_rand_score(test_truth, clusters.test)),
            "ari_within_class_mean": float(np.mean(per_class)), "ari_within_class": per_class,
            "true_subclasses": int(truth.max()) + 1,
        }
        sub_class_of = np.array([np.bincount(y_train[train_truth == s]).argmax() for s in range(truth.max() + 1)])
        result["by_true_subclass"] = decomposition(grid, test_truth, sub_class_of, y_test, rng)
    if not args.no_budget:
        result["budget"], seconds["budget_sim"] = budget_questions(run, scale, y_test, folder, args.budget_repeats)
    result["seconds_this_invocation"] = seconds
    result["training_wall_seconds"] = {part: _elapsed(folder / part) for part in ("run", "budget_sim")
                                       if (folder / part / "run.json").exists()}
    return result


def _elapsed(run: Path) -> float:
    """Wall seconds from a run's start to its end (run.json), whichever invocation trained it."""
    import datetime as dt

    meta = json.loads((run / "run.json").read_text())
    started, finished = (dt.datetime.fromisoformat(meta[key]) for key in ("started", "finished"))
    return (finished - started).total_seconds()


def _analyze_slopes(run: Path) -> list[dict[str, Any]]:
    """analyze --by cluster's per-cluster noise slopes with their bootstrap intervals (fits_noise.csv)."""
    import csv

    with (run / "analysis" / "by_cluster" / "fits_noise.csv").open(newline="") as handle:
        return [{k: row[k] for k in row if k in ("class", "cluster", "slope", "slope_ci_lo", "slope_ci_hi")}
                for row in csv.DictReader(handle)]


# ------------------------------------------------------------------ output


def spread_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        for units in ("by_cluster", "by_true_subclass"):
            if units not in r:
                continue
            for key in ("noise", "volume"):
                d = r[units][key]
                rows.append({
                    "dataset": r["dataset"], "units": units.removeprefix("by_"), "slope": key,
                    "within_sd": d["within_sd"], "within_ci": _fmt_ci(d["within_ci"]),
                    "null_within": f"{d['null_within_mean']:.2f} (q95 {d['null_within_q95']:.2f})",
                    "between_sd": d["between_sd"], "between_ci": _fmt_ci(d["between_ci"]),
                    "within/between": d["ratio"], "ratio_ci": _fmt_ci(d["ratio_ci"]),
                    "split_half_r": d["split_half_r"], "class_split_half_r": d["class_split_half_r"],
                })
    return rows


def budget_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        for q in r.get("budget", []):
            rows.append({
                "dataset": r["dataset"], "budget": q["budget"], "max_ratio": q["max_ratio"] or "none",
                "class: labels/expert": f"{q['class_labels']}/{q['class_expert_share']:.0%}",
                "cluster: labels/expert": f"{q['cluster_labels']}/{q['cluster_expert_share']:.0%}",
                "class pred": 100 * q["class_predicted"], "cluster pred": 100 * q["cluster_predicted"],
                "class meas": _fmt_runs(q["class_measured"]), "cluster meas": _fmt_runs(q["cluster_measured"]),
                "cluster-class": None if q["difference"] is None else 100 * q["difference"],
                "95% CI": _fmt_ci([100 * v for v in q["difference_ci"]]) if q["difference_ci"] else "",
            })
    return rows


def _fmt_ci(ci: list[float]) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _fmt_runs(values: list[float | None]) -> str:
    return " ".join("-" if v is None else f"{100 * v:.1f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/cluster_sensitivity"), help="where the runs go")
    parser.add_argument("--only", choices=(SYNTHETIC, CIFAR10), help="one dataset only")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the grid (2: the split-half check)")
    parser.add_argument("--budget-repeats", type=int, default=3, help="repeats per budget plan")
    parser.add_argument("--no-budget", action="store_true", help="skip the budget plans")
    parser.add_argument("--cifar10-dir", type=Path,
                        default=Path(os.environ["LABELSIM_CIFAR10_DIR"]) if os.environ.get("LABELSIM_CIFAR10_DIR")
                        else None)
    args = parser.parse_args(argv)
    results, started = [], time.monotonic()
    cpu_start = time.process_time()
    for name in (args.only,) if args.only else (SYNTHETIC, CIFAR10):
        results.append(measure(name, args))
        print(f"{name}: done after {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    summary = {"wall_seconds": time.monotonic() - started, "cpu_seconds": time.process_time() - cpu_start}
    rows = spread_rows(results)
    print("Spread of slopes (noise: points lost per unit noise rate; volume: points per doubling of the set)")
    print_table(rows, list(rows[0]))
    recovery = [{"dataset": r["dataset"], **{k: v for k, v in r["subclass_recovery"].items()
                                             if k != "ari_within_class"}}
                for r in results if "subclass_recovery" in r]
    if recovery:
        print("\nClusters against the built-in sub-classes (adjusted Rand index)")
        print_table(recovery, list(recovery[0]))
    plans = budget_rows(results)
    if plans:
        print("\nOptimized per-class vs per-cluster plan, measured test accuracy (%) per repeat")
        print_table(plans, list(plans[0]))
    path = save_json(NAME, {"settings": {k: str(v) for k, v in vars(args).items()}, "tiers": [
        dataclasses.asdict(t) for t in TIERS], "summary": summary, "results": results})
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
