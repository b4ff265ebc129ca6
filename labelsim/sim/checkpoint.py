"""In-flight slot states on disk, so a resumed run goes on from its last checkpoint instead of
restarting its unfinished replicas. One atomic ``checkpoint.npz`` per run (see labelsim.rundir)."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from labelsim.rundir import CHECKPOINT_FILE, FINAL_STATUSES, NPZ_ERRORS, Replica, write_npz
from labelsim.sim.slots import SlotTrainer
from labelsim.sim.train import TrainState


def write_checkpoint(trainer: SlotTrainer, run_dir: Path) -> None:
    """Slot states and owners, one atomic file."""
    leaves = {f"leaf_{i}": x for i, x in enumerate(jax.tree.leaves(trainer.host_states()))}
    owner = np.array([-1 if o is None else o for o in trainer.owner], np.int64)
    write_npz(Path(run_dir) / CHECKPOINT_FILE, owner=owner, model=np.array(trainer.model_name), **leaves)


def read_checkpoint(trainer: SlotTrainer, run_dir: Path, rows: list[Replica]) -> dict[int, tuple[int, TrainState]]:
    """{slot: (replica index, its state)} of the checkpointed replicas of this trainer's model
    that have not finished; empty when there is no usable checkpoint (with a warning when one
    is damaged or does not fit these slots)."""
    file = Path(run_dir) / CHECKPOINT_FILE
    if not file.exists():
        return {}
    try:
        with np.load(file) as saved:
            owner = saved["owner"]
            if str(saved["model"]) != trainer.model_name:
                return {}  # the checkpoint belongs to another model's slots
            leaves = [saved[f"leaf_{i}"] for i in range(len(jax.tree.leaves(trainer.states)))]
    except NPZ_ERRORS:
        print(f"warning: {file} is unreadable; its replicas restart from step 0", file=sys.stderr)
        return {}
    template = jax.tree.leaves(trainer.states)
    owners = [i for i in owner.tolist() if i >= 0]
    if (
        owner.shape != (trainer.slots,)
        or any(a.shape != b.shape for a, b in zip(leaves, template))
        or any(i >= len(rows) or rows[i].model != trainer.model_name for i in owners)
        or len(set(owners)) != len(owners)
    ):
        print(f"warning: {file} does not match this run's slots; its replicas restart", file=sys.stderr)
        return {}
    states = jax.tree.unflatten(jax.tree.structure(trainer.states), leaves)
    return {
        slot: (index, jax.tree.map(lambda x: x[slot], states))  # noqa: B023
        for slot, index in enumerate(owner.tolist())
        if index >= 0 and rows[index].status not in FINAL_STATUSES
    }
