"""Whole runs on small configurations: the CLI's three files, a model x noise-model grid, and
real CIFAR-10 learning well above chance."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import run_grid
from labelsim.config import DataConfig, GridConfig, ModelConfig, RecipeConfig, RunConfig
from labelsim.sim.data import Dataset, load_dataset
from labelsim.sim.runner import run_grid as run

TINY_FLAGS = [
    "--dataset", "synthetic", "--width", "4", "--epochs", "2", "--batch-size", "32",
    "--noise", "0,0.5", "--sizes", "128", "--repeats", "1", "--no-progress",
]  # fmt: skip


def rows(out: Path) -> list[dict[str, str]]:
    """replicas.csv as dicts."""
    with (out / "replicas.csv").open() as f:
        return list(csv.DictReader(f))


def small_synthetic() -> DataConfig:
    """256 training and 64 test images of 8x8 pixels."""
    return DataConfig(name="synthetic", synthetic_train=256, synthetic_test=64, synthetic_size=8)


def test_cli_writes_the_three_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(run_grid.PRESETS, "demo", {"data": vars(small_synthetic())})
    out = tmp_path / "run"
    assert run_grid.main(["--preset", "demo", *TINY_FLAGS, "--out", str(out)]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and meta["finished"] and meta["versions"]["jax"]
    table = rows(out)
    assert [r["status"] for r in table] == ["finished"] * 3
    assert {(r["experiment"], r["noise_rate"], r["train_size"]) for r in table} == {
        ("noise", "0", "256"), ("noise", "0.5", "256"), ("volume", "0", "128"),
    }
    with np.load(out / "confusion.npz") as data:
        counts = data["counts"]
    assert counts.shape == (3, 10, 10)
    np.testing.assert_array_equal(counts.sum(2), np.tile(meta["test_class_counts"], (3, 1)))
    for r, c in zip(table, counts):
        assert float(r["accuracy"]) == pytest.approx(np.trace(c) / c.sum(), abs=1e-6)
    # A fresh run refuses a directory that holds one, and leaves it untouched.
    before = (out / "replicas.csv").read_bytes()
    assert run_grid.main(["--preset", "demo", *TINY_FLAGS, "--out", str(out)]) == 2
    assert (out / "replicas.csv").read_bytes() == before


def test_two_models_and_two_noise_models(tmp_path: Path) -> None:
    config = RunConfig(
        data=small_synthetic(),
        model=ModelConfig(width=4),
        recipe=RecipeConfig(epochs=1, batch_size=32),
        grid=GridConfig(noise_levels=(0.0, 0.3), repeats=1, noise_models=("shuffle", "pairflip"), models=("small_cnn", "lenet")),
    )
    out = run(config, tmp_path / "zoo", progress=False, dataset=_lenet_sized(load_dataset(config.data)))
    table = rows(out)
    assert {(r["model"], r["noise_model"], r["noise_rate"]) for r in table} == {
        (m, n, rate) for m in ("small_cnn", "lenet") for n, rate in (("shuffle", "0"), ("shuffle", "0.3"), ("pairflip", "0.3"))
    }
    assert all(r["status"] == "finished" for r in table)
    with np.load(out / "confusion.npz") as data:
        transitions = data["transitions"]
    for r, t in zip(table, transitions):
        if r["noise_model"] == "pairflip" and r["noise_rate"] == "0.3":
            off = t[np.arange(10), (np.arange(10) + 1) % 10]
            np.testing.assert_allclose(off / t.sum(1), 0.3, atol=0.05)


def _lenet_sized(data: Dataset) -> Dataset:
    """LeNet needs 32x32 inputs: upsample the 8x8 synthetic images 4x."""
    up = lambda x: np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)  # noqa: E731
    return Dataset(data.name, up(data.x_train), data.y_train, up(data.x_test), data.y_test, data.class_names)


@pytest.mark.realdata
def test_real_cifar10_small_grid_learns_above_chance(tmp_path: Path, cifar10_dir: Path) -> None:
    full = load_dataset(DataConfig(name="cifar10", data_dir=str(cifar10_dir)))
    subset = Dataset("cifar10", full.x_train[:2048], full.y_train[:2048], full.x_test[:1000], full.y_test[:1000], full.class_names)
    config = RunConfig(
        model=ModelConfig(width=8),
        recipe=RecipeConfig(epochs=5, batch_size=32, lr_decays=(), augment=False),
        grid=GridConfig(noise_levels=(0.0, 0.2), repeats=1),
    )
    out = run(config, tmp_path / "cifar", progress=False, dataset=subset)
    table = rows(out)
    assert [int(r["steps"]) for r in table] == [320, 320]  # a few hundred steps each
    accuracies = [float(r["accuracy"]) for r in table]
    assert min(accuracies) > 0.25, accuracies  # chance is 0.10
