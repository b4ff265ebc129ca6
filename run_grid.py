"""Train a label-noise x volume sensitivity grid as one batched computation.

    python run_grid.py --preset demo --out runs/demo        # seconds-to-minutes on a CPU
    python run_grid.py --preset paper --out runs/paper      # the reference study, on a GPU
    python run_grid.py --out runs/paper --resume            # continue a killed run
    python run_grid.py --out runs/x --set recipe.learning_rate=0.002   # any config field

Flags override the preset. Results: OUT/run.json, OUT/replicas.csv, OUT/confusion.npz.
The same as ``python -m labelsim train`` (failures and exit statuses too); ``--help`` lists
every flag, ``--debug`` shows the traceback of a failure.
"""

from __future__ import annotations

import argparse

from labelsim.__main__ import add_debug_flag, exit_process, run_guarded
from labelsim.commands import train
from labelsim.commands.train import add_arguments, resolve_config
from labelsim.config import PRESETS

__all__ = ["PRESETS", "build_parser", "main", "resolve_config"]


def build_parser() -> argparse.ArgumentParser:
    """Every flag, with its help."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    add_debug_flag(parser)
    parser.set_defaults(_module=train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the grid, print where the results are; returns the exit status."""
    return run_guarded(lambda: build_parser().parse_args(argv))


if __name__ == "__main__":
    exit_process(main())
