"""Penultimate-layer embeddings of every training and test record, from the run's clean baseline.

A run keeps no parameters, so the clean full-data replicas of repeats 0..R-1 are trained again
with the run's own recipe, keys and slot program (``labelsim.sim.slots``): each is the run's
replica of that repeat at noise 0 on the whole training set, and its test accuracy is shown
beside the one the run recorded. Their activations before the final Dense layer
(``labelsim.models.penultimate_features``) are the embeddings.

Independently trained networks do not share a feature space: unit j of one replica has no
counterpart in another, so averaging their embeddings would mix unrelated coordinates. Each
replica's embedding is standardized instead (per dimension, over the training records) and the
R of them are concatenated side by side, so that distances add up over the replicas.

RUN/embeddings.npz caches them (float16 ``train`` (N, R*D) and ``test`` (M, R*D), and ``meta``,
a JSON string with their source): another clustering of the same run reads them instead of
training again, and a larger R trains only the missing repeats.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from labelsim import __version__
from labelsim.config import ConfigError, ReplicaSpec, RunConfig, total_steps
from labelsim.models import penultimate_features, standard_width
from labelsim.rundir import NPZ_ERRORS, Replica, RunDirError, read_meta, write_npz
from labelsim.sim import grid
from labelsim.sim.data import Dataset, load_dataset
from labelsim.sim.fingerprint import INPUTS_KEY, array_digest, config_digest
from labelsim.sim.prepare import PreparedReplica
from labelsim.sim.slots import ModelProgram, SlotTrainer
from labelsim.sim.train import Normalizer

EMBEDDINGS_FILE = "embeddings.npz"


@dataclass(frozen=True)
class Embeddings:
    """Standardized embeddings of R baseline replicas, concatenated: (N, R*D) and (M, R*D) float32."""

    train: np.ndarray
    test: np.ndarray
    meta: dict[str, Any]


def load_run_data(run_dir: Path) -> tuple[dict[str, Any], RunConfig, Dataset, str]:
    """(run.json, config, dataset, the dataset's fingerprint): the run's data, checked to be the data it
    was trained on."""
    meta = read_meta(run_dir)
    config = RunConfig.from_dict(meta["config"])
    dataset = load_dataset(config.data)
    digest = array_digest(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    stored = (meta.get(INPUTS_KEY) or {}).get("dataset")
    sizes = meta.get("dataset") or {}
    if (stored is not None and stored != digest) or sizes.get("train_size", len(dataset.y_train)) != len(
        dataset.y_train
    ) or sizes.get("test_size", len(dataset.y_test)) != len(dataset.y_test):
        raise RunDirError(
            f"the dataset loaded now differs from the one {run_dir} was trained on; point the run's config at the "
            "same data (the records must be those the run saw, in the same order)"
        )
    return meta, config, dataset, digest


def baseline_model(config: RunConfig, rows: list[Replica], requested: str | None) -> str:
    """The model whose embeddings are used: ``requested`` (--model), else the run's model, else its first."""
    models = list(dict.fromkeys(row.model for row in rows))
    name = requested or (config.model.name if config.model.name in models else models[0])
    if name not in models:
        raise ConfigError(f"--model {name} is not one of the run's models: {', '.join(models)}")
    return name


def baseline_spec(config: RunConfig, n_train: int, model: str, repeat: int) -> ReplicaSpec:
    """The grid point of repeat ``repeat``'s clean replica on the whole training set."""
    noise_model = (config.grid.noise_models or ["shuffle"])[0]
    return ReplicaSpec(
        replica=repeat, experiment="noise", repeat=repeat, noise_model=noise_model, noise_rate=0.0,
        train_size=n_train, model=model,
    )  # fmt: skip


def _run_replica(rows: list[Replica], spec: ReplicaSpec) -> Replica | None:
    """The run's finished replica at the same grid point, when it has one."""
    for row in rows:
        if (row.finished and row.model == spec.model and row.repeat == spec.repeat and row.noise_rate == 0.0
                and row.train_size == spec.train_size and not row.is_custom and row.lr_scale == 1.0):  # fmt: skip
            return row
    return None


def _make_features(program: ModelProgram, normalize: Normalizer) -> Callable:
    model = program.model
    dtype = getattr(model, "dtype", jnp.float32)

    def features(params: Any, batch_stats: Any, x: jnp.ndarray) -> jnp.ndarray:
        variables = {"params": params, "batch_stats": batch_stats}
        return penultimate_features(model, variables, normalize(x).astype(dtype)).astype(jnp.float32)

    return jax.jit(features)


def _embed(features: Callable, state: Any, images: np.ndarray, batch: int) -> np.ndarray:
    """(M, D) features of one replica for uint8 images, in batches of a fixed size (one compilation)."""
    m = len(images)
    padded = np.zeros((-(-m // batch) * batch, *images.shape[1:]), np.uint8)
    padded[:m] = images
    out = [np.asarray(features(state.params, state.batch_stats, jnp.asarray(padded[i : i + batch])))
           for i in range(0, len(padded), batch)]  # fmt: skip
    return np.concatenate(out)[:m]


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each dimension z-scored with the training records' mean and std (a constant dimension becomes 0)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def train_baselines(
    config: RunConfig, dataset: Dataset, model: str, repeats: list[int], rows: list[Replica],
    log: Callable[[str], None],
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(standardized train features, test features, test accuracy) of each repeat's clean full-data
    replica, trained again as the run trained it (its keys, recipe and chunk length)."""
    n = len(dataset.y_train)
    sizes = [row.size for row in rows if row.model == model]
    program = ModelProgram.resolve(config, dataset, model, min(sizes + [n]))
    trainer = SlotTrainer(config, dataset, program, len(repeats))
    steps = total_steps(n, config.recipe)
    clean = PreparedReplica(
        np.arange(n, dtype=np.int32), dataset.y_train.astype(np.int32), 0.0, np.diag(np.bincount(dataset.y_train))
    )
    for slot, repeat in enumerate(repeats):
        spec = baseline_spec(config, n, model, repeat)
        keys = grid.replica_keys(config.grid.seed, spec)
        trainer.assign(slot, slot, trainer.replica_data(spec, clean, keys), trainer.init_one(jnp.asarray(keys.init)))
    log(f"embeddings: training the clean baseline of {model} for repeat(s) {', '.join(map(str, repeats))} "
        f"({steps} steps each, the run's recipe and keys)")  # fmt: skip
    started = time.monotonic()
    while True:
        done, diverged = trainer.progress()
        if (diverged[: len(repeats)] >= 0).any():
            repeat = repeats[int(np.flatnonzero(diverged[: len(repeats)] >= 0)[0])]
            raise ConfigError(
                f"the clean baseline of repeat {repeat} diverged while training again (NaN/Inf loss); give your own "
                "assignment with --assign FILE, or --repeats with other repeats"
            )
        if (done[: len(repeats)] >= steps).all():
            break
        trainer.advance()
    log(f"embeddings: trained in {time.monotonic() - started:.0f} s")
    features = _make_features(program, trainer.normalize)
    states = trainer.host_states()
    out = []
    for slot, repeat in enumerate(repeats):
        state = jax.tree.map(lambda x: x[slot], states)  # noqa: B023
        counts = trainer.evaluate_slot(slot)
        accuracy = float(np.trace(counts) / counts.sum())
        stored = _run_replica(rows, baseline_spec(config, n, model, repeat))
        recorded = "" if stored is None else f" (the run's replica {stored.replica} recorded {stored.accuracy:.4f})"
        log(f"embeddings: repeat {repeat}: test accuracy {accuracy:.4f}{recorded}")
        batch = config.exec.eval_batch
        train_x, test_x = standardize(
            _embed(features, state, dataset.x_train, batch), _embed(features, state, dataset.x_test, batch)
        )
        out.append((train_x, test_x, accuracy))
    return out


def _identity(config: RunConfig, model: str, dataset_digest: str) -> dict[str, Any]:
    width = config.model.width if config.model.width and config.model.width > 0 else standard_width(model)
    return {"model": model, "width": width, "config": config_digest(config.to_dict()), "dataset": dataset_digest}


def read_cache(run_dir: Path, identity: dict[str, Any]) -> Embeddings | None:
    """The cached embeddings when they were made from this run's config, data and model; else None."""
    file = run_dir / EMBEDDINGS_FILE
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if any(meta.get(key) != value for key, value in identity.items()):
                return None
            train, test = np.asarray(data["train"], np.float32), np.asarray(data["test"], np.float32)
    except (*NPZ_ERRORS, json.JSONDecodeError, AttributeError):
        return None  # damaged: made again
    if train.shape[1] != test.shape[1] or train.shape[1] != meta.get("dims", 0) * len(meta.get("repeats", [])):
        return None
    return Embeddings(train, test, meta)


def baseline_embeddings(
    run_dir: Path, config: RunConfig, dataset: Dataset, dataset_digest: str, rows: list[Replica], model: str,
    repeats: int, log: Callable[[str], None] | None = None,
) -> Embeddings:
    """The standardized embeddings of repeats 0..``repeats``-1, concatenated: from RUN/embeddings.npz when
    it holds them, else trained (only the repeats it lacks) and cached."""
    log = log or (lambda line: print(line, file=sys.stderr))
    if repeats < 1:
        raise ConfigError(f"--repeats {repeats}: give at least 1 baseline replica")
    identity = _identity(config, model, dataset_digest)
    cached = read_cache(run_dir, identity)
    have = len(cached.meta["repeats"]) if cached is not None else 0
    if cached is not None and have >= repeats:
        dims = cached.meta["dims"]
        log(f"embeddings: read from {run_dir / EMBEDDINGS_FILE} (repeat(s) 0..{repeats - 1} of {have})")
        meta = cached.meta | {"repeats": cached.meta["repeats"][:repeats],
                              "accuracy": cached.meta["accuracy"][:repeats]}  # fmt: skip
        return Embeddings(cached.train[:, : dims * repeats], cached.test[:, : dims * repeats], meta)
    trained = train_baselines(config, dataset, model, list(range(have, repeats)), rows, log)
    train = np.concatenate(([cached.train] if cached else []) + [t for t, _, _ in trained], axis=1)
    test = np.concatenate(([cached.test] if cached else []) + [t for _, t, _ in trained], axis=1)
    meta = identity | {
        "source": "penultimate layer (input of the final Dense layer) of the clean full-data replica of each repeat, "
                  "trained again with the run's recipe and keys; standardized per dimension over the training "
                  "records, repeats concatenated",
        "repeats": list(range(repeats)),
        "dims": trained[0][0].shape[1],
        "accuracy": (cached.meta["accuracy"] if cached else []) + [a for _, _, a in trained],
        "labelsim_version": __version__,
    }  # fmt: skip
    write_npz(
        run_dir / EMBEDDINGS_FILE, train=train.astype(np.float16), test=test.astype(np.float16),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )  # fmt: skip
    log(f"embeddings: {train.shape[1]} dimensions per record cached in {run_dir / EMBEDDINGS_FILE}")
    as_stored = lambda x: x.astype(np.float16).astype(np.float32)  # noqa: E731  (a later read gives the same)
    return Embeddings(as_stored(train), as_stored(test), meta)
