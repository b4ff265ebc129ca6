"""The results store: one run directory that analysis, charts and users read with ordinary tools.

- ``run.json``: config, versions, device, keys, times, status;
- ``replicas.csv``: one row per replica (coordinates, status, accuracy, steps, seconds);
- ``confusion.npz``: ``counts`` (R, C, C) test confusion matrices in replica order (rows true,
  columns predicted) and ``transitions`` (R, C, C) realized label-noise counts (clean, noisy);
- ``checkpoint.npz``: the in-flight slot states, so a resumed run does not restart a chunk.

Every file is replaced atomically (write a temporary file, then rename), so a kill at any
moment leaves the directory readable. A flush writes confusion.npz before replicas.csv and
run.json last: a replica marked finished in the table always has its counts on disk (a kill
between the writes can only leave counts of a replica the table still calls running, which
the resumed run overwrites).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.config import ConfigError, ReplicaSpec

RUN_FILE, TABLE_FILE, CONFUSION_FILE = "run.json", "replicas.csv", "confusion.npz"
CHECKPOINT_FILE = "checkpoint.npz"
RESULT_FILES = (RUN_FILE, TABLE_FILE, CONFUSION_FILE, CHECKPOINT_FILE)
TEMP_SUFFIX = ".tmp"  # of a file being written; renamed over its target when complete
# What a damaged or truncated .npz raises when it is opened or one of its arrays is read.
NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)

COLUMNS = (
    "replica", "experiment", "model", "noise_model", "noise_rate", "train_size", "repeat",
    "realized_noise", "accuracy", "status", "steps", "total_steps", "diverged_step", "seconds",
    "class_sizes", "class_noise", "label", "lr_scale",
)  # fmt: skip
FINAL_STATUSES = ("finished", "diverged")


class RunDirError(ConfigError):
    """A run directory that cannot be used as asked; the message says what to do."""


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
    """The mode ``open()`` gives new files under the process umask (mkstemp's is 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(path: Path) -> list[Path]:
    """Delete the temporary files of writes a kill interrupted (never the results themselves)."""
    stale = [
        file
        for name in RESULT_FILES
        for file in Path(path).glob(f".{name}.*{TEMP_SUFFIX}")
        if file.is_file()
    ]
    for file in stale:
        file.unlink(missing_ok=True)
    return stale


def write_json(path: Path, payload: Any) -> None:
    """Atomic JSON write."""
    atomic_write(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Atomic compressed .npz write."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


@dataclass
class ReplicaRow:
    """The mutable record of one replica."""

    spec: ReplicaSpec
    realized_noise: float = float("nan")
    accuracy: float = float("nan")
    status: str = "pending"
    steps: int = 0
    total_steps: int = 0
    diverged_step: int | None = None
    seconds: float = 0.0

    def to_csv(self) -> dict[str, Any]:
        """The CSV row."""
        s = self.spec
        return {
            "replica": s.replica, "experiment": s.experiment, "model": s.model,
            "noise_model": s.noise_model, "noise_rate": f"{s.noise_rate:.6g}",
            "train_size": s.train_size, "repeat": s.repeat,
            "realized_noise": _fmt(self.realized_noise), "accuracy": _fmt(self.accuracy),
            "status": self.status, "steps": self.steps, "total_steps": self.total_steps,
            "diverged_step": "" if self.diverged_step is None else self.diverged_step,
            "seconds": f"{self.seconds:.3f}",
            "class_sizes": "" if s.class_sizes is None else ";".join(map(str, s.class_sizes)),
            "class_noise": "" if s.class_noise is None else ";".join(f"{r:.6g}" for r in s.class_noise),
            "label": s.label, "lr_scale": f"{s.lr_scale:.6g}",
        }  # fmt: skip

    @classmethod
    def from_csv(cls, row: dict[str, str]) -> ReplicaRow:
        """Parse one CSV row back."""
        spec = ReplicaSpec(
            replica=int(row["replica"]),
            experiment=row["experiment"],
            repeat=int(row["repeat"]),
            noise_model=row["noise_model"],
            noise_rate=float(row["noise_rate"]),
            train_size=int(row["train_size"]),
            model=row["model"],
            class_sizes=tuple(int(v) for v in row["class_sizes"].split(";")) if row["class_sizes"] else None,
            class_noise=tuple(float(v) for v in row["class_noise"].split(";")) if row["class_noise"] else None,
            label=row.get("label", ""),
            lr_scale=float(row.get("lr_scale") or 1.0),
        )
        return cls(
            spec=spec,
            realized_noise=float(row["realized_noise"] or "nan"),
            accuracy=float(row["accuracy"] or "nan"),
            status=row["status"],
            steps=int(row["steps"]),
            total_steps=int(row["total_steps"]),
            diverged_step=int(row["diverged_step"]) if row["diverged_step"] else None,
            seconds=float(row["seconds"]),
        )


def _fmt(value: float) -> str:
    return "" if value != value else f"{value:.6f}"


def specs_match(a: ReplicaSpec, b: ReplicaSpec) -> bool:
    """Same grid point (the CSV round trip rounds rates to 6 significant digits)."""
    ident = lambda s: (s.replica, s.experiment, s.repeat, s.noise_model, s.train_size, s.model, s.class_sizes, s.label, s.lr_scale)  # noqa: E731
    return (
        ident(a) == ident(b)
        and abs(a.noise_rate - b.noise_rate) < 1e-6
        and _close(a.class_noise, b.class_noise)
    )


def _close(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))


@dataclass
class RunStore:
    """A run directory being written: the replica table, confusion counts and metadata."""

    path: Path
    meta: dict[str, Any]
    rows: list[ReplicaRow]
    counts: np.ndarray  # (R, C, C) int64
    transitions: np.ndarray  # (R, C, C) int64
    dirty: bool = field(default=False)

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any], specs: list[ReplicaSpec], num_classes: int) -> RunStore:
        """Start a fresh run directory; refuse one that already holds a run."""
        path = Path(path)
        if (path / RUN_FILE).exists():
            raise RunDirError(
                f"{path} already holds a run; pass --resume to continue it, or choose a new --out"
            )
        leftovers = [name for name in RESULT_FILES if (path / name).exists()]
        if leftovers:
            raise RunDirError(
                f"{path} holds {', '.join(leftovers)} but no {RUN_FILE}: a damaged run; "
                "choose a new --out (or restore its run.json and --resume it)"
            )
        _check_writable(path)
        r = len(specs)
        store = cls(
            path=path,
            meta=meta,
            rows=[ReplicaRow(spec) for spec in specs],
            counts=np.zeros((r, num_classes, num_classes), np.int64),
            transitions=np.zeros((r, num_classes, num_classes), np.int64),
        )
        store.flush()
        return store

    @classmethod
    def open(cls, path: Path) -> RunStore:
        """Read an existing run directory, with a clear error for each kind of damage."""
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"{path} is not a run directory (it does not exist)")
        meta = read_meta(path)
        rows = read_rows(path)
        recorded = meta.get("replicas")
        if isinstance(recorded, int) and recorded != len(rows):
            raise RunDirError(
                f"{path / TABLE_FILE} has {len(rows)} replica rows but {path / RUN_FILE} records {recorded}: "
                "the table is truncated or damaged; restore it from a backup or start a new --out"
            )
        counts, transitions = read_confusion(path, len(rows))
        return cls(path=path, meta=meta, rows=rows, counts=counts, transitions=transitions)

    def update(self, index: int, **fields: Any) -> None:
        """Change a replica's row (written at the next flush)."""
        row = self.rows[index]
        for name, value in fields.items():
            setattr(row, name, value)
        self.dirty = True

    def flush(self) -> None:
        """Write the table and the counts (atomically), then run.json."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row.to_csv() for row in self.rows)
        write_npz(self.path / CONFUSION_FILE, counts=self.counts, transitions=self.transitions)
        atomic_write(self.path / TABLE_FILE, buffer.getvalue().encode())
        write_json(self.path / RUN_FILE, self.meta)
        self.dirty = False

    def pending(self) -> list[int]:
        """Replicas that still have to train."""
        return [i for i, row in enumerate(self.rows) if row.status not in FINAL_STATUSES]


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"cannot write to {path} ({err.strerror}); choose another --out") from None


def read_meta(path: Path) -> dict[str, Any]:
    """run.json, or a RunDirError that says what is wrong."""
    file = path / RUN_FILE
    if not file.exists():
        others = [name for name in RESULT_FILES[1:] if (path / name).exists()]
        if others:
            raise RunDirError(
                f"{file} is missing but {path} holds {', '.join(others)}: the run directory is damaged; "
                f"restore {RUN_FILE} from a backup or start a new --out"
            )
        raise RunDirError(f"{file} is missing: {path} is not a labelsim run directory")
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise RunDirError(
            f"{file} is unreadable ({type(err).__name__}: {err}); it is damaged or truncated: "
            "restore it from a backup or start a new --out"
        ) from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise RunDirError(f"{file} has no config; it was not written by labelsim")
    return meta


def read_rows(path: Path) -> list[ReplicaRow]:
    """replicas.csv, or a RunDirError that says what is wrong."""
    file = path / TABLE_FILE
    if not file.exists():
        raise RunDirError(f"{file} is missing; the run directory is incomplete — start a new --out")
    try:
        with file.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise RunDirError(f"{file} lacks column(s) {sorted(missing)}; it is damaged or not labelsim's")
            rows = [ReplicaRow.from_csv(row) for row in reader]
    except RunDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, csv.Error) as err:
        raise RunDirError(
            f"{file} is unreadable ({type(err).__name__}: {err}); it is damaged or truncated: "
            "restore it from a backup or start a new --out"
        ) from None
    if [row.spec.replica for row in rows] != list(range(len(rows))):
        raise RunDirError(f"{file} is damaged: replica numbers are not 0..{len(rows) - 1} in order")
    return rows


def read_confusion(path: Path, replicas: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts, transitions) from confusion.npz, checked against the replica count."""
    file = path / CONFUSION_FILE
    if not file.exists():
        raise RunDirError(f"{file} is missing; the run directory is incomplete — start a new --out")
    try:
        with np.load(file) as data:
            counts, transitions = data["counts"], data["transitions"]
    except NPZ_ERRORS as err:
        raise RunDirError(
            f"{file} is unreadable ({type(err).__name__}: {err}); it is damaged or truncated: "
            "restore it from a backup or start a new --out"
        ) from None
    if counts.ndim != 3 or counts.shape[0] != replicas or counts.shape != transitions.shape:
        raise RunDirError(
            f"{file} holds counts of shape {counts.shape} and transitions of shape {transitions.shape}, "
            f"expected ({replicas}, C, C) each: the files come from different runs; restore them or start a new --out"
        )
    return counts.astype(np.int64), transitions.astype(np.int64)


def config_differences(stored: dict[str, Any], requested: dict[str, Any], prefix: str = "") -> list[str]:
    """Every setting that differs between two config dicts, as 'section.field: stored X, requested Y'."""
    differences: list[str] = []
    for key in sorted(set(stored) | set(requested), key=str):
        a, b = stored.get(key), requested.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}: stored {a!r}, requested {b!r}")
    return differences
