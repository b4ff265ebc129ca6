"""Datasets as uint8 arrays: the embedded synthetic images, a local CIFAR-10 copy, or TFDS.

Every loader returns a ``Dataset`` with images ``(N, H, W, C)`` uint8 and labels ``(N,)`` int32.
TensorFlow Datasets is imported only inside ``load_tfds``: the synthetic data and local CIFAR-10
copies need nothing beyond numpy.
"""

from __future__ import annotations

import difflib
import importlib
import io
import os
import pickle
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.config import ConfigError, DataConfig

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


@dataclass(frozen=True)
class Dataset:
    """Train and test images with their labels and class names."""

    name: str
    x_train: np.ndarray  # (N, H, W, C) uint8
    y_train: np.ndarray  # (N,) int32
    x_test: np.ndarray  # (M, H, W, C) uint8
    y_test: np.ndarray  # (M,) int32
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


class DataError(ConfigError):
    """A dataset that cannot be loaded; the message says what to do."""


def load_dataset(cfg: DataConfig) -> Dataset:
    """The dataset a DataConfig names: synthetic, a local CIFAR-10 copy, or a TFDS dataset."""
    if cfg.name == "synthetic":
        return make_synthetic(
            cfg.synthetic_train, cfg.synthetic_test, cfg.synthetic_size, cfg.synthetic_seed
        )
    if cfg.name == "cifar10" and cfg.data_dir:
        if find_cifar10_local(cfg.data_dir) is not None:
            return load_cifar10_local(cfg.data_dir)
        if Path(cfg.data_dir).expanduser().is_file():  # a file is never a TFDS data_dir
            raise DataError(_no_cifar10_message(Path(cfg.data_dir)))
    return load_tfds(cfg.name, cfg.data_dir)


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------

_WORLD_SEED = 8_451_207  # fixes the class templates; the ``seed`` argument draws the images
_TEMPLATE_WAVES = 4  # sinusoids per class template
_BLOCK = 10  # class templates drawn per block of the world seed
_CLUTTER_WAVES = 3  # random sinusoids per image, independent of the class
_MAX_SHIFT = 0.08  # max template shift, fraction of the side
_CHUNK = 1024  # images rendered at once (bounds memory for large requests)

# (class, other class, weight): the class's appearance borrows ``weight`` of the other's
# template. Asymmetric on purpose: cat leans on dog more than dog on cat, and on frog while
# frog leans on nothing.
_BORROWS: tuple[tuple[int, int, float], ...] = (
    (0, 8, 0.20),  # airplane ~ ship
    (8, 0, 0.10),  # ship ~ airplane, less
    (1, 9, 0.25),  # automobile ~ truck
    (9, 1, 0.20),  # truck ~ automobile
    (2, 0, 0.15),  # bird ~ airplane
    (2, 4, 0.15),  # bird ~ deer
    (3, 5, 0.40),  # cat ~ dog, strongly
    (3, 6, 0.25),  # cat ~ frog
    (5, 3, 0.30),  # dog ~ cat
    (4, 7, 0.25),  # deer ~ horse
    (7, 4, 0.15),  # horse ~ deer
)
# Per-class clutter amplitude (0-1 intensity scale): the larger, the harder the class.
_CLUTTER = (0.34, 0.19, 0.58, 0.72, 0.43, 0.43, 0.31, 0.29, 0.19, 0.24)
_PIXEL_NOISE = 0.08  # i.i.d. Gaussian pixel noise, all classes
_BASE_SPREAD = 0.05  # class base colours lie in 0.5 +- this (per channel)
_WAVE_AMPLITUDE = (0.10, 0.20)  # range of a template wave's colour amplitude
_CONTRAST = (0.6, 1.4)  # per-image template contrast range
_BRIGHTNESS = 0.15  # per-image brightness offset range, +-


@dataclass(frozen=True)
class _Templates:
    """Per-class template waves: base colour and sinusoid parameters, mixed per class."""

    base: np.ndarray  # (C, 3) mean colour
    freq: np.ndarray  # (C, K, 2) cycles per side along (x, y)
    phase: np.ndarray  # (C, K) radians
    colour: np.ndarray  # (C, K, 3) amplitude per channel
    clutter: np.ndarray  # (C,) clutter amplitude


def make_synthetic(
    num_train: int, num_test: int, size: int, seed: int, num_classes: int = 10
) -> Dataset:
    """Embedded synthetic images: class templates with shifts, flips, clutter and noise.

    The images are synthetic; the class names borrow CIFAR-10's so that reports read easily.
    Classes differ in difficulty (clutter level) and some pairs are deliberately confusable
    in an asymmetric way (cat borrows 40% of dog's look, dog 30% of cat's; cat also borrows
    from frog, frog from nobody). Classes are balanced and shuffled. The same arguments give
    bit-identical arrays; train and test images come from independent streams of ``seed``.
    """
    _check_synthetic_args(num_train, num_test, size, num_classes)
    templates = _class_templates(num_classes)
    x_train, y_train = _render_split(templates, num_train, size, np.random.default_rng([seed, 0]))
    x_test, y_test = _render_split(templates, num_test, size, np.random.default_rng([seed, 1]))
    return Dataset("synthetic", x_train, y_train, x_test, y_test, _class_names(num_classes))


def _check_synthetic_args(num_train: int, num_test: int, size: int, num_classes: int) -> None:
    if num_classes < 2:
        raise DataError(f"synthetic data needs at least 2 classes, got {num_classes}")
    if num_train < 1 or num_test < 1:
        raise DataError(
            f"synthetic data needs at least 1 train and 1 test image, got {num_train} and "
            f"{num_test}; raise synthetic_train / synthetic_test"
        )
    if size < 4:
        raise DataError(f"synthetic image side {size} is too small; use 4 pixels or more")


def _class_names(num_classes: int) -> tuple[str, ...]:
    extra = tuple(f"class{k}" for k in range(len(CIFAR10_CLASSES), num_classes))
    return (CIFAR10_CLASSES + extra)[:num_classes]


def _borrow_matrix(num_classes: int) -> np.ndarray:
    """Row-stochastic (C, C) matrix: row k weighs the own templates in class k's look."""
    mix = np.eye(num_classes)
    for target, source, weight in _BORROWS:
        if target < num_classes and source < num_classes:
            mix[target, source] += weight
            mix[target, target] -= weight
    return mix


def _own_templates(num_classes: int) -> tuple[np.ndarray, ...]:
    """Unmixed per-class base colours and waves, fixed by the world seed.

    Drawn in blocks of ten classes, so a smaller world is a prefix of a larger one.
    """
    blocks = [_template_block(b) for b in range(-(-num_classes // _BLOCK))]
    return tuple(np.concatenate(parts)[:num_classes] for parts in zip(*blocks, strict=True))


def _template_block(block: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(_WORLD_SEED if block == 0 else [_WORLD_SEED, block])
    shape = (_BLOCK, _TEMPLATE_WAVES)
    base = 0.5 + rng.uniform(-_BASE_SPREAD, _BASE_SPREAD, (_BLOCK, 3))
    cycles = rng.uniform(1.0, 3.0, shape)
    angle = rng.uniform(0.0, 2 * np.pi, shape)
    freq = cycles[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    phase = rng.uniform(0.0, 2 * np.pi, shape)
    colour = rng.normal(0.0, 1.0, (*shape, 3))
    amplitude = rng.uniform(*_WAVE_AMPLITUDE, (*shape, 1))
    colour *= amplitude / np.linalg.norm(colour, axis=-1, keepdims=True)
    return base, freq, phase, colour


def _class_templates(num_classes: int) -> _Templates:
    """Mixed templates: class k's waves are every class's waves weighted by the borrow row."""
    base, freq, phase, colour = _own_templates(num_classes)
    mix = _borrow_matrix(num_classes)
    sources = [np.flatnonzero(row > 0) for row in mix]
    width = max(len(s) for s in sources) * _TEMPLATE_WAVES
    out_freq = np.zeros((num_classes, width, 2))
    out_phase = np.zeros((num_classes, width))
    out_colour = np.zeros((num_classes, width, 3))
    for k, src in enumerate(sources):
        n = len(src) * _TEMPLATE_WAVES
        out_freq[k, :n] = freq[src].reshape(-1, 2)
        out_phase[k, :n] = phase[src].reshape(-1)
        weight = mix[k, src] / np.linalg.norm(mix[k, src])  # equal wave energy per class
        out_colour[k, :n] = (weight[:, None, None] * colour[src]).reshape(-1, 3)
    clutter = np.array([_CLUTTER[k % len(_CLUTTER)] for k in range(num_classes)])
    return _Templates(mix @ base, out_freq, out_phase, out_colour, clutter)


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class counts equal (differing by at most one), in shuffled order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int32)


def _render_split(
    t: _Templates, n: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(n, len(t.base), rng)
    images = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        images[start:stop] = _render(t, labels[start:stop], size, rng)
    return images, labels


def _render(t: _Templates, labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Images of the given labels: shifted/flipped template + clutter + brightness + noise."""
    n = len(labels)
    grid = (np.arange(size) + 0.5) / size
    flip = rng.random(n) < 0.5
    shift = rng.uniform(-_MAX_SHIFT, _MAX_SHIFT, (n, 2))
    xs = np.where(flip[:, None], 1.0 - grid, grid) + shift[:, :1]  # (n, W)
    ys = grid + shift[:, 1:]  # (n, H)
    img = _waves(t.freq[labels], t.phase[labels], t.colour[labels], xs, ys)
    img += _clutter(t.clutter[labels], grid, rng)
    contrast = rng.uniform(*_CONTRAST, (n, 1, 1, 1))
    brightness = rng.uniform(-_BRIGHTNESS, _BRIGHTNESS, (n, 1, 1, 1))
    img = t.base[labels][:, None, None, :] + contrast * img + brightness
    img += rng.normal(0.0, _PIXEL_NOISE, img.shape)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _waves(
    freq: np.ndarray, phase: np.ndarray, colour: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """Sum of coloured sinusoids: (n, K) waves on per-image coordinates -> (n, H, W, 3).

    Separable: sin(a_y + b_x) = sin(a_y) cos(b_x) + cos(a_y) sin(b_x), so each image is one
    (H*3, 2K) x (2K, W) product instead of K full-size sine evaluations.
    """
    n, height, width = len(freq), ys.shape[1], xs.shape[1]
    a = 2 * np.pi * freq[..., 1, None] * ys[:, None, :] + phase[..., None]  # (n, K, H)
    b = 2 * np.pi * freq[..., 0, None] * xs[:, None, :]  # (n, K, W)
    rows = np.concatenate([np.sin(a), np.cos(a)], axis=1)  # (n, 2K, H)
    cols = np.concatenate([np.cos(b), np.sin(b)], axis=1)  # (n, 2K, W)
    weights = np.concatenate([colour, colour], axis=1)  # (n, 2K, 3)
    left = (rows[..., None] * weights[:, :, None, :]).reshape(n, -1, height * 3)
    out = np.matmul(left.transpose(0, 2, 1), cols)  # (n, H*3, W)
    return out.reshape(n, height, 3, width).transpose(0, 1, 3, 2)


def _clutter(amplitude: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random class-independent sinusoids, scaled per image by its class's clutter level."""
    n = len(amplitude)
    cycles = rng.uniform(0.5, 3.5, (n, _CLUTTER_WAVES))
    angle = rng.uniform(0.0, 2 * np.pi, (n, _CLUTTER_WAVES))
    freq = cycles[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    phase = rng.uniform(0.0, 2 * np.pi, (n, _CLUTTER_WAVES))
    colour = rng.normal(0.0, 1.0, (n, _CLUTTER_WAVES, 3)) / np.sqrt(3 * _CLUTTER_WAVES)
    colour *= amplitude[:, None, None]
    coords = np.broadcast_to(grid, (n, len(grid)))
    return _waves(freq, phase, colour, coords, coords)


# --------------------------------------------------------------------------------------------
# Local CIFAR-10 copies
# --------------------------------------------------------------------------------------------

_NPZ_FILES = tuple(f"train_{k}.npz" for k in range(5)) + ("test.npz",)
_BATCH_FILES = tuple(f"data_batch_{k}" for k in range(1, 6)) + ("test_batch",)
_ARCHIVE = "cifar-10-python.tar.gz"
_BATCH_DIR = "cifar-10-batches-py"


def find_cifar10_local(path: str | Path) -> tuple[str, Path] | None:
    """The layout ("npz", "archive" or "batches") and file/folder of a local CIFAR-10 copy."""
    path = Path(path).expanduser()
    if path.is_file():
        return ("archive", path) if tarfile.is_tarfile(path) else None
    if not path.is_dir():
        return None
    if all((path / f).is_file() for f in _NPZ_FILES):
        return "npz", path
    for folder in (path, path / _BATCH_DIR):
        if all((folder / f).is_file() for f in (*_BATCH_FILES, "batches.meta")):
            return "batches", folder
    if (path / _ARCHIVE).is_file():
        return "archive", path / _ARCHIVE
    return None


def load_cifar10_local(path: str | Path) -> Dataset:
    """CIFAR-10 in the original order from .npz files, the python archive, or its folder."""
    found = find_cifar10_local(path)
    if found is None:
        raise DataError(_no_cifar10_message(Path(path)))
    layout, where = found
    loaders: dict[str, Callable[[Path], Dataset]] = {
        "npz": _load_npz,
        "archive": _load_archive,
        "batches": _load_batch_folder,
    }
    return loaders[layout](where)


def _no_cifar10_message(path: Path) -> str:
    if not path.exists():
        state = "does not exist"
    else:
        state = "is not a CIFAR-10 archive" if path.is_file() else "holds no CIFAR-10 copy"
    return (
        f"{path} {state}. A local CIFAR-10 copy is one of: a folder with "
        f"{', '.join(_NPZ_FILES)}; the archive {_ARCHIVE} (or a folder holding it); or the "
        f"extracted folder {_BATCH_DIR}/ with {', '.join(_BATCH_FILES)} and batches.meta "
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
                    raise DataError(f"{file} has no member {name}; use the original {_ARCHIVE}")
                handle = tar.extractfile(members[name])
                assert handle is not None  # regular files always have a handle
                return handle.read()

            return _from_pickles(read, file)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(
            f"{file} cannot be read ({err}); download {_ARCHIVE} again or use the .npz copy"
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
            f"{_ARCHIVE} or the .npz copy"
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


# --------------------------------------------------------------------------------------------
# TensorFlow Datasets
# --------------------------------------------------------------------------------------------

_READ_BATCH = 2048  # records per batched read from a TFDS data source


def load_tfds(name: str, data_dir: str | None) -> Dataset:
    """A TFDS image-classification dataset already prepared locally; never downloads."""
    tfds = _import_tfds(name)
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    builder = _tfds_builder(tfds, name, data_dir)
    if not builder.is_prepared():
        raise DataError(_not_prepared_message(name, data_dir, builder.data_dir))
    image_key, label_key = _supervised_keys(builder, name)
    splits = _train_test_splits(builder, name)
    x_train, y_train = _read_split(builder, name, splits[0], image_key, label_key)
    x_test, y_test = _read_split(builder, name, splits[1], image_key, label_key)
    names = tuple(builder.info.features[label_key].names)
    return Dataset(name, x_train, y_train, x_test, y_test, names)


def _import_tfds(name: str) -> Any:
    try:
        return importlib.import_module("tensorflow_datasets")
    except ImportError as err:
        raise DataError(
            f"dataset {name!r} is read through tensorflow-datasets, which is not installed: "
            f"pip install tensorflow-datasets array_record. {_OTHER_SOURCES}"
        ) from err


_OTHER_SOURCES = (
    "Other options: --dataset cifar10 --data-dir PATH to a local CIFAR-10 copy (a folder of "
    f"train_0..4.npz + test.npz, the {_ARCHIVE} archive, or its extracted {_BATCH_DIR}/ folder), "
    "or --dataset synthetic for the embedded synthetic data."
)


def _tfds_builder(tfds: Any, name: str, data_dir: str | None) -> Any:
    if not re.fullmatch(r"[a-z][a-z0-9_]*([/:].+)?", name):  # not a TFDS name at all
        raise DataError(_unknown_dataset_message(tfds, name))
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as err:
        raise DataError(_unknown_dataset_message(tfds, name)) from err


def _unknown_dataset_message(tfds: Any, name: str) -> str:
    try:
        known = list(tfds.list_builders(with_community_datasets=False))
    except Exception:  # listing is only a hint; never mask the real error
        known = []
    options = sorted({"synthetic", "cifar10", *known})
    close = difflib.get_close_matches(name.lower(), options, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return (
        f"unknown dataset {name!r}: choose 'synthetic' (embedded), 'cifar10', or the name of a "
        f"TFDS image-classification dataset (e.g. mnist, fashion_mnist, cifar100).{hint}"
    )


def _not_prepared_message(name: str, data_dir: str | None, looked_in: Any) -> str:
    where = f"data_dir {data_dir}" if data_dir else "the default TFDS data_dir"
    if data_dir and not Path(data_dir).expanduser().exists():
        where += " (which does not exist)"
    local = (
        f"--data-dir PATH to a local CIFAR-10 copy: a folder of train_0..4.npz + test.npz, the "
        f"{_ARCHIVE} archive, or its extracted {_BATCH_DIR}/ folder"
    )
    if name != "cifar10":
        local = "--dataset cifar10 with " + local
    not_local = ""
    if name == "cifar10" and data_dir:
        not_local = (
            f"{data_dir} is not a local CIFAR-10 copy (no train_0..4.npz + test.npz, "
            f"{_ARCHIVE} or {_BATCH_DIR}/ found), and "
        )
    return (
        f"{not_local}dataset {name!r} is not prepared in {where} (looked for {looked_in}), and "
        "downloads are off. Choose one of:\n"
        f"  * {local};\n"
        f"  * --data-dir PATH (or the TFDS_DATA_DIR environment variable) naming a TFDS data_dir "
        f"where {name!r} is prepared in array_record format (on a machine with TensorFlow: "
        f"tfds build {name} --file_format=array_record --data_dir=PATH);\n"
        "  * --dataset synthetic for the embedded synthetic data."
    )


def _supervised_keys(builder: Any, name: str) -> tuple[str, str]:
    keys = builder.info.supervised_keys or ("image", "label")
    features = builder.info.features
    if len(keys) != 2 or any(not isinstance(k, str) or k not in features for k in keys):
        raise DataError(
            f"dataset {name!r} has no (image, label) features; choose an image-classification "
            "dataset"
        )
    label_feature = features[keys[1]]
    if not hasattr(label_feature, "names"):
        raise DataError(f"dataset {name!r} has no class labels; choose a classification dataset")
    return keys[0], keys[1]


def _train_test_splits(builder: Any, name: str) -> tuple[str, str]:
    available = list(builder.info.splits)
    if "train" not in available or "test" not in available:
        raise DataError(
            f"dataset {name!r} has splits {available}, but a 'train' and a 'test' split are "
            "needed; choose a dataset with both"
        )
    return "train", "test"


def _read_split(
    builder: Any, name: str, split: str, image_key: str, label_key: str
) -> tuple[np.ndarray, np.ndarray]:
    try:
        source = builder.as_data_source(split=split)
    except NotImplementedError as err:
        raise DataError(
            f"dataset {name!r} is prepared in a format that cannot be read without TensorFlow "
            f"({err}). Re-prepare it with --file_format=array_record, or: {_OTHER_SOURCES}"
        ) from err
    images: list[np.ndarray] = []
    labels: list[int] = []
    for records in _batched_records(source, name):
        images.extend(np.asarray(r[image_key]) for r in records)
        labels.extend(int(r[label_key]) for r in records)
    return _stack_images(images, name), np.asarray(labels, np.int32)


def _batched_records(source: Any, name: str) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(source), _READ_BATCH):
        keys = list(range(start, min(len(source), start + _READ_BATCH)))
        try:
            yield list(source.__getitems__(keys))
        except ImportError as err:
            raise DataError(
                f"decoding the images of {name!r} needs an image library: pip install pillow "
                f"({err})"
            ) from err


def _stack_images(images: list[np.ndarray], name: str) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(
            f"dataset {name!r} has images of several shapes {sorted(shapes)[:3]}...; choose a "
            "dataset with one fixed image size"
        )
    stacked = np.stack(images)
    if stacked.ndim == 3:  # (N, H, W) greyscale
        stacked = stacked[..., None]
    if stacked.dtype != np.uint8:
        raise DataError(f"dataset {name!r} has {stacked.dtype} images; uint8 images are needed")
    return stacked
