"""The one owner of the run directory's format: file names, the schema version, the replica
record, atomic writes, the store that training writes through (under an exclusive claim on the folder), and the reader that
every command uses. Jax-free, so analysis and reports never import the training code.

- ``run.json``: schema version, config, versions, device, keys, class counts, times, status;
- ``replicas.csv``: one row per replica (coordinates, status, accuracy, steps, seconds);
- ``confusion.npz``: ``counts`` (R, C, C) test confusion matrices in replica order (rows true,
  columns predicted) and ``transitions`` (R, C, C) realized label-noise counts (clean, noisy);
- ``checkpoint.npz``: the in-flight slot states, so a resumed run does not restart a chunk;
- ``.lock``: the writing process's claim on the folder (``lock``).

Every file is replaced atomically (write a temporary file, then rename), so a kill at any
moment leaves the directory readable. A flush writes confusion.npz before replicas.csv and
run.json last: a replica marked finished in the table always has its counts on disk (a kill
between the writes can only leave counts of a replica the table still calls running, which
the resumed run overwrites). A folder is a run exactly when it holds run.json: creation writes
it last and removes what it wrote when it fails, and the leftovers of a creation killed part-way
(no run.json, nothing trained) are recognised and removed by the next fresh run
(``clear_stopped_creation``).
"""

from labelsim.rundir.lock import LOCK_FILE, claim
from labelsim.rundir.files import atomic_write, remove_partial_writes, write_json, write_npz
from labelsim.rundir.reader import (
    Run,
    check_schema,
    class_shares,
    config_differences,
    load_run,
    read_confusion,
    read_meta,
    read_rows,
    results_without_run_file,
    run_leftovers,
    trained_nothing,
)
from labelsim.rundir.records import Replica, specs_match, table_bytes
from labelsim.rundir.schema import (
    CHECKPOINT_FILE,
    COLUMNS,
    CONFUSION_FILE,
    FINAL_STATUSES,
    NPZ_ERRORS,
    RESULT_FILES,
    RUN_FILE,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    TABLE_FILE,
    RunDirError,
)
from labelsim.rundir.store import RunStore, clear_stopped_creation

__all__ = [
    "CHECKPOINT_FILE", "COLUMNS", "LOCK_FILE", "claim", "clear_stopped_creation", "CONFUSION_FILE",
    "FINAL_STATUSES", "NPZ_ERRORS", "RESULT_FILES",
    "RUN_FILE", "SCHEMA_KEY", "SCHEMA_VERSION", "TABLE_FILE", "Replica", "Run", "RunDirError",
    "RunStore", "atomic_write", "check_schema", "class_shares", "config_differences", "load_run",
    "read_confusion", "read_meta", "read_rows", "remove_partial_writes", "results_without_run_file",
    "run_leftovers", "specs_match", "table_bytes", "trained_nothing", "write_json", "write_npz",
]  # fmt: skip
