"""Units of analysis: the groups of test records whose accuracy the tables, fits and budgets follow.

A class is one kind of unit, a cluster of records (``labelsim.analysis.by_cluster``) another. Both
reach the metrics (``metrics.point_metrics``) and the fits (``fits.fit_run``) as the same ``Units``:
correct and total test records per replica and unit, the unit's training records in each replica,
its share of the training set, and why it is left out of rankings. Classes and clusters therefore
share one code path, and one cluster per class gives exactly the per-class figures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from labelsim.rundir import Replica, Run

CLASS, CLUSTER = "class", "cluster"


@dataclass(frozen=True)
class Units:
    """Per-replica test results and training volume of each unit.

    ``correct`` and ``tests`` are (R, U): correct predictions and test records of unit u scored by
    replica r. ``train_weights`` is (C, U): a replica's training records of unit u are its
    per-class counts (``Run.per_class_counts``) times column u. ``shares`` (U,) is each unit's
    share of the training set; ``class_of`` its class index (-1 across classes); ``flags`` says
    why a unit is left out of rankings ('' when it is ranked)."""

    kind: str
    names: tuple[str, ...]
    correct: np.ndarray
    tests: np.ndarray
    train_weights: np.ndarray
    shares: np.ndarray
    class_of: tuple[int, ...]
    flags: tuple[str, ...]

    @property
    def accuracy(self) -> np.ndarray:
        """Accuracy of each replica in each unit, (R, U); NaN for a unit without test records."""
        out = np.full(self.correct.shape, np.nan)
        np.divide(self.correct, self.tests, out=out, where=self.tests != 0)
        return out

    def train_counts(self, run: Run, replicas: Sequence[Replica]) -> np.ndarray:
        """Training records of each unit in each replica, (len(replicas), U)."""
        per_class = np.array([run.per_class_counts(r) for r in replicas], dtype=float)
        return per_class.reshape(len(replicas), -1) @ self.train_weights

    def ranked(self) -> list[int]:
        """Indices of the units that enter rankings (no flag)."""
        return [k for k, flag in enumerate(self.flags) if not flag]


def class_units(run: Run) -> Units:
    """The run's classes as units, from its confusion counts (rows true class)."""
    counts = np.asarray(run.counts, dtype=float)
    c = run.num_classes
    return Units(
        kind=CLASS, names=run.classes,
        correct=np.diagonal(counts, axis1=-2, axis2=-1).copy(), tests=counts.sum(axis=-1),
        train_weights=np.eye(c), shares=np.asarray(run.class_shares, dtype=float),
        class_of=tuple(range(c)), flags=("",) * c,
    )


def ranked_conditions(units: Units, conditions: Sequence[tuple[str, Any]]) -> tuple[list, tuple[str, ...]]:
    """Named conditions (name, point metrics) with their per-unit accuracy restricted to the
    ranked units, and those units' names; unchanged when every unit is ranked."""
    keep = units.ranked()
    if len(keep) == len(units.names):
        return list(conditions), units.names
    return ([(name, ranked_point(units, pm)) for name, pm in conditions],
            tuple(units.names[k] for k in keep))


def ranked_point(units: Units, pm: Any) -> Any:
    """A point's metrics with the per-unit accuracy of the ranked units only."""
    keep = units.ranked()
    acc = pm.accuracy
    part = dataclasses.replace(acc, mean=acc.mean[keep], std=acc.std[keep], lo=acc.lo[keep],
                               hi=acc.hi[keep])
    return dataclasses.replace(pm, accuracy=part)
