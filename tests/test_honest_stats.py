"""Honest statistics: proportion intervals stay in [0, 1] and say what they cover, every table
says how many repeats stand behind a figure, claims need evidence (repeats, separated intervals,
enough levels, bounded intervals), and 'size to 95%' has one meaning that the ranking shares."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fake_run import Truth, study_truth, write_fake_run
from labelsim.analysis import analyze_run
from labelsim.analysis.derived import NEED_FRACTION, impact, standout
from labelsim.analysis.fits import RunFits, fit_noise, fit_volume
from labelsim.analysis.metrics import (
    WILSON,
    WILSON_TEST_ONLY,
    Spread,
    firm_movers,
    proportion_spread,
    rank_range,
    spread,
)
from labelsim.analysis.text import fmt_ci
from labelsim.commands import analyze

N_BOOT = "40"


def _analyze(run: Path, out: Path, capsys) -> str:
    parser = argparse.ArgumentParser()
    analyze.add_arguments(parser)
    assert analyze.run(parser.parse_args([str(run), "--out", str(out), "--n-boot", N_BOOT])) == 0
    return capsys.readouterr().out


def _read(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(start))


# ---------------------------------------------------------------- 1. intervals of proportions


def test_wilson_matches_the_published_value_for_one_repeat() -> None:
    s = proportion_spread(np.array([81]), np.array([263]))  # Newcombe (1998): 0.2553-0.3662
    assert (float(s.lo), float(s.hi)) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert s.n == 1 and s.method == WILSON_TEST_ONLY and math.isnan(float(s.std))


def test_proportion_intervals_stay_in_range_where_a_t_interval_does_not() -> None:
    k, m = np.array([[10, 100], [99, 100]]), np.array([[100, 100], [100, 100]])
    s = proportion_spread(k, m)  # two repeats far apart, and a class always right
    assert np.all(s.lo >= 0) and np.all(s.hi <= 1) and np.all(s.lo <= s.mean)
    assert np.all(s.mean <= s.hi) and s.method == WILSON
    t = spread(k / m)
    assert float(t.hi[0]) > 1 and float(t.lo[0]) < 0  # the t-interval leaves [0, 1] here
    assert float(s.hi[1]) == 1.0 and float(s.lo[1]) < 1.0  # all correct: not a zero-width claim


def test_interval_grows_with_the_spread_between_repeats_and_shrinks_with_test_images() -> None:
    steady = proportion_spread(np.array([80, 80, 80]), np.array([100, 100, 100]))
    shaky = proportion_spread(np.array([70, 80, 90]), np.array([100, 100, 100]))
    bigger = proportion_spread(np.array([800, 800, 800]), np.array([1000, 1000, 1000]))
    width = lambda s: float(s.hi - s.lo)  # noqa: E731
    assert float(steady.mean) == pytest.approx(0.8) and float(shaky.mean) == pytest.approx(0.8)
    assert width(shaky) > 1.5 * width(steady)
    assert width(bigger) < 0.5 * width(steady)


@pytest.mark.parametrize("repeats", [2, 3, 5])
def test_interval_covers_the_true_accuracy_about_95_percent(repeats: int) -> None:
    """Every repeat is scored on the same test set (drawn once), and training adds its own
    spread around that set's accuracy; the target is the accuracy on the whole population."""
    rng = np.random.default_rng(repeats)
    truth, sd, tests = 0.85, 0.03, 200
    hits = []
    for _ in range(800):
        on_this_set = rng.binomial(tests, truth) / tests
        p = np.clip(on_this_set + rng.normal(0, sd, repeats), 0, 1)
        s = proportion_spread(np.round(p * tests), np.full(repeats, tests))
        hits.append(float(s.lo) <= truth <= float(s.hi))
    assert 0.92 <= np.mean(hits) <= 0.985


@pytest.fixture(scope="module")
def one_repeat(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("one") / "run"
    write_fake_run(path, repeats=1, test_per_class=100)
    return path


@pytest.fixture(scope="module")
def many_repeats(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("many") / "run"
    write_fake_run(path, repeats=4, test_per_class=4000, jitter=0.003, seed=3)
    return path


@pytest.mark.parametrize("which", ["one_repeat", "many_repeats"])
def test_class_metrics_intervals_are_proportions_with_their_repeats(which: str, request,
                                                                    tmp_path: Path,
                                                                    capsys) -> None:
    run = request.getfixturevalue(which)
    _analyze(run, tmp_path, capsys)
    header, rows = _read(tmp_path / "class_metrics.csv")
    assert {"repeats", "test_images", "interval"} <= set(header)
    expected = {"one_repeat": (1, WILSON_TEST_ONLY), "many_repeats": (4, WILSON)}[which]
    for row in rows:
        assert (int(row["repeats"]), row["interval"]) == expected
        for name in ("accuracy", "tpr", "fnr", "fpr", "tnr"):
            lo, mid, hi = (float(row[f"{name}{end}"]) for end in ("_lo", "", "_hi"))
            assert 0.0 <= lo <= mid <= hi <= 1.0, (name, row)
    _, overall = _read(tmp_path / "overall.csv")
    assert all(0 <= float(r["accuracy_lo"]) <= float(r["accuracy_hi"]) <= 1 for r in overall)


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("complete") / "run"
    write_fake_run(path, noise_levels=(0.0, 0.3), sizes=(5000, 20000, 50000), full_size=50000,
                   cross=True, noise_models=("shuffle", "human-worse"), diverged=(3,))
    return path


def test_every_table_says_how_many_repeats_stand_behind_its_figures(complete: Path) -> None:
    tables = analyze.table_files(analyze_run(complete, n_boot=int(N_BOOT)))
    per_replica = {"excluded.csv"}  # one row per replica: its repeat number
    for name, table in tables.items():
        if name in per_replica:
            assert "repeat" in table.columns
            continue
        counted = [c for c in table.columns if c.endswith("repeats") or c == "replicas"]
        assert counted, f"{name} does not say how many repeats stand behind it"
        assert all(row.get(counted[0]) for row in table.rows), name


# ---------------------------------------------------------------- 2. claims gated by evidence


def test_one_repeat_names_no_most_sensitive_class_and_no_rank_moves(one_repeat: Path,
                                                                   tmp_path: Path,
                                                                   capsys) -> None:
    an = analyze_run(one_repeat, n_boot=int(N_BOOT))
    s = an.sensitivity
    assert s["noise_order"] and s["volume_order"]  # the fits exist ...
    assert s["most_noise_sensitive"] == [] and s["most_volume_sensitive"] == []  # ... no claim
    text = _analyze(one_repeat, tmp_path, capsys)
    for start in ("most noise-sensitive", "most volume-hungry"):
        line = _line(text, start)
        assert "no class stands out" in line and "repeat" in line
    assert "rank moves not assessed" in text and "largest rank moves" not in text


def test_separated_intervals_name_the_top_class(many_repeats: Path) -> None:
    s = analyze_run(many_repeats, n_boot=int(N_BOOT)).sensitivity
    rows = {r["class"]: r for r in s["rows"]}
    assert s["most_noise_sensitive"] == ["bird"]  # true slope 0.48, next 0.33
    others = [r["slope_hi"] for c, r in rows.items() if c != "bird"]
    assert rows["bird"]["slope_lo"] > max(others)
    assert s["noise_claim"].startswith("bird")


def _condition(means: list[float], half: float) -> SimpleNamespace:
    mean = np.array(means)
    return SimpleNamespace(accuracy=Spread(mean, mean * 0, mean - half, mean + half, 3))


def test_a_rank_move_counts_only_beyond_the_intervals() -> None:
    base = _condition([0.5, 0.7, 0.9], 0.05)
    np.testing.assert_array_equal(rank_range(base.accuracy)[0], [1, 2, 3])
    swapped = _condition([0.95, 0.7, 0.6], 0.05)  # a and c trade places, clearly
    assert firm_movers([("base", base), ("x", swapped)], ("a", "b", "c")) == ["a", "c"]
    vague = _condition([0.95, 0.7, 0.6], 0.5)  # the same means, intervals overlapping
    lo, hi = rank_range(vague.accuracy)
    assert list(lo) == [1, 1, 1] and list(hi) == [3, 3, 3]
    assert firm_movers([("base", base), ("x", vague)], ("a", "b", "c")) == []


def _rows(values: dict[str, tuple[float, float, float]]) -> list[dict]:
    rows = [{"class": c, "x": v, "x_lo": lo, "x_hi": hi} for c, (v, lo, hi) in values.items()]
    return sorted(rows, key=lambda r: -r["x"])


def test_standout_needs_repeats_and_separation() -> None:
    apart = _rows({"a": (0.5, 0.45, 0.55), "b": (0.3, 0.25, 0.35), "c": (0.2, 0.1, 0.3)})
    assert standout(apart, "x", 2, "largest").classes == ("a",)
    thin = standout(apart, "x", 1, "largest")
    assert thin.classes == () and "no class stands out" in thin.text and "repeat" in thin.text
    overlap = _rows({"a": (0.5, 0.2, 0.8), "b": (0.3, 0.25, 0.35), "c": (0.2, 0.1, 0.3)})
    none = standout(overlap, "x", 3, "largest")
    assert none.classes == () and "every class's 95% interval overlaps a's" in none.text
    group = _rows({"a": (0.5, 0.4, 0.6), "b": (0.45, 0.35, 0.5), "c": (0.2, 0.1, 0.3)})
    assert standout(group, "x", 3, "largest").classes == ("a", "b")
    missing = _rows({"a": (0.5, math.nan, math.nan), "b": (0.3, 0.25, 0.35)})
    assert standout(missing, "x", 3, "largest").classes == ()


def test_two_noise_levels_give_a_slope_but_no_line_fit() -> None:
    x = np.repeat([0.0, 0.4], 3)
    fit, _ = fit_noise(x, 0.9 - 0.3 * x + np.array([0.01, -0.01, 0, 0.01, -0.01, 0]))
    assert fit.slope == pytest.approx(0.3) and fit.levels == 2 and fit.repeats == 3
    assert math.isnan(fit.r2) and fit.linear_ok is None
    assert "not enough levels to fit" in fit.note
    three, _ = fit_noise(np.repeat([0.0, 0.2, 0.4], 2), 0.9 - 0.3 * np.repeat([0.0, 0.2, 0.4], 2))
    assert three.linear_ok is True and three.r2 == pytest.approx(1.0)


def test_a_two_level_run_prints_not_enough_levels_never_r2_ok(tmp_path: Path, capsys) -> None:
    write_fake_run(tmp_path / "run", noise_levels=(0.0, 0.4), sizes=(500, 2000), repeats=2)
    text = _analyze(tmp_path / "run", tmp_path / "t", capsys)
    assert "not enough levels to fit a line: 2 noise levels" in text
    assert "volume fit: not enough levels to fit" in text and "2 training sizes" in text
    assert "R2 1.00" not in text
    _, rows = _read(tmp_path / "t" / "per_class.csv")
    assert all(r["r2"] == "" and r["linear_ok"] == "" for r in rows)
    assert all(r["images_per_class_to_95pct_full"] == "" for r in rows)  # no curve, no size
    summary = [line for line in text.splitlines() if line.startswith(("cat ", "bird "))]
    assert summary and all("too few levels" in line and " ok" not in line for line in summary)


def _impact_fits(volume_accuracy: np.ndarray) -> RunFits:
    rng = np.random.default_rng(0)
    n = np.repeat([50.0, 100.0, 200.0], 3)
    vf, vs = fit_volume(n, volume_accuracy, n_boot=200, rng=np.random.default_rng(1))
    x = np.repeat([0.0, 0.2, 0.4], 3)
    nf, ns = fit_noise(x, 0.8 - 0.3 * x + rng.normal(0, 0.01, len(x)), n_boot=200)
    return RunFits(("x",), {"x": nf}, {"x": vf}, None, None, None,
                   {"noise": {"x": ns}, "volume": {"x": vs}})


def test_impact_interval_is_unbounded_when_the_volume_loss_may_be_zero() -> None:
    rng = np.random.default_rng(2)
    n = np.repeat([50.0, 100.0, 200.0], 3)
    flat = _impact_fits(0.8 + rng.normal(0, 0.02, len(n)))
    assert np.mean(flat.samples["volume"]["x"][:, 1] == 0) > 0.05  # flat curves among samples
    found = impact(flat, "x")
    assert (found.lo, found.hi) == (-math.inf, math.inf)
    assert found.note.startswith("unbounded") and "not distinguishable from 0" in found.note
    text = fmt_ci(found.lo, found.hi, ".2f", found.note)
    assert "unbounded" in text and "inf" not in text.replace("unbounded", "")
    steep = impact(_impact_fits(0.95 - 2.0 * n ** -0.6 + rng.normal(0, 0.002, len(n))), "x")
    assert math.isfinite(steep.lo) and math.isfinite(steep.hi) and steep.note == ""
    assert steep.lo <= steep.value <= steep.hi


def test_an_unbounded_impact_is_printed_with_its_reason(tmp_path: Path, capsys) -> None:
    t = study_truth(200.0)
    flat = Truth(t.classes, t.a - t.b * 200.0 ** (-t.c), np.zeros(len(t.a)), t.c, t.s, 200.0)
    write_fake_run(tmp_path / "run", truth=flat, repeats=3, test_per_class=300, seed=2)
    text = _analyze(tmp_path / "run", tmp_path / "t", capsys)
    line = _line(text, "impact index")
    assert "unbounded" in line and "not distinguishable from 0" in line and "inf" not in line
    _, rows = _read(tmp_path / "t" / "impact.csv")
    overall = next(r for r in rows if r["class"] == "overall")
    assert (overall["impact_lo"], overall["impact_hi"]) == ("-inf", "inf")
    assert overall["note"].startswith("unbounded")


# ---------------------------------------------------------------- 3. one definition per word


def test_size_to_95_means_one_thing_and_the_ranking_sorts_the_table(many_repeats: Path,
                                                                     tmp_path: Path,
                                                                     capsys) -> None:
    an = analyze_run(many_repeats, n_boot=int(N_BOOT))
    text = _analyze(many_repeats, tmp_path, capsys)
    _, per_class = _read(tmp_path / "per_class.csv")
    table = {r["class"]: float(r["images_per_class_to_95pct_full"]) for r in per_class}
    by_table = sorted(table, key=lambda c: -table[c])
    assert an.sensitivity["volume_order"] == by_table
    claimed = an.sensitivity["most_volume_sensitive"]
    if claimed:
        assert claimed[0] == by_table[0]
    _, sens = _read(tmp_path / "sensitivity.csv")
    assert {r["class"]: float(r["need"]) for r in sens} == pytest.approx(table)
    assert {r["need_target"] for r in sens} == {"95% of full-data accuracy"}
    _, sizes = _read(tmp_path / "sizes_needed.csv")
    assert {r["of"] for r in sizes} == {"full-data accuracy"}
    at95 = {r["class"]: float(r["per_class"]) for r in sizes if float(r["fraction"]) == 0.95}
    assert {c: at95[c] for c in table} == pytest.approx(table)
    for cls, need in table.items():  # the definition itself
        fit = an.fits.volume[cls]
        assert float(fit.predict(need)) == pytest.approx(NEED_FRACTION * fit.full_accuracy)
        assert need <= fit.n_range[1]  # never beyond the measured sizes
    assert "of asymptote" not in text
    assert "95% of full-data accuracy" in _line(text, "most volume-hungry")
