"""Progress that tells the truth: a line while the batched program compiles (with about how long, once a
compile was measured), a bar that starts after that first chunk (so no ETA from the compile time) and counts
replica-steps and replicas as whole numbers; ``budget --simulate`` lists the plans before it trains them."""

from __future__ import annotations

import argparse
import re
import sys
import types
from pathlib import Path

import pytest

import run_grid
from labelsim.commands import budget as budget_command
from labelsim.rundir import load_run
from labelsim.sim import runner

sys.path.insert(0, str(Path(__file__).parent))
from fake_run import write_fake_run  # noqa: E402

TINY = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "3", "--batch-size", "32", "--noise", "0,0.2,0.4", "--sizes", "32,64",
    "--steps-per-call", "1", "--repeats", "1", "--slots", "2",
]  # fmt: skip
COMPILING = re.compile(r"compiling the batched program for small_cnn( \(about \d+ s\)| \.\.\.)$")
COMPILED = re.compile(r"compiled in \d+\.\d s \(the first chunk of steps included\)$")
BAR = re.compile(r"\| *(\S+)/(\S+) \[(\d\d:\d\d)<([^,]+), [^,]+, replicas (\S+)/(\S+), util \d+%\]")


def test_a_run_shows_the_compile_then_a_bar_of_whole_numbers_that_starts_after_it(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert run_grid.main([*TINY, "--out", str(out)]) == 0
    lines = [line.strip() for line in re.split(r"[\r\n]", capfd.readouterr().err) if line.strip()]
    compiling = next(i for i, line in enumerate(lines) if COMPILING.match(line))
    compiled = next(i for i, line in enumerate(lines) if COMPILED.match(line))
    frames = [(i, BAR.search(line)) for i, line in enumerate(lines) if BAR.search(line)]
    assert frames and compiling < compiled < frames[0][0]
    assert not any("step/s" in line for line in lines[:compiled])  # no bar before the compile ends

    run = load_run(out)
    steps = sum(r.total_steps for r in run.replicas)
    for _, bar in frames:  # every count a whole number (no "1.2k", no "2.00/81.0")
        assert all(re.fullmatch(r"\d+", value) for value in bar.group(1, 2, 5, 6)), bar.group(0)
        assert int(bar.group(2)) == steps and int(bar.group(6)) == len(run.replicas)
    first, last = frames[0][1], frames[-1][1]
    # The bar starts once the first chunk is done: its steps counted, its clock at zero, no ETA yet.
    assert int(first.group(1)) > 0 and first.group(3) == "00:00" and first.group(4) == "?"
    assert (last.group(1), last.group(5)) == (str(steps), str(len(run.replicas)))
    assert load_run(out).meta["execution"]["small_cnn"]["first_chunk_seconds"] >= 0


def test_the_compile_line_gives_the_last_measured_time(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(runner, "_FIRST_CHUNK_SECONDS", {})
    times = iter([100.0, 112.4, 200.0, 300.0, 400.0])
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(monotonic=lambda: next(times)))
    first = runner.Progress("lenet", 10, True)
    assert capsys.readouterr().err == "compiling the batched program for lenet ...\n"  # nothing measured yet
    first.update(2, 1.0, 0, 3)
    first.close()
    assert capsys.readouterr().err.startswith("compiled in 12.4 s (the first chunk of steps included)\n")
    runner.Progress("lenet", 10, True, previous=3.0)  # this process's measurement comes first
    assert capsys.readouterr().err == "compiling the batched program for lenet (about 12 s)\n"
    runner.Progress("resnet", 10, True, previous=41.6)  # else the one the run recorded
    assert capsys.readouterr().err == "compiling the batched program for resnet (about 42 s)\n"
    runner.Progress("resnet", 10, False, previous=41.6)  # --no-progress: silent
    assert capsys.readouterr().err == ""


class TrainingStarted(Exception):
    """Raised by the stand-in trainer: what was printed before it is all that precedes training."""


@pytest.fixture
def budget_run(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    write_fake_run(path, repeats=2)
    return path


def stop_at_training(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> list[tuple[str, list]]:
    """Replace the trainer with one that records stderr so far and the replicas it was given, then stops."""
    calls: list[tuple[str, list]] = []

    def run_grid_stub(config: object, out: Path, *, resume: bool = False, replicas: list | None = None,
                      progress: bool = True, grow: bool = False) -> Path:  # fmt: skip
        calls.append((capsys.readouterr().err, list(replicas or [])))
        raise TrainingStarted

    monkeypatch.setitem(sys.modules, "labelsim.sim.runner", types.SimpleNamespace(run_grid=run_grid_stub))
    return calls


def budget(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    budget_command.add_arguments(parser)
    return budget_command.run(parser.parse_args(argv))


PLAN_LINE = re.compile(r"^  (.+): ([\d,]+) labels, cost ([\d,.]+), predicted (\d+\.\d%|- \(outside the curves\))$")


@pytest.mark.parametrize("mode", [["--simulate"], ["--simulate", "--rounds", "1"]])
def test_budget_simulate_lists_the_plans_before_training_them(
    budget_run: Path, mode: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls = stop_at_training(monkeypatch, capsys)
    argv = [str(budget_run), "--budget", "40", "--tier", "crowd:0.04:0.20", "--tier", "expert:0.15:0.02",
            "--points", "4", "--repeats", "2", *mode]  # fmt: skip
    with pytest.raises(TrainingStarted):
        budget(argv)
    (before, specs), = calls
    lines = before.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("training "))
    labels = sorted({spec.label for spec in specs})
    assert lines[head].startswith(f"training {len(labels)} plans ({len(specs)} replicas) in ")
    plans = [PLAN_LINE.match(line) for line in lines[head + 1 : head + 1 + len(labels)]]
    assert all(plans), lines[head:]
    # Every plan listed is a plan trained (by its first name), with the labels its replicas get.
    names = {m.group(1).split(" = ")[0]: int(m.group(2).replace(",", "")) for m in plans}
    assert sorted(names) == labels
    assert all(names[spec.label] == spec.train_size for spec in specs)
    assert all(float(m.group(3).replace(",", "")) <= 40 + 1e-9 for m in plans)
