"""Input validation before any training starts: every check names what to change."""

from __future__ import annotations

import shutil
from pathlib import Path

from labelsim.config import ConfigError, ReplicaSpec, RunConfig, check_rate
from labelsim.results import RUN_FILE, RunDirError

KNOWN_STRATEGIES = ("auto", "vmap", "map", "loop")


def validate_config(config: RunConfig) -> None:
    """Checks that need no data: rates, counts, names."""
    from labelsim import noise
    from labelsim.models import MODELS

    grid, recipe = config.grid, config.recipe
    for rate in grid.noise_levels:
        check_rate(rate)
    if grid.repeats < 1:
        raise ConfigError(f"repeats is {grid.repeats}; it must be at least 1")
    if recipe.epochs < 1:
        raise ConfigError(f"epochs is {recipe.epochs}; it must be at least 1")
    if recipe.batch_size < 1:
        raise ConfigError(f"batch size is {recipe.batch_size}; it must be at least 1")
    if not grid.noise_levels and not grid.sizes:
        raise ConfigError("the grid is empty: give --noise levels and/or --sizes")
    if not grid.noise_models:
        raise ConfigError("no noise model given; use e.g. --noise-model shuffle")
    for name in grid.noise_models:
        noise.validate_noise_model(name)
    for name in grid.models or (config.model.name,):
        if name not in MODELS:
            raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    if config.exec.replica_strategy not in KNOWN_STRATEGIES:
        raise ConfigError(
            f"unknown replica strategy {config.exec.replica_strategy!r}; choose one of: {', '.join(KNOWN_STRATEGIES)}"
        )
    if config.exec.slots < 0 or config.exec.steps_per_call < 0:
        raise ConfigError("slots and steps per call must be >= 0 (0 picks a default)")


def validate_replicas(config: RunConfig, specs: list[ReplicaSpec], dataset: object) -> None:
    """Checks against the loaded data: every training set fits the dataset and the batch."""
    n_total = len(dataset.y_train)  # type: ignore[attr-defined]
    batch = config.recipe.batch_size
    if not specs:
        raise ConfigError("the grid has no replicas")
    for spec in specs:
        size = sum(spec.class_sizes) if spec.class_sizes is not None else spec.train_size
        if size > n_total:
            raise ConfigError(f"training-set size {size} exceeds the dataset's {n_total} training images")
        if size < batch:
            raise ConfigError(f"training-set size {size} is smaller than the batch size {batch}; lower --batch-size")
        check_rate(spec.noise_rate)
        for rate in spec.class_noise or ():
            check_rate(rate, "per-class noise rate")


def estimate_result_bytes(replicas: int, classes: int, checkpoint_bytes: int) -> int:
    """Disk the run directory needs: two (R, C, C) int64 arrays, the table, a checkpoint, slack."""
    return 2 * replicas * classes * classes * 8 + replicas * 512 + checkpoint_bytes + (1 << 20)


def validate_output(out: Path, resume: bool, needed_bytes: int = 1 << 20) -> None:
    """The output directory can be written, holds no run unless resuming, and has room."""
    out = Path(out)
    if resume and not (out / RUN_FILE).exists():
        raise RunDirError(f"--resume: {out} holds no run (no {RUN_FILE}); drop --resume to start one")
    if not resume and (out / RUN_FILE).exists():
        raise RunDirError(f"{out} already holds a run; pass --resume to continue it, or choose a new --out")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"cannot create {out}: {existing} is a file; choose another --out")
    import os

    if not os.access(existing, os.W_OK):
        raise RunDirError(f"cannot write to {existing}; choose another --out")
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise RunDirError(
            f"only {free / 1e6:.1f} MB free at {existing}, the results need about {needed_bytes / 1e6:.1f} MB; "
            "free some space or choose another --out"
        )
