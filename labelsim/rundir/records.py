"""One replica's record: its grid coordinates and results, one row of replicas.csv."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass
from typing import Any

from labelsim.config import ReplicaSpec
from labelsim.rundir.schema import COLUMNS

@dataclass(frozen=True)
class Replica:
    """One replica: its grid coordinates (a ``ReplicaSpec``) and its results so far; one row of
    replicas.csv."""

    replica: int
    experiment: str  # "noise", "volume", "cross" or "custom"
    model: str
    noise_model: str
    noise_rate: float
    train_size: int
    repeat: int
    realized_noise: float = math.nan
    accuracy: float = math.nan
    status: str = "pending"  # pending, running, finished, diverged
    steps: int = 0
    total_steps: int = 0
    diverged_step: int | None = None
    seconds: float = 0.0
    class_sizes: tuple[int, ...] | None = None
    class_noise: tuple[float, ...] | None = None
    label: str = ""
    lr_scale: float = 1.0
    grouping: str = ""
    group_sizes: tuple[int, ...] | None = None
    group_noise: tuple[float, ...] | None = None

    @classmethod
    def from_spec(cls, spec: ReplicaSpec, **results: Any) -> Replica:
        """A replica about to train (or with the given results)."""
        return cls(**dataclasses.asdict(spec), **results)

    @property
    def spec(self) -> ReplicaSpec:
        """The grid point this replica trains."""
        names = [f.name for f in dataclasses.fields(ReplicaSpec)]
        return ReplicaSpec(**{name: getattr(self, name) for name in names})

    @property
    def size(self) -> int:
        """Training records of this replica (its class sizes summed, when given)."""
        return self.spec.size

    @property
    def finished(self) -> bool:
        """True when the replica finished training and was evaluated."""
        return self.status == "finished"

    @property
    def is_custom(self) -> bool:
        """True for per-class or per-group experiments (their sizes or noise given, or 'custom')."""
        return self.experiment == "custom" or bool(self.spec.per_group)

    def to_csv(self) -> dict[str, Any]:
        """The CSV row."""
        return {
            "replica": self.replica, "experiment": self.experiment, "model": self.model,
            "noise_model": self.noise_model, "noise_rate": f"{self.noise_rate:.6g}",
            "train_size": self.train_size, "repeat": self.repeat,
            "realized_noise": _fmt(self.realized_noise), "accuracy": _fmt(self.accuracy),
            "status": self.status, "steps": self.steps, "total_steps": self.total_steps,
            "diverged_step": "" if self.diverged_step is None else self.diverged_step,
            "seconds": f"{self.seconds:.3f}",
            "class_sizes": "" if self.class_sizes is None else ";".join(map(str, self.class_sizes)),
            "class_noise": "" if self.class_noise is None else ";".join(f"{r:.6g}" for r in self.class_noise),
            "label": self.label, "lr_scale": f"{self.lr_scale:.6g}", "grouping": self.grouping,
            "group_sizes": "" if self.group_sizes is None else ";".join(map(str, self.group_sizes)),
            "group_noise": "" if self.group_noise is None else ";".join(f"{r:.6g}" for r in self.group_noise),
        }  # fmt: skip

    @classmethod
    def from_csv(cls, row: dict[str, str]) -> Replica:
        """Parse one CSV row back (columns an older run lacks take their defaults)."""
        text = lambda name: (row.get(name) or "").strip()  # noqa: E731
        return cls(
            replica=int(text("replica")),
            experiment=text("experiment"),
            model=text("model"),
            noise_model=text("noise_model"),
            noise_rate=float(text("noise_rate")),
            train_size=int(float(text("train_size"))),
            repeat=int(text("repeat")),
            realized_noise=_float(text("realized_noise")),
            accuracy=_float(text("accuracy")),
            status=text("status"),
            steps=int(text("steps") or 0),
            total_steps=int(text("total_steps") or 0),
            diverged_step=int(float(text("diverged_step"))) if text("diverged_step") else None,
            seconds=_float(text("seconds")),
            class_sizes=tuple(int(float(v)) for v in text("class_sizes").split(";")) if text("class_sizes") else None,
            class_noise=tuple(float(v) for v in text("class_noise").split(";")) if text("class_noise") else None,
            label=text("label"),
            lr_scale=float(text("lr_scale") or 1.0),
            grouping=text("grouping"),
            group_sizes=tuple(int(float(v)) for v in text("group_sizes").split(";")) if text("group_sizes") else None,
            group_noise=tuple(float(v) for v in text("group_noise").split(";")) if text("group_noise") else None,
        )


def _fmt(value: float) -> str:
    return "" if value != value else f"{value:.6f}"


def _float(text: str) -> float:
    return float(text) if text else math.nan


def specs_match(a: ReplicaSpec, b: ReplicaSpec) -> bool:
    """Same grid point (the CSV round trip rounds rates to 6 significant digits)."""
    ident = lambda s: (s.replica, s.experiment, s.repeat, s.noise_model, s.train_size, s.model,  # noqa: E731
                       s.class_sizes, s.label, s.lr_scale, s.grouping, s.group_sizes)
    return (
        ident(a) == ident(b)
        and abs(a.noise_rate - b.noise_rate) < 1e-6
        and _close(a.class_noise, b.class_noise)
        and _close(a.group_noise, b.group_noise)
    )


def _close(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))


def table_bytes(rows: list[Replica]) -> bytes:
    """replicas.csv's contents."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.to_csv() for row in rows)
    return buffer.getvalue().encode()
