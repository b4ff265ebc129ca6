"""Label corruption protocols: pure numpy functions of one replica's labels and generator.

Every protocol is exact in its counts: it corrupts ``round(rate * n)`` records (per class
where the protocol is per class), never a Bernoulli draw per record.
"""

from __future__ import annotations

import numpy as np

from labelsim.config import ConfigError, check_rate


def shuffle_labels(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """The reference study's protocol: pick round(rate * n) records regardless of class and
    randomly permute the labels among them (a permuted label may land on its own class)."""
    rate = check_rate(rate)
    noisy = labels.copy()
    count = int(round(rate * len(labels)))
    chosen = rng.choice(len(labels), size=count, replace=False)
    noisy[chosen] = labels[rng.permutation(chosen)]
    return noisy


def per_class_symmetric(
    labels: np.ndarray, class_rates: np.ndarray, rng: np.random.Generator, num_classes: int
) -> np.ndarray:
    """Each class k has round(class_rates[k] * n_k) of its records moved to a different class,
    chosen uniformly among the other classes."""
    noisy = labels.copy()
    for k, rate in enumerate(class_rates):
        check_rate(float(rate), f"noise rate of class {k}")
        members = np.flatnonzero(labels == k)
        count = int(round(float(rate) * len(members)))
        chosen = rng.choice(members, size=count, replace=False)
        offset = rng.integers(1, num_classes, size=count)  # never 0: always another class
        noisy[chosen] = (k + offset) % num_classes
    return noisy


NOISE_MODELS = ("shuffle",)


def corrupt(
    noise_model: str,
    labels: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    *,
    class_rates: np.ndarray | None = None,
) -> np.ndarray:
    """Noisy copy of ``labels`` (the training subset's clean labels) under one protocol.

    ``class_rates``, when given, replaces ``rate`` with one rate per class.
    """
    if class_rates is not None:
        return per_class_symmetric(labels, np.asarray(class_rates, float), rng, num_classes)
    if noise_model == "shuffle":
        return shuffle_labels(labels, rate, rng)
    raise ConfigError(
        f"unknown noise model {noise_model!r}; choose one of: {', '.join(NOISE_MODELS)}"
    )


def realized_noise(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Fraction of labels that actually changed."""
    return float(np.mean(clean != noisy)) if len(clean) else 0.0


def transition_counts(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts of (clean class, noisy class) pairs."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (clean, noisy), 1)
    return counts
