"""Atomic writes: every file of a run folder is replaced whole (a temporary file in the same
folder, then a rename), so a kill at any moment leaves the folder readable."""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.rundir.schema import RESULT_FILES, TEMP_SUFFIX, RunDirError

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


def partial_writes(path: Path) -> list[Path]:
    """The temporary files of writes a kill interrupted (never results: a write renames its file when complete)."""
    return [file for name in RESULT_FILES for file in Path(path).glob(f".{name}.*{TEMP_SUFFIX}") if file.is_file()]


def remove_partial_writes(path: Path) -> list[Path]:
    """Delete the temporary files of writes a kill interrupted (never the results themselves)."""
    stale = partial_writes(path)
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


def check_writable(path: Path) -> None:
    """Make ``path`` and prove it can be written, or a RunDirError that says to choose another."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"cannot write to {path} ({err.strerror}); choose another --out") from None
