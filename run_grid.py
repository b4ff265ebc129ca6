"""Train a label-noise x volume sensitivity grid as one batched computation.

    python run_grid.py --preset demo --out runs/demo        # seconds-to-minutes on a CPU
    python run_grid.py --preset paper --out runs/paper      # the reference study, on a GPU
    python run_grid.py --out runs/paper --resume            # continue a killed run

Flags override the preset. Results: OUT/run.json, OUT/replicas.csv, OUT/confusion.npz.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from labelsim.config import PRESETS, ConfigError, RunConfig, preset


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(float(v)) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    """Every flag, with its help."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help=f"named starting config: {', '.join(sorted(PRESETS))} (default: demo)")
    p.add_argument("--out", required=True, type=Path, help="run directory to write (must not hold a run, unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out; finished replicas are kept")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="'synthetic' (embedded), 'cifar10', or another TFDS image dataset name")
    g.add_argument("--data-dir", help="local CIFAR-10 copy (.npz folder, cifar-10-python.tar.gz or its folder) or a TFDS data_dir")
    g.add_argument("--human-labels", help="CIFAR-10N labels.npz, for the human-* noise models")
    g.add_argument("--synthetic-train", type=int, help="training images of the synthetic dataset")
    g.add_argument("--synthetic-test", type=int, help="test images of the synthetic dataset")
    g.add_argument("--synthetic-size", type=int, help="image side of the synthetic dataset, pixels")
    g = p.add_argument_group("grid")
    g.add_argument("--noise", type=_floats, help="comma-separated label-noise rates in [0, 1], e.g. 0,0.1,0.3")
    g.add_argument("--sizes", type=_ints, help="comma-separated training-set sizes of the volume grid, e.g. 5000,10000")
    g.add_argument("--repeats", type=int, help="repeats per grid point (different init, batch order, noise draw)")
    g.add_argument("--cross", action="store_true", default=None, help="also train every noise level x size pair")
    g.add_argument("--noise-model", type=_names, help="comma-separated noise models (default shuffle, the study's)")
    g.add_argument("--noise-matrix", help="C x C transition matrix file (.npy/.csv/.json) for --noise-model matrix")
    g.add_argument("--stratified", action="store_true", default=None, help="volume subsets keep class proportions")
    g.add_argument("--seed", type=int, help="base seed; every replica key is folded from it and its grid coordinates")
    g = p.add_argument_group("model and recipe")
    g.add_argument("--model", help="model name (default small_cnn, the study's)")
    g.add_argument("--models", type=_names, help="comma-separated models: a model axis of the grid")
    g.add_argument("--width", type=int, help="first-layer filters of small_cnn (the study: 32)")
    g.add_argument("--conv", choices=("xla", "patches"), help="small_cnn convolutions: lax.conv or patches x matrix (same results)")
    g.add_argument("--epochs", type=int, help="epochs per replica (each replica counts its own epochs)")
    g.add_argument("--batch-size", type=int, help="images per step per replica")
    g.add_argument("--no-augment", action="store_true", help="turn the on-device augmentation off")
    g = p.add_argument_group("execution (speed only; results do not change)")
    g.add_argument("--slots", type=int, help="concurrent replicas in the batched program (0: as many as help, within free memory, up to 64)")
    g.add_argument("--steps-per-call", type=int, help="train steps per jitted call (0: backend default)")
    g.add_argument("--strategy", help="replica axis: vmap (one batched program), map, loop or auto")
    g.add_argument("--loop-group", type=int, help='"loop": replicas per program call (0: default, 1; 2-4 speed up full-size CNNs on CPU)')
    g.add_argument("--checkpoint-seconds", type=float, help="minimum seconds between checkpoints")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--memory-fraction", type=float,
        help="with --slots 0: the slots may fill this fraction of free device memory (default 0.8)",
    )  # fmt: skip
    return p


# flag -> (config section, field)
_OVERRIDES = {
    "dataset": ("data", "name"),
    "data_dir": ("data", "data_dir"),
    "human_labels": ("data", "human_labels"),
    "synthetic_train": ("data", "synthetic_train"),
    "synthetic_test": ("data", "synthetic_test"),
    "synthetic_size": ("data", "synthetic_size"),
    "noise": ("grid", "noise_levels"),
    "sizes": ("grid", "sizes"),
    "repeats": ("grid", "repeats"),
    "cross": ("grid", "cross"),
    "noise_model": ("grid", "noise_models"),
    "noise_matrix": ("grid", "noise_matrix"),
    "stratified": ("grid", "stratified"),
    "seed": ("grid", "seed"),
    "model": ("model", "name"),
    "models": ("grid", "models"),
    "width": ("model", "width"),
    "conv": ("model", "conv"),
    "epochs": ("recipe", "epochs"),
    "batch_size": ("recipe", "batch_size"),
    "slots": ("exec", "slots"),
    "steps_per_call": ("exec", "steps_per_call"),
    "strategy": ("exec", "replica_strategy"),
    "loop_group": ("exec", "loop_group"),
    "checkpoint_seconds": ("exec", "checkpoint_seconds"),
    "memory_fraction": ("exec", "memory_fraction"),
}


def apply_overrides(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """A new config with every flag the user gave."""
    sections = {name: getattr(config, name) for name in ("data", "model", "recipe", "grid", "exec")}
    for flag, (section, field) in _OVERRIDES.items():
        value = getattr(args, flag)
        if value is not None:
            sections[section] = dataclasses.replace(sections[section], **{field: value})
    if args.no_augment:
        sections["recipe"] = dataclasses.replace(sections["recipe"], augment=False)
    return RunConfig(**sections)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The config to run: the stored one for a bare --resume, else the preset plus flags."""
    flags_given = args.preset is not None or args.no_augment or any(
        getattr(args, flag) is not None for flag, (section, _) in _OVERRIDES.items() if section != "exec"
    )
    if args.resume and not flags_given and (args.out / "run.json").exists():
        return apply_overrides(stored_config(args.out), args)
    return apply_overrides(preset(args.preset or "demo"), args)


def stored_config(out: Path) -> RunConfig:
    """The config a run directory was started with; a RunDirError when run.json is damaged."""
    from labelsim.rundir import RunDirError, read_meta

    try:
        return RunConfig.from_dict(read_meta(out)["config"])
    except RunDirError:
        raise
    except (ConfigError, TypeError, AttributeError) as err:
        raise RunDirError(f"{out / 'run.json'} holds a damaged config ({err}); start a new --out") from None


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the grid, print where the results are."""
    args = build_parser().parse_args(argv)
    from labelsim.sim.distributed import initialize_from_env

    initialize_from_env()  # several hosts: LABELSIM_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID
    try:
        config = resolve_config(args)
        from labelsim.sim.runner import run_grid

        out = run_grid(config, args.out, resume=args.resume, progress=not args.no_progress)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        then = f"continue with: --out {args.out} --resume" if (args.out / "run.json").exists() else "run again"
        print(f"error: {err.strerror or err}{where}; fix it, then {then}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished replicas are saved. Continue with: --out {args.out} --resume", file=sys.stderr)
        return 130
    print(f"done: {out}/run.json, replicas.csv, confusion.npz")
    print(f"next: python -m labelsim analyze {out}   |   python -m labelsim report {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
