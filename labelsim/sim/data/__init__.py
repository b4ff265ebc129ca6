"""Datasets as uint8 arrays: the embedded synthetic images, a local CIFAR-10 copy, or TFDS.

Images are ``(N, H, W, C)`` uint8 and labels ``(N,)`` int32; only the TFDS path imports TFDS.
"""

from __future__ import annotations

from pathlib import Path

from labelsim.config import DataConfig
from labelsim.sim.data.cifar10 import (
    CIFAR10_CLASSES,
    find_cifar10_local,
    load_cifar10_local,
    no_cifar10_message,
)
from labelsim.sim.data.dataset import DataError, Dataset
from labelsim.sim.data.synthetic import make_synthetic
from labelsim.sim.data.tfds import load_tfds

__all__ = [
    "CIFAR10_CLASSES",
    "DataError",
    "Dataset",
    "find_cifar10_local",
    "load_cifar10_local",
    "load_dataset",
    "load_tfds",
    "make_synthetic",
]


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
            raise DataError(no_cifar10_message(Path(cfg.data_dir)))
    return load_tfds(cfg.name, cfg.data_dir)
