"""Every model x noise model side by side on the realized-noise axis, human vs synthetic noise,
the reference study beside CIFAR-10 runs, and honest display of sizes outside the data."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest

from fake_run import CLASSES, HUMAN_DISAGREEMENT, Truth, write_fake_run
from labelsim.analysis import analyze_run, fit_run, load_run, size_cell
from labelsim.analysis import compare, reference
from labelsim.analysis.derived import BELOW, BEYOND, WITHIN, measured_range
from labelsim.analysis.metrics import all_point_metrics
from labelsim.commands import analyze

SYNTHETIC_SLOPES = np.array([0.20, 0.15, 0.50, 0.35, 0.20, 0.30, 0.05, 0.20, 0.10, 0.05])
HUMAN_SLOPES = SYNTHETIC_SLOPES * np.where(np.isin(CLASSES, ("cat", "dog")), 2.0, 1.0)
NOISE_MODELS = ("shuffle", "symmetric", "human-worse")
MODELS = ("small_cnn", "resnet18")


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> tuple[Path, Truth]:
    path = tmp_path_factory.mktemp("multi") / "run"
    truth = write_fake_run(
        path, noise_levels=(0.0, 0.5, 1.0), sizes=(2000,), repeats=3, test_per_class=1000,
        jitter=0.004, noise_models=NOISE_MODELS, models=MODELS,
        model_effects={"resnet18": (-0.03, 1.5)},
        realized_slopes={"shuffle": SYNTHETIC_SLOPES, "symmetric": SYNTHETIC_SLOPES,
                         "human-worse": HUMAN_SLOPES})
    return path, truth


@pytest.fixture(scope="module")
def comp(multi) -> compare.Comparison:
    run = load_run(multi[0])
    return compare.compare_run(run, all_point_metrics(run), n_boot=60)


def test_every_model_and_noise_model_is_fitted(comp: compare.Comparison) -> None:
    assert comp.models == MODELS and comp.noise_models == NOISE_MODELS
    assert len(comp.combos) == 6 and comp.side_by_side
    assert comp.human_models == ("human-worse",)
    assert comp.synthetic_models == ("shuffle", "symmetric")
    assert set(comp.baselines) == set(MODELS)


def test_known_slopes_are_recovered_per_model_and_noise_model(multi, comp) -> None:
    _, truth = multi
    inside = []
    for combo in comp.combos:
        true = truth.realized_slope(combo.model, combo.noise_model)
        fitted = np.array([combo.noise[c].slope for c in CLASSES])
        np.testing.assert_allclose(fitted, true, atol=0.09, err_msg=str(combo.noise_model))
        inside += [combo.noise[c].slope_ci[0] <= s <= combo.noise[c].slope_ci[1]
                   for c, s in zip(CLASSES, true)]
    assert np.mean(inside) >= 0.8


def test_slopes_are_fitted_against_the_realized_rate(multi, comp) -> None:
    path, truth = multi
    shuffle = comp.combo("small_cnn", "shuffle")
    human = comp.combo("small_cnn", "human-worse")
    assert [lv.realized for lv in shuffle.levels] == pytest.approx([0.0, 0.45, 0.9])
    assert [lv.realized for lv in human.levels] == pytest.approx(
        [0.0, 0.5 * HUMAN_DISAGREEMENT["worse"], HUMAN_DISAGREEMENT["worse"]], abs=1e-6)
    # the same loss per wrong label: shuffle and symmetric agree on the realized axis ...
    sym = comp.combo("small_cnn", "symmetric")
    assert shuffle.overall.slope == pytest.approx(sym.overall.slope, rel=0.1)
    # ... while against the requested rate shuffle looks (1 - 1/C) = 0.9 times milder
    requested = fit_run(load_run(path), "small_cnn", "shuffle", n_boot=20).overall_noise
    assert requested.slope == pytest.approx(0.9 * shuffle.overall.slope, rel=0.03)
    ratios = {r["noise_model"]: r["ratio"] for r in compare.realized_rows(comp)}
    assert ratios["shuffle"] == pytest.approx(0.9) and ratios["symmetric"] == pytest.approx(1.0)


def test_human_vs_synthetic_finds_the_classes_humans_hurt_more(comp) -> None:
    rows = [r for r in compare.human_vs_synthetic_rows(comp)
            if r["model"] == "small_cnn" and r["synthetic"] == "symmetric"]
    verdicts = {r["class"]: r["verdict"] for r in rows}
    assert verdicts["cat"] == verdicts["dog"] == "synthetic under-predicts"
    assert sum(v == "consistent" for c, v in verdicts.items() if c not in ("cat", "dog",
                                                                          "overall")) >= 6
    cat = next(r for r in rows if r["class"] == "cat")
    assert cat["diff_lo"] <= 0.35 <= cat["diff_hi"]  # true difference 0.70 - 0.35
    agreement = compare.agreement_rows(comp)
    assert len(agreement) == 4  # 2 models x 1 human x 2 synthetic
    assert all(r["spearman"] > 0.7 and r["under_predicted"] >= 2 for r in agreement)
    assert agreement[0]["common_realized_max"] == pytest.approx(HUMAN_DISAGREEMENT["worse"])


def test_realized_transitions_are_row_normalised_per_noise_model(comp) -> None:
    rows = compare.transition_rows(comp)
    assert {r["noise_model"] for r in rows} == set(NOISE_MODELS)
    share = {(r["noise_model"], r["true"], r["given"]): r["share"] for r in rows}
    for nm in NOISE_MODELS:
        for true in CLASSES:
            assert sum(share[(nm, true, g)] for g in CLASSES) == pytest.approx(1.0)
    human = [f"{r['true']}->{r['given']}" for r in rows
             if r["noise_model"] == "human-worse" and not r["diagonal"]]
    top = max(human, key=lambda p: share[("human-worse", *p.split("->"))])
    assert top in ("cat->dog", "dog->cat")  # the fake annotators' favourite confusion
    lines = compare.top_transitions(comp)
    assert any(line.startswith("symmetric: spread evenly") for line in lines)


def test_levels_without_a_realized_rate_are_left_out(tmp_path: Path) -> None:
    write_fake_run(tmp_path, noise_levels=(0.0, 0.2, 0.4), sizes=(2000,),
                   noise_models=("shuffle", "symmetric"))
    rows = list(csv.DictReader((tmp_path / "replicas.csv").open()))
    for row in rows:
        if row["noise_model"] == "symmetric" and row["noise_rate"] == "0.4":
            row["realized_noise"] = ""
    with (tmp_path / "replicas.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run = load_run(tmp_path)
    combo = compare.fit_combination(run, "small_cnn", "symmetric", n_boot=20)
    assert combo.dropped_levels == (0.4,)
    assert [lv.requested for lv in combo.levels] == [0.0, 0.2]
    assert "left out" in compare.realized_summary(
        compare.compare_run(run, all_point_metrics(run), n_boot=20))[1]


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    analyze.add_arguments(parser)
    return parser.parse_args(argv)


def test_analyze_prints_and_writes_the_comparison(multi, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tables"
    assert analyze.run(_args([str(multi[0]), "--out", str(out), "--n-boot", "30"])) == 0
    text = capsys.readouterr().out
    assert "REALIZED noise" in text and "human-worse [CI]" in text
    assert "Does synthetic noise predict what real annotators do?" in text
    assert "shuffle: 50% -> 45.0%, 100% -> 90.0%" in text
    for name in ("compare_slopes.csv", "compare_realized.csv", "human_vs_synthetic.csv",
                 "human_agreement.csv", "transitions.csv"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "compare_slopes.csv").open()))
    assert len(rows) == 6 * (len(CLASSES) + 1)
    assert not (out / "reference.csv").exists()  # not a CIFAR-10 run


# ---------------------------------------------------------------- reference study


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cifar") / "run"
    write_fake_run(path, noise_levels=(0.0, 0.3), sizes=(5000, 50000), full_size=50000,
                   repeats=2, dataset="cifar10", test_per_class=1000, jitter=0.003)
    return path


def test_reference_figures_are_the_studys() -> None:
    base = reference.PER_CLASS_X1000["baseline"]
    assert set(base) == set(CLASSES) and base["cat"] == 706 and base["automobile"] == 966
    assert reference.PER_CLASS_X1000["noise_30pct"]["bird"] == 744
    assert reference.PER_CLASS_X1000["volume_5k"]["frog"] == 914
    assert "Data Day Austin, 2020-01-25" in reference.SOURCE


def test_cifar10_run_is_set_beside_the_reference(cifar: Path) -> None:
    run = load_run(cifar)
    refs = reference.compare_models(run, all_point_metrics(run))
    assert len(refs) == 1 and refs[0].usable and not refs[0].missing
    ref = refs[0]
    assert set(ref.found) == {"baseline", "noise_30pct", "volume_5k"}
    rows = reference.reference_rows(run, ref)
    cat = next(r for r in rows if r["class"] == "cat")
    assert cat["baseline_study"] == 706 and abs(cat["baseline_diff"]) < 40  # fake follows study
    agree = {r["compared"]: r for r in reference.agreement_rows(run, ref)}
    assert agree["accuracy, baseline (clean, 50k)"]["spearman"] > 0.9
    assert agree["drop from baseline, 30% noise (shuffle, 50k)"]["classes"] == 10
    assert reference.overall_row(ref)["study"] == pytest.approx(0.8894)


def test_missing_reference_points_are_named(tmp_path: Path) -> None:
    write_fake_run(tmp_path, noise_levels=(0.0, 0.2), sizes=(1000, 2000), dataset="cifar10")
    run = load_run(tmp_path)
    (ref,) = reference.compare_models(run, all_point_metrics(run))
    assert not ref.usable and len(ref.missing) == 3
    assert "baseline (clean, 50k)" in ref.missing[0] and "full size is 2,000" in ref.missing[0]
    an = analyze_run(tmp_path, n_boot=10)
    assert "missing: 5k (clean)" in analyze.render_reference(an)


def test_other_datasets_get_no_reference(tmp_path: Path) -> None:
    write_fake_run(tmp_path)
    run = load_run(tmp_path)
    assert not reference.applies(run) and reference.compare_models(run, []) == []


# ---------------------------------------------------------------- honest sizes


def test_sizes_outside_the_data_are_not_shown_as_numbers() -> None:
    assert measured_range(0.0, (50.0, 200.0)) == BELOW
    assert measured_range(120.0, (50.0, 200.0)) == WITHIN
    assert measured_range(float("inf"), (50.0, 200.0)) == BEYOND
    row = {"n": 0.0, "n_lo": 0.0, "n_hi": 335.0}
    assert size_cell(row, "n", 500.0) == "<500 (below smallest size)"
    row = {"n": 0.0, "n_lo": 0.0, "n_hi": 1514.0}
    assert size_cell(row, "n", 500.0) == "<500 [<500, 1514]"
    row = {"n": 882.0, "n_lo": 806.0, "n_hi": 1111.0}
    assert size_cell(row, "n", 500.0) == "882 [806, 1111]"
