"""``python -m labelsim recommend RUN --budget B --tier NAME:PRICE:NOISE ... [--pool N]``: which
records to label (from the unlabeled pool) or relabel (suspected wrong labels), and with which
tier, within a budget; one CSV row per purchase.

Example::

    python -m labelsim oof runs/demo --folds 5 --repeats 4 --unlabeled 500
    python -m labelsim recommend runs/demo --budget 20 --tier crowd:0.01:0.20 --tier expert:0.05:0.02

Which classes gain most from more or cleaner labels comes from the run's fitted per-class
curves (the budget command's); which records, from the out-of-fold predictions in RUN/oof.npz
(cleanlab label-quality scores for relabels, the replicas' uncertainty for new labels). See
``labelsim.analysis.records.recommend``."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from labelsim.analysis.budget import BudgetError, check_tiers, load_context, parse_tier
from labelsim.analysis.records import RECOMMEND_COLUMNS, read_oof, recommend, recommendation_rows
from labelsim.rundir import RunDirError, atomic_write

OUT_NAME = "recommendations.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The recommend command's flags."""
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="run folder with oof.npz (python -m labelsim oof)")
    parser.add_argument("--budget", type=float, required=True, metavar="B", help="money to spend, in the tiers' unit")
    parser.add_argument("--tier", action="append", default=[], metavar="NAME:PRICE:NOISE",
                        help="a labeling tier: price per label and its fraction of wrong labels; repeat per tier")
    parser.add_argument("--pool", type=int, metavar="N",
                        help="consider only the first N unlabeled pool records (default: all of them)")
    parser.add_argument("--actions", default="label,relabel",
                        help="comma-separated actions to consider: label, relabel (default both)")
    parser.add_argument("--out", type=Path, metavar="FILE", help=f"CSV to write (default RUN/{OUT_NAME})")


def run(args: argparse.Namespace) -> int:
    """Write the recommendations CSV and print a one-line summary."""
    if not (np.isfinite(args.budget) and args.budget > 0):
        raise BudgetError(f"--budget {args.budget:g}: give a positive amount of money")
    tiers = check_tiers([parse_tier(spec) for spec in args.tier])
    actions = tuple(a.strip() for a in args.actions.split(",") if a.strip())
    unknown = [a for a in actions if a not in ("label", "relabel")]
    if unknown or not actions:
        raise BudgetError(f"--actions {args.actions!r}: choose label, relabel or both, comma-separated")
    oof = read_oof(args.run_dir)
    pool = oof.pool
    if args.pool is not None:
        if not 0 <= args.pool <= len(pool):
            raise RunDirError(
                f"--pool {args.pool}: the run's oof.npz has {len(pool)} unlabeled records; give at most "
                f"{len(pool)}, or rerun python -m labelsim oof with a larger --unlabeled"
            )
        pool = pool[: args.pool]
    context = load_context(args.run_dir)
    if tuple(context.classes) != oof.classes:
        raise RunDirError(
            f"{args.run_dir}/oof.npz names other classes than the run; make it again with python -m labelsim oof"
        )
    chosen = recommend(oof.labels, oof.probs, context.curves, tiers, args.budget, pool=pool, actions=actions)
    out = args.out or args.run_dir / OUT_NAME
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RECOMMEND_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(recommendation_rows(chosen, oof.classes))
    atomic_write(out, buffer.getvalue().encode())
    spent = sum(r.cost for r in chosen)
    counts = {a: sum(r.action == a for r in chosen) for a in ("label", "relabel")}
    gain = sum(r.gain for r in chosen)
    print(
        f"wrote {out}: {counts['relabel']} relabels and {counts['label']} new labels for {spent:g} of "
        f"{args.budget:g}; predicted mean per-class accuracy gain {gain:+.2%}"
    )
    return 0
