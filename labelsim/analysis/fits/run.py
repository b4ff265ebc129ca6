"""Fits of a whole run: every axis (noise, volume, joint) of one model / noise model, per class
and overall, and their JSON form."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labelsim.analysis.fits.common import MIN_LEVELS, NOT_ENOUGH_LEVELS, FitError
from labelsim.analysis.fits.joint import JointFit, fit_joint
from labelsim.analysis.fits.noise import NoiseFit, fit_noise
from labelsim.analysis.fits.volume import VolumeFit, fit_volume
from labelsim.analysis.metrics import overall_accuracy
from labelsim.analysis.units import Units, class_units
from labelsim.rundir import Replica, Run, RunDirError, load_run


@dataclass(frozen=True)
class RunFits:
    """Every fit of one model / noise model of a run, per unit (class or cluster) and overall."""

    classes: tuple[str, ...]  # the units' names
    noise: dict[str, NoiseFit]
    volume: dict[str, VolumeFit]
    joint: dict[str, JointFit] | None
    overall_noise: NoiseFit | None
    overall_volume: VolumeFit | None
    samples: dict = field(repr=False)
    overall_joint: JointFit | None = None
    model: str = ""
    noise_model: str = ""
    excluded: tuple[int, ...] = ()  # replicas left out (diverged or unfinished)
    skipped: dict[str, str] = field(default_factory=dict)  # axis -> why it has no overall fit


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _axis_replicas(run: Run, model: str, noise_model: str, *, axis: str) -> list[Replica]:
    """Finished grid replicas of one model on the noise axis, size axis, or both ('joint')."""
    full = run.full_size(model)
    out = []
    for r in run.finished():
        if r.model != model or r.is_custom:
            continue
        if r.noise_rate != 0 and r.noise_model != noise_model:
            continue
        on_noise = r.train_size == full
        on_size = r.noise_rate == 0
        if axis == "joint" or (axis == "noise" and on_noise) or (axis == "volume" and on_size):
            out.append(r)
    return out


def _accuracies(run: Run, units: Units, reps: list[Replica]) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit accuracy (replicas x units) and overall accuracy of some replicas."""
    idx = [r.replica for r in reps]
    return units.accuracy[idx], overall_accuracy(run.counts[idx])


def pick_model(run: Run, model: str | None, noise_model: str | None) -> tuple[str, str]:
    """The model and noise model to fit: the given ones (checked) or the run's first."""
    models = run.models()
    model = model or models[0]
    if model not in models:
        raise RunDirError(f"model {model!r} is not in the run; choose one of: {', '.join(models)}")
    noisy = [r.noise_model for r in run.replicas if r.model == model and r.noise_rate > 0]
    choices = list(dict.fromkeys(noisy)) or run.noise_models()
    noise_model = noise_model or choices[0]
    if noise_model not in choices:
        raise RunDirError(
            f"noise model {noise_model!r} is not in the run; choose one of: {', '.join(choices)}")
    return model, noise_model


def fit_run(
    run_dir: str | Path | Run, model: str | None = None, noise_model: str | None = None,
    n_boot: int = 200, seed: int = 0, units: Units | None = None,
) -> RunFits:
    """Noise, volume and (with a cross grid) joint fits of every unit and overall; the units
    are the classes unless ``units`` says otherwise."""
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    units = units or class_units(run)
    model, noise_model = pick_model(run, model, noise_model)
    samples: dict = {"noise": {}, "volume": {}, "joint": {}}
    skipped: dict[str, str] = {}
    noise, overall_noise = _fit_noise_axis(run, units, model, noise_model, n_boot, seed, samples,
                                           skipped)
    volume, overall_volume = _fit_volume_axis(run, units, model, n_boot, seed, samples, skipped)
    joint, overall_joint = _fit_joint_axis(run, units, model, noise_model, n_boot, seed, samples,
                                           skipped)
    excluded = tuple(r.replica for r in run.replicas if not r.finished)
    return RunFits(units.names, noise, volume, joint, overall_noise, overall_volume, samples,
                   overall_joint, model, noise_model, excluded, skipped)


def _levels(values: list[float], unit: str) -> str:
    """The distinct values as text: '1 training size (500)', 'no noise level'."""
    levels = sorted(set(values))
    if not levels:
        return f"no {unit}"
    plural = "s" if len(levels) > 1 else ""
    return f"{len(levels)} {unit}{plural} ({', '.join(f'{v:g}' for v in levels)})"


def _fit_noise_axis(
    run: Run, units: Units, model: str, noise_model: str, n_boot: int, seed: int, samples: dict, skipped: dict
) -> tuple[dict[str, NoiseFit], NoiseFit | None]:
    reps = _axis_replicas(run, model, noise_model, axis="noise")
    x = np.array([r.noise_rate for r in reps])
    if len(np.unique(x)) < 2:
        skipped["noise"] = (f"{NOT_ENOUGH_LEVELS}: finished replicas at n={run.full_size(model)} "
                            f"cover {_levels(list(x), 'noise level')}; a noise slope needs 2")
        return {}, None
    inputs = [(x,)] * len(units.names)
    return _fit_classes(run, units, reps, "noise", fit_noise, inputs, (x,), n_boot, seed, samples, skipped)


def _fit_volume_axis(
    run: Run, units: Units, model: str, n_boot: int, seed: int, samples: dict, skipped: dict
) -> tuple[dict[str, VolumeFit], VolumeFit | None]:
    reps = _axis_replicas(run, model, "", axis="volume")
    sizes = [float(r.train_size) for r in reps]
    if len(set(sizes)) < MIN_LEVELS:
        skipped["volume"] = (f"{NOT_ENOUGH_LEVELS}: finished clean replicas cover "
                             f"{_levels(sizes, 'training size')}; a volume curve needs "
                             f"{MIN_LEVELS}")
        return {}, None
    n, mean_n = _sizes(run, units, reps)
    inputs = [(n[:, k],) for k in range(len(units.names))]
    return _fit_classes(run, units, reps, "volume", fit_volume, inputs, (mean_n,), n_boot, seed, samples,
                        skipped)


def _fit_joint_axis(
    run: Run, units: Units, model: str, noise_model: str, n_boot: int, seed: int, samples: dict, skipped: dict
) -> tuple[dict[str, JointFit] | None, JointFit | None]:
    reps = _axis_replicas(run, model, noise_model, axis="joint")
    if not any(r.experiment == "cross" for r in reps):
        if any(r.experiment == "cross" and r.model == model for r in run.replicas):
            skipped["joint"] = (f"{NOT_ENOUGH_LEVELS}: no replica of the cross grid has finished "
                                "yet")
        return None, None
    n, mean_n = _sizes(run, units, reps)
    noise = np.array([r.noise_rate for r in reps])
    inputs = [(n[:, k], noise) for k in range(len(units.names))]
    return _fit_classes(run, units, reps, "joint", fit_joint, inputs, (mean_n, noise), n_boot, seed,
                        samples, skipped)


def _sizes(run: Run, units: Units, reps: list[Replica]) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit training counts (replicas x units) and the mean per-class count per replica
    (the overall curve's axis)."""
    return units.train_counts(run, reps), np.array([r.train_size / run.num_classes for r in reps])


_STREAMS = {"noise": 1, "volume": 2, "joint": 3}  # random stream of each axis


def _fit_classes(
    run: Run, units: Units, reps: list[Replica], axis: str, fitter: Callable,
    inputs: list[tuple[np.ndarray, ...]], overall_inputs: tuple[np.ndarray, ...],
    n_boot: int, seed: int, samples: dict, skipped: dict,
) -> tuple[dict[str, Any], Any]:
    """``fitter`` on each unit's accuracy and on the overall one; fits that fail are left out.

    Bootstrap samples go into ``samples[axis][unit]`` and ``samples["overall_" + axis]``; why
    the overall fit failed goes into ``skipped[axis]``."""
    acc, overall = _accuracies(run, units, reps)
    stream = _STREAMS[axis]
    fits = {}
    for k, cls in enumerate(units.names):
        fit = _try(fitter, *inputs[k], acc[:, k], n_boot, _rng(seed, stream, k))
        if fit is not None:
            fits[cls], samples[axis][cls] = fit
    try:
        fit, boot = fitter(*overall_inputs, overall, n_boot, _rng(seed, stream, 10**6))
    except FitError as exc:
        skipped[axis] = str(exc)
        return fits, None
    samples[f"overall_{axis}"] = boot
    return fits, fit


def _try(fitter: Callable, *args: Any) -> Any:
    try:
        return fitter(*args)
    except FitError:
        return None


def fits_to_json(fits: RunFits) -> dict:
    """A JSON-ready dict of the fits (no bootstrap samples; NaN and inf become null)."""
    out = {
        "model": fits.model, "noise_model": fits.noise_model, "classes": list(fits.classes),
        "excluded_replicas": list(fits.excluded),
        "noise": {k: asdict(v) for k, v in fits.noise.items()},
        "volume": {k: asdict(v) for k, v in fits.volume.items()},
        "joint": {k: asdict(v) for k, v in (fits.joint or {}).items()} if fits.joint is not None
        else None,
        "overall_noise": asdict(fits.overall_noise) if fits.overall_noise else None,
        "overall_volume": asdict(fits.overall_volume) if fits.overall_volume else None,
        "overall_joint": asdict(fits.overall_joint) if fits.overall_joint else None,
        "bootstrap_samples_kept": _sample_counts(fits.samples),
        "skipped": dict(fits.skipped),
    }
    return json_ready(out)


def _sample_counts(samples: dict) -> dict:
    out: dict = {}
    for key, value in samples.items():
        if isinstance(value, dict):
            out[key] = {k: int(len(v)) for k, v in value.items()}
        else:
            out[key] = int(len(value))
    return out


def json_ready(value: Any) -> Any:
    """Recursively turn tuples, numpy scalars and non-finite floats into JSON-safe values."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
