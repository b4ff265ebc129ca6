"""How much does one tiny plan slow the grid it trains in?

A budget question at a small budget with a dear tier has a plan of one or two batches of labels
(the demo's batch is 64; 100 labels is one step per epoch). Every simulated round trains it in one
grid with the large plans. Until a chunk could draw more than two epoch orders, a call could not
take more steps than the smallest replica's epoch, so such a grid trained every replica one step
per call. Now a call draws as many epoch orders as it can touch of the smallest replica and keeps
the backend's default steps per call.

Three grids of the demo preset (its synthetic data, model and recipe), each timed end to end with
``run_grid`` (compiling included) into a fresh folder:

- ``large only``: 4 repeats of a 960-label plan (the pace without a tiny plan);
- ``with a tiny plan, one epoch per call (before)``: the same plus 4 repeats of a 100-label plan,
  steps per call bounded by the tiny plan's epoch (``--steps-per-call 1``, what the old rule chose);
- ``with a tiny plan (now)``: the same grid with the default steps per call.

The tiny replicas' mean accuracy is printed for each, to show they train to the same place (the
chunkings differ only in float rounding).

    python benchmarks/tiny_plans.py      # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from common import print_table, save_json  # noqa: E402

import run_grid as cli  # noqa: E402
from labelsim.analysis.budget.simulation import custom_specs, read_measured  # noqa: E402
from labelsim.config import RunConfig, steps_per_epoch  # noqa: E402
from labelsim.sim.data import load_dataset  # noqa: E402
from labelsim.sim.runner import run_grid  # noqa: E402

NAME = "tiny_plans_cpu"


def demo_config(steps_per_call: int) -> RunConfig:
    """The demo preset, with the given steps per call (0: the backend's default)."""
    args = cli.build_parser().parse_args(["--preset", "demo", "--out", "unused", "--no-progress"])
    config = cli.resolve_config(args)
    return dataclasses.replace(config, exec=dataclasses.replace(config.exec, steps_per_call=steps_per_call))


def time_grid(config: RunConfig, plans: list, repeats: int, dataset, folder: Path) -> tuple[float, dict]:
    """Seconds to train the plans' replicas as one run, and each plan's mean accuracy."""
    specs = custom_specs(plans, config.model.name, repeats)
    start = time.perf_counter()
    run_grid(config, folder, replicas=specs, progress=False, dataset=dataset)
    seconds = time.perf_counter() - start
    return seconds, {label: float(np.nanmean(acc)) for label, acc in read_measured(folder).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    config = demo_config(0)
    dataset = load_dataset(config.data)
    c = dataset.num_classes
    large = ("large", [96] * c, [0.2] * c)
    tiny = ("tiny", [10] * c, [0.05] * c)
    batch = config.recipe.batch_size
    epoch_steps = steps_per_epoch(sum(tiny[1]), batch)
    cases = [
        ("large only", demo_config(0), [large]),
        ("with a tiny plan, one epoch per call (before)", demo_config(epoch_steps), [large, tiny]),
        ("with a tiny plan (now)", demo_config(0), [large, tiny]),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, case_config, plans) in enumerate(cases):
            seconds, accuracy = time_grid(case_config, plans, args.repeats, dataset, Path(tmp) / f"run{i}")
            rows.append({"grid": label, "replicas": args.repeats * len(plans), "seconds": round(seconds, 1),
                         "large_accuracy": accuracy.get("large"), "tiny_accuracy": accuracy.get("tiny")})
            print(f"{label}: {seconds:.0f} s", flush=True)
    base = rows[0]["seconds"]
    for row in rows:
        row["x_large_only"] = round(row["seconds"] / base, 2)
    print_table(rows, list(rows[0]))
    saved = save_json(NAME, {
        "recipe": {"preset": "demo", "repeats": args.repeats, "large_labels": sum(large[1]),
                   "tiny_labels": sum(tiny[1]), "batch_size": batch, "tiny_steps_per_epoch": epoch_steps},
        "rows": rows,
        "speedup_now_over_before": round(rows[1]["seconds"] / rows[2]["seconds"], 2),
    })  # fmt: skip
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
