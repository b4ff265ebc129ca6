"""Label corruption protocols: pure numpy functions of one replica's labels and generator.

Every protocol is exact in its counts: it corrupts ``round(rate * n)`` records (per class
where the protocol is per class, with largest-remainder rounding for a transition matrix),
never a Bernoulli draw per record. See ``NOISE_MODELS`` for the names ``corrupt`` accepts.

About 530 lines, on purpose: the protocols share their exact-count helpers (largest
remainder, move counts, per-class choice) and one dispatch table, and read best side by side.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from labelsim.config import ConfigError, check_rate
from labelsim.sim.human_labels import HUMAN_SETS

# The usual asymmetric CIFAR-10 flips (source class -> target class), as in Patrini et al.
# 2017: truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
CIFAR10_SEMANTIC_FLIPS: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

# Human labels that disagree with the clean ones on more than this fraction of records
# cannot be CIFAR-10N aligned with them (its worst set is 40% wrong; random labels, 90%).
HUMAN_MISALIGNED = 0.7

ROW_SUM_TOLERANCE = 1e-6

NOISE_MODELS: dict[str, str] = {
    "shuffle": "the study's protocol: round(r*n) records, any class, have their labels "
    "permuted among themselves (a label may land on its own class; the histogram is kept)",
    "symmetric": "round(r*n) records, any class, each move to another class drawn uniformly",
    "pairflip": "round(r*n_k) records of each class k move to class (k+1) mod C",
    "cifar10-semantic": "round(r*n_k) records of truck, bird, deer, cat, dog move to "
    "automobile, airplane, horse, dog, cat (CIFAR-10 only; other classes untouched)",
    "matrix": "class k's records are split by the rows of T_r = (1-r) I + r T, T given as "
    "matrix= (rows sum to 1); level 1.0 replays T itself",
    "human": "same as human-worse",
    **{
        f"human-{name}": f"round(r*n) records take their CIFAR-10N '{name}' human label "
        "(human= required); level 1.0 replaces every label with that set"
        for name in HUMAN_SETS
    },
}
"""Noise model name -> what a grid level r does. ``n`` is the training subset's size and
``n_k`` its count of class k. With ``class_rates`` (one rate per class) every model applies
rate r_k to class k's records instead; ``shuffle`` and ``symmetric`` then both become the
per-class symmetric protocol. Human models replay real annotators: humans are often right,
so the realized noise (labels actually changed) is below r, about r times the set's own
disagreement (aggre 9.01%, random1-3 17-18%, worse 40.21%)."""

HUMAN_MODELS = tuple(name for name in NOISE_MODELS if name.startswith("human"))


def validate_noise_model(name: str) -> str:
    """The name itself if ``corrupt`` knows it, else a ConfigError listing the valid names."""
    if name not in NOISE_MODELS:
        raise ConfigError(
            f"unknown noise model {name!r}; choose one of: {', '.join(NOISE_MODELS)}"
        )
    return name


def is_human_model(name: str) -> bool:
    """Whether the noise model replays CIFAR-10N human labels (it needs ``human=``)."""
    return name in HUMAN_MODELS


def human_set(name: str) -> str:
    """The CIFAR-10N set a human noise model replays (``human`` -> ``worse``)."""
    if not is_human_model(validate_noise_model(name)):
        raise ConfigError(f"noise model {name!r} does not use human labels")
    return "worse" if name == "human" else name.removeprefix("human-")


def shuffle_labels(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """The reference study's protocol: pick round(rate * n) records regardless of class and
    randomly permute the labels among them (a permuted label may land on its own class)."""
    noisy = labels.copy()
    count = int(round(rate * len(labels)))
    chosen = rng.choice(len(labels), size=count, replace=False)
    noisy[chosen] = labels[rng.permutation(chosen)]
    return noisy


def symmetric_labels(
    labels: np.ndarray, rate: float, rng: np.random.Generator, num_classes: int
) -> np.ndarray:
    """round(rate * n) records regardless of class, each moved to a different class chosen
    uniformly among the other classes."""
    noisy = labels.copy()
    count = int(round(rate * len(labels)))
    chosen = rng.choice(len(labels), size=count, replace=False)
    offset = rng.integers(1, num_classes, size=count)  # never 0: always another class
    noisy[chosen] = (labels[chosen] + offset) % num_classes
    return noisy


def per_class_symmetric(
    labels: np.ndarray, class_rates: np.ndarray, rng: np.random.Generator, num_classes: int
) -> np.ndarray:
    """Each class k has round(class_rates[k] * n_k) of its records moved to a different class,
    chosen uniformly among the other classes: ``per_group_symmetric`` grouped by label."""
    return per_group_symmetric(labels, labels, class_rates, rng, num_classes)


def per_group_symmetric(
    labels: np.ndarray, groups: np.ndarray, group_rates: np.ndarray, rng: np.random.Generator, num_classes: int
) -> np.ndarray:
    """Each group g (``groups``: a group id per record) has round(group_rates[g] * n_g) of its
    records moved to a different class, chosen uniformly among the other classes; records of other
    groups keep their labels."""
    noisy = labels.copy()
    for g, rate in enumerate(group_rates):
        members = np.flatnonzero(groups == g)
        count = int(round(float(rate) * len(members)))
        chosen = rng.choice(members, size=count, replace=False)
        offset = rng.integers(1, num_classes, size=count)  # never 0: always another class
        noisy[chosen] = (labels[chosen] + offset) % num_classes
    return noisy


def largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    """Non-negative integers summing to ``total``, each the floor or ceiling of
    ``total * shares`` (``shares`` sum to 1); ties go to the lower index."""
    quotas = total * np.asarray(shares, np.float64)
    counts = np.floor(quotas).astype(np.int64)
    short = int(total - counts.sum())
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def move_counts(
    labels: np.ndarray, rng: np.random.Generator, moves: np.ndarray
) -> np.ndarray:
    """Apply a (C, C) count plan: ``moves[k, j]`` records of class k, drawn uniformly, get
    label j (the diagonal is ignored: those records keep their label)."""
    noisy = labels.copy()
    for k in range(moves.shape[0]):
        members = rng.permutation(np.flatnonzero(labels == k))
        targets = np.flatnonzero((moves[k] > 0) & (np.arange(moves.shape[1]) != k))
        if moves[k, targets].sum() > len(members):
            raise ConfigError(f"class {k} has {len(members)} records; fewer can move")
        start = 0
        for j in targets:
            stop = start + int(moves[k, j])
            noisy[members[start:stop]] = j
            start = stop
    return noisy


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Records per class, n_k."""
    return np.bincount(labels, minlength=num_classes)[:num_classes]


def _rates(rate: float, class_rates: np.ndarray | None, num_classes: int) -> np.ndarray:
    """One rate per class: ``class_rates`` if given, else ``rate`` for every class (``corrupt``
    has checked them)."""
    if class_rates is None:
        return np.full(num_classes, float(rate))
    return np.asarray(class_rates, np.float64)


def _checked_class_rates(class_rates: np.ndarray, num_classes: int) -> np.ndarray:
    """One rate in [0, 1] per class, or a ConfigError naming the class."""
    class_rates = np.asarray(class_rates, np.float64)
    if class_rates.shape != (num_classes,):
        raise ConfigError(
            f"class_rates has shape {class_rates.shape}; give one rate per class ({num_classes})"
        )
    for k, value in enumerate(class_rates):
        check_rate(float(value), f"noise rate of class {k}")
    return class_rates


def pairflip_labels(
    labels: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    class_rates: np.ndarray | None = None,
) -> np.ndarray:
    """round(r_k * n_k) records of each class k move to class (k + 1) mod C."""
    targets = {k: (k + 1) % num_classes for k in range(num_classes)}
    return _flip_classes(labels, _rates(rate, class_rates, num_classes), rng, num_classes, targets)


def _flip_classes(
    labels: np.ndarray, rates: np.ndarray, rng: np.random.Generator, num_classes: int, targets: dict[int, int]
) -> np.ndarray:
    """round(rates[k] * n_k) records of each source class k move to ``targets[k]``."""
    n_k = class_counts(labels, num_classes)
    moves = np.zeros((num_classes, num_classes), np.int64)
    for source, target in targets.items():
        moves[source, target] = int(round(rates[source] * n_k[source]))
    return move_counts(labels, rng, moves)


def cifar10_semantic_labels(
    labels: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    class_rates: np.ndarray | None = None,
) -> np.ndarray:
    """round(r_k * n_k) records of each source class flip to its look-alike: truck ->
    automobile, bird -> airplane, deer -> horse, cat <-> dog; other classes are untouched,
    so the realized overall rate is r times the source classes' share of the records."""
    if num_classes != 10:
        raise ConfigError(
            f"noise model 'cifar10-semantic' needs CIFAR-10's 10 classes, not {num_classes}; "
            "use 'pairflip' or 'matrix' for other datasets"
        )
    rates = _rates(rate, class_rates, num_classes)
    return _flip_classes(labels, rates, rng, num_classes, dict(CIFAR10_SEMANTIC_FLIPS))


def check_matrix(matrix: np.ndarray, num_classes: int) -> np.ndarray:
    """A validated float64 (C, C) row-stochastic matrix, rows renormalized to sum to 1."""
    try:
        matrix = np.asarray(matrix, np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"the transition matrix is not numeric: {err}") from err
    if matrix.shape != (num_classes, num_classes):
        raise ConfigError(
            f"the transition matrix has shape {matrix.shape}; give a ({num_classes}, "
            f"{num_classes}) matrix, row k = where class k's labels go"
        )
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ConfigError("the transition matrix has negative or non-finite entries; "
                          "give probabilities in [0, 1]")
    sums = matrix.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if len(bad):
        raise ConfigError(
            f"rows {bad.tolist()} of the transition matrix sum to {sums[bad].round(6).tolist()}, "
            "not 1; each row k must be the distribution of class k's noisy label"
        )
    return matrix / sums[:, None]


def scaled_matrix(matrix: np.ndarray, rate: float) -> np.ndarray:
    """T_r = (1 - r) I + r T: the off-diagonal mass scaled by r; T_1 = T, T_0 = I."""
    scaled = rate * np.asarray(matrix, np.float64)
    np.fill_diagonal(scaled, 0.0)
    np.fill_diagonal(scaled, 1.0 - scaled.sum(axis=1))
    return scaled


def matrix_moves(
    labels: np.ndarray, matrix: np.ndarray, rates: np.ndarray
) -> np.ndarray:
    """(C, C) counts: row k = largest-remainder rounding of n_k * T_{r_k}[k]."""
    num_classes = matrix.shape[0]
    n_k = class_counts(labels, num_classes)
    moves = np.zeros((num_classes, num_classes), np.int64)
    for k in range(num_classes):
        moves[k] = largest_remainder(int(n_k[k]), scaled_matrix(matrix, float(rates[k]))[k])
    return moves


def matrix_labels(
    labels: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    matrix: np.ndarray,
    class_rates: np.ndarray | None = None,
) -> np.ndarray:
    """Class k's records split exactly (largest remainder) by row k of T_r = (1-r) I + r T.

    Level r scales T's off-diagonal mass by r, so level 1.0 replays T itself and the identity
    changes nothing; the realized rate of class k is r * (1 - T[k, k])."""
    matrix = check_matrix(matrix, np.asarray(matrix).shape[0])
    rates = _rates(rate, class_rates, matrix.shape[0])
    return move_counts(labels, rng, matrix_moves(labels, matrix, rates))


def load_matrix(path: str | Path) -> np.ndarray:
    """A transition matrix from a .npy, .csv (comma-separated rows) or .json (list of rows)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"transition matrix file {str(path)!r} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            matrix = np.load(path, allow_pickle=False)
        elif suffix == ".csv":
            matrix = np.loadtxt(path, delimiter=",", ndmin=2)
        elif suffix == ".json":
            matrix = np.asarray(json.loads(path.read_text()), np.float64)
        else:
            raise ConfigError(
                f"transition matrix file {str(path)!r}: use a .npy, .csv or .json file"
            )
    except (ValueError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read the transition matrix {str(path)!r}: {err}") from err
    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ConfigError(f"the transition matrix in {str(path)!r} has shape {matrix.shape}; "
                          "it must be square (C x C)")
    return check_matrix(matrix, matrix.shape[0])


def human_mix_labels(
    labels: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    human: np.ndarray,
    class_rates: np.ndarray | None = None,
    num_classes: int = 10,
) -> np.ndarray:
    """round(r * n) records chosen uniformly (round(r_k * n_k) per class with
    ``class_rates``) take their human label; at level 1.0 every label is the human one.

    Humans are often right, so the realized noise is below r: about r times the human set's
    own disagreement with the clean labels."""
    noisy = labels.copy()
    if class_rates is None:
        count = int(round(rate * len(labels)))
        chosen = rng.choice(len(labels), size=count, replace=False)
    else:
        chosen = _choose_per_class(labels, _rates(rate, class_rates, num_classes), rng)
    noisy[chosen] = human[chosen]
    return noisy


def _choose_per_class(
    labels: np.ndarray, rates: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """round(rates[k] * n_k) records of each class k, drawn uniformly within the class."""
    parts = []
    for k, rate in enumerate(rates):
        members = np.flatnonzero(labels == k)
        parts.append(rng.choice(members, size=int(round(rate * len(members))), replace=False))
    return np.concatenate(parts).astype(np.int64)


def _human_array(
    noise_model: str, labels: np.ndarray, human: np.ndarray | Mapping[str, np.ndarray] | None
) -> np.ndarray:
    """The human labels the model replays, aligned with ``labels``, or a ConfigError."""
    if human is None:
        raise ConfigError(
            f"noise model {noise_model!r} replays CIFAR-10N human labels: pass the CIFAR-10N "
            "labels file (e.g. --human-labels PATH to labels.npz); it applies only to CIFAR-10 "
            "training images in their original order"
        )
    if not isinstance(human, Mapping) and np.asarray(human).dtype.names:
        human = {name: np.asarray(human)[name] for name in np.asarray(human).dtype.names}
    if isinstance(human, Mapping):
        human = _pick_human_set(noise_model, labels, human)
    human = np.asarray(human)
    if human.shape != labels.shape:
        raise ConfigError(
            f"human labels have shape {human.shape} but the labels {labels.shape}: pass the "
            "human labels of the training subset (the same dataset indices, same order)"
        )
    if len(labels) >= 100 and np.mean(human != labels) > HUMAN_MISALIGNED:
        raise ConfigError(
            f"the human labels disagree with the clean labels on {np.mean(human != labels):.0%} "
            "of records: they are not aligned with this dataset (CIFAR-10N follows the "
            "original CIFAR-10 training order, not TFDS's)"
        )
    return human.astype(labels.dtype)


def _pick_human_set(
    noise_model: str, labels: np.ndarray, sets: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The model's set from a name -> labels mapping, after checking its ``clean`` labels."""
    if "clean" in sets and not np.array_equal(np.asarray(sets["clean"]), labels):
        raise ConfigError(
            "the CIFAR-10N clean labels differ from the training labels: the human labels "
            "are not aligned with the dataset; use CIFAR-10 in its original order and "
            "index the human labels with the training subset's dataset indices"
        )
    name = human_set(noise_model)
    if name not in sets:
        raise ConfigError(
            f"the human labels lack the set {name!r} that {noise_model!r} replays; "
            "load them with labelsim.sim.human_labels.load_human_labels"
        )
    return np.asarray(sets[name])


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """1-D integer labels in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"labels must be a 1-D integer array, not {labels.dtype}{labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"labels must lie in [0, {num_classes}); check num_classes")
    return labels


class NoiseInputs(NamedTuple):
    """Everything a protocol may read, gathered by ``corrupt``."""

    name: str
    labels: np.ndarray
    rate: float
    rng: np.random.Generator
    num_classes: int
    class_rates: np.ndarray | None
    matrix: np.ndarray | None
    human: np.ndarray | Mapping[str, np.ndarray] | None


def _shuffle(a: NoiseInputs) -> np.ndarray:
    if a.class_rates is not None:
        return per_class_symmetric(a.labels, a.class_rates, a.rng, a.num_classes)
    return shuffle_labels(a.labels, a.rate, a.rng)


def _symmetric(a: NoiseInputs) -> np.ndarray:
    if a.class_rates is not None:
        return per_class_symmetric(a.labels, a.class_rates, a.rng, a.num_classes)
    return symmetric_labels(a.labels, a.rate, a.rng, a.num_classes)


def _pairflip(a: NoiseInputs) -> np.ndarray:
    return pairflip_labels(a.labels, a.rate, a.rng, a.num_classes, a.class_rates)


def _semantic(a: NoiseInputs) -> np.ndarray:
    return cifar10_semantic_labels(a.labels, a.rate, a.rng, a.num_classes, a.class_rates)


def _matrix(a: NoiseInputs) -> np.ndarray:
    if a.matrix is None:
        raise ConfigError(
            "noise model 'matrix' needs a transition matrix: pass matrix= (e.g. from "
            "load_matrix(PATH) of a .npy/.csv/.json C x C row-stochastic matrix)"
        )
    matrix = check_matrix(a.matrix, a.num_classes)
    return matrix_labels(a.labels, a.rate, a.rng, matrix, a.class_rates)


def _human(a: NoiseInputs) -> np.ndarray:
    replay = _human_array(a.name, a.labels, a.human)
    return human_mix_labels(a.labels, a.rate, a.rng, replay, a.class_rates, a.num_classes)


_CORRUPTORS: dict[str, Callable[[NoiseInputs], np.ndarray]] = {
    "shuffle": _shuffle,
    "symmetric": _symmetric,
    "pairflip": _pairflip,
    "cifar10-semantic": _semantic,
    "matrix": _matrix,
    **{name: _human for name in HUMAN_MODELS},
}


def corrupt(
    noise_model: str,
    labels: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    *,
    class_rates: np.ndarray | None = None,
    matrix: np.ndarray | None = None,
    human: np.ndarray | Mapping[str, np.ndarray] | None = None,
    groups: np.ndarray | None = None,
    group_rates: np.ndarray | None = None,
) -> np.ndarray:
    """Noisy copy of ``labels`` (the training subset's clean labels) under one protocol.

    ``class_rates``, when given, replaces ``rate`` with one rate per class. ``group_rates`` with
    ``groups`` (a group id 0..G-1 per record) replaces it with one rate per group of any grouping,
    for the ``shuffle`` and ``symmetric`` models (both then the per-group symmetric protocol). ``matrix`` is the
    (C, C) transition matrix of the ``matrix`` model. ``human`` is, for the human models, the
    human labels aligned with ``labels``: the replayed set's array, or a mapping of set name ->
    array or a structured array with a field per set (``human_labels.human_label_arrays``
    indexed with the subset); from those the model's set is picked and, if present, ``clean``
    must equal ``labels``. See ``NOISE_MODELS`` for the names.
    """
    validate_noise_model(noise_model)
    labels = _check_labels(labels, num_classes)
    if group_rates is not None:
        return _per_group(noise_model, labels, rng, num_classes, groups, group_rates)
    # The one check of rates on the library's side (a run's config is checked before it
    # starts, by labelsim.sim.validate); the protocols below take them as given.
    if class_rates is not None:
        class_rates = _checked_class_rates(class_rates, num_classes)
    else:
        rate = check_rate(rate)
    inputs = NoiseInputs(noise_model, labels, rate, rng, num_classes, class_rates, matrix, human)
    return _CORRUPTORS[noise_model](inputs)


def _per_group(
    noise_model: str, labels: np.ndarray, rng: np.random.Generator, num_classes: int,
    groups: np.ndarray | None, group_rates: np.ndarray,
) -> np.ndarray:
    """``corrupt`` with one rate per group: checked, then the per-group symmetric protocol."""
    if noise_model not in ("shuffle", "symmetric"):
        raise ConfigError(f"per-group noise rates work with the shuffle or symmetric noise model, not "
                          f"{noise_model!r}; use per-class rates (class_rates) with {noise_model!r}")
    group_rates = np.asarray(group_rates, np.float64)
    if groups is None or np.shape(groups) != labels.shape:
        raise ConfigError("per-group noise rates need groups=, one group id per label")
    groups = np.asarray(groups)
    if group_rates.ndim != 1 or (len(groups) and not 0 <= groups.min() <= groups.max() < len(group_rates)):
        raise ConfigError(f"group ids must lie in 0..{len(group_rates) - 1}: give one rate per group")
    for value in group_rates:
        check_rate(float(value), "per-group noise rate")
    return per_group_symmetric(labels, groups, group_rates, rng, num_classes)


def realized_noise(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Fraction of labels that actually changed."""
    return float(np.mean(clean != noisy)) if len(clean) else 0.0


def transition_counts(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts of (clean class, noisy class) pairs."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (clean, noisy), 1)
    return counts
