"""A budget answer saved by ``python -m labelsim budget`` (RUN_DIR/analysis/budget.json), read
back as plain rows for the report: the plan per class, the strategies, the cost curves, and
what ``--simulate`` measured (its verdict, and the closed loop's recommendation with
``--rounds``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelsim.analysis.budget import OPTIMIZED
from labelsim.analysis.budget.simulation import simulation_verdict

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


def _purchase(strategy: dict[str, Any]) -> tuple:
    """What a strategy buys: labels per class and tier (its name when the answer lacks them)."""
    classes = strategy.get("classes")
    if not classes:
        return (strategy["strategy"],)
    return tuple((c["class"], *sorted((c.get("labels") or {}).items())) for c in classes)


def distinct_strategies(saved: SavedBudget) -> list[tuple[list[str], dict[str, Any]]]:
    """The strategies at the budget, identical purchases merged: (all their names, the first)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for s in saved.data["strategies"]:
        groups.setdefault(_purchase(s), []).append(s)
    return [([s["strategy"] for s in group], group[0]) for group in groups.values()]


def strategy_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """Every distinct strategy at the budget (identical purchases once, under all their names
    joined by '='): labels, cost, predicted objective with interval, worst class, and the cost
    to reach the target when one was asked ('not reached' within the curves)."""
    reach = saved.data.get("cost_to_target") or {}
    rows = []
    for names, s in distinct_strategies(saved):
        acc, lo, hi = _estimate(s["objective"])
        worst = s.get("worst_class")
        row = {"strategy": " = ".join(names), "labels": s["labels"], "cost": s["cost"],
               "predicted": acc, "lo": lo, "hi": hi,
               "worst class": math.nan if worst is None else float(worst)}
        if saved.target is not None:
            row["cost to reach target"] = _reach_text(reach, names)
        rows.append(row)
    return rows


def _reach_text(reach: dict[str, Any], names: list[str]) -> str | float:
    """The cost to reach the target of strategies that buy the same plan at the budget (they
    may part ways at other budgets: then each name with its own cost)."""
    costs = {name: reach.get(name) for name in names}
    if len(set(costs.values())) == 1:
        cost = costs[names[0]]
        return "not reached" if cost is None else float(cost)
    return "; ".join(f"{name}: {'not reached' if cost is None else f'${cost:,.2f}'}"
                     for name, cost in costs.items())


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


def simulation_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """The measured-vs-predicted rows ``--simulate`` saved (one plan per distinct purchase),
    each with ``names``: every strategy that bought that plan."""
    return [r | {"names": [str(n) for n in r.get("names") or str(r["strategy"]).split(" = ")]}
            for r in saved.data.get("simulation") or []]


def simulation_verdict_text(saved: SavedBudget) -> str | None:
    """The saved one-line verdict of ``--simulate`` (worked out from the rows when an older
    answer lacks it); None without a simulation."""
    verdict = saved.data.get("simulation_verdict")
    if verdict:
        return str(verdict)
    rows = simulation_rows(saved)
    return simulation_verdict(rows) if rows else None


def _plan_name(row: dict[str, Any]) -> str:
    return " = ".join(row["names"])


def _simulated(row: dict[str, Any], with_class: bool) -> dict[str, Any]:
    sd = row.get("measured_sd")
    return {"plan": _plan_name(row), **({"class": row["class"]} if with_class else {}),
            "predicted": _number(row.get("predicted")), "measured": _number(row.get("measured")),
            "sd": _number(sd), "replicas": int(row.get("replicas") or 0),
            "error": _number(row.get("error"))}


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def simulation_overall_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """One row per simulated plan (identical plans once, under all their names): predicted
    and measured mean per-class accuracy, the spread (sd) over its replicas, measured minus
    predicted; the optimized plan first, then by measured accuracy."""
    rows = [r for r in simulation_rows(saved) if r["class"] == "overall"]
    rows.sort(key=lambda r: (OPTIMIZED not in r["names"], -_number(r.get("measured"))))
    return [_simulated(r, with_class=False) for r in rows]


def simulation_class_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """Every class of every simulated plan: predicted, measured, sd, replicas, error."""
    return [_simulated(r, with_class=True) for r in simulation_rows(saved)
            if r["class"] != "overall"]


def simulation_chart_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """Per simulated plan, its measured mean per-class accuracy with the spread of its
    replicas (lo, hi: one sd either side) and its predicted accuracy, as rows {plan, source,
    accuracy, lo, hi, replicas}."""
    out = []
    for r in simulation_overall_rows(saved):
        spread = r["sd"] if math.isfinite(r["sd"]) else math.nan
        out.append({"plan": r["plan"], "source": "measured", "accuracy": r["measured"],
                    "lo": r["measured"] - spread, "hi": r["measured"] + spread,
                    "replicas": r["replicas"]})
        if math.isfinite(r["predicted"]):
            out.append({"plan": r["plan"], "source": "predicted", "accuracy": r["predicted"],
                        "lo": math.nan, "hi": math.nan, "replicas": r["replicas"]})
    return out


def loop_text(saved: SavedBudget) -> str | None:
    """The closed loop's recommendation line (``--simulate --rounds``); None without a loop."""
    loop = saved.data.get("loop")
    if not loop:
        return None
    line = f"Recommendation: {loop.get('recommended')} ({loop.get('verdict')})"
    expected = loop_expected_text(loop)
    return line if expected is None else f"{line}. {expected}"


def loop_expected_text(loop: dict[str, Any]) -> str | None:
    """What the loop expected of its recommendation before the fresh repeats; None in answers
    saved before the loop said it."""
    if loop.get("expected") is None:
        return None
    se = "" if loop.get("expected_se") is None else f" +- {100 * loop['expected_se']:.1f}"
    measured = "the rounds' and confirming repeats' mean" if loop.get("confirmed") else "the rounds' mean"
    return (f"Expected before the fresh repeats: {100 * loop['expected']:.1f}%{se} ({measured} and the "
            "model's prediction, each weighted by its precision)")


def loop_rows(saved: SavedBudget) -> list[dict[str, Any]]:
    """The plans the closed loop measured, round by round, then on fresh repeats."""
    loop = saved.data.get("loop") or {}
    rows = []
    for r in (loop.get("rounds") or []) + (loop.get("fresh") or []):
        labels = list((r.get("labels_per_class") or {}).values())
        fresh = r.get("stage") == "fresh"
        rows.append({"plan": r.get("label"), "measured in": "fresh repeats" if fresh
                     else f"round {r.get('round')}", "measured": _number(r.get("measured")),
                     "se": _number(r.get("measured_se")), "predicted": _number(r.get("predicted")),
                     "replicas": int(r.get("replicas") or 0), "cost": _number(r.get("cost")),
                     "labels per class": f"{min(labels)}-{max(labels)}" if labels else "–"})
    return rows
