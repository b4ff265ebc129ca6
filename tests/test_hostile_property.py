"""Random flag values and combinations, drawn by hypothesis, for run_grid.py and for budget: every
command line ends with exit status 0 or 2, never a traceback, and one that is refused (2) leaves
no folder or file behind. Validation only: training is replaced by the creation of the run folder,
and budget plans on curves fitted once, so the test takes seconds.

Each drawn command line gives some flags a hostile value (out of range, not a number, a file of
the wrong shape) and the others a usable value or none, so that both refusals and runs that
start are drawn, and combinations of usable values that do not fit together (lenet on 8-pixel
images, the matrix noise model without a matrix) come up too."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import run_grid
from labelsim.__main__ import main as labelsim_main
from labelsim.commands import budget
from labelsim.sim import runner

sys.path.insert(0, str(Path(__file__).parent))
from fake_run import write_fake_run  # noqa: E402

SETTINGS = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MOST_HOSTILE = 2  # flags with a hostile value in one command line
NUMBERS_NO_RUN_TAKES = ["-3", "-1", "0", str(2**31), str(2**32), str(10**20), str(-(10**20)), "nan", "x", ""]

# flag -> (usable values, hostile values); a switch (no value) has no hostile values.
Flags = Mapping[str, tuple[Sequence[str], Sequence[str]]]


@st.composite
def command_line(draw: st.DrawFn, fixed: Sequence[str], flags: Flags, switches: Sequence[str]) -> list[str]:
    """``fixed``, then each flag with a usable value or none, except up to MOST_HOSTILE flags that get
    a hostile value, then some of the switches."""
    hostile = draw(st.sets(st.sampled_from(sorted(flags)), max_size=MOST_HOSTILE))
    argv = list(fixed)
    for flag, (usable, bad) in flags.items():
        value = draw(st.sampled_from(list(bad) if flag in hostile else [None, *usable]))
        if value is not None:
            argv += [flag, value]
    return argv + [switch for switch in switches if draw(st.booleans())]


def run_quietly(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    """Exit status and stderr of a command (argparse's refusals exit through SystemExit)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as stop:
            status = stop.code
    return status, err.getvalue()


@contextlib.contextmanager
def empty_folder(path: Path) -> Iterator[Path]:
    """``path``, empty, for one drawn example."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ run_grid.py

# Each example runs in an empty folder WORK beside INPUTS, the files its flags may name.
WORK, INPUTS = "work", "inputs"
MATRIX = f"../{INPUTS}/good.json"
BAD_MATRICES = [f"../{INPUTS}/{name}" for name in ("small.json", "ragged.json", "plain.txt", "missing.json")]

TRAIN_FIXED = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--width", "4", "--epochs", "1",
    "--batch-size", "32", "--sizes", "64", "--steps-per-call", "2", "--noise", "0,0.4", "--repeats", "1",
    "--no-progress",
]  # fmt: skip
TRAIN_FLAGS: Flags = {
    "--seed": (["0", "7", str(2**32 - 1)], ["-1", str(2**32), str(10**20), "x"]),
    "--width": (["1", "8"], ["0", "-3", "x"]),
    "--synthetic-size": (["8", "12", "16"], ["-1", "0", "3", "4", "7"]),
    "--synthetic-train": (["128", "256"], ["-5", "0", "10", "x"]),
    "--synthetic-test": (["1", "32"], ["-1", "0"]),
    "--epochs": (["1", "2"], NUMBERS_NO_RUN_TAKES),
    "--batch-size": (["16", "32"], NUMBERS_NO_RUN_TAKES),
    "--noise": (["0", "0,0.4", "0.2"], ["", "nan", "-0.1", "1.5", "inf", "a,b"]),
    "--sizes": (["64", "64,128"], ["0", "-5", "100000", "x"]),
    "--repeats": (["1", "2"], ["0", "-1", str(10**9), "x"]),
    "--slots": (["0", "1", "2"], ["-1", "x"]),
    "--memory-fraction": (["0.5", "1"], ["0", "1.5", "nan", "-inf", "x"]),
    "--checkpoint-seconds": (["0", "60"], ["-1", "nan"]),
    "--loop-group": (["0", "2"], ["-2"]),
    "--steps-per-call": (["0", "3"], ["-1"]),
    "--strategy": (["auto", "loop", "vmap"], ["teleport"]),
    "--model": (["small_cnn", "lenet"], ["resnet9000"]),
    "--noise-model": (["shuffle", "pairflip", "matrix"], ["cifar10-semantic", "human", "gremlins"]),
    "--noise-matrix": ([MATRIX], BAD_MATRICES),
    "--set": (["recipe.learning_rate=0.002"],
              ["recipe.epochs=three", "model.width=-3", "exec.memory_fraction=0", "grid.seed=-1",
               "recipe.compute_dtype=float8", "exec.eval_batch=0", "nope.x=1"]),
    "--out": (["run", "a/b/run"], ["", f"../{INPUTS}/plain.txt", f"../{INPUTS}/plain.txt/run"]),
}  # fmt: skip
TRAIN_SWITCHES = ["--cross", "--stratified", "--resume"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with INPUTS: matrices of the right and wrong size, a file that is not a matrix."""
    path = tmp_path_factory.mktemp("hostile")
    inputs = path / INPUTS
    inputs.mkdir()
    (inputs / "good.json").write_text(json.dumps(np.full((10, 10), 0.1).tolist()))
    (inputs / "small.json").write_text(json.dumps(np.full((2, 2), 0.5).tolist()))
    (inputs / "ragged.json").write_text("[[1, 0], [1]]")
    (inputs / "plain.txt").write_text("not a matrix")
    return path


def create_only(config: Any, out: Path, resume: bool, specs: Any, dataset: Any, programs: Any, extra: Any,
                *_: Any) -> None:
    """Instead of training: create (or open) the run folder, as training does first."""
    runner.open_store(config, out, resume, specs, dataset, extra)


@SETTINGS
@given(argv=command_line(TRAIN_FIXED, TRAIN_FLAGS, TRAIN_SWITCHES))
def test_run_grid_exits_0_or_2_without_a_traceback_or_a_refused_folder(root: Path, argv: list[str]) -> None:
    argv = argv if "--out" in argv else [*argv, "--out", "run"]
    inputs = sorted(p.name for p in (root / INPUTS).iterdir())
    with empty_folder(root / WORK) as work, pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setattr(runner, "_train_into", create_only)
        status, err = run_quietly(run_grid.main, argv)
        event(f"exit status {status}")
        assert status in (0, 2), err
        assert "Traceback" not in err, err
        assert sorted(p.name for p in (root / INPUTS).iterdir()) == inputs
        if status == 2:
            assert list(work.iterdir()) == [], f"refused, yet left {sorted(work.rglob('*'))}: {err}"
        else:
            assert (work / argv[argv.index("--out") + 1] / "run.json").is_file()


# ------------------------------------------------------------------ budget


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run to plan budgets on."""
    path = tmp_path_factory.mktemp("budget") / "run"
    write_fake_run(path)
    return path


@pytest.fixture(scope="module")
def fitted(fake_run: Path) -> Any:
    """The run's fitted curves, fitted once: each example plans on them."""
    return budget.load_context(fake_run)


BUDGET_FIXED = ["--no-save", "--tier", "crowd:0.01:0.2"]
BUDGET_FLAGS: Flags = {
    "--budget": (["40", "400"], ["0", "-5", "nan", "inf", "1e308", "1e-9", "abc"]),
    "--tier": (["expert:0.05:0.02"],
               ["crowd:0:0.2", "crowd:-1:0.2", "crowd:nan:0.2", "crowd:inf:0.2", "crowd:1e20:0.2", "crowd:1e-300:0.2",
                "crowd:0.01:1", "crowd:0.01:-0.1", "crowd:0.01:nan", ":0.01:0.2", "crowd:0.01", "a:b:c"]),
    "--points": (["2", "3", "5"], ["1", "0", "-4", "1001", "100000000", "x"]),
    "--max-budget": (["80", "1000"], ["30", "-1", "inf", "nan", "1e308"]),
    "--step": (["0", "50"], ["-3", "1000000000000000", "x"]),
    "--extrapolate": (["1", "2"], ["0.5", "0", "-1", "inf", "nan"]),
    "--max-ratio": (["none", "4"], ["0.5", "-2", "nan"]),
    "--target": (["0.5", "0.87"], ["0", "1", "nan", "-1"]),
    "--objective": (["mean", "worst"], ["median"]),
    "--class-price": (["cat=2"], ["cat=0", "cat=-1", "dog=nan", "unicorn=2", "cat=1e-300"]),
    "--weights": (["cat=2"], ["cat=0", "cat=-1", "cat=nan", "unicorn=1"]),
    "--available": (["100", "cat=50"], ["cat=-5", "0", "unicorn=3", "nan"]),
    "--rounds": ([], ["2", "0"]),
    "--repeats": (["2"], ["0", "-1"]),
    "--chart": (["charts/curve.json"], ["charts/curve.xyz"]),
}  # fmt: skip


@SETTINGS
@given(flags=command_line(BUDGET_FIXED, BUDGET_FLAGS, ()))
def test_budget_exits_0_or_2_without_a_traceback_or_a_file_when_refused(
    fake_run: Path, fitted: Any, flags: list[str]
) -> None:
    flags = flags if "--budget" in flags else [*flags, "--budget", "40"]
    flags = flags if "--points" in flags else [*flags, "--points", "3"]  # the default 25 takes seconds
    before = sorted(p.name for p in fake_run.iterdir())
    with empty_folder(fake_run.parent / WORK) as work, pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setattr(budget, "load_context", lambda path: fitted)
        status, err = run_quietly(labelsim_main, ["budget", str(fake_run), *flags])
        event(f"exit status {status}")
        assert status in (0, 2), err
        assert "Traceback" not in err, err
        assert sorted(p.name for p in fake_run.iterdir()) == before
        if status == 2:
            assert list(work.iterdir()) == [], f"refused, yet left {sorted(work.rglob('*'))}: {err}"
