"""The Dataset every loader returns, and the error a dataset that cannot be loaded raises."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelsim.config import ConfigError


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
