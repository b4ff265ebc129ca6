"""Shared test fixtures: where the real-data copies live, found through environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def _data_dir(env: str, default: Path) -> Path | None:
    path = Path(os.environ.get(env, default))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """Folder of the CIFAR-10 .npz files (LABELSIM_CIFAR10_DIR, else ../shared beside the repo)."""
    path = _data_dir("LABELSIM_CIFAR10_DIR", _REPO.parent / "shared" / "data" / "cifar10")
    if path is None:
        pytest.skip("real CIFAR-10 not found; set LABELSIM_CIFAR10_DIR")
    return path


@pytest.fixture(scope="session")
def cifar10n_dir() -> Path:
    """Folder of the CIFAR-10N labels.npz (LABELSIM_CIFAR10N_DIR, else ../shared beside the repo)."""
    path = _data_dir("LABELSIM_CIFAR10N_DIR", _REPO.parent / "shared" / "data" / "cifar10n")
    if path is None:
        pytest.skip("CIFAR-10N labels not found; set LABELSIM_CIFAR10N_DIR")
    return path
