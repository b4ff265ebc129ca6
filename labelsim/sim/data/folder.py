"""A user's images in class folders: ``PATH/train/<class>/`` and ``PATH/test/<class>/``, or
``PATH/<class>/`` split per class by a test fraction and seed.

Class names are the folder names, sorted. Images (.png, .jpg, .jpeg, also in subfolders) are decoded
with Pillow, converted to RGB or greyscale, squashed to ``side x side`` pixels (bilinear) and cached
once as uint8 arrays, beside the data as ``PATH/.labelsim_cache_<side>.npz`` or in the folder named
by ``LABELSIM_CACHE_DIR``. The cache is keyed by every file's path, size and modification time, so
adding, removing or rewriting an image decodes the folder again.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.sim.data.dataset import DataError, Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CACHE_ENV = "LABELSIM_CACHE_DIR"
_CACHE_VERSION = 1  # bump when the decoding changes, so old caches are decoded again
_GREY_MODES = frozenset({"1", "L", "LA"})
_COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})
_TRAIN, _TEST, _UNSPLIT = 0, 1, -1
_LAYOUT = (
    "PATH must hold train/<class>/ and test/<class>/ image folders, or one <class>/ folder per class "
    "(split by --test-fraction)"
)


@dataclass(frozen=True)
class _Listing:
    """Every image file of a folder dataset, in a fixed order, with its class and part."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: np.ndarray  # (N,) int32 class index
    parts: np.ndarray  # (N,) int8: _TRAIN, _TEST, or _UNSPLIT (one folder, split by fraction)


def load_folder(path: str | Path, side: int = 32, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The images under ``path`` as a Dataset; ``side`` 0 keeps the images' own (equal) size."""
    root = Path(path).expanduser()
    listing = _list_folder(root)
    train, test = _split(listing, test_fraction, seed)
    images = _cached_images(listing, side)
    return Dataset(
        f"folder:{root.resolve().name}",
        images[train],
        listing.labels[train],
        images[test],
        listing.labels[test],
        listing.classes,
    )


# ------------------------------------------------------------------ listing


def _list_folder(root: Path) -> _Listing:
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"--dataset folder:{root}: {root} {state}; {_LAYOUT}")
    train, test = root / "train", root / "test"
    if train.is_dir() != test.is_dir():
        have, lack = ("train", "test") if train.is_dir() else ("test", "train")
        raise DataError(
            f"{root} has {have}/ but no {lack}/: add {root / lack}/<class>/ folders, or put the class folders "
            f"directly in {root} to split them by --test-fraction"
        )
    if not train.is_dir():
        classes = _class_folders(root)
        return _listing(root, tuple(classes), [(classes, _UNSPLIT)])
    train_classes, test_classes = _class_folders(train), _class_folders(test)
    if set(train_classes) != set(test_classes):
        raise DataError(_class_mismatch_message(train, test, set(train_classes), set(test_classes)))
    return _listing(root, tuple(train_classes), [(train_classes, _TRAIN), (test_classes, _TEST)])


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted), for every class subfolder of ``folder``."""
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        found = f"only the class folder {names[0]!r}" if names else "no class folders"
        raise DataError(f"{folder} has {found}; a classifier needs at least two classes: {_LAYOUT}")
    classes: dict[str, list[Path]] = {}
    skipped: list[Path] = []
    for name in names:
        images, others = _image_files(folder / name)
        skipped += others
        if not images:
            raise DataError(
                f"class folder {folder / name} holds no {'/'.join(IMAGE_SUFFIXES)} images; add images or remove "
                "the folder"
            )
        classes[name] = images
    if skipped:
        print(
            f"note: {len(skipped)} file(s) in {folder} are not {'/'.join(IMAGE_SUFFIXES)} images and are left out "
            f"(e.g. {skipped[0]})",
            file=sys.stderr,
        )
    return classes


def _image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``folder``, recursively, sorted; hidden names are skipped."""
    images: list[Path] = []
    others: list[Path] = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            file = Path(here) / name
            (images if file.suffix.lower() in IMAGE_SUFFIXES else others).append(file)
    return images, others


def _class_mismatch_message(train: Path, test: Path, in_train: set[str], in_test: set[str]) -> str:
    parts = []
    if in_train - in_test:
        parts.append(f"{test} lacks {sorted(in_train - in_test)}")
    if in_test - in_train:
        parts.append(f"{train} lacks {sorted(in_test - in_train)}")
    return (
        f"the class folders of train/ and test/ differ ({'; '.join(parts)}); give both the same class folders"
    )


def _listing(root: Path, classes: tuple[str, ...], groups: Iterable[tuple[dict[str, list[Path]], int]]) -> _Listing:
    files: list[Path] = []
    labels: list[int] = []
    parts: list[int] = []
    for folders, part in groups:
        for k, name in enumerate(classes):
            files += folders[name]
            labels += [k] * len(folders[name])
            parts += [part] * len(folders[name])
    return _Listing(root, classes, tuple(files), np.asarray(labels, np.int32), np.asarray(parts, np.int8))


# ------------------------------------------------------------------ split


def _split(listing: _Listing, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test images: the train/ and test/ folders, or per class
    ``max(1, round(test_fraction * n))`` images drawn with ``seed`` (each class its own stream)."""
    if not np.any(listing.parts == _UNSPLIT):
        return np.flatnonzero(listing.parts == _TRAIN), np.flatnonzero(listing.parts == _TEST)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for k, name in enumerate(listing.classes):
        members = np.flatnonzero(listing.labels == k)
        if len(members) < 2:
            raise DataError(
                f"class {name!r} has {len(members)} image in {listing.root}, too few to hold out a test image "
                f"(--test-fraction {test_fraction}): add images, or give train/ and test/ folders"
            )
        n_test = max(1, int(test_fraction * len(members) + 0.5))
        if n_test >= len(members):
            raise DataError(
                f"class {name!r} has {len(members)} images in {listing.root}: --test-fraction {test_fraction} "
                "leaves none for training; lower --test-fraction or add images"
            )
        drawn = np.random.default_rng([seed, k]).permutation(members)
        test.append(drawn[:n_test])
        train.append(drawn[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ------------------------------------------------------------------ cache


def _cached_images(listing: _Listing, side: int) -> np.ndarray:
    """Every listed image as uint8 (N, H, W, C), from the cache when it matches the files."""
    digest = _listing_digest(listing, side)
    cache = cache_file(listing.root, side)
    images = _read_cache(cache, digest)
    if images is not None:
        return images
    print(f"decoding {len(listing.files)} images of {listing.root} (once; later runs read {cache})", file=sys.stderr)
    images = _decode_all(listing, side)
    _write_cache(cache, images, digest)
    return images


def cache_file(root: Path, side: int) -> Path:
    """Where the arrays of folder ``root`` at ``side`` pixels are cached."""
    tag = str(side) if side else "native"
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        return root / f".labelsim_cache_{tag}.npz"
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return Path(folder).expanduser() / f"{root.resolve().name}-{key}_{tag}.npz"


def _listing_digest(listing: _Listing, side: int) -> str:
    """SHA-256 of the decoding settings and every file's relative path, size and modification time."""
    h = hashlib.sha256(f"{_CACHE_VERSION}\n{side}\n".encode())
    for file in listing.files:
        stat = file.stat()
        h.update(f"{file.relative_to(listing.root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_cache(cache: Path, digest: str) -> np.ndarray | None:
    """The cached images when ``cache`` exists and matches ``digest``; None (decode again) otherwise."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as npz:
            if str(npz["digest"]) != digest:
                return None
            return npz["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged cache is rebuilt


def _write_cache(cache: Path, images: np.ndarray, digest: str) -> None:
    """Writes the cache atomically (a temporary file renamed); a note, and no cache, when it cannot."""
    temp: str | None = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=cache.name, suffix=".tmp", dir=cache.parent)
        with os.fdopen(handle, "wb") as f:
            np.savez(f, images=images, digest=np.asarray(digest))
        os.replace(temp, cache)
    except OSError as err:
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)
        print(
            f"note: cannot write the image cache {cache} ({err.strerror or err}); the images are decoded again "
            f"next run. Set {CACHE_ENV} to a writable folder to cache them there",
            file=sys.stderr,
        )


# ------------------------------------------------------------------ decoding


def _decode_all(listing: _Listing, side: int) -> np.ndarray:
    image_module = _import_pillow()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(lambda f: _decode(image_module, f, side), listing.files))
    _check_consistent(listing, images)
    stacked = np.stack(images)
    return stacked[..., None] if stacked.ndim == 3 else stacked


def _import_pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as err:
        raise DataError(f"reading a folder: dataset needs Pillow, which is not installed: pip install pillow ({err})")
    return Image


def _decode(image_module: Any, file: Path, side: int) -> np.ndarray:
    """One image as (H, W) greyscale or (H, W, 3) RGB uint8, resized to ``side`` unless 0."""
    try:
        with image_module.open(file) as image:
            if side:
                image.draft(image.mode, (side, side))  # JPEG: decode at a reduced scale, still >= side
            image.load()
            mode = image.mode
            if mode in _GREY_MODES:
                image = image.convert("L")
            elif mode in _COLOUR_MODES:
                image = image.convert("RGB")
            else:
                raise DataError(
                    f"image {file} has mode {mode} (16-bit or float pixels); save it as 8-bit RGB or greyscale"
                )
            if side and image.size != (side, side):
                image = image.resize((side, side), image_module.Resampling.BILINEAR)
            return np.asarray(image, np.uint8)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as err:
        raise DataError(f"cannot read image {file} ({err}); replace or remove the file") from err


def _check_consistent(listing: _Listing, images: list[np.ndarray]) -> None:
    """One colour mode (all greyscale or all RGB) and one size across the folder."""
    grey = [i for i, im in enumerate(images) if im.ndim == 2]
    if grey and len(grey) < len(images):
        colour = next(i for i, im in enumerate(images) if im.ndim == 3)
        raise DataError(
            f"{listing.root} mixes greyscale images (e.g. {listing.files[grey[0]]}) with colour ones (e.g. "
            f"{listing.files[colour]}); convert them all to RGB or all to greyscale"
        )
    first = images[0].shape[:2]
    other = next((i for i, im in enumerate(images) if im.shape[:2] != first), None)
    if other is not None:
        raise DataError(
            f"images in {listing.root} differ in size ({listing.files[0]}: {first[1]}x{first[0]}, "
            f"{listing.files[other]}: {images[other].shape[1]}x{images[other].shape[0]}); give --image-size N to "
            "resize them all to N x N"
        )
