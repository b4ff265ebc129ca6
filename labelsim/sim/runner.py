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
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from labelsim import __version__
from labelsim.sim import distributed, grid
from labelsim.config import ConfigError, ReplicaSpec, RunConfig, total_steps, steps_per_epoch
from labelsim.sim.data import Dataset, load_dataset
from labelsim.models import get_model
from labelsim.sim.prepare import prepare_replica
from labelsim.rundir import NPZ_ERRORS, RunDirError, RunStore, remove_partial_writes, specs_match, write_npz
from labelsim.sim.train import (
    Normalizer,
    ReplicaData,
    TrainState,
    evaluate,
    make_chunk,
    make_confusion,
    make_init,
    make_train_step,
)
from labelsim.sim.validate import (
    estimate_result_bytes,
    validate_config,
    validate_output,
    validate_replicas,
    validate_resume,
)

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


def backend_defaults(config: RunConfig, min_steps_per_epoch: int) -> tuple[int, int, str, int]:
    """(steps per call, scan unroll, replica strategy, "loop" group size) for this backend.

    On CPU XLA's rolled loops and batched grouped convolutions are slow, so the few steps of a
    call are unrolled and replicas take turns through one program ("loop"). That program trains
    one replica by default: groups of 2-4 train the study's full-size CNN 1.1-1.3x faster on 2
    cores, but gain nothing for smaller models and take 1.5-3x longer to compile
    (benchmarks/results/throughput_cpu.json), so they are an option (``exec.loop_group``). A call
    never spans more than two epochs of a replica (see ``make_chunk``).

    The choice does not depend on the device count: with several devices every strategy is
    sharded (``distributed.sharded_chunk``), each device training its own block of slots; "loop"
    then trains one slot per device per call, so CPU devices keep the one-replica program and
    accelerators keep the batched "vmap".
    """
    cpu = jax.default_backend() == "cpu"
    steps = min(config.exec.steps_per_call or (4 if cpu else 50), min_steps_per_epoch)
    unroll = min(config.exec.unroll or (steps if cpu else 1), steps)
    strategy = config.exec.replica_strategy
    if strategy == "auto":
        strategy = "loop" if cpu else "vmap"
    group = config.exec.loop_group or 1
    if group < 1:
        raise ConfigError(f"loop_group {group} must be a positive number of replicas (or 0 for the default)")
    return steps, unroll, strategy, group


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


def open_store(
    config: RunConfig, out: Path, resume: bool, specs: list[ReplicaSpec], dataset: Dataset
) -> RunStore:
    """A fresh store, or the existing one checked against this config for --resume."""
    fresh = run_meta(config, dataset, len(specs))
    if not resume:
        return RunStore.create(out, fresh, specs, dataset.num_classes)
    validate_resume(out, config)  # cheap; open_store may be called without run_grid's checks
    store = RunStore.open(out)
    for key in ("dataset", "classes", "test_class_counts"):
        if store.meta.get(key) != fresh[key]:
            raise RunDirError(
                f"{out} was trained on other data ({key}: stored {store.meta.get(key)!r}, now {fresh[key]!r}); "
                "resume it with the data it started on, or start a new --out"
            )
    if len(store.rows) != len(specs) or not all(specs_match(r.spec, s) for r, s in zip(store.rows, specs)):
        raise RunDirError(
            f"{out} holds a different replica table than this config makes ({len(store.rows)} stored replicas, "
            f"{len(specs)} requested); resume with the same replicas, or start a new --out"
        )
    remove_partial_writes(out)
    return store


class SlotTrainer:
    """S replica slots of one model trained as one batched program."""

    def __init__(
        self, config: RunConfig, dataset: Dataset, model_name: str, slots: int, min_train_size: int | None = None
    ):
        self.config, self.dataset, self.model_name = config, dataset, model_name
        recipe = config.recipe
        self.model = get_model(
            model_name, dataset.num_classes, config.model.width, compute_dtype(config), config.model.conv
        )
        self.normalize = Normalizer.fit(dataset.x_train)
        min_size = min_train_size or len(dataset.y_train)
        self.steps, unroll, strategy, group = backend_defaults(config, steps_per_epoch(min_size, recipe.batch_size))
        self.n_train = len(dataset.y_train)
        self.slots = _round_to_devices(slots)
        self.strategy, self.loop_group = strategy, group
        self.mesh = distributed.replica_mesh()
        shard, replicated = distributed.sharded(self.mesh), distributed.replicated(self.mesh)
        self.images = distributed.place(dataset.x_train, replicated)  # on every device once, shared
        self.x_test, self.y_test = _padded_test(dataset, config.exec.eval_batch)  # this process's first device
        self.init_one = make_init(self.model, recipe, dataset.x_train.shape[1:])
        train_step = make_train_step(self.model, recipe, self.normalize)
        build = lambda name: make_chunk(train_step, self.steps, unroll, name, group)  # noqa: E731
        self.chunk = build(strategy) if self.mesh.size == 1 else distributed.sharded_chunk(build, strategy, self.mesh)
        self.confusion = make_confusion(self.model, self.normalize, dataset.num_classes)
        one_state = self.init_one(jnp.asarray(jax.random.PRNGKey(0)))
        stack = lambda tree: jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (self.slots, *x.shape)), tree)  # noqa: E731
        self.states = distributed.place(stack(one_state), shard)
        self.data = distributed.place(stack(self._idle_data()), shard)
        self.owner: list[int | None] = [None] * self.slots  # replica index in each slot
        self._one = replicated  # where a single replica's state and data go before a put
        if self.mesh.size == 1:
            self._put, self._get = jax.jit(_put_slot, donate_argnums=0), jax.jit(_get_slot)
        else:
            self._put, self._get = distributed.slot_writer(self.mesh), distributed.slot_reader(self.mesh)

    def _idle_data(self) -> ReplicaData:
        return _idle_replica_data(self.n_train, self.config.recipe.batch_size)

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
        self.states = self._put(self.states, np.int32(slot), distributed.place(state, self._one))
        self.data = self._put(self.data, np.int32(slot), distributed.place(data, self._one))
        self.owner[slot] = replica

    def release(self, slot: int) -> None:
        """Mark a slot idle (it computes but never updates)."""
        self.data = self._put(self.data, np.int32(slot), distributed.place(self._idle_data(), self._one))
        self.owner[slot] = None

    def advance(self) -> np.ndarray:
        """Run one chunk of steps for every slot; returns the per-slot losses (S, steps)."""
        self.states, losses = self.chunk(self.states, self.data, self.images)
        return distributed.to_host(losses)

    def progress(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps taken, diverged step) per slot, on the host."""
        return distributed.to_host((self.states.step, self.states.diverged_step))

    def host_states(self) -> TrainState:
        """Every slot's state as numpy arrays on this host (for checkpoints; works across processes)."""
        return distributed.to_host(self.states)

    def execution_info(self) -> dict[str, Any]:
        """Devices, processes, mesh, slots and strategy of this trainer, for run.json."""
        info = distributed.execution_info(self.mesh, self.slots, self.strategy)
        if self.strategy == "loop" and self.mesh.size == 1:
            info["loop_group"] = self.loop_group
        return info

    def evaluate_slot(self, slot: int) -> np.ndarray:
        """Test confusion counts (C, C) of the replica in a slot."""
        state = self._get(self.states, np.int32(slot))
        if self.mesh.size > 1:
            state = distributed.local_copy(state)  # replicated: evaluate on this process's first device
        return evaluate(self.confusion, state.params, state.batch_stats, self.x_test, self.y_test, self.config.exec.eval_batch)


def _put_slot(batched: Any, slot: jnp.ndarray, one: Any) -> Any:
    return jax.tree.map(lambda b, o: b.at[slot].set(o), batched, one)


def _get_slot(batched: Any, slot: jnp.ndarray) -> Any:
    return jax.tree.map(lambda b: b[slot], batched)


def _idle_replica_data(n_train: int, batch_size: int) -> ReplicaData:
    """What an idle slot holds: no steps to take."""
    zero_key = np.zeros((2,), np.uint32)
    return ReplicaData(
        subset=np.zeros((n_train,), np.int32),
        labels=np.zeros((n_train,), np.int32),
        n_train=np.int32(batch_size),
        steps_per_epoch=np.int32(1),
        total_steps=np.int32(0),
        data_key=zero_key,
        dropout_key=zero_key,
        augment_key=zero_key,
        lr_scale=np.float32(1.0),
    )


def _round_to_devices(slots: int) -> int:
    devices = jax.device_count()
    return -(-slots // devices) * devices


def _padded_test(dataset: Dataset, batch: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Test set on the device, padded to whole batches; padding labels are -1 (never counted)."""
    m = len(dataset.y_test)
    padded = -(-m // batch) * batch
    x = np.zeros((padded, *dataset.x_test.shape[1:]), np.uint8)
    y = np.full((padded,), -1, np.int32)
    x[:m], y[:m] = dataset.x_test, dataset.y_test
    return jnp.asarray(x), jnp.asarray(y)


def slot_memory(config: RunConfig, dataset: Dataset, model_name: str) -> tuple[int, int]:
    """(bytes one more slot needs, bytes each device holds once) for a model's slot program.

    A slot holds its state and data. With "vmap" the program's temporaries grow with the slots
    too, so the chunk is compiled for one slot and its memory analysis read (arguments +
    unaliased outputs + temporaries, less the shared images); "loop" and "map" run one replica
    (or one small "loop" group) at a time, whose temporaries the headroom left by
    ``memory_fraction`` covers.
    """
    recipe = config.recipe
    shape = dataset.x_train.shape
    model = get_model(model_name, dataset.num_classes, config.model.width, compute_dtype(config), config.model.conv)
    steps, unroll, strategy, _ = backend_defaults(config, steps_per_epoch(len(dataset.y_train), recipe.batch_size))
    init_one = make_init(model, recipe, shape[1:])
    state = jax.eval_shape(init_one, jax.ShapeDtypeStruct((2,), jnp.uint32))
    data = _idle_replica_data(len(dataset.y_train), recipe.batch_size)
    shared = dataset.x_train.nbytes + dataset.x_test.nbytes + 4 * len(dataset.y_test)
    resident = distributed.tree_bytes(state) + distributed.tree_bytes(data)
    if strategy != "vmap":
        return resident, shared
    channels = shape[-1]
    unit = Normalizer((0.0,) * channels, (1.0,) * channels)  # values do not change memory
    chunk = make_chunk(make_train_step(model, recipe, unit), steps, unroll, "vmap")
    one_slot = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), tree)  # noqa: E731
    images = jax.ShapeDtypeStruct(shape, dataset.x_train.dtype)
    measured = distributed.program_bytes(chunk.lower(one_slot(state), one_slot(data), images).compile())
    return (resident if measured is None else measured - dataset.x_train.nbytes), shared


def choose_run_slots(
    config: RunConfig, dataset: Dataset, model_name: str, replicas: int, previous: int | None = None
) -> int:
    """Concurrent replicas of a model: ``exec.slots`` when set, else as many of ``replicas`` as
    fit in ``exec.memory_fraction`` of free device memory (at most MAX_DEFAULT_SLOTS). A resumed
    run passes its ``previous`` slot count: kept while it fits, so the checkpoint's slots match."""
    if config.exec.slots > 0:
        return min(config.exec.slots, replicas)
    fraction = config.exec.memory_fraction
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"memory_fraction {fraction!r} must be in (0, 1], e.g. 0.8")
    per_slot, shared = slot_memory(config, dataset, model_name)
    free = distributed.free_bytes_per_device()
    devices = jax.device_count()
    fit = lambda wanted: distributed.choose_slots(  # noqa: E731
        wanted, per_slot, free, devices=devices, fixed_bytes=shared, max_slots=MAX_DEFAULT_SLOTS, fraction=fraction
    )
    slots = previous if previous and fit(previous) >= previous else fit(replicas)
    slots = distributed.agree(slots)
    room = "memory unknown" if free is None else f"{free / 2**30:.1f} GiB free per device x {fraction:g}"
    distributed.report(
        f"slots: {slots} concurrent replicas of {model_name} on {devices} device(s) "
        f"({per_slot / 2**20:.3g} MiB per slot, {room}; {replicas} replicas, at most {MAX_DEFAULT_SLOTS}); "
        "set --slots to override"
    )
    return slots


def noise_kwargs(config: RunConfig) -> dict[str, Any]:
    """Extra inputs some noise models need (a transition matrix, human labels)."""
    from labelsim.sim import noise

    kwargs: dict[str, Any] = {}
    models = config.grid.noise_models
    if any(m == "matrix" for m in models):
        if not config.grid.noise_matrix:
            raise ConfigError("the 'matrix' noise model needs --noise-matrix FILE (a C x C row-stochastic matrix)")
        kwargs["matrix"] = noise.load_matrix(config.grid.noise_matrix)
    if any(m.startswith("human") for m in models):
        from labelsim.sim.human_labels import human_label_arrays

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
    out = distributed.private_run_dir(out, resume)  # process 0 writes OUT; others a private copy
    validate_config(config)
    validate_output(out, resume)
    if resume:
        validate_resume(out, config)  # before the data loads: a mismatch fails at once
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
    queue = sorted(pending, key=lambda i: -total_steps(store.rows[i].spec.size, config.recipe))
    # Slots and steps per call come from ALL of the model's replicas, not the pending ones, and
    # a resumed run reuses the slot count it recorded (free memory may differ now): it then
    # compiles the same program as the uninterrupted run (same results, bit for bit) and its
    # checkpoint's slots fit. An explicit --slots still wins.
    sizes = [row.spec.size for row in store.rows if row.spec.model == model_name]
    recorded = store.meta.setdefault("slots_per_model", {})
    slots = recorded.get(model_name) if config.exec.slots == 0 else None
    slots = slots or choose_run_slots(config, dataset, model_name, useful_slots(sizes, config))
    recorded[model_name] = slots
    trainer = SlotTrainer(config, dataset, model_name, slots, min(sizes))
    store.meta.setdefault("execution", {})[model_name] = trainer.execution_info()
    restored = _restore_checkpoint(trainer, store, config, dataset, extra)
    if restored:
        steps = {index: int(step) for index, step in zip(trainer.owner, trainer.progress()[0]) if index in restored}
        listed = ", ".join(f"replica {i} at step {steps[i]}" for i in sorted(steps))
        print(f"resuming from {CHECKPOINT_FILE}: {listed}", file=sys.stderr)
    queue = [i for i in queue if i not in restored]
    remaining = sum(total_steps(store.rows[i].spec.size, config.recipe) for i in pending)
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


def useful_slots(sizes: list[int], config: RunConfig) -> int:
    """The fewest slots that still finish every replica within the longest one's steps.

    More slots than that only add idle slot-steps at the tail of the run (lower
    utilization); longest-first queueing packs the shorter replicas into the spare slots.
    """
    steps = [total_steps(size, config.recipe) for size in sizes]
    return max(1, min(len(steps), math.ceil(sum(steps) / max(steps))))


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
            print(
                f"warning: replica {index} diverged (NaN/Inf loss at step {int(diverged[slot])}); "
                "it is marked 'diverged' and left out of the analysis, the rest of the grid goes on",
                file=sys.stderr,
            )
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
    leaves = {f"leaf_{i}": x for i, x in enumerate(jax.tree.leaves(trainer.host_states()))}
    owner = np.array([-1 if o is None else o for o in trainer.owner], np.int64)
    write_npz(store.path / CHECKPOINT_FILE, owner=owner, model=np.array(trainer.model_name), **leaves)


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
    except NPZ_ERRORS:
        print(f"warning: {file} is unreadable; its replicas restart from step 0", file=sys.stderr)
        return set()
    template = jax.tree.leaves(trainer.states)
    owners = [i for i in owner.tolist() if i >= 0]
    if (
        owner.shape != (trainer.slots,)
        or any(a.shape != b.shape for a, b in zip(leaves, template))
        or any(i >= len(store.rows) or store.rows[i].spec.model != trainer.model_name for i in owners)
        or len(set(owners)) != len(owners)
    ):
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
