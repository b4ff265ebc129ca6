"""Per-record test predictions: RUN/test_predictions.npy, the class each replica predicts for
every test record, int8 of shape (replicas, test records) in replica and dataset order; -1 in a
row means no prediction (the replica has not finished, diverged, or finished before the run
recorded predictions). Runs with more than 127 classes store int16.

The file is optional: runs written before it existed have none. The runner writes it (atomically)
just before each flush of the confusion counts, so a replica the table calls finished always has
its row on disk; a kill between the two writes can leave the row of a replica the table still
calls running, which the reader masks and the resumed run overwrites. A table that grew after
the file was written reads -1 for the new replicas. Jax-free.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.rundir.files import atomic_write
from labelsim.rundir.reader import load_run
from labelsim.rundir.schema import TEMP_SUFFIX, RunDirError

PREDICTIONS_FILE = "test_predictions.npy"
NO_PREDICTION = -1
STORED_DTYPES = (np.dtype(np.int8), np.dtype(np.int16))


def prediction_dtype(num_classes: int) -> np.dtype:
    """int8 while every class id fits (up to 127 classes), else int16."""
    return np.dtype(np.int8) if num_classes <= np.iinfo(np.int8).max else np.dtype(np.int16)


def run_test_size(meta: dict[str, Any]) -> int:
    """Test records of a run, from run.json (the dataset's test size, else the test class counts)."""
    size = (meta.get("dataset") or {}).get("test_size")
    if isinstance(size, int) and size > 0:
        return size
    return int(sum(meta.get("test_class_counts") or []))


def load_predictions_file(
    run_dir: str | Path, replicas: int, n_test: int, num_classes: int
) -> np.ndarray | None:
    """The stored array padded with -1 rows to ``replicas`` rows (None when the run has no file),
    every row as written; a RunDirError for a damaged file or one whose shape or values do not fit the run."""
    file = Path(run_dir) / PREDICTIONS_FILE
    if not file.exists():
        return None
    remedy = f"delete {file} (the per-record predictions of its finished replicas are then lost) or restore it"
    try:
        stored = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise RunDirError(f"{file} is unreadable ({type(err).__name__}: {err}); it is damaged: {remedy}") from None
    if stored.dtype not in STORED_DTYPES or stored.ndim != 2 or stored.shape[1] != n_test or stored.shape[0] > replicas:
        raise RunDirError(
            f"{file} holds a {stored.dtype} array of shape {stored.shape}, expected int8 (int16 beyond 127 classes) "
            f"of shape at most "
            f"({replicas}, {n_test}) (replicas x test records): it comes from another run; {remedy}"
        )
    if stored.size and (stored.min() < NO_PREDICTION or stored.max() >= num_classes):
        raise RunDirError(
            f"{file} holds class ids outside -1..{num_classes - 1} (the run has {num_classes} classes): "
            f"it is damaged; {remedy}"
        )
    padded = np.full((replicas, n_test), NO_PREDICTION, prediction_dtype(num_classes))
    padded[: stored.shape[0]] = stored
    return padded


def read_test_predictions(run_dir: str | Path) -> np.ndarray | None:
    """(replicas, test records) predicted classes of a run, in the replica order of ``load_run``, -1 for
    every replica that is not finished (and for replicas added after the file was written); None when the
    run stored none."""
    run_dir = Path(run_dir)
    if not (run_dir / PREDICTIONS_FILE).exists():
        return None
    run = load_run(run_dir)
    predictions = load_predictions_file(run_dir, len(run.replicas), run_test_size(run.meta), run.num_classes)
    if predictions is None:
        return None
    unfinished = [row.replica for row in run.replicas if not row.finished]
    predictions[unfinished] = NO_PREDICTION
    return predictions


@dataclass
class PredictionWriter:
    """The predictions of a run being trained, kept in memory and written whole."""

    path: Path
    predictions: np.ndarray  # (replicas, test records)

    @classmethod
    def open(cls, run_dir: str | Path, replicas: int, n_test: int, num_classes: int) -> PredictionWriter:
        """Continue the run's file (padded to ``replicas``), or start one of -1s; removes the
        temporary files of writes a kill interrupted."""
        run_dir = Path(run_dir)
        for stale in run_dir.glob(f".{PREDICTIONS_FILE}.*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
        stored = load_predictions_file(run_dir, replicas, n_test, num_classes)
        if stored is None:
            stored = np.full((replicas, n_test), NO_PREDICTION, prediction_dtype(num_classes))
        return cls(run_dir / PREDICTIONS_FILE, stored)

    def set(self, replica: int, predicted: np.ndarray) -> None:
        """Record a replica's predicted class per test record."""
        self.predictions[replica] = predicted

    def clear(self, replica: int) -> None:
        """Record that a replica has no predictions (it diverged)."""
        self.predictions[replica] = NO_PREDICTION

    def write(self) -> None:
        """Replace the file atomically."""
        buffer = io.BytesIO()
        np.save(buffer, self.predictions, allow_pickle=False)
        atomic_write(self.path, buffer.getvalue())


def confusion_from_predictions(predicted: np.ndarray, y_test: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts of one replica's predictions (rows true class, columns predicted)."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(y_test, np.int64), np.asarray(predicted, np.int64)), 1)
    return counts
