"""The device side of a run: a model's execution settings, resolved once, and its S replica
slots trained as one batched program.

Slot scheduling (``labelsim.sim.runner``) puts a replica into a free slot, advances every slot
a chunk of steps at a time, evaluates a slot whose replica finished and refills it, all without
recompiling (shapes never change). How many slots fit in device memory is decided here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from labelsim.config import ConfigError, ReplicaSpec, RunConfig, steps_per_epoch, total_steps
from labelsim.models import get_model
from labelsim.sim import distributed, grid
from labelsim.sim.data import Dataset
from labelsim.sim.train import (
    Normalizer,
    ReplicaData,
    TrainState,
    chunk_epochs,
    evaluate,
    make_chunk,
    make_confusion,
    make_init,
    make_train_step,
)

MAX_DEFAULT_SLOTS = 64


def compute_dtype(config: RunConfig) -> Any:
    """bfloat16 on GPU/TPU, float32 on CPU, unless the recipe names one."""
    choice = config.recipe.compute_dtype
    if choice == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    if choice not in ("float32", "bfloat16"):
        raise ConfigError(f"compute_dtype {choice!r} is not one of: auto, float32, bfloat16")
    return jnp.dtype(choice)


MAX_CHUNK_EPOCHS = 8  # epoch orders one chunk may draw per replica (see ModelProgram.resolve)


@dataclass(frozen=True)
class ModelProgram:
    """How one model of a run trains, resolved once: the module, steps per call, scan unroll,
    replica strategy and "loop" group size.

    On CPU XLA's rolled loops and batched grouped convolutions are slow, so the few steps of a
    call are unrolled and replicas take turns through one program ("loop"). That program trains
    one replica by default: groups of 2-4 train the study's full-size CNN 1.1-1.3x faster on 2
    cores, but gain nothing for smaller models and take 1.5-3x longer to compile
    (benchmarks/results/throughput_cpu.json), so they are an option (``exec.loop_group``). A call
    draws the epoch orders of as many epochs as it can touch of the run's smallest replica
    (``epochs``, at most ``MAX_CHUNK_EPOCHS``; see ``make_chunk``), so a replica of one or two
    batches still trains a full CPU chunk per call.

    The choice does not depend on the device count: with several devices every strategy is
    sharded (``distributed.sharded_chunk``), each device training its own block of slots; "loop"
    then trains one slot per device per call, so CPU devices keep the one-replica program and
    accelerators keep the batched "vmap".
    """

    name: str
    model: nn.Module
    steps: int
    unroll: int
    strategy: str
    group: int
    epochs: int = 2  # epoch orders per chunk: as many as it can touch of the smallest replica

    @classmethod
    def resolve(cls, config: RunConfig, dataset: Dataset, name: str, min_train_size: int | None = None) -> ModelProgram:
        """The settings for ``name`` on this backend; ``min_train_size`` (default: all the data)
        sets how many epoch orders a chunk draws (the smallest replica's epochs it can touch)."""
        cpu = jax.default_backend() == "cpu"
        shortest = steps_per_epoch(min_train_size or len(dataset.y_train), config.recipe.batch_size)
        steps = config.exec.steps_per_call or (4 if cpu else 50)
        # A chunk holds every epoch order it may touch, (epochs, subset) per replica: at most
        # MAX_CHUNK_EPOCHS of them (a 50-step GPU chunk over one-step epochs would hold 50).
        steps = min(steps, (MAX_CHUNK_EPOCHS - 1) * shortest + 1)
        unroll = min(config.exec.unroll or (steps if cpu else 1), steps)
        strategy = config.exec.replica_strategy
        if strategy == "auto":
            strategy = "loop" if cpu else "vmap"
        group = config.exec.loop_group or 1
        if group < 1:
            raise ConfigError(f"loop_group {group} must be a positive number of replicas (or 0 for the default)")
        model = get_model(name, dataset.num_classes, config.model.width, compute_dtype(config), config.model.conv)
        return cls(name, model, steps, unroll, strategy, group, chunk_epochs(steps, shortest))

    def param_count(self, image_shape: tuple[int, ...]) -> int:
        """Parameters and batch statistics of one replica (shapes only, nothing computed)."""
        shapes = jax.eval_shape(lambda: self.model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)), train=False))
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))

    def chunk(self, config: RunConfig, normalize: Normalizer, strategy: str | None = None) -> Callable:
        """The jitted chunk program of this model (one device)."""
        step = make_train_step(self.model, config.recipe, normalize)
        return make_chunk(step, self.steps, self.unroll, strategy or self.strategy, self.group, self.epochs)


class SlotTrainer:
    """S replica slots of one model trained as one batched program."""

    def __init__(self, config: RunConfig, dataset: Dataset, program: ModelProgram, slots: int):
        self.config, self.program, self.model_name = config, program, program.name
        self.normalize = Normalizer.fit(dataset.x_train)
        self.steps, self.strategy, self.loop_group = program.steps, program.strategy, program.group
        self.n_train = len(dataset.y_train)
        self.slots = _round_to_devices(slots)
        self.mesh = distributed.replica_mesh()
        shard, replicated = distributed.sharded(self.mesh), distributed.replicated(self.mesh)
        self.images = distributed.place(dataset.x_train, replicated)  # on every device once, shared
        self.x_test, self.y_test = _padded_test(dataset, config.exec.eval_batch)  # this process's first device
        self.n_test = len(dataset.y_test)
        self.init_one = make_init(program.model, config.recipe, dataset.x_train.shape[1:])
        build = lambda name: program.chunk(config, self.normalize, name)  # noqa: E731
        self.chunk = build(self.strategy) if self.mesh.size == 1 else distributed.sharded_chunk(build, self.strategy, self.mesh)
        self.confusion = make_confusion(program.model, self.normalize, dataset.num_classes)
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
        return idle_replica_data(self.n_train, self.config.recipe.batch_size)

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

    def advance(self) -> jax.Array:
        """Run one chunk of steps for every slot; returns the per-slot losses (S, steps), left on
        the device (the scheduler reads only steps and divergence, through ``progress``)."""
        self.states, losses = self.chunk(self.states, self.data, self.images)
        return losses

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
        return self.evaluate_slot_with_predictions(slot)[0]

    def evaluate_slot_with_predictions(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """(test confusion counts (C, C), predicted class per test record (M,)) of the replica in a slot."""
        state = self._get(self.states, np.int32(slot))
        if self.mesh.size > 1:
            state = distributed.local_copy(state)  # replicated: evaluate on this process's first device
        counts, predicted = evaluate(
            self.confusion, state.params, state.batch_stats, self.x_test, self.y_test, self.config.exec.eval_batch
        )
        return counts, predicted[: self.n_test]


def _put_slot(batched: Any, slot: jnp.ndarray, one: Any) -> Any:
    return jax.tree.map(lambda b, o: b.at[slot].set(o), batched, one)


def _get_slot(batched: Any, slot: jnp.ndarray) -> Any:
    return jax.tree.map(lambda b: b[slot], batched)


def idle_replica_data(n_train: int, batch_size: int) -> ReplicaData:
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


def slot_memory(config: RunConfig, dataset: Dataset, program: ModelProgram) -> tuple[int, int]:
    """(bytes one more slot needs, bytes each device holds once) for a model's slot program.

    A slot holds its state and data. With "vmap" the program's temporaries grow with the slots
    too, so the chunk is compiled for one slot and its memory analysis read (arguments +
    unaliased outputs + temporaries, less the shared images); "loop" and "map" run one replica
    (or one small "loop" group) at a time, whose temporaries the headroom left by
    ``memory_fraction`` covers.
    """
    shape = dataset.x_train.shape
    init_one = make_init(program.model, config.recipe, shape[1:])
    state = jax.eval_shape(init_one, jax.ShapeDtypeStruct((2,), jnp.uint32))
    data = idle_replica_data(len(dataset.y_train), config.recipe.batch_size)
    shared = dataset.x_train.nbytes + dataset.x_test.nbytes + 4 * len(dataset.y_test)
    resident = distributed.tree_bytes(state) + distributed.tree_bytes(data)
    if program.strategy != "vmap":
        return resident, shared
    channels = shape[-1]
    unit = Normalizer((0.0,) * channels, (1.0,) * channels)  # values do not change memory
    chunk = program.chunk(config, unit)
    one_slot = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), tree)  # noqa: E731
    images = jax.ShapeDtypeStruct(shape, dataset.x_train.dtype)
    measured = distributed.program_bytes(chunk.lower(one_slot(state), one_slot(data), images).compile())
    return (resident if measured is None else measured - dataset.x_train.nbytes), shared


def choose_run_slots(
    config: RunConfig, dataset: Dataset, program: ModelProgram, replicas: int, previous: int | None = None
) -> int:
    """Concurrent replicas of a model: ``exec.slots`` when set, else as many of ``replicas`` as
    fit in ``exec.memory_fraction`` of free device memory (at most MAX_DEFAULT_SLOTS). A resumed
    run passes its ``previous`` slot count: kept while it fits, so the checkpoint's slots match."""
    if config.exec.slots > 0:
        return min(config.exec.slots, replicas)
    fraction = config.exec.memory_fraction
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"memory_fraction {fraction!r} must be in (0, 1], e.g. 0.8")
    per_slot, shared = slot_memory(config, dataset, program)
    free = distributed.free_bytes_per_device()
    devices = jax.device_count()
    fit = lambda wanted: distributed.choose_slots(  # noqa: E731
        wanted, per_slot, free, devices=devices, fixed_bytes=shared, max_slots=MAX_DEFAULT_SLOTS, fraction=fraction
    )
    slots = previous if previous and fit(previous) >= previous else fit(replicas)
    slots = distributed.agree(slots)
    room = "memory unknown" if free is None else f"{free / 2**30:.1f} GiB free per device x {fraction:g}"
    distributed.report(
        f"slots: {slots} concurrent replicas of {program.name} on {devices} device(s) "
        f"({per_slot / 2**20:.3g} MiB per slot, {room}; {replicas} replicas, at most {MAX_DEFAULT_SLOTS}); "
        "set --slots to override"
    )
    return slots


def useful_slots(sizes: list[int], config: RunConfig) -> int:
    """The fewest slots that still finish every replica within the longest one's steps.

    More slots than that only add idle slot-steps at the tail of the run (lower
    utilization); longest-first queueing packs the shorter replicas into the spare slots.
    """
    steps = [total_steps(size, config.recipe) for size in sizes]
    return max(1, min(len(steps), math.ceil(sum(steps) / max(steps))))
