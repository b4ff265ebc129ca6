"""The reference study's CIFAR-10 figures, and a run's figures beside them.

Source: Talk 'Towards a cost-optimized labeling strategy' (Data Day Austin, 2020-01-25):
a CIFAR-10 sensitivity study with a 7-layer CNN trained 125 epochs at batch 64; figures
transcribed from its slides. Its protocol: label pollution shuffles the labels of n% of the
50,000 training records among themselves (labelsim's ``shuffle``); volume reduction trains on
random subsets of the training set. Only the handful of numbers compared here are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labelsim.analysis.compare import spearman
from labelsim.analysis.metrics import CLEAN, PointMetrics, find_point, x1000
from labelsim.rundir import Run
from labelsim.analysis.text import fmt_num

SOURCE = "Talk 'Towards a cost-optimized labeling strategy' (Data Day Austin, 2020-01-25)"
DATASET = "cifar10"
TRAIN_SIZE = 50_000
BASELINE_ACCURACY = 0.8894  # overall test accuracy of the study's CNN, clean, 50k

# Per-class test accuracy x1000 in the study's three conditions.
PER_CLASS_X1000: dict[str, dict[str, int]] = {
    "baseline": {"cat": 706, "dog": 790, "deer": 875, "bird": 889, "airplane": 897,
                 "ship": 928, "truck": 936, "horse": 944, "frog": 963, "automobile": 966},
    "noise_30pct": {"cat": 608, "dog": 698, "bird": 744, "deer": 811, "airplane": 837,
                    "horse": 877, "ship": 897, "automobile": 922, "truck": 928, "frog": 951},
    "volume_5k": {"cat": 520, "bird": 594, "dog": 599, "deer": 716, "airplane": 789,
                  "horse": 830, "ship": 853, "truck": 887, "automobile": 905, "frog": 914},
}


@dataclass(frozen=True)
class Condition:
    """A grid point of the study: its key in PER_CLASS_X1000 and its coordinates."""

    key: str
    label: str
    short: str
    noise_model: str
    noise_rate: float
    train_size: int


CONDITIONS = (
    Condition("baseline", "baseline (clean, 50k)", "baseline", CLEAN, 0.0, TRAIN_SIZE),
    Condition("noise_30pct", "30% noise (shuffle, 50k)", "noise 30%", "shuffle", 0.3,
              TRAIN_SIZE),
    Condition("volume_5k", "5k (clean)", "n=5k", CLEAN, 0.0, 5_000),
)


@dataclass(frozen=True)
class ReferenceComparison:
    """One model's per-class accuracies beside the study's, per condition found in the run."""

    model: str
    classes: tuple[str, ...]  # the run's classes the study also reports
    found: dict[str, PointMetrics]  # condition key -> the run's grid point
    missing: list[str]  # one sentence per condition (or class) the run lacks

    @property
    def usable(self) -> bool:
        """Whether at least one condition can be compared."""
        return bool(self.found)


def applies(run: Run) -> bool:
    """Whether the run trained on CIFAR-10 (run.json dataset.name), the study's dataset."""
    dataset = run.meta.get("dataset") or {}
    return isinstance(dataset, dict) and dataset.get("name") == DATASET


def _point(points: list[PointMetrics], model: str, cond: Condition) -> PointMetrics | None:
    nm = None if cond.noise_rate == 0 else cond.noise_model
    return find_point(points, model, cond.noise_rate, cond.train_size, nm)


def _missing_text(run: Run, model: str, cond: Condition) -> str:
    full = run.full_size(model)
    where = (f"{cond.noise_model} noise at rate {cond.noise_rate:g}, " if cond.noise_rate
             else "clean, ")
    note = f"; the run's full size is {full:,}" if full != TRAIN_SIZE else ""
    return (f"{cond.label}: {model} has no finished grid point ({where}{cond.train_size:,} "
            f"training images){note}")


def compare_reference(run: Run, points: list[PointMetrics], model: str) -> ReferenceComparison:
    """The study's conditions that the run has for ``model``, and what is missing."""
    known = PER_CLASS_X1000["baseline"]
    classes = tuple(c for c in run.classes if c in known)
    missing = [f"class {c!r} is not one of the study's" for c in run.classes if c not in known]
    found = {}
    for cond in CONDITIONS:
        pm = _point(points, model, cond)
        if pm is None:
            missing.append(_missing_text(run, model, cond))
        else:
            found[cond.key] = pm
    return ReferenceComparison(model, classes, found, missing)


def compare_models(run: Run, points: list[PointMetrics]) -> list[ReferenceComparison]:
    """A reference comparison per model of a CIFAR-10 run; [] for any other dataset."""
    if not applies(run):
        return []
    return [compare_reference(run, points, m) for m in run.models()]


def _run_x1000(run: Run, pm: PointMetrics, cls: str) -> int | None:
    return x1000(pm.accuracy.mean[run.classes.index(cls)])


REFERENCE_COLUMNS = ("model", "class", *(f"{cond.key}_{part}" for cond in CONDITIONS
                                           for part in ("run", "study", "diff")))


def reference_rows(run: Run, ref: ReferenceComparison) -> list[dict]:
    """One row per class: run and study accuracy x1000 per condition found, and differences."""
    rows = []
    for cls in ref.classes:
        row: dict = {"model": ref.model, "class": cls}
        for cond in CONDITIONS:
            pm = ref.found.get(cond.key)
            if pm is None:
                continue
            ours, theirs = _run_x1000(run, pm, cls), PER_CLASS_X1000[cond.key][cls]
            row |= {f"{cond.key}_run": ours, f"{cond.key}_study": theirs,
                    f"{cond.key}_diff": None if ours is None else ours - theirs}
        rows.append(row)
    return rows


def _drops(run: Run, ref: ReferenceComparison, key: str) -> tuple[list[float], list[float]]:
    """Per-class accuracy lost from the baseline to a condition: (run, study)."""
    base, pm = ref.found["baseline"], ref.found[key]
    ours = [float(base.accuracy.mean[run.classes.index(c)] - pm.accuracy.mean[run.classes.index(c)])
            for c in ref.classes]
    theirs = [(PER_CLASS_X1000["baseline"][c] - PER_CLASS_X1000[key][c]) / 1000
              for c in ref.classes]
    return ours, theirs


AGREEMENT_COLUMNS = ("model", "compared", "classes", "spearman", "spearman_p", "run_mean",
                     "study_mean")


def agreement_rows(run: Run, ref: ReferenceComparison) -> list[dict]:
    """Spearman rank agreement with the study: of per-class accuracy in each condition found,
    and of the per-class drop from the baseline under noise and under the volume cut."""
    rows = []
    for cond in CONDITIONS:
        pm = ref.found.get(cond.key)
        if pm is None:
            continue
        ours = [float(pm.accuracy.mean[run.classes.index(c)]) for c in ref.classes]
        theirs = [PER_CLASS_X1000[cond.key][c] / 1000 for c in ref.classes]
        rows.append(_agreement(ref.model, f"accuracy, {cond.label}", ours, theirs))
    for cond in CONDITIONS[1:]:
        if "baseline" in ref.found and cond.key in ref.found:
            ours, theirs = _drops(run, ref, cond.key)
            rows.append(_agreement(ref.model, f"drop from baseline, {cond.label}", ours, theirs))
    return rows


def _agreement(model: str, what: str, ours: list[float], theirs: list[float]) -> dict:
    rho, p = spearman(ours, theirs)
    return {"model": model, "compared": what, "classes": len(ours), "spearman": rho,
            "spearman_p": p, "run_mean": float(np.mean(ours)) if ours else math.nan,
            "study_mean": float(np.mean(theirs)) if theirs else math.nan}


def overall_row(ref: ReferenceComparison) -> dict | None:
    """The run's clean full-data overall accuracy beside the study's 0.8894."""
    base = ref.found.get("baseline")
    if base is None:
        return None
    return {"model": ref.model, "run": float(base.overall.mean), "study": BASELINE_ACCURACY,
            "diff": float(base.overall.mean) - BASELINE_ACCURACY}


def reference_table(run: Run, ref: ReferenceComparison) -> tuple[list[str], list[list[str]]]:
    """Display text: per class, the run's and the study's accuracy x1000 in each condition."""
    conds = [c for c in CONDITIONS if c.key in ref.found]
    headers = ["class"]
    for c in conds:
        headers += [f"{c.short} run", "study", "diff"]
    rows = []
    for r in reference_rows(run, ref):
        cells = [r["class"]]
        for c in conds:
            cells += [fmt_num(r[f"{c.key}_run"], "d"), fmt_num(r[f"{c.key}_study"], "d"),
                      fmt_num(r[f"{c.key}_diff"], "+d")]
        rows.append(cells)
    return headers, rows
