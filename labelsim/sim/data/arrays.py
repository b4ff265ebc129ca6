"""Arrays a user already has: one .npz file with ``x_train``, ``y_train``, ``x_test``, ``y_test``
and, optionally, ``class_names``.

Images are (N, H, W, C) with C 1 or 3, or (N, H, W) greyscale: uint8, integers in 0..255, or floats in
[0, 1] (scaled to 0..255 and rounded). Labels are integers 0..C-1, shape (N,) or (N, 1). Without
``class_names`` the classes are 0..max label, named class0, class1, ... Every class needs training and
test images.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from labelsim.sim.data.dataset import DataError, Dataset

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
_SAVE_HINT = (
    "save them with np.savez(PATH, x_train=..., y_train=..., x_test=..., y_test=..., class_names=...) "
    "(class_names optional)"
)


def load_npz_arrays(path: str | Path) -> Dataset:
    """The arrays of the .npz file ``path``, checked and converted to uint8 images and int32 labels."""
    file = Path(path).expanduser()
    if not file.is_file():
        state = "is a folder, not an .npz file" if file.is_dir() else "does not exist"
        raise DataError(f"--dataset npz:{path}: {file} {state}; {_SAVE_HINT}")
    arrays, names = _read(file)
    x_train = _images(arrays["x_train"], "x_train", file)
    x_test = _images(arrays["x_test"], "x_test", file)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{file}: x_train images are {x_train.shape[1:]} but x_test images {x_test.shape[1:]}; give both "
            "the same (H, W, C)"
        )
    y_train = _labels(arrays["y_train"], "y_train", len(x_train), file)
    y_test = _labels(arrays["y_test"], "y_test", len(x_test), file)
    classes = _class_names(names, y_train, y_test, file)
    _check_labels(y_train, y_test, classes, file)
    return Dataset(f"npz:{file.stem}", x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32), classes)


def _read(file: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The four required arrays and the optional class names, as stored."""
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{file} holds a single array, not named arrays; {_SAVE_HINT}")
        with loaded as npz:
            missing = [key for key in REQUIRED if key not in npz.files]
            if missing:
                raise DataError(f"{file} lacks the array(s) {', '.join(missing)} (it has {npz.files}); {_SAVE_HINT}")
            arrays = {key: npz[key] for key in REQUIRED}
            names = _stored_names(npz, file) if "class_names" in npz.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{file} cannot be read as an .npz file ({err}); {_SAVE_HINT}") from err
    return arrays, names


def _stored_names(npz: np.lib.npyio.NpzFile, file: Path) -> np.ndarray:
    try:
        return npz["class_names"]
    except ValueError as err:  # an object array: refused without pickle
        raise DataError(
            f"{file}: class_names is stored as Python objects; save it as a string array, "
            "class_names=np.array(['cat', 'dog', ...])"
        ) from err


def _images(x: np.ndarray, key: str, file: Path) -> np.ndarray:
    """(N, H, W, C) uint8 images from uint8, 0..255 integers or [0, 1] floats."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or min(x.shape[1:3], default=0) < 1:
        raise DataError(
            f"{file}: {key} has shape {x.shape}; images must be (N, H, W, C) with C = 1 or 3, or (N, H, W) greyscale"
        )
    if len(x) == 0:
        raise DataError(f"{file}: {key} holds no images; give at least one image per class")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "f":
        low, high = float(np.min(x)), float(np.max(x))
        if not (np.isfinite(low) and np.isfinite(high) and 0.0 <= low and high <= 1.0):
            raise DataError(
                f"{file}: {key} holds floats from {low} to {high}; scale them to [0, 1], or save uint8 0..255"
            )
        return np.rint(x * 255.0).astype(np.uint8)
    if x.dtype.kind in "iu":
        low, high = int(np.min(x)), int(np.max(x))
        if low < 0 or high > 255:
            raise DataError(f"{file}: {key} holds integers from {low} to {high}; save uint8 0..255 or floats in [0, 1]")
        return x.astype(np.uint8)
    raise DataError(f"{file}: {key} has dtype {x.dtype}; save uint8 0..255 or floats in [0, 1]")


def _labels(y: np.ndarray, key: str, n: int, file: Path) -> np.ndarray:
    """(N,) int64 labels from non-negative integer (N,) or (N, 1) arrays."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(
            f"{file}: {key} has shape {y.shape} for {n} images; give one integer label per image, shape ({n},) "
            "(one-hot labels: save y.argmax(axis=1))"
        )
    if y.dtype.kind not in "iu":
        raise DataError(f"{file}: {key} has dtype {y.dtype}; labels must be integers 0..C-1")
    if np.any(y < 0):
        raise DataError(f"{file}: {key} has label {int(y[y < 0][0])}; labels must be integers 0..C-1")
    return y.astype(np.int64)


def _class_names(names: np.ndarray | None, y_train: np.ndarray, y_test: np.ndarray, file: Path) -> tuple[str, ...]:
    if names is None:
        count = int(max(y_train.max(), y_test.max())) + 1
        if count > len(y_train):
            raise DataError(
                f"{file}: the largest label is {count - 1} but there are only {len(y_train)} training images; "
                "number the classes 0..C-1 without gaps"
            )
        return tuple(f"class{k}" for k in range(count))
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(
            f"{file}: class_names has shape {names.shape} and dtype {names.dtype}; save a 1-D string array, "
            "class_names=np.array(['cat', 'dog', ...])"
        )
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    if len(set(classes)) != len(classes):
        repeated = sorted({n for n in classes if classes.count(n) > 1})
        raise DataError(f"{file}: class_names repeats {repeated}; give every class one distinct name")
    return classes


def _check_labels(y_train: np.ndarray, y_test: np.ndarray, classes: tuple[str, ...], file: Path) -> None:
    """Labels within 0..C-1, at least two classes, and every class in both train and test."""
    count = len(classes)
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if np.any(y >= count):
            bad = int(y[y >= count][0])
            raise DataError(
                f"{file}: {key} has label {bad}, but class_names lists {count} classes (labels 0..{count - 1}); "
                "fix the labels or add the missing class names"
            )
    if count < 2:
        raise DataError(f"{file} has {count} class; a classifier needs at least two: add images of another class")
    for key, y in (("training", y_train), ("test", y_test)):
        empty = np.flatnonzero(np.bincount(y, minlength=count) == 0)
        if len(empty):
            k = int(empty[0])
            raise DataError(
                f"{file}: class {classes[k]!r} (label {k}) has no {key} images ({len(empty)} class(es) lack them); "
                "give every class train and test images, or drop the class and renumber the labels"
            )
