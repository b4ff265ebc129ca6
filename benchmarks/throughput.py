"""Replica-images per second: R replicas trained batched vs the same R one after another.

Both sides run labelsim's own slot trainer on the same device; "sequential" trains each
replica alone in a 1-slot program (compiled once), "batched" trains all R in one R-slot
program. Synthetic CIFAR-shaped images: throughput does not depend on pixel values.

    PYTHONPATH=. python benchmarks/throughput.py                    # CPU: R = 1, 2, 4, 8
    PYTHONPATH=. python benchmarks/throughput.py --replicas 1,8,35,64 --steps-per-call 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import print_table, save_json  # noqa: E402

from labelsim.config import ExecConfig, ModelConfig, RecipeConfig, ReplicaSpec, RunConfig  # noqa: E402
from labelsim.sim.data import Dataset  # noqa: E402
from labelsim.sim.grid import replica_keys  # noqa: E402
from labelsim.sim.prepare import prepare_replica  # noqa: E402
from labelsim.sim.slots import ModelProgram, SlotTrainer  # noqa: E402


def random_dataset(n: int, size: int, seed: int = 0) -> Dataset:
    """CIFAR-shaped random uint8 images with balanced labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.int32)
    names = tuple(f"class{k}" for k in range(10))
    return Dataset("random", x, y, x[:256], y[:256], names)


def make_trainer(config: RunConfig, dataset: Dataset, replicas: int) -> SlotTrainer:
    """A slot trainer with ``replicas`` full-data replicas (repeats 0..R-1) assigned."""
    trainer = SlotTrainer(config, dataset, ModelProgram.resolve(config, dataset, config.model.name), replicas)
    n = len(dataset.y_train)
    for slot in range(replicas):
        spec = ReplicaSpec(slot, "noise", slot, "shuffle", 0.0, n, config.model.name)
        keys = replica_keys(0, spec)
        prepared = prepare_replica(spec, keys, dataset.y_train, dataset.num_classes)
        trainer.assign(slot, slot, trainer.replica_data(spec, prepared, keys), trainer.init_one(keys.init))
    return trainer


def time_calls(trainer: SlotTrainer, calls: int) -> tuple[float, float]:
    """(seconds of the first, compiling call; seconds of ``calls`` more calls)."""
    start = time.perf_counter()
    trainer.advance()
    jax.block_until_ready(trainer.states)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(calls):
        trainer.advance()
    jax.block_until_ready(trainer.states)
    return compile_s, time.perf_counter() - start


def measure(config: RunConfig, dataset: Dataset, replicas: int, calls: int, sequential: bool) -> dict[str, Any]:
    """One row of the table: batched R-slot program, and optionally R one-slot runs."""
    batch, steps = config.recipe.batch_size, None
    trainer = make_trainer(config, dataset, replicas)
    steps = trainer.steps
    compile_s, run_s = time_calls(trainer, calls)
    images = replicas * calls * steps * batch
    row: dict[str, Any] = {
        "replicas": replicas,
        "strategy": config.exec.replica_strategy,
        "conv": config.model.conv,
        "loop_group": trainer.loop_group if trainer.strategy == "loop" else None,
        "batched_img_s": images / run_s,
        "batched_compile_s": compile_s,
    }
    if sequential:
        single = make_trainer(config, dataset, 1)
        time_calls(single, 1)  # compile once; every replica reuses the program
        total = 0.0
        for _ in range(replicas):
            _, seconds = time_calls(single, calls)
            total += seconds
        row["sequential_img_s"] = images / total
        row["speedup"] = row["batched_img_s"] / row["sequential_img_s"]
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", default="1,2,4,8", help="comma-separated replica counts")
    p.add_argument("--strategies", default="vmap,map", help="comma-separated replica strategies")
    p.add_argument("--calls", type=int, default=3, help="timed calls per measurement (after one warm-up call)")
    p.add_argument("--steps-per-call", type=int, default=0, help="train steps per call (0: backend default)")
    p.add_argument("--images", type=int, default=2048, help="training images resident on the device")
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--width", type=int, default=32, help="small_cnn first-layer filters")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dtype", default="auto", help="compute dtype: auto, float32, bfloat16")
    p.add_argument("--conv", default="xla", help="comma-separated small_cnn conv implementations: xla, patches")
    p.add_argument("--loop-groups", default="0", help='comma-separated "loop" group sizes (0: backend default)')
    p.add_argument("--no-sequential", action="store_true", help="skip the one-after-another baseline")
    p.add_argument("--name", default="throughput", help="results file name under benchmarks/results/")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Measure, print the table, save JSON."""
    args = parse_args(argv)
    dataset = random_dataset(args.images, args.size)
    rows = []
    groups = [int(g) for g in args.loop_groups.split(",")]
    variants = [(s, c, g) for s in args.strategies.split(",") for c in args.conv.split(",") for g in groups]
    for strategy, conv, group in variants:
        if strategy != "loop" and group != groups[0]:
            continue  # the group size only matters to "loop"
        for replicas in (int(r) for r in args.replicas.split(",")):
            config = RunConfig(
                model=ModelConfig(width=args.width, conv=conv),
                recipe=RecipeConfig(epochs=10_000, batch_size=args.batch_size, compute_dtype=args.dtype),
                exec=ExecConfig(steps_per_call=args.steps_per_call, replica_strategy=strategy, loop_group=group),
            )
            rows.append(measure(config, dataset, replicas, args.calls, not args.no_sequential))
            print_table(rows[-1:], list(rows[-1]))
    print_table(rows, ["strategy", "conv", "loop_group", "replicas", "batched_img_s", "sequential_img_s", "speedup", "batched_compile_s"])
    settings = {k: v for k, v in vars(args).items() if k != "name"}
    print("saved", save_json(args.name, {"settings": settings, "rows": rows}))


if __name__ == "__main__":
    main()
