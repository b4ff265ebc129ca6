"""An exclusive claim on a run folder for the life of the process that writes it.

Two processes that write one folder (two fresh runs racing to the same ``--out``, or a second
``--resume`` of a live run) would interleave their files and both report success. The writer
holds an OS lock (``flock``) on ``RUN_DIR/.lock`` while it trains; the file records the
holder's pid, host and start time for the message another writer gets. The operating system
drops the lock when the holder exits in any way (even ``kill -9`` or a crash), so a stale
claim cannot outlive its process and there is nothing to clear by hand. The file stays after a
run; a claim that created the folder removes it (and the folder) when the folder holds nothing
else at the end, so a run that could not start leaves no folder behind. A claim checks that the
file it locked is still the folder's lock file, so one removed meanwhile is never mistaken for
it. On a network file system whose ``flock`` is not shared between machines, two hosts can
still both write.
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
OPEN_ATTEMPTS = 5  # a claim retries while other claims create and remove the folder under it

try:
    import fcntl
except ImportError:  # Windows: no flock; the claim is then advisory only
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def claim(path: Path) -> Iterator[Path]:
    """Hold the folder's lock (creating the folder) until the block ends; RunDirError naming
    the holder when another process holds it. A folder the claim created is removed at the end
    when nothing but the lock file is in it."""
    path = Path(path)
    created = _first_missing(path)
    handle = _open_locked(path)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_owner()) + "\n")
        handle.flush()
        yield path / LOCK_FILE
    finally:
        if created is not None:
            _remove_if_unused(path, created)
        handle.close()  # closing the file releases the lock


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None when ``path`` exists)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _open_locked(path: Path) -> IO[str]:
    """The folder's lock file, open and locked by this process (the folder is created if needed)."""
    lock_path = path / LOCK_FILE
    for _ in range(OPEN_ATTEMPTS):
        path.mkdir(parents=True, exist_ok=True)
        try:
            handle = lock_path.open("a+", encoding="utf-8")
        except FileNotFoundError:  # a claim that had created the folder removed it meanwhile
            continue
        _lock(handle, lock_path)
        if _is_current(handle, lock_path):
            return handle
        handle.close()  # the file was removed after it was opened: lock the folder's new one
    raise RunDirError(
        f"{path} is being created and removed by other labelsim processes; try again once they are done, "
        "or choose another --out"
    )


def _is_current(handle: IO[str], lock_path: Path) -> bool:
    """Whether the open file is still the one at ``lock_path``."""
    try:
        now = os.stat(lock_path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _remove_if_unused(path: Path, outermost: Path) -> None:
    """Remove the lock file and the folders up to ``outermost`` when nothing else is in them. Another
    process that writes there meanwhile makes a removal fail, and the folder stays as it is."""
    try:
        if any(entry.name != LOCK_FILE for entry in os.scandir(path)):
            return
        (path / LOCK_FILE).unlink()
        folder = path
        while True:
            folder.rmdir()
            if folder == outermost:
                return
            folder = folder.parent
    except OSError:
        return


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
