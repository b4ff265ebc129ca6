"""Record-level label quality: cross-fitted predictions (every record predicted once, by replicas
that never trained on it), oof.npz written whole and resumed per repeat, cleanlab's scores on
them, and the recommend command's CSV within its budget; bad inputs are one-line errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from labelsim.__main__ import COMMANDS
from labelsim.analysis.records import (
    OOF_FILE,
    RECOMMEND_COLUMNS,
    OofData,
    auroc,
    detection_report,
    label_quality,
    noise_matrix,
    precision_recall_at,
    ranked_issues,
    read_oof,
    write_oof,
)
from labelsim.rundir import RunDirError

sys.path.insert(0, str(Path(__file__).parent))
from command_line import cli, one_line_error  # noqa: E402
from fake_run import CLASSES, trainable_fake_run, write_fake_run  # noqa: E402


def test_the_commands_are_registered() -> None:
    assert COMMANDS["oof"][0] == "oof" and COMMANDS["recommend"][0] == "recommend"


# ---------------------------------------------------------------------------------------
# Folds
# ---------------------------------------------------------------------------------------


def test_every_labeled_record_is_held_out_once_and_predicted_by_the_replica_that_did_not_train_on_it() -> None:
    from labelsim.sim.oof import assign_folds, fold_training_set, out_of_fold, split_pool

    rng = np.random.default_rng(0)
    n, k = 503, 4
    labels = rng.integers(0, 10, n).astype(np.int32)
    _, pool = split_pool(n, 37, seed=3)
    labels[pool] = -1
    for repeat in range(3):
        folds = assign_folds(labels, k, seed=3, repeat=repeat)
        assert np.array_equal(folds < 0, labels < 0)  # the pool is in no fold
        trained = [set(fold_training_set(folds, f).tolist()) for f in range(k)]
        for f in range(k):
            held = set(np.flatnonzero(folds == f).tolist())
            assert not held & trained[f]  # the replica of fold f never sees its fold
            assert not set(pool.tolist()) & trained[f]
            assert trained[f] | held == set(np.flatnonzero(labels >= 0).tolist())
        for c in range(10):  # stratified: each class split as evenly as possible
            sizes = np.bincount(folds[labels == c], minlength=k)
            assert sizes.max() - sizes.min() <= 1
        probs = np.eye(k, dtype=np.float32)[:, None, :].repeat(n, axis=1)  # replica f predicts "f" for every record
        oof = out_of_fold(probs, folds)
        source = oof.argmax(axis=1)
        for i in np.flatnonzero(labels >= 0):
            assert source[i] == folds[i] and i not in trained[source[i]]
        assert np.allclose(oof[pool], 1.0 / k)  # pool: every replica of the repeat, none trained on it
    assert not np.array_equal(assign_folds(labels, k, 3, 0), assign_folds(labels, k, 3, 1))


# ---------------------------------------------------------------------------------------
# oof.npz: a small real run of cross-fitted replicas, killed and resumed
# ---------------------------------------------------------------------------------------


def tiny_run(path: Path, train: int = 240) -> Path:
    """A run folder whose config trains tiny replicas quickly (the fake run's results are unused)."""
    return trainable_fake_run(path, train, (train // 2,))


def test_oof_round_trips_and_a_killed_command_resumes_at_the_first_unfinished_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelsim.sim import oof as oof_module

    run = tiny_run(tmp_path / "run")
    settings = oof_module.OofSettings(folds=2, repeats=2, noise_model="shuffle", noise_rate=0.4, unlabeled=20)
    plan = oof_module.plan_oof(run, settings)
    trained: list[int] = []
    original = oof_module.BatchTrainer.train_predict

    def counting(self, jobs, images, on_steps=None):  # type: ignore[no-untyped-def]
        trained.append(len(jobs))
        return original(self, jobs, images, on_steps)

    monkeypatch.setattr(oof_module.BatchTrainer, "train_predict", counting)

    def kill_after_first_repeat(line: str) -> None:
        if "repeat(s) 2-2" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        oof_module.compute_oof(plan, group=1, log=kill_after_first_repeat)
    partial = read_oof(run)
    assert partial.repeats_done == 1 and not partial.complete and trained == [2]
    assert not list(run.glob(f".{OOF_FILE}.*"))  # written whole, no temporary file left

    lines: list[str] = []
    done = oof_module.compute_oof(plan, group=1, log=lines.append)
    assert trained == [2, 2]  # only the unfinished repeat trained again
    assert any("1 finished repeat(s)" in line for line in lines)
    assert any("ETA" in line for line in lines)
    stored = read_oof(run)
    assert stored.complete and stored.repeats_done == 2
    n = len(stored.labels)
    assert np.array_equal(stored.repeat_probs[0], partial.repeat_probs[0])  # the first repeat kept as it was
    assert np.allclose(stored.probs_sum, stored.repeat_probs.astype(np.float32).sum(axis=0), atol=2e-3)
    assert np.allclose(stored.probs.sum(axis=1), 1.0, atol=1e-3)
    assert np.array_equal(stored.labels, done.labels) and (stored.labels < 0).sum() == 20
    assert stored.folds.shape == (2, n) and np.array_equal(stored.folds < 0, np.tile(stored.labels < 0, (2, 1)))
    assert all(set(np.unique(f[f >= 0]).tolist()) == {0, 1} for f in stored.folds)
    labeled = stored.labels >= 0
    clean = oof_module.load_dataset(plan.config.data).y_train
    assert 0.2 < np.mean(stored.labels[labeled] != clean[labeled]) < 0.45  # the run's shuffle labels at 0.4

    with np.load(run / OOF_FILE) as f:
        assert f["probs"].dtype == np.float16 and f["probs"].shape == (n, len(CLASSES))

    other = oof_module.plan_oof(run, oof_module.OofSettings(3, 2, "shuffle", 0.4, unlabeled=20))
    with pytest.raises(RunDirError, match="other settings"):
        oof_module.compute_oof(other, group=1, log=lines.append)


def test_oof_bad_flags_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run(tmp_path / "run")
    assert cli("oof", [str(run), "--folds", "1"]) == 2
    assert "--folds 1" in one_line_error(capsys)
    assert cli("oof", [str(run), "--folds", "2", "--noise-model", "pairflip"]) == 2
    assert "--noise-model" in one_line_error(capsys)
    assert cli("oof", [str(tmp_path / "missing"), "--folds", "2"]) == 2
    one_line_error(capsys)


# ---------------------------------------------------------------------------------------
# cleanlab scores and detection figures
# ---------------------------------------------------------------------------------------


def easy_case(
    n: int = 2000, c: int = 5, rate: float = 0.2, seed: int = 0, sharpness: float = 2.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean labels, labels with ``rate`` of them moved to another class, and probabilities
    of a decent model of the clean classes."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    noisy = clean.copy()
    wrong = rng.choice(n, int(rate * n), replace=False)
    noisy[wrong] = (clean[wrong] + rng.integers(1, c, len(wrong))) % c
    logits = sharpness * np.eye(c)[clean] + rng.normal(0, 1.0, (n, c))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return clean, noisy, probs


def test_cleanlab_scores_rank_injected_wrong_labels_above_clean_ones() -> None:
    clean, noisy, probs = easy_case()
    wrong = noisy != clean
    scores = label_quality(noisy, probs)
    assert auroc(-scores, wrong) > 0.7
    random_scores = np.random.default_rng(1).random(len(noisy))
    assert abs(auroc(random_scores, wrong) - 0.5) < 0.06  # a random ranking does not pass
    flagged = ranked_issues(noisy, probs)
    assert wrong[flagged].mean() > 0.6 and len(set(flagged.tolist())) == len(flagged)
    assert np.all(np.diff(scores[flagged]) >= -1e-12)  # most likely wrong first
    matrix = noise_matrix(noisy, probs)
    assert np.allclose(matrix.sum(axis=1), 1.0)
    assert np.all(np.abs(np.diag(matrix) - 0.8) < 0.12)  # 20% of every class moved away
    report = detection_report(noisy, probs, clean, tuple("abcde"))
    assert report["wrong"] == int(wrong.sum()) and report["auroc"] > 0.7
    assert set(report["per_class"]) == set("abcde")
    assert all(v["auroc"] > 0.6 for v in report["per_class"].values())


def test_auroc_and_precision_at_k_on_known_rankings() -> None:
    wrong = np.array([True, True, False, False, False])
    assert auroc(np.array([5, 4, 3, 2, 1]), wrong) == 1.0
    assert auroc(np.array([1, 2, 3, 4, 5]), wrong) == 0.0
    assert auroc(np.ones(5), wrong) == 0.5
    assert np.isnan(auroc(np.ones(3), np.zeros(3, bool)))
    assert precision_recall_at(np.array([0, 2, 1]), wrong, 2) == (0.5, 0.5)


# ---------------------------------------------------------------------------------------
# recommend
# ---------------------------------------------------------------------------------------


def run_with_oof(path: Path, pool: int = 100) -> tuple[Path, np.ndarray, np.ndarray]:
    """A fake run (fitted curves) with an oof.npz of informative probabilities and a pool."""
    write_fake_run(path)
    clean, noisy, probs = easy_case(n=2000, c=len(CLASSES), rate=0.25, seed=2, sharpness=4.0)
    labels = noisy.astype(np.int32)
    labels[-pool:] = -1
    write_oof(path / OOF_FILE, OofData(
        probs_sum=probs.astype(np.float32), folds=np.zeros((1, 2000), np.int16), labels=labels,
        repeat_probs=None, repeats=1, fingerprint="test", settings={}, classes=CLASSES,
    ))  # fmt: skip
    return path, clean, labels


def test_recommend_writes_the_columns_within_budget_and_relabels_likely_wrong_records_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, clean, labels = run_with_oof(tmp_path / "run")
    out = tmp_path / "rec.csv"
    tiers = ["--tier", "crowd:0.02:0.2", "--tier", "expert:0.1:0.02"]
    assert cli("recommend", [str(run), "--budget", "4", *tiers, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    with out.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == RECOMMEND_COLUMNS and rows
    assert sum(float(r["cost"]) for r in rows) <= 4 + 1e-9
    records = [int(r["record"]) for r in rows]
    assert len(records) == len(set(records))  # never the same record twice
    assert {r["tier"] for r in rows} <= {"crowd", "expert"} and {r["class"] for r in rows} <= set(CLASSES)
    relabels = np.array([int(r["record"]) for r in rows if r["action"] == "relabel"])
    new = np.array([int(r["record"]) for r in rows if r["action"] == "label"], dtype=np.int64)
    assert len(relabels) and np.all(labels[relabels] >= 0) and np.all(labels[new] < 0)
    labeled = labels >= 0
    base_rate = np.mean(labels[labeled] != clean[labeled])
    assert np.mean(labels[relabels] != clean[relabels]) > 2 * base_rate  # likely wrong labels go first
    assert all(float(r["gain_per_cost"]) > 0 for r in rows)

    assert cli("recommend", [str(run), "--budget", "0.05", *tiers, "--out", str(out), "--pool", "0"]) == 0
    with out.open() as f:
        small = list(csv.DictReader(f))
    assert sum(float(r["cost"]) for r in small) <= 0.05 + 1e-9 and all(r["action"] == "relabel" for r in small)


def test_recommend_bad_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _, _ = run_with_oof(tmp_path / "run", pool=100)
    tier = ["--tier", "crowd:0.02:0.2"]
    assert cli("recommend", [str(run), "--budget", "5", "--tier", "expert"]) == 2
    assert "NAME:PRICE:NOISE" in one_line_error(capsys)
    assert cli("recommend", [str(run), "--budget", "5", *tier, "--pool", "101"]) == 2
    assert "--pool 101" in one_line_error(capsys)
    assert cli("recommend", [str(run), "--budget", "-1", *tier]) == 2
    assert "--budget" in one_line_error(capsys)
    bare = tmp_path / "bare"
    write_fake_run(bare)
    assert cli("recommend", [str(bare), "--budget", "5", *tier]) == 2
    assert "python -m labelsim oof" in one_line_error(capsys)
    (bare / OOF_FILE).write_bytes(b"not a zip")
    assert cli("recommend", [str(bare), "--budget", "5", *tier]) == 2
    assert "damaged" in one_line_error(capsys)
