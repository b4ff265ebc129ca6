"""Cross-class response models: per-class accuracy of a plan from every class's label count
and noise, not only the class's own, fitted on designed replicas and chosen by held-out error.

The per-class curves (``curves``) are fitted on class-balanced grids, so they cannot see
how classes share a decision boundary: starving cat hands cat's images to dog. Each form
here starts from the separable prediction a_k = f_k(n_k, eps_k) (the curves at the class's
own count and wrong-label fraction) and corrects it from the whole plan (n, eps):

- ``separable``: a_k itself (no cross terms; the baseline to beat).
- ``prior_shift``: the baseline confusion row of class k at accuracy a_k (off-diagonal in
  the baseline's proportions W_kj) reweighted by the plan's class priors,
  P(pred j | true k) proportional to M_kj * (pi_j / pi_k)^gamma, so that
  acc_k = a_k / (a_k + (1 - a_k) * sum_j W_kj (pi_j / pi_k)^gamma). The prior pi_k is class
  k's share of the label mass n_k (1 - eps_k) + delta * w_k: its correct labels plus delta
  times the wrong labels that land on it (w_k, from the expected label transitions of
  per-class symmetric noise: class j's wrong labels spread evenly over the other classes).
  gamma and delta are fitted by least squares. On a balanced plan (equal n and eps) the
  priors are equal and the form returns a_k: it agrees with the curves where they were
  measured.
- ``linear``: a_k plus a ridge-fitted linear correction on four features (own log-share
  deviation, confusion-weighted neighbours' log-share deviation, own noise deviation,
  confusion-weighted neighbours' noise deviation; deviations from the plan's mean, so all
  four vanish on a balanced plan) and an intercept. It is pooled across classes: a designed
  grid has tens of replicas, too few for five coefficients per class, and the features
  already carry each class's identity through its confusion row.

``select_model`` compares the forms by K-fold held-out error over replicas and keeps the
simplest form within one standard error of the best (forms are listed simplest first).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import least_squares

from labelsim.analysis.budget.curves import Predictor
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.plans import curve_accuracy
from labelsim.analysis.budget.problem import BudgetProblem

FORMS = ("separable", "prior_shift", "linear")  # simplest first: selection's tie order
_FIELDS = ("class_sizes", "class_noise", "accuracy")
FEATURES = ("own_share", "neighbour_share", "own_noise", "neighbour_noise")
DEFAULT_FOLDS = 5
DEFAULT_RIDGE = 1.0
_GAMMA_BOUNDS = (0.0, 5.0)
_DELTA_BOUNDS = (0.0, 2.0)
_STARTS = ((0.5, 0.5), (1.5, 1.0), (0.1, 0.0))  # (gamma, delta) starting points of the fit
_TINY = 1e-12


@dataclass(frozen=True)
class Observation:
    """One trained replica: labels per class (C,), wrong-label fraction per class (C,) and
    measured per-class accuracy (C,)."""

    class_sizes: np.ndarray
    class_noise: np.ndarray
    accuracy: np.ndarray

    def __post_init__(self) -> None:
        sizes, noise, acc = (np.asarray(getattr(self, f), dtype=float) for f in _FIELDS)
        if not (sizes.ndim == 1 and sizes.shape == noise.shape == acc.shape):
            raise BudgetError(
                f"an observation needs equal-length per-class sizes, noise and accuracy; got "
                f"shapes {sizes.shape}, {noise.shape}, {acc.shape}"
            )
        for name, value in zip(_FIELDS, (sizes, noise, acc)):
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class CrossClassModel:
    """A fitted form: ``model(n, eps)`` is the per-class accuracy (C,), clipped to [0, 1]."""

    form: str
    params: dict[str, float]
    function: Predictor = field(repr=False, compare=False)

    def __call__(self, n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Predicted per-class accuracy of labels per class ``n`` with noise ``eps``."""
        value = self.function(np.asarray(n, dtype=float), np.asarray(eps, dtype=float))
        return np.clip(np.asarray(value, dtype=float), 0.0, 1.0)


@dataclass(frozen=True)
class HeldOutError:
    """A form's K-fold held-out mean absolute errors (accuracy fractions): per class, of the
    overall (mean per-class) accuracy, and the standard error of the per-class one."""

    form: str
    per_class: float
    overall: float
    per_class_se: float


@dataclass(frozen=True)
class Selection:
    """The chosen form fitted on every observation, and each form's held-out errors."""

    model: CrossClassModel
    errors: tuple[HeldOutError, ...]
    folds: int

    @property
    def form(self) -> str:
        """Name of the chosen form."""
        return self.model.form

    def error_of(self, form: str) -> HeldOutError:
        """The held-out errors of one form."""
        return next(e for e in self.errors if e.form == form)


# --------------------------------------------------------------------------------------
# Plan quantities
# --------------------------------------------------------------------------------------


def curve_predictor(problem: BudgetProblem) -> Predictor:
    """The separable predictor of a problem's curves, ``(n (C,), eps (C,)) -> acc (C,)``."""
    return functools.partial(curve_accuracy, problem)


def neighbour_weights(confusion: np.ndarray) -> np.ndarray:
    """Each row's off-diagonal confusion rates scaled to sum 1, W (C, C) with a zero diagonal
    (evenly spread for a row with no confusion)."""
    conf = np.clip(np.asarray(confusion, dtype=float), 0.0, None)
    c = conf.shape[0]
    if conf.shape != (c, c) or c < 2:
        raise BudgetError(f"confusion rates must be a square matrix of 2 or more classes, not {conf.shape}")
    off = conf * (1.0 - np.eye(c))
    totals = off.sum(axis=1, keepdims=True)
    even = (1.0 - np.eye(c)) / (c - 1)
    return np.where(totals > 0, off / np.maximum(totals, _TINY), even)


def landed_labels(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Expected wrong labels landing on each class (..., C) when a fraction eps_j of class j's
    n_j labels are wrong and spread evenly over the other classes: the off-diagonal column
    sums of the plan's expected label transitions."""
    n, eps = np.asarray(n, dtype=float), np.asarray(eps, dtype=float)
    wrong = n * eps / (n.shape[-1] - 1)
    return wrong.sum(axis=-1, keepdims=True) - wrong


def prior_shift(
    base: np.ndarray, weights: np.ndarray, n: np.ndarray, eps: np.ndarray, gamma: float, delta: float
) -> np.ndarray:
    """Separable accuracies ``base`` (..., C) moved by the plans' class priors (see the module)."""
    n, eps = np.asarray(n, dtype=float), np.asarray(eps, dtype=float)
    mass = np.maximum(n * (1.0 - eps) + delta * landed_labels(n, eps), _TINY)
    ratio = (mass[..., None, :] / mass[..., :, None]) ** gamma  # [k, j] = (pi_j / pi_k)^gamma
    others = (1.0 - base) * np.sum(weights * ratio, axis=-1)
    return base / np.maximum(base + others, _TINY)


def cross_features(weights: np.ndarray, n: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """The linear form's features (C, 4), in the order of FEATURES."""
    log_n = np.log(np.maximum(np.asarray(n, dtype=float), 1.0))
    share = log_n - log_n.mean()
    noise = np.asarray(eps, dtype=float) - np.mean(eps)
    return np.stack([share, weights @ share, noise, weights @ noise], axis=1)


# --------------------------------------------------------------------------------------
# Fitting the forms
# --------------------------------------------------------------------------------------


def fit_form(
    form: str,
    observations: Sequence[Observation],
    confusion: np.ndarray,
    separable: Predictor,
    *,
    ridge: float = DEFAULT_RIDGE,
) -> CrossClassModel:
    """Fit one of FORMS on observations, from the baseline confusion rates and the
    separable predictor."""
    if form not in _FITTERS:
        raise BudgetError(f"unknown cross-class form {form!r}; choose one of {', '.join(FORMS)}")
    if not observations:
        raise BudgetError("no observations to fit a cross-class model on")
    weights = neighbour_weights(confusion)
    return _FITTERS[form](observations, weights, separable, ridge)


def _fit_separable(
    observations: Sequence[Observation], weights: np.ndarray, separable: Predictor, ridge: float
) -> CrossClassModel:
    return CrossClassModel("separable", {}, separable)


def _fit_prior_shift(
    observations: Sequence[Observation], weights: np.ndarray, separable: Predictor, ridge: float
) -> CrossClassModel:
    n, eps, acc = (np.stack([getattr(o, f) for o in observations]) for f in _FIELDS)
    base = np.clip(np.stack([separable(ni, ei) for ni, ei in zip(n, eps)]), 0.0, 1.0)

    def residuals(x: np.ndarray) -> np.ndarray:
        return (prior_shift(base, weights, n, eps, x[0], x[1]) - acc).ravel()

    bounds = ([_GAMMA_BOUNDS[0], _DELTA_BOUNDS[0]], [_GAMMA_BOUNDS[1], _DELTA_BOUNDS[1]])
    fits = [least_squares(residuals, np.array(x0), bounds=bounds) for x0 in _STARTS]
    gamma, delta = (float(v) for v in min(fits, key=lambda f: f.cost).x)

    def predict(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        base = np.clip(separable(n, eps), 0.0, 1.0)
        return prior_shift(base, weights, n, eps, gamma, delta)

    return CrossClassModel("prior_shift", {"gamma": gamma, "delta": delta}, predict)


def _fit_linear(
    observations: Sequence[Observation], weights: np.ndarray, separable: Predictor, ridge: float
) -> CrossClassModel:
    x = np.concatenate([cross_features(weights, o.class_sizes, o.class_noise) for o in observations])
    y = np.concatenate([o.accuracy - separable(o.class_sizes, o.class_noise) for o in observations])
    coef, intercept = ridge_fit(x, y, ridge)

    def predict(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return separable(n, eps) + intercept + cross_features(weights, n, eps) @ coef

    params = {"intercept": intercept} | {name: float(b) for name, b in zip(FEATURES, coef)}
    return CrossClassModel("linear", params, predict)


def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Ridge least squares y ~ intercept + x @ coef on standardized columns (the intercept
    unpenalized); returns coef in x's units and the intercept."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > _TINY, scale, 1.0)
    z = (x - mean) / scale
    y_mean = float(y.mean())
    beta = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (y - y_mean))
    coef = beta / scale
    return coef, y_mean - float(mean @ coef)


_Fitter = Callable[[Sequence[Observation], np.ndarray, Predictor, float], CrossClassModel]
_FITTERS: dict[str, _Fitter] = {
    "separable": _fit_separable,
    "prior_shift": _fit_prior_shift,
    "linear": _fit_linear,
}


# --------------------------------------------------------------------------------------
# Choosing a form by held-out error
# --------------------------------------------------------------------------------------


def select_model(
    observations: Sequence[Observation],
    confusion: np.ndarray,
    separable: Predictor,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    forms: Sequence[str] = FORMS,
    ridge: float = DEFAULT_RIDGE,
) -> Selection:
    """K-fold held-out errors of each form (folds over replicas); the simplest form within
    one standard error of the lowest per-class error, refitted on every observation."""
    observations = list(observations)
    if len(observations) < 2:
        raise BudgetError(
            f"{len(observations)} finished replica(s) to choose a cross-class model on; "
            "held-out errors need at least 2: train more of the designed grid"
        )
    k = max(2, min(int(folds), len(observations)))
    order = np.random.default_rng(seed).permutation(len(observations))
    splits = np.array_split(order, k)
    errors = tuple(_held_out(f, observations, splits, confusion, separable, ridge) for f in forms)
    best = min(errors, key=lambda e: e.per_class)
    chosen = next(e for e in errors if e.per_class <= best.per_class + best.per_class_se)
    model = fit_form(chosen.form, observations, confusion, separable, ridge=ridge)
    return Selection(model, errors, k)


def _held_out(
    form: str,
    observations: list[Observation],
    splits: list[np.ndarray],
    confusion: np.ndarray,
    separable: Predictor,
    ridge: float,
) -> HeldOutError:
    per_class, overall = [], []
    for test in splits:
        held = set(test.tolist())
        train = [o for i, o in enumerate(observations) if i not in held]
        model = fit_form(form, train, confusion, separable, ridge=ridge)
        gaps = np.stack([model(observations[i].class_sizes, observations[i].class_noise)
                         - observations[i].accuracy for i in test])  # fmt: skip
        per_class.append(float(np.abs(gaps).mean()))
        overall.append(float(np.abs(gaps.mean(axis=1)).mean()))
    se = float(np.std(per_class, ddof=1) / np.sqrt(len(per_class))) if len(per_class) > 1 else 0.0
    return HeldOutError(form, float(np.mean(per_class)), float(np.mean(overall)), se)
