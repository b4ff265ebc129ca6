"""Input validation before any training starts: every check names what to change."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from labelsim.models import MODELS
from labelsim.sim import noise
from labelsim.config import REPLICA_STRATEGIES, ConfigError, ReplicaSpec, RunConfig, check_rate, total_steps
from labelsim.rundir import (
    RUN_FILE,
    RunDirError,
    read_meta,
    results_without_run_file,
    run_leftovers,
    trained_nothing,
)
from labelsim.rundir.reader import GROWABLE_FIELDS, differing_fields
from labelsim.sim.fingerprint import check_stored_config

KNOWN_STRATEGIES = ("auto", *REPLICA_STRATEGIES)
MAX_REPLICAS = 100_000  # a grid larger than this is a typo (a paper grid has 65 replicas)
MAX_STEPS = 2**31 - 1  # a replica's step counter is a 32-bit integer on the device


def validate_config(config: RunConfig) -> None:
    """Checks that need no data: rates, counts, names."""
    grid, recipe = config.grid, config.recipe
    for rate in grid.noise_levels:
        check_rate(rate)
    if not 0 <= grid.seed < 2**32:
        raise ConfigError(f"seed {grid.seed} is outside 0..{2**32 - 1}; give a smaller --seed")
    if grid.repeats < 1:
        raise ConfigError(f"repeats is {grid.repeats}; it must be at least 1 (--repeats 1 or more)")
    if recipe.epochs < 1:
        raise ConfigError(f"epochs is {recipe.epochs}; it must be at least 1 (--epochs 1 or more)")
    if recipe.batch_size < 1:
        raise ConfigError(f"batch size is {recipe.batch_size}; it must be at least 1 (--batch-size)")
    for size in grid.sizes:
        if size < 1:
            raise ConfigError(f"training-set size {size} is not positive; give sizes such as --sizes 500,1000")
    if not grid.noise_levels and not grid.sizes:
        raise ConfigError("the grid is empty: give --noise levels and/or --sizes")
    _check_grid_size(config)
    if config.model.width < 0:
        raise ConfigError(f"--width {config.model.width} is negative; give 1 or more filters, e.g. --width 32")
    if not grid.noise_models:
        raise ConfigError("no noise model given; use e.g. --noise-model shuffle")
    for name in grid.noise_models:
        _check_noise_model(name)
    for name in grid.models or (config.model.name,):
        _check_model(name)
    _validate_exec(config)


def _check_grid_size(config: RunConfig) -> None:
    """At most MAX_REPLICAS replicas (counted from the flags, before the table is built)."""
    grid = config.grid
    levels = len(grid.noise_models) * len(grid.noise_levels) * (1 + len(grid.sizes) if grid.cross else 1)
    replicas = (levels + len(grid.sizes)) * grid.repeats * len(grid.models or (config.model.name,))
    if replicas > MAX_REPLICAS:
        raise ConfigError(
            f"the grid would train up to {replicas} replicas, more than {MAX_REPLICAS}; lower --repeats or give "
            "fewer --noise levels, --sizes, --noise-model or --models"
        )


def _check_noise_model(name: str) -> None:
    noise.validate_noise_model(name)


def _check_model(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")


def _validate_exec(config: RunConfig) -> None:
    run = config.exec
    if run.replica_strategy not in KNOWN_STRATEGIES:
        raise ConfigError(
            f"unknown replica strategy {run.replica_strategy!r}; choose one of: {', '.join(KNOWN_STRATEGIES)}"
        )
    if run.slots < 0 or run.steps_per_call < 0 or run.unroll < 0 or run.loop_group < 0:
        raise ConfigError("slots, steps per call, unroll and loop group must be >= 0 (0 picks a default)")
    if run.eval_batch < 1:
        raise ConfigError(f"eval batch is {run.eval_batch}; it must be at least 1")
    if not run.checkpoint_seconds >= 0:
        raise ConfigError(f"checkpoint seconds is {run.checkpoint_seconds}; give 0 (every chunk) or more")
    if not 0.0 < run.memory_fraction <= 1.0:
        raise ConfigError(
            f"--memory-fraction {run.memory_fraction} is outside (0, 1]; give the share of free device memory "
            "the slots may fill, e.g. 0.8"
        )


def validate_replicas(config: RunConfig, specs: list[ReplicaSpec], dataset: Any) -> None:
    """Checks against the loaded data: every training set fits the dataset and the batch."""
    if not specs:
        raise ConfigError("the grid has no replicas")
    numbers = [spec.replica for spec in specs]
    if numbers != list(range(len(specs))):
        raise ConfigError(f"replica numbers must be 0..{len(specs) - 1} in order; got {numbers[:8]}...")
    available = np.bincount(dataset.y_train, minlength=dataset.num_classes)
    for spec in specs:
        _validate_spec(spec, config.recipe.batch_size, available)
    recipe = config.recipe
    largest = max(spec.size for spec in specs)
    if total_steps(largest, recipe) > MAX_STEPS:
        raise ConfigError(
            f"{recipe.epochs} epochs of {largest} images in batches of {recipe.batch_size} make "
            f"{total_steps(largest, recipe)} steps, more than a replica can count ({MAX_STEPS}); lower --epochs"
        )


def _validate_spec(spec: ReplicaSpec, batch: int, available: np.ndarray) -> None:
    """One replica: sizes within the data and above the batch, rates in [0, 1], known names."""
    n_total = int(available.sum())
    where = f"replica {spec.replica}"
    size = spec.size
    if size > n_total:
        raise ConfigError(
            f"{where}: training-set size {size} exceeds the dataset's {n_total} training images; lower --sizes"
        )
    if size < batch:
        raise ConfigError(
            f"{where}: training-set size {size} is smaller than the batch size {batch}; "
            "lower --batch-size or raise --sizes"
        )
    if spec.class_sizes is not None:
        _check_per_class(where, "class_sizes", spec.class_sizes, len(available))
        for k, (want, have) in enumerate(zip(spec.class_sizes, available.tolist())):
            if not 0 <= want <= have:
                raise ConfigError(f"{where}: class {k} asks for {want} labels but the dataset has {have}")
    check_rate(spec.noise_rate)
    if spec.class_noise is not None:
        _check_per_class(where, "class_noise", spec.class_noise, len(available))
        for rate in spec.class_noise:
            check_rate(rate, f"{where}: per-class noise rate")
    if not (math.isfinite(spec.lr_scale) and spec.lr_scale > 0):
        raise ConfigError(f"{where}: lr_scale {spec.lr_scale!r} must be a positive finite number")
    _check_noise_model(spec.noise_model)
    _check_model(spec.model)


def _check_per_class(where: str, what: str, values: tuple, classes: int) -> None:
    if len(values) != classes:
        raise ConfigError(f"{where}: {what} has {len(values)} entries; the dataset has {classes} classes")


def validate_resume(out: Path, config: RunConfig) -> dict[str, Any]:
    """The stored run.json of ``out``, if ``config`` makes the same results as its config, or grows its grid
    (``GROWABLE_FIELDS``: every stored replica kept, new ones added)."""
    meta = read_meta(Path(out))
    check_stored_config(out, meta)
    try:
        stored_config = RunConfig.from_dict(meta["config"])
    except (ConfigError, TypeError, AttributeError, ValueError) as err:
        raise RunDirError(f"{Path(out) / RUN_FILE} holds an unreadable config ({err}); start a new --out") from None
    stored = {k: v for k, v in stored_config.to_dict().items() if k != "exec"}  # speed settings: results unchanged
    requested = {k: v for k, v in config.to_dict().items() if k != "exec"}
    differences = differing_fields(stored, requested)
    growable = set(GROWABLE_FIELDS) | _new_noise_inputs(stored_config)
    fixed = [f"{key}: stored {a!r}, requested {b!r}" for key, (a, b) in differences.items() if key not in growable]
    if fixed:
        listed = "; ".join(fixed[:6]) + ("; ..." if len(fixed) > 6 else "")
        raise RunDirError(
            f"{out} was started with a different config ({listed}); resume it with the flags it was "
            "started with (a grid may only grow), or just --resume --out DIR to reuse its stored config, "
            "or start a new --out"
        )
    shrunk = _shrunk_fields(stored_config, config)
    if shrunk:
        raise RunDirError(
            f"{out} holds replicas this config leaves out ({'; '.join(shrunk)}); pass the full grid (every stored "
            "noise level, size, noise model and model, at least as many repeats) to grow it, or start a new --out"
        )
    return meta


def _new_noise_inputs(stored: RunConfig) -> set[str]:
    """The noise inputs a grown grid may add: a --noise-matrix when the run had no matrix noise model, the
    --human-labels when it had no human noise model."""
    models = stored.grid.noise_models
    fields = set() if "matrix" in models else {"grid.noise_matrix"}
    return fields | (set() if any(noise.is_human_model(m) for m in models) else {"data.human_labels"})


def _shrunk_fields(stored: RunConfig, requested: RunConfig) -> list[str]:
    """The grid fields that drop something the stored grid has, as 'field: stored X, requested Y'."""
    a, b = stored.grid, requested.grid
    checks = {
        "grid.noise_levels": (a.noise_levels, b.noise_levels, _dropped(a.noise_levels, b.noise_levels)),
        "grid.sizes": (a.sizes, b.sizes, _dropped(a.sizes, b.sizes)),
        "grid.noise_models": (a.noise_models, b.noise_models, _dropped(a.noise_models, b.noise_models)),
        "grid.models": (_models(stored), _models(requested), _dropped(_models(stored), _models(requested))),
        "grid.repeats": (a.repeats, b.repeats, b.repeats < a.repeats),
        "grid.cross": (a.cross, b.cross, a.cross and not b.cross),
    }
    return [f"{key}: stored {_shown(old)}, requested {_shown(new)}" for key, (old, new, lost) in checks.items() if lost]


def _dropped(old: tuple, new: tuple) -> bool:
    """Whether ``new`` lacks a value of ``old`` (rates compared as replicas.csv keeps them)."""
    key = lambda v: f"{v:.6g}" if isinstance(v, float) else v  # noqa: E731
    return bool({key(v) for v in old} - {key(v) for v in new})


def _models(config: RunConfig) -> tuple[str, ...]:
    return config.grid.models or (config.model.name,)


def _shown(value: Any) -> str:
    """A grid value as its flag takes it: lists comma-separated, an empty one 'none'."""
    if not isinstance(value, tuple):
        return str(value)
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"


def estimate_result_bytes(replicas: int, classes: int, checkpoint_bytes: int) -> int:
    """Disk the run directory needs: two (R, C, C) int64 arrays, the table, a checkpoint, slack."""
    return 2 * replicas * classes * classes * 8 + replicas * 512 + checkpoint_bytes + (1 << 20)


def validate_output(out: Path, resume: bool) -> None:
    """The output directory can be written, holds no run unless resuming, and has room for a
    small run (``check_room`` checks the whole run's need once the grid is known)."""
    out = Path(out)
    _check_run_presence(out, resume)
    existing = _existing_folder(out)
    if not os.access(existing, os.W_OK):
        raise RunDirError(f"cannot write to {existing} (no write permission); choose another --out")
    check_room(out)


def _existing_folder(out: Path) -> Path:
    """``out`` or its nearest existing parent folder."""
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"cannot create {out}: {existing} is a file, not a folder; choose another --out")
    return existing


def check_room(out: Path, needed_bytes: int = 1 << 20) -> None:
    """The disk under ``out`` has room for ``needed_bytes`` of results."""
    existing = _existing_folder(Path(out))
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise RunDirError(
            f"only {free / 1e6:.1f} MB free at {existing}, the results need about {needed_bytes / 1e6:.1f} MB; "
            "free some space or choose another --out"
        )


def _check_run_presence(out: Path, resume: bool) -> None:
    """A fresh run needs a directory without a run or results (what a creation stopped before any
    replica trained left is removed once the run holds the folder); --resume needs one with a run."""
    if (out / RUN_FILE).exists():
        if not resume:
            raise RunDirError(f"{out} already holds a run; pass --resume to continue it, or choose a new --out")
        return
    leftovers = run_leftovers(out)
    if leftovers and not trained_nothing(out):
        raise results_without_run_file(out)
    if resume and leftovers:
        raise RunDirError(
            f"--resume: {out} holds only the start of a run that was stopped while it was being created, before "
            f"any replica trained (no {RUN_FILE}); run the same command without --resume to start it afresh "
            "(the leftovers are removed)"
        )
    if resume:
        raise RunDirError(f"--resume: {out} holds no run (no {RUN_FILE}); drop --resume to start one")
