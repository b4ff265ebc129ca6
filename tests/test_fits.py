"""Curve fits recover known parameters inside their intervals; the run-level API works."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fake_run import write_fake_run
from labelsim.analysis import RunFits, fit_run, impact_index, sensitivity, size_needed
from labelsim.analysis.fits import (
    NoiseFit,
    VolumeFit,
    fit_joint,
    fit_noise,
    fit_volume,
    fits_to_json,
    joint_curve,
    volume_curve,
)

LEVELS = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
SIZES = np.array([50, 100, 200, 400, 800, 1600])


def _noise_data(repeats: int, seed: int, curve=lambda x: 0.9 - 0.3 * x, sd: float = 0.01):
    rng = np.random.default_rng(seed)
    x = np.repeat(LEVELS, repeats)
    return x, curve(x) + rng.normal(0, sd, len(x))


def _volume_data(form: str, params, repeats: int, seed: int, sd: float = 0.01):
    rng = np.random.default_rng(seed)
    n = np.repeat(SIZES, repeats).astype(float)
    return n, volume_curve(form, n, *params) + rng.normal(0, sd, len(n))


def _width(ci: tuple[float, float]) -> float:
    return ci[1] - ci[0]


def _inside(value: float, ci: tuple[float, float]) -> bool:
    return ci[0] <= value <= ci[1]


def test_noise_interval_covers_the_true_slope_about_95_percent() -> None:
    fits = [fit_noise(*_noise_data(3, seed), n_boot=200)[0] for seed in range(200)]
    coverage = np.mean([_inside(0.3, f.slope_ci) for f in fits])
    assert 0.85 <= coverage <= 0.99


def test_noise_fit_recovers_slope_and_interval_shrinks() -> None:
    few, _ = fit_noise(*_noise_data(3, 0), n_boot=300)
    many, samples = fit_noise(*_noise_data(20, 0), n_boot=300)
    assert _inside(0.3, many.slope_ci)
    assert many.intercept == pytest.approx(0.9, abs=0.01)
    assert _width(many.slope_ci) < 0.6 * _width(few.slope_ci)
    assert many.linear_ok and many.r2 > 0.99 and many.n_points == 100
    assert samples.shape == (300, 2)
    assert float(many.predict(0.2)) == pytest.approx(many.intercept - 0.2 * many.slope)


def test_straight_line_on_curved_data_is_flagged() -> None:
    fit, _ = fit_noise(*_noise_data(3, 1, curve=lambda x: 0.9 - 2.0 * x**2), n_boot=100)
    assert not fit.linear_ok and fit.curvature_p < 0.01


def test_noise_fit_needs_two_levels_and_repeats_for_intervals() -> None:
    from labelsim.analysis import FitError

    with pytest.raises(FitError):
        fit_noise(np.zeros(4), np.ones(4))
    single, samples = fit_noise(LEVELS, 0.9 - 0.3 * LEVELS)
    assert single.slope == pytest.approx(0.3) and math.isnan(single.slope_ci[0])
    assert len(samples) == 0  # one repeat per level: nothing to resample


@pytest.mark.parametrize("form,params", [("power", (0.9, 2.0, 0.6)), ("exp", (0.9, 0.5, 300.0))])
def test_volume_fit_recovers_parameters_and_intervals_shrink(form: str, params) -> None:
    many, samples = fit_volume(*_volume_data(form, params, 20, 2), n_boot=300)
    assert many.form == form and samples.shape[1] == 3
    assert _inside(params[0], many.a_ci) and _inside(params[2], many.c_ci)
    assert _inside(params[1], many.b_ci)
    for name in ("a_ci", "c_ci"):  # mean widths over a few data sets: 3 vs 20 repeats
        few = np.mean([_width(getattr(fit_volume(*_volume_data(form, params, 3, s), n_boot=200)[0],
                                      name)) for s in range(4)])
        lots = np.mean([_width(getattr(fit_volume(*_volume_data(form, params, 20, s),
                                                  n_boot=200)[0], name)) for s in range(4)])
        assert lots < 0.75 * few
    assert many.size_unit == "per_class" and many.n_range == (50.0, 1600.0)
    np.testing.assert_allclose(many.predict(SIZES), volume_curve(form, SIZES, *params), atol=0.01)


@pytest.mark.parametrize("form,params,alt", [("power", (0.92, 3.0, 0.7), "exp"),
                                             ("exp", (0.92, 0.6, 250.0), "power")])
def test_aic_picks_the_true_form_on_clean_data(form: str, params, alt: str) -> None:
    fit, _ = fit_volume(*_volume_data(form, params, 2, 3, sd=1e-4), n_boot=20)
    assert fit.form == form and fit.alt_form == alt and fit.aic < fit.alt_aic - 10


def test_volume_fit_is_robust_to_flat_and_noisy_data_and_refuses_two_sizes() -> None:
    from labelsim.analysis import FitError

    rng = np.random.default_rng(4)
    n = np.repeat(SIZES, 2).astype(float)
    flat, _ = fit_volume(n, 0.8 + rng.normal(0, 0.02, len(n)), n_boot=50)
    assert 0.7 < flat.a <= 1.0 and flat.b >= 0 and flat.c > 0
    falling, _ = fit_volume(n, 0.9 - n / 1e4, n_boot=50)  # wrong direction: still a fit
    assert np.all(np.isfinite([falling.a, falling.b, falling.c]))
    with_nan = np.where(np.arange(len(n)) == 3, np.nan, 0.9 - 2 * n ** -0.6)
    assert fit_volume(n, with_nan, n_boot=20)[0].n_points == len(n) - 1
    with pytest.raises(FitError, match="not enough levels to fit"):
        fit_volume(np.repeat([100.0, 400.0], 3), np.repeat([0.7, 0.8], 3), n_boot=50)


def test_size_for_inverts_predict_and_size_needed_has_interval() -> None:
    fit, samples = fit_volume(*_volume_data("power", (0.9, 2.0, 0.6), 5, 5), n_boot=200)
    target = float(fit.predict(300.0))
    assert float(fit.size_for(target)) == pytest.approx(300.0, rel=1e-6)
    assert math.isinf(float(fit.size_for(fit.a + 0.01)))
    n95, lo, hi = size_needed(fit, samples, 0.95)
    assert lo <= n95 <= hi <= fit.n_range[1]  # reached no later than the largest size
    assert float(fit.predict(n95)) == pytest.approx(0.95 * fit.full_accuracy)


def test_joint_fit_recovers_noise_slope_and_interaction() -> None:
    rng = np.random.default_rng(6)
    grid_n, grid_r = np.meshgrid([50.0, 100.0, 200.0, 400.0], [0.0, 0.2, 0.4])
    n, r = np.repeat(grid_n.ravel(), 5), np.repeat(grid_r.ravel(), 5)
    truth = np.array([0.9, 2.0, 0.6, 0.3, 0.2])
    y = joint_curve(truth, n, r, 400.0) + rng.normal(0, 0.005, len(n))
    fit, samples = fit_joint(n, r, y, n_boot=200)
    assert fit.form == "interaction" and samples.shape[1] == 5
    assert _inside(0.3, fit.s_ci) and _inside(0.2, fit.t_ci) and _inside(0.6, fit.c_ci)
    np.testing.assert_allclose(fit.predict(n, r), joint_curve(truth, n, r, 400.0), atol=0.01)
    assert float(fit.noise_slope_at(400.0)) == pytest.approx(fit.s)


# ---------------------------------------------------------------- the run-level API


@pytest.fixture(scope="module")
def fake_fits(tmp_path_factory) -> tuple[RunFits, object]:
    path = tmp_path_factory.mktemp("run")
    truth = write_fake_run(path, diverged=(3,), test_per_class=1000, repeats=3, seed=1)
    return fit_run(path, n_boot=100), truth


def test_fit_run_covers_every_class_and_excludes_diverged(fake_fits) -> None:
    fits, truth = fake_fits
    assert set(fits.noise) == set(fits.volume) == set(truth.classes)
    assert fits.joint is None and fits.overall_joint is None  # no cross grid in this run
    assert fits.excluded == (3,)
    assert fits.model == "small_cnn" and fits.noise_model == "shuffle"
    assert fits.samples["noise"]["cat"].shape[1] == 2
    assert fits.samples["volume"]["cat"].shape[1] == 3
    assert isinstance(fits.overall_noise, NoiseFit) and isinstance(fits.overall_volume, VolumeFit)
    assert fits.noise["cat"].n_points == 8  # 3 levels x 3 repeats minus the diverged one


def test_fit_run_tracks_the_true_curves(fake_fits) -> None:
    fits, truth = fake_fits
    slopes = np.array([fits.noise[c].slope for c in truth.classes])
    assert np.corrcoef(slopes, truth.s)[0, 1] > 0.9
    for k, cls in enumerate(truth.classes):
        for n in (50.0, 100.0, 200.0):
            assert float(fits.volume[cls].predict(n)) == pytest.approx(
                truth.accuracy(n, 0.0)[k], abs=0.03)


def test_sensitivity_names_the_steepest_class_with_ties(fake_fits) -> None:
    fits, _ = fake_fits
    s = sensitivity(fits)
    assert s["noise_order"][0] == "bird" and s["most_noise_sensitive"][0] == "bird"
    top = next(r for r in s["rows"] if r["class"] == "bird")
    for row in s["rows"]:
        tied = row["class"] in s["most_noise_sensitive"]
        assert tied == (row["slope_hi"] >= top["slope_lo"])  # overlap with the top: a tie
    assert "frog" not in s["most_noise_sensitive"]


def test_impact_index_and_json(fake_fits) -> None:
    fits, _ = fake_fits
    value, lo, hi = impact_index(fits, "bird")
    assert lo <= value <= hi and value > 1  # bird loses more to 10% noise than to 10% fewer labels
    text = json.dumps(fits_to_json(fits), allow_nan=False)
    assert "samples" not in json.loads(text) and "cat" in json.loads(text)["noise"]


def test_fit_run_without_a_volume_grid_and_with_a_cross_grid(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "noise", sizes=())
    fits = fit_run(tmp_path / "noise", n_boot=20)
    assert fits.volume == {} and fits.overall_volume is None and len(fits.noise) == 10
    write_fake_run(tmp_path / "cross", cross=True, test_per_class=1000)
    fits = fit_run(tmp_path / "cross", n_boot=30)
    assert fits.joint is not None and set(fits.joint) == set(fits.classes)
    assert fits.samples["joint"]["cat"].shape[1] == 5
    assert float(fits.joint["cat"].predict(200.0, 0.0)) == pytest.approx(0.706, abs=0.05)
