"""Several devices and processes: the slot axis really is split over the devices, a sharded or
multi-process run gives every replica the result of a one-device run, and the number of slots
follows memory without changing any replica's result.

Several devices need a fresh JAX (the device count is fixed when JAX starts), so those tests
run this file as a worker in a subprocess:

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/test_sharding.py devices OUT.npz
    LABELSIM_COORDINATOR=127.0.0.1:PORT ... python tests/test_sharding.py processes OUT.npz
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from labelsim.sim import distributed

    distributed.initialize_from_env()  # before anything else touches JAX (processes mode)

import jax
import numpy as np
import pytest

from labelsim.sim import distributed
from labelsim.config import (
    DataConfig,
    ExecConfig,
    GridConfig,
    ModelConfig,
    RecipeConfig,
    ReplicaSpec,
    RunConfig,
)
from labelsim.sim.data import make_synthetic
from labelsim.sim.grid import replica_keys
from labelsim.sim.prepare import prepare_replica
from labelsim.sim.runner import run_grid
from labelsim.sim.slots import ModelProgram, SlotTrainer, choose_run_slots, slot_memory

DATA = make_synthetic(256, 64, 8, seed=3)
SPECS = [
    ReplicaSpec(0, "noise", 0, "shuffle", 0.0, 256, "small_cnn"),
    ReplicaSpec(1, "noise", 1, "shuffle", 0.4, 256, "small_cnn"),
    ReplicaSpec(2, "volume", 0, "shuffle", 0.0, 128, "small_cnn"),
]
CALLS = 3  # chunks of 2 steps: replica 2 (4 steps per epoch) crosses an epoch


def tiny_config(strategy: str = "auto", slots: int = 0) -> RunConfig:
    """A model and recipe small enough to compile and run in seconds on a CPU."""
    return RunConfig(
        data=DataConfig(name="synthetic", synthetic_train=256, synthetic_test=64, synthetic_size=8, synthetic_seed=3),
        model=ModelConfig(width=4),
        recipe=RecipeConfig(epochs=2, batch_size=32, lr_decays=((1, 5e-4),), augment=False),
        grid=GridConfig(noise_levels=(0.0, 0.3), sizes=(128,), repeats=2),  # 6 replicas
        exec=ExecConfig(slots=slots, steps_per_call=2, replica_strategy=strategy, eval_batch=64),
    )


def program(config: RunConfig) -> ModelProgram:
    """The tiny config's model program (steps per call bounded by the 128-image replicas)."""
    return ModelProgram.resolve(config, DATA, "small_cnn", 128)


def train_specs(strategy: str) -> dict[str, Any]:
    """SPECS trained together for CALLS chunks: per-replica params, test counts and placement."""
    trainer = SlotTrainer(tiny_config(strategy), DATA, program(tiny_config(strategy)), len(SPECS))
    for slot, spec in enumerate(SPECS):
        keys = replica_keys(0, spec)
        prepared = prepare_replica(spec, keys, DATA.y_train, DATA.num_classes)
        trainer.assign(slot, spec.replica, trainer.replica_data(spec, prepared, keys), trainer.init_one(keys.init))
    for _ in range(CALLS):
        trainer.advance()
    params = jax.tree.leaves(trainer.host_states().params)
    first = jax.tree.leaves(trainer.states)[0]
    return {
        "params": [[leaf[s] for leaf in params] for s in range(len(SPECS))],
        "counts": np.stack([trainer.evaluate_slot(s) for s in range(len(SPECS))]),
        "steps": trainer.progress()[0][: len(SPECS)],
        "slots_per_device": distributed.slots_per_device(first),
        "spec": list(first.sharding.spec),
        "info": trainer.execution_info(),
        "collectives": collectives(trainer) if strategy == "vmap" else -1,
    }


def collectives(trainer: SlotTrainer) -> int:
    """Cross-device operations in the compiled chunk (0: every device computes only its slots)."""
    text = trainer.chunk.lower(trainer.states, trainer.data, trainer.images).compile().as_text()
    return sum(text.count(f"{op}(") for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter"))


def grid_counts(out: Path, slots: int, strategy: str = "auto") -> np.ndarray | None:
    """Test counts (R, C, C) of the tiny grid (6 replicas) run with ``slots`` slots; None in a
    process other than 0, which writes no run directory."""
    run_grid(tiny_config(strategy, slots), out, progress=False, dataset=DATA)
    if not distributed.is_writer():
        return None
    with np.load(out / "confusion.npz") as saved:
        return saved["counts"]


def flat(result: dict[str, Any]) -> dict[str, Any]:
    """A worker's result as npz-ready arrays."""
    arrays = {"counts": result["counts"], "steps": result["steps"]}
    for r, leaves in enumerate(result["params"]):
        arrays.update({f"p{r}_{i}": leaf for i, leaf in enumerate(leaves)})
    arrays["meta"] = np.array(json.dumps({k: result[k] for k in ("slots_per_device", "spec", "info", "collectives")}))
    return arrays


def unflat(file: Path) -> dict[str, Any]:
    """Inverse of ``flat``, read from a worker's npz."""
    with np.load(file) as saved:
        meta = json.loads(str(saved["meta"]))
        leaves = sum(k.startswith("p0_") for k in saved.files)
        params = [[saved[f"p{r}_{i}"] for i in range(leaves)] for r in range(len(SPECS))]
        return {**meta, "counts": saved["counts"], "steps": saved["steps"], "params": params}


# ----------------------------------------------------------------------------- worker side


def worker(mode: str, out: Path) -> None:
    """Subprocess body: the whole grid in 4 slots over the 4 devices (6 replicas: scheduled), and
    on 4 devices of one process SPECS trained by the batched "vmap" program as well."""
    result = train_specs("vmap") if mode == "devices" else None
    run_dir = out.parent / "grid"  # run_grid lets only process 0 write it
    grid = grid_counts(run_dir, slots=2)  # CPU default strategy ("loop", one slot per device per call)
    if distributed.is_writer():
        topology = np.array([jax.process_count(), jax.device_count()])
        np.savez(out, grid=grid, topology=topology, **(flat(result) if result else {}))


# ----------------------------------------------------------------------------- test side


def run_worker(mode: str, out: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start this file as a worker with extra environment variables."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.Popen(
        [sys.executable, __file__, mode, str(out)], env=full, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for a worker; fail with its output if it failed."""
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-4000:]
    return output


@lru_cache(maxsize=None)
def one_device() -> dict[str, Any]:
    """The reference: SPECS trained on this process's single device."""
    assert jax.device_count() == 1
    return train_specs("loop")


def assert_same_replicas(result: dict[str, Any], reference: dict[str, Any]) -> None:
    """Same steps, parameters (float tolerance) and test counts, replica by replica."""
    np.testing.assert_array_equal(result["steps"], reference["steps"])
    for got, want in zip(result["params"], reference["params"]):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    np.testing.assert_array_equal(result["counts"], reference["counts"])


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A worker on 4 forced host devices (one process)."""
    out = tmp_path_factory.mktemp("devices") / "result.npz"
    finish(run_worker("devices", out, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    return out


@pytest.fixture(scope="module")
def one_device_grid(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The tiny grid's counts with every replica in its own slot, on one device."""
    return grid_counts(tmp_path_factory.mktemp("grid") / "run", slots=0)


@pytest.mark.slow
def test_slots_are_split_over_four_devices(four_devices: Path) -> None:
    result = unflat(four_devices)
    assert result["spec"] == ["replica"]
    assert result["slots_per_device"] == {"0": 1, "1": 1, "2": 1, "3": 1}  # 3 replicas -> 4 slots
    assert result["info"]["mesh"] == {"replica": 4} and result["info"]["devices"] == 4
    assert result["info"]["slots"] == 4 and result["info"]["strategy"] == "vmap"
    assert result["collectives"] == 0  # the chunk never gathers another device's slots
    with np.load(four_devices) as saved:
        assert saved["topology"].tolist() == [1, 4]


@pytest.mark.slow
def test_four_devices_give_the_one_device_results(four_devices: Path) -> None:
    assert_same_replicas(unflat(four_devices), one_device())


@pytest.mark.slow
def test_scheduled_grid_on_four_devices_equals_one_device(four_devices: Path, one_device_grid: np.ndarray) -> None:
    with np.load(four_devices) as saved:
        sharded = saved["grid"]
    np.testing.assert_array_equal(sharded, one_device_grid)


@pytest.mark.slow
def test_two_processes_give_the_one_device_results(tmp_path: Path, one_device_grid: np.ndarray) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "result.npz"
    env = {"LABELSIM_COORDINATOR": f"127.0.0.1:{port}", "LABELSIM_NUM_PROCESSES": "2", "LABELSIM_LOCAL_DEVICES": "2"}
    procs = [run_worker("processes", out, {**env, "LABELSIM_PROCESS_ID": str(i)}) for i in range(2)]
    for proc in procs:
        finish(proc)
    with np.load(out) as saved:
        assert saved["topology"].tolist() == [2, 4]  # 2 processes, 4 devices in the mesh
        np.testing.assert_array_equal(saved["grid"], one_device_grid)
    meta = json.loads((tmp_path / "grid" / "run.json").read_text())
    assert meta["status"] == "finished" and len(meta["sessions"]) == 1  # one writer: process 0


def test_slot_scheduling_equals_the_unscheduled_run(one_device_grid: np.ndarray, tmp_path: Path) -> None:
    np.testing.assert_array_equal(grid_counts(tmp_path / "two", slots=2), one_device_grid)


def test_memory_chooser_says_what_it_chose(capsys: pytest.CaptureFixture[str]) -> None:
    assert choose_run_slots(tiny_config(), DATA, program(tiny_config()), 6) == 6  # a few KiB each: all fit
    line = capsys.readouterr().err
    assert "slots: 6 concurrent replicas of small_cnn on 1 device(s)" in line and "GiB free" in line
    assert choose_run_slots(tiny_config(), DATA, program(tiny_config()), 6, previous=4) == 4  # a resume keeps its slots
    assert choose_run_slots(tiny_config(), DATA, program(tiny_config()), 6, previous=10**9) == 6  # unless they no longer fit


def test_choose_slots_fits_memory() -> None:
    gib = 2**30
    assert distributed.choose_slots(100, gib, 10 * gib) == 8  # floor(0.8 * 10)
    assert distributed.choose_slots(5, gib, 10 * gib) == 5  # no more than pending
    assert distributed.choose_slots(100, 1, 10 * gib, max_slots=64) == 64
    assert distributed.choose_slots(100, gib, 10 * gib, fixed_bytes=4 * gib) == 4
    assert distributed.choose_slots(100, gib, 10 * gib, fraction=0.5) == 5
    assert distributed.choose_slots(100, 20 * gib, 10 * gib) == 1  # even one does not fit: one
    assert distributed.choose_slots(100, gib, None, max_slots=16) == 16  # memory unknown


def test_choose_slots_is_a_multiple_of_the_devices() -> None:
    gib = 2**30
    assert distributed.choose_slots(100, gib, 10 * gib, devices=4) == 32  # 8 per device
    assert distributed.choose_slots(5, gib, 10 * gib, devices=4) == 8  # 5 pending -> 2 per device
    assert distributed.choose_slots(100, 1, 10 * gib, devices=3, max_slots=64) == 63
    assert distributed.choose_slots(1, gib, 10 * gib, devices=4) == 4


def test_override_and_memory_readers() -> None:
    assert choose_run_slots(tiny_config(slots=2), DATA, program(tiny_config(slots=2)), 5) == 2
    assert choose_run_slots(tiny_config(slots=9), DATA, program(tiny_config(slots=9)), 5) == 5
    with pytest.raises(ValueError, match="memory_fraction"):
        config = tiny_config()
        choose_run_slots(dataclasses.replace(config, exec=dataclasses.replace(config.exec, memory_fraction=0.0)), DATA, program(config), 5)
    assert distributed.available_host_bytes() > 2**20
    assert distributed.free_bytes_per_device() > 2**20


def test_free_memory_is_the_tightest_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    class Device:
        def __init__(self, stats: dict[str, int] | None) -> None:
            self.stats = stats

        def memory_stats(self) -> dict[str, int] | None:
            return self.stats

    gpus = [Device({"bytes_limit": 80, "bytes_in_use": 20}), Device({"bytes_limit": 80, "bytes_in_use": 50})]
    monkeypatch.setattr(distributed.jax, "local_devices", lambda: gpus)
    assert distributed.free_bytes_per_device() == 30
    monkeypatch.setattr(distributed.jax, "local_devices", lambda: [Device(None), Device(None)])
    monkeypatch.setattr(distributed, "available_host_bytes", lambda: 1000)
    assert distributed.free_bytes_per_device() == 500  # CPU devices share the host's RAM


def test_slot_memory_counts_state_data_and_batched_temporaries() -> None:
    loop_slot, shared = slot_memory(tiny_config("loop"), DATA, program(tiny_config("loop")))
    assert shared == DATA.x_train.nbytes + DATA.x_test.nbytes + 4 * len(DATA.y_test)
    assert loop_slot > 2 * 4 * 256  # subset and labels, plus the state
    vmap_slot, _ = slot_memory(tiny_config("vmap"), DATA, program(tiny_config("vmap")))
    assert vmap_slot > loop_slot  # the batched program's temporaries grow with the slots


def test_initialize_from_env_needs_the_coordinator() -> None:
    assert distributed.initialize_from_env({}) is False
    with pytest.raises(ValueError, match="LABELSIM_NUM_PROCESSES"):
        distributed.initialize_from_env({"LABELSIM_COORDINATOR": "127.0.0.1:1234"})


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]))
