"""Cross-class response models: the prior-shift form recovers a known gamma, held-out
selection prefers the true form (and does not overfit a separable world), and the forms
agree with the curves on balanced plans."""

from __future__ import annotations

import numpy as np
import pytest

from labelsim.analysis.budget import BudgetError, BudgetProblem, Tier, power_law_curve
from labelsim.analysis.budget.crossclass import (
    FORMS,
    Observation,
    cross_features,
    curve_predictor,
    fit_form,
    landed_labels,
    neighbour_weights,
    prior_shift,
    select_model,
)
from labelsim.analysis.budget.plans import predict_counts

CLASSES = 4
# Classes 0 and 1 are each other's main confusion (cat and dog), 2 and 3 less so.
CONFUSION = np.array(
    [
        [0.70, 0.20, 0.05, 0.05],
        [0.18, 0.74, 0.04, 0.04],
        [0.03, 0.03, 0.88, 0.06],
        [0.02, 0.02, 0.08, 0.88],
    ]
)
TRUE_GAMMA, TRUE_DELTA = 0.7, 0.5
NOISE_SD = 0.01


def separable(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """A known separable truth: a_k - b_k n^-0.5 - s_k eps."""
    a = np.array([0.80, 0.85, 0.93, 0.94])
    b = np.array([2.0, 1.8, 1.2, 1.0])
    s = np.array([0.6, 0.5, 0.4, 0.3])
    return a - b * np.power(np.asarray(n, float), -0.5) - s * np.asarray(eps, float)


def random_plans(rng: np.random.Generator, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Plans with per-class sizes log-uniform in [50, 400] and noise uniform in [0, 0.3]."""
    return [
        (np.round(np.exp(rng.uniform(np.log(50), np.log(400), CLASSES))), rng.uniform(0.0, 0.3, CLASSES))
        for _ in range(count)
    ]


def observe(truth, seed: int, count: int = 60) -> list[Observation]:
    """Observations of a truth ``(n, eps) -> acc`` with Gaussian measurement noise."""
    rng = np.random.default_rng(seed)
    plans = random_plans(rng, count)
    return [Observation(n, e, truth(n, e) + rng.normal(0.0, NOISE_SD, CLASSES)) for n, e in plans]


def shifted_truth(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """A prior-shift world with gamma 0.7 and delta 0.5."""
    weights = neighbour_weights(CONFUSION)
    return prior_shift(separable(n, eps), weights, n, eps, TRUE_GAMMA, TRUE_DELTA)


# ------------------------------------------------------------------ recovery and selection


@pytest.mark.parametrize("seed", [0, 1])
def test_prior_shift_recovers_gamma(seed: int) -> None:
    model = fit_form("prior_shift", observe(shifted_truth, seed), CONFUSION, separable)
    assert model.form == "prior_shift"
    assert abs(model.params["gamma"] - TRUE_GAMMA) < 0.1
    assert abs(model.params["delta"] - TRUE_DELTA) < 0.5


def test_selection_prefers_prior_shift_in_a_prior_shift_world() -> None:
    selection = select_model(observe(shifted_truth, 2), CONFUSION, separable, folds=5, seed=0)
    assert [e.form for e in selection.errors] == list(FORMS)
    shifted, flat = selection.error_of("prior_shift"), selection.error_of("separable")
    assert shifted.per_class < flat.per_class - 0.005
    assert shifted.per_class < 1.5 * NOISE_SD  # about the measurement noise (MAE ~ 0.8 sd)
    assert selection.form == "prior_shift"
    assert abs(selection.model.params["gamma"] - TRUE_GAMMA) < 0.1


@pytest.mark.parametrize("seed", [3, 4])
def test_selection_in_a_separable_world_costs_no_more_than_noise(seed: int) -> None:
    selection = select_model(observe(separable, seed), CONFUSION, separable, folds=5, seed=seed)
    chosen, flat = selection.error_of(selection.form), selection.error_of("separable")
    assert chosen.per_class <= flat.per_class + 0.002
    fresh = random_plans(np.random.default_rng(100 + seed), 20)
    gaps = [np.abs(selection.model(n, e) - separable(n, e)).mean() for n, e in fresh]
    assert np.mean(gaps) < 0.5 * NOISE_SD


def test_linear_form_recovers_a_linear_correction() -> None:
    weights = neighbour_weights(CONFUSION)

    def truth(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        feats = cross_features(weights, n, eps)
        return separable(n, eps) + 0.01 + 0.04 * feats[:, 0] - 0.03 * feats[:, 1] - 0.2 * feats[:, 3]

    model = fit_form("linear", observe(truth, 6, count=80), CONFUSION, separable, ridge=1e-3)
    expected = {"intercept": 0.01, "own_share": 0.04, "neighbour_share": -0.03,
                "own_noise": 0.0, "neighbour_noise": -0.2}  # fmt: skip
    for name, value in expected.items():
        assert model.params[name] == pytest.approx(value, abs=0.02 if "noise" not in name else 0.06)


def test_held_out_errors_are_in_accuracy_units_and_complete() -> None:
    selection = select_model(observe(shifted_truth, 7, count=12), CONFUSION, separable, folds=20)
    assert selection.folds == 12  # at most one fold per observation
    for err in selection.errors:
        assert 0.0 <= err.overall <= err.per_class + 1e-12  # class errors partly cancel in the mean
        assert err.per_class_se >= 0.0


# ------------------------------------------------------------------ the forms' building blocks


def test_balanced_plans_keep_the_separable_prediction() -> None:
    weights = neighbour_weights(CONFUSION)
    n, eps = np.full(CLASSES, 200.0), np.full(CLASSES, 0.15)
    base = separable(n, eps)
    for gamma, delta in [(0.3, 0.0), (1.2, 1.0), (3.0, 2.0)]:
        np.testing.assert_allclose(prior_shift(base, weights, n, eps, gamma, delta), base, atol=1e-12)
    np.testing.assert_allclose(cross_features(weights, n, eps), 0.0, atol=1e-12)


def test_prior_shift_starving_a_class_hands_its_images_to_its_neighbour() -> None:
    weights = neighbour_weights(CONFUSION)
    n, eps = np.array([60.0, 300.0, 200.0, 200.0]), np.zeros(CLASSES)
    base = separable(n, eps)
    shifted = prior_shift(base, weights, n, eps, 0.7, 0.5)
    assert shifted[0] < base[0] - 0.05 and shifted[1] > base[1]


def test_landed_labels_are_the_wrong_labels_spread_evenly() -> None:
    n, eps = np.array([100.0, 50.0, 30.0]), np.array([0.3, 0.0, 0.1])
    moves = np.diag(n * (1 - eps)) + (n * eps / 2)[:, None] * (1 - np.eye(3))  # [k, j]: k labeled j
    np.testing.assert_allclose(landed_labels(n, eps), moves.sum(axis=0) - np.diag(moves))
    np.testing.assert_allclose(landed_labels(np.stack([n, n]), np.stack([eps, eps])), [[1.5, 16.5, 15.0]] * 2)


def test_neighbour_weights_rows_sum_to_one_with_zero_diagonal() -> None:
    conf = CONFUSION.copy()
    conf[3] = [0.0, 0.0, 0.0, 1.0]  # a class never confused: its neighbours weigh evenly
    weights = neighbour_weights(conf)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diag(weights), 0.0)
    np.testing.assert_allclose(weights[3, :3], 1 / 3)
    assert weights[0, 1] == pytest.approx(0.2 / 0.3)


def test_fitted_models_are_clipped_to_probabilities() -> None:
    obs = observe(shifted_truth, 8, count=20)
    for form in FORMS:
        model = fit_form(form, obs, CONFUSION, lambda n, e: separable(n, e) * 3 - 1)
        acc = model(np.array([50.0, 400.0, 60.0, 300.0]), np.array([0.0, 0.3, 0.1, 0.2]))
        assert acc.shape == (CLASSES,) and np.all((acc >= 0) & (acc <= 1))


def test_curve_predictor_matches_predict_counts() -> None:
    curves = tuple(power_law_curve(f"c{i}", 0.9, 0.4, 0.6, 0.3, (20.0, 200.0)) for i in range(3))
    problem = BudgetProblem(curves, (Tier("crowd", 0.01, 0.2), Tier("expert", 0.05, 0.02)), budget=10.0)
    counts = np.array([[100, 20], [40, 60], [250, 0]])  # the last class past its ceiling
    n = counts.sum(axis=1)
    eps = counts @ problem.noise_rates() / n
    np.testing.assert_allclose(curve_predictor(problem)(n, eps), predict_counts(problem, counts))


def test_bad_inputs_are_refused_with_a_reason() -> None:
    obs = observe(separable, 9, count=1)
    with pytest.raises(BudgetError, match="at least 2"):
        select_model(obs, CONFUSION, separable)
    with pytest.raises(BudgetError, match="unknown cross-class form"):
        fit_form("spline", obs, CONFUSION, separable)
    with pytest.raises(BudgetError, match="equal-length"):
        Observation(np.ones(3), np.zeros(2), np.ones(3))
    with pytest.raises(BudgetError, match="square"):
        fit_form("separable", obs, np.ones((2, 3)), separable)
