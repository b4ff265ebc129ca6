"""Does spending a labeling budget by labelsim's recommendations beat the baselines? The replay
(``python -m labelsim replay``) on the demo's synthetic data and on real CIFAR-10 with CIFAR-10N
human labels as the cheap tier, at CPU scale.

Demo: a finished demo run (its data and fitted curves); tiers crowd:0.01:0.20 and
expert:0.05:0.02, 20% of the 2,000 training images labeled by the crowd at the start.

CIFAR-10N: the first ``--cifar N`` CIFAR-10 training images and the first 1,000 test images
(folders from ``--cifar-dir`` / ``--cifar10n-dir`` or LABELSIM_CIFAR10_DIR /
LABELSIM_CIFAR10N_DIR). A small grid (noise 0 and 0.3, sizes N/3 and 2N/3, one repeat,
``--cifar-epochs``) is trained first for the per-class curves that recommend and per-class use.
The cheap tier ``random1`` gives each record its CIFAR-10N annotations in turn (random1,
random2, random3; simulated after those), at the share of random1 labels that are wrong.

    python -m labelsim train --preset demo --out runs/demo
    python benchmarks/replay.py --run runs/demo --cifar 3000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from common import print_table, save_json  # noqa: E402
from labelsim.analysis.budget import Tier, parse_tier  # noqa: E402
from labelsim.analysis.replay import ReplaySettings, correction_rows, replay_rows  # noqa: E402
from labelsim.sim.data import load_cifar10_local  # noqa: E402
from labelsim.sim.human_labels import load_human_labels  # noqa: E402
from labelsim.sim.replay import run_replay  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["strategy", "round", "spent", "labeled", "wrong", "relabels", "corrected", "accuracy", "se"]
CORRECTIONS = ["strategy", "relabel money", "relabels", "corrected", "spoiled", "corrected per unit cost",
               "random relabeling per unit cost", "x random relabeling"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished demo run")
    parser.add_argument("--budget", type=float, default=6.0, help="demo budget (default 6: 600 crowd labels)")
    parser.add_argument("--tier", action="append", default=None, help="demo tiers (default crowd:0.01:0.20, "
                        "expert:0.05:0.02)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--skip-demo", action="store_true", help="only the CIFAR-10N replay")
    parser.add_argument("--cifar", type=int, default=0, metavar="N", help="CIFAR-10 training images (0: none)")
    parser.add_argument("--cifar-dir", default=os.environ.get("LABELSIM_CIFAR10_DIR"))
    parser.add_argument("--cifar10n-dir", default=os.environ.get("LABELSIM_CIFAR10N_DIR"))
    parser.add_argument("--cifar-epochs", type=int, default=5)
    parser.add_argument("--cifar-budget", type=float, default=600.0, help="CIFAR budget (random1 labels cost 1)")
    parser.add_argument("--cifar-expert", default="expert:5:0.02", help="CIFAR's best tier NAME:PRICE:NOISE")
    parser.add_argument("--work", type=Path, default=Path("/tmp/labelsim_replay_bench"),
                        help="folder for the CIFAR subset and its grid")  # fmt: skip
    return parser.parse_args()


def show(result: dict[str, Any]) -> None:
    print_table(replay_rows(result), COLUMNS)
    print()
    print_table(correction_rows(result), CORRECTIONS)


def demo(args: argparse.Namespace) -> None:
    tiers = tuple(parse_tier(t) for t in (args.tier or ["crowd:0.01:0.20", "expert:0.05:0.02"]))
    s = ReplaySettings(args.budget, tiers, rounds=args.rounds, repeats=args.repeats, folds=args.folds)
    started = time.monotonic()
    result, path = run_replay(args.run, s)
    seconds = time.monotonic() - started
    show(result)
    saved = save_json("replay_demo", {"run": str(args.run), "command": demo_command(args, s), "replay": result,
                                      "table": replay_rows(result), "corrections": correction_rows(result),
                                      "seconds": seconds, "file": str(path)})  # fmt: skip
    print(f"saved {saved}")


def demo_command(args: argparse.Namespace, s: ReplaySettings) -> str:
    tiers = " ".join(f"--tier {t.name}:{t.price:g}:{t.noise:g}" for t in s.tiers)
    return (f"python -m labelsim replay {args.run} --budget {s.budget:g} {tiers} --start-fraction "
            f"{s.start_fraction:g} --rounds {s.rounds} --repeats {s.repeats} --folds {s.folds}")


def cifar(args: argparse.Namespace) -> None:
    if not (args.cifar_dir and args.cifar10n_dir):
        raise SystemExit("give --cifar-dir and --cifar10n-dir, or set LABELSIM_CIFAR10_DIR and LABELSIM_CIFAR10N_DIR")
    n = args.cifar
    full = load_cifar10_local(args.cifar_dir)
    human = load_human_labels(args.cifar10n_dir)
    args.work.mkdir(parents=True, exist_ok=True)
    subset = args.work / f"cifar10_{n}.npz"
    if not subset.is_file():
        np.savez(subset, x_train=full.x_train[:n], y_train=full.y_train[:n], x_test=full.x_test[:1000],
                 y_test=full.y_test[:1000], class_names=np.array(full.class_names))  # fmt: skip
    run = args.work / f"grid_{n}"
    started = time.monotonic()
    if not (run / "run.json").is_file() or '"finished"' not in (run / "run.json").read_text():
        grid = [sys.executable, str(ROOT / "run_grid.py"), "--dataset", f"npz:{subset}", "--noise", "0,0.3",
                "--sizes", f"{n // 3},{2 * n // 3}", "--repeats", "1", "--epochs", str(args.cifar_epochs),
                "--width", "16", "--out", str(run)]  # fmt: skip
        if run.exists():
            grid.append("--resume")
        subprocess.run(grid, check=True)
    grid_seconds = time.monotonic() - started
    annotations = np.stack([human[k][:n] for k in ("random1", "random2", "random3")])
    noise = float(np.mean(annotations[0] != full.y_train[:n]))
    tiers = (Tier("random1", 1.0, round(noise, 4)), parse_tier(args.cifar_expert))
    s = ReplaySettings(args.cifar_budget, tiers, rounds=args.rounds, repeats=args.repeats, folds=args.folds,
                       epochs=args.cifar_epochs)  # fmt: skip
    started = time.monotonic()
    result, path = run_replay(run, s, human={"random1": annotations})
    seconds = time.monotonic() - started
    show(result)
    saved = save_json("replay_cifar10n", {
        "scale": f"first {n} CIFAR-10 training images, first 1000 test images, small_cnn width 16, "
                 f"{args.cifar_epochs} epochs; curves from a grid of noise 0/0.3 x sizes {n // 3}/{2 * n // 3}",
        "random1_wrong_share": noise, "replay": result, "table": replay_rows(result),
        "corrections": correction_rows(result), "grid_seconds": grid_seconds, "seconds": seconds, "file": str(path),
    })  # fmt: skip
    print(f"saved {saved}")


def main() -> None:
    args = parse_args()
    if not args.skip_demo:
        demo(args)
    if args.cifar:
        cifar(args)


if __name__ == "__main__":
    main()
