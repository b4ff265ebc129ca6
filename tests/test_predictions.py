"""Per-record test predictions (RUN/test_predictions.npy): every finished replica's predictions
reproduce its confusion matrix exactly, unfinished and added replicas read -1, a resumed run
completes the file to the uninterrupted run's, old runs without the file still load and check,
and ``check`` catches predictions that do not match."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from labelsim.__main__ import main as labelsim_main
from labelsim.config import RunConfig
from labelsim.rundir import RunDirError, RunStore, load_run, read_meta
from labelsim.rundir.predictions import (
    PREDICTIONS_FILE,
    PredictionWriter,
    confusion_from_predictions,
    read_test_predictions,
)
from labelsim.sim.data import load_dataset

# The tiny grid of tests/test_resume.py (5 replicas, 2 slots), so one compilation cache serves both.
FLAGS = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "3", "--batch-size", "32", "--noise", "0,0.2,0.4", "--sizes", "32,64",
    "--steps-per-call", "1", "--repeats", "1", "--slots", "2", "--checkpoint-seconds", "0", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run, shared by every test here (copy it before changing it)."""
    out = tmp_path_factory.mktemp("predictions") / "run"
    assert labelsim_main(["train", *FLAGS, "--out", str(out)]) == 0
    return out


def y_test(run_dir: Path) -> np.ndarray:
    """The run's test labels, loaded as the run loaded its data."""
    return load_dataset(RunConfig.from_dict(read_meta(run_dir)["config"]).data).y_test


def copy_of(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    return out


def check(run_dir: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """(exit status, stdout) of ``python -m labelsim check``."""
    capsys.readouterr()
    status = labelsim_main(["check", str(run_dir)])
    return status, capsys.readouterr().out


def test_predictions_reproduce_every_confusion_matrix_exactly(reference: Path) -> None:
    run = load_run(reference)
    predictions = read_test_predictions(reference)
    labels = y_test(reference)
    assert predictions is not None and predictions.dtype == np.int8
    assert predictions.shape == (len(run.replicas), len(labels))
    assert all(row.finished for row in run.replicas)
    for row in run.replicas:
        assert np.array_equal(confusion_from_predictions(predictions[row.replica], labels, run.num_classes),
                              run.counts[row.replica])  # fmt: skip
    # Replicas differ record by record, not only in their totals.
    assert len({p.tobytes() for p in predictions}) == len(predictions)


def test_check_passes_the_run_and_finds_a_prediction_that_does_not_match(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status, out = check(reference, capsys)
    assert status == 0, out
    run_dir = copy_of(reference, tmp_path)
    predictions = np.load(run_dir / PREDICTIONS_FILE)
    predictions[2, 5] = (predictions[2, 5] + 1) % 10  # one record of replica 2 moves to another class
    np.save(run_dir / PREDICTIONS_FILE, predictions)
    status, out = check(run_dir, capsys)
    assert status == 1
    assert "fault: replica 2: its test predictions and test labels differ from its confusion matrix in 2 cell(s)" in out
    np.save(run_dir / PREDICTIONS_FILE, predictions[:, :10])
    status, out = check(run_dir, capsys)
    assert status == 1 and "expected int8" in out and "comes from another run" in out


def test_unfinished_replicas_read_minus_one_and_check_notes_their_stale_rows(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = copy_of(reference, tmp_path)
    stored = np.load(run_dir / PREDICTIONS_FILE)
    store = RunStore.open(run_dir)
    store.update(1, status="running", steps=3, accuracy=float("nan"))  # as a kill between two writes leaves it
    store.counts[1] = 0
    store.meta["status"] = "running"
    store.flush()
    predictions = read_test_predictions(run_dir)
    assert (predictions[1] == -1).all()
    assert np.array_equal(np.delete(predictions, 1, axis=0), np.delete(stored, 1, axis=0))
    status, out = check(run_dir, capsys)
    assert status == 0, out
    assert f"replica 1 is running but {PREDICTIONS_FILE} already holds its predictions" in out


def test_replicas_beyond_the_stored_rows_read_minus_one(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A file written before the table grew (or before predictions were recorded) has fewer rows."""
    run_dir = copy_of(reference, tmp_path)
    stored = np.load(run_dir / PREDICTIONS_FILE)
    np.save(run_dir / PREDICTIONS_FILE, stored[:3])
    predictions = read_test_predictions(run_dir)
    assert predictions.shape == stored.shape
    assert np.array_equal(predictions[:3], stored[:3]) and (predictions[3:] == -1).all()
    status, out = check(run_dir, capsys)
    assert status == 0, out
    assert "replica(s) 3, 4 finished before the run recorded test predictions" in out


def test_runs_without_the_file_load_and_check(reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = copy_of(reference, tmp_path)
    (run_dir / PREDICTIONS_FILE).unlink()
    assert read_test_predictions(run_dir) is None
    assert len(load_run(run_dir).replicas) == 5
    status, out = check(run_dir, capsys)
    assert status == 0 and out.startswith("ok:"), out


def test_a_damaged_file_gets_a_clear_error(reference: Path, tmp_path: Path) -> None:
    run_dir = copy_of(reference, tmp_path)
    file = run_dir / PREDICTIONS_FILE
    file.write_bytes(file.read_bytes()[:60])
    with pytest.raises(RunDirError, match="test_predictions.npy is unreadable .* it is damaged"):
        read_test_predictions(run_dir)
    np.save(file, np.full((5, 64), 12, np.int8))
    with pytest.raises(RunDirError, match="class ids outside -1..9"):
        read_test_predictions(run_dir)
    np.save(file, np.zeros((6, 64), np.int8))
    with pytest.raises(RunDirError, match=r"shape \(6, 64\), expected int8"):
        PredictionWriter.open(run_dir, 5, 64, 10)


def test_a_resumed_run_completes_the_predictions_of_the_uninterrupted_run(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Two replicas set back as a kill leaves them: 0 running with a stale row written just before the
    kill, 3 pending; the resume retrains both and ends with the reference's predictions, record for record."""
    run_dir = copy_of(reference, tmp_path)
    expected = np.load(run_dir / PREDICTIONS_FILE)
    stale = expected.copy()
    stale[0] = (stale[0] + 3) % 10
    stale[3] = -1
    np.save(run_dir / PREDICTIONS_FILE, stale)
    (run_dir / f".{PREDICTIONS_FILE}.k1ll3d.tmp").write_bytes(b"a write the kill interrupted")
    store = RunStore.open(run_dir)
    for index, status in ((0, "running"), (3, "pending")):
        store.update(index, status=status, steps=0, accuracy=float("nan"))
        store.counts[index] = 0
    store.meta["status"] = "running"
    store.flush()
    assert labelsim_main(["train", "--out", str(run_dir), "--resume", "--no-progress"]) == 0
    assert np.array_equal(read_test_predictions(run_dir), expected)
    assert np.array_equal(load_run(run_dir).counts, load_run(reference).counts)
    assert not list(run_dir.glob(".*.tmp"))
    status, out = check(run_dir, capsys)
    assert status == 0, out
