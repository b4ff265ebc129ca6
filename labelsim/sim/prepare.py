"""Per-replica training data on the host: the subset (volume) and its noisy labels (quality).

A replica may set its training records and noise per group of records (``ReplicaSpec.per_group``):
per class, or per group of a named grouping whose ids (one per training record, 0..G-1) come with
the run's noise inputs (``grouping_inputs``). Per-class fields are the grouping by label; one group
per class with ids equal to the labels trains exactly as the per-class replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from labelsim.sim import noise
from labelsim.config import ConfigError, ReplicaSpec
from labelsim.sim.grid import ReplicaKeys, numpy_rng

GROUPING_INPUT = "grouping:"  # prefix of a grouping's key among a run's noise inputs


class PreparedReplica(NamedTuple):
    """What one replica trains on."""

    subset: np.ndarray  # (n,) dataset indices, int32
    labels: np.ndarray  # (n,) noisy labels of those indices, int32
    realized_noise: float  # fraction of the subset's labels that changed
    transitions: np.ndarray  # (C, C) counts of (clean, noisy) over the subset


def grouping_inputs(groupings: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Named per-record groupings of the training set as noise inputs of a run (fingerprinted and
    checked on --resume like the others)."""
    return {GROUPING_INPUT + name: np.asarray(ids, np.int64) for name, ids in (groupings or {}).items()}


def _split_inputs(noise_kwargs: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(the noise models' own inputs, the groupings by name)."""
    kwargs, groupings = {}, {}
    for key, value in (noise_kwargs or {}).items():
        if key.startswith(GROUPING_INPUT):
            groupings[key.removeprefix(GROUPING_INPUT)] = np.asarray(value)
        else:
            kwargs[key] = value
    return kwargs, groupings


def group_ids(spec: ReplicaSpec, clean: np.ndarray, groupings: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Group id of every training record for the replica's per-group fields (its clean labels for
    the grouping by label); None for a replica without them."""
    per_class = spec.class_sizes is not None or spec.class_noise is not None
    per_group = spec.group_sizes is not None or spec.group_noise is not None
    if per_class and per_group:
        raise ConfigError(f"replica {spec.replica} gives both per-class and per-group sizes or noise; "
                          f"give one of them (per-class is the grouping {ReplicaSpec.LABELS!r})")
    if not per_group:
        return clean if per_class else None
    name = spec.grouping
    if not name:
        raise ConfigError(f"replica {spec.replica} gives per-group sizes or noise but no grouping; name "
                          f"the grouping they follow ({ReplicaSpec.LABELS!r} for the classes)")
    if name == ReplicaSpec.LABELS:
        return clean
    if name not in groupings:
        known = ", ".join(sorted(groupings)) or "none"
        raise ConfigError(f"replica {spec.replica} follows the grouping {name!r}, which the run was not given "
                          f"(given: {known}); pass its per-record ids to run_grid(groupings=...)")
    ids = groupings[name]
    if ids.shape != clean.shape:
        raise ConfigError(f"grouping {name!r} has {ids.size} ids for the dataset's {clean.size} training "
                          "records; give one group id per training record")
    return ids


def _check_group_count(spec: ReplicaSpec, ids: np.ndarray, values: tuple | None, what: str) -> None:
    if values is None:
        return
    top = int(ids.max(initial=-1))
    if ids.min(initial=0) < 0 or top + 1 != len(values):
        raise ConfigError(f"replica {spec.replica}: {what} has {len(values)} entries but the grouping "
                          f"{spec.per_group!r} has {top + 1} groups (ids 0..{top}); give one entry per group")


def choose_subset(
    spec: ReplicaSpec, clean: np.ndarray, num_classes: int, rng: np.random.Generator, stratified: bool,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Dataset indices a replica trains on: uniform, stratified, or exact per-class or per-group counts
    (``groups``: the replica's per-record group ids, ``group_ids``)."""
    n_total = len(clean)
    sizes = spec.per_group_sizes
    if sizes is not None:
        ids = clean if groups is None else groups
        what = "class" if spec.per_group == ReplicaSpec.LABELS else f"group of {spec.per_group!r}"
        return _per_group_subset(ids, np.asarray(sizes), rng, what)
    if spec.train_size > n_total:
        raise ConfigError(f"training-set size {spec.train_size} exceeds the dataset's {n_total} images")
    if spec.train_size == n_total:
        return np.arange(n_total)
    if stratified:
        counts = np.bincount(clean, minlength=num_classes)
        quota = noise.largest_remainder(spec.train_size, counts / n_total)
        return _per_group_subset(clean, quota, rng, "class")
    return np.sort(rng.choice(n_total, size=spec.train_size, replace=False))


def _per_group_subset(groups: np.ndarray, sizes: np.ndarray, rng: np.random.Generator, what: str) -> np.ndarray:
    parts = []
    for k, size in enumerate(sizes):
        members = np.flatnonzero(groups == k)
        if size > len(members):
            raise ConfigError(f"{what} {k} asks for {size} labels but the dataset has {len(members)}")
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
    """Subset, then corrupt the subset's labels: the study's order of operations. ``noise_kwargs``
    holds the noise models' inputs and the run's groupings (``grouping_inputs``)."""
    kwargs, groupings = _split_inputs(noise_kwargs)
    groups = group_ids(spec, clean, groupings)
    if groups is not None:
        _check_group_count(spec, groups, spec.per_group_sizes, "its per-group sizes")
        _check_group_count(spec, groups, spec.per_group_noise, "its per-group noise")
    subset = choose_subset(spec, clean, num_classes, numpy_rng(keys.subset), stratified, groups)
    clean_sub = clean[subset]
    if "human" in kwargs and kwargs["human"] is not None:
        kwargs["human"] = np.asarray(kwargs["human"])[subset]
    rates = spec.per_group_noise
    if rates is not None and spec.per_group == ReplicaSpec.LABELS:
        kwargs["class_rates"] = np.asarray(rates)
    elif rates is not None:
        kwargs.update(group_rates=np.asarray(rates), groups=groups[subset])
    noisy = noise.corrupt(spec.noise_model, clean_sub, spec.noise_rate, numpy_rng(keys.noise), num_classes, **kwargs)
    return PreparedReplica(
        subset=subset.astype(np.int32),
        labels=noisy.astype(np.int32),
        realized_noise=noise.realized_noise(clean_sub, noisy),
        transitions=noise.transition_counts(clean_sub, noisy, num_classes),
    )
