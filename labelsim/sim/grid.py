"""Grid spec -> replica table, and per-replica keys folded from grid coordinates.

Keys come from coordinates, never from a replica's position in the table: replicas of the
same repeat share initialization, batch order, dropout and augmentation across noise levels
and sizes (paired comparisons), and adding a grid point changes no other replica.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import jax
import numpy as np

from labelsim.config import RecipeConfig, ReplicaSpec, RunConfig, total_steps

# Stream identifiers folded into the run's base key (recorded in run.json).
STREAM_INIT, STREAM_DATA, STREAM_DROPOUT, STREAM_AUG, STREAM_SUBSET, STREAM_NOISE = range(6)

KEY_DERIVATION = {
    "base": "jax.random.PRNGKey(grid.seed)",
    "init": "fold_in(fold_in(base, 0), repeat)",
    "batch_order": "fold_in(fold_in(base, 1), repeat); epoch e permutation: fold_in(., e)",
    "dropout": "fold_in(fold_in(base, 2), repeat); step t: fold_in(., t)",
    "augment": "fold_in(fold_in(base, 3), repeat); step t: fold_in(., t)",
    "subset": "fold_in(fold_in(fold_in(base, 4), repeat), crc32(size spec))",
    "noise": "fold_in(fold_in(fold_in(base, 5), repeat), crc32(noise spec))",
}


def build_replicas(config: RunConfig, full_size: int) -> list[ReplicaSpec]:
    """Every (model, noise model, noise level, size, repeat) point of the grid, deduplicated.

    The noise grid trains on the full set, the volume grid without noise; the clean full-data
    point they share is one replica (tagged "noise"). ``cross`` adds every level x size pair.
    """
    grid = config.grid
    models = grid.models or (config.model.name,)
    points: list[tuple[str, str, float, int]] = []  # (experiment, noise_model, rate, size)
    for noise_model in grid.noise_models:
        points += [("noise", noise_model, rate, full_size) for rate in grid.noise_levels]
        if grid.cross:
            points += [
                ("cross", noise_model, rate, size)
                for rate in grid.noise_levels
                for size in grid.sizes
                if size != full_size
            ]
    points += [("volume", grid.noise_models[0], 0.0, size) for size in grid.sizes]
    specs: list[ReplicaSpec] = []
    seen: set[tuple] = set()
    for model in models:
        for experiment, noise_model, rate, size in points:
            for repeat in range(grid.repeats):
                # Noise is irrelevant at rate 0: one clean replica per (model, size, repeat).
                ident = (model, noise_model if rate > 0 else "", float(rate), size, repeat)
                if ident in seen:
                    continue
                seen.add(ident)
                specs.append(
                    ReplicaSpec(
                        replica=len(specs),
                        experiment=experiment,
                        repeat=repeat,
                        noise_model=noise_model,
                        noise_rate=float(rate),
                        train_size=int(size),
                        model=model,
                    )
                )
    return specs


def describe_replicas(specs: list[ReplicaSpec], recipe: RecipeConfig) -> list[str]:
    """The replica table in a few lines: its size and work (replica-images: the training images of every
    replica summed; replica-steps: every replica's steps over its epochs), then per experiment its replicas,
    noise levels and sizes."""
    images = sum(spec.size for spec in specs)
    steps = sum(total_steps(spec.size, recipe) for spec in specs)
    repeats = len({spec.repeat for spec in specs})
    lines = [
        f"grid: {len(specs)} replicas ({repeats} repeats), {images:,} replica-images, "
        f"{steps:,} replica-steps over {recipe.epochs} epochs"
    ]
    experiments: dict[str, list[ReplicaSpec]] = {}
    for spec in specs:
        experiments.setdefault(spec.experiment, []).append(spec)
    for experiment, group in experiments.items():
        rates = ", ".join(f"{rate:g}" for rate in sorted({spec.noise_rate for spec in group}))
        noise_models = sorted({spec.noise_model for spec in group if spec.noise_rate > 0})
        how = f" ({', '.join(noise_models)})" if noise_models else ""
        sizes = ", ".join(str(size) for size in sorted({spec.size for spec in group}))
        models = sorted({spec.model for spec in group})
        lines.append(
            f"  {experiment}: {len(group)} replicas, noise {rates}{how}, sizes {sizes}"
            + (f", models {', '.join(models)}" if len(models) > 1 else "")
        )
    return lines


def _crc(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


# Per-group sizes and rates key their streams as per-class ones do ("classes:" + the values; the
# grouping's name does not enter): one group per class, numbered as the classes, trains exactly as
# the per-class replica, and the per-class keys of earlier runs are kept.
def _size_spec(spec: ReplicaSpec) -> str:
    sizes = spec.per_group_sizes
    if sizes is not None:
        return "classes:" + ",".join(map(str, sizes))
    return f"size:{spec.train_size}"


def _noise_spec(spec: ReplicaSpec) -> str:
    rates = spec.per_group_noise
    if rates is not None:
        return "classes:" + ",".join(f"{r:.6f}" for r in rates)
    return f"{spec.noise_model}:{spec.noise_rate:.6f}"


class ReplicaKeys(NamedTuple):
    """The raw uint32 keys of one replica's random streams."""

    init: np.ndarray
    data: np.ndarray
    dropout: np.ndarray
    augment: np.ndarray
    subset: np.ndarray
    noise: np.ndarray


def replica_keys(seed: int, spec: ReplicaSpec) -> ReplicaKeys:
    """Keys of every random stream of a replica, folded from its grid coordinates."""
    base = jax.random.PRNGKey(seed)

    def stream(ident: int, *coords: int) -> np.ndarray:
        key = jax.random.fold_in(base, ident)
        for c in coords:
            key = jax.random.fold_in(key, c)
        return np.asarray(key)

    r = spec.repeat
    return ReplicaKeys(
        init=stream(STREAM_INIT, r),
        data=stream(STREAM_DATA, r),
        dropout=stream(STREAM_DROPOUT, r),
        augment=stream(STREAM_AUG, r),
        subset=stream(STREAM_SUBSET, r, _crc(_size_spec(spec))),
        noise=stream(STREAM_NOISE, r, _crc(_noise_spec(spec))),
    )


def numpy_rng(key: np.ndarray) -> np.random.Generator:
    """A numpy Generator seeded from a raw JAX key, for host-side sampling."""
    return np.random.default_rng([int(v) for v in np.asarray(key).ravel()])
