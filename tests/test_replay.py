"""The replay: every strategy within its budget round by round, no record relabeled twice in a
round, wrong-label counts that match the truth, a stopped replay resumed to the same file, and
bad inputs as one-line errors. Most tests train with a fast numpy stand-in; one runs the
command end to end on a tiny run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from labelsim.__main__ import COMMANDS
from labelsim.analysis.budget import BudgetError, Tier, power_law_curve
from labelsim.analysis.replay import (
    STRATEGIES,
    ReplaySettings,
    TierLabels,
    correction_rows,
    replay,
    replay_rows,
    start_labeling,
)
from labelsim.analysis.records import label_quality, recommend
from labelsim.present.report.sections import replay_sections

sys.path.insert(0, str(Path(__file__).parent))
from command_line import cli as run_command, one_line_error  # noqa: E402
from fake_run import trainable_fake_run, write_fake_run  # noqa: E402

C, N, M = 4, 800, 200
TIERS = (Tier("crowd", 0.01, 0.3), Tier("expert", 0.05, 0.0))


def truth(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, C, N), np.repeat(np.arange(C), M // C)


def curves() -> list:
    """Per-class curves measured for 20..200 labels per class, noise costing 0.2 to 0.6."""
    return [power_law_curve(f"c{k}", 0.9, 1.5, 0.6, 0.2 + 0.1 * k, (20.0, 200.0), noise_max=0.5) for k in range(C)]


class FakeTrainer:
    """A numpy stand-in for the batched grid: test accuracy rises with the right labels held;
    out-of-fold probabilities lean to the true class. Records every call; ``stop_at`` raises
    KeyboardInterrupt when that stage is reached (a killed replay)."""

    def __init__(self, clean: np.ndarray, y_test: np.ndarray, repeats: int, stop_at: int | None = None):
        self.clean, self.y_test, self.repeats, self.stop_at = clean, y_test, repeats, stop_at
        self.calls: list[tuple[int, list[np.ndarray], list[np.ndarray]]] = []

    def __call__(self, stage: int, evaluate: list[np.ndarray], cross_fit: list[np.ndarray]):
        if stage == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append((stage, [x.copy() for x in evaluate], [x.copy() for x in cross_fit]))
        tests = np.zeros((len(evaluate), self.repeats, len(self.y_test), C))
        for i, labels in enumerate(evaluate):
            held = labels >= 0
            right = np.sum(labels[held] == self.clean[held]) / len(labels)
            rng = np.random.default_rng([stage, i, int(labels.sum()) + len(labels)])
            hit = rng.random((self.repeats, len(self.y_test))) < 0.3 + 0.6 * right
            tests[i] = np.eye(C)[np.where(hit, self.y_test, (self.y_test + 1) % C)]
        oof = []
        for i, labels in enumerate(cross_fit):
            rng = np.random.default_rng([stage, 100 + i, int(labels.sum()) + len(labels)])
            logits = 2.5 * np.eye(C)[self.clean] + rng.normal(0, 1.0, (len(labels), C))
            oof.append(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
        return tests, oof


def settings(**kw) -> ReplaySettings:
    return ReplaySettings(**({"budget": 2.0, "tiers": TIERS, "rounds": 3, "repeats": 2} | kw))


def run_fake(path: Path, s: ReplaySettings, stop_at: int | None = None) -> tuple[dict, FakeTrainer]:
    clean, y_test = truth()
    trainer = FakeTrainer(clean, y_test, s.repeats, stop_at)
    return replay(s, clean, y_test, C, curves(), trainer, path), trainer


def test_the_command_is_registered() -> None:
    assert COMMANDS["replay"][0] == "replay"


def test_no_strategy_spends_more_than_its_share_of_the_budget_or_relabels_a_record_twice(tmp_path: Path) -> None:
    s = settings()
    result, _ = run_fake(tmp_path / "replay.json", s)
    assert result["complete"] and len(result["stages"]) == s.rounds + 1
    for stage in result["stages"]:
        for name in STRATEGIES:
            row = stage["strategies"][name]
            assert row["spent"] <= stage["allowance"] + 1e-9 <= s.budget + 1e-9
    prices = [t.price for t in s.tiers]
    for name, rounds in result["purchases"].items():
        assert len(rounds) == s.rounds
        relabeled = [r for bought in rounds for r, a, _ in bought if a == "relabel"]
        assert len(relabeled) == len(set(relabeled))  # never twice, in a round or across rounds
        spent = sum(prices[t] for bought in rounds for _, _, t in bought)
        assert spent == pytest.approx(result["stages"][-1]["strategies"][name]["spent"])
    last = result["stages"][-1]["strategies"]
    assert last["random"]["spent"] > 0.9 * s.budget and last["random"]["relabels"] == 0
    assert last["cleanlab"]["labeled"] == result["start"]["labeled"]  # relabel-only
    assert last["per-class"]["relabels"] == 0 and last["per-class"]["spent"] > 0
    assert last["recommend"]["spent"] > 0


def test_wrong_label_counts_match_the_truth(tmp_path: Path) -> None:
    s = settings()
    result, trainer = run_fake(tmp_path / "replay.json", s)
    clean, _ = truth()
    for (stage, evaluate, _), row in zip(trainer.calls, result["stages"]):
        counted = {int(np.sum((x >= 0) & (x != clean))) for x in evaluate}
        assert {r["wrong"] for r in row["strategies"].values()} == counted
    start = result["start"]
    assert 0.2 < start["wrong"] / start["labeled"] < 0.4  # the crowd tier's 30% noise, drawn once
    last = result["stages"][-1]["strategies"]["cleanlab"]
    # relabel-only, by a noiseless tier: each correction removes one wrong label, none is spoiled
    assert last["spoiled"] == 0 and last["wrong"] == start["wrong"] - last["corrected"]
    assert last["corrected"] > 0.8 * last["relabels"]  # cleanlab's order finds the wrong labels first
    rows = {r["strategy"]: r for r in correction_rows(result)}
    assert rows["cleanlab"]["x random relabeling"] > 2


def test_a_tier_draws_the_same_label_for_every_strategy_and_a_fresh_one_on_relabel() -> None:
    clean, _ = truth()
    source = TierLabels(clean, C, TIERS, seed=0)
    records = np.arange(N)
    first = source.draw(records, 0, np.zeros(N, np.int64))
    assert np.array_equal(first, source.draw(records, 0, np.zeros(N, np.int64)))
    again = source.draw(records, 0, np.ones(N, np.int64))
    assert 0.2 < np.mean(first != clean) < 0.4 and np.mean(first != again) > 0.2
    assert np.array_equal(source.draw(records, 1, np.zeros(N, np.int64)), clean)  # noiseless tier
    human = TierLabels(clean, C, TIERS, seed=0, human={"crowd": np.stack([(clean + 1) % C, clean])})
    assert np.array_equal(human.draw(records, 0, np.zeros(N, np.int64)), (clean + 1) % C)
    assert np.array_equal(human.draw(records, 0, np.ones(N, np.int64)), clean)
    start = start_labeling(settings(), source)
    assert np.sum(start.labels >= 0) == round(0.2 * N)


def test_a_killed_replay_resumes_at_its_first_unfinished_round_to_the_same_file(tmp_path: Path) -> None:
    s = settings()
    whole, _ = run_fake(tmp_path / "whole.json", s)
    path = tmp_path / "killed.json"
    with pytest.raises(KeyboardInterrupt):
        run_fake(path, s, stop_at=2)
    stopped = json.loads(path.read_text())
    assert len(stopped["stages"]) == 2 and not stopped["complete"]
    resumed, trainer = run_fake(path, s)
    assert [stage for stage, _, _ in trainer.calls] == [2, 3]
    assert resumed == whole and json.loads(path.read_text()) == json.loads((tmp_path / "whole.json").read_text())
    with pytest.raises(Exception, match="another replay question"):
        run_fake(path, settings(budget=1.5))


def test_bad_settings_are_refused_before_any_training(tmp_path: Path) -> None:
    for kw, needle in [({"budget": 0.0}, "--budget 0"), ({"start_fraction": 1.0}, "--start-fraction 1"),
                       ({"start_fraction": 0.0}, "--start-fraction 0"), ({"strategies": ("greedy",)}, "greedy"),
                       ({"budget": 100.0}, "pool holds only 640")]:  # fmt: skip
        with pytest.raises(BudgetError, match=needle) as err:
            run_fake(tmp_path / "x.json", settings(**kw))
        assert "\n" not in str(err.value)
    assert not (tmp_path / "x.json").exists()


def test_recommend_never_relabels_a_frozen_record() -> None:
    clean, _ = truth()
    labels = TierLabels(clean, C, TIERS, seed=1).draw(np.arange(N), 0, np.zeros(N, np.int64))
    rng = np.random.default_rng(0)
    logits = 2.5 * np.eye(C)[clean] + rng.normal(0, 1.0, (N, C))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    free = recommend(labels, probs, curves(), TIERS, 2.0, actions=("relabel",))
    picked = np.array([r.record for r in free])
    assert len(picked) and np.mean(labels[picked] != clean[picked]) > 0.8
    again = recommend(labels, probs, curves(), TIERS, 2.0, actions=("relabel",), frozen=picked)
    assert again and not set(picked) & {r.record for r in again}


def test_recommended_relabels_correct_as_many_wrong_labels_as_cleanlabs_order() -> None:
    """Classes whose fitted noise slopes differ (one is flat) must not pull relabels to the
    steep classes' likely-right labels: a wrong label costs every class."""
    clean, _ = truth()
    labels = TierLabels(clean, C, TIERS, seed=1).draw(np.arange(N), 0, np.zeros(N, np.int64))
    rng = np.random.default_rng(0)
    logits = 2.0 * np.eye(C)[clean] + rng.normal(0, 1.0, (N, C))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    uneven = [power_law_curve(f"c{k}", 0.9, 1.5, 0.6, slope, (20.0, 200.0)) for k, slope in enumerate((0, .1, .3, .6))]
    wrong = labels != clean
    for budget in (1.0, 5.0):
        picked = [r.record for r in recommend(labels, probs, uneven, TIERS[1:], budget, actions=("relabel",))]
        order = np.argsort(label_quality(labels, probs), kind="mergesort")[: len(picked)]
        assert len(picked) == int(budget / TIERS[1].price + 1e-9)
        assert wrong[picked].sum() >= wrong[order].sum() > 0


def test_the_report_shows_each_replay_as_a_chart_and_tables(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run")
    run_fake(tmp_path / "run" / "replay" / "abc123" / "replay.json", settings())
    sections = replay_sections(tmp_path / "run")
    assert [title for title, _ in sections] == ["Replay abc123"]
    body = sections[0][1]
    assert "<svg" in body and "x random relabeling" in body and all(name in body for name in STRATEGIES)
    assert replay_sections(tmp_path / "nothing") == []


# ---------------------------------------------------------------------------------------
# The command, end to end on a tiny run
# ---------------------------------------------------------------------------------------


def cli(argv: list[str]) -> int:
    return run_command("replay", argv)


def tiny_run(path: Path, train: int = 240) -> Path:
    """A run folder whose config trains tiny replicas quickly (its fitted curves are the fake run's)."""
    return trainable_fake_run(path, train, (train // 4, train // 2))


def test_the_command_bad_flags_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_run(tmp_path / "run")
    tier = ["--tier", "crowd:0.01:0.2", "--tier", "expert:0.05:0.02"]
    for flags, needle in [(["--budget", "-1"], "--budget -1"), (["--budget", "1", "--start-fraction", "1.5"],
                          "--start-fraction 1.5"), (["--budget", "1", "--strategies", "random,best"], "best"),
                          (["--budget", "1", "--tier", "x"], "NAME:PRICE:NOISE"),
                          (["--budget", "100"], "pool holds only")]:  # fmt: skip
        assert cli([str(run), *tier, *flags]) == 2
        assert needle in one_line_error(capsys)
    assert not (run / "replay").exists() or not any((run / "replay").rglob("replay.json"))


@pytest.mark.slow
def test_the_command_replays_a_tiny_run_and_prints_the_tables(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run = tiny_run(tmp_path / "run")
    argv = [str(run), "--budget", "0.6", "--tier", "crowd:0.01:0.2", "--tier", "expert:0.05:0.02",
            "--rounds", "1", "--repeats", "1", "--start-fraction", "0.5"]  # fmt: skip
    assert cli(argv) == 0
    out = capsys.readouterr().out
    files = list((run / "replay").glob("*/replay.json"))
    assert len(files) == 1 and str(files[0]) in out and "x random relabeling" in out
    result = json.loads(files[0].read_text())
    assert result["complete"] and {r["strategy"] for r in replay_rows(result)} == set(STRATEGIES)
    for row in result["stages"][-1]["strategies"].values():
        assert row["spent"] <= 0.6 + 1e-9 and 0.0 <= row["accuracy_mean"] <= 1.0
    assert cli(argv) == 0  # finished: nothing trained again, the same file
    assert json.loads(files[0].read_text()) == result
