"""``python -m labelsim check RUN_DIR``: verify a run directory; exit 1 on any fault, 2 when a
file is missing or unreadable. The optional test_predictions.npy must reproduce every finished
replica's confusion matrix with the dataset's test labels."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from labelsim.config import ConfigError, RunConfig, total_steps
from labelsim.rundir import Replica, RunDirError, RunStore
from labelsim.rundir.predictions import (
    PREDICTIONS_FILE,
    confusion_from_predictions,
    load_predictions_file,
    run_test_size,
)
from labelsim.sim.fingerprint import check_stored_config

ACCURACY_TOLERANCE = 1e-6  # replicas.csv keeps six decimals
NOISE_TOLERANCE = 1e-6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("run_dir", type=Path, help="run directory written by run_grid.py")


def find_faults(store: RunStore) -> list[str]:
    """Every inconsistency between run.json, replicas.csv and confusion.npz."""
    meta, counts = store.meta, store.counts
    classes = meta.get("classes", [])
    if not isinstance(classes, list):
        return [f"run.json's classes is {classes!r}, not a list of class names"]
    if counts.shape[1:] != (len(classes), len(classes)):
        return [f"confusion counts are {counts.shape[1:]} per replica but run.json names {len(classes)} classes"]
    faults: list[str] = []
    if meta.get("replicas", len(store.rows)) != len(store.rows):
        faults.append(f"run.json says {meta.get('replicas')} replicas, replicas.csv has {len(store.rows)}")
    if (counts < 0).any() or (store.transitions < 0).any():
        faults.append("confusion.npz holds negative counts")
    try:
        expected_rows = np.asarray(meta.get("test_class_counts", []), np.int64)
    except (TypeError, ValueError):
        faults.append(f"run.json's test_class_counts is {meta['test_class_counts']!r}, not a list of whole numbers")
        expected_rows = np.zeros(0, np.int64)
    for row in store.rows:
        faults += _row_faults(row, counts[row.replica], store.transitions[row.replica], expected_rows)
    faults += _config_faults(store)
    if meta.get("status") == "finished" and store.pending():
        faults.append(f"run.json says finished but {len(store.pending())} replica(s) are not")
    return faults


def _config_faults(store: RunStore) -> list[str]:
    """The stored config against its fingerprint, and each replica's step count against it."""
    try:
        check_stored_config(store.path, store.meta)
        recipe = RunConfig.from_dict(store.meta.get("config") or {}).recipe
    except (RunDirError, ConfigError, TypeError, ValueError, AttributeError) as err:
        return [f"run.json's config: {err}"]
    return [
        f"replica {row.replica}: {row.total_steps} total steps recorded, but {recipe.epochs} epochs of "
        f"{row.size} images in batches of {recipe.batch_size} make {total_steps(row.size, recipe)}"
        for row in store.rows
        if row.total_steps and row.total_steps != total_steps(row.size, recipe)  # 0: not started yet
    ]


def _row_faults(row: Replica, matrix: np.ndarray, transitions: np.ndarray, expected_rows: np.ndarray) -> list[str]:
    """Faults of one replica: its counts, accuracy, steps and realized noise against its row."""
    i, faults = row.replica, []
    if not 0 <= row.steps <= max(row.total_steps, 0):
        faults.append(f"replica {i}: {row.steps} steps taken of {row.total_steps}")
    if row.status == "diverged" and row.diverged_step is None:
        faults.append(f"replica {i} is diverged but has no diverged_step")
    if row.status == "diverged" and matrix.any():
        faults.append(f"replica {i} is diverged (never evaluated) but has confusion counts")
    if row.status != "finished":
        return faults
    if expected_rows.size and not np.array_equal(matrix.sum(1), expected_rows):
        faults.append(
            f"replica {i}: confusion rows sum to {matrix.sum(1).tolist()}, "
            f"not the test class counts {expected_rows.tolist()}"
        )
    total = matrix.sum()
    if total == 0 or not abs(row.accuracy - np.trace(matrix) / total) <= ACCURACY_TOLERANCE:
        faults.append(f"replica {i}: accuracy {row.accuracy} != trace/total of its confusion matrix")
    if row.steps != row.total_steps:
        faults.append(f"replica {i}: finished after {row.steps} of {row.total_steps} steps")
    size = row.size
    labels = int(transitions.sum())
    if labels != size:
        faults.append(f"replica {i}: label transitions count {labels} labels, its training set has {size}")
    elif not abs(row.realized_noise - (1 - np.trace(transitions) / labels)) <= NOISE_TOLERANCE:
        faults.append(f"replica {i}: realized noise {row.realized_noise} != the changed share of its labels")
    return faults


def find_notes(store: RunStore) -> list[str]:
    """Harmless states a kill can leave, which --resume repairs."""
    return [
        f"replica {row.replica} is {row.status} but confusion.npz already holds its counts "
        "(the run stopped between two writes; --resume retrains and overwrites them)"
        for row in store.rows
        if row.status in ("pending", "running") and store.counts[row.replica].any()
    ]


def prediction_findings(store: RunStore) -> tuple[list[str], list[str]]:
    """(faults, notes) of the optional test_predictions.npy: its shape, and every finished replica's
    predictions against its confusion matrix (in full with the dataset's test labels; by the
    predicted-class totals, the matrix's column sums, when the dataset cannot be loaded)."""
    classes = len(store.meta.get("classes") or [])
    try:
        predictions = load_predictions_file(store.path, len(store.rows), run_test_size(store.meta), classes)
    except RunDirError as err:
        return [str(err)], []
    if predictions is None:
        return [], []
    faults, notes = [], []
    has = (predictions >= 0).any(axis=1)
    finished = [row.replica for row in store.rows if row.finished]
    missing = [i for i in finished if not has[i]]
    if missing:
        notes.append(
            f"replica(s) {', '.join(map(str, missing))} finished before the run recorded test predictions: "
            f"{PREDICTIONS_FILE} has none for them, and per-record analyses leave them out"
        )
    for row in store.rows:
        if row.status == "diverged" and has[row.replica]:
            faults.append(f"replica {row.replica} is diverged (never evaluated) but has test predictions")
        elif row.status in ("pending", "running") and has[row.replica]:
            notes.append(
                f"replica {row.replica} is {row.status} but {PREDICTIONS_FILE} already holds its predictions "
                "(the run stopped between two writes; --resume retrains and overwrites them)"
            )
    checked = [i for i in finished if has[i]]
    labels, why = _test_labels(store, predictions.shape[1]) if checked else (None, None)
    if why:
        notes.append(f"test predictions checked against the confusion matrices' column sums only: {why}")
    for i in checked:
        row = predictions[i]
        if (row < 0).any():
            faults.append(f"replica {i} finished but {int((row < 0).sum())} test record(s) have no prediction")
        elif labels is not None:
            cells = int((confusion_from_predictions(row, labels, classes) != store.counts[i]).sum())
            if cells:
                faults.append(f"replica {i}: its test predictions and test labels differ from its confusion matrix "
                              f"in {cells} cell(s)")  # fmt: skip
        elif not np.array_equal(np.bincount(row, minlength=classes), store.counts[i].sum(0)):
            faults.append(f"replica {i}: its test predictions' class totals differ from its confusion matrix's columns")
    return faults, notes


def _test_labels(store: RunStore, n_test: int) -> tuple[np.ndarray | None, str | None]:
    """(the test labels of the run's dataset, None) or (None, why they cannot be used)."""
    from labelsim.sim.data import load_dataset
    from labelsim.sim.fingerprint import INPUTS_KEY, array_digest

    try:
        dataset = load_dataset(RunConfig.from_dict(store.meta.get("config") or {}).data)
    except (ConfigError, OSError, TypeError, ValueError) as err:
        return None, f"the run's dataset could not be loaded ({err})"
    stored = (store.meta.get(INPUTS_KEY) or {}).get("dataset")
    if len(dataset.y_test) != n_test or (
        stored is not None and stored != array_digest(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    ):
        return None, "the dataset loaded now is not the one the run was trained on"
    return dataset.y_test, None


def run(args: argparse.Namespace) -> int:
    """Print the verdict; 0 when the directory is sound, 1 on faults. An unreadable directory
    raises RunDirError, which ``python -m labelsim`` reports in one line with exit status 2."""
    store = RunStore.open(args.run_dir)
    faults = find_faults(store)
    # The predictions are checked against run.json's classes and counts: only once those are sound.
    prediction_faults, prediction_notes = prediction_findings(store) if not faults else ([], [])
    faults += prediction_faults
    for note in find_notes(store) + prediction_notes:
        print(f"note: {note}")
    for fault in faults:
        print(f"fault: {fault}")
    done = sum(r.status == "finished" for r in store.rows)
    diverged = sum(r.status == "diverged" for r in store.rows)
    verdict = "FAULTY" if faults else "ok"
    print(
        f"{verdict}: {args.run_dir}: {len(store.rows)} replicas, {done} finished, {diverged} diverged, "
        f"{len(faults)} fault(s)"
    )
    return 1 if faults else 0
