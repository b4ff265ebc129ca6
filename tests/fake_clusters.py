"""A fake run that can be analysed by cluster: its dataset's labels as an npz file, each replica's
test predictions drawn to match its confusion counts exactly, and a cluster assignment.

``write_clustered_run`` writes a fake run (``fake_run.write_fake_run``) whose config names the npz
file, so the run's test labels load the way a real run's do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from fake_run import CLASSES, write_fake_run
from labelsim.rundir import load_run

TRAIN_PER_CLASS = 200  # fake_run's train_class_counts at its default full size of 2000


def write_clustered_run(path: Path, *, test_per_class: int = 100, favour: np.ndarray | None = None,
                        seed: int = 0, **fake_run: object) -> tuple[np.ndarray, np.ndarray]:
    """Write a fake run under ``path / 'run'``, its dataset as ``path / 'data.npz'`` and its
    test predictions; returns (y_train, y_test). ``favour`` (one weight per test record) makes
    correct predictions land preferably on the records with larger weights."""
    data = path / "data.npz"
    write_fake_run(path / "run", dataset=f"npz:{data}", test_per_class=test_per_class, seed=seed,
                   **fake_run)
    c = len(CLASSES)
    y_train = np.repeat(np.arange(c), TRAIN_PER_CLASS).astype(np.int32)
    y_test = np.repeat(np.arange(c), test_per_class).astype(np.int32)
    np.savez(data, x_train=np.zeros((len(y_train), 2, 2, 1), np.uint8), y_train=y_train,
             x_test=np.zeros((len(y_test), 2, 2, 1), np.uint8), y_test=y_test,
             class_names=np.array(CLASSES))
    write_predictions(path / "run", y_test, favour=favour, seed=seed)
    return y_train, y_test


def write_predictions(run_dir: Path, y_test: np.ndarray, *, favour: np.ndarray | None = None,
                      seed: int = 0) -> np.ndarray:
    """RUN/test_predictions.npy matching the run's confusion counts record for record (-1 for
    replicas that did not finish)."""
    run = load_run(run_dir)
    rng = np.random.default_rng(seed)
    out = np.full((len(run.replicas), len(y_test)), -1, dtype=np.int8)
    for rep in run.finished():
        for k in range(run.num_classes):
            records = np.flatnonzero(y_test == k)
            if favour is None:
                records = rng.permutation(records)
            else:
                keys = rng.random(len(records)) * favour[records]
                records = records[np.argsort(-keys, kind="stable")]
            labels = np.repeat(np.arange(run.num_classes), run.counts[rep.replica, k])
            labels = np.concatenate([[k] * run.counts[rep.replica, k, k],
                                     labels[labels != k]])
            out[rep.replica, records] = labels
    np.save(run_dir / "test_predictions.npy", out)
    return out


def write_clusters(run_dir: Path, train: np.ndarray, test: np.ndarray, class_of: Sequence[int],
                   names: Sequence[str]) -> None:
    """RUN/clusters.npz in the format ``labelsim clusters`` writes."""
    np.savez(run_dir / "clusters.npz", train=np.asarray(train, np.int32), test=np.asarray(test, np.int32),
             class_of=np.asarray(class_of, np.int32), names=np.array(list(names)),
             meta=json.dumps({"source": "test", "seed": 0}))


def one_per_class(run_dir: Path, y_train: np.ndarray, y_test: np.ndarray,
                  names: Sequence[str] = CLASSES) -> None:
    """One cluster per class: cluster k is class k."""
    write_clusters(run_dir, y_train, y_test, np.arange(len(CLASSES)), names)


def halves(y: np.ndarray, small: int = 0) -> np.ndarray:
    """Two clusters per class (ids 2k and 2k+1): the first records of each class, and the rest;
    the first cluster takes ``small`` records of its class when given, else half of them."""
    ids = np.empty(len(y), dtype=np.int64)
    for k in np.unique(y):
        records = np.flatnonzero(y == k)
        cut = small or len(records) // 2
        ids[records] = 2 * k + (np.arange(len(records)) >= cut)
    return ids
