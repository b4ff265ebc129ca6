"""Input validation: every bad input fails before any training starts, with exit status 2 and
one ``error: ...`` line that says what to change, never a traceback, and writes no run."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

import run_grid
from labelsim.sim import runner
from labelsim.config import ConfigError, ReplicaSpec, RunConfig
from labelsim.sim.data import make_synthetic

TINY = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "2", "--batch-size", "32", "--noise", "0,0.4", "--sizes", "128",
    "--repeats", "1", "--no-progress",
]  # fmt: skip


@pytest.fixture(autouse=True)
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build the trainer fails the test: validation must come first."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("training started before the input was validated")

    monkeypatch.setattr(runner, "SlotTrainer", refuse)


def with_flags(**changes: str) -> list[str]:
    """TINY with some flags replaced (``noise="1.5"`` sets ``--noise 1.5``) or added."""
    flags = list(TINY)
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        if flag in flags:
            flags[flags.index(flag) + 1] = value
        else:
            flags += [flag, value]
    return flags


def fails_with(argv: list[str], capsys: pytest.CaptureFixture, *phrases: str) -> str:
    """Run run_grid.main, expect exit 2 and one error line holding every phrase."""
    assert run_grid.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    for phrase in phrases:
        assert phrase in line, line
    return line


CASES = {
    "noise above 1": (with_flags(noise="0,1.5"), ["noise rate 1.5 is outside [0, 1]", "give a fraction"]),
    "noise below 0": (with_flags(noise="-0.1"), ["noise rate -0.1 is outside [0, 1]"]),
    "size above the dataset": (with_flags(sizes="1000"), ["size 1000 exceeds the dataset's 256", "lower --sizes"]),
    "size below the batch": (with_flags(sizes="16"), ["size 16 is smaller than the batch size 32", "--batch-size"]),
    "no repeats": (with_flags(repeats="0"), ["repeats is 0", "at least 1"]),
    "no epochs": (with_flags(epochs="0"), ["epochs is 0", "at least 1"]),
    "unknown dataset": (with_flags(dataset="no_such_set"), ["unknown dataset 'no_such_set'", "choose"]),
    "unknown model": (with_flags(model="resnet9000"), ["unknown model 'resnet9000'", "choose one of"]),
    "unknown noise model": (with_flags(noise_model="gremlins"), ["unknown noise model 'gremlins'", "choose one of"]),
    "unknown preset": (with_flags(preset="tiny"), ["unknown preset 'tiny'", "choose one of", "demo"]),
    "unknown replica strategy": (with_flags(strategy="teleport"), ["unknown replica strategy 'teleport'", "choose"]),
    "negative loop group": (with_flags(loop_group="-2"), ["loop group must be >= 0", "0 picks a default"]),
    "width 0": (with_flags(width="0"), ["--width 0: give 1 or more filters"]),
    "negative width": (with_flags(width="-3"), ["--width -3: give 1 or more filters"]),
    "negative width set": (with_flags(set="model.width=-3"), ["--set model.width=-3: give 1 or more filters"]),
    "no memory for slots": (with_flags(memory_fraction="0"), ["--memory-fraction 0.0 is outside (0, 1]"]),
    "images too small for the model": (
        with_flags(synthetic_size="4"),
        ["4x4-pixel images are too small for model small_cnn", "give --synthetic-size 8 or more"],
    ),
    "images too small for lenet": (
        with_flags(synthetic_size="8", model="lenet"),
        ["8x8-pixel images are too small for model lenet", "give --synthetic-size 16 or more"],
    ),
    "a grid too large to build": (with_flags(repeats="1000000000"), ["up to 3000000000 replicas", "lower --repeats"]),
    "more steps than a replica counts": (
        with_flags(epochs="1000000000"), ["256 images in batches of 32 make 8000000000 steps", "lower --epochs"]
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_before_training(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flags, phrases = CASES[case]
    out = tmp_path / "run"
    fails_with([*flags, "--out", str(out)], capsys, *phrases)
    assert not out.exists()


def test_a_data_dir_without_the_dataset_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    (empty / "notes.txt").write_text("not CIFAR-10")
    out = tmp_path / "run"
    line = fails_with(
        [*with_flags(dataset="cifar10", data_dir=str(empty)), "--out", str(out)], capsys,
        f"{empty} is not a local CIFAR-10 copy",
    )  # fmt: skip
    assert not out.exists()
    assert "train_0..4.npz" in line or "cifar-10-python.tar.gz" in line


def test_an_output_path_below_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    fails_with([*TINY, "--out", str(blocker / "run")], capsys, f"{blocker} is a file", "choose another --out")
    assert blocker.read_text() == ""


def test_an_output_directory_without_write_permission(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    fails_with([*TINY, "--out", str(locked / "run")], capsys, f"cannot write to {locked}", "choose another --out")
    assert list(locked.iterdir()) == []


def test_not_enough_free_disk(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "run"
    fails_with([*TINY, "--out", str(out)], capsys, "only 0.0 MB free", "free some space or choose another --out")
    assert not out.exists()


def test_room_for_the_grid_but_not_for_its_results(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second check counts the results and checkpoint of this grid, not a fixed minimum."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, (1 << 20) + 100))
    out = tmp_path / "run"
    fails_with([*TINY, "--out", str(out)], capsys, "the results need about")
    assert not out.exists()


def test_resume_of_a_directory_without_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    out.mkdir()
    fails_with(["--resume", "--out", str(out)], capsys, "holds no run", "drop --resume")
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------ custom replica lists

DATA = make_synthetic(256, 64, 8, seed=0)
GOOD = ReplicaSpec(0, "custom", 0, "shuffle", 0.1, 128, "small_cnn")


def custom_config() -> RunConfig:
    """The TINY flags as a RunConfig."""
    return run_grid.resolve_config(run_grid.build_parser().parse_args([*TINY, "--out", "unused"]))


@pytest.mark.parametrize(
    "specs, phrase",
    [
        ([dataclasses.replace(GOOD, replica=3)], "replica numbers must be 0..0 in order"),
        ([dataclasses.replace(GOOD, class_sizes=(10,) * 9)], "class_sizes has 9 entries; the dataset has 10 classes"),
        ([dataclasses.replace(GOOD, class_sizes=(100,) * 10)], "exceeds the dataset's 256"),
        ([dataclasses.replace(GOOD, class_sizes=(200, 0, 0, 0, 0, 0, 0, 0, 0, 0))], "class 0 asks for 200 labels"),
        ([dataclasses.replace(GOOD, class_noise=(0.1,) * 9 + (2.0,))], "per-class noise rate 2.0 is outside [0, 1]"),
        ([dataclasses.replace(GOOD, lr_scale=0.0)], "lr_scale 0.0 must be a positive finite number"),
        ([dataclasses.replace(GOOD, noise_model="gremlins")], "unknown noise model 'gremlins'"),
        ([dataclasses.replace(GOOD, model="resnet9000")], "unknown model 'resnet9000'"),
        ([], "the grid has no replicas"),
    ],
)
def test_a_bad_custom_replica_list_fails_before_training(specs: list[ReplicaSpec], phrase: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        runner.run_grid(custom_config(), out, replicas=specs, progress=False, dataset=DATA)
    assert phrase in str(err.value)
    assert not out.exists()


def test_a_seed_too_large_for_a_key_is_refused_before_any_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    fails_with([*TINY, "--seed", "99999999999999999999", "--out", str(out)], capsys, "seed", "--seed")
    assert not out.exists()


def test_a_noise_matrix_for_other_classes_is_refused_before_any_write(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    matrix = tmp_path / "matrix.json"
    matrix.write_text("[[0.5, 0.5], [0.5, 0.5]]")
    out = tmp_path / "run"
    flags = with_flags(noise_model="matrix", noise_matrix=str(matrix))
    fails_with([*flags, "--out", str(out)], capsys, f"--noise-matrix {matrix} is 2 x 2", "give a 10 x 10 matrix")
    assert not out.exists()


def test_a_noise_model_made_for_other_classes_is_refused_before_any_write(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replicas' noisy labels are drawn once before the folder is claimed, so a noise model's own
    data checks fail before any write too."""
    three = make_synthetic(256, 64, 8, seed=0)
    keep = three.y_train < 3, three.y_test < 3
    three = dataclasses.replace(three, x_train=three.x_train[keep[0]], y_train=three.y_train[keep[0]],
                                x_test=three.x_test[keep[1]], y_test=three.y_test[keep[1]],
                                class_names=three.class_names[:3])  # fmt: skip
    monkeypatch.setattr(runner, "load_dataset", lambda config: three)
    out = tmp_path / "run"
    flags = with_flags(noise_model="cifar10-semantic", sizes="32")
    fails_with([*flags, "--out", str(out)], capsys, "needs CIFAR-10's 10 classes, not 3")
    assert not out.exists()


def test_an_empty_out_is_refused_and_nothing_is_written_here(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:  # argparse's own error: usage, then one error line
        run_grid.main([*TINY, "--out", ""])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --out: is empty; give the run folder to write" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
