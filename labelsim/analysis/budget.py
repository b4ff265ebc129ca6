"""Labeling-budget optimizer: how many labels of which tier to buy for each class.

Predictive model
----------------
Each labeling tier t has a price per label p_t and an expected label-noise rate eps_t.
Buying n_kt labels of class k from tier t gives class k a label count and an effective
noise rate

    n_k = sum_t n_kt,        eps_k = sum_t n_kt * eps_t / n_k.

Class k's predicted accuracy depends on its own (n_k, eps_k) only:

    acc_k(n_k, eps_k) = V_k(n_k) - s_k * eps_k,      V_k(n) = a_k - b_k * n^(-c_k),

where V_k is the class's volume fit (accuracy against its per-class label count, measured
without noise; the fit may instead pick the saturating form a_k - b_k * exp(-n / c_k)) and
s_k its noise slope (accuracy lost per unit noise rate, measured on the full training set).
When the run has a joint fit of count and noise (a noise x size cross grid), its
prediction replaces this sum, so the noise slope may change with n_k. A negative slope is
taken as zero (the model never rewards noise), and predictions are clipped to [0, 1].
A label of class k from tier t costs p_t times the class's price multiplier (1 unless
given); a plan's cost is the sum over classes and tiers.

Overall accuracy is the mean of the per-class accuracies (the accuracy on a test set with
equal numbers of each class). The objective is that mean (default), a weighted mean, or the
worst class's accuracy (then, among plans with the best worst class, the best mean).

Intervals come from the fits' bootstrap samples: each resampled set of a class's fit
parameters gives one prediction, and an interval is the 2.5-97.5 percentile range (samples
are paired across classes by index for the overall accuracy). They carry the uncertainty
of the fits, not the spread between two trainings of the same plan.

Limits:

- Other classes' labels matter too: a class's errors are other classes' false positives,
  and a noisy label of one class is a wrong example of another. The model ignores that.
- The fits are valid only within the measured range. A plan never gives a class fewer
  labels than the smallest per-class count the run measured (a budget too small for that
  is an error that states the minimum), nor more than the largest measured count times
  ``extrapolate`` (1 by default: no extrapolation in volume), nor more than the images
  available. A simple strategy stops buying for a class at that ceiling; a strategy that
  leaves a class below the floor has no prediction at that budget. A noise rate above the
  largest measured one extends the fitted line, with a warning.
- Noise is measured with the run's noise model (the fitted one when a run has several)
  and a tier's rate is read in its units. Under the study's shuffle protocol a rate r
  permutes the labels of a fraction r of the records, so some keep their true class and
  only about r * (C - 1) / C end up wrong; if a tier's rate is its fraction of wrong
  labels, the model predicts only about (C - 1) / C of the accuracy that noise costs (90%
  with 10 classes). ``--simulate`` trains the plans, with per-class noise that makes
  exactly the tier's fraction of labels wrong, and shows measured beside predicted
  accuracy.

Solver
------
Labels are bought in steps of ``step`` labels per class and tier (1 for small problems;
otherwise about 1/40 of the largest per-class count). For each class the candidate
purchases are all tier splits of each total on that grid, pruned to those that no other
split beats on both cost and accuracy (splits of one total are first pruned on cost and
summed noise, which is exact because both add up). Choosing one candidate per class is a
multiple-choice knapsack, solved exactly by dynamic programming over cost counted in an
integer unit: the greatest common divisor of the per-label prices (exact), or, when that
would need more than ``max_cells`` cells, budget / ``max_cells`` with every candidate's cost
rounded up (so no plan exceeds the budget). Ties go to the cheaper plan. The worst-class
objective bisects on the target level, with each class's cheapest candidate reaching it.
The returned plan is also compared with the simple strategies' plans and the best is kept
(that only matters when the step is coarser than one label).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from labelsim.config import ConfigError

OBJECTIVES = ("mean", "worst")
DEFAULT_LEVELS = 40  # label-count grid points per class when the step is automatic
DEFAULT_MAX_CELLS = 20000  # cost cells of the dynamic programme
_VALUE_TOL = 1e-9  # objective values closer than this count as ties
OPTIMIZED = "optimized"


class BudgetError(ConfigError):
    """A budget question that cannot be answered as asked; the message says what to change."""


# --------------------------------------------------------------------------------------
# Inputs: tiers and per-class options
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    """A labeling source: price per label (currency units) and expected label-noise rate."""

    name: str
    price: float
    noise: float

    def __post_init__(self) -> None:
        check_tier(self)


def check_tier(tier: Tier) -> None:
    """Raise BudgetError unless the tier has a name, a positive price and a noise in [0, 1)."""
    if not tier.name:
        raise BudgetError("a tier needs a name; write NAME:PRICE:NOISE, e.g. crowd:0.04:0.20")
    if not (math.isfinite(tier.price) and tier.price > 0):
        raise BudgetError(
            f"tier {tier.name!r} has price {tier.price!r}; give a positive price per label"
        )
    if not (math.isfinite(tier.noise) and 0.0 <= tier.noise < 1.0):
        raise BudgetError(
            f"tier {tier.name!r} has noise rate {tier.noise!r}, outside [0, 1); "
            "give the expected fraction of wrong labels, e.g. 0.2"
        )


def parse_tier(spec: str) -> Tier:
    """Parse NAME:PRICE:NOISE (e.g. 'crowd:0.04:0.20') into a Tier."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise BudgetError(
            f"tier {spec!r} does not parse; write NAME:PRICE:NOISE, e.g. crowd:0.04:0.20"
        )
    name, price, noise = (p.strip() for p in parts)
    if not (_is_number(price) and _is_number(noise)):
        raise BudgetError(
            f"tier {spec!r}: price and noise must be numbers; write NAME:PRICE:NOISE, "
            "e.g. crowd:0.04:0.20"
        )
    return Tier(name, float(price), float(noise))


def check_tiers(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    """Raise BudgetError for no tiers or repeated names; returns the tiers as a tuple."""
    if not tiers:
        raise BudgetError("no labeling tier given; add --tier NAME:PRICE:NOISE")
    names = [t.name for t in tiers]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BudgetError(f"tier name(s) {', '.join(repeated)} given twice; name each tier once")
    for tier in tiers:
        check_tier(tier)
    return tuple(tiers)


def parse_class_values(
    spec: str, classes: Sequence[str], what: str, *, allow_all: bool = False
) -> dict[str, float]:
    """Per-class numbers from 'cat=1.5,dog=2', a .json object or a two-column .csv file.

    With ``allow_all``, a bare number applies to every class.
    """
    text = spec.strip()
    if allow_all and _is_number(text):
        return {name: float(text) for name in classes}
    if "=" in text:
        pairs = _pairs_from_text(text, what)
    elif Path(text).suffix.lower() in (".json", ".csv"):
        pairs = _pairs_from_file(Path(text), what)
    else:
        raise BudgetError(
            f"{what} {spec!r} does not parse; write CLASS=VALUE[,CLASS=VALUE...] "
            "or give a .json or .csv file"
        )
    return _check_class_names(pairs, classes, what)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pairs_from_text(text: str, what: str) -> dict[str, float]:
    pairs: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not _is_number(value.strip()):
            raise BudgetError(f"{what} item {item!r} does not parse; write CLASS=NUMBER")
        pairs[name.strip()] = float(value)
    return pairs


def _pairs_from_file(path: Path, what: str) -> dict[str, float]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BudgetError(f"cannot read the {what} file {path} ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        return _pairs_from_json(text, path, what)
    return _pairs_from_csv(text, path, what)


def _pairs_from_json(text: str, path: Path, what: str) -> dict[str, float]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BudgetError(f"{what} file {path} is not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not all(_is_number(str(v)) for v in data.values()):
        raise BudgetError(f"{what} file {path} must hold one object {{class: number}}")
    return {str(k): float(v) for k, v in data.items()}


def _pairs_from_csv(text: str, path: Path, what: str) -> dict[str, float]:
    pairs: dict[str, float] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise BudgetError(f"{what} file {path}: each row must be CLASS,NUMBER; got {row}")
        name, value = row[0].strip(), row[1].strip()
        if not _is_number(value):
            if not pairs:
                continue  # a header row
            raise BudgetError(f"{what} file {path}: {value!r} is not a number (class {name})")
        pairs[name] = float(value)
    return pairs


def _check_class_names(pairs: dict[str, float], classes: Sequence[str], what: str) -> dict[str, float]:
    unknown = [name for name in pairs if name not in classes]
    if unknown:
        raise BudgetError(
            f"{what}: unknown class(es) {', '.join(unknown)}; the run's classes are "
            f"{', '.join(classes)}"
        )
    return pairs


# --------------------------------------------------------------------------------------
# Per-class curves
# --------------------------------------------------------------------------------------

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ClassCurve:
    """One class's predicted accuracy against its label count n and noise rate eps.

    ``predict(n, eps)`` takes equal-length arrays; ``draws(n, eps)`` (optional) returns
    (samples, len(n)) bootstrap predictions. ``n_range`` is the measured per-class count
    range and ``noise_max`` the largest measured noise rate. ``predict`` must not rise
    with eps.
    """

    name: str
    predict: Predictor
    n_range: tuple[float, float]
    noise_max: float = 1.0
    draws: Predictor | None = None

    def accuracy(self, n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Predicted accuracy, clipped to [0, 1]."""
        n = np.asarray(n, dtype=float)
        eps = np.asarray(eps, dtype=float)
        value = np.asarray(self.predict(n, eps), dtype=float).reshape(n.shape)
        return np.clip(value, 0.0, 1.0)

    def samples(self, n: np.ndarray, eps: np.ndarray) -> np.ndarray | None:
        """Bootstrap predictions (samples, len(n)), clipped to [0, 1]; None without samples."""
        if self.draws is None:
            return None
        n = np.atleast_1d(np.asarray(n, dtype=float))
        eps = np.atleast_1d(np.asarray(eps, dtype=float))
        return np.clip(np.asarray(self.draws(n, eps), dtype=float).reshape(-1, n.size), 0.0, 1.0)


def power_law_curve(
    name: str,
    a: float,
    b: float,
    c: float,
    slope: float,
    n_range: tuple[float, float],
    *,
    noise_max: float = 1.0,
    volume_samples: np.ndarray | None = None,
    slope_samples: np.ndarray | None = None,
) -> ClassCurve:
    """A curve acc = a - b * n^(-c) - slope * eps, with optional bootstrap samples.

    ``volume_samples`` is (B, 3) of (a, b, c); ``slope_samples`` is (B,).
    """
    slope = max(float(slope), 0.0)

    def predict(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return a - b * np.power(n, -c) - slope * eps

    draws = _power_law_draws(a, b, c, slope, volume_samples, slope_samples)
    return ClassCurve(name, predict, _check_range(name, n_range), float(noise_max), draws)


def _power_law_draws(
    a: float,
    b: float,
    c: float,
    slope: float,
    volume_samples: np.ndarray | None,
    slope_samples: np.ndarray | None,
) -> Predictor | None:
    if volume_samples is None and slope_samples is None:
        return None
    vol = np.array([[a, b, c]]) if volume_samples is None else np.asarray(volume_samples, float)
    slo = np.array([slope]) if slope_samples is None else np.asarray(slope_samples, float)
    size = min((n for n in (len(vol), len(slo)) if n > 1), default=1)
    vol = np.broadcast_to(vol[:size], (size, 3))  # a single row broadcasts to every sample
    slo = np.maximum(np.broadcast_to(slo[:size], (size,)), 0.0)

    def draws(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        power = np.power(n[None, :], -vol[:, 2:3])
        return vol[:, 0:1] - vol[:, 1:2] * power - slo[:, None] * eps[None, :]

    return draws


def _check_range(name: str, n_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(n_range[0]), float(n_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise BudgetError(f"class {name}: measured count range {n_range} is not 0 < low <= high")
    return lo, hi


def curves_from_fits(
    fits: Any,
    n_range: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
    noise_max: float = 1.0,
    *,
    max_samples: int = 200,
) -> tuple[ClassCurve, ...]:
    """One ClassCurve per class of a RunFits: its joint fit if any, else volume fit - slope * eps.

    ``n_range`` defaults to each volume fit's measured range.
    """
    missing = [c for c in fits.classes if c not in fits.volume or c not in fits.noise]
    if missing:
        raise BudgetError(
            f"class(es) {', '.join(missing)} lack a noise or volume fit; the budget needs both "
            "for every class: run a grid with at least two noise levels and two sizes"
        )
    curves = []
    for name in fits.classes:
        rng = n_range[name] if isinstance(n_range, Mapping) else n_range
        rng = rng if rng is not None else tuple(fits.volume[name].n_range)
        curves.append(_curve_from_fit(fits, name, rng, noise_max, max_samples))
    return tuple(curves)


def _curve_from_fit(
    fits: Any, name: str, n_range: tuple[float, float], noise_max: float, max_samples: int
) -> ClassCurve:
    samples = getattr(fits, "samples", None) or {}
    volume, slope = fits.volume[name], max(float(fits.noise[name].slope), 0.0)
    separable = _separable(volume, slope)
    draws = _separable_draws(
        volume,
        slope,
        _thin(samples.get("volume", {}).get(name), max_samples),
        _thin(samples.get("noise", {}).get(name), max_samples),
    )
    joint = (fits.joint or {}).get(name)
    predict = separable
    if joint is not None:
        predict = _monotone_in_noise(joint.predict)
        joint_samples = _thin(samples.get("joint", {}).get(name), max_samples)
        if joint_samples is not None and joint_samples.ndim == 2 and joint_samples.shape[1] == 5:
            draws = _joint_draws(joint, joint_samples)
        elif draws is not None:
            draws = _recentred(draws, separable, predict)
    n_range = _check_range(name, n_range)
    if not np.all(np.isfinite(predict(np.array(n_range), np.zeros(2)))):
        raise BudgetError(f"class {name}'s fit predicts no finite accuracy; check the run's fits")
    return ClassCurve(name, predict, n_range, float(noise_max), draws)


def _separable(volume: Any, slope: float) -> Predictor:
    def predict(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return np.asarray(volume.predict(n), dtype=float) - slope * eps

    return predict


def _monotone_in_noise(function: Callable[[np.ndarray, np.ndarray], Any]) -> Predictor:
    """A predictor linear in noise (as the joint fit is) with its noise slope floored at 0."""

    def predict(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        clean = np.asarray(function(n, np.zeros_like(n)), dtype=float)
        slope = np.maximum(clean - np.asarray(function(n, np.ones_like(n)), dtype=float), 0.0)
        return clean - slope * eps

    return predict


def _separable_draws(
    volume: Any, slope: float, volume_samples: np.ndarray | None, noise_samples: np.ndarray | None
) -> Predictor | None:
    """Bootstrap predictor from (a, b, c) volume samples and (intercept, slope) noise samples."""
    if volume_samples is None and noise_samples is None:
        return None
    volumes = [volume] if volume_samples is None else [
        dataclasses.replace(volume, a=float(a), b=float(b), c=float(c)) for a, b, c in volume_samples
    ]
    slopes = [slope] if noise_samples is None else list(np.maximum(noise_samples[:, 1], 0.0))
    size = min((n for n in (len(volumes), len(slopes)) if n > 1), default=1)

    def draws(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        rows = [
            np.asarray(volumes[min(i, len(volumes) - 1)].predict(n), dtype=float)
            - slopes[min(i, len(slopes) - 1)] * eps
            for i in range(size)
        ]
        return np.stack(rows)

    return draws


def _joint_draws(joint: Any, samples: np.ndarray) -> Predictor:
    """Bootstrap predictor from (a, b, c, s, t) joint samples."""
    fits = [
        _monotone_in_noise(dataclasses.replace(joint, a=a, b=b, c=c, s=s, t=t).predict)
        for a, b, c, s, t in samples.astype(float).tolist()
    ]

    def draws(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return np.stack([f(n, eps) for f in fits])

    return draws


def _thin(samples: np.ndarray | None, limit: int) -> np.ndarray | None:
    if samples is None:
        return None
    arr = np.asarray(samples, dtype=float)
    if len(arr) == 0:
        return None
    if len(arr) <= limit:
        return arr
    return arr[np.linspace(0, len(arr) - 1, limit).round().astype(int)]


def _recentred(draws: Predictor, base: Predictor, centre: Predictor) -> Predictor:
    """Draws moved so that they scatter around ``centre`` as they scatter around ``base``."""

    def shifted(n: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return draws(n, eps) - base(n, eps)[None, :] + centre(n, eps)[None, :]

    return shifted


# --------------------------------------------------------------------------------------
# The problem
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetProblem:
    """A budget question: curves, tiers, budget and the per-class options.

    ``price_multipliers``, ``available`` and ``weights`` are per class (None = 1, no limit,
    1). ``step`` is the label step (0 = automatic). ``extrapolate`` scales the largest
    measured count to the most labels a class may get.
    """

    curves: tuple[ClassCurve, ...]
    tiers: tuple[Tier, ...]
    budget: float
    price_multipliers: tuple[float, ...] | None = None
    available: tuple[int, ...] | None = None
    weights: tuple[float, ...] | None = None
    objective: str = "mean"
    step: int = 0
    extrapolate: float = 1.0
    levels: int = DEFAULT_LEVELS
    max_cells: int = DEFAULT_MAX_CELLS

    def __post_init__(self) -> None:
        check_problem(self)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in order."""
        return tuple(c.name for c in self.curves)

    def multipliers(self) -> np.ndarray:
        """Per-class price multipliers (K,)."""
        k = len(self.curves)
        return np.ones(k) if self.price_multipliers is None else np.asarray(self.price_multipliers, float)

    def weight_vector(self) -> np.ndarray:
        """Per-class objective weights (K,)."""
        k = len(self.curves)
        return np.ones(k) if self.weights is None else np.asarray(self.weights, float)

    def prices(self) -> np.ndarray:
        """Per-class, per-tier price of one label (K, T)."""
        return self.multipliers()[:, None] * np.array([t.price for t in self.tiers])[None, :]

    def noise_rates(self) -> np.ndarray:
        """Per-tier noise rates (T,)."""
        return np.array([t.noise for t in self.tiers])

    def floors(self) -> np.ndarray:
        """Fewest labels a class may get: its smallest measured count (K,)."""
        return np.array([math.ceil(c.n_range[0] - 1e-9) for c in self.curves], dtype=np.int64)

    def ceilings(self) -> np.ndarray:
        """Most labels a class may get: measured maximum x extrapolate, capped by availability (K,)."""
        top = np.array([math.floor(c.n_range[1] * self.extrapolate + 1e-9) for c in self.curves])
        if self.available is not None:
            top = np.minimum(top, np.asarray(self.available))
        return top.astype(np.int64)

    def with_budget(self, budget: float) -> BudgetProblem:
        """The same problem at another budget."""
        return dataclasses.replace(self, budget=float(budget))


def check_problem(problem: BudgetProblem) -> None:
    """Raise BudgetError for any input that cannot be planned, saying what to change."""
    k = len(problem.curves)
    if k == 0:
        raise BudgetError("no classes to plan for; the run's fits list no class")
    check_tiers(problem.tiers)
    if not (math.isfinite(problem.budget) and problem.budget > 0):
        raise BudgetError(f"budget {problem.budget!r} must be a positive amount; give --budget")
    if problem.objective not in OBJECTIVES:
        raise BudgetError(f"objective {problem.objective!r}: choose one of {', '.join(OBJECTIVES)}")
    _check_per_class(problem.price_multipliers, k, "price multiplier", positive=True)
    _check_per_class(problem.weights, k, "weight", positive=False)
    if problem.weights is not None and not any(w > 0 for w in problem.weights):
        raise BudgetError("every class weight is zero; give at least one positive weight")
    _check_per_class(problem.available, k, "available count", positive=False)
    if problem.step < 0:
        raise BudgetError(f"label step {problem.step} must be >= 0 (0 = automatic); fix --step")
    if problem.levels < 1 or problem.max_cells < 10:
        raise BudgetError("levels must be >= 1 and max_cells >= 10")
    if not (math.isfinite(problem.extrapolate) and problem.extrapolate >= 1.0):
        raise BudgetError(f"extrapolate {problem.extrapolate!r} must be >= 1 (1 = no extrapolation)")
    _check_room(problem)


def _check_per_class(values: Sequence[float] | None, k: int, what: str, *, positive: bool) -> None:
    if values is None:
        return
    if len(values) != k:
        raise BudgetError(f"{len(values)} {what}s given for {k} classes; give one per class")
    for v in values:
        bad = not math.isfinite(v) or v < 0 or (positive and v == 0)
        if bad:
            bound = "positive" if positive else "zero or more"
            raise BudgetError(f"{what} {v!r} is not allowed; each must be {bound}")


def _check_room(problem: BudgetProblem) -> None:
    floors, ceilings = problem.floors(), problem.ceilings()
    for name, lo, hi in zip(problem.classes, floors, ceilings):
        if hi < lo:
            raise BudgetError(
                f"class {name} can get at most {hi} labels (images available), fewer than the "
                f"smallest count the run measured ({lo}); the fits cannot predict it: raise "
                "--available or measure smaller sizes"
            )


def minimum_cost(problem: BudgetProblem) -> float:
    """Cost of the cheapest useful plan: every class at its floor from its cheapest tier."""
    return float(np.sum(problem.floors() * problem.prices().min(axis=1)))


def check_affordable(problem: BudgetProblem) -> None:
    """Raise BudgetError when the budget is below the cheapest useful plan."""
    least = minimum_cost(problem)
    if problem.budget < least - 1e-9:
        raise BudgetError(
            f"budget {problem.budget:,.2f} is below the cheapest useful plan, {least:,.2f} "
            "(each class at the smallest count the run measured, from the cheapest tier); "
            f"give --budget {math.ceil(least * 100) / 100:.2f} or more"
        )


# --------------------------------------------------------------------------------------
# Candidate purchases per class
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassOptions:
    """A class's candidate purchases: labels per tier (L, T), cost (L,), accuracy (L,)."""

    counts: np.ndarray
    cost: np.ndarray
    acc: np.ndarray


def label_step(problem: BudgetProblem) -> int:
    """The label step: the problem's, else the largest class ceiling / levels, so that every
    class still has a grid point between its floor and ceiling."""
    floors, ceilings = problem.floors(), problem.ceilings()
    step = problem.step or max(1, math.ceil(int(ceilings.max()) / problem.levels))
    while step > 1 and not np.all(ceilings // step * step >= floors):
        step -= 1
    return int(step)


def composition_frontier(
    prices: np.ndarray, noises: np.ndarray, max_total: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each total j in 0..max_total: the splits of j units over tiers (L, T) that no other
    split of j beats on both summed price and summed noise, with those sums."""
    t_count = len(prices)
    front = [(_unit_row(t_count, 0, j), np.array([j * prices[0]]), np.array([j * noises[0]]))
             for j in range(max_total + 1)]  # fmt: skip
    for t in range(1, t_count):
        front = [_extend(front, j, t, prices[t], noises[t]) for j in range(max_total + 1)]
    return front


def _unit_row(t_count: int, tier: int, amount: int) -> np.ndarray:
    row = np.zeros((1, t_count), dtype=np.int64)
    row[0, tier] = amount
    return row


def _extend(front: list, j: int, tier: int, price: float, noise: float) -> tuple:
    counts, cost, total_noise = [], [], []
    for i in range(j + 1):
        c, p, e = front[j - i]
        c = c.copy()
        c[:, tier] = i
        counts.append(c)
        cost.append(p + i * price)
        total_noise.append(e + i * noise)
    counts_a, cost_a, noise_a = np.concatenate(counts), np.concatenate(cost), np.concatenate(total_noise)
    keep = _pareto(cost_a, -noise_a)
    return counts_a[keep], cost_a[keep], noise_a[keep]


def _pareto(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Indices, by increasing cost, of points no cheaper-or-equal point matches in value."""
    order = np.lexsort((-value, cost))
    v = value[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(v)[:-1]))
    return order[v > best_before]


def class_options(problem: BudgetProblem, step: int | None = None) -> list[ClassOptions]:
    """Every class's undominated candidate purchases on the label grid."""
    step = label_step(problem) if step is None else step
    floors, ceilings = problem.floors(), problem.ceilings()
    j_lo = -(-floors // step)
    j_hi = ceilings // step
    base_prices = np.array([t.price for t in problem.tiers])
    frontier = composition_frontier(base_prices, problem.noise_rates(), int(j_hi.max()))
    multipliers = problem.multipliers()
    return [
        _options_for(curve, frontier, int(lo), int(hi), step, m)
        for curve, lo, hi, m in zip(problem.curves, j_lo, j_hi, multipliers)
    ]


def _options_for(
    curve: ClassCurve, frontier: list, j_lo: int, j_hi: int, step: int, multiplier: float
) -> ClassOptions:
    parts = frontier[j_lo : j_hi + 1]
    units = np.concatenate([p[0] for p in parts])
    raw_cost = np.concatenate([p[1] for p in parts])
    noise_sum = np.concatenate([p[2] for p in parts])
    totals = units.sum(axis=1)
    acc = curve.accuracy(totals * step, noise_sum / totals)
    cost = raw_cost * step * multiplier
    keep = _pareto(cost, acc)
    return ClassOptions(units[keep] * step, cost[keep], acc[keep])


# --------------------------------------------------------------------------------------
# Integer cost cells
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostGrid:
    """Cost counted in integer cells of ``unit``; ``exact`` when no cost was rounded."""

    unit: float
    exact: bool
    cells: int  # cells of the largest budget asked about

    def to_cells(self, budget: float) -> int:
        """Whole cells within a budget."""
        return int(math.floor(budget / self.unit + 1e-9))


def cost_grid(atoms: np.ndarray, budget: float, max_cells: int) -> CostGrid:
    """The cell size for per-label prices ``atoms``: their exact common divisor on a decimal
    scale when the budget fits in ``max_cells`` cells of it, else budget / max_cells."""
    atoms = np.asarray(atoms, dtype=float).ravel()
    for digits in range(0, 10):
        scale = 10.0**digits
        scaled = atoms * scale
        ints = np.round(scaled)
        if np.all(np.abs(scaled - ints) <= 1e-7 * np.maximum(1.0, scaled)):
            unit = float(np.gcd.reduce(ints.astype(np.int64))) / scale
            cells = int(math.floor(budget / unit + 1e-9))
            if cells <= max_cells:
                return CostGrid(unit, True, cells)
            break
    return CostGrid(budget / max_cells, False, max_cells)


def option_cells(options: ClassOptions, grid: CostGrid) -> np.ndarray:
    """Option costs in whole cells (rounded up unless the grid is exact)."""
    ratio = options.cost / grid.unit
    if grid.exact:
        return np.round(ratio).astype(np.int64)
    return np.ceil(ratio - 1e-9).astype(np.int64)


# --------------------------------------------------------------------------------------
# The exact solver on the discretised problem
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """Dynamic-programme table: layers[k][c] = best summed value of classes < k within c
    cells (-inf: none fits); cells[k], values[k] = class k's option costs and values."""

    layers: np.ndarray
    cells: list[np.ndarray]
    values: list[np.ndarray]

    @property
    def best(self) -> np.ndarray:
        """Best value of all classes within each number of cells."""
        return self.layers[-1]


def knapsack_table(cells: list[np.ndarray], values: list[np.ndarray], capacity: int) -> Table:
    """Multiple-choice knapsack by dynamic programming: one option per class, total cells
    <= c, maximal summed value, for every c up to ``capacity``."""
    layers = np.empty((len(cells) + 1, capacity + 1))
    layers[0] = 0.0
    for k, (cost, value) in enumerate(zip(cells, values)):
        layers[k + 1] = _add_class(layers[k], cost, value, capacity)
    return Table(layers, cells, values)


def _option_order(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Options cheapest first, then most valuable: the order that settles ties."""
    return np.lexsort((-value, cost))


def _add_class(best: np.ndarray, cost: np.ndarray, value: np.ndarray, capacity: int) -> np.ndarray:
    new = np.full(capacity + 1, -np.inf)
    for o in _option_order(cost, value):
        c = int(cost[o])
        if c > capacity:
            break
        segment = new[c:]
        np.maximum(segment, best[: capacity + 1 - c] + value[o], out=segment)
    return new


def backtrack(table: Table, capacity: int) -> np.ndarray | None:
    """Chosen option per class of the best plan within ``capacity`` cells (cheapest among
    ties), or None when no plan fits."""
    top = table.best[capacity]
    if not np.isfinite(top):
        return None
    c = int(np.argmax(table.best[: capacity + 1] >= top - _VALUE_TOL * max(1.0, abs(top))))
    chosen = np.empty(len(table.cells), dtype=np.int64)
    for k in range(len(table.cells) - 1, -1, -1):
        chosen[k] = _option_reaching(table, k, c)
        c -= int(table.cells[k][chosen[k]])
    return chosen


def _option_reaching(table: Table, k: int, c: int) -> int:
    """The first option (in tie order) of class k that attains layers[k + 1][c] exactly."""
    cost, value = table.cells[k], table.values[k]
    order = _option_order(cost, value)
    order = order[cost[order] <= c]
    reached = table.layers[k][c - cost[order]] + value[order] == table.layers[k + 1][c]
    return int(order[np.argmax(reached)])


def worst_level(cells: list[np.ndarray], accs: list[np.ndarray], capacity: int) -> float | None:
    """The highest accuracy every class can reach within ``capacity`` cells (bisection on
    the candidate levels, each class at its cheapest option reaching the level)."""
    by_acc = [_cheapest_reaching(c, a) for c, a in zip(cells, accs)]
    levels = np.unique(np.concatenate(accs))
    lo, hi = -1, len(levels) - 1  # levels[lo] feasible (or none), find the last feasible
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _level_cost(by_acc, levels[mid]) <= capacity:
            lo = mid
        else:
            hi = mid - 1
    return None if lo < 0 else float(levels[lo])


def _cheapest_reaching(cost: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accuracies descending, cheapest cost among options at least that accurate)."""
    order = np.argsort(-acc, kind="stable")
    return acc[order], np.minimum.accumulate(cost[order])


def _level_cost(by_acc: list[tuple[np.ndarray, np.ndarray]], level: float) -> float:
    total = 0.0
    for acc_desc, cheapest in by_acc:
        reach = int(np.searchsorted(-acc_desc, -level, side="right"))
        if reach == 0:
            return math.inf
        total += cheapest[reach - 1]
    return total


def solve(
    options: list[ClassOptions],
    budget: float,
    weights: np.ndarray,
    objective: str,
    grid: CostGrid,
) -> np.ndarray | None:
    """Chosen option per class of the best plan within budget, or None if none fits."""
    cells = [option_cells(o, grid) for o in options]
    capacity = grid.to_cells(budget)
    if objective == "worst":
        level = worst_level(cells, [o.acc for o in options], capacity)
        if level is None:
            return None
        keep = [o.acc >= level for o in options]
        cells = [c[m] for c, m in zip(cells, keep)]
        chosen = backtrack(_weighted_table(options, cells, keep, weights, capacity), capacity)
        return None if chosen is None else np.array([np.flatnonzero(m)[i] for m, i in zip(keep, chosen)])
    keep = [np.ones(len(o.acc), bool) for o in options]
    return backtrack(_weighted_table(options, cells, keep, weights, capacity), capacity)


def _weighted_table(
    options: list[ClassOptions],
    cells: list[np.ndarray],
    keep: list[np.ndarray],
    weights: np.ndarray,
    capacity: int,
) -> Table:
    values = [w * o.acc[m] for o, m, w in zip(options, keep, weights)]
    return knapsack_table(cells, values, capacity)


# --------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Labels per class and tier (K, T) with cost and predictions (nan: outside the model)."""

    strategy: str
    counts: np.ndarray
    cost: float
    acc: np.ndarray
    acc_ci: np.ndarray  # (K, 2), nan without bootstrap samples
    overall: float
    overall_ci: tuple[float, float]
    objective: float
    objective_ci: tuple[float, float]
    source: str = ""  # for the optimized plan: "dp" or the strategy it fell back to

    @property
    def labels(self) -> np.ndarray:
        """Labels per class (K,)."""
        return self.counts.sum(axis=1)

    @property
    def predicted(self) -> bool:
        """True when every class is within the model's range."""
        return bool(np.all(np.isfinite(self.acc)))

    def class_noise(self, problem: BudgetProblem) -> np.ndarray:
        """Effective noise rate per class (K,); 0 for a class with no labels."""
        n = self.labels
        total = self.counts @ problem.noise_rates()
        return np.divide(total, n, out=np.zeros(len(n)), where=n > 0)


def plan_cost(problem: BudgetProblem, counts: np.ndarray) -> float:
    """Total price of a purchase (K, T)."""
    return float(np.sum(counts * problem.prices()))


def predict_counts(problem: BudgetProblem, counts: np.ndarray) -> np.ndarray:
    """Per-class predicted accuracy of a purchase; nan for a class below its floor. Labels
    past a class's ceiling are predicted to add nothing."""
    n = counts.sum(axis=1)
    eps = _effective_noise(problem, counts)
    n_model = np.minimum(n, problem.ceilings())
    acc = np.array([c.accuracy(np.array([m]), np.array([e]))[0]
                    for c, m, e in zip(problem.curves, np.maximum(n_model, 1), eps)])  # fmt: skip
    return np.where(n >= problem.floors(), acc, np.nan)


def _effective_noise(problem: BudgetProblem, counts: np.ndarray) -> np.ndarray:
    n = counts.sum(axis=1)
    return np.divide(counts @ problem.noise_rates(), n, out=np.zeros(len(n)), where=n > 0)


def objective_value(problem: BudgetProblem, acc: np.ndarray) -> np.ndarray:
    """The objective of per-class accuracies (..., K): weighted mean or worst class."""
    if problem.objective == "worst":
        return np.min(acc, axis=-1)
    w = problem.weight_vector()
    return acc @ w / w.sum()


def evaluate_plan(
    problem: BudgetProblem, strategy: str, counts: np.ndarray, *, intervals: bool = True, source: str = ""
) -> Plan:
    """Cost and predictions (with bootstrap intervals when asked and available) of a purchase."""
    counts = np.asarray(counts, dtype=np.int64)
    acc = predict_counts(problem, counts)
    samples = _plan_samples(problem, counts) if intervals and np.all(np.isfinite(acc)) else None
    return Plan(
        strategy=strategy,
        counts=counts,
        cost=plan_cost(problem, counts),
        acc=acc,
        acc_ci=_percentiles(samples, axis=0, width=len(acc)),
        overall=float(np.mean(acc)),
        overall_ci=_interval(None if samples is None else samples.mean(axis=1)),
        objective=float(objective_value(problem, acc)),
        objective_ci=_interval(None if samples is None else objective_value(problem, samples)),
        source=source,
    )


def _plan_samples(problem: BudgetProblem, counts: np.ndarray) -> np.ndarray | None:
    """Bootstrap predictions (B, K) of a purchase, or None when any class lacks samples."""
    n = np.maximum(np.minimum(counts.sum(axis=1), problem.ceilings()), 1)
    eps = _effective_noise(problem, counts)
    columns = [c.samples(np.array([m]), np.array([e])) for c, m, e in zip(problem.curves, n, eps)]
    if any(col is None for col in columns):
        return None
    size = min(len(col) for col in columns)
    return np.concatenate([col[:size] for col in columns], axis=1)


def _percentiles(samples: np.ndarray | None, axis: int, width: int) -> np.ndarray:
    if samples is None:
        return np.full((width, 2), np.nan)
    return np.percentile(samples, [2.5, 97.5], axis=axis).T


def _interval(samples: np.ndarray | None) -> tuple[float, float]:
    if samples is None:
        return (math.nan, math.nan)
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return (float(lo), float(hi))


def _better(problem: BudgetProblem, a: Plan, b: Plan) -> bool:
    """True when plan a beats plan b: objective, then mean, then lower cost."""
    if not a.predicted:
        return False
    if not b.predicted:
        return True
    for x, y in ((a.objective, b.objective), (a.overall, b.overall)):
        if abs(x - y) > _VALUE_TOL:
            return x > y
    return a.cost < b.cost - 1e-9


# --------------------------------------------------------------------------------------
# The optimizer and the simple strategies
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Optimizer:
    """The candidate purchases and cost grid of a problem, reusable across budgets up to
    ``grid.cells`` cells."""

    problem: BudgetProblem
    step: int
    options: list[ClassOptions]
    grid: CostGrid
    table: Table | None = field(default=None, compare=False)

    def choose(self, budget: float) -> np.ndarray | None:
        """Chosen option per class at a budget (None if nothing fits)."""
        if self.table is not None:
            return backtrack(self.table, self.grid.to_cells(budget))
        w = self.problem.weight_vector()
        return solve(self.options, budget, w, self.problem.objective, self.grid)

    def counts(self, chosen: np.ndarray) -> np.ndarray:
        """Labels per class and tier (K, T) of a choice."""
        return np.stack([o.counts[i] for o, i in zip(self.options, chosen)])


def build_optimizer(problem: BudgetProblem, max_budget: float | None = None) -> Optimizer:
    """Candidates and cost grid for budgets up to ``max_budget`` (default: the problem's)."""
    top = max(problem.budget, max_budget or 0.0)
    step = label_step(problem)
    options = class_options(problem, step)
    grid = cost_grid(problem.prices() * step, top, problem.max_cells)
    table = None
    if problem.objective == "mean":
        cells = [option_cells(o, grid) for o in options]
        values = [w * o.acc for o, w in zip(options, problem.weight_vector())]
        table = knapsack_table(cells, values, grid.to_cells(top))
    return Optimizer(problem, step, options, grid, table)


def optimize(problem: BudgetProblem, optimizer: Optimizer | None = None, *, intervals: bool = True) -> Plan:
    """The best plan at the problem's budget (raises BudgetError if the budget is too low)."""
    check_affordable(problem)
    opt = optimizer or build_optimizer(problem)
    chosen = opt.choose(problem.budget)
    best = None
    if chosen is not None:
        best = evaluate_plan(problem, OPTIMIZED, opt.counts(chosen), intervals=False, source="dp")
    for rival in simple_strategies(problem, intervals=False):
        if rival.cost <= problem.budget + 1e-9 and (best is None or _better(problem, rival, best)):
            best = dataclasses.replace(rival, strategy=OPTIMIZED, source=rival.strategy)
    if best is None:
        best = _cheapest_plan(problem, opt)
    return evaluate_plan(problem, OPTIMIZED, best.counts, intervals=intervals, source=best.source)


def _cheapest_plan(problem: BudgetProblem, opt: Optimizer) -> Plan:
    """Each class's cheapest candidate (used only when rounding cost up left no plan)."""
    chosen = np.array([int(np.argmin(o.cost)) for o in opt.options])
    return evaluate_plan(problem, OPTIMIZED, opt.counts(chosen), intervals=False, source="cheapest")


def strategy_names(problem: BudgetProblem) -> list[str]:
    """Names of the simple strategies, in display order."""
    return [name for name, _ in _strategy_specs(problem)]


def _strategy_specs(problem: BudgetProblem) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(name, purchase maker) of each simple strategy; one 'all' strategy when one tier."""
    cheap, dear = _cheapest_tier(problem), _dearest_tier(problem)
    specs = [(f"all {problem.tiers[cheap].name} (cheapest)", lambda: pooled_counts(problem, cheap))]
    if dear != cheap:
        specs.append((f"all {problem.tiers[dear].name} (dearest)", lambda: pooled_counts(problem, dear)))
    for t, tier in enumerate(problem.tiers):
        specs.append((f"equal per class, {tier.name}", lambda t=t: equal_counts(problem, t)))
    return specs


def _cheapest_tier(problem: BudgetProblem) -> int:
    return int(np.argmin([t.price for t in problem.tiers]))


def _dearest_tier(problem: BudgetProblem) -> int:
    return int(np.argmax([t.price for t in problem.tiers]))


def simple_strategies(problem: BudgetProblem, *, intervals: bool = True) -> list[Plan]:
    """The budget spent by each simple strategy: all cheapest tier, all dearest tier (both
    on images drawn at random, so in proportion to availability), and equal labels per
    class from each tier."""
    specs = _strategy_specs(problem)
    return [evaluate_plan(problem, name, make(), intervals=intervals) for name, make in specs]


def _single_tier(problem: BudgetProblem, tier: int, per_class: np.ndarray) -> np.ndarray:
    counts = np.zeros((len(problem.curves), len(problem.tiers)), dtype=np.int64)
    counts[:, tier] = per_class
    return counts


def pooled_counts(problem: BudgetProblem, tier: int) -> np.ndarray:
    """All labels from one tier on randomly drawn images: class k gets floor(f * pool_k) for
    the largest fraction f the budget allows (pool = available images, else the ceiling),
    never past its ceiling."""
    ceilings = problem.ceilings()
    pool = ceilings.astype(float) if problem.available is None else np.asarray(problem.available, float)
    prices = problem.prices()[:, tier]

    def labels(f: float) -> np.ndarray:
        return np.minimum(np.floor(f * pool + 1e-9).astype(np.int64), ceilings)

    f = _largest_affordable(lambda f: float(labels(f) @ prices), problem.budget, 1.0)
    return _single_tier(problem, tier, labels(f))


def equal_counts(problem: BudgetProblem, tier: int) -> np.ndarray:
    """Labels from one tier, the same count per class (capped at each class's ceiling),
    as many as the budget allows."""
    ceilings = problem.ceilings()
    prices = problem.prices()[:, tier]
    lo, hi = 0, int(ceilings.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if float(np.minimum(mid, ceilings) @ prices) <= problem.budget + 1e-9:
            lo = mid
        else:
            hi = mid - 1
    return _single_tier(problem, tier, np.minimum(lo, ceilings))


def _largest_affordable(cost: Callable[[float], float], budget: float, top: float) -> float:
    """Largest f in [0, top] with cost(f) <= budget (cost non-decreasing in f)."""
    if cost(top) <= budget + 1e-9:
        return top
    lo, hi = 0.0, top
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) <= budget + 1e-9 else (lo, mid)
    return lo


# --------------------------------------------------------------------------------------
# Budget sweeps and the full answer
# --------------------------------------------------------------------------------------


def sweep_budgets(problem: BudgetProblem, points: int = 25, top: float | None = None) -> np.ndarray:
    """Budgets from the cheapest useful plan to ``top`` (default: enough to buy every class's
    ceiling from the dearest tier, or the budget if larger), including the budget itself."""
    low = minimum_cost(problem)
    dear = problem.prices()[:, _dearest_tier(problem)]
    high = max(problem.budget, float(problem.ceilings() @ dear)) if top is None else max(top, low)
    grid = np.linspace(low, high, points)
    return np.unique(np.concatenate([grid, [problem.budget]]))


def cost_curves(
    problem: BudgetProblem, budgets: np.ndarray, optimizer: Optimizer | None = None
) -> list[dict[str, Any]]:
    """Predicted accuracy of every strategy at each budget: a list of
    {"strategy", "points": [{"budget", "cost", "accuracy", "objective"}]}."""
    opt = optimizer or build_optimizer(problem, float(np.max(budgets)))
    names = [OPTIMIZED] + strategy_names(problem)
    series: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for b in budgets:
        at = problem.with_budget(float(b))
        plans = [optimize(at, opt, intervals=False)] + simple_strategies(at, intervals=False)
        for plan in plans:
            series[plan.strategy].append(_curve_point(float(b), plan))
    return [{"strategy": name, "points": points} for name, points in series.items()]


def _curve_point(budget: float, plan: Plan) -> dict[str, Any]:
    return {
        "budget": budget,
        "cost": plan.cost,
        "accuracy": _finite_or_none(plan.overall),
        "objective": _finite_or_none(plan.objective),
    }


def cost_to_reach(
    problem: BudgetProblem, strategy: str, target: float, top: float, optimizer: Optimizer | None = None
) -> float | None:
    """Smallest budget (to 0.1%) at which a strategy's predicted objective reaches ``target``,
    searched up to ``top``; None if it never does. The cost reported is the plan's own cost."""

    def plan_at(b: float) -> Plan:
        at = problem.with_budget(b)
        if strategy == OPTIMIZED:
            return optimize(at, optimizer, intervals=False)
        return next(p for p in simple_strategies(at, intervals=False) if p.strategy == strategy)

    def reaches(b: float) -> bool:
        return bool(plan_at(b).objective >= target - 1e-12)

    low = minimum_cost(problem)
    if not reaches(top):
        return None
    if reaches(low):
        return plan_at(low).cost
    lo, hi = low, top
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return plan_at(hi).cost


@dataclass(frozen=True)
class BudgetResult:
    """The answer to a budget question: the plan, the strategies, curves and targets."""

    problem: BudgetProblem
    plan: Plan
    strategies: list[Plan]
    curves: list[dict[str, Any]]
    step: int
    grid: CostGrid
    target: float | None = None
    cost_to_target: dict[str, float | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def plan_budget(
    problem: BudgetProblem,
    *,
    target: float | None = None,
    points: int = 25,
    top: float | None = None,
) -> BudgetResult:
    """Optimize the budget, compare the simple strategies, sweep budgets and costs to target."""
    check_affordable(problem)
    budgets = sweep_budgets(problem, points, top)
    opt = build_optimizer(problem, float(budgets.max()))
    # Rounded cells are sized to the largest budget; the plan itself gets cells of its own.
    plan = optimize(problem, opt if opt.grid.exact else None)
    strategies = simple_strategies(problem) + [plan]
    curves = cost_curves(problem, budgets, opt)
    reach: dict[str, float | None] = {}
    if target is not None:
        top_budget = float(budgets.max())
        reach = {p.strategy: cost_to_reach(problem, p.strategy, target, top_budget, opt) for p in strategies}
    notes = _warnings(problem, opt)
    return BudgetResult(problem, plan, strategies, curves, opt.step, opt.grid, target, reach, notes)


def _warnings(problem: BudgetProblem, opt: Optimizer) -> list[str]:
    notes = []
    for tier in problem.tiers:
        over = [c.name for c in problem.curves if tier.noise > c.noise_max + 1e-12]
        if over:
            notes.append(
                f"tier {tier.name} noise {tier.noise:g} is above the largest measured rate "
                f"for {len(over)} class(es); the noise line is extrapolated"
            )
    if problem.extrapolate > 1:
        notes.append(
            f"label counts up to {problem.extrapolate:g}x the largest measured count are extrapolated"
        )
    if not opt.grid.exact:
        notes.append(
            f"costs were rounded up to cells of {opt.grid.unit:.4g}; "
            "the plan may leave a little budget unspent"
        )
    return notes


# --------------------------------------------------------------------------------------
# Measured vs predicted (after --simulate)
# --------------------------------------------------------------------------------------


def measured_vs_predicted(
    plans: Sequence[Plan], measured: Mapping[str, np.ndarray], classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows {strategy, class, predicted, measured, measured_sd, replicas, error} comparing each
    plan's prediction with measured per-class accuracy (R, K) of the trained replicas; the
    class "overall" is the mean over classes."""
    rows = []
    for plan in plans:
        runs = measured.get(plan.strategy)
        if runs is None or len(runs) == 0:
            continue
        runs = np.asarray(runs, dtype=float)
        per_class = list(zip(classes, plan.acc, runs.T))
        per_class.append(("overall", plan.overall, runs.mean(axis=1)))
        for name, predicted, values in per_class:
            rows.append(_comparison_row(plan.strategy, name, float(predicted), values))
    return rows


def _comparison_row(strategy: str, name: str, predicted: float, values: np.ndarray) -> dict[str, Any]:
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return {
        "strategy": strategy,
        "class": name,
        "predicted": _finite_or_none(predicted),
        "measured": mean,
        "measured_sd": _finite_or_none(sd),
        "replicas": int(len(values)),
        "error": _finite_or_none(mean - predicted),
    }


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _estimate(value: float, ci: Sequence[float]) -> dict[str, Any]:
    return {"predicted": _finite_or_none(value), "ci": [_finite_or_none(x) for x in ci]}


def plan_to_dict(problem: BudgetProblem, plan: Plan) -> dict[str, Any]:
    """A JSON-ready plan: totals and one row per class."""
    noise = plan.class_noise(problem)
    prices = problem.prices()
    rows = [
        {
            "class": name,
            "labels": {t.name: int(n) for t, n in zip(problem.tiers, plan.counts[k])},
            "total": int(plan.labels[k]),
            "noise": float(noise[k]),
            "cost": float(plan.counts[k] @ prices[k]),
            **_estimate(plan.acc[k], plan.acc_ci[k]),
        }
        for k, name in enumerate(problem.classes)
    ]
    return {
        "strategy": plan.strategy,
        "cost": plan.cost,
        "labels": int(plan.labels.sum()),
        "labels_by_tier": {t.name: int(n) for t, n in zip(problem.tiers, plan.counts.sum(axis=0))},
        "overall": _estimate(plan.overall, plan.overall_ci),
        "objective": _estimate(plan.objective, plan.objective_ci),
        "worst_class": _finite_or_none(float(np.min(plan.acc))),
        "source": plan.source or None,
        "classes": rows,
    }


def result_to_dict(result: BudgetResult) -> dict[str, Any]:
    """The whole answer as a JSON-ready dict."""
    p = result.problem
    return {
        "budget": p.budget,
        "objective": p.objective if p.weights is None or p.objective == "worst" else "weighted",
        "tiers": [dataclasses.asdict(t) for t in p.tiers],
        "classes": list(p.classes),
        "price_multipliers": p.multipliers().tolist(),
        "weights": p.weight_vector().tolist(),
        "floors": p.floors().tolist(),
        "ceilings": p.ceilings().tolist(),
        "minimum_cost": minimum_cost(p),
        "label_step": result.step,
        "cost_unit": result.grid.unit,
        "cost_exact": result.grid.exact,
        "plan": plan_to_dict(p, result.plan),
        "strategies": [plan_to_dict(p, s) for s in result.strategies],
        "curves": result.curves,
        "target": result.target,
        "cost_to_target": result.cost_to_target,
        "warnings": result.warnings,
    }
