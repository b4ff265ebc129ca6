"""``python -m labelsim clusters RUN --k 40``: assign every training and test record of a run to a
cluster and store the assignment as RUN/clusters.npz (see ``labelsim.analysis.clusters``).

The clusters come from k-means (scikit-learn, ``n_init`` 10, ``random_state`` --seed) on the
penultimate-layer embeddings of the run's clean baseline replicas (``labelsim.sim.embed``),
within each class by default (k // classes clusters per class, fitted on the training records
grouped by their true class; a test record takes the nearest centroid of its true class), or
over all records with --across-classes. --assign FILE takes your own assignment instead.

Examples::

    python -m labelsim clusters runs/demo --k 40
    python -m labelsim clusters runs/demo --k 20 --across-classes --repeats 2
    python -m labelsim clusters runs/demo --assign my_clusters.csv
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from labelsim import __version__
from labelsim.analysis.clusters import (
    CLUSTERS_FILE,
    N_INIT,
    kmeans_across_classes,
    kmeans_within_class,
    make_clusters,
    read_assignment,
    summarize,
    write_clusters,
)
from labelsim.config import ConfigError
from labelsim.rundir import claim, read_rows
from labelsim.rundir.schema import TEMP_SUFFIX


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The clusters command's flags."""
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder (with run.json)")
    parser.add_argument("--k", type=int, metavar="K",
                        help="clusters in total (within classes: K // classes per class)")
    side = parser.add_mutually_exclusive_group()
    side.add_argument("--within-class", dest="within_class", action="store_true", default=True,
                      help="cluster each class's records apart (sub-classes; the default)")
    side.add_argument("--across-classes", dest="within_class", action="store_false",
                      help="one clustering of all records, whatever their class")
    parser.add_argument("--seed", type=int, default=0, help="k-means random_state (default 0)")
    parser.add_argument("--repeats", type=int, default=1, metavar="R",
                        help="clean baseline replicas whose embeddings are concatenated (default 1)")
    parser.add_argument("--model", help="the model whose embeddings are used (default: the run's model)")
    parser.add_argument("--assign", type=Path, metavar="FILE",
                        help="your own cluster ids: a .npy of n_train + n_test integers (training records first, "
                             "in dataset order) or a CSV with header split,index,cluster")


def run(args: argparse.Namespace) -> int:
    """Make RUN/clusters.npz and print a summary."""
    from labelsim.sim.embed import EMBEDDINGS_FILE, baseline_embeddings, baseline_model, load_run_data

    check_flags(args)
    meta, config, dataset, digest = load_run_data(args.run_dir)
    y_train, y_test = dataset.y_train, dataset.y_test
    classes = tuple(str(c) for c in meta.get("classes") or dataset.class_names)
    if args.assign is None:
        check_k(args, len(classes), len(y_train))
    with claim(args.run_dir):
        for name in (CLUSTERS_FILE, EMBEDDINGS_FILE):  # the temporary files of writes a kill interrupted
            for stale in args.run_dir.glob(f".{name}.*{TEMP_SUFFIX}"):
                stale.unlink(missing_ok=True)
        if args.assign is not None:
            train, test = read_assignment(args.assign, len(y_train), len(y_test))
            source = {"source": "user", "file": str(args.assign.resolve()), "sha256": _sha256(args.assign),
                      "seed": None}  # fmt: skip
        else:
            rows = read_rows(args.run_dir)
            model = baseline_model(config, rows, args.model)
            embeddings = baseline_embeddings(args.run_dir, config, dataset, digest, rows, model, args.repeats)
            train, test = cluster(args, embeddings.train, embeddings.test, y_train, y_test, len(classes))
            source = {"source": "embedding", "within_class": args.within_class, "seed": args.seed, "n_init": N_INIT,
                      "requested_k": args.k,
                      "embedding": {key: embeddings.meta[key] for key in
                                    ("model", "width", "repeats", "dims", "accuracy", "source")}}  # fmt: skip
        source["labelsim_version"] = __version__
        clusters, note = make_clusters(train, test, y_train, y_test, classes, source)
        if note:
            print(f"note: {note}", file=sys.stderr)
        path = write_clusters(args.run_dir, clusters)
    how = "your assignment" if args.assign is not None else (
        f"k-means {'within each class' if args.within_class else 'across classes'} on the embeddings"
    )
    print(f"wrote {path}: {how}")
    for line in summarize(clusters):
        print(f"  {line}")
    return 0


def check_flags(args: argparse.Namespace) -> None:
    """ConfigError naming the flag of a combination that cannot run."""
    if args.assign is not None:
        if args.k is not None:
            raise ConfigError("--assign gives the clusters itself; drop --k (or drop --assign to cluster embeddings)")
        return
    if args.k is None:
        raise ConfigError("give --k K (clusters in total, e.g. --k 40), or your own assignment with --assign FILE")
    if args.k < 1:
        raise ConfigError(f"--k {args.k}: give a positive number of clusters, e.g. --k 40")


def check_k(args: argparse.Namespace, num_classes: int, n_train: int) -> None:
    """ConfigError when --k does not fit the run's classes and records; a note when --within-class rounds it."""
    if not args.within_class:
        if args.k > n_train:
            raise ConfigError(f"--k {args.k} exceeds the run's {n_train} training records; choose fewer clusters")
        return
    if args.k < num_classes:
        raise ConfigError(
            f"--k {args.k} is fewer than the run's {num_classes} classes: --within-class makes k // {num_classes} "
            f"clusters per class; give --k {num_classes} or more, or --across-classes"
        )
    per_class = args.k // num_classes
    if per_class * num_classes != args.k:
        print(f"note: --k {args.k} makes {per_class} clusters in each of {num_classes} classes, "
              f"{per_class * num_classes} in all", file=sys.stderr)  # fmt: skip


def cluster(
    args: argparse.Namespace, train_x: np.ndarray, test_x: np.ndarray, y_train: np.ndarray, y_test: np.ndarray,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, test ids) from k-means on the embeddings, as the flags ask."""
    if not args.within_class:
        return kmeans_across_classes(train_x, test_x, args.k, args.seed)
    return kmeans_within_class(train_x, test_x, y_train, y_test, args.k // num_classes, args.seed)


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def next_step(args: argparse.Namespace, err: BaseException) -> str:
    """After an interrupt: the same command again (cached embeddings are kept)."""
    return "run the same command again; embeddings already cached in the run folder are reused"
