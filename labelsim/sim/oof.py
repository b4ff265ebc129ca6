"""Cross-fitted predictions for every training record of a run: K folds x R repeats of fold
replicas, each trained on K-1 folds with the run's noisy labels, trained together as one
batched program, each predicting the records it did not train on.

The replicas reuse the run's one-replica training (``labelsim.sim.train``): same model,
recipe, normalization and chunked program (``ModelProgram``), so a fold replica trains as a
replica of the run would on that subset. Every replica's subset is padded to the dataset's
size (static shapes), so one compiled program serves every fold and repeat.

Folds are stratified by the noisy label and drawn anew for each repeat; the replicas' keys
and the fold draws are folded from the run's seed, the repeat and the fold. A repeat's file
entry is written once all of its replicas finished, so a stopped command resumes at the
first repeat it had not finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from labelsim.analysis.records import OOF_FILE, OofData, keeps_repeats, read_oof, write_oof
from labelsim.config import ConfigError, ReplicaSpec, RunConfig, steps_per_epoch, total_steps
from labelsim.rundir import RunDirError, claim, read_meta
from labelsim.rundir.schema import TEMP_SUFFIX
from labelsim.sim import grid
from labelsim.sim.data import Dataset, load_dataset
from labelsim.sim.fingerprint import INPUTS_KEY, array_digest, config_digest
from labelsim.sim.prepare import prepare_replica
from labelsim.sim.runner import noise_kwargs
from labelsim.sim.slots import ModelProgram, idle_replica_data
from labelsim.sim.train import Normalizer, ReplicaData, TrainState, make_init

FOLD_STREAM = 101  # folded into the run's seed: fold draws and fold replicas' keys
POOL_STREAM = 102  # the unlabeled pool's draw


@dataclass(frozen=True)
class OofSettings:
    """What the out-of-fold predictions are made with (the run supplies the rest)."""

    folds: int
    repeats: int
    noise_model: str
    noise_rate: float
    label_repeat: int = 0  # which of the run's noise draws (its repeat) gives the labels
    unlabeled: int = 0  # records held out as an unlabeled pool
    epochs: int = 0  # 0: the run's

    def identity(self) -> dict[str, Any]:
        """Everything that changes the predictions except the repeat count."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "repeats"}


class Job(NamedTuple):
    """One replica to train: dataset indices, their labels, and its raw key."""

    train: np.ndarray
    labels: np.ndarray
    key: np.ndarray


# ---------------------------------------------------------------------------------------
# Folds, labels and the pool
# ---------------------------------------------------------------------------------------


def split_pool(n: int, unlabeled: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labeled, pool) sorted dataset indices: ``unlabeled`` records drawn as the pool."""
    rng = np.random.default_rng([seed, POOL_STREAM])
    pool = np.sort(rng.choice(n, size=unlabeled, replace=False))
    return np.setdiff1d(np.arange(n), pool), pool


def assign_folds(labels: np.ndarray, folds: int, seed: int, repeat: int) -> np.ndarray:
    """Fold id per record (N,), -1 where the label is -1 (pool): stratified by label (each
    class split as evenly as possible), random within a class, drawn per repeat."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, FOLD_STREAM, repeat])
    ids = np.full(len(labels), -1, np.int64)
    labeled = np.flatnonzero(labels >= 0)
    order = labeled[np.lexsort((rng.random(len(labeled)), labels[labeled]))]  # by class, random within
    ids[order] = (np.arange(len(order)) + rng.integers(folds)) % folds
    return ids


def fold_training_set(fold_ids: np.ndarray, fold: int) -> np.ndarray:
    """Dataset indices the replica of ``fold`` trains on: every labeled record of the other folds."""
    return np.flatnonzero((fold_ids >= 0) & (fold_ids != fold))


def out_of_fold(probs: np.ndarray, fold_ids: np.ndarray) -> np.ndarray:
    """(N, C) predictions of one repeat from its fold replicas' (K, N, C): record i takes the
    replica of its own fold (the one that did not train on it); a pool record (fold -1),
    which no replica trained on, takes the mean of all of them."""
    fold_ids = np.asarray(fold_ids)
    out = probs.mean(axis=0)
    held = np.flatnonzero(fold_ids >= 0)
    out[held] = probs[fold_ids[held], held]
    return out


def fold_key(seed: int, repeat: int, fold: int) -> np.ndarray:
    """Raw key of the replica of ``fold`` in ``repeat``."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), FOLD_STREAM)
    return np.asarray(jax.random.fold_in(jax.random.fold_in(key, repeat), fold))


def run_labels(config: RunConfig, dataset: Dataset, settings: OofSettings, extra: dict[str, Any]) -> np.ndarray:
    """The noisy labels of the whole training set that the run's replica at (noise model,
    rate, full size, ``label_repeat``) trained on: the same protocol, keys and draw."""
    spec = ReplicaSpec(
        replica=0, experiment="noise", repeat=settings.label_repeat, noise_model=settings.noise_model,
        noise_rate=settings.noise_rate, train_size=len(dataset.y_train), model=config.model.name,
    )  # fmt: skip
    keys = grid.replica_keys(config.grid.seed, spec)
    prepared = prepare_replica(
        spec, keys, dataset.y_train, dataset.num_classes, stratified=config.grid.stratified, noise_kwargs=extra
    )
    labels = np.zeros(len(dataset.y_train), np.int32)
    labels[prepared.subset] = prepared.labels
    return labels


# ---------------------------------------------------------------------------------------
# Training and prediction
# ---------------------------------------------------------------------------------------


class BatchTrainer:
    """Trains groups of up to ``slots`` replicas as one batched program and predicts with them.

    Shapes never change between groups (subsets padded to the dataset's size, a short group
    padded with idle slots), so the program is compiled once."""

    def __init__(self, config: RunConfig, dataset: Dataset, slots: int, min_train_size: int):
        self.config, self.dataset, self.slots = config, dataset, slots
        self.program = ModelProgram.resolve(config, dataset, config.model.name, min_train_size)
        self.normalize = Normalizer.fit(dataset.x_train)
        self.chunk = self.program.chunk(config, self.normalize)
        self.init = make_init(self.program.model, config.recipe, dataset.x_train.shape[1:])
        self.images = jnp.asarray(dataset.x_train)
        self.predict_batch = _make_predict(self.program.model, self.normalize)

    def replica_steps(self, job: Job) -> int:
        """Train steps of one job."""
        return total_steps(len(job.train), self.config.recipe)

    def _data(self, job: Job) -> ReplicaData:
        n, size, batch = len(self.dataset.y_train), len(job.train), self.config.recipe.batch_size
        subset, labels = np.zeros(n, np.int32), np.zeros(n, np.int32)
        subset[:size], labels[:size] = job.train, job.labels
        keys = [np.asarray(jax.random.fold_in(job.key, i)) for i in range(3)]
        return ReplicaData(
            subset=subset, labels=labels, n_train=np.int32(size),
            steps_per_epoch=np.int32(steps_per_epoch(size, batch)),
            total_steps=np.int32(self.replica_steps(job)),
            data_key=keys[0], dropout_key=keys[1], augment_key=keys[2], lr_scale=np.float32(1.0),
        )  # fmt: skip

    def train(self, jobs: list[Job], on_steps: Callable[[int], None] | None = None) -> TrainState:
        """Train ``jobs`` (at most ``slots``) together; returns the batched states.
        ``on_steps(done)`` is called after each chunk with the replica-steps done so far."""
        if not 0 < len(jobs) <= self.slots:
            raise ValueError(f"{len(jobs)} jobs for {self.slots} slots")
        idle = idle_replica_data(len(self.dataset.y_train), self.config.recipe.batch_size)
        data = [self._data(job) for job in jobs] + [idle] * (self.slots - len(jobs))
        keys = [np.asarray(jax.random.fold_in(job.key, 3)) for job in jobs]
        states = [self.init(jnp.asarray(key)) for key in keys + keys[:1] * (self.slots - len(jobs))]
        stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])  # noqa: E731
        states, batch = jax.tree.map(stack, *states), jax.tree.map(stack, *data)
        total = np.asarray(batch.total_steps)
        while True:
            steps = np.asarray(states.step)
            diverged = np.asarray(states.diverged_step)
            if on_steps is not None:
                on_steps(int(steps[: len(jobs)].sum()))
            if np.any(diverged[: len(jobs)] >= 0):
                slot = int(np.flatnonzero(diverged[: len(jobs)] >= 0)[0])
                raise ConfigError(
                    f"a fold replica diverged (NaN/Inf loss at step {int(diverged[slot])}); "
                    "train fewer --epochs or fix the run's recipe"
                )
            if np.all(steps >= total):
                return states
            states, _ = self.chunk(states, batch, self.images)

    def predict(self, states: TrainState, count: int, images: np.ndarray) -> np.ndarray:
        """(count, M, C) float32 softmax probabilities of the first ``count`` slots on ``images``."""
        batch = self.config.exec.eval_batch
        m = len(images)
        padded = np.zeros((-(-m // batch) * batch, *images.shape[1:]), np.uint8)
        padded[:m] = images
        out = np.zeros((count, m, self.dataset.num_classes), np.float32)
        for slot in range(count):
            one = jax.tree.map(lambda x: x[slot], states)  # noqa: B023
            for start in range(0, len(padded), batch):
                stop = min(start + batch, m)
                probs = self.predict_batch(one.params, one.batch_stats, jnp.asarray(padded[start : start + batch]))
                out[slot, start:stop] = np.asarray(probs)[: stop - start]
        return out

    def train_predict(
        self, jobs: list[Job], images: np.ndarray, on_steps: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Train ``jobs`` in groups of ``slots`` and predict ``images``: (len(jobs), M, C)."""
        out, done = [], 0
        for start in range(0, len(jobs), self.slots):
            group = jobs[start : start + self.slots]
            report = None if on_steps is None else (lambda d, base=done: on_steps(base + d))
            states = self.train(group, report)
            out.append(self.predict(states, len(group), images))
            done += sum(self.replica_steps(job) for job in group)
        return np.concatenate(out)


def _make_predict(model: Any, normalize: Normalizer) -> Callable:
    dtype = getattr(model, "dtype", jnp.float32)

    def predict(params: Any, batch_stats: Any, x: jnp.ndarray) -> jnp.ndarray:
        logits = model.apply({"params": params, "batch_stats": batch_stats}, normalize(x).astype(dtype), train=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    return jax.jit(predict)


# ---------------------------------------------------------------------------------------
# The command's work: oof.npz for a run
# ---------------------------------------------------------------------------------------


@dataclass
class OofPlan:
    """Everything ``compute_oof`` trains from, resolved and checked before any training."""

    run_dir: Path
    config: RunConfig
    dataset: Dataset
    settings: OofSettings
    labels: np.ndarray  # (N,) noisy labels, -1 = pool
    fingerprint: str
    classes: tuple[str, ...]


def plan_oof(run_dir: str | Path, settings: OofSettings, dataset: Dataset | None = None) -> OofPlan:
    """Check the settings against the run, load its data and make its noisy labels."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    config = RunConfig.from_dict(meta["config"])
    check_settings(settings, config)
    if settings.epochs:
        config = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, epochs=settings.epochs))
    dataset = dataset if dataset is not None else load_dataset(config.data)
    stored = (meta.get(INPUTS_KEY) or {}).get("dataset")
    digest = array_digest(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    if stored is not None and stored != digest:
        raise RunDirError(
            f"the dataset loaded now differs from the one {run_dir} was trained on (content fingerprint); "
            "point the run's config at the same data"
        )
    n = len(dataset.y_train)
    if settings.unlabeled >= n:
        raise ConfigError(f"--unlabeled {settings.unlabeled} leaves no labeled record of {n}; choose fewer")
    labels = run_labels(config, dataset, settings, noise_kwargs(config))
    _, pool = split_pool(n, settings.unlabeled, config.grid.seed)
    labels[pool] = -1
    if np.bincount(labels[labels >= 0], minlength=dataset.num_classes).min() < settings.folds:
        raise ConfigError(f"some class has fewer labeled records than --folds {settings.folds}; choose fewer folds")
    identity = {"config": config_digest(config.to_dict()), "dataset": digest, "settings": settings.identity()}
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    classes = tuple(meta.get("classes") or dataset.class_names)
    return OofPlan(run_dir, config, dataset, settings, labels, fingerprint, classes)


def check_settings(settings: OofSettings, config: RunConfig) -> None:
    """ConfigError naming the flag of any setting that cannot run."""
    if settings.folds < 2:
        raise ConfigError(f"--folds {settings.folds}: cross-fitting needs at least 2 folds; use e.g. --folds 5")
    if settings.repeats < 1:
        raise ConfigError(f"--repeats {settings.repeats}: give at least 1 repeat")
    if settings.unlabeled < 0:
        raise ConfigError(f"--unlabeled {settings.unlabeled}: give a number of records >= 0")
    if settings.epochs < 0:
        raise ConfigError(f"--epochs {settings.epochs}: give a positive number of epochs (0: the run's)")
    if settings.label_repeat < 0:
        raise ConfigError(f"--label-repeat {settings.label_repeat}: give a repeat >= 0")
    if settings.noise_model not in config.grid.noise_models:
        raise ConfigError(
            f"--noise-model {settings.noise_model!r} is not one of the run's: {', '.join(config.grid.noise_models)}"
        )
    if not 0.0 <= settings.noise_rate <= 1.0:
        raise ConfigError(f"--noise-rate {settings.noise_rate}: give a rate in [0, 1], e.g. one of the run's levels")


def resume_state(plan: OofPlan) -> OofData | None:
    """The finished repeats already in RUN/oof.npz for these settings, or None for none; a
    RunDirError when the file was made with other settings."""
    if not (plan.run_dir / OOF_FILE).is_file():
        return None
    stored = read_oof(plan.run_dir)
    if stored.fingerprint != plan.fingerprint:
        raise RunDirError(
            f"{plan.run_dir / OOF_FILE} was made with other settings ({json.dumps(stored.settings, sort_keys=True)}); "
            "pass the same flags to continue it, or delete it to start over"
        )
    return stored


def compute_oof(plan: OofPlan, group: int, log: Callable[[str], None] | None = None) -> OofData:
    """Train the pending repeats ``group`` at a time (K x group replicas per batched program),
    writing RUN/oof.npz after each group; returns the complete data."""
    log = log or (lambda line: print(line, file=sys.stderr))
    with claim(plan.run_dir):
        for stale in plan.run_dir.glob(f".{OOF_FILE}.*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
        oof = resume_state(plan)
        if oof is not None and oof.repeats_done:
            log(f"oof: {oof.repeats_done} finished repeat(s) in {OOF_FILE} kept")
        return _train_repeats(plan, oof, max(1, group), log)


def _train_repeats(plan: OofPlan, oof: OofData | None, group: int, log: Callable[[str], None]) -> OofData:
    s, seed = plan.settings, plan.config.grid.seed
    n, c = len(plan.labels), plan.dataset.num_classes
    done = 0 if oof is None else oof.repeats_done
    keep = keeps_repeats(s.repeats, n, c)
    probs_sum = np.zeros((n, c), np.float32) if oof is None else oof.probs_sum
    folds = np.zeros((0, n), np.int16) if oof is None else oof.folds
    repeat_probs = np.zeros((0, n, c), np.float16) if oof is None or oof.repeat_probs is None else oof.repeat_probs
    pending = list(range(done, s.repeats))
    current = OofData(probs_sum, folds, plan.labels, repeat_probs if keep else None, s.repeats, plan.fingerprint,
                      s.identity() | {"repeats": s.repeats}, plan.classes)  # fmt: skip
    if not pending:
        log(f"oof: all {s.repeats} repeat(s) already in {OOF_FILE}")
        return current
    ids = {r: assign_folds(plan.labels, s.folds, seed, r) for r in pending}
    sizes = [len(fold_training_set(ids[r], k)) for r in pending for k in range(s.folds)]
    trainer = BatchTrainer(plan.config, plan.dataset, s.folds * min(group, len(pending)), min(sizes))
    progress = _Progress(log, sum(total_steps(size, plan.config.recipe) for size in sizes))
    for start in range(0, len(pending), group):
        repeats = pending[start : start + group]
        jobs = []
        for r in repeats:
            for k in range(s.folds):
                train = fold_training_set(ids[r], k)
                jobs.append(Job(train, plan.labels[train], fold_key(seed, r, k)))
        progress.start_group(repeats, len(jobs))
        probs = trainer.train_predict(jobs, plan.dataset.x_train, progress.update)
        for i, r in enumerate(repeats):
            one = out_of_fold(probs[i * s.folds : (i + 1) * s.folds], ids[r])
            current = dataclasses.replace(
                current,
                probs_sum=current.probs_sum + one,
                folds=np.concatenate([current.folds, ids[r][None].astype(np.int16)]),
                repeat_probs=None if not keep else np.concatenate([current.repeat_probs, one[None].astype(np.float16)]),
            )
        write_oof(plan.run_dir / OOF_FILE, current)
        progress.finish_group()
    return current


class _Progress:
    """Progress lines with an ETA, at most one every ``every`` seconds, plus one per group."""

    def __init__(self, log: Callable[[str], None], total: int, every: float = 10.0):
        self.log, self.total, self.every = log, max(total, 1), every
        self.before = 0  # replica-steps of finished groups
        self.current = 0
        self.started = time.monotonic()
        self.last = 0.0
        self.repeats: list[int] = []

    def start_group(self, repeats: list[int], replicas: int) -> None:
        """A new group of repeats starts training."""
        self.repeats = repeats
        self.log(f"oof: training repeat(s) {repeats[0] + 1}-{repeats[-1] + 1} ({replicas} replicas)")

    def update(self, done: int) -> None:
        """``done`` replica-steps of the current group."""
        self.current = done
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.log(self._line())

    def finish_group(self) -> None:
        """The current group is written."""
        self.before += self.current
        self.current = 0
        self.log(self._line() + f"; repeat(s) up to {self.repeats[-1] + 1} saved")

    def _line(self) -> str:
        done = self.before + self.current
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (self.total - done) if done else float("nan")
        eta_text = "unknown" if not np.isfinite(eta) else f"{eta:.0f} s"
        share = f"{done}/{self.total} replica-steps ({done / self.total:.0%})"
        return f"oof: {share}, {elapsed:.0f} s elapsed, ETA {eta_text}"
