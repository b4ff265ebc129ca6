"""The training command line: ``python -m labelsim train`` and ``run_grid.py`` are one command,
its flags come from the config fields, and ``--set`` reaches every other field."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import run_grid
from labelsim.__main__ import build_parser as labelsim_parser
from labelsim.__main__ import main as labelsim_main
from labelsim.commands import train
from labelsim.config import PRESETS, RunConfig, default_config, preset
from labelsim.sim import runner

FLAGS = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--width", "4", "--epochs", "2",
    "--noise", "0,0.4", "--sizes", "128,2e2", "--cross", "--noise-model", "shuffle, pairflip",
    "--slots", "3", "--set", "recipe.learning_rate=0.002", "--no-progress",
]  # fmt: skip


def via_run_grid(argv: list[str]) -> RunConfig:
    """The config run_grid.py builds of these flags."""
    return run_grid.resolve_config(run_grid.build_parser().parse_args(argv))


def via_labelsim(argv: list[str]) -> RunConfig:
    """The config ``python -m labelsim train`` builds of these flags."""
    args = labelsim_parser().parse_args(["train", *argv])
    assert args._module is train
    return train.resolve_config(args)


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> list[tuple[RunConfig, Path, dict[str, Any]]]:
    """Replace the trainer: record each call and return its out folder."""
    calls: list[tuple[RunConfig, Path, dict[str, Any]]] = []

    def record(config: RunConfig, out: Path, **kwargs: Any) -> Path:
        calls.append((config, out, kwargs))
        return out

    monkeypatch.setattr(runner, "run_grid", record)
    return calls


def test_both_entry_points_build_the_same_config(tmp_path: Path) -> None:
    argv = [*FLAGS, "--out", str(tmp_path / "run")]
    assert via_run_grid(argv) == via_labelsim(argv)
    assert via_run_grid(["--preset", "paper", *argv]) == via_labelsim(["--preset", "paper", *argv])


def test_run_grid_reads_the_config_module_presets() -> None:
    assert run_grid.PRESETS is PRESETS


@pytest.mark.parametrize("main", [run_grid.main, lambda argv: labelsim_main(["train", *argv])])
def test_both_entry_points_run_the_same_grid_and_exit_alike(
    main: Any, fake_runner: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main([*FLAGS, "--out", str(out)]) == 0
    assert fake_runner == [(via_run_grid([*FLAGS, "--out", str(out)]), out, {"resume": False, "progress": False})]
    assert capsys.readouterr().out.startswith(f"done: {out}/run.json")

    def interrupted(*_: object, **__: object) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text("{}")  # the run had started: its folder can be resumed
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_grid", interrupted)
    assert main(["--out", str(out)]) == 130
    assert f"Continue with: --out {out} --resume" in capsys.readouterr().err


def test_every_flag_sets_its_section_and_field(tmp_path: Path) -> None:
    config = via_labelsim(["--noise", "0,0.1", "--strategy", "vmap", "--no-augment", "--out", str(tmp_path)])
    assert config.grid.noise_levels == (0.0, 0.1)
    assert config.exec.replica_strategy == "vmap"
    assert config.recipe.augment is False
    demo = preset("demo")
    assert dataclasses.replace(config, grid=demo.grid, exec=demo.exec, recipe=demo.recipe) == demo
    assert dataclasses.replace(config.recipe, augment=True) == demo.recipe


# A sample command-line value per field type, and what it parses to.
SAMPLES = {
    int: ("7", 7), float: ("0.25", 0.25), str: ("other", "other"), str | None: ("other", "other"),
    tuple[int, ...]: ("3,4e1", (3, 40)), tuple[float, ...]: ("0.5,0.75", (0.5, 0.75)),
    tuple[str, ...]: ("a, b", ("a", "b")),
}  # fmt: skip


def flag_and_value(cf: train.ConfigField) -> tuple[list[str], Any]:
    """Command-line words that set this field to a value unlike its default, and that value."""
    flag, choices = cf.field.metadata["flag"], cf.field.metadata.get("choices")
    if cf.hint is bool:
        return [flag], not cf.field.default
    text, value = (choices[-1], choices[-1]) if choices else SAMPLES[cf.hint]
    return [flag, text], value


@pytest.mark.parametrize("cf", train.flagged_fields(), ids=lambda cf: cf.field.metadata["flag"])
def test_each_flag_changes_exactly_its_own_field(cf: train.ConfigField, tmp_path: Path) -> None:
    words, value = flag_and_value(cf)
    # without --preset the start follows the dataset: a real one starts from the study's model and recipe
    start = default_config(value) if (cf.section, cf.field.name) == ("data", "name") else preset("demo")
    assert getattr(getattr(start, cf.section), cf.field.name) != value
    section = dataclasses.replace(getattr(start, cf.section), **{cf.field.name: value})
    assert via_labelsim([*words, "--out", str(tmp_path)]) == dataclasses.replace(start, **{cf.section: section})


def test_every_old_flag_is_still_there() -> None:
    flags = {cf.field.metadata["flag"] for cf in train.flagged_fields()}
    assert flags == {
        "--dataset", "--data-dir", "--human-labels", "--synthetic-train", "--synthetic-test", "--synthetic-size",
        "--noise", "--sizes", "--repeats", "--cross", "--noise-model", "--noise-matrix", "--stratified", "--seed",
        "--model", "--models", "--width", "--conv", "--epochs", "--batch-size", "--no-augment", "--slots",
        "--steps-per-call", "--strategy", "--loop-group", "--checkpoint-seconds", "--memory-fraction",
        "--image-size", "--test-fraction", "--split-seed",
    }  # fmt: skip


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("recipe.learning_rate=0.002", ("recipe", "learning_rate", 0.002)),
        ("recipe.lr_decays=10:1e-4,20:5e-5", ("recipe", "lr_decays", ((10, 1e-4), (20, 5e-5)))),
        ("recipe.lr_decays=", ("recipe", "lr_decays", ())),
        ("recipe.hflip=false", ("recipe", "hflip", False)),
        ("exec.unroll=4", ("exec", "unroll", 4)),
        ("data.synthetic_seed=3", ("data", "synthetic_seed", 3)),
        ("grid.noise_levels=0.3", ("grid", "noise_levels", (0.3,))),
    ],
)
def test_set_reaches_any_field(entry: str, expected: tuple[str, str, Any], tmp_path: Path) -> None:
    config = via_labelsim(["--set", entry, "--out", str(tmp_path)])
    section, name, value = expected
    demo = preset("demo")
    assert getattr(getattr(demo, section), name) != value
    changed = dataclasses.replace(getattr(demo, section), **{name: value})
    assert config == dataclasses.replace(demo, **{section: changed})


@pytest.mark.parametrize(
    "entry, phrases",
    [
        ("nope.x=1", ["unknown config section 'nope'", "data, model, recipe, grid, exec"]),
        ("recipe.nope=1", ["recipe has no field 'nope'", "learning_rate", "epochs"]),
        ("recipe.epochs=three", ["'three' is not a valid int for recipe.epochs"]),
        ("grid.noise_levels=a,b", ["'a,b' is not a comma-separated list of numbers"]),
        ("recipe.augment=maybe", ["'maybe' is not true or false"]),
        ("recipe.lr_decays=10", ["'10' is not a comma-separated list of int:float items"]),
        ("learning_rate", ["write section.field=value", "recipe.learning_rate=0.002"]),
    ],
)
@pytest.mark.parametrize("main", [run_grid.main, lambda argv: labelsim_main(["train", *argv])])
def test_a_bad_set_is_one_clear_error(
    entry: str, phrases: list[str], main: Any, fake_runner: list, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["--set", entry, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(phrase in lines[0] for phrase in phrases), lines[0]
    assert fake_runner == [] and not (tmp_path / "run").exists()


def test_a_bare_resume_reuses_the_stored_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = dataclasses.replace(preset("paper"), recipe=dataclasses.replace(preset("paper").recipe, epochs=3))
    monkeypatch.setattr(train, "stored_config", lambda out: stored)
    (tmp_path / "run.json").write_text("{}")
    out = ["--out", str(tmp_path), "--resume"]
    assert via_labelsim(out) == stored
    # Flags for speed (exec) keep the resume bare; they apply on top of the stored config.
    config = via_labelsim([*out, "--slots", "2", "--set", "exec.unroll=3", "--no-progress"])
    assert config == dataclasses.replace(stored, exec=dataclasses.replace(stored.exec, slots=2, unroll=3))
    # Any other flag or --set starts from the preset again (and the runner names the difference).
    assert via_labelsim([*out, "--epochs", "3"]).data == preset("demo").data
    assert via_labelsim([*out, "--set", "recipe.learning_rate=0.01"]).data == preset("demo").data
