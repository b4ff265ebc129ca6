"""The replay's training (see ``labelsim.analysis.replay``): each stage is one batched grid of
the out-of-fold predictions' ``BatchTrainer``: every distinct labeling x the repeats, trained
on its labeled records and predicting the test set, plus K fold replicas per labeling that
needs out-of-fold probabilities (folds, keys and the held-out prediction as ``oof`` makes
them)."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from labelsim.analysis.budget import load_context
from labelsim.analysis.replay import ReplaySettings, StageTrainer, replay, replay_path, start_count
from labelsim.config import RunConfig
from labelsim.rundir import RunDirError, claim, read_meta
from labelsim.sim.data import Dataset, load_dataset
from labelsim.sim.fingerprint import INPUTS_KEY, array_digest, config_digest
from labelsim.sim.oof import BatchTrainer, Job, assign_folds, fold_training_set, out_of_fold

REPLAY_STREAM = 104  # folded into the seed: the replay's replica keys


def replica_key(seed: int, *path: int) -> np.ndarray:
    """Raw key folded from the seed, the replay's stream and ``path``."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), REPLAY_STREAM)
    for part in path:
        key = jax.random.fold_in(key, part)
    return np.asarray(key)


def stage_trainer(config: RunConfig, dataset: Dataset, s: ReplaySettings) -> StageTrainer:
    """Trains a stage's jobs as one grid; evaluation replicas of repeat r share their key across
    labelings (common random numbers), fold replicas are keyed by stage, labeling and fold."""
    trainers: dict[int, BatchTrainer] = {}
    smallest = start_count(s, len(dataset.y_train)) * (s.folds - 1) // s.folds
    images = np.concatenate([dataset.x_train, dataset.x_test])
    n = len(dataset.y_train)

    def train(stage: int, evaluate: list[np.ndarray], cross_fit: list[np.ndarray]) -> tuple[np.ndarray, list]:
        jobs = []
        for labels in evaluate:
            held = np.flatnonzero(labels >= 0)
            jobs += [Job(held, labels[held], replica_key(s.seed, 0, stage, r)) for r in range(s.repeats)]
        folds = []
        for i, labels in enumerate(cross_fit):
            ids = assign_folds(labels, s.folds, s.seed, stage)
            folds.append(ids)
            for k in range(s.folds):
                train_set = fold_training_set(ids, k)
                jobs.append(Job(train_set, labels[train_set], replica_key(s.seed, 1, stage, i, k)))
        if len(jobs) not in trainers:
            trainers[len(jobs)] = BatchTrainer(config, dataset, len(jobs), max(smallest, 1))
        probs = trainers[len(jobs)].train_predict(jobs, images)
        tests = probs[: len(evaluate) * s.repeats, n:].reshape(len(evaluate), s.repeats, -1, probs.shape[-1])
        start = len(evaluate) * s.repeats
        oof = [out_of_fold(probs[start + i * s.folds : start + (i + 1) * s.folds, :n], ids)
               for i, ids in enumerate(folds)]  # fmt: skip
        return tests, oof

    return train


def run_replay(
    run_dir: str | Path,
    s: ReplaySettings,
    dataset: Dataset | None = None,
    human: dict[str, np.ndarray] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run (or continue) the replay on a run's data and fitted curves; returns its content and
    the replay.json path. ``dataset`` replaces the run's (e.g. a subset), ``human`` gives tiers
    real annotations (``labelsim.analysis.replay.TierLabels``)."""
    run_dir = Path(run_dir)
    log = log or (lambda line: print(line, file=sys.stderr))
    meta = read_meta(run_dir)
    config = RunConfig.from_dict(meta["config"])
    if s.epochs:
        config = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, epochs=s.epochs))
    if dataset is None:
        dataset = load_dataset(config.data)
        stored = (meta.get(INPUTS_KEY) or {}).get("dataset")
        if stored is not None and stored != array_digest(dataset.x_train, dataset.y_train, dataset.x_test,
                                                         dataset.y_test):  # fmt: skip
            raise RunDirError(f"the dataset loaded now differs from the one {run_dir} was trained on; "
                              "point the run's config at the same data")  # fmt: skip
    context = load_context(run_dir)
    if len(context.curves) != dataset.num_classes:
        raise RunDirError(f"{run_dir} fits {len(context.curves)} classes but the data has {dataset.num_classes}; "
                          "give data with the run's classes")  # fmt: skip
    parts = [config_digest(config.to_dict()), array_digest(dataset.x_train, dataset.y_train, dataset.x_test,
                                                           dataset.y_test)]  # fmt: skip
    parts += [f"{name}:{array_digest(np.asarray(v))}" for name, v in sorted((human or {}).items())]
    data = hashlib.sha256("|".join(parts).encode()).hexdigest()
    path = replay_path(run_dir, s, data)
    train = stage_trainer(config, dataset, s)
    with claim(run_dir):
        path.parent.mkdir(parents=True, exist_ok=True)
        result = replay(s, dataset.y_train, dataset.y_test, dataset.num_classes, context.curves, train, path,
                        human=human, data=data, log=log)  # fmt: skip
    return result, path
