"""Figures derived from fitted curves: sizes needed, impact index, sensitivity ranking, bands.

Each takes fits from ``labelsim.analysis.fits`` (with their bootstrap samples) and returns a
point estimate with a 95% percentile interval from the same samples. "Size to 95%" has one
meaning: the images per class at which a fitted volume curve reaches 95% of its own clean
full-data accuracy (``volume_need``). A claim that a class stands out needs at least
MIN_REPEATS repeats per level and intervals that separate it (``standout``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelsim.analysis.metrics import MIN_REPEATS
from labelsim.analysis.fits import (
    ALPHA,
    MIN_BOOT,
    JointFit,
    NoiseFit,
    RunFits,
    VolumeFit,
    joint_curve,
    percentile_ci,
    volume_curve,
    volume_size_for,
)


def estimate(values: np.ndarray, point: float) -> tuple[float, float, float]:
    """(point estimate, interval) from a point value and bootstrap samples of it."""
    lo, hi = percentile_ci(values)
    return float(point), lo, hi


BELOW, WITHIN, BEYOND = "below smallest size", "within measured sizes", "beyond largest size"


def measured_range(n: float, n_range: tuple[float, float]) -> str:
    """Where a needed per-class count lies against the sizes the fit saw: below the smallest
    (the curve is already past the target there), within, or beyond the largest (extrapolated;
    'never' counts as beyond)."""
    if n < n_range[0] * (1 - 1e-9):
        return BELOW
    return BEYOND if not n <= n_range[1] * (1 + 1e-9) else WITHIN


def size_needed(
    fit: VolumeFit, samples: np.ndarray, fraction: float
) -> tuple[float, float, float]:
    """Per-class count at which the fitted curve reaches ``fraction`` of its full-data accuracy
    (its value at the largest measured size), with a 95% interval from the bootstrap samples.
    Never beyond the largest measured size, since the curve rises towards it."""
    n_full = fit.n_range[1]

    def target(a, b, c):
        return fraction * volume_curve(fit.form, n_full, a, b, c)

    point = volume_size_for(fit.form, target(fit.a, fit.b, fit.c), fit.a, fit.b, fit.c)
    s = np.asarray(samples, float).reshape(-1, 3)
    boot = volume_size_for(fit.form, target(s[:, 0], s[:, 1], s[:, 2]), s[:, 0], s[:, 1], s[:, 2])
    return estimate(boot, float(point))


def fraction_of_full(fit: VolumeFit, n: float | np.ndarray) -> np.ndarray:
    """Fitted accuracy at per-class count n over fitted full-data accuracy."""
    return fit.predict(n) / fit.full_accuracy


NEED_FRACTION = 0.95  # "size to 95%" everywhere: 95% of the class's full-data accuracy


def need_target(fraction: float = NEED_FRACTION) -> str:
    """What a volume need reaches, in words: the one meaning of 'size to X%'."""
    return f"{fraction:.0%} of full-data accuracy"


def volume_need(fit: VolumeFit, samples: np.ndarray, fraction: float = NEED_FRACTION) -> dict:
    """Images per class at which a class's fitted volume curve reaches ``fraction`` of its
    fitted clean full-data accuracy (the curve at the largest measured size), with a 95%
    bootstrap interval and where it lies against the measured sizes."""
    need, lo, hi = size_needed(fit, samples, fraction)
    return {"need": need, "need_lo": lo, "need_hi": hi,
            "need_where": measured_range(need, fit.n_range), "need_target": need_target(fraction)}


@dataclass(frozen=True)
class Impact:
    """Impact index with its interval; ``note`` says why the interval is missing or unbounded
    ('' when it is a plain interval)."""

    value: float
    lo: float
    hi: float
    noise_loss: float
    volume_loss: float
    repeats: int
    note: str


def impact(fits: RunFits, cls: str | None = None, fraction: float = 0.1) -> Impact:
    """Accuracy lost to ``fraction`` label noise over that lost to a ``fraction`` volume cut,
    at full data (> 1: noise hurts more). From the joint fit if any, else the noise and volume
    fits; ``cls`` None means overall accuracy.

    The 95% interval is a percentile bootstrap of the ratio. When the volume loss (the
    denominator) is not distinguishable from 0 the ratio can be arbitrarily large of either
    sign: the interval is (-inf, inf) and ``note`` says so."""
    parts = _impact_parts(fits, cls, fraction)
    if parts is None:
        return Impact(math.nan, math.nan, math.nan, math.nan, math.nan, 0,
                      "no estimate: the noise or volume fit is missing")
    noise, volume, noise_boot, volume_boot, repeats = parts
    value = noise / volume if volume > 0 else math.nan
    lo, hi, note = math.nan, math.nan, ""
    if repeats < MIN_REPEATS:
        note = f"no interval: {repeats} repeat at some level, an interval needs {MIN_REPEATS}"
    elif len(volume_boot) < MIN_BOOT:
        note = "no interval: too few bootstrap fits succeeded"
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(volume_boot > 0, noise_boot / volume_boot,
                             np.copysign(np.inf, noise_boot))
        lo, hi = percentile_ci(ratio)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo, hi = -math.inf, math.inf
            note = (f"unbounded: the accuracy lost to {fraction:.0%} fewer labels, the volume "
                    "curve's slope at full data, is not distinguishable from 0")
    if not volume > 0:
        note = (f"no estimate: the fitted curve loses no accuracy to {fraction:.0%} fewer labels"
                + (f"; {note}" if note else ""))
    return Impact(float(value), float(lo), float(hi), float(noise), float(volume), repeats, note)


def impact_index(
    fits: RunFits, cls: str | None = None, fraction: float = 0.1
) -> tuple[float, float, float]:
    """``impact`` as (estimate, lo, hi); NaN where fits or intervals are missing."""
    found = impact(fits, cls, fraction)
    return found.value, found.lo, found.hi


def impact_losses(
    fits: RunFits, cls: str | None = None, fraction: float = 0.1
) -> tuple[float, float]:
    """Accuracy lost at full data to ``fraction`` label noise and to a ``fraction`` volume cut
    (point estimates; NaN where the fits are missing). ``cls`` None means overall."""
    found = impact(fits, cls, fraction)
    return found.noise_loss, found.volume_loss


def _impact_parts(
    fits: RunFits, cls: str | None, fraction: float
) -> tuple[float, float, np.ndarray, np.ndarray, int] | None:
    """(noise loss, volume loss, their bootstrap samples, fewest repeats per level)."""
    joint = fits.overall_joint if cls is None else (fits.joint or {}).get(cls)
    if joint is not None:
        s = fits.samples["overall_joint"] if cls is None else fits.samples["joint"][cls]
        point = _joint_losses(joint, np.array([joint.a, joint.b, joint.c, joint.s, joint.t]),
                              fraction)
        boot = _joint_losses(joint, np.asarray(s, float).reshape(-1, 5), fraction)
        return float(point[0][0]), float(point[1][0]), boot[0], boot[1], joint.repeats
    nf = fits.overall_noise if cls is None else fits.noise.get(cls)
    vf = fits.overall_volume if cls is None else fits.volume.get(cls)
    if nf is None or vf is None:
        return None
    ns = fits.samples["overall_noise"] if cls is None else fits.samples["noise"][cls]
    vs = fits.samples["overall_volume"] if cls is None else fits.samples["volume"][cls]
    ns, vs = np.asarray(ns, float).reshape(-1, 2), np.asarray(vs, float).reshape(-1, 3)
    n_full = vf.n_range[1]

    def volume_loss(a, b, c):
        return volume_curve(vf.form, n_full, a, b, c) - volume_curve(
            vf.form, n_full * (1 - fraction), a, b, c)

    m = min(len(ns), len(vs))
    return (nf.slope * fraction, float(volume_loss(vf.a, vf.b, vf.c)), ns[:m, 1] * fraction,
            volume_loss(vs[:m, 0], vs[:m, 1], vs[:m, 2]), min(nf.repeats, vf.repeats))


def _joint_losses(jf: JointFit, p: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy lost to ``fraction`` noise and to a ``fraction`` volume cut at n_ref, for each
    row of [a, b, c, s, t] parameters."""
    p = np.atleast_2d(p).T
    full = joint_curve(p, jf.n_ref, 0.0, jf.n_ref)
    return (full - joint_curve(p, jf.n_ref, fraction, jf.n_ref),
            full - joint_curve(p, jf.n_ref * (1 - fraction), 0.0, jf.n_ref))


@dataclass(frozen=True)
class Claim:
    """Which class stands out on one measure: ``classes`` is the top class alone, or the top
    group whose intervals overlap the top one's while every other class lies apart; empty when
    no class stands out. ``text`` says which, or why none does."""

    classes: tuple[str, ...]
    text: str


def standout(rows: list[dict], key: str, repeats: int, higher: str, unit: str = "class") -> Claim:
    """The class standing out on ``key`` among ``rows`` (sorted, top first), gated by evidence:
    at least MIN_REPEATS repeats at every level, and a 95% interval of the top class that
    clears other classes' intervals. ``higher`` names the measure's top end for the text,
    ``unit`` what a row is (a class, or a cluster)."""
    units = "classes" if unit == "class" else f"{unit}s"
    if len(rows) < 2:
        return Claim((), f"no {unit} stands out: fewer than two {units} have a fit")
    if repeats < MIN_REPEATS:
        return Claim((), f"no {unit} stands out: {repeats} repeat at some level, so there is no "
                         f"interval to tell {units} apart (a claim needs {MIN_REPEATS} repeats "
                         "at every level)")
    top = rows[0]
    lo_top = top[f"{key}_lo"]
    if not math.isfinite(lo_top):
        return Claim((), f"no {unit} stands out: {top['class']}'s interval is not bounded")
    tied = [r["class"] for r in rows if not r[f"{key}_hi"] < lo_top]
    if len(tied) == len(rows):
        return Claim((), f"no {unit} stands out: every {unit}'s 95% interval overlaps "
                         f"{top['class']}'s ({higher} point estimate)")
    if len(tied) == 1:
        return Claim((top["class"],), f"{top['class']} (its 95% interval clears every other "
                                      f"{unit}'s)")
    return Claim(tuple(tied), f"one of {', '.join(tied)} (their 95% intervals overlap "
                              f"{top['class']}'s; every other {unit}'s lies apart)")


SENSITIVITY_COLUMNS = ("class", "slope", "slope_lo", "slope_hi", "noise_levels", "noise_repeats",
                       "need", "need_lo", "need_hi", "need_where", "need_target", "size_levels",
                       "size_repeats", "slope_rank", "need_rank")


def sensitivity(
    fits: RunFits, fraction: float = NEED_FRACTION, unit: str = "class",
    unranked: Sequence[str] = (),
) -> dict:
    """Classes by noise slope and by volume need (images per class to ``fraction`` of
    full-data accuracy, ``volume_need``: the same figure the per-class table shows), and the
    class that stands out on each (``standout``), or why none does. The rows are ``unit``s
    (classes, or clusters); those named in ``unranked`` keep their row but get no rank and
    enter no claim.

    Keys: rows (SENSITIVITY_COLUMNS; ranks order the point estimates), noise_order and
    volume_order (point estimates, largest first), most_noise_sensitive and
    most_volume_sensitive (the ``Claim`` classes, empty when none stands out), noise_claim and
    volume_claim (its text), fraction and need_target."""
    rows = []
    for cls in fits.classes:
        row: dict = {"class": cls}
        nf = fits.noise.get(cls)
        if nf is not None:
            row |= {"slope": nf.slope, "slope_lo": nf.slope_ci[0], "slope_hi": nf.slope_ci[1],
                    "noise_levels": nf.levels, "noise_repeats": nf.repeats}
        vf = fits.volume.get(cls)
        if vf is not None:
            row |= volume_need(vf, fits.samples["volume"][cls], fraction)
            row |= {"size_levels": vf.levels, "size_repeats": vf.repeats}
        rows.append(row)
    skip = set(unranked)
    ranked = [r for r in rows if r["class"] not in skip]
    by_slope = sorted((r for r in ranked if "slope" in r), key=lambda r: -r["slope"])
    by_need = sorted((r for r in ranked if "need" in r), key=lambda r: -r["need"])
    for rank, r in enumerate(by_slope, 1):
        r["slope_rank"] = rank
    for rank, r in enumerate(by_need, 1):
        r["need_rank"] = rank
    noise = standout(by_slope, "slope", min((r["noise_repeats"] for r in by_slope), default=0),
                     "steepest", unit)
    volume = standout(by_need, "need", min((r["size_repeats"] for r in by_need), default=0),
                      "largest", unit)
    return {
        "fraction": fraction,
        "need_target": need_target(fraction),
        "rows": rows,
        "noise_order": [r["class"] for r in by_slope],
        "volume_order": [r["class"] for r in by_need],
        "most_noise_sensitive": list(noise.classes),
        "most_volume_sensitive": list(volume.classes),
        "noise_claim": noise.text if by_slope else "",
        "volume_claim": volume.text if by_need else "",
    }


# ---------------------------------------------------------------- bands


def _band(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(pred) < MIN_BOOT:
        nan = np.full(pred.shape[1], np.nan)
        return nan, nan
    return np.nanquantile(pred, ALPHA / 2, axis=0), np.nanquantile(pred, 1 - ALPHA / 2, axis=0)


def noise_band(fit: NoiseFit, samples: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fitted accuracy at each noise rate with a pointwise 95% bootstrap band: (fit, lo, hi)."""
    x = np.asarray(noise, dtype=float)
    s = np.asarray(samples, dtype=float).reshape(-1, 2)
    return (fit.predict(x), *_band(s[:, :1] - s[:, 1:2] * x[None, :]))


def volume_band(fit: VolumeFit, samples: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fitted accuracy at each per-class count with a pointwise 95% band: (fit, lo, hi)."""
    n = np.asarray(n, dtype=float)
    s = np.asarray(samples, dtype=float).reshape(-1, 3)
    pred = volume_curve(fit.form, n[None, :], s[:, :1], s[:, 1:2], s[:, 2:3])
    return (fit.predict(n), *_band(pred))
