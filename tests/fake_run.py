"""Write a synthetic run directory whose per-class accuracies follow known curves.

Ground truth, per class k, at per-class training count n and label-noise rate r:
    accuracy_k(n, r) = a_k - b_k * n ** (-c_k) - s_k * r
Each replica's true accuracy gets a small Gaussian jitter (training randomness), then its
confusion row is drawn multinomially over the class's test images, with the errors spread
over the other classes by a fixed confusion profile (cat->frog five times frog->cat).

Several models and noise models: ``model_effects[model] = (offset, scale)`` shifts a model's
accuracy by ``offset`` and multiplies its noise slopes by ``scale``; ``realized_slopes[nm]``
gives noise model nm per-class slopes per unit of REALIZED noise, so that class k loses
``scale * realized_slopes[nm][k] * realized_rate(nm, r)``. Realized rates follow the real
protocols: shuffle r * (1 - 1/C) (a shuffled label may land on its own class), human-* r times
the CIFAR-10N set's disagreement, cifar10-semantic r * 5/C (five classes flip), the others r.
Transition counts follow each noise model's structure (uniform, next class, semantic flips, or
the confusion profile for humans).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from labelsim.rundir import Replica, RunStore

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
# Study-like baselines (x1000 at full data, no noise), accuracy lost per unit noise rate,
# accuracy at a quarter of the data, and the power-law exponent of each class.
_BASE = np.array([897, 966, 889, 706, 875, 790, 963, 944, 928, 936]) / 1000
_SLOPE = np.array([0.20, 0.15, 0.48, 0.33, 0.21, 0.31, 0.04, 0.22, 0.10, 0.03])
_QUARTER = np.array([789, 905, 594, 520, 716, 599, 914, 830, 853, 887]) / 1000
_EXPONENT = np.array([0.8, 1.0, 1.2, 0.7, 0.9, 0.8, 1.0, 1.0, 0.8, 0.7])
# CIFAR-10N disagreement with the clean labels (Wei et al. 2022): realized share at level 1.0.
HUMAN_DISAGREEMENT = {"aggre": 0.0901, "random1": 0.1723, "random2": 0.1812,
                      "random3": 0.1764, "worse": 0.4021}
_SEMANTIC = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}  # truck->automobile, bird->airplane, ...

@dataclass(frozen=True)
class Truth:
    """The curves a fake run was drawn from."""

    classes: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    s: np.ndarray
    full_per_class: float
    realized_slopes: Mapping[str, np.ndarray] = field(default_factory=dict)
    model_effects: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def accuracy(self, n_per_class: float, noise: float, noise_model: str = "shuffle",
                 model: str = "small_cnn") -> np.ndarray:
        """True per-class accuracy at a per-class training count and noise rate."""
        offset, scale = self.model_effects.get(model, (0.0, 1.0))
        clean = self.a + offset - self.b * float(n_per_class) ** (-self.c)
        if noise_model in self.realized_slopes:
            loss = self.realized_slopes[noise_model] * realized_rate(noise_model, noise,
                                                                     len(self.classes))
        else:
            loss = self.s * noise
        return clean - scale * loss

    def realized_slope(self, model: str, noise_model: str) -> np.ndarray:
        """True per-class accuracy lost per unit of realized noise of a model and noise model."""
        scale = self.model_effects.get(model, (0.0, 1.0))[1]
        if noise_model in self.realized_slopes:
            return scale * self.realized_slopes[noise_model]
        return scale * self.s / realized_rate(noise_model, 1.0, len(self.classes))


def realized_rate(noise_model: str, rate: float, num_classes: int) -> float:
    """Share of labels a noise model actually changes at grid level ``rate``."""
    if noise_model == "shuffle":
        return rate * (1 - 1 / num_classes)
    if noise_model.startswith("human"):
        name = "worse" if noise_model == "human" else noise_model.removeprefix("human-")
        return rate * HUMAN_DISAGREEMENT[name]
    if noise_model == "cifar10-semantic":
        return rate * len(_SEMANTIC) / num_classes
    return rate


def study_truth(full_per_class: float = 200.0) -> Truth:
    """Curves through the study's baseline and quarter-data accuracies."""
    quarter = full_per_class / 4
    b = (_BASE - _QUARTER) / (quarter ** (-_EXPONENT) - full_per_class ** (-_EXPONENT))
    a = _BASE + b * full_per_class ** (-_EXPONENT)
    assert np.all(a < 1.0), "asymptotes must stay below 1"
    return Truth(CLASSES, a, b, _EXPONENT.copy(), _SLOPE.copy(), full_per_class)


def _profile(classes: tuple[str, ...]) -> np.ndarray:
    """Row-normalised weights of where each class's errors go."""
    c = len(classes)
    w = np.ones((c, c))
    idx = {name: i for i, name in enumerate(classes)}
    boosts = [
        ("cat", "dog", 8), ("dog", "cat", 8), ("cat", "frog", 5), ("automobile", "truck", 6),
        ("truck", "automobile", 6), ("airplane", "ship", 5), ("ship", "airplane", 5),
        ("deer", "horse", 4), ("horse", "deer", 4), ("bird", "airplane", 3), ("bird", "deer", 3),
    ]
    for src, dst, weight in boosts:
        if src in idx and dst in idx:
            w[idx[src], idx[dst]] = weight
    np.fill_diagonal(w, 0.0)
    return w / w.sum(axis=1, keepdims=True)


def _grid(noise_levels, sizes, repeats, full_size, cross, noise_models, models) -> list[dict]:
    rows: list[dict] = []
    for model in models:
        rows += [row | {"model": model} for row in _model_grid(
            noise_levels, sizes, repeats, full_size, cross, noise_models)]
    return rows


def _model_grid(noise_levels, sizes, repeats, full_size, cross, noise_models) -> list[dict]:
    rows: list[dict] = []
    for nm in noise_models:
        for rate in noise_levels:
            if rate == 0 and nm != noise_models[0]:
                continue
            rows += [dict(experiment="noise", noise_model=nm, noise_rate=rate,
                          train_size=full_size, repeat=k) for k in range(repeats)]
    for size in sizes:
        if size == full_size and 0.0 in noise_levels:
            continue  # the noise grid's clean full-size replicas double as this point
        rows += [dict(experiment="volume", noise_model=noise_models[0], noise_rate=0.0,
                      train_size=size, repeat=k) for k in range(repeats)]
    if cross:
        for rate in noise_levels:
            for size in sizes:
                if rate > 0 and size < full_size:
                    rows += [dict(experiment="cross", noise_model=noise_models[0],
                                  noise_rate=rate, train_size=size, repeat=k)
                             for k in range(repeats)]
    return rows


def write_fake_run(
    path: str | Path,
    *,
    noise_levels: tuple[float, ...] = (0.0, 0.2, 0.4),
    sizes: tuple[int, ...] = (500, 1000, 2000),
    repeats: int = 2,
    full_size: int = 2000,
    test_per_class: int = 100,
    cross: bool = False,
    diverged: tuple[int, ...] = (),
    running: tuple[int, ...] = (),
    noise_models: tuple[str, ...] = ("shuffle",),
    jitter: float = 0.01,
    seed: int = 0,
    truth: Truth | None = None,
    models: tuple[str, ...] = ("small_cnn",),
    model_effects: Mapping[str, tuple[float, float]] | None = None,
    realized_slopes: Mapping[str, np.ndarray] | None = None,
    dataset: str = "synthetic",
) -> Truth:
    """Write run.json, replicas.csv and confusion.npz under ``path``; returns the truth."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    c = len(CLASSES)
    truth = truth or study_truth(full_size / c)
    if model_effects or realized_slopes:
        truth = Truth(truth.classes, truth.a, truth.b, truth.c, truth.s, truth.full_per_class,
                      dict(realized_slopes or {}), dict(model_effects or {}))
    rng = np.random.default_rng(seed)
    profile = _profile(CLASSES)
    specs = _grid(noise_levels, sizes, repeats, full_size, cross, noise_models, models)
    counts = np.zeros((len(specs), c, c), dtype=np.int64)
    transitions = np.zeros_like(counts)
    rows = []
    for i, spec in enumerate(specs):
        status = "diverged" if i in diverged else "running" if i in running else "finished"
        n_k = spec["train_size"] / c
        realized = realized_rate(spec["noise_model"], spec["noise_rate"], c)
        transitions[i] = _transitions(n_k, realized, spec["noise_model"], profile)
        if status == "finished":
            p = truth.accuracy(n_k, spec["noise_rate"], spec["noise_model"], spec["model"])
            p = p + rng.normal(0, jitter, c)
            counts[i] = _confusion(np.clip(p, 0.01, 0.999), profile, test_per_class, rng)
        rows.append(_row(i, spec, status, counts[i], realized))
    meta = _meta(noise_levels, sizes, repeats, full_size, test_per_class, cross,
                 noise_models, seed, finished=not running, models=models, dataset=dataset)
    store = RunStore.create(path, meta, [row.spec for row in rows], c)
    store.rows, store.counts, store.transitions = rows, counts, transitions
    store.flush()
    return truth


def trainable_fake_run(path: Path, train: int, sizes: tuple[int, ...]) -> Path:
    """A fake run whose config trains tiny replicas quickly (synthetic data of ``train`` images,
    width 4, one epoch): for commands that train beside the fake run's results."""
    write_fake_run(path, full_size=train, sizes=sizes)
    meta = json.loads((path / "run.json").read_text())
    meta["config"]["data"].update(synthetic_train=train, synthetic_test=50, synthetic_size=8)
    meta["config"]["model"]["width"] = 4
    meta["config"]["recipe"].update(epochs=1, batch_size=32)
    (path / "run.json").write_text(json.dumps(meta))
    return path


def _confusion(p: np.ndarray, profile: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    probs = (1 - p)[:, None] * profile
    probs[np.diag_indices_from(probs)] = p
    return np.stack([rng.multinomial(m, row / row.sum()) for row in probs])


def _moves(noise_model: str, profile: np.ndarray) -> np.ndarray:
    """Row-normalised shares of where a noise model sends each class's changed labels."""
    c = len(profile)
    if noise_model == "pairflip":
        return np.roll(np.eye(c), 1, axis=1)
    if noise_model == "cifar10-semantic":
        w = np.zeros((c, c))
        for src, dst in _SEMANTIC.items():
            w[src, dst] = 1.0
        return w
    if noise_model.startswith("human"):
        return profile
    return (1 - np.eye(c)) / (c - 1)


def _transitions(n_k: float, realized: float, noise_model: str, profile: np.ndarray) -> np.ndarray:
    c = len(profile)
    share = realized * c / _moves(noise_model, profile).any(axis=1).sum()  # semantic: 5 classes
    moved = np.round(n_k * share * _moves(noise_model, profile)).astype(np.int64)
    np.fill_diagonal(moved, 0)
    np.fill_diagonal(moved, round(n_k) - moved.sum(axis=1))
    return moved


def _row(i: int, spec: dict, status: str, counts: np.ndarray, realized: float) -> Replica:
    finished = status == "finished"
    return Replica(
        replica=i, **spec, realized_noise=round(realized, 6),
        accuracy=round(float(np.trace(counts) / counts.sum()), 6) if finished else float("nan"),
        status=status, steps=100 if finished else 40, total_steps=100,
        diverged_step=37 if status == "diverged" else None, seconds=12.5,
    )


def _meta(noise_levels, sizes, repeats, full_size, test_per_class, cross,
          noise_models, seed, finished: bool, models=("small_cnn",),
          dataset: str = "synthetic") -> dict:
    return {
        "labelsim_version": "0.1.0",
        "config": {
            "data": {"name": dataset, "synthetic_train": full_size},
            "model": {"name": "small_cnn", "width": 16},
            "recipe": {"epochs": 6, "batch_size": 64},
            "grid": {"noise_levels": list(noise_levels), "sizes": list(sizes),
                     "repeats": repeats, "cross": cross, "noise_models": list(noise_models),
                     "models": list(models) if len(models) > 1 else [], "seed": seed},
            "exec": {"slots": 0},
        },
        "dataset": {"name": dataset, "train_size": full_size,
                    "test_size": test_per_class * len(CLASSES)},
        "classes": list(CLASSES),
        "test_class_counts": [test_per_class] * len(CLASSES),
        "train_class_counts": [full_size // len(CLASSES)] * len(CLASSES),
        "git_commit": "0000000",
        "versions": {"python": "3.11", "jax": "0.0-fake", "numpy": np.__version__},
        "device": "fake cpu",
        "started": "2025-01-01T00:00:00",
        "finished": "2025-01-01T00:10:00" if finished else None,
        "status": "finished" if finished else "running",
        "extra_key_from_a_newer_version": {"ok": True},
    }


if __name__ == "__main__":
    import sys

    write_fake_run(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fake_run", diverged=(3,))
