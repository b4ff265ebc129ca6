"""``python -m labelsim oof RUN --folds K [--repeats R]``: out-of-fold class probabilities for
every training record of a run, from K x R cross-fitted replicas trained with the run's noisy
labels as one batched program, saved as RUN/oof.npz (see ``labelsim.analysis.records``).

Example::

    python -m labelsim oof runs/demo --folds 5 --repeats 4

A stopped command keeps the repeats it finished; the same command continues from there, and a
larger --repeats adds repeats to a finished file."""

from __future__ import annotations

import argparse
from pathlib import Path

from labelsim.analysis.records import OOF_FILE
from labelsim.rundir import read_meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The oof command's flags."""
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder (with run.json)")
    parser.add_argument("--folds", type=int, default=5, metavar="K", help="folds of the cross-fitting (default 5)")
    parser.add_argument("--repeats", type=int, default=1, metavar="R",
                        help="repeats, each with new folds and replica keys; predictions are averaged (default 1)")
    parser.add_argument("--noise-model", help="noise model of the labels (default: the run's first)")
    parser.add_argument("--noise-rate", type=float,
                        help="noise level of the labels (default: the run's highest); the labels are those the "
                             "run's replica at that level trained on")
    parser.add_argument("--label-repeat", type=int, default=0, metavar="R",
                        help="which of the run's repeats' noise draw gives the labels (default 0)")
    parser.add_argument("--unlabeled", type=int, default=0, metavar="N",
                        help="records held out unlabeled, as the pool that recommend may label (default 0)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs of each fold replica (default: the run's)")
    parser.add_argument("--group", type=int, default=0, metavar="G",
                        help="repeats trained together in one batched program (default: all on an accelerator, "
                             "1 on CPU); the file is saved after each group")


def run(args: argparse.Namespace) -> int:
    """Make (or continue) RUN/oof.npz."""
    import jax

    from labelsim.sim.oof import OofSettings, compute_oof, plan_oof

    grid = read_meta(args.run_dir)["config"].get("grid", {})
    settings = OofSettings(
        folds=args.folds,
        repeats=args.repeats,
        noise_model=args.noise_model or (grid.get("noise_models") or ["shuffle"])[0],
        noise_rate=args.noise_rate if args.noise_rate is not None else max(grid.get("noise_levels") or [0.0]),
        label_repeat=args.label_repeat,
        unlabeled=args.unlabeled,
        epochs=args.epochs,
    )
    plan = plan_oof(args.run_dir, settings)
    group = args.group or (1 if jax.default_backend() == "cpu" else settings.repeats)
    oof = compute_oof(plan, group)
    print(
        f"wrote {args.run_dir / OOF_FILE}: {len(oof.labeled)} labeled and {len(oof.pool)} pool records, "
        f"{oof.repeats_done} repeat(s) of {settings.folds} folds ({settings.noise_model} labels at rate "
        f"{settings.noise_rate:g})"
    )
    return 0


def next_step(args: argparse.Namespace, err: BaseException) -> str:
    """After an interrupt: the same command continues from the last finished repeat."""
    return f"run the same command again; it keeps the repeats already in {args.run_dir / OOF_FILE}"
