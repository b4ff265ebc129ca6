"""``python -m labelsim check RUN_DIR``: verify a run directory; exit 1 on any fault."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from labelsim.results import RunDirError, RunStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("run_dir", type=Path, help="run directory written by run_grid.py")


def find_faults(store: RunStore) -> list[str]:
    """Every inconsistency between run.json, replicas.csv and confusion.npz."""
    faults: list[str] = []
    meta, counts = store.meta, store.counts
    classes = meta.get("classes", [])
    if counts.shape[1:] != (len(classes), len(classes)):
        faults.append(f"confusion counts are {counts.shape[1:]} per replica but run.json names {len(classes)} classes")
        return faults
    if meta.get("replicas", len(store.rows)) != len(store.rows):
        faults.append(f"run.json says {meta.get('replicas')} replicas, replicas.csv has {len(store.rows)}")
    expected_rows = np.asarray(meta.get("test_class_counts", []), np.int64)
    for row in store.rows:
        i, matrix = row.spec.replica, counts[row.spec.replica]
        if row.status == "finished":
            if expected_rows.size and not np.array_equal(matrix.sum(1), expected_rows):
                faults.append(f"replica {i}: confusion rows sum to {matrix.sum(1).tolist()}, not the test class counts")
            total = matrix.sum()
            if total == 0 or abs(row.accuracy - np.trace(matrix) / total) > 1e-6:
                faults.append(f"replica {i}: accuracy {row.accuracy} != trace/total of its confusion matrix")
            if row.steps != row.total_steps:
                faults.append(f"replica {i}: finished after {row.steps} of {row.total_steps} steps")
        elif matrix.any():
            faults.append(f"replica {i} is {row.status} but has confusion counts")
        if row.status == "diverged" and row.diverged_step is None:
            faults.append(f"replica {i} is diverged but has no diverged_step")
    if meta.get("status") == "finished" and store.pending():
        faults.append(f"run.json says finished but {len(store.pending())} replica(s) are not")
    return faults


def run(args: argparse.Namespace) -> int:
    """Print the verdict; 0 when the directory is sound, 1 on faults, 2 when unreadable."""
    try:
        store = RunStore.open(args.run_dir)
    except RunDirError as err:
        print(f"error: {err}")
        return 2
    faults = find_faults(store)
    for fault in faults:
        print(f"fault: {fault}")
    done = sum(r.status == "finished" for r in store.rows)
    diverged = sum(r.status == "diverged" for r in store.rows)
    verdict = "FAULTY" if faults else "ok"
    print(f"{verdict}: {args.run_dir}: {len(store.rows)} replicas, {done} finished, {diverged} diverged, {len(faults)} fault(s)")
    return 1 if faults else 0
