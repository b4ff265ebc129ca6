"""A budget answer saved by ``python -m labelsim budget`` (RUN_DIR/analysis/budget.json), read
back as plain rows for the report: the plan per class, the strategies, the cost curves."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelsim.analysis.budget import OPTIMIZED

SAVED_NAME = Path("analysis") / "budget.json"  # the budget command's default --save


@dataclass(frozen=True)
class SavedBudget:
    """The saved answer (the dict ``result_to_dict`` wrote) and where it came from."""

    path: Path
    data: dict[str, Any]

    @property
    def budget(self) -> float:
        """The budget the plan spends."""
        return float(self.data["budget"])

    @property
    def measure(self) -> str:
        """What the accuracy axis measures (mean, weighted mean or worst-class accuracy)."""
        return str(self.data.get("measure") or "predicted accuracy")

    @property
    def target(self) -> float | None:
        """The accuracy whose cost was asked for, if any."""
        target = self.data.get("target")
        return float(target) if target is not None else None


class SavedBudgetError(ValueError):
    """A saved budget answer that cannot be shown; the message says why."""


def find_saved_budget(run_dir: Path, path: Path | None = None) -> Path | None:
    """The saved answer to show: ``path`` if given, else RUN_DIR/analysis/budget.json if any."""
    if path is not None:
        return Path(path)
    default = Path(run_dir) / SAVED_NAME
    return default if default.is_file() else None


def load_saved_budget(path: Path, classes: tuple[str, ...]) -> SavedBudget:
    """Read a saved answer and check that it belongs to a run with these classes."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SavedBudgetError(f"cannot read {path} ({exc})") from None
    needed = ("budget", "tiers", "classes", "plan", "strategies", "curves")
    if not isinstance(data, dict) or any(k not in data for k in needed):
        raise SavedBudgetError(f"{path} is not a saved budget answer (it lacks {needed})")
    if tuple(data["classes"]) != tuple(classes):
        raise SavedBudgetError(f"{path} plans other classes ({', '.join(data['classes'])}); "
                               "rerun the budget command on this run")
    return SavedBudget(Path(path), data)


def _estimate(entry: dict[str, Any]) -> tuple[float, float, float]:
    ci = entry.get("ci") or [None, None]
    return tuple(math.nan if v is None else float(v)  # type: ignore[return-value]
                 for v in (entry.get("predicted"), *ci))


def plan_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """One row per class of the optimized plan, then 'overall': labels per tier, total, noise,
    cost, predicted accuracy with its interval."""
    plan = saved.data["plan"]
    tiers = [t["name"] for t in saved.data["tiers"]]
    rows = []
    for entry in plan["classes"]:
        acc, lo, hi = _estimate(entry)
        rows.append({"class": entry["class"], **{t: entry["labels"].get(t, 0) for t in tiers},
                     "labels": entry["total"], "noise": entry["noise"], "cost": entry["cost"],
                     "predicted": acc, "lo": lo, "hi": hi})
    acc, lo, hi = _estimate(plan["overall"])
    rows.append({"class": "overall", **{t: plan["labels_by_tier"].get(t, 0) for t in tiers},
                 "labels": plan["labels"], "noise": math.nan, "cost": plan["cost"],
                 "predicted": acc, "lo": lo, "hi": hi})
    return rows


def strategy_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """Every strategy at the budget: labels, cost, predicted objective with interval, worst
    class, and the cost to reach the target when one was asked ('not reached' within the
    curves)."""
    reach = saved.data.get("cost_to_target") or {}
    rows = []
    for s in saved.data["strategies"]:
        acc, lo, hi = _estimate(s["objective"])
        worst = s.get("worst_class")
        row = {"strategy": s["strategy"], "labels": s["labels"], "cost": s["cost"],
               "predicted": acc, "lo": lo, "hi": hi,
               "worst class": math.nan if worst is None else float(worst)}
        if saved.target is not None:
            cost = reach.get(s["strategy"])
            row["cost to reach target"] = "not reached" if cost is None else float(cost)
        rows.append(row)
    return rows


def curve_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """Tidy rows {strategy, budget, cost, accuracy} of the cost curves (the objective)."""
    return [{"strategy": c["strategy"], "budget": p["budget"], "cost": p["cost"],
             "accuracy": p["objective"]}
            for c in saved.data["curves"] for p in c["points"] if p.get("objective") is not None]


def marker_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """Each strategy's plan at the chosen budget (its cost and objective); the optimized plan
    is labelled."""
    rows = []
    for s in saved.data["strategies"]:
        acc = s["objective"].get("predicted")
        if acc is None:
            continue
        label = f"{s['strategy']} {acc:.1%}" if s["strategy"] == OPTIMIZED else ""
        rows.append({"strategy": s["strategy"], "budget": saved.budget, "cost": s["cost"],
                     "accuracy": acc, "label": label})
    return rows


def header_text(saved: SavedBudget) -> str:
    """The budget, the tiers with price and noise, the objective and the max ratio if any."""
    tiers = ", ".join(f"{t['name']} ${t['price']:,.2f}/label at {t['noise']:.0%} noise"
                      for t in saved.data["tiers"])
    ratio = saved.data.get("max_ratio")
    capped = "" if ratio is None else (f" Optimized plan: each class within {ratio:g}x the "
                                       "labels of the class with fewest.")
    return (f"Budget ${saved.budget:,.2f} over {len(saved.data['classes'])} classes; tiers: "
            f"{tiers}. Objective: {saved.measure}.{capped}")
