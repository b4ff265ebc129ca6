"""The run folder being written: the replica table, the confusion counts and run.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.config import ReplicaSpec
from labelsim.rundir.files import atomic_write, check_writable, write_json, write_npz
from labelsim.rundir.reader import read_confusion, read_meta, read_rows
from labelsim.rundir.records import Replica, table_bytes
from labelsim.rundir.schema import (
    CONFUSION_FILE,
    FINAL_STATUSES,
    RESULT_FILES,
    RUN_FILE,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    TABLE_FILE,
    RunDirError,
)

@dataclass
class RunStore:
    """A run directory being written: the replica table, confusion counts and metadata."""

    path: Path
    meta: dict[str, Any]
    rows: list[Replica]
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
        check_writable(path)
        r = len(specs)
        store = cls(
            path=path,
            meta={SCHEMA_KEY: SCHEMA_VERSION, **meta},
            rows=[Replica.from_spec(spec) for spec in specs],
            counts=np.zeros((r, num_classes, num_classes), np.int64),
            transitions=np.zeros((r, num_classes, num_classes), np.int64),
        )
        store.flush()
        return store

    @classmethod
    def open(cls, path: Path) -> RunStore:
        """Read an existing run directory to go on writing it."""
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
        if transitions is None:
            raise RunDirError(f"{path / CONFUSION_FILE} lacks 'transitions'; restore it or start a new --out")
        return cls(path=path, meta=meta, rows=rows, counts=counts, transitions=transitions)

    def update(self, index: int, **results: Any) -> None:
        """Change a replica's results (written at the next flush)."""
        self.rows[index] = dataclasses.replace(self.rows[index], **results)
        self.dirty = True

    def flush(self) -> None:
        """Write the table and the counts (atomically), then run.json."""
        write_npz(self.path / CONFUSION_FILE, counts=self.counts, transitions=self.transitions)
        atomic_write(self.path / TABLE_FILE, table_bytes(self.rows))
        write_json(self.path / RUN_FILE, self.meta)
        self.dirty = False

    def pending(self) -> list[int]:
        """Replicas that still have to train."""
        return [i for i, row in enumerate(self.rows) if row.status not in FINAL_STATUSES]
