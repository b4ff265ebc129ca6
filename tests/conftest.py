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


def pytest_configure(config: pytest.Config) -> None:
    """Share compiled programs between tests (and test processes) through JAX's persistent
    cache: most tests build the same tiny programs, and compiling dominates their time."""
    import tempfile

    import jax

    cache = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "labelsim-test-jax-cache"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
