"""Figures derived from fitted curves: sizes needed, impact index, sensitivity ranking, bands.

Each takes fits from ``labelsim.analysis.fits`` (with their bootstrap samples) and returns a
point estimate with a 95% percentile interval from the same samples.
"""

from __future__ import annotations

import math

import numpy as np

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
    fit: VolumeFit, samples: np.ndarray, fraction: float, of: str = "full"
) -> tuple[float, float, float]:
    """Per-class count reaching ``fraction`` of full-data accuracy ('full') or of the asymptote."""
    if of not in ("full", "asymptote"):
        raise ValueError("of must be 'full' or 'asymptote'")
    n_full = fit.n_range[1]

    def target(a, b, c):
        return fraction * (a if of == "asymptote" else volume_curve(fit.form, n_full, a, b, c))

    point = volume_size_for(fit.form, target(fit.a, fit.b, fit.c), fit.a, fit.b, fit.c)
    s = np.asarray(samples, float).reshape(-1, 3)
    boot = volume_size_for(fit.form, target(s[:, 0], s[:, 1], s[:, 2]), s[:, 0], s[:, 1], s[:, 2])
    return estimate(boot, float(point))


def fraction_of_full(fit: VolumeFit, n: float | np.ndarray) -> np.ndarray:
    """Fitted accuracy at per-class count n over fitted full-data accuracy."""
    return fit.predict(n) / fit.full_accuracy


def impact_index(
    fits: RunFits, cls: str | None = None, fraction: float = 0.1
) -> tuple[float, float, float]:
    """Accuracy lost to ``fraction`` label noise over that lost to a ``fraction`` volume cut,
    at full data (> 1: noise hurts more). From the joint fit if any, else noise and volume fits.
    ``cls`` None means overall accuracy. Returns (estimate, lo, hi); NaN where fits are missing."""
    joint = fits.overall_joint if cls is None else (fits.joint or {}).get(cls)
    if joint is not None:
        s = fits.samples["overall_joint" if cls is None else "joint"]
        s = s if cls is None else s[cls]
        return _impact_joint(joint, s, fraction)
    nf = fits.overall_noise if cls is None else fits.noise.get(cls)
    vf = fits.overall_volume if cls is None else fits.volume.get(cls)
    if nf is None or vf is None:
        return math.nan, math.nan, math.nan
    ns = fits.samples["overall_noise"] if cls is None else fits.samples["noise"][cls]
    vs = fits.samples["overall_volume"] if cls is None else fits.samples["volume"][cls]
    return _impact_separate(nf, vf, ns, vs, fraction)


def impact_losses(
    fits: RunFits, cls: str | None = None, fraction: float = 0.1
) -> tuple[float, float]:
    """Accuracy lost at full data to ``fraction`` label noise and to a ``fraction`` volume cut
    (point estimates; NaN where the fits are missing). ``cls`` None means overall."""
    joint = fits.overall_joint if cls is None else (fits.joint or {}).get(cls)
    if joint is not None:
        full = float(joint.predict(joint.n_ref, 0.0))
        return (full - float(joint.predict(joint.n_ref, fraction)),
                full - float(joint.predict(joint.n_ref * (1 - fraction), 0.0)))
    nf = fits.overall_noise if cls is None else fits.noise.get(cls)
    vf = fits.overall_volume if cls is None else fits.volume.get(cls)
    if nf is None or vf is None:
        return math.nan, math.nan
    n_full = vf.n_range[1]
    return nf.slope * fraction, float(vf.predict(n_full) - vf.predict(n_full * (1 - fraction)))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)


def _impact_separate(nf, vf, ns, vs, fraction) -> tuple[float, float, float]:
    n_full = vf.n_range[1]

    def volume_loss(a, b, c):
        return volume_curve(vf.form, n_full, a, b, c) - volume_curve(
            vf.form, n_full * (1 - fraction), a, b, c)

    point = _ratio(np.array(nf.slope * fraction), np.array(volume_loss(vf.a, vf.b, vf.c)))
    m = min(len(ns), len(vs))
    boot = _ratio(ns[:m, 1] * fraction, volume_loss(vs[:m, 0], vs[:m, 1], vs[:m, 2]))
    return estimate(boot, float(point))


def _impact_joint(jf: JointFit, s: np.ndarray, fraction: float) -> tuple[float, float, float]:
    def losses(p: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(p).T
        full = joint_curve(p, jf.n_ref, 0.0, jf.n_ref)
        noisy = full - joint_curve(p, jf.n_ref, fraction, jf.n_ref)
        small = full - joint_curve(p, jf.n_ref * (1 - fraction), 0.0, jf.n_ref)
        return _ratio(noisy, small)

    point = losses(np.array([jf.a, jf.b, jf.c, jf.s, jf.t]))[0]
    return estimate(losses(s), float(point))


def _top_with_ties(rows: list[dict], key: str) -> list[str]:
    """The first row's class plus every class whose interval overlaps the first's."""
    if not rows:
        return []
    lo_top = rows[0][f"{key}_lo"]
    if not np.isfinite(lo_top):
        return [rows[0]["class"]]
    return [r["class"] for r in rows if r[f"{key}_hi"] >= lo_top]


SENSITIVITY_COLUMNS = ("class", "slope", "slope_lo", "slope_hi", "need", "need_lo", "need_hi",
                       "need_where", "slope_rank", "need_rank")


def sensitivity(fits: RunFits, fraction: float = 0.95) -> dict:
    """Classes ranked by noise slope and by volume need (per-class count to ``fraction`` of the
    asymptote); the most sensitive class with every class whose interval overlaps it (a tie)."""
    rows = []
    for cls in fits.classes:
        row: dict = {"class": cls}
        nf = fits.noise.get(cls)
        if nf is not None:
            row |= {"slope": nf.slope, "slope_lo": nf.slope_ci[0], "slope_hi": nf.slope_ci[1]}
        vf = fits.volume.get(cls)
        if vf is not None:
            need = size_needed(vf, fits.samples["volume"][cls], fraction, of="asymptote")
            row |= {"need": need[0], "need_lo": need[1], "need_hi": need[2],
                    "need_where": measured_range(need[0], vf.n_range)}
        rows.append(row)
    by_slope = sorted((r for r in rows if "slope" in r), key=lambda r: -r["slope"])
    by_need = sorted((r for r in rows if "need" in r), key=lambda r: -r["need"])
    for rank, r in enumerate(by_slope, 1):
        r["slope_rank"] = rank
    for rank, r in enumerate(by_need, 1):
        r["need_rank"] = rank
    return {
        "fraction": fraction,
        "rows": rows,
        "noise_order": [r["class"] for r in by_slope],
        "volume_order": [r["class"] for r in by_need],
        "most_noise_sensitive": _top_with_ties(by_slope, "slope"),
        "most_volume_sensitive": _top_with_ties(by_need, "need"),
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
