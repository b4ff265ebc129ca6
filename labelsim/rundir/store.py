"""The run folder being written: the replica table, the confusion counts and run.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.config import ReplicaSpec
from labelsim.rundir.files import atomic_write, check_writable, partial_writes, write_json, write_npz
from labelsim.rundir.reader import (
    read_confusion,
    read_meta,
    read_rows,
    recorded_rows,
    results_without_run_file,
    run_leftovers,
    trained_nothing,
)
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
        """Start a fresh run directory, all or nothing: run.json is written last, and a creation that fails
        removes what it wrote, so the folder holds a run (run.json) or no run files. Refuses a folder that
        holds a run or run files (``clear_stopped_creation`` removes those of a creation that was stopped)."""
        path = Path(path)
        if (path / RUN_FILE).exists():
            raise RunDirError(
                f"{path} already holds a run; pass --resume to continue it, or choose a new --out"
            )
        if run_leftovers(path):
            raise results_without_run_file(path)
        check_writable(path)
        r = len(specs)
        store = cls(
            path=path,
            meta={SCHEMA_KEY: SCHEMA_VERSION, **meta},
            rows=[Replica.from_spec(spec) for spec in specs],
            counts=np.zeros((r, num_classes, num_classes), np.int64),
            transitions=np.zeros((r, num_classes, num_classes), np.int64),
        )
        try:
            store.flush()
        except BaseException:
            for file in [path / name for name in RESULT_FILES] + partial_writes(path):
                file.unlink(missing_ok=True)
            raise
        return store

    @classmethod
    def open(cls, path: Path) -> RunStore:
        """Read an existing run directory to go on writing it."""
        path = Path(path)
        if not path.is_dir():
            what = "a file, not a folder" if path.exists() else "not there"
            raise RunDirError(f"{path} is {what}; give the run directory a run wrote (the folder with run.json)")
        meta = read_meta(path)
        rows = recorded_rows(meta, read_rows(path))
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

    def append(self, specs: list[ReplicaSpec]) -> None:
        """Add replicas to train after the stored ones (numbered on from them), with empty counts; the stored
        rows and counts are left as they are. Written at the next flush, run.json last: until then a reader
        sees the run without them (``recorded_rows``)."""
        start = len(self.rows)
        self.rows += [Replica.from_spec(dataclasses.replace(spec, replica=start + i)) for i, spec in enumerate(specs)]
        empty = np.zeros((len(specs), *self.counts.shape[1:]), np.int64)
        self.counts = np.concatenate([self.counts, empty])
        self.transitions = np.concatenate([self.transitions, empty])
        self.meta["replicas"] = len(self.rows)
        self.dirty = True

    def pending(self) -> list[int]:
        """Replicas that still have to train."""
        return [i for i, row in enumerate(self.rows) if row.status not in FINAL_STATUSES]


def grid_point(spec: ReplicaSpec) -> tuple:
    """What a replica trains, whatever its number in the table: its model, noise, training set, repeat and
    learning-rate scale (rates as replicas.csv keeps them; the noise model is irrelevant at rate 0, as in
    ``labelsim.sim.grid.build_replicas``). Its experiment tag is left out: a point two experiments share
    (the clean full-size one) trains once."""
    rate = float(f"{spec.noise_rate:.6g}")
    noisy = rate > 0 or spec.class_noise is not None or spec.group_noise is not None
    class_noise = None if spec.class_noise is None else tuple(float(f"{r:.6g}") for r in spec.class_noise)
    group_noise = None if spec.group_noise is None else tuple(float(f"{r:.6g}") for r in spec.group_noise)
    return (spec.model, spec.noise_model if noisy else "", rate, spec.train_size, spec.class_sizes, class_noise,
            spec.repeat, spec.label, float(f"{spec.lr_scale:.6g}"), spec.grouping, spec.group_sizes,
            group_noise)  # fmt: skip


def grid_changes(rows: list[Replica], specs: list[ReplicaSpec]) -> tuple[list[Replica], list[ReplicaSpec]]:
    """(stored replicas that ``specs`` lack, specs the stored replicas lack), by grid point."""
    stored = {grid_point(row.spec) for row in rows}
    wanted = {grid_point(spec) for spec in specs}
    dropped = [row for row in rows if grid_point(row.spec) not in wanted]
    return dropped, [spec for spec in specs if grid_point(spec) not in stored]


def clear_stopped_creation(path: Path) -> list[str]:
    """Remove what a creation stopped part-way left in a folder without run.json (partial writes, zero counts,
    replicas never started: nothing trained, nothing lost); returns the removed names. A RunDirError when the
    files hold results. Call it while holding the folder's claim, so no live creation is removed."""
    path = Path(path)
    leftovers = run_leftovers(path)
    if not leftovers or (path / RUN_FILE).exists():
        return []
    if not trained_nothing(path):
        raise results_without_run_file(path)
    for file in leftovers:
        file.unlink(missing_ok=True)
    return [file.name for file in leftovers]
