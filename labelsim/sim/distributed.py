"""Devices and processes: the replica mesh, placing arrays across processes, and how many
replica slots fit in memory.

The replica (slot) axis is split over every device of every process with a one-axis mesh
named "replica"; the shared images are replicated. Each device trains only its own block of
slots (``shard_map``), so a chunk needs no communication at all; reading one slot back for
evaluation is one small all-reduce.

Several hosts: set LABELSIM_COORDINATOR (host:port of process 0), LABELSIM_NUM_PROCESSES and
LABELSIM_PROCESS_ID, and call ``initialize_from_env()`` before anything else touches JAX. Every
process runs the same program on the same (identical) host data; only process 0 writes.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "replica"
ENV_COORDINATOR = "LABELSIM_COORDINATOR"
ENV_NUM_PROCESSES = "LABELSIM_NUM_PROCESSES"
ENV_PROCESS_ID = "LABELSIM_PROCESS_ID"
ENV_LOCAL_DEVICES = "LABELSIM_LOCAL_DEVICES"  # CPU only: host devices per process (tests)

try:
    from jax import shard_map as _shard_map
except ImportError:  # jax < 0.7
    from jax.experimental.shard_map import shard_map as _shard_map

Pytree = Any


# ----------------------------------------------------------------------------- processes


def initialize_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Join a multi-process run when LABELSIM_COORDINATOR is set; returns whether it did."""
    env = os.environ if environ is None else environ
    if not env.get(ENV_COORDINATOR):
        return False
    try:
        num_processes, process_id = int(env[ENV_NUM_PROCESSES]), int(env[ENV_PROCESS_ID])
    except (KeyError, ValueError):
        raise ValueError(
            f"{ENV_COORDINATOR} is set, so {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} must be integers"
        ) from None
    if env.get(ENV_LOCAL_DEVICES):
        jax.config.update("jax_num_cpu_devices", int(env[ENV_LOCAL_DEVICES]))
    if "jax_cpu_collectives_implementation" in jax.config.values:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU all-reduce between processes
    jax.distributed.initialize(env[ENV_COORDINATOR], num_processes, process_id)
    return True


def is_writer() -> bool:
    """True in the one process that writes the run directory (process 0)."""
    return jax.process_index() == 0


def private_run_dir(out: str | Path, resume: bool = False) -> Path:
    """Where this process writes the run directory: ``out`` in process 0; in the others a
    private scratch copy (holding what a resume reads), so that only process 0 writes ``out``
    while every process keeps the same control flow."""
    out = Path(out)
    if is_writer():
        return out
    scratch = Path(tempfile.mkdtemp(prefix=f"labelsim-process{jax.process_index()}-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    if resume and out.is_dir():
        shutil.copytree(out, scratch / out.name)
    return scratch / out.name


def agree(value: int) -> int:
    """Process 0's value on every process (host-side choices must match for SPMD)."""
    if jax.process_count() == 1:
        return value
    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


# ----------------------------------------------------------------------------- placement


def replica_mesh() -> Mesh:
    """A one-axis mesh over every device of every process."""
    return Mesh(np.array(jax.devices()), (AXIS,))


def sharded(mesh: Mesh) -> NamedSharding:
    """Leading (slot) axis split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def place(tree: Pytree, sharding: NamedSharding) -> Pytree:
    """Global arrays from values every process holds identically (numpy or local jax arrays)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _global_array(np.asarray(x), sharding), tree)


def _global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(tree: Pytree) -> Pytree:
    """The whole value of (possibly multi-process) arrays, as numpy arrays on this host.

    Arrays split over processes are gathered; slot-major 32-bit leaves (states, losses) travel
    packed into one buffer, so a whole state is one all-gather instead of one per leaf.
    """
    leaves, treedef = jax.tree.flatten(tree)
    if all(x.is_fully_addressable or x.is_fully_replicated for x in leaves):
        return jax.tree.map(np.asarray, tree)
    gather = _gather_program(leaves[0].sharding.mesh)
    if not _packable(leaves):
        return jax.tree.map(np.asarray, gather(tree))
    packed = np.asarray(gather(_pack(leaves)))
    return jax.tree.unflatten(treedef, _unpack(packed, leaves))


@functools.lru_cache(maxsize=None)
def _gather_program(mesh: Mesh) -> Callable[[Pytree], Pytree]:
    return jax.jit(lambda tree: tree, out_shardings=replicated(mesh))


def _packable(leaves: list[jax.Array]) -> bool:
    return all(x.ndim >= 1 and x.shape[0] == leaves[0].shape[0] and x.dtype.itemsize == 4 for x in leaves)


@jax.jit
def _pack(leaves: list[jax.Array]) -> jax.Array:
    """(S, total) uint32: every leaf's bits, slot by slot (stays split like the slots)."""
    columns = [jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(x.shape[0], -1) for x in leaves]
    return jnp.concatenate(columns, axis=1)


def _unpack(packed: np.ndarray, leaves: list[jax.Array]) -> list[np.ndarray]:
    out, start = [], 0
    for x in leaves:
        width = int(np.prod(x.shape[1:], dtype=np.int64))
        block = np.ascontiguousarray(packed[:, start : start + width])
        out.append(block.view(x.dtype).reshape(x.shape))
        start += width
    return out


def local_copy(tree: Pytree) -> Pytree:
    """This process's first copy of replicated arrays, as ordinary single-device arrays."""
    return jax.tree.map(lambda x: x.addressable_data(0), tree)


# ----------------------------------------------------------------------------- sharded programs


def sharded_chunk(make_chunk: Callable[[str], Callable], strategy: str, mesh: Mesh) -> Callable:
    """``chunk(states, data, images)`` with every device training only its own block of slots.

    ``make_chunk(strategy)`` builds the unsharded chunk. "vmap" and "map" run the device's block
    batched; "loop" walks the block from Python, one slot per device per call, through the
    one-slot program (on CPU this avoids the slow grouped convolutions, as the 1-device loop).
    """
    spec = PartitionSpec(AXIS)
    if strategy in ("vmap", "map"):
        local = _shard_map(make_chunk(strategy), mesh=mesh, in_specs=(spec, spec, PartitionSpec()), out_specs=(spec, spec))
        return jax.jit(local, donate_argnums=0)
    if strategy != "loop":
        return make_chunk(strategy)  # raises the unknown-strategy error
    return _sharded_loop(make_chunk("vmap"), mesh)


def _sharded_loop(one_slot_chunk: Callable, mesh: Mesh) -> Callable:
    """Python loop over local slot positions; each call trains position i on every device."""
    spec = PartitionSpec(AXIS)

    def at_position(states: Pytree, data: Pytree, images: jnp.ndarray, i: jnp.ndarray) -> tuple[Pytree, jnp.ndarray]:
        take = lambda tree: jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, i, 1), tree)  # noqa: E731
        state, losses = one_slot_chunk(take(states), take(data), images)
        states = jax.tree.map(lambda x, s: jax.lax.dynamic_update_slice_in_dim(x, s, i, 0), states, state)
        return states, losses

    step = jax.jit(
        _shard_map(at_position, mesh=mesh, in_specs=(spec, spec, PartitionSpec(), PartitionSpec()), out_specs=(spec, spec)),
        donate_argnums=0,
    )

    def looped(states: Pytree, data: Pytree, images: jnp.ndarray) -> tuple[Pytree, jnp.ndarray]:
        per_device = _block(states, mesh)
        losses = []
        for i in range(per_device):
            states, loss = step(states, data, images, np.int32(i))
            losses.append(loss)  # (devices, steps): position i of every device
        stacked = jnp.stack(losses, axis=1)  # (devices, per_device, steps) = slot order
        return states, stacked.reshape(-1, stacked.shape[-1])

    return looped


def _block(tree: Pytree, mesh: Mesh) -> int:
    """Slots per device."""
    return jax.tree.leaves(tree)[0].shape[0] // mesh.size


def slot_writer(mesh: Mesh) -> Callable[[Pytree, np.ndarray, Pytree], Pytree]:
    """Jitted ``put(batched, slot, one)``: only the device that holds ``slot`` changes."""
    spec = PartitionSpec(AXIS)

    def put(batched: Pytree, slot: jnp.ndarray, one: Pytree) -> Pytree:
        k = jax.tree.leaves(batched)[0].shape[0]
        mine = slot // k == jax.lax.axis_index(AXIS)
        i = slot % k
        return jax.tree.map(lambda b, o: b.at[i].set(jnp.where(mine, o, b[i])), batched, one)

    return jax.jit(
        _shard_map(put, mesh=mesh, in_specs=(spec, PartitionSpec(), PartitionSpec()), out_specs=spec), donate_argnums=0
    )


def slot_reader(mesh: Mesh) -> Callable[[Pytree, np.ndarray], Pytree]:
    """Jitted ``get(batched, slot)``: one slot, replicated on every device (one all-reduce)."""
    spec = PartitionSpec(AXIS)

    def get(batched: Pytree, slot: jnp.ndarray) -> Pytree:
        k = jax.tree.leaves(batched)[0].shape[0]
        mine = slot // k == jax.lax.axis_index(AXIS)
        pick = lambda b: jnp.where(mine, b[slot % k], jnp.zeros_like(b[0]))  # noqa: E731
        return jax.tree.map(lambda b: jax.lax.psum(pick(b), AXIS), batched)

    return jax.jit(_shard_map(get, mesh=mesh, in_specs=(spec, PartitionSpec()), out_specs=PartitionSpec()))


def slots_per_device(array: jax.Array) -> dict[int, int]:
    """Device id -> slots it holds (of an array with a leading slot axis)."""
    return {shard.device.id: shard.data.shape[0] for shard in array.addressable_shards}


def execution_info(mesh: Mesh, slots: int, strategy: str) -> dict[str, Any]:
    """How a run was executed, for run.json."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "mesh": {name: int(size) for name, size in mesh.shape.items()},
        "slots": slots,
        "slots_per_device": slots // mesh.size,
        "strategy": strategy,
    }


# ----------------------------------------------------------------------------- memory


def choose_slots(
    pending: int,
    per_slot_bytes: int,
    free_bytes: int | None,
    *,
    devices: int = 1,
    fixed_bytes: int = 0,
    max_slots: int = 64,
    fraction: float = 0.8,
) -> int:
    """Concurrent replicas: as many as fit in ``fraction`` of each device's free memory (after
    ``fixed_bytes``), no more than the pending replicas need nor ``max_slots``; a multiple of
    ``devices``, at least one per device. ``free_bytes`` is per device; None = unknown."""
    wanted = -(-pending // devices)
    cap = max(1, max_slots // devices)
    fit = cap if free_bytes is None else int((free_bytes * fraction - fixed_bytes) // max(per_slot_bytes, 1))
    return devices * max(1, min(wanted, cap, fit))


def free_bytes_per_device() -> int | None:
    """Free memory of the tightest local device; host RAM shared by the CPU devices; None if unknown."""
    devices = jax.local_devices()
    stats = [d.memory_stats() for d in devices]
    if all(s and "bytes_limit" in s for s in stats):
        return min(int(s["bytes_limit"]) - int(s.get("bytes_in_use", 0)) for s in stats)
    host = available_host_bytes()
    return None if host is None else host // len(devices)


def available_host_bytes() -> int | None:
    """Available host RAM (psutil, else /proc/meminfo), None if neither is there."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def tree_bytes(tree: Pytree) -> int:
    """Bytes of every array (or shape struct) in a pytree."""
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def program_bytes(compiled: Any) -> int | None:
    """Peak bytes of a compiled program: arguments + outputs not aliased to them + temporaries."""
    try:
        m = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError, AttributeError):
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def report(line: str) -> None:
    """Print one line of run information (process 0 only)."""
    if is_writer():
        print(line, file=sys.stderr, flush=True)
