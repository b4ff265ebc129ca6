"""The measured cost to a target: every strategy is trained at a ladder of budgets around its
predicted cost, the answer is the cheapest rung whose measured mean reaches the target, and
that answer is re-measured on fresh repeats that did not choose it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelsim.analysis.budget import BudgetError, plan_budget
from labelsim.analysis.budget.plans import OPTIMIZED, objective_value
from labelsim.analysis.budget.target import LADDER, measure_target, target_rungs, target_to_dict, target_verdict
from labelsim.present.budget_text import format_target
from test_budget_loop import Simulator, problem, world


def _answer(target: float, overrated: bool):
    p = problem()
    result = plan_budget(p, target=target, points=5)
    sim = Simulator(p, world(overrated=overrated))
    return p, result, sim, measure_target(result, sim, repeats=3)


def test_rungs_surround_each_strategys_predicted_cost() -> None:
    p = problem()
    result = plan_budget(p, target=0.90, points=5)
    rungs = target_rungs(result)
    for strategy, cost in result.cost_to_target.items():
        mine = [r for r in rungs if r.strategy == strategy]
        assert mine, strategy
        assert all(r.cost <= r.budget + 1e-9 for r in mine)
        if cost is not None:
            assert {round(r.budget / cost, 2) for r in mine} <= {round(f, 2) for f in LADDER}
            assert min(r.budget for r in mine) < cost <= max(r.budget for r in mine)


def test_answer_is_the_cheapest_rung_that_measured_at_or_above_the_target() -> None:
    TARGET = 0.78
    p, result, sim, answer = _answer(TARGET, overrated=True)
    passing = [r for r in answer.rungs if len(r.measured) and r.mean >= TARGET]
    assert passing, "the ladder should reach the target on this problem"
    assert answer.answer is not None
    assert answer.answer.cost == min(r.cost for r in passing)
    # a strategy's reported rung is its own cheapest passing rung; a rung below it did not pass
    for strategy, rung in answer.reached.items():
        mine = sorted((r for r in answer.rungs if r.strategy == strategy), key=lambda r: r.cost)
        if rung is None:
            assert not any(r.mean >= TARGET for r in mine)
            continue
        assert rung.mean >= TARGET
        assert not any(r.mean >= TARGET for r in mine if r.cost < rung.cost)
    # measured values are the objective of the simulator's replicas, not the prediction
    rung = answer.answer
    truth = float(objective_value(p, world(overrated=True)(p, rung.counts)))
    assert abs(rung.mean - truth) < 0.01
    # the curves overrate the expert tier here, so the measured cost differs from the predicted one
    assert any(r.predicted - r.mean > 0.01 for r in answer.rungs if len(r.measured) and not math.isnan(r.predicted))


def test_fresh_repeats_are_new_seeds_for_the_answer_and_the_cheapest_simple_strategy() -> None:
    p, result, sim, answer = _answer(0.90, overrated=False)
    expected = {answer.answer.label} | ({answer.best_simple.label} if answer.best_simple else set())
    assert set(answer.fresh) == expected
    for label, fresh in answer.fresh.items():
        ladder = next(r for r in answer.rungs if r.label == label)
        assert len(fresh.measured) == 3
        assert not np.allclose(fresh.measured, ladder.measured)  # other seeds
    # each purchase trained once on the ladder, then only the finals again
    assert sim.calls == 2
    assert len(sim.trained) == len({r.counts.tobytes() for r in answer.rungs}) + len({
        r.counts.tobytes() for r in answer.fresh.values()})


def test_verdict_and_table_name_the_answer_and_the_simple_strategys_cost() -> None:
    _, _, _, answer = _answer(0.90, overrated=False)
    text = target_verdict(answer)
    assert answer.answer.label in text
    if answer.best_simple is not None and answer.best_simple is not answer.answer:
        assert answer.best_simple.label in text
        assert ("less" in text) == (answer.answer.cost < 0.995 * answer.best_simple.cost)
    table = format_target(target_to_dict(answer))
    assert table.count("(fresh)") == len(answer.fresh)
    assert table.count(" *") >= 1


def test_an_unreachable_target_says_so() -> None:
    _, result, _, answer = _answer(0.999, overrated=False)
    assert answer.answer is None and answer.fresh == {}
    assert all(c is None for c in result.cost_to_target.values())
    assert "no plan measured reached" in target_verdict(answer)


def test_bad_inputs() -> None:
    p = problem()
    with pytest.raises(BudgetError, match="--target"):
        target_rungs(plan_budget(p, points=3))
    result = plan_budget(p, target=0.90, points=3)
    with pytest.raises(BudgetError, match="--repeats 1"):
        measure_target(result, Simulator(p, world(False)), repeats=1)
    assert OPTIMIZED in result.cost_to_target


def test_budget_simulate_target_trains_the_ladder_then_fresh_repeats(tmp_path, monkeypatch, capsys) -> None:
    import json

    from test_budget_design import fake_budget_run, run_command

    run, fake, argv = fake_budget_run(tmp_path, monkeypatch)
    argv += ["--target", "0.6", "--simulate", "--repeats", "2"]
    assert run_command(argv) == 0
    out = capsys.readouterr().out
    assert "Measured cost to reach 60.0%" in out and out.count("Verdict:") == 2  # the simulation's and the target's
    target_calls = [c for c in fake.calls if c[0].parent.name == "budget_target"]
    assert [c[0].name.split("_")[0] for c in target_calls] in (["ladder"], ["ladder", "fresh"])
    saved = json.loads((run / "analysis" / "budget.json").read_text())["target_simulation"]
    assert saved["target"] == 0.6 and saved["rungs"]
    labels = " ".join(r["label"] for r in saved["rungs"])
    assert all(name in labels for name in saved["measured_cost"])  # every strategy's rungs are shown
    if len(target_calls) == 2:
        assert {spec.repeat for spec in target_calls[1][2]} == {2, 3}  # fresh repeats: new seeds
    # the same question again resumes the same folders instead of training new ones
    before = len(list((run / "budget_target").iterdir()))
    assert run_command(argv + ["--simulate-out", str(tmp_path / "sim2")]) == 0
    assert len(list((run / "budget_target").iterdir())) == before


def test_budget_simulate_target_needs_two_repeats(tmp_path, capsys) -> None:
    from fake_run import write_fake_run
    from test_budget_design import run_command

    write_fake_run(tmp_path / "run")
    argv = [str(tmp_path / "run"), "--budget", "40", "--tier", "crowd:0.01:0.20", "--target", "0.6",
            "--simulate", "--repeats", "1"]  # fmt: skip
    assert run_command(argv) == 2
    err = capsys.readouterr().err
    assert "--repeats 1" in err and "--target" in err and err.count("\n") == 1


def test_rungs_that_buy_the_same_labels_are_shown_once_under_all_their_names() -> None:
    _, _, _, answer = _answer(0.90, overrated=False)
    rows = target_to_dict(answer)["rungs"]
    distinct = {r.counts.tobytes() for r in answer.rungs}
    assert len(rows) == len(distinct) < len(answer.rungs)  # 'all expert' and 'equal per class, expert' coincide
    assert any(" = " in row["label"] for row in rows)
    named = " ".join(row["label"] for row in rows)
    assert all(r.strategy in named for r in answer.rungs)
