"""The run directory's one owner: the replica record round-trips, class shares come from the
recorded training class counts, and a run from a newer schema is refused with a clear message."""

from __future__ import annotations

import errno
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fake_run import write_fake_run
from labelsim.__main__ import main as labelsim_main
from labelsim.analysis.budget.context import training_class_counts
from labelsim.config import DataConfig, ReplicaSpec, RunConfig
from labelsim.rundir import (
    SCHEMA_KEY,
    SCHEMA_VERSION,
    Replica,
    RunDirError,
    RunStore,
    claim,
    clear_stopped_creation,
    load_run,
    read_rows,
    store,
)
from labelsim.sim import runner
from labelsim.sim.data import Dataset
from labelsim.sim.runner import run_meta

import run_grid


def test_replica_record_round_trips_through_the_table(tmp_path: Path) -> None:
    spec = ReplicaSpec(0, "custom", 2, "pairflip", 0.25, 30, "lenet", (10, 20), (0.1, 0.4), "plan a", 0.5)
    done = Replica.from_spec(spec, realized_noise=0.2, accuracy=0.75, status="finished", steps=9, total_steps=9)
    store = RunStore.create(tmp_path, {"config": {}, "classes": ["a", "b"]}, [spec], 2)
    store.update(0, **{k: getattr(done, k) for k in ("realized_noise", "accuracy", "status", "steps", "total_steps")})
    store.flush()
    (back,) = read_rows(tmp_path)
    assert back == done and back.spec == spec and back.size == 30
    assert math.isnan(Replica.from_spec(spec).accuracy) and Replica.from_spec(spec).status == "pending"


def _unbalanced() -> Dataset:
    y_train = np.repeat(np.arange(3, dtype=np.int32), [60, 30, 10])
    y_test = np.repeat(np.arange(3, dtype=np.int32), 5)
    x = lambda n: np.zeros((n, 4, 4, 3), np.uint8)  # noqa: E731
    return Dataset("unbalanced", x(len(y_train)), y_train, x(len(y_test)), y_test, ("a", "b", "c"))


def test_class_shares_come_from_the_recorded_training_class_counts(tmp_path: Path) -> None:
    data = _unbalanced()
    meta = run_meta(RunConfig(data=DataConfig(name="unbalanced")), data, 1)
    assert meta["train_class_counts"] == [60, 30, 10]
    spec = ReplicaSpec(0, "volume", 0, "shuffle", 0.0, 50, "small_cnn")
    RunStore.create(tmp_path, meta, [spec], 3)
    run = load_run(tmp_path)
    np.testing.assert_allclose(run.class_shares, [0.6, 0.3, 0.1])
    np.testing.assert_allclose(run.per_class_counts(run.replicas[0]), [30, 15, 5])
    assert training_class_counts(run) == (60, 30, 10)  # what a budget plan may buy per class


def test_a_run_without_recorded_counts_falls_back_to_equal_shares(tmp_path: Path) -> None:
    write_fake_run(tmp_path)
    meta = json.loads((tmp_path / "run.json").read_text())
    del meta["train_class_counts"], meta[SCHEMA_KEY]  # as a run from before either was recorded
    (tmp_path / "run.json").write_text(json.dumps(meta))
    np.testing.assert_allclose(load_run(tmp_path).class_shares, np.full(10, 0.1))


def _from_newer_version(path: Path) -> None:
    write_fake_run(path)
    meta = json.loads((path / "run.json").read_text())
    assert meta[SCHEMA_KEY] == SCHEMA_VERSION
    meta[SCHEMA_KEY] = SCHEMA_VERSION + 1
    (path / "run.json").write_text(json.dumps(meta))


def test_a_run_from_a_newer_schema_is_refused_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _from_newer_version(tmp_path)
    with pytest.raises(RunDirError, match="newer labelsim.*upgrade labelsim"):
        load_run(tmp_path)
    with pytest.raises(RunDirError, match="newer labelsim"):
        RunStore.open(tmp_path)
    capsys.readouterr()
    for argv in (["analyze", str(tmp_path)], ["check", str(tmp_path)]):
        assert labelsim_main(argv) == 2
        err = capsys.readouterr().err
        assert f"schema version {SCHEMA_VERSION + 1}" in err and "Traceback" not in err
    assert run_grid.main(["--resume", "--out", str(tmp_path)]) == 2
    assert "upgrade labelsim" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["two", 0, 1.5, True])
def test_a_damaged_schema_version_is_an_error(tmp_path: Path, value: object) -> None:
    write_fake_run(tmp_path)
    meta = json.loads((tmp_path / "run.json").read_text())
    meta[SCHEMA_KEY] = value
    (tmp_path / "run.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match="damaged"):
        load_run(tmp_path)


def test_a_run_folder_has_one_writer_and_a_dead_writer_leaves_no_claim(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from labelsim.rundir import RunDirError, claim

    folder = tmp_path / "run"
    with claim(folder):
        with pytest.raises(RunDirError, match=f"pid {os.getpid()} on "):
            with claim(folder):
                pass
    with claim(folder):  # released when the block ended
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom labelsim.rundir import claim\n"
         "with claim(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n", str(folder)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"pid {holder.pid} on "):
            with claim(folder):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the OS drops a killed process's lock: nothing to clear by hand
        try:
            with claim(folder):
                break
        except RunDirError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


# ------------------------------------------------------------------ all-or-nothing creation

TINY = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "2", "--batch-size", "32", "--noise", "0,0.4", "--sizes", "128",
    "--repeats", "1", "--no-progress",
]  # fmt: skip

# Creates a run folder and is killed (SIGKILL) as it renames replicas.csv into place, leaving
# confusion.npz and a .replicas.csv.*.tmp without run.json.
KILLED_CREATION = """
import os, signal, sys
from pathlib import Path
from labelsim.config import ReplicaSpec
from labelsim.rundir import RunStore

real_replace = os.replace
def replace(src, dst):
    if str(dst).endswith("replicas.csv"):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
os.replace = replace
RunStore.create(Path(sys.argv[1]), {"config": {}}, [ReplicaSpec(0, "noise", 0, "shuffle", 0.0, 128, "small_cnn")], 10)
"""


def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner creates its run folder but trains no replica."""
    monkeypatch.setattr(runner, "_run_model", lambda ctx, program: None)


def test_a_creation_killed_part_way_is_recognised_and_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLED_CREATION, str(out)], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    names = sorted(p.name for p in out.iterdir())
    assert "confusion.npz" in names and "run.json" not in names
    assert any(n.startswith(".replicas.csv.") and n.endswith(".tmp") for n in names), names
    capsys.readouterr()
    for argv in (["check", str(out)], ["analyze", str(out)]):
        assert labelsim_main(argv) == 2
        err = capsys.readouterr().err
        assert "stopped while it was being created, before any replica trained; start the run again" in err
    assert run_grid.main([*TINY, "--out", str(out), "--resume"]) == 2
    assert "run the same command without --resume to start it afresh" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == names  # refusals remove nothing
    no_training(monkeypatch)
    assert run_grid.main([*TINY, "--out", str(out)]) == 0
    assert "note: removed confusion.npz, .replicas.csv." in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".lock", "confusion.npz", "replicas.csv", "run.json"]
    assert len(load_run(out).replicas) == 3  # the new run's table, not the leftover's one replica


@pytest.mark.parametrize("exists", [False, True])
def test_a_creation_that_fails_removes_what_it_wrote(
    exists: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def disk_full(path: Path, payload: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    out = tmp_path / "new" / "run"
    if exists:
        out.mkdir(parents=True)
    no_training(monkeypatch)
    monkeypatch.setattr(store, "write_json", disk_full)  # run.json, written last, fails
    assert run_grid.main([*TINY, "--out", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    if exists:  # the user's folder stays, without run files
        assert [p.name for p in out.iterdir()] == [".lock"]
    else:  # the folders the run created are gone
        assert not (tmp_path / "new").exists()


def test_leftovers_with_results_are_never_removed(tmp_path: Path) -> None:
    write_fake_run(tmp_path, running=(0, 1))
    (tmp_path / "run.json").unlink()
    rows = read_rows(tmp_path)
    assert any(row.status == "finished" for row in rows)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RunDirError, match="holds results .* but no run.json"):
        clear_stopped_creation(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    empty = tmp_path / "empty"
    spec = ReplicaSpec(0, "noise", 0, "shuffle", 0.0, 30, "small_cnn")
    RunStore.create(empty, {"config": {}}, [spec], 2)
    (empty / "run.json").unlink()
    assert clear_stopped_creation(empty) == ["replicas.csv", "confusion.npz"]
    RunStore.create(empty, {"config": {}}, [spec], 2)
    opened = RunStore.open(empty)
    opened.update(0, status="running", steps=1)
    opened.flush()
    (empty / "run.json").unlink()  # one step taken: not provably empty any more
    with pytest.raises(RunDirError, match="holds results"):
        clear_stopped_creation(empty)


def test_a_claim_removes_only_the_folders_it_created_and_left_unused(tmp_path: Path) -> None:
    with claim(tmp_path / "a" / "b" / "c"):
        assert (tmp_path / "a" / "b" / "c" / ".lock").is_file()
    assert list(tmp_path.iterdir()) == []
    with claim(tmp_path / "kept"):
        (tmp_path / "kept" / "run.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [".lock", "run.json"]
    (tmp_path / "mine").mkdir()
    with claim(tmp_path / "mine"):
        pass
    assert [p.name for p in (tmp_path / "mine").iterdir()] == [".lock"]  # it existed before: it stays
