"""Clusters of records: k-means on embeddings (within each class or across classes), a user's own
assignment read and checked, and RUN/clusters.npz written. Jax-free.

RUN/clusters.npz holds
- ``train`` int32 (n_train,): the cluster id of every training record, in dataset order;
- ``test`` int32 (n_test,): the cluster id of every test record;
- ``class_of`` int32 (n_clusters,): the class of each cluster, -1 for a cluster whose records
  (by their true class) span several classes;
- ``names`` str (n_clusters,): e.g. "cat/2" (the third cluster of cat), "mixed/0";
- ``meta``: a JSON string: where the clusters come from (``source`` "embedding" or "user"), k,
  whether every cluster lies within one class, the seed, the labelsim version.

Cluster ids are 0..n_clusters-1 and every id holds at least one record.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.config import ConfigError
from labelsim.rundir import write_npz

CLUSTERS_FILE = "clusters.npz"
N_INIT = 10  # k-means restarts; the best of them (lowest inertia) is kept
MIN_TEST_RECORDS = 30  # clusters with fewer test records are flagged: their accuracy is a noisy estimate
ASSIGN_HEADER = ("split", "index", "cluster")
SHOWN = 8  # ids or names listed in one message


@dataclass(frozen=True)
class Clusters:
    """A cluster id for every training and test record, and each cluster's class and name."""

    train: np.ndarray  # (n_train,) int32
    test: np.ndarray  # (n_test,) int32
    class_of: np.ndarray  # (n_clusters,) int32, -1 for a cluster that mixes classes
    names: tuple[str, ...]
    meta: dict[str, Any]

    @property
    def n_clusters(self) -> int:
        """Number of clusters."""
        return len(self.class_of)


def _listed(values: list[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:SHOWN])
    return shown + (f" and {len(values) - SHOWN} more" if len(values) > SHOWN else "")


# ---------------------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------------------


def kmeans_within_class(
    train_x: np.ndarray, test_x: np.ndarray, y_train: np.ndarray, y_test: np.ndarray, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, test ids): ``per_class`` k-means clusters fitted on each class's training records
    (grouped by their true class), numbered class by class; a test record takes the nearest centroid
    of its own true class. A class with fewer training records than ``per_class`` gets one cluster per record."""
    from sklearn.cluster import KMeans

    train_ids = np.zeros(len(y_train), np.int32)
    test_ids = np.zeros(len(y_test), np.int32)
    offset = 0
    for k in np.unique(y_train):
        members, tests = np.flatnonzero(y_train == k), np.flatnonzero(y_test == k)
        n = min(per_class, len(members))
        fit = KMeans(n_clusters=n, n_init=N_INIT, random_state=seed).fit(train_x[members])
        train_ids[members] = offset + fit.labels_
        if len(tests):
            test_ids[tests] = offset + fit.predict(test_x[tests])
        offset += n
    return train_ids, test_ids


def kmeans_across_classes(
    train_x: np.ndarray, test_x: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, test ids): one k-means over every training record, whatever its class; a test
    record takes the nearest centroid."""
    from sklearn.cluster import KMeans

    fit = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit(train_x)
    return fit.labels_.astype(np.int32), fit.predict(test_x).astype(np.int32)


# ---------------------------------------------------------------------------------------
# A user's assignment
# ---------------------------------------------------------------------------------------


def read_assignment(file: str | Path, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, test ids) from a .npy of n_train + n_test integer ids (training records first, in
    dataset order) or a CSV with header split,index,cluster; a ConfigError naming --assign for any fault."""
    file = Path(file)
    if not file.is_file():
        raise ConfigError(f"--assign {file}: no such file; give a .npy or .csv of cluster ids")
    suffix = file.suffix.lower()
    if suffix == ".npy":
        ids = _read_npy(file, n_train, n_test)
        train, test = ids[:n_train], ids[n_train:]
    elif suffix == ".csv":
        train, test = _read_csv(file, n_train, n_test)
    else:
        raise ConfigError(
            f"--assign {file}: unknown format {suffix or '(no extension)'!r}; give a .npy array of cluster ids "
            "or a .csv with header split,index,cluster"
        )
    negative = np.flatnonzero(np.concatenate([train, test]) < 0)
    if len(negative):
        first = int(negative[0])
        where = f"train record {first}" if first < n_train else f"test record {first - n_train}"
        value = int(np.concatenate([train, test])[first])
        raise ConfigError(
            f"--assign {file}: {len(negative)} record(s) have a negative cluster id (first: {where} has {value}); "
            "cluster ids must be whole numbers >= 0"
        )
    return train.astype(np.int64), test.astype(np.int64)


def _read_npy(file: Path, n_train: int, n_test: int) -> np.ndarray:
    try:
        ids = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ConfigError(
            f"--assign {file} is unreadable ({type(err).__name__}: {err}); give a .npy of cluster ids"
        ) from None
    if not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"--assign {file} holds {ids.dtype} values; give whole-number cluster ids (an integer array)")
    expected = n_train + n_test
    if ids.ndim != 1 or len(ids) != expected:
        found = f"{len(ids)} ids" if ids.ndim == 1 else f"an array of shape {ids.shape}"
        raise ConfigError(
            f"--assign {file} holds {found}, expected {expected}: one id per record, the run's {n_train} training "
            f"records then its {n_test} test records, in dataset order"
        )
    return ids.astype(np.int64)


def _read_csv(file: Path, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = {"train": n_train, "test": n_test}
    ids = {split: np.zeros(n, np.int64) for split, n in sizes.items()}
    seen = {split: np.zeros(n, bool) for split, n in sizes.items()}
    try:
        with file.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = tuple(cell.strip().lower() for cell in next(reader, []))
            if header != ASSIGN_HEADER:
                raise ConfigError(
                    f"--assign {file}: the header is {','.join(header) or '(empty)'}; the first line must be "
                    "split,index,cluster"
                )
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                split, index, cluster = _parse_row(file, line, row, sizes)
                if seen[split][index]:
                    raise ConfigError(
                        f"--assign {file}, line {line}: {split} record {index} is given twice; give it once"
                    )
                seen[split][index], ids[split][index] = True, cluster
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"--assign {file} is unreadable ({type(err).__name__}: {err}); give a UTF-8 CSV") from None
    missing = [f"{split} {i}" for split in sizes for i in np.flatnonzero(~seen[split])]
    if missing:
        raise ConfigError(
            f"--assign {file}: {len(missing)} record(s) have no cluster ({_listed(missing)}); the file needs one "
            f"row per record: {n_train} train and {n_test} test"
        )
    return ids["train"], ids["test"]


def _parse_row(file: Path, line: int, row: list[str], sizes: dict[str, int]) -> tuple[str, int, int]:
    if len(row) != 3:
        raise ConfigError(f"--assign {file}, line {line}: {len(row)} fields; give split,index,cluster")
    split = row[0].strip().lower()
    if split not in sizes:
        raise ConfigError(f"--assign {file}, line {line}: split {row[0]!r} is neither train nor test")
    try:
        index, cluster = int(row[1]), int(row[2])
    except ValueError:
        raise ConfigError(
            f"--assign {file}, line {line}: index and cluster must be whole numbers, not {row[1:]}"
        ) from None
    if not 0 <= index < sizes[split]:
        raise ConfigError(
            f"--assign {file}, line {line}: {split} index {index} is outside the run's {sizes[split]} {split} records "
            f"(0..{sizes[split] - 1})"
        )
    return split, index, cluster


# ---------------------------------------------------------------------------------------
# Assembling, storing and reading clusters
# ---------------------------------------------------------------------------------------


def renumber(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """(train, test, unused, first unused ids): the ids mapped onto 0..n-1 in their order, where n is the
    number of ids used; ``unused`` counts the ids below the largest that no record has (0: nothing changed)."""
    both = np.concatenate([train, test]).astype(np.int64)
    used, inverse = np.unique(both, return_inverse=True)
    unused = int(used[-1]) + 1 - len(used) if len(used) else 0
    first: list[int] = []
    expected = 0
    for value in used.tolist():
        first += range(expected, min(value, expected + SHOWN - len(first)))
        expected = value + 1
        if len(first) >= SHOWN:
            break
    renumbered = inverse.reshape(-1).astype(np.int32)
    return renumbered[: len(train)], renumbered[len(train) :], unused, first


def cluster_classes(train: np.ndarray, test: np.ndarray, y_train: np.ndarray, y_test: np.ndarray, n: int) -> np.ndarray:
    """(n,) the single true class of each cluster's records, or -1 when they span several."""
    ids = np.concatenate([train, test]).astype(np.int64)
    labels = np.concatenate([y_train, y_test]).astype(np.int64)
    low = np.full(n, np.iinfo(np.int64).max)
    high = np.full(n, -1, np.int64)
    np.minimum.at(low, ids, labels)
    np.maximum.at(high, ids, labels)
    return np.where(low == high, high, -1).astype(np.int32)


def cluster_names(class_of: np.ndarray, class_names: tuple[str, ...]) -> tuple[str, ...]:
    """"cat/2" for the third cluster within cat, "mixed/0" for the first that spans several classes."""
    seen: dict[int, int] = {}
    names = []
    for k in class_of.tolist():
        names.append(f"{class_names[k] if k >= 0 else 'mixed'}/{seen.get(k, 0)}")
        seen[k] = seen.get(k, 0) + 1
    return tuple(names)


def make_clusters(
    train: np.ndarray, test: np.ndarray, y_train: np.ndarray, y_test: np.ndarray,
    class_names: tuple[str, ...], meta: dict[str, Any],
) -> tuple[Clusters, str | None]:
    """(clusters, a note when unused ids were renumbered away): ids made consecutive, each cluster's
    class and name derived from its records' true classes; ``meta`` gains k (the number of clusters) and,
    unless it says, within_class (whether every cluster lies within one class)."""
    train, test, unused, first = renumber(train, test)
    n = int(max(train.max(initial=-1), test.max(initial=-1))) + 1
    class_of = cluster_classes(train, test, y_train, y_test, n)
    meta = {"within_class": bool((class_of >= 0).all())} | meta | {"k": n}
    note = None
    if unused:
        meta["renumbered"] = True
        more = f" and {unused - len(first)} more" if unused > len(first) else ""
        note = (
            f"{unused} cluster id(s) below the largest are unused ({', '.join(map(str, first))}{more}); "
            f"the {n} used ids were renumbered 0..{n - 1} in their order"
        )
    return Clusters(train, test, class_of, cluster_names(class_of, class_names), meta), note


def write_clusters(run_dir: str | Path, clusters: Clusters) -> Path:
    """Write RUN/clusters.npz atomically; returns its path."""
    path = Path(run_dir) / CLUSTERS_FILE
    write_npz(
        path,
        train=clusters.train.astype(np.int32),
        test=clusters.test.astype(np.int32),
        class_of=clusters.class_of.astype(np.int32),
        names=np.array(clusters.names, dtype=str),
        meta=np.array(json.dumps(clusters.meta, sort_keys=True)),
    )
    return path


def summarize(clusters: Clusters) -> list[str]:
    """Lines for the terminal: records per cluster and the clusters too small in test records."""
    n = clusters.n_clusters
    train = np.bincount(clusters.train, minlength=n)
    test = np.bincount(clusters.test, minlength=n)
    spread = lambda c: f"min {c.min()}, median {np.median(c):g}, max {c.max()}"  # noqa: E731
    within = "every cluster within one class" if clusters.meta.get("within_class") else (
        f"{int((clusters.class_of < 0).sum())} cluster(s) span several classes"
    )
    lines = [
        f"{n} clusters ({within})",
        f"training records per cluster: {spread(train)}",
        f"test records per cluster: {spread(test)}",
    ]
    small = [i for i in np.argsort(test, kind="stable") if test[i] < MIN_TEST_RECORDS]
    if small:
        lines.append(
            f"{len(small)} cluster(s) have fewer than {MIN_TEST_RECORDS} test records (their accuracy is a noisy "
            f"estimate): {_listed([f'{clusters.names[i]} ({test[i]})' for i in small])}"
        )
    return lines
