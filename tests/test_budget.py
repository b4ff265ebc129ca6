"""The labeling-budget optimizer: exact against brute force, monotone, never worse than the
simple strategies, scalable, with clear errors; and the ``budget`` command around it."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from labelsim.analysis.budget import (
    DEFAULT_MAX_RATIO,
    OPTIMIZED,
    SIMULATION_DIR,
    BudgetError,
    BudgetProblem,
    ClassCurve,
    Plan,
    RunContext,
    Tier,
    build_optimizer,
    compare_simulation,
    cost_curves,
    cost_to_reach,
    curves_from_fits,
    minimum_cost,
    optimize,
    parse_class_values,
    parse_tier,
    plan_budget,
    power_law_curve,
    replica_specs,
    result_to_dict,
    simple_strategies,
    simulation_plans,
    sweep_budgets,
)
from labelsim.commands import budget as command
from labelsim.config import ConfigError, RunConfig
from labelsim.present.budget_chart import budget_chart
from labelsim.present.budget_text import format_simulation, format_strategies

TOL = 1e-9


# ------------------------------------------------------------------ problem builders


def random_curves(k: int, rng: np.random.Generator, n_range: tuple[float, float]) -> tuple[ClassCurve, ...]:
    """Random power-law classes with noise slopes, over a measured count range."""
    return tuple(
        power_law_curve(
            f"c{i}",
            a=rng.uniform(0.8, 0.95),
            b=rng.uniform(0.1, 0.5),
            c=rng.uniform(0.5, 1.5),
            slope=rng.uniform(0.0, 0.6),
            n_range=n_range,
        )
        for i in range(k)
    )


def random_tiers(t: int, rng: np.random.Generator) -> tuple[Tier, ...]:
    """Tiers with prices in whole cents and noise in whole percent."""
    prices = rng.choice(np.arange(2, 20), size=t, replace=False) / 100
    noises = rng.integers(0, 40, size=t) / 100
    return tuple(Tier(f"t{i}", float(p), float(e)) for i, (p, e) in enumerate(zip(prices, noises)))


def small_problem(seed: int, objective: str, weighted: bool) -> BudgetProblem:
    """Three or four classes, two or three tiers, a handful of labels each, step 1."""
    rng = np.random.default_rng(seed)
    t = 2 + seed % 2
    k, n_range = (3, (1, 3)) if t == 3 else (3 + seed % 3 // 2, (1, 4))
    weights = tuple(float(w) for w in rng.choice([0.5, 1.0, 2.0], size=k)) if weighted else None
    multipliers = tuple(float(m) for m in rng.choice([1.0, 1.5, 0.5], size=k))
    available = tuple(int(a) for a in rng.integers(n_range[0] + 1, n_range[1] + 2, size=k))
    return BudgetProblem(
        random_curves(k, rng, n_range), random_tiers(t, rng), 1.0, multipliers, available,
        weights, objective, step=1,
    )  # fmt: skip


def all_purchases(problem: BudgetProblem, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every integer purchase (no pruning) of class k: counts, cost, accuracy."""
    curve = problem.curves[k]
    lo = int(np.ceil(curve.n_range[0]))
    hi = int(min(np.floor(curve.n_range[1]), problem.available[k] if problem.available else np.inf))
    t = len(problem.tiers)
    counts = np.array([c for c in itertools.product(range(hi + 1), repeat=t) if lo <= sum(c) <= hi])
    n = counts.sum(axis=1)
    eps = counts @ np.array([x.noise for x in problem.tiers]) / n
    prices = problem.multipliers()[k] * np.array([x.price for x in problem.tiers])
    return counts, counts @ prices, curve.accuracy(n, eps)


def brute_force(problem: BudgetProblem) -> tuple[float, float, float] | None:
    """(objective, weighted mean, cost) of the best plan by full enumeration, or None; with a
    max ratio, only plans whose largest class total is within it of the smallest count."""
    options = [all_purchases(problem, k) for k in range(len(problem.curves))]
    grids = np.meshgrid(*[np.arange(len(o[1])) for o in options], indexing="ij")
    index = [g.ravel() for g in grids]
    cost = np.sum([o[1][i] for o, i in zip(options, index)], axis=0)
    acc = np.stack([o[2][i] for o, i in zip(options, index)], axis=1)
    ok = cost <= problem.budget + TOL
    if problem.max_ratio is not None:
        totals = np.stack([o[0].sum(axis=1)[i] for o, i in zip(options, index)], axis=1)
        ok &= totals.max(axis=1) <= problem.max_ratio * totals.min(axis=1) + TOL
    if not ok.any():
        return None
    cost, acc = cost[ok], acc[ok]
    w = problem.weight_vector()
    mean = acc @ w / w.sum()
    primary = acc.min(axis=1) if problem.objective == "worst" else mean
    keep = primary >= primary.max() - TOL
    keep &= mean >= mean[keep].max() - TOL
    best = np.flatnonzero(keep)[np.argmin(cost[keep])]
    return float(primary[best]), float(mean[best]), float(cost[best])


def weighted_mean(problem: BudgetProblem, acc: np.ndarray) -> float:
    w = problem.weight_vector()
    return float(acc @ w / w.sum())


# ------------------------------------------------------------------ exactness


def optimum_matching_brute_force(problem: BudgetProblem) -> Plan | None:
    """``optimize(problem)``, checked against exhaustive enumeration: the same objective, mean
    and cost, or the same "no plan" (then None)."""
    expected = brute_force(problem)
    if expected is None:
        with pytest.raises(BudgetError, match="cheapest useful plan"):
            optimize(problem)
        return None
    plan = optimize(problem)
    assert plan.source == "dp"
    assert plan.objective == pytest.approx(expected[0], abs=1e-9)
    assert weighted_mean(problem, plan.acc) == pytest.approx(expected[1], abs=1e-9)
    assert plan.cost == pytest.approx(expected[2], abs=1e-9)
    return plan


@pytest.mark.parametrize("objective,weighted", [("mean", False), ("mean", True), ("worst", False)])
@pytest.mark.parametrize("seed", range(5))
def test_solver_equals_brute_force(seed: int, objective: str, weighted: bool) -> None:
    base = small_problem(seed, objective, weighted)
    low = minimum_cost(base)
    top = float(sum(all_purchases(base, k)[1].max() for k in range(len(base.curves))))
    for budget in [low - 0.01, low, *np.linspace(low, top, 6)[1:-1].round(2), top + 1]:
        problem = base.with_budget(float(budget))
        plan = optimum_matching_brute_force(problem)
        assert plan is None or plan.cost <= problem.budget + TOL


def test_ties_are_broken_deterministically_toward_the_cheaper_plan() -> None:
    flat = power_law_curve("flat", a=0.9, b=0.0, c=1.0, slope=0.0, n_range=(1, 4))
    twin = power_law_curve("twin", a=0.8, b=0.3, c=1.0, slope=0.2, n_range=(1, 4))
    tiers = (Tier("a", 0.05, 0.1), Tier("b", 0.05, 0.1), Tier("c", 0.10, 0.0))  # a, b identical
    for objective in ("mean", "worst"):
        problem = BudgetProblem((flat, twin, twin), tiers, 0.9, objective=objective, step=1)
        expected = brute_force(problem)
        first, second = optimize(problem), optimize(problem)
        np.testing.assert_array_equal(first.counts, second.counts)
        assert first.objective == pytest.approx(expected[0], abs=1e-9)
        assert first.cost == pytest.approx(expected[2], abs=1e-9)
        assert first.labels[0] == 1  # the flat class gains nothing from more labels: cheapest
        assert first.counts[1].tolist() == first.counts[2].tolist()  # identical classes alike


def test_all_options_tied_gives_the_cheapest_plan() -> None:
    flat = tuple(power_law_curve(f"f{i}", 0.9, 0.0, 1.0, 0.0, (2, 5)) for i in range(3))
    problem = BudgetProblem(flat, (Tier("a", 0.03, 0.2), Tier("b", 0.07, 0.0)), 10.0, step=1)
    plan = optimize(problem)
    assert plan.cost == pytest.approx(minimum_cost(problem))
    assert plan.counts[:, 1].sum() == 0


def test_infeasible_budget_error_states_the_minimum() -> None:
    curves = random_curves(3, np.random.default_rng(0), (100, 1000))
    problem = BudgetProblem(curves, (Tier("crowd", 0.04, 0.2), Tier("expert", 0.15, 0.02)), 5.0)
    with pytest.raises(BudgetError) as info:
        optimize(problem)
    assert isinstance(info.value, ConfigError)
    assert "12.00" in str(info.value)  # 3 classes x 100 labels x 0.04
    assert "--budget" in str(info.value)


# ------------------------------------------------------------------ properties


def medium_problem(objective: str = "mean", **kwargs) -> BudgetProblem:
    """Ten classes, two tiers, counts 50..5000 per class, automatic step."""
    curves = random_curves(10, np.random.default_rng(7), (50, 5000))
    tiers = (Tier("crowd", 0.04, 0.20), Tier("expert", 0.15, 0.02))
    return BudgetProblem(curves, tiers, 2000.0, objective=objective, **kwargs)


@pytest.mark.parametrize("objective", ["mean", "worst"])
def test_more_budget_never_lowers_the_optimum(objective: str) -> None:
    problem = medium_problem(objective)
    values = [optimize(problem.with_budget(b), intervals=False).objective
              for b in np.linspace(minimum_cost(problem), 9000, 15)]  # fmt: skip
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("objective", ["mean", "worst"])
def test_curves_monotone_and_optimized_never_worse_than_a_strategy(objective: str) -> None:
    problem = medium_problem(objective, price_multipliers=(1.5,) + (1.0,) * 9)
    budgets = sweep_budgets(problem, points=12)
    curves = {c["strategy"]: c["points"] for c in cost_curves(problem, budgets)}
    ours = [p["objective"] for p in curves[OPTIMIZED]]
    assert all(b >= a - 1e-12 for a, b in zip(ours, ours[1:]))
    for name, points in curves.items():
        for mine, theirs in zip(ours, points):
            assert theirs["cost"] <= theirs["budget"] + 1e-9
            if theirs["objective"] is not None:
                assert mine >= theirs["objective"] - 1e-12, name


def test_exact_grid_optimum_beats_strategies_without_fallback() -> None:
    for seed in range(3):
        problem = small_problem(seed, "mean", False)
        for budget in np.linspace(minimum_cost(problem), minimum_cost(problem) * 3, 4):
            at = problem.with_budget(float(budget))
            plan = optimize(at)
            assert plan.source == "dp"
            for rival in simple_strategies(at):
                if rival.predicted:
                    assert plan.objective >= rival.objective - 1e-12


def test_no_plan_buys_more_than_available() -> None:
    available = (300, 5000, 120, 5000, 5000, 5000, 5000, 5000, 5000, 800)
    problem = medium_problem(available=available).with_budget(20000.0)
    result = plan_budget(problem, points=5)
    for plan in result.strategies:
        assert np.all(plan.labels <= np.array(available))
    assert np.all(result.plan.labels <= np.array(available))


def test_class_price_multiplier_moves_labels_away() -> None:
    base = medium_problem()
    dear = dataclasses.replace(base, price_multipliers=(4.0,) + (1.0,) * 9)
    assert optimize(dear, intervals=False).labels[0] <= optimize(base, intervals=False).labels[0]


def test_scales_to_100_classes_and_5_tiers_and_solves_correctly() -> None:
    rng = np.random.default_rng(3)
    curves = random_curves(100, rng, (50, 2000))
    tiers = tuple(Tier(f"t{i}", p, e) for i, (p, e) in
                  enumerate([(0.02, 0.35), (0.04, 0.2), (0.08, 0.1), (0.15, 0.04), (0.30, 0.0)]))  # fmt: skip
    problem = BudgetProblem(curves, tiers, 8000.0)
    opt = build_optimizer(problem)
    chosen = opt.choose(problem.budget)
    cost = np.array([o.cost[i] for o, i in zip(opt.options, chosen)])
    value = np.array([o.acc[i] for o, i in zip(opt.options, chosen)])
    assert cost.sum() <= problem.budget + 1e-6
    # Any two classes re-optimised together, the others fixed, cannot do better.
    for i, j in rng.choice(100, size=(25, 2), replace=True):
        if i == j:
            continue
        room = problem.budget - (cost.sum() - cost[i] - cost[j])
        oi, oj = opt.options[i], opt.options[j]
        pair_cost = oi.cost[:, None] + oj.cost[None, :]
        pair_value = oi.acc[:, None] + oj.acc[None, :]
        assert pair_value[pair_cost <= room + 1e-6].max() <= value[i] + value[j] + 1e-9
    plan = optimize(problem, opt, intervals=False)
    assert all(plan.objective >= s.objective - 1e-12 for s in simple_strategies(problem) if s.predicted)


def test_awkward_prices_round_costs_up_and_stay_within_budget() -> None:
    curves = random_curves(6, np.random.default_rng(5), (40, 900))
    tiers = (Tier("crowd", 0.0437, 0.18), Tier("expert", 0.1613, 0.03))
    problem = BudgetProblem(curves, tiers, 431.77, price_multipliers=(1.33, 1, 1, 0.71, 1, 1), max_cells=500)
    result = plan_budget(problem, points=6)
    assert not result.grid.exact and any("rounded up" in w for w in result.warnings)
    assert result.plan.cost <= problem.budget + 1e-9
    for rival in result.strategies:
        if rival.predicted:
            assert result.plan.objective >= rival.objective - 1e-12


def test_intervals_come_from_bootstrap_samples() -> None:
    rng = np.random.default_rng(2)
    curves = tuple(
        power_law_curve(
            f"c{i}", 0.9, 0.5, 0.8, 0.2, (50, 500),
            volume_samples=np.column_stack([rng.normal(0.9, 0.01, 300), rng.normal(0.5, 0.05, 300),
                                            rng.normal(0.8, 0.02, 300)]),
            slope_samples=rng.normal(0.2, 0.03, 300),
        )
        for i in range(3)
    )  # fmt: skip
    problem = BudgetProblem(curves, (Tier("crowd", 0.04, 0.2), Tier("expert", 0.15, 0.02)), 40.0)
    plan = optimize(problem)
    assert plan.overall_ci[0] < plan.overall < plan.overall_ci[1]
    assert np.all((plan.acc_ci[:, 0] < plan.acc) & (plan.acc < plan.acc_ci[:, 1]))
    assert plan.overall_ci[1] - plan.overall_ci[0] < 0.05


def test_single_tier_has_no_duplicate_strategies() -> None:
    curves = random_curves(3, np.random.default_rng(0), (10, 100))
    problem = BudgetProblem(curves, (Tier("only", 0.1, 0.1),), 20.0)
    names = [p.strategy for p in simple_strategies(problem)]
    assert names == ["all only (cheapest)", "equal per class, only"]


# ------------------------------------------------------------------ max ratio


def tiny_problem(seed: int, objective: str, max_ratio: float | None) -> BudgetProblem:
    """Two or three classes, one or two tiers, 1..6 labels each, prices that make lopsided
    plans attractive (a cheap class and a dear one)."""
    rng = np.random.default_rng(100 + seed)
    k, t = 2 + seed % 2, 1 + seed // 2 % 2
    multipliers = tuple(float(m) for m in rng.permutation([0.5, 3.0, 1.0][:k]))
    available = tuple(int(a) for a in rng.integers(4, 7, size=k))
    return BudgetProblem(
        random_curves(k, rng, (1, 6)), random_tiers(t, rng), 1.0, multipliers, available,
        None, objective, step=1, max_ratio=max_ratio,
    )  # fmt: skip


@pytest.mark.parametrize("objective", ["mean", "worst"])
@pytest.mark.parametrize("seed", range(4))
def test_capped_solver_equals_brute_force(seed: int, objective: str) -> None:
    binding = 0  # budgets at which the uncapped optimum breaks the cap
    for ratio in (1.0, 1.5, 2.0):
        base = tiny_problem(seed, objective, ratio)
        free = dataclasses.replace(base, max_ratio=None)
        low = minimum_cost(base)
        top = float(sum(all_purchases(base, k)[1].max() for k in range(len(base.curves))))
        for budget in [low - 0.01, *np.linspace(low, top, 7).round(2), top + 1]:
            plan = optimum_matching_brute_force(base.with_budget(float(budget)))
            if plan is None:
                continue
            assert plan.labels.max() <= ratio * plan.labels.min() + TOL
            uncapped = optimize(free.with_budget(float(budget))).labels
            binding += uncapped.max() > ratio * uncapped.min()
    assert binding > 0  # the cap changed some answer, so the check above means something


@pytest.mark.parametrize("objective", ["mean", "worst"])
def test_capped_plans_keep_within_the_ratio_across_sweeps(objective: str) -> None:
    capped = medium_problem(objective, max_ratio=2.0)
    free = dataclasses.replace(capped, max_ratio=None)
    budgets = sweep_budgets(capped, points=8)
    lopsided = 0
    for b in budgets:
        plan = optimize(capped.with_budget(float(b)), intervals=False)
        assert plan.labels.max() <= 2.0 * plan.labels.min() + TOL
        assert plan.cost <= b + 1e-9
        loose = optimize(free.with_budget(float(b)), intervals=False)
        assert plan.objective <= loose.objective + 1e-12  # a cap never helps the prediction
        lopsided += loose.labels.max() > 2.0 * loose.labels.min()
    assert lopsided > 0
    curves = {c["strategy"]: [p["objective"] for p in c["points"]] for c in cost_curves(capped, budgets)}
    ours = curves[OPTIMIZED]
    assert all(b >= a - 1e-12 for a, b in zip(ours, ours[1:]))
    assert cost_to_reach(capped, OPTIMIZED, ours[-1], float(budgets.max())) >= cost_to_reach(
        free, OPTIMIZED, ours[-1], float(budgets.max())) - 1e-6  # fmt: skip


@pytest.mark.parametrize("objective", ["mean", "worst"])
def test_generous_cap_gives_the_uncapped_plan(objective: str) -> None:
    free = medium_problem(objective, price_multipliers=(1.5,) + (1.0,) * 9)
    loose = dataclasses.replace(free, max_ratio=1000.0)  # counts run 50..5000: never binding
    budgets = sweep_budgets(free, points=6)
    for b in budgets:
        np.testing.assert_array_equal(optimize(loose.with_budget(float(b)), intervals=False).counts,
                                      optimize(free.with_budget(float(b)), intervals=False).counts)
    assert cost_curves(loose, budgets) == cost_curves(free, budgets)
    # A cap the uncapped optimum already keeps within changes neither its objective nor cost.
    kept = 0
    for b in sweep_budgets(free, points=15):
        plan = optimize(free.with_budget(float(b)), intervals=False)
        ratio = plan.labels.max() / plan.labels.min()
        capped = optimize(dataclasses.replace(free, max_ratio=ratio).with_budget(float(b)), intervals=False)
        assert capped.objective == pytest.approx(plan.objective, abs=1e-12)
        assert capped.cost == pytest.approx(plan.cost, abs=1e-9)
        kept += ratio > 1
    assert kept > 0


@pytest.mark.parametrize("objective", ["mean", "worst"])
def test_cap_one_gives_every_class_the_same_count(objective: str) -> None:
    problem = medium_problem(objective, max_ratio=1.0, price_multipliers=(3.0,) + (1.0,) * 9)
    for b in np.linspace(minimum_cost(problem), 9000, 5):
        at = problem.with_budget(float(b))
        plan = optimize(at, intervals=False)
        assert len(set(plan.labels.tolist())) == 1
        for rival in simple_strategies(at, intervals=False):
            if rival.predicted and len(set(rival.labels.tolist())) == 1:
                assert plan.objective >= rival.objective - 1e-12


def test_lopsided_strategy_is_not_adopted_under_a_cap() -> None:
    # Class c0 has only 60 images, so "equal per class" stops at 60 for it and buys the others
    # more; on a coarse label grid (step 60) that strategy beats the grid's plan without a cap.
    curves = random_curves(3, np.random.default_rng(4), (50, 1000))
    problem = BudgetProblem(curves, (Tier("crowd", 0.04, 0.2), Tier("expert", 0.15, 0.02)), 60.0,
                            available=(60, 1000, 1000), step=200, max_ratio=3.0)  # fmt: skip
    for b in np.linspace(minimum_cost(problem), 150, 6):
        plan = optimize(problem.with_budget(float(b)), intervals=False)
        assert plan.labels.max() <= 3.0 * plan.labels.min() + TOL
    free = dataclasses.replace(problem, max_ratio=None).with_budget(150.0)
    assert optimize(free, intervals=False).source.startswith("equal per class")


def test_cap_raises_the_cheapest_plan_and_says_when_it_cannot_be_met() -> None:
    curves = (power_law_curve("few", 0.9, 0.5, 0.8, 0.1, (10, 100)),
              power_law_curve("many", 0.9, 0.5, 0.8, 0.1, (40, 100)))  # fmt: skip
    tiers = (Tier("crowd", 0.04, 0.2),)
    problem = BudgetProblem(curves, tiers, 10.0, max_ratio=2.0)
    np.testing.assert_array_equal(problem.least_labels(), [20, 40])
    assert minimum_cost(problem) == pytest.approx(60 * 0.04)
    with pytest.raises(BudgetError, match=r"within --max-ratio 2.*--budget 2.40"):
        optimize(problem.with_budget(2.0))
    plan = optimize(problem)
    assert plan.labels.max() <= 2 * plan.labels.min()
    with pytest.raises(BudgetError, match=r"--max-ratio 2 cannot be met.*class few.*--max-ratio 2.67"):
        BudgetProblem(curves, tiers, 10.0, available=(15, 100), max_ratio=2.0)


@pytest.mark.parametrize("value", [0.5, 0.0, -1.0, float("nan"), float("inf")])
def test_bad_max_ratio_is_a_clear_error(value: float) -> None:
    curves = random_curves(2, np.random.default_rng(0), (10, 100))
    with pytest.raises(BudgetError, match=r"pass --max-ratio 1 or more .*or leave it out"):
        BudgetProblem(curves, (Tier("a", 0.1, 0.1),), 10.0, max_ratio=value)


def test_command_records_the_max_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from labelsim.analysis.saved_budget import header_text, load_saved_budget

    ctx = fake_context(tmp_path)
    monkeypatch.setattr(command, "load_context", lambda path: ctx)
    argv = [str(tmp_path), "--budget", "60", "--tier", "crowd:0.04:0.20", "--tier", "expert:0.15:0.02",
            "--points", "4", "--max-ratio", "1.5"]  # fmt: skip
    assert run_command(argv) == 0
    assert "(--max-ratio 1.5)" in capsys.readouterr().out
    saved = load_saved_budget(tmp_path / "analysis" / "budget.json", ctx.classes)
    assert saved.data["max_ratio"] == 1.5 and "within 1.5x" in header_text(saved)
    totals = [row["total"] for row in saved.data["plan"]["classes"]]
    assert max(totals) <= 1.5 * min(totals)
    assert run_command(argv[:-2] + ["--json", "--no-save"]) == 0
    assert json.loads(capsys.readouterr().out)["max_ratio"] == DEFAULT_MAX_RATIO
    assert run_command(argv[:-1] + ["none", "--json", "--no-save"]) == 0
    assert json.loads(capsys.readouterr().out)["max_ratio"] is None
    assert run_command(argv[:-1] + ["0.5"]) == 2
    assert "pass --max-ratio 1 or more" in capsys.readouterr().err
    assert run_command(argv[:-1] + ["nan"]) == 2
    assert "pass --max-ratio 1 or more" in capsys.readouterr().err


# ------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    "spec,message",
    [
        ("crowd:-0.04:0.2", "positive price"),
        ("crowd:0:0.2", "positive price"),
        ("crowd:0.04:1.0", r"outside \[0, 1\)"),
        ("crowd:0.04:-0.1", r"outside \[0, 1\)"),
        ("crowd-0.04-0.2", "does not parse"),
        ("crowd:0.04", "does not parse"),
        ("crowd:cheap:0.2", "must be numbers"),
        (":0.04:0.2", "needs a name"),
    ],
)
def test_bad_tier_specs(spec: str, message: str) -> None:
    with pytest.raises(BudgetError, match=message):
        parse_tier(spec)


def test_tier_spec_parses() -> None:
    assert parse_tier("crowd:0.04:0.20") == Tier("crowd", 0.04, 0.2)


def test_per_class_values_text_files_and_unknown_names(tmp_path: Path) -> None:
    classes = ("cat", "dog")
    assert parse_class_values("cat=1.5", classes, "--class-price") == {"cat": 1.5}
    assert parse_class_values("7", classes, "--available", allow_all=True) == {"cat": 7, "dog": 7}
    (tmp_path / "p.json").write_text(json.dumps({"dog": 2}))
    (tmp_path / "p.csv").write_text("class,price\ncat,3\n")
    assert parse_class_values(str(tmp_path / "p.json"), classes, "x") == {"dog": 2.0}
    assert parse_class_values(str(tmp_path / "p.csv"), classes, "x") == {"cat": 3.0}
    with pytest.raises(BudgetError, match="unknown class.*kat.*cat, dog"):
        parse_class_values("kat=1.5", classes, "--class-price")
    with pytest.raises(BudgetError, match="CLASS=NUMBER"):
        parse_class_values("cat=cheap", classes, "--class-price")


def test_bad_problem_inputs() -> None:
    curves = random_curves(2, np.random.default_rng(0), (10, 100))
    tiers = (Tier("a", 0.1, 0.1),)
    with pytest.raises(BudgetError, match="positive"):
        BudgetProblem(curves, tiers, 10.0, price_multipliers=(1.0, -2.0))
    with pytest.raises(BudgetError, match="smallest count the run measured"):
        BudgetProblem(curves, tiers, 10.0, available=(5, 100))
    with pytest.raises(BudgetError, match="positive amount"):
        BudgetProblem(curves, tiers, -5.0)
    with pytest.raises(BudgetError, match="given twice"):
        BudgetProblem(curves, (tiers[0], tiers[0]), 10.0)
    with pytest.raises(BudgetError, match="one per class"):
        BudgetProblem(curves, tiers, 10.0, weights=(1.0,))


# ------------------------------------------------------------------ the command


def fake_context(tmp_path: Path, k: int = 4) -> RunContext:
    curves = random_curves(k, np.random.default_rng(1), (50, 500))
    names = tuple(c.name for c in curves)
    return RunContext(tmp_path, names, curves, (500,) * k, {"config": RunConfig().to_dict()})


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--tier", "crowd:-1:0.2"], "positive price"),
        (["--tier", "crowd/0.04/0.2"], "does not parse"),
        (["--tier", "crowd:0.04:0.2", "--class-price", "kat=2"], "unknown class"),
        (["--tier", "crowd:0.04:0.2", "--weights", "nope=2"], "unknown class"),
        (["--tier", "crowd:0.04:0.2", "--available", "c0=12.5"], "whole number"),
        ([], "no labeling tier"),
    ],
)
def test_command_bad_input_exits_2_without_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.setattr(command, "load_context", lambda path: fake_context(tmp_path))
    assert run_command([str(tmp_path), "--budget", "100", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_command_budget_too_low_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(command, "load_context", lambda path: fake_context(tmp_path))
    assert run_command([str(tmp_path), "--budget", "1", "--tier", "crowd:0.04:0.2"]) == 2
    assert "give --budget 8.00 or more" in capsys.readouterr().err


def test_command_missing_run_dir_exits_2(tmp_path: Path, capsys) -> None:
    assert run_command([str(tmp_path / "nope"), "--budget", "1", "--tier", "crowd:0.04:0.2"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_command_text_json_and_chart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(command, "load_context", lambda path: fake_context(tmp_path))
    argv = [str(tmp_path), "--budget", "60", "--tier", "crowd:0.04:0.20", "--tier", "expert:0.15:0.02",
            "--target", "0.8", "--class-price", "c0=1.5", "--points", "6"]  # fmt: skip
    assert run_command(argv + ["--chart", str(tmp_path / "chart.json")]) == 0
    text = capsys.readouterr().out
    assert "Optimized plan" in text and "all crowd (cheapest)" in text and "Cost to reach 80.0%" in text
    assert json.loads((tmp_path / "chart.json").read_text())["layer"]
    assert run_command(argv + ["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["plan"]["cost"] <= 60 + 1e-9
    assert [s["strategy"] for s in payload["strategies"]][-1] == OPTIMIZED
    assert len(payload["strategies"]) == 5 and set(payload["cost_to_target"]) == {
        s["strategy"] for s in payload["strategies"]
    }
    assert payload["price_multipliers"][0] == 1.5
    assert {c["strategy"] for c in payload["curves"]} == set(payload["cost_to_target"])


def test_budget_chart(tmp_path: Path) -> None:
    ctx = fake_context(tmp_path)
    problem = BudgetProblem(ctx.curves, (Tier("crowd", 0.04, 0.2), Tier("expert", 0.15, 0.02)), 60.0)
    result = plan_budget(problem, target=0.8, points=5)
    chart = budget_chart(result.curves, 60.0)
    spec = chart.to_dict()
    assert len(spec["layer"]) == 2
    json.dumps(result_to_dict(result), allow_nan=False)


# ------------------------------------------------------------------ --simulate


def write_sim_run(path: Path, classes: tuple[str, ...], specs: list, accuracy: dict[str, np.ndarray]) -> None:
    """A finished run directory of custom replicas whose per-class accuracy is given per label."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps({"classes": list(classes), "config": RunConfig().to_dict()}))
    c, test = len(classes), 200
    counts = np.zeros((len(specs), c, c), dtype=np.int64)
    columns = ["replica", "experiment", "model", "noise_model", "noise_rate", "train_size", "repeat",
               "accuracy", "status", "class_sizes", "class_noise", "label"]  # fmt: skip
    with (path / "replicas.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for i, s in enumerate(specs):
            right = np.round(accuracy[s.label] * test).astype(int) + (i % 2)  # repeats differ a bit
            counts[i] = np.diag(right)
            for k in range(c):
                counts[i, k, (k + 1) % c] = test - right[k]
            writer.writerow(dict(
                replica=i, experiment="custom", model=s.model, noise_model=s.noise_model,
                noise_rate=s.noise_rate, train_size=s.train_size, repeat=s.repeat, accuracy=0.5,
                status="finished", class_sizes=";".join(map(str, s.class_sizes)),
                class_noise=";".join(map(str, s.class_noise)), label=s.label,
            ))  # fmt: skip
    np.savez(path / "confusion.npz", counts=counts)


def test_measured_vs_predicted_from_a_simulated_run(tmp_path: Path) -> None:
    ctx = fake_context(tmp_path)
    problem = BudgetProblem(ctx.curves, (Tier("crowd", 0.04, 0.2), Tier("expert", 0.15, 0.02)), 60.0)
    result = plan_budget(problem, points=4)
    plans = simulation_plans(result)
    specs = replica_specs(plans, problem, "small_cnn", repeats=2)
    truth = {label: group[0].acc for label, group in plans.items()}
    write_sim_run(tmp_path / "sim", ctx.classes, specs, truth)
    rows = compare_simulation(tmp_path / "sim", plans, ctx.classes)
    names = {name for r in rows for name in r["names"]}
    assert OPTIMIZED in names and "all crowd (cheapest)" in names
    for row in rows:
        assert row["replicas"] == 2
        assert abs(row["error"]) < 0.01  # measured within rounding + the 1/200 repeat jitter
        assert row["strategy"] == " = ".join(row["names"])
    # identical plans are one plan: each purchase appears once among the overall rows
    overall = [r for r in rows if r["class"] == "overall"]
    assert len(overall) == len(plans) and len({r["strategy"] for r in overall}) == len(plans)
    assert "measured vs predicted" in format_simulation(rows)
    assert "Verdict: " in format_simulation(rows)


def _overall(strategy: str, measured: float, sd: float | None, replicas: int = 4) -> dict:
    return {"strategy": strategy, "names": strategy.split(" = "), "class": "overall", "measured": measured,
            "measured_sd": sd, "replicas": replicas, "predicted": 0.9, "error": None}


@pytest.mark.parametrize("ours, sd, word", [
    (0.900, 0.004, "better than"),   # +3.0 points, se 0.28
    (0.872, 0.004, "same, within the spread"),  # +0.2 points
    (0.850, 0.004, "worse than"),    # -2.0 points
    (0.850, None, "too few to compare"),  # one replica: no spread
])  # fmt: skip
def test_simulation_verdict_compares_with_the_best_simple_strategy(ours: float, sd, word: str) -> None:
    from labelsim.analysis.budget.simulation import simulation_verdict

    rows = [_overall(OPTIMIZED, ours, sd), _overall("all crowd", 0.870, 0.004), _overall("all expert", 0.80, 0.004)]
    verdict = simulation_verdict(rows)
    assert word in verdict and "'all crowd'" in verdict  # the best simple strategy, not the worse one
    assert ("prefer 'all crowd'" in verdict) == (word == "worse than")


def test_simulation_verdict_names_a_simple_strategy_the_optimized_plan_is() -> None:
    from labelsim.analysis.budget.simulation import simulation_verdict

    rows = [_overall(f"{OPTIMIZED} = all crowd", 0.87, 0.004), _overall("all expert", 0.80, 0.004)]
    assert "is the simple strategy 'all crowd' itself" in simulation_verdict(rows)


def test_identical_strategies_are_listed_once_under_all_their_names() -> None:
    curves = tuple(power_law_curve(f"c{i}", 0.9, 1.0, 0.5, 0.3, (10, 1000)) for i in range(3))
    problem = BudgetProblem(curves, (Tier("crowd", 0.04, 0.2), Tier("expert", 0.15, 0.02)), 30.0)
    result = plan_budget(problem, points=2)
    table = format_strategies(result).splitlines()[2:]
    # balanced classes at equal prices: all crowd draws the same labels per class as equal per class
    crowd = [p for p in result.strategies if p.strategy != OPTIMIZED and p.counts[:, 1].sum() == 0]
    assert len(crowd) >= 2 and all(np.array_equal(crowd[0].counts, p.counts) for p in crowd)
    merged = " = ".join(p.strategy for p in crowd)
    assert sum(line.startswith(merged) for line in table) == 1
    assert len(table) == len({p.counts.tobytes() for p in result.strategies})


def test_simulate_wiring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    ctx = fake_context(tmp_path)
    monkeypatch.setattr(command, "load_context", lambda path: ctx)
    calls = []

    def fake_run_grid(config, out, *, resume=False, replicas=None, progress=True, grow=False):
        calls.append((config, Path(out), resume, replicas))
        truth = {}
        for s in replicas:
            n, eps = np.array(s.class_sizes, float), np.array(s.class_noise)
            truth[s.label] = np.array([c.accuracy(n[[k]], eps[[k]])[0] for k, c in enumerate(ctx.curves)])
        write_sim_run(Path(out), ctx.classes, replicas, truth)
        return Path(out)

    monkeypatch.setitem(sys.modules, "labelsim.sim.runner", types.SimpleNamespace(run_grid=fake_run_grid))
    argv = [str(tmp_path), "--budget", "60", "--tier", "crowd:0.04:0.20", "--tier", "expert:0.15:0.02",
            "--points", "4", "--simulate", "--repeats", "3"]  # fmt: skip
    assert run_command(argv) == 0
    config, out, resume, specs = calls[0]
    assert out == tmp_path / SIMULATION_DIR and not resume
    assert isinstance(config, RunConfig)
    labels = {s.label for s in specs}
    assert OPTIMIZED in labels and len(specs) == 3 * len(labels)
    for s in specs:
        assert s.experiment == "custom" and s.noise_model == "shuffle" and s.model == "small_cnn"
        assert s.train_size == sum(s.class_sizes) and max(s.class_sizes) <= 500
        assert s.noise_rate == pytest.approx(np.dot(s.class_sizes, s.class_noise) / s.train_size)
    assert "Simulation: measured vs predicted" in capsys.readouterr().out
    assert run_command(argv) == 2  # the folder now holds a run
    assert "--resume" in capsys.readouterr().err


# ------------------------------------------------------------------ curves from fits


def test_curves_from_fits_uses_the_fit_api() -> None:
    from labelsim.analysis.fits import JointFit, NoiseFit, RunFits, VolumeFit

    nan2 = (np.nan, np.nan)
    volume = VolumeFit("power", 0.9, 2.0, 0.8, nan2, nan2, nan2, 0.0, "", np.nan, n_range=(50.0, 500.0))
    noise = NoiseFit(0.9, -0.1, nan2, 1.0, True, 10)  # a rising line is floored at slope 0
    rng = np.random.default_rng(0)
    samples = {
        "volume": {"x": np.column_stack([0.9 + rng.normal(0, 0.01, 50), np.full(50, 2.0), np.full(50, 0.8)])},
        "noise": {"x": np.column_stack([np.full(50, 0.9), rng.normal(0.2, 0.02, 50)])},
        "joint": {},
    }
    fits = RunFits(("x",), {"x": noise}, {"x": volume}, None, None, None, samples)
    (curve,) = curves_from_fits(fits, noise_max=0.3)
    assert curve.n_range == (50.0, 500.0)
    n, eps = np.array([100.0, 100.0]), np.array([0.0, 0.3])
    acc = curve.accuracy(n, eps)
    assert acc[0] == pytest.approx(0.9 - 2.0 * 100**-0.8) and acc[1] == acc[0]
    assert curve.samples(n, eps).shape == (50, 2)
    joint = JointFit("interaction", 0.9, 2.0, 0.8, 0.3, -1.0, *(nan2,) * 5, n_ref=500.0, aic=0.0,
                     alt_form="additive", alt_aic=0.0, n_points=10)  # fmt: skip
    fits = RunFits(("x",), {"x": noise}, {"x": volume}, {"x": joint}, None, None, samples)
    (curve,) = curves_from_fits(fits)
    small = curve.accuracy(np.array([50.0, 50.0]), np.array([0.0, 0.3]))
    assert small[1] <= small[0]  # the joint slope, negative at small n, is floored at 0
    with pytest.raises(BudgetError, match="lack a noise or volume fit"):
        curves_from_fits(RunFits(("x", "y"), {"x": noise}, {"x": volume}, None, None, None, samples))


def test_end_to_end_on_a_fake_run(tmp_path: Path, capsys) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_run import write_fake_run

    write_fake_run(tmp_path / "run", repeats=2)
    argv = [str(tmp_path / "run"), "--budget", "40", "--tier", "crowd:0.04:0.20",
            "--tier", "expert:0.15:0.02", "--points", "4", "--json"]  # fmt: skip
    assert run_command(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["plan"]["cost"] <= 40 + 1e-9
    assert all(row["total"] <= 200 for row in payload["plan"]["classes"])  # 2000 images / 10 classes
    assert payload["plan"]["overall"]["ci"][0] is not None


def test_tier_noise_is_read_as_a_wrong_label_fraction() -> None:
    from types import SimpleNamespace

    from labelsim.analysis.budget.context import _rescaled, wrong_label_scale

    rows = [
        SimpleNamespace(is_custom=False, noise_rate=0.3, realized_noise=0.27),
        SimpleNamespace(is_custom=False, noise_rate=0.1, realized_noise=0.09),
        SimpleNamespace(is_custom=False, noise_rate=0.0, realized_noise=0.0),
    ]
    run = SimpleNamespace(finished=lambda: rows)
    scale = wrong_label_scale(run)
    assert scale == pytest.approx(0.4 / 0.36)
    seen = _rescaled(lambda n, eps: eps, scale)(np.array([1.0]), np.array([0.18]))
    np.testing.assert_allclose(seen, [0.2])
    assert wrong_label_scale(SimpleNamespace(finished=lambda: rows[2:])) == 1.0
