"""An exclusive claim on a run folder for the life of the process that writes it.

Two processes that write one folder (two fresh runs racing to the same ``--out``, or a second
``--resume`` of a live run) would interleave their files and both report success. The writer
holds an OS lock (``flock``) on ``RUN_DIR/.lock`` while it trains; the file records the
holder's pid, host and start time for the message another writer gets. The operating system
drops the lock when the holder exits in any way (even ``kill -9`` or a crash), so a stale
claim cannot outlive its process and there is nothing to clear by hand. The file itself stays
(removing it would let a late opener lock a file no one else sees). On a network file system
whose ``flock`` is not shared between machines, two hosts can still both write.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from pathlib import Path
from typing import IO, Iterator

from labelsim.rundir.schema import RunDirError

LOCK_FILE = ".lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; the claim is then advisory only
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def claim(path: Path) -> Iterator[Path]:
    """Hold the folder's lock (creating the folder) until the block ends; RunDirError naming
    the holder when another process holds it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lock_path = path / LOCK_FILE
    handle = lock_path.open("a+", encoding="utf-8")
    try:
        _lock(handle, lock_path)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_owner()) + "\n")
        handle.flush()
        yield lock_path
    finally:
        handle.close()  # closing the file releases the lock


def _lock(handle: IO[str], lock_path: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = _describe(handle.read())
        handle.close()
        raise RunDirError(
            f"{lock_path.parent} is being written by another labelsim process ({holder}); wait for it to "
            "finish (then --resume if it stopped early), or choose another --out"
        ) from None


def _owner() -> dict[str, object]:
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started}


def _describe(text: str) -> str:
    try:
        owner = json.loads(text)
        return f"pid {owner['pid']} on {owner['host']}, since {owner['started']}"
    except (ValueError, KeyError, TypeError):
        return "its owner is not recorded yet"
