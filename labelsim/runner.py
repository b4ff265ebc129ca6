"""Run a grid: validate, load the data to the device once, train every replica in slots of one
batched program, evaluate each replica as it finishes, and write results as they come.

Slot scheduling: the batched program has S replica slots. When a replica finishes (or
diverges), it is evaluated and its slot starts the next pending grid point, with no
recompilation (shapes never change). Replicas are queued longest first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from labelsim import __version__, grid
from labelsim.config import ConfigError, ReplicaSpec, RunConfig, total_steps, steps_per_epoch
from labelsim.data import Dataset, load_dataset
from labelsim.models import get_model
from labelsim.prepare import prepare_replica
from labelsim.results import RunDirError, RunStore, specs_match, write_npz
from labelsim.train import (
    Normalizer,
    ReplicaData,
    TrainState,
    evaluate,
    make_chunk,
    make_confusion,
    make_init,
    make_train_step,
)
from labelsim.validate import estimate_result_bytes, validate_config, validate_output, validate_replicas

CHECKPOINT_FILE = "checkpoint.npz"
MAX_DEFAULT_SLOTS = 64


def now() -> str:
    """UTC time stamp, ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def compute_dtype(config: RunConfig) -> Any:
    """bfloat16 on GPU/TPU, float32 on CPU, unless the recipe names one."""
    choice = config.recipe.compute_dtype
    if choice == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    if choice not in ("float32", "bfloat16"):
        raise ConfigError(f"compute_dtype {choice!r} is not one of: auto, float32, bfloat16")
    return jnp.dtype(choice)


def backend_defaults(config: RunConfig, min_steps_per_epoch: int) -> tuple[int, int, str]:
    """(steps per call, scan unroll, replica strategy) for this backend.

    On CPU XLA's rolled loops and batched grouped convolutions are slow, so the few steps of a
    call are unrolled and replicas take turns through one one-replica program ("loop"; see
    benchmarks/results/throughput_cpu.json). A call never spans more than two epochs of a
    replica (see ``make_chunk``).
    """
    cpu = jax.default_backend() == "cpu"
    steps = min(config.exec.steps_per_call or (4 if cpu else 50), min_steps_per_epoch)
    unroll = min(config.exec.unroll or (steps if cpu else 1), steps)
    strategy = config.exec.replica_strategy
    if strategy == "auto":
        strategy = "loop" if cpu else "vmap"
    return steps, unroll, strategy


def git_commit() -> str | None:
    """The source tree's commit, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    import flax
    import optax

    return {
        "labelsim": __version__,
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }


def run_meta(config: RunConfig, dataset: Dataset, n_replicas: int) -> dict[str, Any]:
    """The initial run.json."""
    devices = jax.devices()
    return {
        "labelsim_version": __version__,
        "config": config.to_dict(),
        "dataset": {"name": dataset.name, "train_size": len(dataset.y_train), "test_size": len(dataset.y_test)},
        "classes": list(dataset.class_names),
        "test_class_counts": np.bincount(dataset.y_test, minlength=dataset.num_classes).tolist(),
        "replicas": n_replicas,
        "git_commit": git_commit(),
        "versions": versions(),
        "device": f"{devices[0].platform}: {devices[0].device_kind} x{len(devices)}",
        "seed": config.grid.seed,
        "keys": grid.KEY_DERIVATION,
        "started": now(),
        "finished": None,
        "status": "running",
        "sessions": [],
    }


def _comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that change results (exec settings do not)."""
    return {k: v for k, v in config_dict.items() if k != "exec"}


def open_store(
    config: RunConfig, out: Path, resume: bool, specs: list[ReplicaSpec], dataset: Dataset
) -> RunStore:
    """A fresh store, or the existing one checked against this config for --resume."""
    if not resume:
        return RunStore.create(out, run_meta(config, dataset, len(specs)), specs, dataset.num_classes)
    store = RunStore.open(out)
    if _comparable(store.meta["config"]) != _comparable(config.to_dict()):
        raise RunDirError(
            f"{out} was started with a different config; resume it with the same flags "
            "(or just --resume --out DIR), or start a new --out"
        )
    if len(store.rows) != len(specs) or not all(specs_match(r.spec, s) for r, s in zip(store.rows, specs)):
        raise RunDirError(f"{out} holds a different replica table than this config makes; start a new --out")
    return store


class SlotTrainer:
    """S replica slots of one model trained as one batched program."""

    def __init__(
        self, config: RunConfig, dataset: Dataset, model_name: str, slots: int, min_train_size: int | None = None
    ):
        self.config, self.dataset, self.model_name = config, dataset, model_name
        recipe = config.recipe
        self.model = get_model(model_name, dataset.num_classes, config.model.width, compute_dtype(config))
        self.normalize = Normalizer.fit(dataset.x_train)
        min_size = min_train_size or len(dataset.y_train)
        self.steps, unroll, strategy = backend_defaults(config, steps_per_epoch(min_size, recipe.batch_size))
        self.n_train = len(dataset.y_train)
        self.slots = _round_to_devices(slots)
        self.mesh = Mesh(np.array(jax.devices()), ("replica",))
        shard = NamedSharding(self.mesh, PartitionSpec("replica"))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self.images = jax.device_put(dataset.x_train, replicated)  # on the device once, shared
        self.x_test, self.y_test = _padded_test(dataset, config.exec.eval_batch)
        self.init_one = make_init(self.model, recipe, dataset.x_train.shape[1:])
        self.chunk = make_chunk(
            make_train_step(self.model, recipe, self.normalize), self.steps, unroll, strategy
        )
        self.confusion = make_confusion(self.model, self.normalize, dataset.num_classes)
        one_state = self.init_one(jnp.asarray(jax.random.PRNGKey(0)))
        stack = lambda tree: jax.tree.map(lambda x: jnp.broadcast_to(x, (self.slots, *x.shape)), tree)  # noqa: E731
        self.states = jax.device_put(stack(one_state), shard)
        self.data = jax.device_put(stack(self._idle_data()), shard)
        self.owner: list[int | None] = [None] * self.slots  # replica index in each slot
        self._put = jax.jit(_put_slot, donate_argnums=0)
        self._get = jax.jit(_get_slot)

    def _idle_data(self) -> ReplicaData:
        n = self.n_train
        zero_key = jnp.zeros((2,), jnp.uint32)
        return ReplicaData(
            subset=jnp.zeros((n,), jnp.int32),
            labels=jnp.zeros((n,), jnp.int32),
            n_train=jnp.int32(self.config.recipe.batch_size),
            steps_per_epoch=jnp.int32(1),
            total_steps=jnp.int32(0),
            data_key=zero_key,
            dropout_key=zero_key,
            augment_key=zero_key,
            lr_scale=jnp.float32(1.0),
        )

    def replica_data(self, spec: ReplicaSpec, prepared: Any, keys: grid.ReplicaKeys) -> ReplicaData:
        """Pad a prepared replica to the static shape of the batched program."""
        n, size = self.n_train, len(prepared.subset)
        subset = np.zeros((n,), np.int32)
        labels = np.zeros((n,), np.int32)
        subset[:size], labels[:size] = prepared.subset, prepared.labels
        return ReplicaData(
            subset=jnp.asarray(subset),
            labels=jnp.asarray(labels),
            n_train=jnp.int32(size),
            steps_per_epoch=jnp.int32(steps_per_epoch(size, self.config.recipe.batch_size)),
            total_steps=jnp.int32(total_steps(size, self.config.recipe)),
            data_key=jnp.asarray(keys.data),
            dropout_key=jnp.asarray(keys.dropout),
            augment_key=jnp.asarray(keys.augment),
            lr_scale=jnp.float32(spec.lr_scale),
        )

    def assign(self, slot: int, replica: int, data: ReplicaData, state: TrainState) -> None:
        """Put a replica (its data and its state) into a slot."""
        self.states = self._put(self.states, jnp.int32(slot), state)
        self.data = self._put(self.data, jnp.int32(slot), data)
        self.owner[slot] = replica

    def release(self, slot: int) -> None:
        """Mark a slot idle (it computes but never updates)."""
        self.data = self._put(self.data, jnp.int32(slot), self._idle_data())
        self.owner[slot] = None

    def advance(self) -> np.ndarray:
        """Run one chunk of steps for every slot; returns the per-slot losses (S, steps)."""
        self.states, losses = self.chunk(self.states, self.data, self.images)
        return np.asarray(losses)

    def progress(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps taken, diverged step) per slot, on the host."""
        return np.asarray(self.states.step), np.asarray(self.states.diverged_step)

    def evaluate_slot(self, slot: int) -> np.ndarray:
        """Test confusion counts (C, C) of the replica in a slot."""
        state = self._get(self.states, jnp.int32(slot))
        return evaluate(self.confusion, state.params, state.batch_stats, self.x_test, self.y_test, self.config.exec.eval_batch)


def _put_slot(batched: Any, slot: jnp.ndarray, one: Any) -> Any:
    return jax.tree.map(lambda b, o: b.at[slot].set(o), batched, one)


def _get_slot(batched: Any, slot: jnp.ndarray) -> Any:
    return jax.tree.map(lambda b: b[slot], batched)


def _round_to_devices(slots: int) -> int:
    devices = len(jax.devices())
    return -(-slots // devices) * devices


def _padded_test(dataset: Dataset, batch: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Test set on the device, padded to whole batches; padding labels are -1 (never counted)."""
    m = len(dataset.y_test)
    padded = -(-m // batch) * batch
    x = np.zeros((padded, *dataset.x_test.shape[1:]), np.uint8)
    y = np.full((padded,), -1, np.int32)
    x[:m], y[:m] = dataset.x_test, dataset.y_test
    return jnp.asarray(x), jnp.asarray(y)


def noise_kwargs(config: RunConfig) -> dict[str, Any]:
    """Extra inputs some noise models need (a transition matrix, human labels)."""
    from labelsim import noise

    kwargs: dict[str, Any] = {}
    models = config.grid.noise_models
    if any(m == "matrix" for m in models):
        if not config.grid.noise_matrix:
            raise ConfigError("the 'matrix' noise model needs --noise-matrix FILE (a C x C row-stochastic matrix)")
        kwargs["matrix"] = noise.load_matrix(config.grid.noise_matrix)
    if any(m.startswith("human") for m in models):
        from labelsim.human_labels import human_label_arrays

        kwargs["human"] = human_label_arrays(config.data.human_labels, models)
    return kwargs


class Progress:
    """A progress bar (tqdm) over useful replica-steps, with utilization."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", unit_scale=True, mininterval=1.0, file=sys.stderr, dynamic_ncols=True)

    def update(self, useful: int, utilization: float, finished: int, total_replicas: int) -> None:
        """Advance by ``useful`` replica-steps."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"replicas {finished}/{total_replicas}, util {utilization:.0%}", refresh=False)
            self.bar.update(useful)

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()


@dataclasses.dataclass
class RunStats:
    """Counters of computed vs useful replica-steps."""

    useful: int = 0
    computed: int = 0

    @property
    def utilization(self) -> float:
        """Useful / computed replica-steps."""
        return self.useful / self.computed if self.computed else 1.0


def run_grid(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    replicas: list[ReplicaSpec] | None = None,
    progress: bool = True,
    dataset: Dataset | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Path:
    """Train every replica of the grid (or the given custom replicas) and write the run directory."""
    out = Path(out)
    validate_config(config)
    validate_output(out, resume)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    specs = replicas if replicas is not None else grid.build_replicas(config, len(dataset.y_train))
    validate_replicas(config, specs, dataset)
    slots = min(config.exec.slots or MAX_DEFAULT_SLOTS, len(specs))
    checkpoint = slots * 4 * 4 * _param_count(config, dataset)  # params, two moments' worth, stats
    validate_output(out, resume, estimate_result_bytes(len(specs), dataset.num_classes, checkpoint))
    extra = noise_kwargs(config)
    store = open_store(config, out, resume, specs, dataset)
    store.meta["sessions"].append({"started": now(), "device": store.meta.get("device")})
    store.meta["status"] = "running"
    stats = RunStats(**store.meta.get("step_counts", {}))
    for model_name in dict.fromkeys(spec.model for spec in specs):
        _run_model(config, dataset, store, model_name, extra, stats, progress, on_chunk)
    store.meta.update(status="finished", finished=now(), utilization=stats.utilization, step_counts=vars(stats))
    store.flush()
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    return out


def _run_model(
    config: RunConfig,
    dataset: Dataset,
    store: RunStore,
    model_name: str,
    extra: dict[str, Any],
    stats: RunStats,
    show: bool,
    on_chunk: Callable[[int], None] | None,
) -> None:
    """Train the pending replicas of one model in slots."""
    pending = [i for i in store.pending() if store.rows[i].spec.model == model_name]
    if not pending:
        return
    # Longest first, so short replicas fill the tail of the run (fewer idle slots).
    queue = sorted(pending, key=lambda i: -total_steps(_size(store.rows[i].spec), config.recipe))
    slots = config.exec.slots or min(len(queue), MAX_DEFAULT_SLOTS)
    smallest = min(_size(store.rows[i].spec) for i in queue)
    trainer = SlotTrainer(config, dataset, model_name, min(slots, len(queue)), smallest)
    restored = _restore_checkpoint(trainer, store, config, dataset, extra)
    queue = [i for i in queue if i not in restored]
    remaining = sum(total_steps(_size(store.rows[i].spec), config.recipe) for i in pending)
    bar = Progress(remaining, show)
    last_checkpoint = time.monotonic()
    try:
        _fill_slots(trainer, store, queue, config, dataset, extra)
        while any(owner is not None for owner in trainer.owner):
            before, _ = trainer.progress()
            start = time.monotonic()
            trainer.advance()
            steps, diverged = trainer.progress()
            elapsed = time.monotonic() - start
            useful = int((steps - before).sum())
            stats.useful += useful
            stats.computed += trainer.slots * trainer.steps
            busy = [s for s, owner in enumerate(trainer.owner) if owner is not None]
            for s in busy:
                row = store.rows[trainer.owner[s]]
                store.update(row.spec.replica, steps=int(steps[s]), seconds=row.seconds + elapsed / len(busy))
            _harvest(trainer, store, steps, diverged)
            _fill_slots(trainer, store, queue, config, dataset, extra)
            finished = sum(r.status in ("finished", "diverged") for r in store.rows)
            bar.update(useful, stats.utilization, finished, len(store.rows))
            store.meta.update(utilization=stats.utilization, step_counts=vars(stats))
            if time.monotonic() - last_checkpoint >= config.exec.checkpoint_seconds:
                store.flush()
                _write_checkpoint(trainer, store)
                last_checkpoint = time.monotonic()
            if on_chunk is not None:
                on_chunk(stats.computed)
    finally:
        bar.close()
    store.flush()


def _param_count(config: RunConfig, dataset: Dataset) -> int:
    """Largest parameter count among the run's models (shapes only, nothing computed)."""
    counts = []
    for name in config.grid.models or (config.model.name,):
        model = get_model(name, dataset.num_classes, config.model.width)
        shapes = jax.eval_shape(
            lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *dataset.x_train.shape[1:])), train=False)
        )
        counts.append(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)))
    return max(counts)


def _size(spec: ReplicaSpec) -> int:
    return sum(spec.class_sizes) if spec.class_sizes is not None else spec.train_size


def _start_replica(
    trainer: SlotTrainer, store: RunStore, slot: int, index: int, config: RunConfig, dataset: Dataset, extra: dict[str, Any]
) -> tuple[ReplicaData, grid.ReplicaKeys]:
    """Prepare a replica's data on the host and record its realized noise."""
    spec = store.rows[index].spec
    keys = grid.replica_keys(config.grid.seed, spec)
    prepared = prepare_replica(
        spec, keys, dataset.y_train, dataset.num_classes, stratified=config.grid.stratified, noise_kwargs=extra
    )
    store.transitions[index] = prepared.transitions
    store.update(
        index,
        realized_noise=prepared.realized_noise,
        status="running",
        total_steps=total_steps(len(prepared.subset), config.recipe),
    )
    return trainer.replica_data(spec, prepared, keys), keys


def _fill_slots(
    trainer: SlotTrainer, store: RunStore, queue: list[int], config: RunConfig, dataset: Dataset, extra: dict[str, Any]
) -> None:
    """Start queued replicas in the free slots."""
    for slot in range(trainer.slots):
        if trainer.owner[slot] is None and queue:
            index = queue.pop(0)
            data, keys = _start_replica(trainer, store, slot, index, config, dataset, extra)
            trainer.assign(slot, index, data, trainer.init_one(jnp.asarray(keys.init)))


def _harvest(trainer: SlotTrainer, store: RunStore, steps: np.ndarray, diverged: np.ndarray) -> None:
    """Evaluate and record every replica that finished or diverged; free its slot."""
    changed = False
    for slot, index in enumerate(trainer.owner):
        if index is None:
            continue
        row = store.rows[index]
        if diverged[slot] >= 0:
            store.update(index, status="diverged", diverged_step=int(diverged[slot]), steps=int(steps[slot]))
        elif steps[slot] >= row.total_steps:
            counts = trainer.evaluate_slot(slot)
            store.counts[index] = counts
            store.update(index, status="finished", accuracy=float(np.trace(counts) / counts.sum()))
        else:
            continue
        trainer.release(slot)
        changed = True
    if changed:
        store.flush()


def _write_checkpoint(trainer: SlotTrainer, store: RunStore) -> None:
    """Slot states and owners, one atomic file, so --resume does not restart a chunk."""
    leaves = jax.tree.leaves(trainer.states)
    owner = np.array([-1 if o is None else o for o in trainer.owner], np.int64)
    write_npz(store.path / CHECKPOINT_FILE, owner=owner, model=np.array(trainer.model_name), **{f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)})


def _restore_checkpoint(
    trainer: SlotTrainer, store: RunStore, config: RunConfig, dataset: Dataset, extra: dict[str, Any]
) -> set[int]:
    """Put checkpointed, still-unfinished replicas back into their slots; returns their indices."""
    file = store.path / CHECKPOINT_FILE
    if not file.exists():
        return set()
    try:
        with np.load(file) as saved:
            owner = saved["owner"]
            if str(saved["model"]) != trainer.model_name:
                return set()  # the checkpoint belongs to another model's slots
            leaves = [saved[f"leaf_{i}"] for i in range(len(jax.tree.leaves(trainer.states)))]
    except (OSError, ValueError, KeyError, EOFError):
        print(f"warning: {file} is unreadable; its replicas restart from step 0", file=sys.stderr)
        return set()
    template = jax.tree.leaves(trainer.states)
    if len(owner) != trainer.slots or any(a.shape != b.shape for a, b in zip(leaves, template)):
        print(f"warning: {file} does not match this run's slots; its replicas restart", file=sys.stderr)
        return set()
    saved_states = jax.tree.unflatten(jax.tree.structure(trainer.states), leaves)
    restored: set[int] = set()
    for slot, index in enumerate(owner.tolist()):
        if index < 0 or store.rows[index].status in ("finished", "diverged"):
            continue
        data, _ = _start_replica(trainer, store, slot, index, config, dataset, extra)
        state = jax.tree.map(lambda x: jnp.asarray(x[slot]), saved_states)
        trainer.assign(slot, index, data, state)
        restored.add(index)
    return restored
