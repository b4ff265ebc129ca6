"""TFDS image-classification datasets, read through array_record data sources.

TensorFlow Datasets is imported only inside ``load_tfds``; TensorFlow itself is never needed.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.sim.data.cifar10 import ARCHIVE, BATCH_DIR
from labelsim.sim.data.dataset import DataError, Dataset

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
    f"train_0..4.npz + test.npz, the {ARCHIVE} archive, or its extracted {BATCH_DIR}/ folder), "
    "--dataset folder:PATH or npz:PATH for your own images or arrays, or --dataset synthetic for the embedded "
    "synthetic data."
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
        f"unknown dataset {name!r}: choose 'synthetic' (embedded), 'cifar10', folder:PATH (your images in "
        "class folders), npz:PATH (your arrays), or the name of a TFDS image-classification dataset "
        f"(e.g. mnist, fashion_mnist, cifar100).{hint}"
    )


def _not_prepared_message(name: str, data_dir: str | None, looked_in: Any) -> str:
    where = f"data_dir {data_dir}" if data_dir else "the default TFDS data_dir"
    if data_dir and not Path(data_dir).expanduser().exists():
        where += " (which does not exist)"
    local = (
        f"--data-dir PATH to a local CIFAR-10 copy: a folder of train_0..4.npz + test.npz, the "
        f"{ARCHIVE} archive, or its extracted {BATCH_DIR}/ folder"
    )
    if name != "cifar10":
        local = "--dataset cifar10 with " + local
    not_local = ""
    if name == "cifar10" and data_dir:
        not_local = (
            f"{data_dir} is not a local CIFAR-10 copy (no train_0..4.npz + test.npz, "
            f"{ARCHIVE} or {BATCH_DIR}/ found), and "
        )
    return (
        f"{not_local}dataset {name!r} is not prepared in {where} (looked for {looked_in}), and "
        "downloads are off. Choose one of:\n"
        f"  * {local};\n"
        f"  * --data-dir PATH (or the TFDS_DATA_DIR environment variable) naming a TFDS data_dir "
        f"where {name!r} is prepared in array_record format (on a machine with TensorFlow: "
        f"tfds build {name} --file_format=array_record --data_dir=PATH);\n"
        "  * --dataset folder:PATH (class folders of images) or npz:PATH (arrays) for your own data;\n"
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
        stored = getattr(builder.info.file_format, "value", builder.info.file_format)
        raise DataError(
            f"dataset {name!r} is prepared as {stored}, which cannot be read without TensorFlow; re-prepare it "
            f"with tfds build {name} --file_format=array_record --data_dir=DIR, or: {_OTHER_SOURCES}"
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
