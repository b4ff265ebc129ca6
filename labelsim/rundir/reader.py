"""The reader every command uses: run.json, replicas.csv and confusion.npz checked, each
fault a RunDirError that says what to do; ``load_run`` gives the read-only ``Run``."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.rundir.files import partial_writes
from labelsim.rundir.records import Replica
from labelsim.rundir.schema import (
    CHECKPOINT_FILE,
    CONFUSION_FILE,
    FINAL_STATUSES,
    NPZ_ERRORS,
    REQUIRED_COLUMNS,
    RESULT_FILES,
    RUN_FILE,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    TABLE_FILE,
    RunDirError,
)

def _damaged(file: Path, err: BaseException) -> RunDirError:
    return RunDirError(
        f"{file} is unreadable ({type(err).__name__}: {err}); it is damaged or truncated: "
        "restore it from a backup or start a new --out"
    )


def run_leftovers(path: Path) -> list[Path]:
    """The run files and partial writes in a folder besides run.json: in a folder without run.json, what a
    creation stopped part-way left (a creation writes run.json last), or the rest of a run whose run.json was lost."""
    folder = Path(path)
    if not folder.is_dir():
        return []
    return [folder / name for name in RESULT_FILES[1:] if (folder / name).exists()] + partial_writes(folder)


def trained_nothing(path: Path) -> bool:
    """True when a folder's run files record no training at all, as a creation writes them: no checkpoint,
    all-zero confusion counts, every replica pending at step 0. Removing such files loses nothing."""
    folder = Path(path)
    if (folder / CHECKPOINT_FILE).exists():
        return False
    if (folder / TABLE_FILE).exists():
        try:
            rows = read_rows(folder)
        except RunDirError:
            return False
        if any(row.status != "pending" or row.steps for row in rows):
            return False
    if (folder / CONFUSION_FILE).exists():
        try:
            with np.load(folder / CONFUSION_FILE, allow_pickle=False) as data:
                return not any(np.any(data[key]) for key in data.files)
        except NPZ_ERRORS:
            return False
    return True


def results_without_run_file(path: Path) -> RunDirError:
    """The error for a folder that holds results but no run.json (which a run has from its creation on)."""
    names = ", ".join(file.name for file in run_leftovers(path))
    return RunDirError(
        f"{path} holds results ({names}) but no {RUN_FILE}, which a run has from its creation on: it was deleted "
        f"or lost; restore {RUN_FILE} from a backup, or start the run again in a new --out (nothing there is "
        "overwritten)"
    )


def read_meta(path: Path) -> dict[str, Any]:
    """run.json, checked for a config and a schema this labelsim can read."""
    file = Path(path) / RUN_FILE
    if not file.exists():
        if not run_leftovers(file.parent):
            raise RunDirError(f"{file} is missing: {file.parent} is not a labelsim run directory")
        if not trained_nothing(file.parent):
            raise results_without_run_file(file.parent)
        raise RunDirError(
            f"{file} is missing: {file.parent} holds only the start of a run that was stopped while it was being "
            "created, before any replica trained; start the run again with the same --out (the leftovers are "
            "removed), or delete the folder"
        )
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise _damaged(file, err) from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise RunDirError(f"{file} has no config; it was not written by labelsim")
    check_schema(meta, file)
    return meta


def check_schema(meta: dict[str, Any], file: Path) -> None:
    """Refuse a run written in a newer layout than this labelsim reads."""
    version = meta.get(SCHEMA_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RunDirError(f"{file} has {SCHEMA_KEY} {version!r}, not a positive whole number; it is damaged")
    if version > SCHEMA_VERSION:
        raise RunDirError(
            f"{file} was written by a newer labelsim (run schema version {version}; this labelsim "
            f"reads up to version {SCHEMA_VERSION}): upgrade labelsim to read this run"
        )


def read_rows(path: Path) -> list[Replica]:
    """replicas.csv, or a RunDirError that says what is wrong."""
    file = Path(path) / TABLE_FILE
    if not file.exists():
        raise RunDirError(f"{file} is missing; the run directory is incomplete — start a new --out")
    try:
        with file.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise RunDirError(f"{file} lacks column(s) {', '.join(missing)}; it is damaged or not labelsim's")
            rows = [Replica.from_csv(row) for row in reader]
    except RunDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, csv.Error) as err:
        raise _damaged(file, err) from None
    if [row.replica for row in rows] != list(range(len(rows))):
        raise RunDirError(f"{file} is damaged: replica numbers are not 0..{len(rows) - 1} in order")
    return rows


def read_confusion(path: Path, replicas: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(counts, transitions or None) from confusion.npz, checked against the replica count."""
    file = Path(path) / CONFUSION_FILE
    if not file.exists():
        raise RunDirError(f"{file} is missing; the run directory is incomplete — start a new --out")
    try:
        with np.load(file, allow_pickle=False) as data:
            counts = np.asarray(data["counts"], np.int64)
            transitions = np.asarray(data["transitions"], np.int64) if "transitions" in data else None
    except NPZ_ERRORS as err:
        raise _damaged(file, err) from None
    tail = None if transitions is None else transitions[replicas:]
    if counts.ndim == 3 and counts.shape[0] > replicas and not counts[replicas:].any() and not np.any(tail):
        counts = counts[:replicas]  # an extension stopped before its rows were recorded: zeros, not results
        transitions = None if transitions is None else transitions[:replicas]
    if counts.ndim != 3 or counts.shape[0] != replicas or (transitions is not None and counts.shape != transitions.shape):
        shapes = f"counts of shape {counts.shape}" + ("" if transitions is None else f" and transitions of shape {transitions.shape}")
        raise RunDirError(
            f"{file} holds {shapes}, expected ({replicas}, C, C) each: the files come from different runs; "
            "restore them or start a new --out"
        )
    return counts, transitions


def recorded_rows(meta: dict[str, Any], rows: list[Replica]) -> list[Replica]:
    """The replicas run.json counts. Growing a grid writes the new rows before run.json, which records them
    last; a kill in between leaves rows past the recorded count that never trained: they are not part of the
    run yet (the next resume writes the table again)."""
    recorded = meta.get("replicas")
    if not isinstance(recorded, int) or not 0 < recorded < len(rows):
        return rows
    if any(row.status != "pending" or row.steps for row in rows[recorded:]):
        return rows
    return rows[:recorded]


@dataclass(frozen=True)
class Run:
    """A run directory as read: metadata, the replica table and the confusion counts (R, C, C)."""

    path: Path
    meta: dict[str, Any]
    classes: tuple[str, ...]
    replicas: tuple[Replica, ...]
    counts: np.ndarray
    transitions: np.ndarray | None = None
    class_shares: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.classes)

    def finished(self) -> list[Replica]:
        """Replicas whose status is 'finished' (the only ones that enter averages and fits)."""
        return [r for r in self.replicas if r.finished]

    def diverged(self) -> list[Replica]:
        """Replicas whose training diverged (left out of every average and fit)."""
        return [r for r in self.replicas if r.status == "diverged"]

    def unfinished(self) -> list[Replica]:
        """Replicas still pending or running."""
        return [r for r in self.replicas if r.status not in FINAL_STATUSES]

    def models(self) -> list[str]:
        """Models in replica order, without repeats."""
        return list(dict.fromkeys(r.model for r in self.replicas))

    def noise_models(self) -> list[str]:
        """Noise models in replica order, without repeats."""
        return list(dict.fromkeys(r.noise_model for r in self.replicas))

    def full_size(self, model: str) -> int:
        """The largest training-set size of a model's replicas (the 'full data' size)."""
        sizes = [r.train_size for r in self.replicas if r.model == model and not r.is_custom]
        if not sizes:
            sizes = [r.train_size for r in self.replicas if r.model == model]
        return max(sizes) if sizes else 0

    def per_class_counts(self, replica: Replica) -> np.ndarray:
        """Training records per class of a replica: its class_sizes, else train_size * share."""
        if replica.class_sizes is not None:
            return np.asarray(replica.class_sizes, dtype=float)
        return replica.train_size * self.class_shares


def load_run(run_dir: str | Path) -> Run:
    """Read and check a run directory; raises RunDirError with a one-line reason."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{path} is not a directory; give the folder a run wrote (with run.json)")
    meta = read_meta(path)
    replicas = recorded_rows(meta, read_rows(path))
    if not replicas:
        raise RunDirError(f"{path / TABLE_FILE} has no replica rows")
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise RunDirError(f"{path / RUN_FILE} lists no class names under 'classes'")
    counts, transitions = read_confusion(path, len(replicas))
    if counts.shape[1:] != (len(classes), len(classes)):
        raise RunDirError(
            f"{path / CONFUSION_FILE}: counts has shape {counts.shape}, expected "
            f"{(len(replicas), len(classes), len(classes))} (replicas x classes x classes); "
            "the files come from different runs"
        )
    shares = class_shares(meta, len(classes))
    return Run(path, meta, tuple(str(c) for c in classes), tuple(replicas), counts, transitions, shares)


def class_shares(meta: dict[str, Any], num_classes: int) -> np.ndarray:
    """Share of each class in the training data, from the recorded 'train_class_counts'
    (runs written before it was recorded: 1/C each)."""
    counts = meta.get("train_class_counts")
    if isinstance(counts, list) and len(counts) == num_classes and sum(counts) > 0:
        arr = np.asarray(counts, dtype=float)
        return arr / arr.sum()
    return np.full(num_classes, 1.0 / num_classes)


# The grid's extent: a resumed run may grow these (more repeats, levels, sizes, noise models, models, the
# cross), which adds replicas and changes none of the stored ones (their keys come from grid coordinates).
GROWABLE_FIELDS = ("grid.repeats", "grid.noise_levels", "grid.sizes", "grid.noise_models", "grid.models", "grid.cross")
# Inputs of noise models: a grown grid may add one the run did not use (a new noise model's).
NOISE_INPUT_FIELDS = ("grid.noise_matrix", "data.human_labels")


def differing_fields(stored: dict[str, Any], requested: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Every setting that differs between two config dicts: 'section.field' -> (stored, requested)."""
    differences: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(stored) | set(requested), key=str):
        a, b = stored.get(key), requested.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences |= differing_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            differences[f"{prefix}{key}"] = (a, b)
    return differences


def config_differences(stored: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Every setting that differs between two config dicts, as 'section.field: stored X, requested Y'."""
    return [f"{key}: stored {a!r}, requested {b!r}" for key, (a, b) in differing_fields(stored, requested).items()]
