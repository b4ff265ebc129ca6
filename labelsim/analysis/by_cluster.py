"""Sensitivity by cluster: the run's clusters (RUN/clusters.npz, ``labelsim clusters``) as the units
of analysis, from each replica's test predictions (RUN/test_predictions.npy).

A cluster's accuracy in a replica is its correctly predicted test records over its test records;
the test labels come from the run's dataset (``labelsim.sim.data``), and every finished replica's
predictions are checked against its confusion counts. A cluster is a slice of its true class, so
only recall-type figures are defined for it: accuracy, never a false-positive rate.

Training volume per cluster is an approximation: a replica's training records of a cluster are
its per-class count times the cluster's share of its class's training records (a cluster within
one class), or the replica's training size times the cluster's share of the whole training set (a
cluster across classes). It is exact for the run's full-data replicas and, in expectation, for
its uniformly or class-stratified drawn subsets.

Clusters with fewer than ``min_records`` test records are flagged: their rows carry the reason,
and they enter no ranking and no claim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.analysis.budget.context import RunContext, fitted_context
from labelsim.analysis.clusters import CLUSTERS_FILE, MIN_TEST_RECORDS, Clusters
from labelsim.analysis.units import CLUSTER, Units
from labelsim.config import RunConfig
from labelsim.rundir import Run, RunDirError, load_run
from labelsim.rundir.predictions import PREDICTIONS_FILE, read_test_predictions
from labelsim.sim.data import DataError, load_dataset

SAVED_BUDGET = Path("analysis") / "by_cluster" / "budget.json"  # budget --by cluster's default --save
GROUPING = "clusters"  # the name of a simulated replica's grouping by the run's clusters
MIN_RECORDS = MIN_TEST_RECORDS  # default --min-records: fewer test records give no stable estimate
ACROSS = "(across classes)"
RETRAIN = ("train the run again with this labelsim in a new --out (python run_grid.py ... --out NEW_DIR), "
           "which records them")


def read_clusters(run_dir: str | Path) -> Clusters:
    """RUN/clusters.npz, checked: ids 0..K-1, one class and one name per cluster."""
    file = Path(run_dir) / CLUSTERS_FILE
    if not file.exists():
        raise RunDirError(f"{file} is missing: --by cluster needs the run's clusters; make them with: "
                          f"labelsim clusters {run_dir} --k K")
    try:
        with np.load(file, allow_pickle=False) as data:
            train, test = np.asarray(data["train"]), np.asarray(data["test"])
            class_of, names = np.asarray(data["class_of"]), [str(n) for n in data["names"]]
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    except (OSError, ValueError, KeyError) as err:
        raise RunDirError(f"{file} is unreadable ({err}); make the clusters again with: "
                          f"labelsim clusters {run_dir} --k K") from None
    k = len(class_of)
    if len(names) != k or train.ndim != 1 or test.ndim != 1 or k == 0:
        raise RunDirError(f"{file} is malformed ({k} classes of clusters, {len(names)} names); make "
                          f"the clusters again with: labelsim clusters {run_dir} --k K")
    for split, ids in (("train", train), ("test", test)):
        if ids.size and (ids.min() < 0 or ids.max() >= k):
            raise RunDirError(f"{file}: {split} holds cluster ids outside 0..{k - 1}; make the "
                              f"clusters again with: labelsim clusters {run_dir} --k K")
    return Clusters(train.astype(np.int64), test.astype(np.int64), class_of.astype(np.int64),
                    tuple(names), meta if isinstance(meta, dict) else {})


def dataset_labels(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(y_train, y_test) of the run's dataset, loaded as training loaded it."""
    try:
        data = load_dataset(RunConfig.from_dict(run.meta["config"]).data)
    except DataError as err:
        raise RunDirError(f"--by cluster needs the test labels of {run.path}'s dataset, which "
                          f"cannot be loaded: {err}") from None
    return np.asarray(data.y_train), np.asarray(data.y_test)


def cluster_units(run: Run, min_records: int = MIN_RECORDS, clusters: Clusters | None = None,
                  labels: tuple[np.ndarray, np.ndarray] | None = None) -> Units:
    """The run's clusters as units: correct and total test records per replica and cluster,
    training weights per the module's approximation, and a flag on each cluster with fewer than
    ``min_records`` test records."""
    clusters = clusters or read_clusters(run.path)
    y_train, y_test = labels or dataset_labels(run)
    predictions = _predictions(run, y_test)
    _check_assignment(run, clusters, y_train, y_test)
    k = len(clusters.names)
    finished = [r.replica for r in run.finished()]
    onehot = np.zeros((len(y_test), k))
    onehot[np.arange(len(y_test)), clusters.test] = 1.0
    correct = np.zeros((len(run.replicas), k))
    tests = np.zeros((len(run.replicas), k))
    correct[finished] = (predictions[finished] == y_test[None, :]).astype(float) @ onehot
    tests[finished] = onehot.sum(axis=0)
    train_records = np.bincount(clusters.train, minlength=k).astype(float)
    weights = np.zeros((run.num_classes, k))
    for u, c in enumerate(clusters.class_of.tolist()):
        if c >= 0:
            weights[c, u] = train_records[u] / train_records[clusters.class_of == c].sum()
        else:
            weights[:, u] = train_records[u] / train_records.sum()
    test_records = np.bincount(clusters.test, minlength=k)
    flags = tuple(
        f"{n} test records, fewer than --min-records {min_records}: too few for a stable "
        "estimate; not ranked" if n < min_records else ""
        for n in test_records.tolist())
    return Units(CLUSTER, clusters.names, correct, tests, weights,
                 train_records / train_records.sum(), tuple(clusters.class_of.tolist()), flags)


def _predictions(run: Run, y_test: np.ndarray) -> np.ndarray:
    """The run's test predictions, checked against its test set and, for every finished
    replica, against its confusion counts (the same replicas must have made both)."""
    n_test = len(y_test)
    file = run.path / PREDICTIONS_FILE
    predictions = read_test_predictions(run.path)
    if predictions is None:
        raise RunDirError(f"{file} is missing: --by cluster needs every replica's test predictions, "
                          f"which this run did not record; {RETRAIN}")
    if predictions.shape != (len(run.replicas), n_test):
        raise RunDirError(f"{file} has shape {predictions.shape}, expected ({len(run.replicas)}, "
                          f"{n_test}) (replicas x test records); it belongs to another run: train "
                          "the run again in a new --out")
    finished = [r.replica for r in run.finished()]
    missing = [i for i in finished if (predictions[i] < 0).any()]
    if missing:
        listed = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        raise RunDirError(f"{file} has no predictions for finished replica(s) {listed}: --by cluster "
                          f"needs them; {RETRAIN}")
    predictions = predictions.astype(np.int64)
    c = run.num_classes
    bad = [i for i in finished if not np.array_equal(
        np.bincount(y_test * c + predictions[i], minlength=c * c).reshape(c, c), run.counts[i])]
    if bad:
        raise RunDirError(f"{file} disagrees with the confusion counts of replica(s) "
                          f"{', '.join(map(str, bad[:8]))}: it belongs to another run or dataset; "
                          "train the run again in a new --out")
    return predictions


def _check_assignment(run: Run, clusters: Clusters, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """The assignment covers the run's records, and a cluster within a class holds only that
    class's records."""
    file = run.path / CLUSTERS_FILE
    again = f"make the clusters again with: labelsim clusters {run.path} --k K"
    if len(clusters.train) != len(y_train) or len(clusters.test) != len(y_test):
        raise RunDirError(f"{file} assigns {len(clusters.train)} training and {len(clusters.test)} "
                          f"test records; the run's dataset has {len(y_train)} and {len(y_test)}: {again}")
    if clusters.class_of.max() >= run.num_classes:
        raise RunDirError(f"{file}: class_of names classes beyond the run's {run.num_classes}: {again}")
    for split, ids, y in (("training", clusters.train, y_train), ("test", clusters.test, y_test)):
        owner = clusters.class_of[ids]
        wrong = (owner >= 0) & (owner != y)
        if wrong.any():
            u = int(ids[np.argmax(wrong)])
            raise RunDirError(f"{file}: cluster {clusters.names[u]} belongs to class "
                              f"{run.classes[clusters.class_of[u]]} but holds {split} records of "
                              f"other classes: {again}")


# ---------------------------------------------------------------- output


ACCURACY_ONLY = ("a cluster is a slice of its true class, so only its accuracy (recall) is "
                 "defined: no TPR/FPR tables, confusions or asymmetries per cluster")


def renamed(value: Any) -> Any:
    """Rows and JSON of the shared per-unit code with cluster words: 'class' -> 'cluster',
    'classes' -> 'clusters', 'per_class' -> 'per_cluster' in keys (values are kept)."""
    if isinstance(value, dict):
        return {cluster_key(k): renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v) for v in value]
    return value


def cluster_key(key: Any) -> Any:
    """A column or JSON key of the shared per-unit code in cluster words."""
    if not isinstance(key, str):
        return key
    return {"class": "cluster", "classes": "clusters"}.get(key, key.replace("per_class", "per_cluster"))


INFO_COLUMNS = ("class", "test_records", "train_share", "ranked", "reason")


def cluster_info(run: Run, units: Units) -> list[dict]:
    """One row per cluster: its class, test records, share of the training set, and whether it
    is ranked (with the reason when not)."""
    tests = units.tests.max(axis=0)
    return [
        {"cluster": name, "class": run.classes[c] if c >= 0 else ACROSS,
         "test_records": int(tests[k]), "train_share": float(units.shares[k]),
         "ranked": not units.flags[k], "reason": units.flags[k]}
        for k, (name, c) in enumerate(zip(units.names, units.class_of))
    ]


def flagged_note(units: Units) -> str:
    """One line on the clusters left out of rankings ('' when none is)."""
    flagged = [n for n, f in zip(units.names, units.flags) if f]
    if not flagged:
        return ""
    shown = ", ".join(flagged[:12]) + (f" and {len(flagged) - 12} more" if len(flagged) > 12 else "")
    return (f"{len(flagged)} cluster(s) flagged, shown with their reason and left out of every "
            f"ranking and claim: {shown}")


# ---------------------------------------------------------------- budget


def cluster_context(run_dir: Path) -> RunContext:
    """The budget question with the run's clusters as units: each cluster's curve from the same
    fits as ``analyze --by cluster`` (noise axis read as a fraction of wrong labels, as for
    classes) and its training records as the images available to label. Every cluster is
    planned, flagged ones too: their labels have to be bought like any other."""
    run = load_run(run_dir)
    clusters = read_clusters(run.path)
    units = cluster_units(run, clusters=clusters)
    available = np.bincount(clusters.train, minlength=len(clusters.names))
    return fitted_context(run, units.names, available, units=units)


def simulate_refusal(flag: str) -> str:
    """Why ``flag`` cannot go with --by cluster yet, and what to do."""
    return (f"{flag} --by cluster is not supported yet (--simulate alone trains per-cluster plans); "
            f"plan by cluster without {flag}, or use {flag} with the per-class plan (leave out --by cluster)")


def cluster_groupings(run_dir: Path) -> dict[str, np.ndarray]:
    """The run's clusters as the grouping that simulated per-cluster replicas follow: name -> the
    cluster id of every training record."""
    return {GROUPING: read_clusters(run_dir).train}


def measured_by_cluster(sim_dir: Path, run_dir: Path) -> dict[str, np.ndarray]:
    """Per-cluster accuracy (replicas, clusters) of each label's finished replicas in a simulated run,
    from its test predictions and ``run_dir``'s clusters (the same dataset)."""
    sim = load_run(sim_dir)
    units = cluster_units(sim, min_records=0, clusters=read_clusters(run_dir))
    accuracy = units.accuracy
    out: dict[str, list[np.ndarray]] = {}
    for rep in sim.finished():
        out.setdefault(rep.label, []).append(accuracy[rep.replica])
    return {label: np.stack(values) for label, values in out.items()}
