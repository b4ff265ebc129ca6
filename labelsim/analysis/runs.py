"""Read a run directory (run.json, replicas.csv, confusion.npz) into plain numpy structures.

Analysis reads only these files, never the training code. Every fault in a run directory
becomes a ``RunDirError`` whose message says what is wrong and what to do.
"""

from __future__ import annotations

import csv
import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RUN_JSON = "run.json"
REPLICAS_CSV = "replicas.csv"
CONFUSION_NPZ = "confusion.npz"

REQUIRED_COLUMNS = (
    "replica",
    "experiment",
    "model",
    "noise_model",
    "noise_rate",
    "train_size",
    "repeat",
    "accuracy",
    "status",
)


class RunDirError(Exception):
    """A run directory that cannot be analysed; the message says what to do."""


@dataclass(frozen=True)
class Replica:
    """One row of replicas.csv, typed."""

    replica: int
    experiment: str
    model: str
    noise_model: str
    noise_rate: float
    train_size: int
    repeat: int
    realized_noise: float
    accuracy: float
    status: str
    diverged_step: int | None = None
    seconds: float = math.nan
    class_sizes: tuple[int, ...] | None = None
    class_noise: tuple[float, ...] | None = None
    label: str = ""

    @property
    def finished(self) -> bool:
        """True when the replica finished training and was evaluated."""
        return self.status == "finished"

    @property
    def is_custom(self) -> bool:
        """True for per-class experiments (class sizes or class noise given, or 'custom')."""
        return (
            self.experiment == "custom"
            or self.class_sizes is not None
            or self.class_noise is not None
        )


@dataclass(frozen=True)
class Run:
    """A loaded run: metadata, the replica table and the confusion counts (R, C, C)."""

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
        return [r for r in self.replicas if r.status in ("pending", "running")]

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
    meta = _read_meta(path)
    replicas = _read_replicas(path)
    classes = _classes(meta, path)
    counts, transitions = _read_confusion(path, len(replicas), len(classes))
    shares = _class_shares(meta, len(classes))
    return Run(path, meta, classes, replicas, counts, transitions, shares)


def _read_meta(path: Path) -> dict[str, Any]:
    file = path / RUN_JSON
    if not file.is_file():
        raise RunDirError(f"{file} is missing; is {path} a labelsim run directory?")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"cannot read {file} ({exc}); rewrite or restore the file") from None
    if not isinstance(meta, dict):
        raise RunDirError(f"{file} holds no JSON object; restore the file the run wrote")
    return meta


def _classes(meta: dict[str, Any], path: Path) -> tuple[str, ...]:
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise RunDirError(f"{path / RUN_JSON} lists no class names under 'classes'")
    return tuple(str(c) for c in classes)


def _class_shares(meta: dict[str, Any], num_classes: int) -> np.ndarray:
    """Share of each class in the training data: 'train_class_counts' if recorded, else 1/C."""
    counts = meta.get("train_class_counts")
    if isinstance(counts, list) and len(counts) == num_classes and sum(counts) > 0:
        arr = np.asarray(counts, dtype=float)
        return arr / arr.sum()
    return np.full(num_classes, 1.0 / num_classes)


def _read_replicas(path: Path) -> tuple[Replica, ...]:
    file = path / REPLICAS_CSV
    if not file.is_file():
        raise RunDirError(f"{file} is missing; the run has written no replica table yet")
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RunDirError(f"{file} lacks column(s) {', '.join(missing)}")
            rows = [_parse_row(row, file, i + 2) for i, row in enumerate(reader)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"cannot read {file} ({exc})") from None
    if not rows:
        raise RunDirError(f"{file} has no replica rows")
    rows.sort(key=lambda r: r.replica)
    if [r.replica for r in rows] != list(range(len(rows))):
        raise RunDirError(f"{file}: replica ids are not 0..{len(rows) - 1}")
    return tuple(rows)


def _parse_row(row: dict[str, str], file: Path, line: int) -> Replica:
    try:
        return Replica(
            replica=int(row["replica"]),
            experiment=row["experiment"].strip(),
            model=row["model"].strip(),
            noise_model=row["noise_model"].strip(),
            noise_rate=float(row["noise_rate"]),
            train_size=int(float(row["train_size"])),
            repeat=int(row["repeat"]),
            realized_noise=_float(row.get("realized_noise")),
            accuracy=_float(row.get("accuracy")),
            status=row["status"].strip(),
            diverged_step=_int_or_none(row.get("diverged_step")),
            seconds=_float(row.get("seconds")),
            class_sizes=_int_tuple(row.get("class_sizes")),
            class_noise=_float_tuple(row.get("class_noise")),
            label=(row.get("label") or "").strip(),
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise RunDirError(f"{file} line {line}: malformed value ({exc})") from None


def _float(text: str | None) -> float:
    return float(text) if text not in (None, "") else math.nan


def _int_or_none(text: str | None) -> int | None:
    return int(float(text)) if text not in (None, "") else None


def _int_tuple(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(float(v)) for v in text.split(";")) if text else None


def _float_tuple(text: str | None) -> tuple[float, ...] | None:
    return tuple(float(v) for v in text.split(";")) if text else None


def _read_confusion(path: Path, n_rep: int, n_cls: int) -> tuple[np.ndarray, np.ndarray | None]:
    file = path / CONFUSION_NPZ
    if not file.is_file():
        raise RunDirError(f"{file} is missing; the run has not evaluated any replica yet")
    try:
        with np.load(file, allow_pickle=False) as data:
            counts = np.asarray(data["counts"], dtype=np.int64)
            transitions = np.asarray(data["transitions"]) if "transitions" in data else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise RunDirError(f"cannot read 'counts' from {file} ({exc})") from None
    if counts.shape != (n_rep, n_cls, n_cls):
        raise RunDirError(
            f"{file}: counts has shape {counts.shape}, expected {(n_rep, n_cls, n_cls)} "
            "(replicas x classes x classes); the files come from different runs"
        )
    if transitions is not None and transitions.shape != counts.shape:
        transitions = None
    return counts, transitions
