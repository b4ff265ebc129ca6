"""Crash safety: a run killed with SIGKILL at several points resumes to exactly the results of an
uninterrupted run; a damaged run directory gets a clear message and is never overwritten; a
different seed gives different results and run.json records the seed and every key."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import run_grid
from labelsim.sim import grid
from labelsim.__main__ import main as labelsim_main
from labelsim.rundir import RunDirError, atomic_write

REPO = Path(__file__).resolve().parents[1]
# 5 replicas, 2 at a time, a checkpoint after every call: replicas 0-2 train on 256 images
# (24 steps), 3 on 32 (3 steps), 4 on 64 (6 steps). Longest first: 0 and 1 together, then 2
# beside 4 and then 3, so 2 trains alone at the end. A call takes one step (fine-grained kill
# points), and the slots and the epoch orders a call draws come from the whole grid, not from the
# replicas left (they must: results would change).
FLAGS = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "3", "--batch-size", "32", "--noise", "0,0.2,0.4", "--sizes", "32,64",
    "--steps-per-call", "1", "--repeats", "1", "--slots", "2", "--checkpoint-seconds", "0", "--no-progress",
]  # fmt: skip
RUN_FILES = ("run.json", "replicas.csv", "confusion.npz")
KILLED = -signal.SIGKILL
TIMEOUT_S = 300

Rows = list[dict[str, str]]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Subprocess environment: CPU, and the tests' persistent compilation cache (set up by
    conftest.py; else one for this session): the first run compiles, later ones load."""
    cache = {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    return cache | os.environ | {
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python run_grid.py ARGS`` to completion."""
    done = subprocess.run(
        [sys.executable, str(REPO / "run_grid.py"), *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """One uninterrupted run, shared by every test here."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run_cli(env, *FLAGS, "--out", str(out))
    return out


def read_rows(out: Path) -> Rows:
    """replicas.csv as dicts."""
    with (out / "replicas.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def results(out: Path) -> tuple[Rows, np.ndarray, np.ndarray]:
    """Everything a run computed: its rows without wall times, counts and label transitions."""
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in read_rows(out)]
    with np.load(out / "confusion.npz") as data:
        return rows, data["counts"], data["transitions"]


def assert_same_results(a: Path, b: Path) -> None:
    """Identical tables (accuracy, realized noise, steps, status) and identical counts."""
    rows_a, counts_a, transitions_a = results(a)
    rows_b, counts_b, transitions_b = results(b)
    assert rows_a == rows_b
    np.testing.assert_array_equal(counts_a, counts_b)
    np.testing.assert_array_equal(transitions_a, transitions_b)


def check_cli(env: dict[str, str], out: Path) -> subprocess.CompletedProcess:
    """``python -m labelsim check OUT``."""
    return subprocess.run(
        [sys.executable, "-m", "labelsim", "check", str(out)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


def assert_checks(env: dict[str, str], out: Path) -> None:
    """``python -m labelsim check OUT`` finds the directory readable and sound."""
    done = check_cli(env, out)
    assert done.returncode == 0, done.stdout + done.stderr


def start(env: dict[str, str], out: Path, log: Path, *args: str) -> subprocess.Popen:
    """``python run_grid.py ARGS --out OUT`` in the background, its stderr to ``log``."""
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, str(REPO / "run_grid.py"), *args, "--out", str(out)],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


def poll_rows(out: Path) -> Rows | None:
    """replicas.csv now, or None before it exists (it is only ever replaced whole)."""
    try:
        return read_rows(out)
    except FileNotFoundError:
        return None


def inode(file: Path) -> int | None:
    """The file's inode number (each atomic replace makes a new one), None if absent."""
    try:
        return file.stat().st_ino
    except FileNotFoundError:
        return None


def kill_when(proc: subprocess.Popen, out: Path, condition: Callable[[Rows], bool], rng: random.Random) -> Rows:
    """SIGKILL the run 0-30 ms (at random) after ``condition`` holds on the replicas.csv
    that this process wrote (never on the one an earlier session left)."""
    deadline = time.monotonic() + TIMEOUT_S
    stale, rewritten = inode(out / "replicas.csv"), False
    while proc.poll() is None and time.monotonic() < deadline:
        rewritten = rewritten or inode(out / "replicas.csv") not in (None, stale)
        rows = poll_rows(out) if rewritten else None
        if rows and condition(rows):
            time.sleep(rng.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == KILLED, "the run ended before the kill point"
            return read_rows(out)
        time.sleep(0.002)
    proc.kill()
    pytest.fail(f"the kill point never came (exit status {proc.poll()})")


def finished(rows: Rows) -> list[dict[str, str]]:
    """Rows of finished replicas."""
    return [r for r in rows if r["status"] == "finished"]


def in_flight(rows: Rows, min_steps: int) -> bool:
    """Some replica is running and has taken at least ``min_steps`` steps."""
    return any(r["status"] == "running" and int(r["steps"]) >= min_steps for r in rows)


def assert_kept(before: Rows, after: Rows) -> None:
    """Every replica finished before a kill is still there, unchanged."""
    keep = {r["replica"]: {k: v for k, v in r.items() if k != "seconds"} for r in finished(before)}
    now = {r["replica"]: {k: v for k, v in r.items() if k != "seconds"} for r in after}
    assert all(now[i] == row for i, row in keep.items())


def test_killed_three_times_resumes_to_the_uninterrupted_results(
    reference: Path, env: dict[str, str], tmp_path: Path
) -> None:
    out, rng = tmp_path / "run", random.Random(7)
    total = len(read_rows(reference))
    logs = [tmp_path / f"session{i}.log" for i in range(4)]

    # 1. Right after the first replicas finish.
    first = kill_when(start(env, out, logs[0], *FLAGS), out, lambda rows: len(finished(rows)) >= 1, rng)
    assert 1 <= len(finished(first)) < total
    assert_checks(env, out)
    # A checkpoint damaged on disk only costs its replicas' progress.
    checkpoint = out / "checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])

    # 2. Mid-way: the next replicas are well into their training.
    second = kill_when(
        start(env, out, logs[1], *FLAGS, "--resume"), out,
        lambda rows: len(finished(rows)) >= 2 and in_flight(rows, 4), rng,
    )  # fmt: skip
    assert "checkpoint.npz is unreadable; its replicas restart from step 0" in logs[1].read_text()
    assert_kept(first, second)
    assert_checks(env, out)

    # 3. Near the end: the last replica trains alone.
    third = kill_when(
        start(env, out, logs[2], *FLAGS, "--resume"), out,
        lambda rows: len(finished(rows)) == total - 1 and in_flight(rows, 12), rng,
    )  # fmt: skip
    assert_kept(second, third)
    assert_checks(env, out)
    (out / ".replicas.csv.k1ll3d.tmp").write_text("a write the kill interrupted")

    resumed = start(env, out, logs[3], "--resume", "--no-progress")  # the stored config
    assert resumed.wait(timeout=TIMEOUT_S) == 0, logs[3].read_text()

    # Resumed replicas continued from their checkpointed step, not from zero.
    for log in logs[2:]:
        text = log.read_text()
        assert "resuming from checkpoint.npz: replica" in text
        assert "at step 0" not in text.split("resuming from checkpoint.npz:")[1].splitlines()[0]
    assert_kept(third, read_rows(out))
    assert_same_results(reference, out)
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and len(meta["sessions"]) == 4
    assert not checkpoint.exists() and not list(out.glob(".*.tmp"))
    assert_checks(env, out)


def test_same_config_and_seed_give_identical_results(reference: Path, env: dict[str, str], tmp_path: Path) -> None:
    """A second uninterrupted run, with other execution settings (speed only), equals the first."""
    out = tmp_path / "again"
    run_cli(env, *FLAGS, "--slots", "3", "--out", str(out))
    assert_same_results(reference, out)


def test_a_different_seed_gives_different_results(reference: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "seed1"
    run_cli(env, *FLAGS, "--seed", "1", "--out", str(out))
    rows, counts, transitions = results(out)
    ref_rows, ref_counts, ref_transitions = results(reference)
    assert [r["status"] for r in rows] == ["finished"] * len(ref_rows)
    different = [not np.array_equal(a, b) for a, b in zip(counts, ref_counts)]
    assert sum(different) >= len(different) - 1  # every replica, bar a chance coincidence
    noisy = [i for i, r in enumerate(rows) if float(r["noise_rate"]) > 0]
    assert all(not np.array_equal(transitions[i], ref_transitions[i]) for i in noisy)


def test_run_json_records_the_seed_and_every_key_derivation(reference: Path) -> None:
    meta = json.loads((reference / "run.json").read_text())
    assert meta["seed"] == meta["config"]["grid"]["seed"] == 0
    assert meta["keys"] == grid.KEY_DERIVATION
    assert set(meta["keys"]) >= {"base", "init", "batch_order", "dropout", "augment", "subset", "noise"}


def test_reference_run_passes_check(reference: Path, env: dict[str, str]) -> None:
    done = check_cli(env, reference)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("ok:")


# ------------------------------------------------------------------ damaged run directories


def fingerprint(folder: Path) -> dict[str, str]:
    """Hash of every file in a folder but the writer's lock (which records who last claimed it)."""
    files = (p for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def truncate(file: Path) -> None:
    """Keep the first half of a file."""
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def scramble(file: Path) -> None:
    """Overwrite bytes in the middle of a file (same size, damaged content)."""
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)
    file.write_bytes(bytes(data))


DAMAGE = {
    "truncated replicas.csv": (lambda d: truncate(d / "replicas.csv"), "replicas.csv"),
    "truncated confusion.npz": (lambda d: truncate(d / "confusion.npz"), "confusion.npz is unreadable"),
    "scrambled confusion.npz": (lambda d: scramble(d / "confusion.npz"), "confusion.npz is unreadable"),
    "truncated run.json": (lambda d: truncate(d / "run.json"), "run.json is unreadable"),
    "missing replicas.csv": (lambda d: (d / "replicas.csv").unlink(), "replicas.csv is missing"),
    "missing confusion.npz": (lambda d: (d / "confusion.npz").unlink(), "confusion.npz is missing"),
    "missing run.json": (lambda d: (d / "run.json").unlink(), "but no run.json, which a run has from its creation on"),
}


def damaged_copy(reference: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    """A copy of the reference run with one file damaged."""
    out = tmp_path / "damaged"
    shutil.copytree(reference, out)
    damage(out)
    return out


@pytest.mark.parametrize("what", DAMAGE)
def test_resume_of_a_damaged_directory_says_what_is_wrong_and_writes_nothing(
    what: str, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    damage, expected = DAMAGE[what]
    out = damaged_copy(reference, tmp_path, damage)
    before = fingerprint(out)
    assert run_grid.main(["--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert "restore" in err or "start a new --out" in err  # what to do
    assert fingerprint(out) == before
    assert labelsim_main(["check", str(out)]) == 2
    assert "error: " in capsys.readouterr().err


def test_resume_with_another_config_names_the_difference(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = damaged_copy(reference, tmp_path, lambda d: None)
    before = fingerprint(out)
    flags = list(FLAGS)
    flags[flags.index("--epochs") + 1] = "4"
    assert run_grid.main([*flags, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    only_epochs = "started with other settings: --epochs 4 (the run has recipe.epochs 3); resume it with just --resume"
    assert f"{only_epochs} --out {out}" in err
    assert fingerprint(out) == before
    assert run_grid.main(["--preset", "demo", *flags, "--out", str(out), "--resume"]) == 2  # all of a preset typed
    assert "recipe.epochs: stored 3, requested 4" in capsys.readouterr().err
    assert fingerprint(out) == before


def test_a_fresh_run_refuses_a_directory_that_holds_a_run(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = damaged_copy(reference, tmp_path, lambda d: None)
    before = fingerprint(out)
    assert run_grid.main([*FLAGS, "--out", str(out)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    (out / "run.json").unlink()
    before.pop("run.json")
    assert run_grid.main([*FLAGS, "--out", str(out)]) == 2  # results without run.json: still refused
    assert "nothing there is overwritten" in capsys.readouterr().err
    assert fingerprint(out) == before


def test_atomic_write_interrupted_before_the_rename_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "replicas.csv"
    atomic_write(target, b"old")

    def killed(*_: object) -> None:
        raise KeyboardInterrupt  # stands in for a signal arriving between write and rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new, half written")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["replicas.csv"]


def test_result_files_are_readable_by_others(reference: Path) -> None:
    for name in RUN_FILES:
        assert (reference / name).stat().st_mode & 0o044 == 0o044 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_second_writer_of_a_live_run_folder_is_refused_and_writes_nothing(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from labelsim.rundir import claim

    fresh = tmp_path / "fresh"
    with claim(fresh):  # another process creating or training this folder
        assert run_grid.main([*FLAGS, "--out", str(fresh)]) == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert not (fresh / "run.json").exists()
    live = damaged_copy(reference, tmp_path, lambda d: None)
    with claim(live):  # a second --resume of a live run
        before = fingerprint(live)
        assert run_grid.main([*FLAGS, "--out", str(live), "--resume"]) == 2
        assert "being written by another labelsim process" in capsys.readouterr().err
        assert fingerprint(live) == before


def test_resume_refuses_a_hand_edited_config_and_changed_inputs(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    meta = json.loads((reference / "run.json").read_text())
    assert set(meta["inputs"]) == {"config", "dataset"}  # no matrix or human labels in this grid
    edited = damaged_copy(reference, tmp_path, lambda d: None)
    meta["config"]["recipe"]["epochs"] += 1
    (edited / "run.json").write_text(json.dumps(meta))
    before = fingerprint(edited)
    assert run_grid.main(["--out", str(edited), "--resume"]) == 2
    assert "was changed after the run started" in capsys.readouterr().err
    assert fingerprint(edited) == before


def test_resume_refuses_a_noise_matrix_whose_content_changed(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from labelsim.config import RunConfig
    from labelsim.sim.data import load_dataset
    from labelsim.sim.runner import noise_kwargs, open_store

    matrix = tmp_path / "matrix.json"
    matrix.write_text(json.dumps(np.full((10, 10), 0.1).tolist()))
    config = RunConfig.from_dict({"data": {"synthetic_train": 64, "synthetic_test": 20, "synthetic_size": 8},
                                  "grid": {"noise_models": ["matrix"], "noise_matrix": str(matrix),
                                           "noise_levels": [0.2], "sizes": [], "repeats": 1}})  # fmt: skip
    dataset = load_dataset(config.data)
    specs = grid.build_replicas(config, len(dataset.y_train))
    out = tmp_path / "run"
    open_store(config, out, False, specs, dataset, noise_kwargs(config))
    open_store(config, out, True, specs, dataset, noise_kwargs(config))  # same content: resumes
    shifted = np.eye(10) * 0.5 + 0.05
    matrix.write_text(json.dumps(shifted.tolist()))  # same path, other content
    with pytest.raises(RunDirError, match="the --noise-matrix file changed"):
        open_store(config, out, True, specs, dataset, noise_kwargs(config))


def test_check_finds_a_hand_edited_config_and_steps_that_do_not_follow_from_it(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    edited = damaged_copy(reference, tmp_path, lambda d: None)
    meta = json.loads((edited / "run.json").read_text())
    meta["config"]["recipe"]["epochs"] += 1
    (edited / "run.json").write_text(json.dumps(meta))
    assert labelsim_main(["check", str(edited)]) == 1
    out = capsys.readouterr().out
    assert "was changed after the run started" in out
    steps = tmp_path / "steps"
    shutil.copytree(reference, steps)
    rows = read_rows(steps)
    rows[0]["total_steps"] = str(int(rows[0]["total_steps"]) + 5)
    with (steps / "replicas.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert labelsim_main(["check", str(steps)]) == 1
    assert f"replica {rows[0]['replica']}: {rows[0]['total_steps']} total steps recorded" in capsys.readouterr().out
