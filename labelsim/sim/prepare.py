"""Per-replica training data on the host: the subset (volume) and its noisy labels (quality)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from labelsim.sim import noise
from labelsim.config import ConfigError, ReplicaSpec
from labelsim.sim.grid import ReplicaKeys, numpy_rng


class PreparedReplica(NamedTuple):
    """What one replica trains on."""

    subset: np.ndarray  # (n,) dataset indices, int32
    labels: np.ndarray  # (n,) noisy labels of those indices, int32
    realized_noise: float  # fraction of the subset's labels that changed
    transitions: np.ndarray  # (C, C) counts of (clean, noisy) over the subset


def choose_subset(
    spec: ReplicaSpec, clean: np.ndarray, num_classes: int, rng: np.random.Generator, stratified: bool
) -> np.ndarray:
    """Dataset indices a replica trains on: uniform, stratified, or exact per-class counts."""
    n_total = len(clean)
    if spec.class_sizes is not None:
        return _per_class_subset(clean, np.asarray(spec.class_sizes), rng)
    if spec.train_size > n_total:
        raise ConfigError(f"training-set size {spec.train_size} exceeds the dataset's {n_total} images")
    if spec.train_size == n_total:
        return np.arange(n_total)
    if stratified:
        counts = np.bincount(clean, minlength=num_classes)
        quota = noise.largest_remainder(spec.train_size, counts / n_total)
        return _per_class_subset(clean, quota, rng)
    return np.sort(rng.choice(n_total, size=spec.train_size, replace=False))


def _per_class_subset(clean: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    parts = []
    for k, size in enumerate(sizes):
        members = np.flatnonzero(clean == k)
        if size > len(members):
            raise ConfigError(f"class {k} asks for {size} labels but the dataset has {len(members)}")
        parts.append(rng.choice(members, size=int(size), replace=False))
    return np.sort(np.concatenate(parts))


def prepare_replica(
    spec: ReplicaSpec,
    keys: ReplicaKeys,
    clean: np.ndarray,
    num_classes: int,
    *,
    stratified: bool = False,
    noise_kwargs: dict[str, Any] | None = None,
) -> PreparedReplica:
    """Subset, then corrupt the subset's labels: the study's order of operations."""
    subset = choose_subset(spec, clean, num_classes, numpy_rng(keys.subset), stratified)
    clean_sub = clean[subset]
    kwargs = dict(noise_kwargs or {})
    if "human" in kwargs and kwargs["human"] is not None:
        kwargs["human"] = np.asarray(kwargs["human"])[subset]
    noisy = noise.corrupt(
        spec.noise_model,
        clean_sub,
        spec.noise_rate,
        numpy_rng(keys.noise),
        num_classes,
        class_rates=None if spec.class_noise is None else np.asarray(spec.class_noise),
        **kwargs,
    )
    return PreparedReplica(
        subset=subset.astype(np.int32),
        labels=noisy.astype(np.int32),
        realized_noise=noise.realized_noise(clean_sub, noisy),
        transitions=noise.transition_counts(clean_sub, noisy, num_classes),
    )
