"""Defaults that follow the data, grids that say what they will train, and the program's name:
without --preset the synthetic set gets the demo's settings and a real dataset the study's model and
recipe; the start-up lines name them and their preset; --dry-run stops before anything is written;
``--noise none`` / ``--sizes none`` leave one half of the grid out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import run_grid
from labelsim.__main__ import build_parser as labelsim_parser
from labelsim.__main__ import main as labelsim_main
from labelsim.commands import train
from labelsim.config import RunConfig, preset, total_steps
from labelsim.sim import grid, runner

REPO = Path(__file__).resolve().parent.parent
SIDE, CLASSES, N_TRAIN, N_TEST = 32, 3, 150, 30  # more images than the study's batch of 64


def write_npz(path: Path) -> Path:
    """A small array dataset, large enough for the study's batch size and small_cnn's layers."""
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", N_TRAIN), ("test", N_TEST)):
        arrays[f"x_{part}"] = rng.integers(0, 256, (n, SIDE, SIDE, 3), dtype=np.uint8)
        arrays[f"y_{part}"] = np.arange(n) % CLASSES
    np.savez(path, **arrays)
    return path


def resolved(argv: list[str]) -> RunConfig:
    """The config ``labelsim train`` builds of these flags."""
    return train.resolve_config(labelsim_parser().parse_args(["train", *argv]))


def dry_run(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """stdout of a --dry-run of these flags (which must succeed)."""
    assert labelsim_main(["train", *argv, "--dry-run"]) == 0
    return capsys.readouterr().out


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to train fails the test."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a dry run trained")

    monkeypatch.setattr(runner, "run_grid", refuse)
    monkeypatch.setattr(runner, "_train_into", refuse)


def test_synthetic_data_gets_the_demo(tmp_path: Path, capsys: pytest.CaptureFixture, no_training: None) -> None:
    out = ["--out", str(tmp_path / "run")]
    demo = preset("demo")
    for argv in (out, ["--dataset", "synthetic", *out]):
        config = resolved(argv)
        assert config == demo and config.preset == "demo"
    printed = dry_run(out, capsys)
    assert "model small_cnn, width 16; 12 epochs" in printed
    assert "lr 0.001 -> 0.0005 from epoch 8 (from preset demo" in printed
    assert "from epoch 75" not in printed


@pytest.mark.parametrize("how", ["--dataset", "--set"])
def test_a_real_dataset_gets_the_studys_model_and_recipe(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture, no_training: None
) -> None:
    name = f"npz:{write_npz(tmp_path / 'mine.npz')}"
    argv = ["--dataset", name] if how == "--dataset" else ["--set", f"data.name={name}"]
    argv += ["--out", str(tmp_path / "run")]
    config, paper, demo = resolved(argv), preset("paper"), preset("demo")
    assert (config.model, config.recipe) == (paper.model, paper.recipe)
    assert (config.model, config.recipe) != (demo.model, demo.recipe)
    assert config.data.name == name and config.grid == RunConfig().grid and config.preset == "paper"
    printed = dry_run(argv, capsys)
    assert "model small_cnn, width 32 (standard); 125 epochs, batch 64" in printed
    assert "lr 0.001 -> 0.0005 from epoch 75 -> 0.0003 from epoch 100 (from preset paper" in printed
    assert f"data: npz:mine, {N_TRAIN} training and {N_TEST} test images, {CLASSES} classes" in printed
    levels = RunConfig().grid.noise_levels
    replicas = len(levels) * RunConfig().grid.repeats
    assert f"grid: {replicas} replicas (2 repeats), {replicas * N_TRAIN:,} replica-images" in printed
    assert f"noise {', '.join(f'{rate:g}' for rate in levels)} (shuffle), sizes {N_TRAIN}" in printed


def test_flags_and_a_preset_still_override_the_datasets_defaults(tmp_path: Path) -> None:
    name = f"npz:{write_npz(tmp_path / 'mine.npz')}"
    out = ["--out", str(tmp_path / "run")]
    config = resolved(["--dataset", name, "--epochs", "3", "--width", "8", *out])
    assert (config.recipe.epochs, config.model.width) == (3, 8)
    assert config.recipe.lr_decays == preset("paper").recipe.lr_decays
    demo = resolved(["--preset", "demo", "--dataset", name, *out])
    assert (demo.model, demo.recipe, demo.grid) == (preset("demo").model, preset("demo").recipe, preset("demo").grid)
    assert demo.preset == "demo" and demo.data.name == name
    # The last dataset named decides, as it decides the data.
    assert resolved(["--dataset", name, "--dataset", "synthetic", *out]) == preset("demo")


def test_both_entry_points_follow_the_data_alike(tmp_path: Path) -> None:
    argv = ["--dataset", "cifar10", "--out", str(tmp_path / "run")]
    via_run_grid = run_grid.resolve_config(run_grid.build_parser().parse_args(argv))
    assert via_run_grid == resolved(argv) and via_run_grid.preset == resolved(argv).preset == "paper"


def test_dry_run_trains_nothing_and_writes_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_training: None
) -> None:
    out = tmp_path / "new" / "run"
    printed = dry_run(["--out", str(out)], capsys)
    assert "grid: 12 replicas" in printed and "dry run: nothing trained" in printed
    assert list(tmp_path.iterdir()) == []
    # run_grid.py's --dry-run too, with the data a flag sets.
    assert run_grid.main(["--out", str(out), "--dry-run", "--synthetic-train", "1600"]) == 0
    assert "data: synthetic, 1600 training" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_of_a_bad_grid_fails_as_the_run_would(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert labelsim_main(["train", "--out", str(out), "--dry-run", "--sizes", "5000"]) == 2
    assert "exceeds the dataset's 2000 training images" in capsys.readouterr().err
    assert labelsim_main(["train", "--out", str(out), "--dry-run", "--noise", "none", "--sizes", "none"]) == 2
    assert "the grid is empty" in capsys.readouterr().err
    assert not out.exists()


def replica_table(argv: list[str], tmp_path: Path) -> list[Any]:
    """The replica table these flags make on the synthetic set."""
    return grid.build_replicas(resolved([*argv, "--out", str(tmp_path / "run")]), preset("demo").data.synthetic_train)


def test_noise_none_keeps_only_the_volume_points(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_training: None
) -> None:
    demo = preset("demo").grid
    specs = replica_table(["--noise", "none"], tmp_path)
    assert {s.experiment for s in specs} == {"volume"} and {s.noise_rate for s in specs} == {0.0}
    assert sorted({s.train_size for s in specs}) == sorted(demo.sizes)
    assert len(specs) == len(demo.sizes) * demo.repeats
    printed = dry_run(["--noise", "None", "--out", str(tmp_path / "run")], capsys)
    assert f"volume: {len(specs)} replicas, noise 0, sizes 500, 1000, 1500" in printed
    assert "  noise:" not in printed


def test_sizes_none_keeps_only_the_noise_points(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_training: None
) -> None:
    demo = preset("demo").grid
    full = preset("demo").data.synthetic_train
    specs = replica_table(["--sizes", "none"], tmp_path)
    assert {s.experiment for s in specs} == {"noise"} and {s.train_size for s in specs} == {full}
    assert sorted({s.noise_rate for s in specs}) == sorted(demo.noise_levels)
    assert len(specs) == len(demo.noise_levels) * demo.repeats
    printed = dry_run(["--sizes", "none", "--out", str(tmp_path / "run")], capsys)
    assert f"noise: {len(specs)} replicas, noise 0, 0.2, 0.4 (shuffle), sizes {full}" in printed
    assert "volume:" not in printed
    # The summary's totals are the table's.
    steps = len(specs) * total_steps(full, preset("demo").recipe)
    assert f"{len(specs) * full:,} replica-images, {steps:,} replica-steps over 12 epochs" in printed


def test_help_says_what_the_defaults_are() -> None:
    help_text = " ".join(labelsim_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "synthetic set gets demo (small_cnn width 16, 12 epochs" in help_text
    assert "a real dataset gets paper's model and recipe" in help_text and "125 epochs" in help_text
    assert "'none': no noise grid" in help_text and "'none': no volume grid" in help_text
    assert "--dry-run" in help_text


def test_run_json_records_the_preset_and_the_run_prints_its_plan_first(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    argv = [
        "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8", "--width", "4",
        "--epochs", "1", "--noise", "0", "--sizes", "none", "--repeats", "1", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    assert labelsim_main(["train", *argv]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("training model small_cnn, width 4; 1 epochs") and "preset demo" in printed[0]
    summary = "grid: 1 replicas (1 repeats), 256 replica-images, 4 replica-steps over 1 epochs"
    assert printed.index(summary) < printed.index(f"done: {out}/run.json, replicas.csv, confusion.npz, test_predictions.npy")
    meta = json.loads((out / "run.json").read_text())
    assert meta["preset"] == "demo" and "preset" not in meta["config"]
    # A bare --resume keeps the recorded preset.
    assert train.stored_config(out).preset == "demo"


@pytest.mark.parametrize("launch, prog", [(["-m", "labelsim"], "python -m labelsim"), (["-c", "SCRIPT"], "labelsim")])
def test_help_names_the_program_as_it_was_run(launch: list[str], prog: str) -> None:
    # "SCRIPT": what the installed script does (its own file name first on the command line, then main()).
    script = "import sys; sys.argv[0] = '/usr/bin/labelsim'; from labelsim.__main__ import main; sys.exit(main())"
    command = [sys.executable, *[script if word == "SCRIPT" else word for word in launch], "train", "--help"]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {prog} train ")
