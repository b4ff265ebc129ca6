"""``python -m labelsim``: train a grid into a run directory, then analyze, report, check and
budget the finished run."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand name -> (module under labelsim.commands, one-line help).
COMMANDS = {
    "train": ("train", "train a label-noise x volume sensitivity grid into a run directory (as run_grid.py)"),
    "analyze": ("analyze", "per-class tables and curve fits of a run (terminal, CSV, JSON)"),
    "report": ("report", "one offline HTML page with every chart and table of a run"),
    "check": ("check", "verify a run directory; exits non-zero on any fault"),
    "budget": ("budget", "plan a labeling budget on a run's fitted per-class curves"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog="python -m labelsim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"labelsim.commands.{module_name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one subcommand; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
