"""``python -m labelsim replay RUN --budget B --tier NAME:PRICE:NOISE ... [--start-fraction F]
[--rounds R] [--repeats N] [--strategies ...]``: does spending a budget by the recommendations
beat the baselines? From a seeded partial labeling by the cheapest tier, each strategy spends
the budget in R rounds; after each round every strategy's labeled set is trained N times (one
batched grid) and measured on the test set. See ``labelsim.analysis.replay``.

Example::

    python -m labelsim replay runs/demo --budget 6 --tier crowd:0.01:0.20 --tier expert:0.05:0.02 \\
        --rounds 3 --repeats 2

Writes RUN/replay/<digest of the question>/replay.json after every round; a stopped replay
continues at its first unfinished round when the same command is run again."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from labelsim.analysis.budget import check_tiers, parse_tier
from labelsim.analysis.replay import STRATEGIES, ReplaySettings, check_flags, correction_rows, replay_rows
from labelsim.commands.analyze import format_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The replay command's flags."""
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run (its fitted per-class curves)")
    parser.add_argument("--budget", type=float, required=True, metavar="B", help="money to spend, in the tiers' unit")
    parser.add_argument("--tier", action="append", default=[], metavar="NAME:PRICE:NOISE",
                        help="a labeling tier: price per label and its fraction of wrong labels; repeat per tier")
    parser.add_argument("--start-fraction", type=float, default=0.2, metavar="F",
                        help="share of the training set labeled by the cheapest tier at the start (default 0.2)")
    parser.add_argument("--rounds", type=int, default=3, metavar="R", help="rounds the budget is spent in (default 3)")
    parser.add_argument("--repeats", type=int, default=2, metavar="N",
                        help="trainings of each labeling after each round (default 2)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help=f"comma-separated strategies to compare (default {','.join(STRATEGIES)})")
    parser.add_argument("--folds", type=int, default=3, metavar="K",
                        help="folds of the out-of-fold probabilities recommend and cleanlab use (default 3)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs of every replica (default: the run's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start, the label draws and the keys")


def settings_from(args: argparse.Namespace) -> ReplaySettings:
    """The replay question of the flags."""
    return ReplaySettings(
        budget=args.budget,
        tiers=check_tiers([parse_tier(spec) for spec in args.tier]),
        start_fraction=args.start_fraction,
        rounds=args.rounds,
        repeats=args.repeats,
        strategies=tuple(x.strip() for x in args.strategies.split(",") if x.strip()),
        folds=args.folds,
        seed=args.seed,
        epochs=args.epochs,
    )


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the replay and print its tables."""
    settings = settings_from(args)
    check_flags(settings)
    from labelsim.sim.replay import run_replay

    result, path = run_replay(args.run_dir, settings)
    print(text_table(replay_rows(result)))
    print()
    print(text_table(correction_rows(result)))
    print(f"wrote {path}")
    return 0


def text_table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned text table (numbers to 4 significant digits)."""
    if not rows:
        return "(nothing measured yet)"
    headers = list(rows[0])
    cell = lambda v: "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    return format_table(headers, [[cell(row[h]) for h in headers] for row in rows])


def next_step(args: argparse.Namespace, err: BaseException) -> str:
    """After an interrupt: the same command continues at the first unfinished round."""
    return f"run the same command again; it keeps the rounds already in {args.run_dir}/replay/"
