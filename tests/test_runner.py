"""The runner end to end on a custom replica list: a replica whose loss turns NaN/Inf is marked
diverged with its step while the rest of the grid trains on; analysis leaves it out and says so;
``python -m labelsim check`` passes the run and catches tampering (exit 1) and missing or
unreadable files (exit 2)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from labelsim.__main__ import main as labelsim_main
from labelsim.analysis import fit_run, load_run
from labelsim.config import ReplicaSpec

REPO = Path(__file__).resolve().parents[1]
# The tiny model and recipe of tests/test_resume.py (one step per call there too), so one
# compilation cache serves both.
FLAGS = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "3", "--batch-size", "32", "--slots", "2", "--steps-per-call", "1",
    "--checkpoint-seconds", "0", "--no-progress",
]  # fmt: skip
WILD = 2  # the replica whose learning rate is 1e35 times the recipe's
SPECS = [
    ReplicaSpec(0, "noise", 0, "shuffle", 0.0, 256, "small_cnn"),
    ReplicaSpec(1, "noise", 0, "shuffle", 0.4, 256, "small_cnn"),
    ReplicaSpec(WILD, "noise", 1, "shuffle", 0.0, 256, "small_cnn", lr_scale=1e35),
    ReplicaSpec(3, "noise", 1, "shuffle", 0.4, 256, "small_cnn"),
]
# Runs labelsim.sim.runner.run_grid on a replica list, with the config run_grid.py makes of FLAGS.
SCRIPT = """
import json, sys
from pathlib import Path
import run_grid
from labelsim.config import ReplicaSpec
from labelsim.sim.runner import run_grid as run

out, flags, specs = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
config = run_grid.resolve_config(run_grid.build_parser().parse_args([*flags, "--out", str(out)]))
run(config, out, replicas=[ReplicaSpec(**s) for s in specs], progress=False)
"""


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(run directory, stderr) of the four SPECS trained two at a time."""
    cache = {  # the tests' persistent cache (conftest.py), else one for this session
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    env = cache | os.environ | {
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    out = tmp_path_factory.mktemp("diverged") / "run"
    specs = json.dumps([dataclasses.asdict(s) for s in SPECS])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), json.dumps(FLAGS), specs],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, done.stderr


def read_rows(out: Path) -> list[dict[str, str]]:
    """replicas.csv as dicts."""
    with (out / "replicas.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def counts_of(out: Path) -> np.ndarray:
    """The (R, C, C) test confusion counts."""
    with np.load(out / "confusion.npz") as data:
        return data["counts"]


def test_a_nan_loss_marks_only_its_replica_diverged_with_the_step(diverged_run: tuple[Path, str]) -> None:
    out, stderr = diverged_run
    rows = read_rows(out)
    wild = rows[WILD]
    assert wild["status"] == "diverged" and wild["accuracy"] == ""
    assert wild["diverged_step"] != "" and int(wild["steps"]) == int(wild["diverged_step"]) < int(wild["total_steps"])
    assert float(wild["lr_scale"]) == 1e35
    assert f"replica {WILD} diverged (NaN/Inf loss at step {wild['diverged_step']})" in stderr
    others = [r for r in rows if int(r["replica"]) != WILD]
    assert all(r["status"] == "finished" and r["diverged_step"] == "" and r["accuracy"] for r in others)
    assert all(r["steps"] == r["total_steps"] == "24" for r in others)  # the grid went on
    counts = counts_of(out)
    assert not counts[WILD].any() and all(counts[i].sum() == 64 for i in range(4) if i != WILD)
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_analysis_leaves_the_diverged_replica_out_and_says_so(
    diverged_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, _ = diverged_run
    run = load_run(out)
    assert [r.replica for r in run.diverged()] == [WILD]
    assert WILD not in [r.replica for r in run.finished()]
    assert fit_run(run, n_boot=5).excluded == (WILD,)
    step = read_rows(out)[WILD]["diverged_step"]
    assert labelsim_main(["analyze", str(out), "--n-boot", "5", "--out", str(tmp_path)]) == 0
    assert f"left out: replica {WILD} (diverged at step {step})" in capsys.readouterr().out
    with (tmp_path / "excluded.csv").open(newline="") as f:
        assert [(r["replica"], r["status"]) for r in csv.DictReader(f)] == [(str(WILD), "diverged")]


# ------------------------------------------------------------------------------ check


def copy_run(diverged_run: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the run to tamper with."""
    out = tmp_path / "copy"
    shutil.copytree(diverged_run[0], out)
    return out


def rewrite_confusion(out: Path, counts: np.ndarray | None = None, transitions: np.ndarray | None = None) -> None:
    """Replace confusion.npz (a valid file) with changed arrays."""
    with np.load(out / "confusion.npz") as data:
        arrays = {"counts": data["counts"], "transitions": data["transitions"]}
    arrays["counts"] = arrays["counts"] if counts is None else counts
    arrays["transitions"] = arrays["transitions"] if transitions is None else transitions
    np.savez_compressed(out / "confusion.npz", **arrays)


def test_check_passes_a_sound_run_with_a_diverged_replica(
    diverged_run: tuple[Path, str], capsys: pytest.CaptureFixture
) -> None:
    assert labelsim_main(["check", str(diverged_run[0])]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def _move_one_correct_prediction(counts: np.ndarray) -> np.ndarray:
    c = counts.copy()
    k = int(np.argmax(np.diag(c[0])))
    c[0, k, k] -= 1
    c[0, k, (k + 1) % c.shape[1]] += 1  # same row sums, one fewer correct
    return c


def _add_one_test_image(counts: np.ndarray) -> np.ndarray:
    c = counts.copy()
    c[1, 0, 0] += 1
    return c


def _count_a_diverged_replica(counts: np.ndarray) -> np.ndarray:
    c = counts.copy()
    c[WILD, 0, 0] = 5
    return c


@pytest.mark.parametrize(
    "tamper, fault",
    [
        (_move_one_correct_prediction, "replica 0: accuracy"),
        (_add_one_test_image, "replica 1: confusion rows sum to"),
        (_count_a_diverged_replica, f"replica {WILD} is diverged (never evaluated) but has confusion counts"),
    ],
)
def test_check_finds_tampered_confusion_counts(
    tamper: Callable[[np.ndarray], np.ndarray],
    fault: str,
    diverged_run: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = copy_run(diverged_run, tmp_path)
    rewrite_confusion(out, counts=tamper(counts_of(out)))
    assert labelsim_main(["check", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"fault: {fault}" in printed and "FAULTY" in printed


def test_check_finds_transitions_that_do_not_match_the_table(
    diverged_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = copy_run(diverged_run, tmp_path)
    with np.load(out / "confusion.npz") as data:
        transitions = data["transitions"].copy()
    transitions[1] = np.diag(transitions[1].sum(1))  # the noisy replica's labels, all clean
    rewrite_confusion(out, transitions=transitions)
    assert labelsim_main(["check", str(out)]) == 1
    assert "fault: replica 1: realized noise" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["confusion.npz", "replicas.csv", "run.json"])
def test_check_exits_2_on_a_missing_or_truncated_file(
    name: str, diverged_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = copy_run(diverged_run, tmp_path)
    file = out / name
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    assert labelsim_main(["check", str(out)]) == 2
    assert name in capsys.readouterr().err
    file.unlink()
    assert labelsim_main(["check", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and name in err


def test_check_notes_counts_written_just_before_a_kill(
    diverged_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """confusion.npz is written before replicas.csv: a kill between the two leaves counts of a
    replica the table still calls running, which --resume overwrites. Not a fault."""
    out = copy_run(diverged_run, tmp_path)
    with (out / "replicas.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    rows[3].update(status="running", accuracy="", steps="20")
    meta = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(meta | {"status": "running"}))
    with (out / "replicas.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields or [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assert labelsim_main(["check", str(out)]) == 0
    assert "note: replica 3 is running but confusion.npz already holds its counts" in capsys.readouterr().out
