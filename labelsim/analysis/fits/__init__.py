"""Curve fits of per-class accuracy against label noise and training volume, with bootstrap
intervals: one module per fit (noise, volume, joint), run.py fits a whole run."""

from labelsim.analysis.fits.common import (
    ALPHA,
    MIN_BOOT,
    MIN_LEVELS,
    NOT_ENOUGH_LEVELS,
    FitError,
    percentile_ci,
)
from labelsim.analysis.fits.joint import JointFit, fit_joint, joint_curve
from labelsim.analysis.fits.noise import NoiseFit, fit_noise
from labelsim.analysis.fits.run import RunFits, fit_run, fits_to_json, json_ready, pick_model
from labelsim.analysis.fits.volume import VolumeFit, fit_volume, volume_curve, volume_size_for

__all__ = [
    "ALPHA",
    "MIN_BOOT",
    "MIN_LEVELS",
    "NOT_ENOUGH_LEVELS",
    "FitError",
    "JointFit",
    "NoiseFit",
    "RunFits",
    "VolumeFit",
    "fit_joint",
    "fit_noise",
    "fit_run",
    "fit_volume",
    "fits_to_json",
    "joint_curve",
    "json_ready",
    "percentile_ci",
    "pick_model",
    "volume_curve",
    "volume_size_for",
]
