"""Local CIFAR-10 copies: a folder of .npz files, the python archive, or its extracted folder.

Needs nothing beyond numpy; the pickled batches are read with an unpickler that builds arrays only.
"""

from __future__ import annotations

import importlib
import io
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.sim.data.dataset import DataError, Dataset

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_NPZ_FILES = tuple(f"train_{k}.npz" for k in range(5)) + ("test.npz",)
_BATCH_FILES = tuple(f"data_batch_{k}" for k in range(1, 6)) + ("test_batch",)
ARCHIVE = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"


def find_cifar10_local(path: str | Path) -> tuple[str, Path] | None:
    """The layout ("npz", "archive" or "batches") and file/folder of a local CIFAR-10 copy."""
    path = Path(path).expanduser()
    if path.is_file():
        return ("archive", path) if tarfile.is_tarfile(path) else None
    if not path.is_dir():
        return None
    if all((path / f).is_file() for f in _NPZ_FILES):
        return "npz", path
    for folder in (path, path / BATCH_DIR):
        if all((folder / f).is_file() for f in (*_BATCH_FILES, "batches.meta")):
            return "batches", folder
    if (path / ARCHIVE).is_file():
        return "archive", path / ARCHIVE
    return None


def load_cifar10_local(path: str | Path) -> Dataset:
    """CIFAR-10 in the original order from .npz files, the python archive, or its folder."""
    found = find_cifar10_local(path)
    if found is None:
        raise DataError(no_cifar10_message(Path(path)))
    layout, where = found
    loaders: dict[str, Callable[[Path], Dataset]] = {
        "npz": _load_npz,
        "archive": _load_archive,
        "batches": _load_batch_folder,
    }
    return loaders[layout](where)


def no_cifar10_message(path: Path) -> str:
    """Why ``path`` is no local CIFAR-10 copy, and the layouts that would be."""
    if not path.exists():
        state = "does not exist"
    else:
        state = "is not a CIFAR-10 archive" if path.is_file() else "holds no CIFAR-10 copy"
    return (
        f"{path} {state}. A local CIFAR-10 copy is one of: a folder with "
        f"{', '.join(_NPZ_FILES)}; the archive {ARCHIVE} (or a folder holding it); or the "
        f"extracted folder {BATCH_DIR}/ with {', '.join(_BATCH_FILES)} and batches.meta "
        "(or a folder holding it). Point --data-dir at one of these, or use --dataset synthetic."
    )


def _load_npz(folder: Path) -> Dataset:
    parts = [_read_npz(folder / f) for f in _NPZ_FILES]
    x_train = np.concatenate([x for x, _ in parts[:5]])
    y_train = np.concatenate([y for _, y in parts[:5]])
    x_test, y_test = parts[5]
    return _cifar10(x_train, y_train, x_test, y_test, CIFAR10_CLASSES)


def _read_npz(file: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(file) as npz:
        if "image" not in npz or "label" not in npz:
            raise DataError(f"{file} lacks the arrays 'image' and 'label'; re-create the copy")
        return npz["image"], npz["label"]


def _load_batch_folder(folder: Path) -> Dataset:
    def read(name: str) -> bytes:
        return (folder / name).read_bytes()

    return _from_pickles(read, folder)


def _load_archive(file: Path) -> Dataset:
    try:
        with tarfile.open(file, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read(name: str) -> bytes:
                if name not in members:
                    raise DataError(f"{file} has no member {name}; use the original {ARCHIVE}")
                handle = tar.extractfile(members[name])
                assert handle is not None  # regular files always have a handle
                return handle.read()

            return _from_pickles(read, file)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(
            f"{file} cannot be read ({err}); download {ARCHIVE} again or use the .npz copy"
        ) from err


def _from_pickles(read: Callable[[str], bytes], where: Path) -> Dataset:
    """Decode the python-release batches (train 1-5, test) through ``read(member name)``."""
    batches = [_batch_arrays(_unpickle(read(name), where)) for name in _BATCH_FILES]
    meta = _unpickle(read("batches.meta"), where)
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"])
    x_train = np.concatenate([x for x, _ in batches[:5]])
    y_train = np.concatenate([y for _, y in batches[:5]])
    x_test, y_test = batches[5]
    return _cifar10(x_train, y_train, x_test, y_test, names)


def _batch_arrays(batch: dict[bytes, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Planar rows (R plane, G plane, B plane; each 32x32 row-major) -> (N, 32, 32, 3)."""
    rows = np.asarray(batch[b"data"], np.uint8)
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(batch[b"labels"])


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: no other code can run."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        if module.startswith("numpy.") and module.endswith("multiarray"):
            return getattr(_numpy_multiarray(), name)
        return super().find_class(module, name)


def _numpy_multiarray() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


def _unpickle(raw: bytes, where: Path) -> dict[bytes, Any]:
    try:
        return _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DataError(
            f"{where} holds a CIFAR-10 batch that cannot be read ({err}); use the original "
            f"{ARCHIVE} or the .npz copy"
        ) from err


def _cifar10(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    names: tuple[str, ...],
) -> Dataset:
    return Dataset(
        "cifar10",
        np.asarray(x_train, np.uint8),
        np.asarray(y_train, np.int32),
        np.asarray(x_test, np.uint8),
        np.asarray(y_test, np.int32),
        names,
    )
