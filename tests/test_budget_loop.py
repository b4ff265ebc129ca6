"""The closed loop: on a simulated world whose truth the curves do not see, the loop never
recommends a plan that measures below the best simple strategy on fresh repeats, and does
recommend an optimized plan that truly wins."""

from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Sequence

import numpy as np
import pytest

from labelsim.analysis.budget import BudgetError, BudgetProblem, Tier, plan_budget, power_law_curve
from labelsim.analysis.budget.crossclass import curve_predictor
from labelsim.analysis.budget.loop import MARGIN_SE, Candidate, Measured, Proposal, closed_loop
from labelsim.analysis.budget.plans import predict_counts

SPREAD = 0.002  # replica-to-replica spread of a class's measured accuracy


def problem() -> BudgetProblem:
    """Four classes of different steepness: the curves' optimum buys unequal expert counts."""
    curves = tuple(
        power_law_curve(f"c{i}", a=0.92, b=b, c=0.8, slope=0.4, n_range=(20, 2000))
        for i, b in enumerate((0.02, 0.1, 0.8, 2.0))
    )
    tiers = (Tier("crowd", 0.01, 0.30), Tier("expert", 0.04, 0.02))
    return BudgetProblem(curves, tiers, 30.0, max_ratio=None)


def world(overrated: bool) -> Callable[[BudgetProblem, np.ndarray], np.ndarray]:
    """True per-class accuracy: the curves' prediction, or (``overrated``) the prediction as if
    the expert tier were as noisy as the crowd: the curves then overrate clean labels."""

    def truth(p: BudgetProblem, counts: np.ndarray) -> np.ndarray:
        if overrated:
            p = dataclasses.replace(p, tiers=tuple(dataclasses.replace(t, noise=0.30) for t in p.tiers))
        return predict_counts(p, counts)

    return truth


class Simulator:
    """A stand-in trainer: each replica measures the truth plus seeded noise."""

    def __init__(self, p: BudgetProblem, truth: Callable) -> None:
        self.p, self.truth, self.calls, self.trained = p, truth, 0, []

    def __call__(self, candidates: Sequence[Candidate], repeats: int, first: int, name: str) -> dict[str, np.ndarray]:
        self.calls += 1
        out = {}
        for label, counts in candidates:
            self.trained.append(counts.tobytes())
            seed = zlib.crc32(counts.tobytes()) + 1000 * first
            noise = np.random.default_rng(seed).normal(0, SPREAD, (repeats, len(self.p.curves)))
            out[label] = np.clip(self.truth(self.p, counts) + noise, 0, 1)
        return out


def propose_optimized(p: BudgetProblem, measured: list[Measured], round_: int) -> Proposal:
    """The separable model's optimum (what the curves alone would recommend)."""
    return Proposal([(f"optimized r{round_}", plan_budget(p, points=2).plan.counts)], curve_predictor(p))


def test_loop_never_recommends_a_plan_measured_below_the_best_simple_strategy() -> None:
    p = problem()
    result = plan_budget(p, points=2)
    simple = [s for s in result.strategies if s.strategy != "optimized"]
    sim = Simulator(p, world(overrated=True))
    answer = closed_loop(p, simple, propose_optimized, sim, rounds=2, repeats=3)
    recommended = answer.fresh[answer.recommended].mean(p)
    assert recommended >= answer.fresh[answer.best_simple.label].mean(p)
    # the curves rate their optimum above every simple strategy; the world does not
    optimized = next(m for m in answer.measured if m.label.startswith("optimized"))
    assert result.plan.objective >= max(s.objective for s in simple if s.predicted)
    assert optimized.mean(p) < answer.best_simple.mean(p)
    assert answer.recommended == answer.best_simple.label
    assert "below" in answer.verdict(p) or "no plan" in answer.verdict(p)
    # each purchase is trained once in the rounds (the proposal repeats in round 2), then fresh
    assert len(sim.trained) == len(set(sim.trained)) + len(answer.fresh)
    assert sim.calls == 2  # round 2 proposed nothing new, so the loop went on to the fresh repeats


def test_loop_recommends_a_plan_that_truly_wins_with_its_fresh_accuracy() -> None:
    p = problem()
    result = plan_budget(p, points=2)
    simple = [s for s in result.strategies if s.strategy != "optimized"]
    sim = Simulator(p, world(overrated=False))  # the curves are the truth
    answer = closed_loop(p, simple, propose_optimized, sim, rounds=1, repeats=3)
    best_simple_truth = max(float(np.mean(world(False)(p, s.counts))) for s in simple)
    assert float(np.mean(world(False)(p, result.plan.counts))) > best_simple_truth + SPREAD
    assert answer.recommended.startswith("optimized")
    chosen = answer.fresh[answer.recommended]
    assert chosen.acc.shape == (3, 4) and "points over" in answer.verdict(p)
    assert chosen.mean(p) > answer.fresh[answer.best_simple.label].mean(p)


@pytest.mark.parametrize("rounds, repeats, message", [(0, 3, "--rounds 0"), (1, 1, "--repeats 1")])
def test_bad_loop_arguments_are_clear_errors(rounds: int, repeats: int, message: str) -> None:
    p = problem()
    with pytest.raises(BudgetError, match=message):
        closed_loop(p, [], propose_optimized, Simulator(p, world(False)), rounds=rounds, repeats=repeats)


def test_fresh_repeats_are_their_own_number_numbered_after_the_rounds() -> None:
    p = problem()
    sim = Simulator(p, world(True))
    calls = []

    def train(candidates, repeats, first, name):
        calls.append((repeats, first, name))
        return sim(candidates, repeats, first, name)

    simple = [q for q in plan_budget(p, points=2).strategies if q.strategy != "optimized"]
    answer = closed_loop(p, simple, propose_optimized, train, rounds=1, repeats=2, fresh_repeats=5)
    assert calls[0] == (2, 0, "round_1") and calls[-1] == (5, 2, "fresh")
    assert all(len(m.acc) == 2 for m in answer.measured)
    assert all(len(m.acc) == 5 for m in answer.fresh.values())
    with pytest.raises(BudgetError, match="--fresh-repeats 1"):
        closed_loop(p, simple, propose_optimized, sim, rounds=1, repeats=2, fresh_repeats=1)


class Scripted:
    """A stand-in trainer whose searched plan ("optimized ...") leads the best simple strategy by
    ``lead[stage]`` (stages: "round", "confirm", "fresh"), every replica off its plan's mean by
    +-``spread[stage]`` in turn; the other simple strategies trail by 2 points."""

    def __init__(self, lead: dict[str, float], spread: dict[str, float]) -> None:
        self.lead, self.spread, self.calls, self.best = lead, spread, [], None

    def __call__(self, candidates: Sequence[Candidate], repeats: int, first: int, name: str) -> dict[str, np.ndarray]:
        self.calls.append((name, repeats, first))
        stage = name.split("_")[0]
        out = {}
        for label, _ in candidates:
            if label.startswith("optimized"):
                mean = 0.80 + self.lead[stage]
            else:
                self.best = self.best or label
                mean = 0.80 if label == self.best else 0.78
            signs = np.resize([1.0, -1.0], repeats)[:, None]
            out[label] = np.full((repeats, 4), mean) + self.spread[stage] * signs
        return out


def scripted_loop(lead: dict[str, float], confirm_repeats: int) -> tuple[object, Scripted, BudgetProblem]:
    p = problem()
    spread = {"round": 0.02, "confirm": 0.002, "fresh": 0.002}
    train = Scripted(lead, spread)
    simple = [q for q in plan_budget(p, points=2).strategies if q.strategy != "optimized"]
    answer = closed_loop(p, simple, propose_optimized, train, rounds=1, repeats=4, fresh_repeats=4,
                         confirm_repeats=confirm_repeats)  # fmt: skip
    return answer, train, p


def test_a_close_call_is_trained_again_and_chosen_on_all_its_repeats() -> None:
    from labelsim.analysis.budget.loop import CONFIRM_FIRST

    # ahead by 1 point in the rounds, within 2 standard errors of a 2-point spread: a close call
    answer, train, p = scripted_loop({"round": 0.01, "confirm": 0.03, "fresh": 0.03}, confirm_repeats=8)
    assert [c[0] for c in train.calls] == ["round_1", "confirm", "fresh"]
    assert train.calls[1] == ("confirm", 8, CONFIRM_FIRST)  # new seeds, beyond the rounds' and the fresh ones
    assert answer.confirmed and answer.recommended == answer.chosen.label != answer.best_simple.label
    assert len(answer.chosen.acc) == len(answer.best_simple.acc) == 12 and answer.chosen.confirming == 8
    assert all(len(m.acc) == 4 for m in answer.fresh.values())  # the fresh repeats stay apart
    gain, _ = answer.fresh_gain(p)
    assert gain == pytest.approx(0.03)
    from labelsim.analysis.budget.loop import loop_to_dict
    from labelsim.analysis.saved_budget import loop_expected_text

    saved = loop_to_dict(answer, p, ["c0", "c1", "c2", "c3"])
    assert saved["confirmed"] and [r["confirming"] for r in saved["rounds"] if r["label"] == answer.chosen.label] == [8]
    assert "the rounds' and confirming repeats' mean" in loop_expected_text(saved)

    # choosing at once, the same rounds leave the simple strategy as the recommendation
    at_once, train, _ = scripted_loop({"round": 0.01, "confirm": 0.03, "fresh": 0.03}, confirm_repeats=0)
    assert [c[0] for c in train.calls] == ["round_1", "fresh"]
    assert not at_once.confirmed and at_once.recommended == at_once.best_simple.label


def test_confirming_repeats_that_do_not_hold_the_lead_keep_the_simple_strategy() -> None:
    answer, train, p = scripted_loop({"round": 0.01, "confirm": -0.01, "fresh": 0.03}, confirm_repeats=8)
    assert answer.confirmed and answer.recommended == answer.best_simple.label
    assert "8 confirming repeats each" in answer.verdict(p)
    # a clear lead, or none, needs no confirming
    for lead in (0.06, -0.01):
        answer, train, _ = scripted_loop({"round": lead, "confirm": 0.0, "fresh": 0.0}, confirm_repeats=8)
        assert "confirm" not in [c[0] for c in train.calls] and not answer.confirmed


# ------------------------------------------------------------------ the command


def test_budget_simulate_rounds_trains_rounds_then_fresh_repeats(tmp_path, monkeypatch, capsys) -> None:
    import json

    from test_budget_design import fake_budget_run, run_command

    run, fake, argv = fake_budget_run(tmp_path, monkeypatch)
    argv += ["--simulate", "--rounds", "2", "--repeats", "2"]
    assert run_command(argv) == 0
    out = capsys.readouterr().out
    assert "Closed loop" in out and "Recommendation:" in out
    names = [call[0].name for call in fake.calls]
    assert names[0] == "round_1" and names[-1] == "fresh"
    assert {spec.repeat for spec in fake.calls[-1][2]} == {2, 3}  # fresh repeats: new seeds
    loop = json.loads((run / "analysis" / "budget.json").read_text())["loop"]
    fresh = {row["label"]: row["measured"] for row in loop["fresh"]}
    simple = max((r for r in loop["rounds"] if r["simple"]), key=lambda r: r["measured"])["label"]
    assert fresh[loop["recommended"]] >= fresh[simple]
    # the expectation printed before the fresh repeats lies within the rounds' range of the plan
    rounds = [r["measured"] for r in loop["rounds"] if r["label"] == loop["recommended"]]
    assert f"Expected before the fresh repeats: {100 * loop['expected']:.1f}%" in out
    assert loop["expected_se"] >= 0 and abs(loop["expected"] - rounds[0]) < 0.2


def test_more_fresh_repeats_asked_again_train_only_the_missing_ones(tmp_path, monkeypatch, capsys) -> None:
    import json

    from test_budget_design import fake_budget_run, run_command

    from labelsim.rundir import load_run

    run, fake, argv = fake_budget_run(tmp_path, monkeypatch)
    argv += ["--simulate", "--rounds", "1", "--repeats", "2"]

    def fresh_replicas() -> dict[str, int]:
        loop = json.loads((run / "analysis" / "budget.json").read_text())["loop"]
        return {row["label"]: row["replicas"] for row in loop["fresh"]}

    assert run_command([*argv, "--fresh-repeats", "3"]) == 0
    assert {spec.repeat for spec in fake.calls[-1][2]} == {2, 3, 4}
    assert set(fresh_replicas().values()) == {3}
    stored = load_run(run / "budget_loop" / "fresh")
    assert run_command([*argv, "--fresh-repeats", "5"]) == 0
    grown = load_run(run / "budget_loop" / "fresh")
    assert set(fresh_replicas().values()) == {5}
    assert grown.replicas[: len(stored.replicas)] == stored.replicas  # the first three kept as they were
    np.testing.assert_array_equal(grown.counts[: len(stored.replicas)], stored.counts)
    assert {r.repeat for r in grown.replicas} == {2, 3, 4, 5, 6}
    # asked for fewer than it holds, the loop still reads every stored fresh repeat
    assert run_command([*argv, "--fresh-repeats", "2"]) == 0
    assert set(fresh_replicas().values()) == {5}
    assert "Expected before the fresh repeats" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--rounds", "1"], "--rounds needs --simulate"),
    (["--simulate", "--rounds", "1", "--fresh-repeats", "1"], "--fresh-repeats 1"),
    (["--simulate", "--fresh-repeats", "4"], "--fresh-repeats needs --simulate --rounds"),
    (["--simulate", "--rounds", "1", "--confirm-repeats", "1"], "--confirm-repeats 1"),
    (["--confirm-repeats", "4"], "--confirm-repeats needs --simulate --rounds"),
    (["--simulate", "--rounds", "0"], "--rounds 0"),
    (["--simulate", "--rounds", "1", "--repeats", "1"], "--repeats 1"),
])  # fmt: skip
def test_budget_rounds_errors(tmp_path, capsys, extra: list[str], message: str) -> None:
    from fake_run import write_fake_run
    from test_budget_design import run_command

    write_fake_run(tmp_path / "run")
    argv = [str(tmp_path / "run"), "--budget", "40", "--tier", "crowd:0.01:0.20", *extra]
    assert run_command(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


class FlippedFresh(Simulator):
    """Fresh repeats (first > 0) measure every plan but the simple ones 3 points lower: a world
    where the rounds' gain does not hold up."""

    def __init__(self, p: BudgetProblem, truth: Callable, simple: set[bytes]) -> None:
        super().__init__(p, truth)
        self.simple = simple

    def __call__(self, candidates: Sequence[Candidate], repeats: int, first: int, name: str) -> dict[str, np.ndarray]:
        out = super().__call__(candidates, repeats, first, name)
        if first:
            for label, counts in candidates:
                if counts.tobytes() not in self.simple:
                    out[label] = out[label] - 0.03
        return out


def test_the_choice_is_made_in_the_rounds_and_the_fresh_repeats_only_report_it() -> None:
    p = problem()
    result = plan_budget(p, points=2)
    simple = [s for s in result.strategies if s.strategy != "optimized"]
    sim = FlippedFresh(p, world(overrated=False), {s.counts.tobytes() for s in simple})
    answer = closed_loop(p, simple, propose_optimized, sim, rounds=1, repeats=3)
    # chosen in the rounds, where it won by far more than the margin ...
    chosen, best = answer.chosen, answer.best_simple
    assert chosen.mean(p) - best.mean(p) > MARGIN_SE * np.hypot(chosen.stderr(p), best.stderr(p))
    assert answer.recommended == chosen.label
    # ... and reported as the fresh repeats measured it, below the simple strategy, said plainly
    gain, se = answer.fresh_gain(p)
    assert gain < 0 < se
    assert "do not confirm" in answer.verdict(p)


def test_a_gain_within_the_margin_does_not_displace_the_simple_strategy() -> None:
    p = problem()
    result = plan_budget(p, points=2)
    simple = [s for s in result.strategies if s.strategy != "optimized"]
    best = max(simple, key=lambda s: float(np.mean(world(False)(p, s.counts))))

    def truth(q: BudgetProblem, counts: np.ndarray) -> np.ndarray:
        # every non-simple plan measures the best simple strategy's truth plus half a spread
        base = world(False)(q, best.counts)
        return base if counts.tobytes() in {s.counts.tobytes() for s in simple} else base + SPREAD / 2

    answer = closed_loop(p, simple, propose_optimized, Simulator(p, truth), rounds=1, repeats=3)
    assert answer.recommended == answer.best_simple.label
    assert "within 2 standard errors" in answer.verdict(p)


def test_every_trained_plan_carries_the_prediction_its_round_made_before_training() -> None:
    p = problem()
    result = plan_budget(p, points=2)
    simple = [s for s in result.strategies if s.strategy != "optimized"]
    answer = closed_loop(p, simple, propose_optimized, Simulator(p, world(False)), rounds=1, repeats=3)
    for m in answer.measured:
        np.testing.assert_allclose(m.predicted, predict_counts(p, m.counts))
        # the curves are the truth here: measured within a few replica spreads of predicted
        assert abs(m.mean(p) - m.predicted_objective(p)) < 4 * SPREAD
    assert answer.fresh[answer.recommended].predicted is not None
    assert answer.models == ["separable curves"]


def test_the_grid_trainer_leaves_out_plans_smaller_than_one_batch(tmp_path) -> None:
    from labelsim.analysis.budget.loop import grid_trainer
    from labelsim.config import RunConfig

    p = problem()
    config = RunConfig()
    calls = []

    def run_grid(config, out, *, resume, replicas, progress, grow):
        calls.append(replicas)
        raise SystemExit  # the specs are all this test needs

    train = grid_trainer(p, config, tmp_path, run_grid, progress=False)
    tiny = np.zeros((4, 2), dtype=np.int64)
    tiny[:, 0] = (config.recipe.batch_size - 1) // 4  # fewer labels than one batch in all
    big = np.full((4, 2), config.recipe.batch_size, dtype=np.int64)
    with pytest.raises(SystemExit):
        train([("tiny", tiny), ("big", big)], 2, 0, "round_1")
    assert {spec.label for spec in calls[0]} == {"big"}


def test_a_proposal_that_buys_what_a_simple_strategy_buys_is_that_simple_strategy() -> None:
    p = problem()
    result = plan_budget(p, points=2)
    simple = [s for s in result.strategies if s.strategy != "optimized"]
    copy = simple[0]

    def propose_a_copy(q: BudgetProblem, measured: list[Measured], round_: int) -> Proposal:
        return Proposal([("optimized (knapsack)", copy.counts.copy())], curve_predictor(q))

    sim = Simulator(p, world(False))
    answer = closed_loop(p, simple, propose_a_copy, sim, rounds=1, repeats=3)
    same = [m for m in answer.measured if np.array_equal(m.counts, copy.counts)]
    assert len(same) == 1 and same[0].simple and same[0].label == copy.strategy
    assert all(m.simple for m in answer.measured)  # nothing but simple strategies was trained
    assert answer.recommended == answer.best_simple.label


def test_the_expectation_weighs_the_rounds_and_the_model_by_their_precision() -> None:
    p = problem()
    result = plan_budget(p, points=2)
    simple = [s for s in result.strategies if s.strategy != "optimized"]

    def true_acc(q: BudgetProblem, counts: np.ndarray) -> np.ndarray:
        return world(False)(q, counts) + 0.03  # every plan measures 3 points above the curves

    def claiming(error: float) -> Callable:
        def propose(q: BudgetProblem, measured: list[Measured], round_: int) -> Proposal:
            return dataclasses.replace(propose_optimized(q, measured, round_), error=error)
        return propose

    for claimed in (0.02, 0.0001):  # an honest held-out error, and one far too firm
        answer = closed_loop(p, simple, claiming(claimed), Simulator(p, true_acc), rounds=1, repeats=3)
        plan = next(m for m in answer.measured if m.label == answer.recommended)  # as the rounds measured it
        assert plan.model_error == claimed
        rounds, predicted = plan.mean(p), plan.predicted_objective(p)
        expected, se = answer.expected(p)
        assert rounds - predicted == pytest.approx(0.03, abs=4 * SPREAD)
        # between the two, near the rounds (replica spread 0.002 against a model that missed the
        # other plans by 0.03: its misses count even when it claims to be exact) ...
        assert predicted < expected < rounds and rounds - expected < 0.1 * (rounds - predicted)
        # ... and firmer than either alone
        assert 0 < se < min(plan.stderr(p), 0.02)
