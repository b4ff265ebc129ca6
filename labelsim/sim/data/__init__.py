"""Datasets as uint8 arrays: the embedded synthetic images, a local CIFAR-10 copy, a user's own
images (``folder:PATH``) or arrays (``npz:PATH``), or TFDS.

Images are ``(N, H, W, C)`` uint8 and labels ``(N,)`` int32; only the TFDS path imports TFDS, and only
the folder path imports Pillow.
"""

from __future__ import annotations

import re
from pathlib import Path

from labelsim.config import DataConfig, check_data_config, own_data_source
from labelsim.sim.data.arrays import load_npz_arrays
from labelsim.sim.data.cifar10 import (
    CIFAR10_CLASSES,
    find_cifar10_local,
    load_cifar10_local,
    no_cifar10_message,
)
from labelsim.sim.data.dataset import DataError, Dataset
from labelsim.sim.data.folder import load_folder
from labelsim.sim.data.synthetic import make_synthetic
from labelsim.sim.data.tfds import load_tfds

__all__ = [
    "CIFAR10_CLASSES",
    "DataError",
    "Dataset",
    "find_cifar10_local",
    "load_cifar10_local",
    "load_dataset",
    "load_folder",
    "load_npz_arrays",
    "load_tfds",
    "make_synthetic",
]


def load_dataset(cfg: DataConfig) -> Dataset:
    """The dataset a DataConfig names: synthetic, a local CIFAR-10 copy, a user's folder or .npz
    file, or a TFDS dataset."""
    check_data_config(cfg)
    own = own_data_source(cfg.name)
    if own is not None:
        kind, path = own
        if kind == "folder":
            return load_folder(path, cfg.image_size, cfg.test_fraction, cfg.split_seed)
        return load_npz_arrays(path)
    if cfg.name == "synthetic":
        return make_synthetic(
            cfg.synthetic_train, cfg.synthetic_test, cfg.synthetic_size, cfg.synthetic_seed
        )
    if cfg.name == "cifar10" and cfg.data_dir:
        if find_cifar10_local(cfg.data_dir) is not None:
            return load_cifar10_local(cfg.data_dir)
        if Path(cfg.data_dir).expanduser().is_file():  # a file is never a TFDS data_dir
            raise DataError(no_cifar10_message(Path(cfg.data_dir)))
    _refuse_bare_path(cfg.name)
    return load_tfds(cfg.name, cfg.data_dir)


def _refuse_bare_path(name: str) -> None:
    """A --dataset that is a path to a user's data, not a TFDS name: say which prefix it needs."""
    path = Path(name).expanduser()
    if re.fullmatch(r"[a-z][a-z0-9_]*", name) or not path.exists():
        return
    kind = "folder" if path.is_dir() else "npz"
    raise DataError(
        f"--dataset {name} is a path; give --dataset {kind}:{name} (folder: for class folders of images, "
        "npz: for an .npz file of arrays)"
    )
