"""Growing a grid with --resume: a finished grid given one more repeat and one more noise level trains only
the new points and leaves every stored replica's row and counts byte-identical; a grid that drops a stored
point, or any other changed setting, is refused naming the field; an extension stopped part-way (before its
rows were recorded, or after its first new replica) resumes to the same final result."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import run_grid
from labelsim.__main__ import main as labelsim_main
from labelsim.config import RunConfig
from labelsim.rundir import RunDirError, RunStore, load_run
from labelsim.rundir import store as store_module
from labelsim.sim import grid, runner
from labelsim.sim.data import load_dataset

# The smallest grid of tests/test_resume.py: 5 replicas (noise 0, 0.2, 0.4 on 256 images; sizes 32, 64).
BASE = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "3", "--batch-size", "32", "--sizes", "32,64", "--slots", "2",
    "--steps-per-call", "1", "--checkpoint-seconds", "0", "--no-progress",
]  # fmt: skip
SMALL = ["--noise", "0,0.2,0.4", "--repeats", "1"]
# One more repeat and one more noise level: 4 levels x 2 repeats + 2 sizes x 2 repeats = 12 replicas.
GROWN = ["--noise", "0,0.2,0.4,0.6", "--repeats", "2"]
STORED, TOTAL = 5, 12


def table(out: Path) -> list[dict[str, str]]:
    """replicas.csv as dicts."""
    with (out / "replicas.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def table_lines(out: Path) -> list[bytes]:
    """replicas.csv's lines as stored."""
    return (out / "replicas.csv").read_bytes().splitlines()


def confusion(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(counts, transitions) of a run."""
    with np.load(out / "confusion.npz") as data:
        return data["counts"], data["transitions"]


def results(out: Path) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray]:
    """Everything a run computed: its rows without wall times, counts and transitions."""
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in table(out)]
    return (rows, *confusion(out))


def stored_predictions(out: Path) -> np.ndarray | None:
    """RUN/test_predictions.npy as the run reads it; None when this labelsim does not record them."""
    try:
        from labelsim.rundir.predictions import read_test_predictions
    except ImportError:
        return None
    return read_test_predictions(out)


def fingerprint(folder: Path) -> dict[str, bytes]:
    """Every file of a run folder but the writer's lock."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


@contextlib.contextmanager
def recording_starts(patch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The replicas that start training, in order (a hook on the runner's replica start)."""
    indices: list[int] = []
    original = runner._start_replica

    def recording(ctx: runner.GridRun, trainer: object, index: int) -> object:
        indices.append(index)
        return original(ctx, trainer, index)

    patch.setattr(runner, "_start_replica", recording)
    yield indices


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The replicas that start training in a test."""
    with recording_starts(monkeypatch) as indices:
        yield indices


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished small grid, shared (tests grow copies of it)."""
    out = tmp_path_factory.mktemp("small") / "run"
    assert run_grid.main([*BASE, *SMALL, "--out", str(out)]) == 0
    assert [row["status"] for row in table(out)] == ["finished"] * STORED
    return out


@dataclass(frozen=True)
class Grown:
    """A copy of the small grid grown, uninterrupted, by one repeat and one noise level."""

    out: Path
    started: list[int]  # the replicas that trained
    stdout: str


@pytest.fixture(scope="module")
def grown(small: Path, tmp_path_factory: pytest.TempPathFactory) -> Grown:
    out = tmp_path_factory.mktemp("grown") / "run"
    shutil.copytree(small, out)
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, recording_starts(patch) as indices, contextlib.redirect_stdout(stdout):
        assert run_grid.main([*BASE, *GROWN, "--out", str(out), "--resume"]) == 0
    return Grown(out, indices, stdout.getvalue())


def copy_of(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def test_growing_trains_only_the_new_points_and_keeps_every_stored_replica(
    small: Path, grown: Grown, tmp_path: Path, started: list[int], capsys: pytest.CaptureFixture
) -> None:
    out = grown.out
    line = f"extending {out}: {STORED} stored replicas kept, {TOTAL - STORED} new to train"
    assert line in grown.stdout.splitlines()
    assert grown.stdout.index(line) > grown.stdout.index("grid: 12 replicas")  # after the plan, before training

    # Only the new rows trained, each once; the stored ones keep their index, bytes and counts.
    assert sorted(grown.started) == list(range(STORED, TOTAL))
    assert table_lines(out)[: STORED + 1] == table_lines(small)  # header and stored rows, byte for byte
    (counts, transitions), (old_counts, old_transitions) = confusion(out), confusion(small)
    assert counts.shape[0] == transitions.shape[0] == TOTAL
    np.testing.assert_array_equal(counts[:STORED], old_counts)
    np.testing.assert_array_equal(transitions[:STORED], old_transitions)
    rows = table(out)
    assert [int(row["replica"]) for row in rows] == list(range(TOTAL))
    assert all(row["status"] == "finished" for row in rows)
    assert all(counts[i].sum() == 64 for i in range(STORED, TOTAL))  # every test image counted once

    # The new rows are exactly the grid points the grown grid adds.
    meta = json.loads((out / "run.json").read_text())
    config = RunConfig.from_dict(meta["config"])
    assert config.grid.repeats == 2 and config.grid.noise_levels == (0.0, 0.2, 0.4, 0.6)
    assert meta["replicas"] == TOTAL and meta["status"] == "finished"
    wanted = {store_module.grid_point(spec) for spec in grid.build_replicas(config, 256)}
    assert {store_module.grid_point(row.spec) for row in load_run(out).replicas} == wanted
    assert labelsim_main(["check", str(out)]) == 0

    # Resumed again, bare or with the grown flags, the grown run trains nothing more.
    again = copy_of(out, tmp_path)
    before = results(again)
    assert run_grid.main(["--out", str(again), "--resume", "--no-progress"]) == 0
    assert run_grid.main([*BASE, *GROWN, "--out", str(again), "--resume"]) == 0
    assert started == [] and "extending" not in capsys.readouterr().out
    after = results(again)
    assert after[0] == before[0]
    np.testing.assert_array_equal(after[1], before[1])


def test_new_replicas_match_the_same_points_of_a_grid_trained_whole(grown: Grown, tmp_path: Path) -> None:
    """Keys come from grid coordinates: a point trained in the extension equals that point trained at once."""
    whole = tmp_path / "whole"
    assert run_grid.main([*BASE, *GROWN, "--out", str(whole)]) == 0
    ours, theirs = load_run(grown.out), load_run(whole)
    by_point = {store_module.grid_point(row.spec): row for row in theirs.replicas}
    for row in ours.replicas:
        twin = by_point[store_module.grid_point(row.spec)]
        np.testing.assert_array_equal(ours.counts[row.replica], theirs.counts[twin.replica])
        assert (row.accuracy, row.realized_noise, row.steps) == (twin.accuracy, twin.realized_noise, twin.steps)


@pytest.mark.parametrize(
    "flags,field",
    [
        (["--noise", "0,0.2", "--repeats", "1"], "grid.noise_levels: stored 0,0.2,0.4, requested 0,0.2"),
        (["--noise", "0,0.2,0.4,0.6", "--repeats", "1", "--sizes", "64"], "grid.sizes: stored 32,64, requested 64"),
    ],
)
def test_a_grid_that_drops_a_stored_point_is_refused_naming_the_field(
    small: Path, tmp_path: Path, flags: list[str], field: str, capsys: pytest.CaptureFixture
) -> None:
    out = copy_of(small, tmp_path)
    before = fingerprint(out)
    assert run_grid.main([*BASE, *flags, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err
    assert field in lines[0] and "pass the full grid" in lines[0] and "start a new --out" in lines[0]
    assert fingerprint(out) == before


def test_a_table_whose_stored_replica_the_grid_lacks_is_refused(small: Path, tmp_path: Path) -> None:
    out = copy_of(small, tmp_path)
    config = run_grid.resolve_config(run_grid.build_parser().parse_args(["--out", str(out), "--resume"]))
    dataset = load_dataset(config.data)
    specs = grid.build_replicas(config, len(dataset.y_train))
    before = fingerprint(out)
    refusal = r"holds replicas this config does not make \(replica 4\); pass the full grid"
    with pytest.raises(RunDirError, match=refusal):
        runner.open_store(config, out, True, specs[:-1], dataset, grow=True)
    assert fingerprint(out) == before


@pytest.mark.parametrize("preset", [[], ["--preset", "demo"]])
def test_growing_with_another_model_is_refused_naming_the_field(
    small: Path, tmp_path: Path, preset: list[str], capsys: pytest.CaptureFixture
) -> None:
    out = copy_of(small, tmp_path)
    before = fingerprint(out)
    assert run_grid.main([*preset, *BASE, *GROWN, "--model", "lenet", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "model.name" in err and "lenet" in err
    assert "grid." not in err  # the grid's growth is allowed: only the model is named
    assert fingerprint(out) == before


def test_a_stopped_extension_resumes_to_the_uninterrupted_result(
    small: Path, grown: Grown, tmp_path: Path, started: list[int], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = copy_of(small, tmp_path)
    argv = [*BASE, *GROWN, "--out", str(out), "--resume"]

    # 1. Stopped while the extension is being recorded: new rows written, run.json not yet.
    original_write_json = store_module.write_json

    def stop_at_run_json(path: Path, payload: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "write_json", stop_at_run_json)
    assert run_grid.main(argv) != 0
    monkeypatch.setattr(store_module, "write_json", original_write_json)
    assert len(table(out)) == TOTAL and confusion(out)[0].shape[0] == TOTAL  # written before run.json
    run = load_run(out)  # reads as the run it was: the new rows are not recorded yet
    assert len(run.replicas) == STORED and run.counts.shape[0] == STORED
    assert len(RunStore.open(out).rows) == STORED
    assert labelsim_main(["check", str(out)]) == 0
    assert started == []

    # 2. Stopped again after the first new replica finished.
    original_harvest = runner._harvest

    def stop_after_first_new(ctx: runner.GridRun, *args: object) -> None:
        original_harvest(ctx, *args)
        if any(row.finished for row in ctx.store.rows[STORED:]):
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_harvest", stop_after_first_new)
    assert run_grid.main(argv) != 0
    monkeypatch.setattr(runner, "_harvest", original_harvest)
    rows = table(out)
    new_finished = [row for row in rows[STORED:] if row["status"] == "finished"]
    assert len(rows) == TOTAL and 1 <= len(new_finished) < TOTAL - STORED
    assert table_lines(out)[: STORED + 1] == table_lines(small)
    assert labelsim_main(["check", str(out)]) == 0
    predictions = stored_predictions(out)
    if predictions is not None:  # the stored replicas' rows as they were; the new ones -1 until they finish
        assert predictions.shape == (TOTAL, 64)
        np.testing.assert_array_equal(predictions[:STORED], stored_predictions(small))
        unfinished = [i for i, row in enumerate(rows) if row["status"] != "finished"]
        assert (predictions[unfinished] == -1).all()
        assert (predictions[[int(row["replica"]) for row in new_finished]] >= 0).all()

    # 3. A bare resume (the run.json now records the grown grid) finishes it: the same as uninterrupted.
    capsys.readouterr()
    started.clear()
    assert run_grid.main(["--out", str(out), "--resume", "--no-progress"]) == 0
    assert "extending" not in capsys.readouterr().out
    assert all(i >= STORED for i in started)
    ours, theirs = results(out), results(grown.out)
    assert ours[0] == theirs[0]
    np.testing.assert_array_equal(ours[1], theirs[1])
    np.testing.assert_array_equal(ours[2], theirs[2])


def test_custom_replicas_grow_by_more_repeats_only_when_asked(tmp_path: Path, started: list[int]) -> None:
    """More repeats of the same custom plans (a loop's fresh repeats asked for again with more) train only
    the new repeats with grow=True, keeping the stored replicas byte for byte; without it they are refused."""
    from labelsim.analysis.budget.simulation import custom_specs

    config = run_grid.resolve_config(run_grid.build_parser().parse_args([*BASE, *SMALL, "--out", "unused"]))
    dataset = load_dataset(config.data)
    classes = int(dataset.num_classes)
    plans = [("a", [8] * classes, [0.0] * classes), ("b", [6] * classes, [0.25] * classes)]
    out = tmp_path / "fresh"
    runner.run_grid(config, out, replicas=custom_specs(plans, config.model.name, 2, first_repeat=2),
                    progress=False, dataset=dataset)  # fmt: skip
    before = results(out)
    more = custom_specs(plans, config.model.name, 3, first_repeat=2)  # repeats 2, 3 stored; 4 new
    with pytest.raises(RunDirError, match="different replica table"):
        runner.run_grid(config, out, resume=True, replicas=more, progress=False, dataset=dataset)
    started.clear()
    runner.run_grid(config, out, resume=True, replicas=more, progress=False, dataset=dataset, grow=True)
    rows, counts, _ = results(out)
    assert len(started) == 2 and sorted(started) == [4, 5]  # the two new repeats, appended after the four
    assert rows[:4] == before[0]
    np.testing.assert_array_equal(counts[:4], before[1])
    assert sorted((row["label"], int(row["repeat"])) for row in rows) == sorted(
        (label, repeat) for label in "ab" for repeat in (2, 3, 4))
    assert all(row["status"] == "finished" for row in rows)
