"""Replay: spend a labeling budget round by round by several strategies, from the same partial,
noisy labeling, and measure what each buys. Jax-free: the training is the caller's
(``labelsim.sim.replay``), given to ``replay`` as a ``StageTrainer``.

The simulation knows the truth (the dataset's clean labels). A label bought from a tier is
the clean label, except with the tier's noise rate another class drawn uniformly; the j-th
label a tier gives a record is fixed by (seed, tier, j), so every strategy that buys the
same label gets the same answer. A relabel replaces the record's label by a fresh draw.

The start: a seeded ``start_fraction`` of the training set labeled by the cheapest tier (its
money is not counted), the rest an unlabeled pool. Round r (1..R) lets each strategy spend up
to r/R of the budget in all (money a round leaves unspent carries over). Strategies:

- ``recommend``: ``labelsim.analysis.records.recommend`` on the current labeling's
  out-of-fold probabilities (labels and relabels at any tier);
- ``random``: random pool records labeled by the cheapest tier;
- ``cleanlab``: relabels in cleanlab's order (label-quality score, lowest first) by the best
  (lowest-noise) tier;
- ``per-class``: the budget module's optimized per-class plan at the start's cost plus the
  budget; the labels it asks for beyond the start's are bought as random pool records of
  each class (in a seeded random order of the purchases).

No record is relabeled twice in the whole replay. Stage s (0 = the start, s = after round s)
trains every strategy's labeling ``repeats`` times and, while rounds remain, the cross-fitted
replicas that give the next round its out-of-fold probabilities, as one grid.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from labelsim.analysis.budget import DEFAULT_MAX_RATIO, BudgetError, BudgetProblem, Tier, check_tiers, optimize
from labelsim.analysis.records import label_quality, recommend
from labelsim.rundir import RunDirError, write_json

STRATEGIES = ("recommend", "random", "cleanlab", "per-class")
NEEDS_PROBS = ("recommend", "cleanlab")  # strategies that choose from out-of-fold probabilities
REPLAY_DIR = "replay"
REPLAY_FILE = "replay.json"
START_STREAM, LABEL_STREAM, ORDER_STREAM = 201, 202, 203

# Trains one stage: labelings (N,) with -1 = unlabeled. ``evaluate`` labelings are each trained
# ``repeats`` times and predict the test set: (len(evaluate), repeats, M, C). ``cross_fit``
# labelings each get out-of-fold probabilities for every training record: (N, C) per labeling.
StageTrainer = Callable[[int, list[np.ndarray], list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]


@dataclass(frozen=True)
class ReplaySettings:
    """The replay question."""

    budget: float
    tiers: tuple[Tier, ...]
    start_fraction: float = 0.2
    rounds: int = 3
    repeats: int = 2
    strategies: tuple[str, ...] = STRATEGIES
    folds: int = 3
    seed: int = 0
    epochs: int = 0  # 0: the run's

    def identity(self) -> dict[str, Any]:
        """Everything that changes the replay's results."""
        return {
            "budget": self.budget, "tiers": [[t.name, t.price, t.noise] for t in self.tiers],
            "start_fraction": self.start_fraction, "rounds": self.rounds, "repeats": self.repeats,
            "strategies": list(self.strategies), "folds": self.folds, "seed": self.seed, "epochs": self.epochs,
        }  # fmt: skip

    def digest(self, data: str = "") -> str:
        """12 hex digits of the question (and ``data``, a fingerprint of the data): its folder name."""
        text = json.dumps({"settings": self.identity(), "data": data}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def cheapest(self) -> int:
        """Index of the cheapest tier (the less noisy one on a tie)."""
        return min(range(len(self.tiers)), key=lambda t: (self.tiers[t].price, self.tiers[t].noise))

    @property
    def best(self) -> int:
        """Index of the lowest-noise tier (the cheaper one on a tie)."""
        return min(range(len(self.tiers)), key=lambda t: (self.tiers[t].noise, self.tiers[t].price))


def check_flags(s: ReplaySettings) -> None:
    """BudgetError naming the flag of any setting the replay cannot run with, whatever the data."""
    check_tiers(s.tiers)
    if not (math.isfinite(s.budget) and s.budget > 0):
        raise BudgetError(f"--budget {s.budget:g}: give a positive amount of money")
    if not (math.isfinite(s.start_fraction) and 0.0 < s.start_fraction < 1.0):
        raise BudgetError(f"--start-fraction {s.start_fraction:g}: give a share of the training set in (0, 1), "
                          "e.g. 0.2")
    unknown = [x for x in s.strategies if x not in STRATEGIES]
    if unknown or not s.strategies:
        raise BudgetError(f"--strategies: unknown {', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(STRATEGIES)}")  # fmt: skip
    if len(set(s.strategies)) != len(s.strategies):
        raise BudgetError("--strategies names a strategy twice; name each once")
    for flag, value, least in (("--rounds", s.rounds, 1), ("--repeats", s.repeats, 1), ("--folds", s.folds, 2)):
        if value < least:
            raise BudgetError(f"{flag} {value}: give at least {least}")
    if s.epochs < 0:
        raise BudgetError(f"--epochs {s.epochs}: give a positive number of epochs (0: the run's)")


def check_settings(s: ReplaySettings, n_train: int, num_classes: int) -> None:
    """BudgetError naming the flag of any setting the replay cannot run with on this data."""
    check_flags(s)
    start = start_count(s, n_train)
    if start < s.folds * num_classes:
        raise BudgetError(f"--start-fraction {s.start_fraction:g} labels {start} records, too few for --folds "
                          f"{s.folds} in each of {num_classes} classes; give a larger share")  # fmt: skip
    cheap = s.tiers[s.cheapest]
    buys = int(math.floor(s.budget / cheap.price + 1e-9))
    pool = n_train - start
    if buys > pool:
        raise BudgetError(f"--budget {s.budget:g} buys {buys} labels of tier {cheap.name} but the pool holds only "
                          f"{pool} unlabeled records; lower --budget or --start-fraction")  # fmt: skip


def start_count(s: ReplaySettings, n_train: int) -> int:
    """Records labeled at the start."""
    return int(round(s.start_fraction * n_train))


# ---------------------------------------------------------------------------------------
# Labels from tiers, and a strategy's labeling
# ---------------------------------------------------------------------------------------


class TierLabels:
    """The labels tiers give: draw j of record i from tier t is fixed by (seed, t, j).

    ``human`` maps a tier name to (A, N) real annotations: that tier's draw j < A of a record is
    annotation j (e.g. CIFAR-10N's random1, random2, random3), later draws are simulated."""

    def __init__(self, clean: np.ndarray, num_classes: int, tiers: Sequence[Tier], seed: int,
                 human: dict[str, np.ndarray] | None = None):  # fmt: skip
        self.clean = np.asarray(clean, np.int64)
        self.c, self.tiers, self.seed = num_classes, tuple(tiers), seed
        self.human = {k: np.atleast_2d(np.asarray(v, np.int64)) for k, v in (human or {}).items()}
        self._draws: dict[tuple[int, int], np.ndarray] = {}

    def _labels(self, tier: int, attempt: int) -> np.ndarray:
        if (tier, attempt) not in self._draws:
            annotations = self.human.get(self.tiers[tier].name)
            if annotations is not None and attempt < len(annotations):
                labels = annotations[attempt]
            else:
                rng = np.random.default_rng([self.seed, LABEL_STREAM, tier, attempt])
                wrong = rng.random(len(self.clean)) < self.tiers[tier].noise
                shift = rng.integers(1, self.c, len(self.clean))
                labels = np.where(wrong, (self.clean + shift) % self.c, self.clean)
            self._draws[(tier, attempt)] = labels
        return self._draws[(tier, attempt)]

    def draw(self, records: np.ndarray, tier: int, attempts: np.ndarray) -> np.ndarray:
        """Labels of ``records`` from ``tier``, each the record's draw number ``attempts``."""
        records, attempts = np.asarray(records, np.int64), np.asarray(attempts, np.int64)
        out = np.empty(len(records), np.int64)
        for a in np.unique(attempts):
            at = attempts == a
            out[at] = self._labels(int(tier), int(a))[records[at]]
        return out


@dataclass
class Labeling:
    """One strategy's labeling and its accounts."""

    labels: np.ndarray  # (N,) -1 = unlabeled
    draws: np.ndarray  # (T, N) labels each tier gave each record so far
    relabeled: np.ndarray  # (N,) bool
    spent: float = 0.0
    relabel_spent: float = 0.0
    corrected: int = 0  # wrong labels a relabel made right
    spoiled: int = 0  # right labels a relabel made wrong
    purchases: int = 0

    def copy(self) -> Labeling:
        """An independent copy."""
        return Labeling(self.labels.copy(), self.draws.copy(), self.relabeled.copy(), self.spent, self.relabel_spent,
                        self.corrected, self.spoiled, self.purchases)  # fmt: skip

    def wrong(self, clean: np.ndarray) -> int:
        """Labeled records whose label is not the truth."""
        held = self.labels >= 0
        return int(np.sum(self.labels[held] != clean[held]))

    @property
    def pool(self) -> np.ndarray:
        """Unlabeled records."""
        return np.flatnonzero(self.labels < 0)


Purchase = tuple[int, str, int]  # (record, "label" or "relabel", tier index)


def start_labeling(s: ReplaySettings, source: TierLabels) -> Labeling:
    """The seeded start: ``start_fraction`` of the records labeled by the cheapest tier (draw 0)."""
    n = len(source.clean)
    rng = np.random.default_rng([s.seed, START_STREAM])
    records = np.sort(rng.choice(n, size=start_count(s, n), replace=False))
    labels = np.full(n, -1, np.int64)
    draws = np.zeros((len(s.tiers), n), np.int64)
    labels[records] = source.draw(records, s.cheapest, np.zeros(len(records), np.int64))
    draws[s.cheapest, records] = 1
    return Labeling(labels, draws, np.zeros(n, bool))


def apply(labeling: Labeling, purchases: Sequence[Purchase], s: ReplaySettings, source: TierLabels) -> None:
    """Buy ``purchases`` in order: pay, draw the labels, count corrections."""
    for record, action, tier in purchases:
        price = s.tiers[tier].price
        old = int(labeling.labels[record])
        if (action == "label") != (old < 0) or (action == "relabel" and labeling.relabeled[record]):
            raise ValueError(f"cannot {action} record {record}")
        new = int(source.draw(np.array([record]), tier, labeling.draws[tier, [record]])[0])
        labeling.draws[tier, record] += 1
        labeling.labels[record] = new
        labeling.spent += price
        labeling.purchases += 1
        if action == "relabel":
            truth = int(source.clean[record])
            labeling.relabeled[record] = True
            labeling.relabel_spent += price
            labeling.corrected += int(old != truth and new == truth)
            labeling.spoiled += int(old == truth and new != truth)


# ---------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------


@dataclass
class Plans:
    """What the strategies choose from besides a labeling: the run's curves, the seeded
    orders of the random strategies, and the per-class plan's purchase list."""

    curves: Any  # per-class ClassCurve, for recommend and per-class
    random_order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    per_class: list[tuple[int, int]] = field(default_factory=list)  # (record, tier) in buying order


def make_plans(s: ReplaySettings, curves: Any, start: Labeling, clean: np.ndarray, num_classes: int) -> Plans:
    """The random strategies' orders and, when asked for, the per-class plan's purchases."""
    rng = np.random.default_rng([s.seed, ORDER_STREAM])
    pool = start.pool
    plans = Plans(curves, random_order=rng.permutation(pool))
    if "per-class" in s.strategies:
        plans.per_class = per_class_purchases(s, curves, start, clean, num_classes, rng)
    return plans


def per_class_purchases(s: ReplaySettings, curves: Any, start: Labeling, clean: np.ndarray, num_classes: int,
                        rng: np.random.Generator) -> list[tuple[int, int]]:  # fmt: skip
    """The optimized per-class plan at the start's cost plus the budget, less the labels the
    start holds (its cheapest-tier labels of each true class), as random pool records of each
    class, in a random order of the purchases."""
    held = np.bincount(clean[start.labels >= 0], minlength=num_classes)
    pooled = np.bincount(clean[start.pool], minlength=num_classes)
    start_cost = float(held.sum()) * s.tiers[s.cheapest].price
    try:
        problem = BudgetProblem(curves=tuple(curves), tiers=tuple(s.tiers), budget=start_cost + s.budget,
                                available=tuple(int(v) for v in held + pooled), max_ratio=DEFAULT_MAX_RATIO)
        plan = optimize(problem, intervals=False)
    except BudgetError as err:
        raise BudgetError(f"the per-class strategy has no plan ({err}); raise --budget or leave per-class out of "
                          "--strategies") from None  # fmt: skip
    want = plan.counts.astype(np.int64).copy()
    want[:, s.cheapest] -= np.minimum(want[:, s.cheapest], held)
    slots = [(k, t) for k in range(num_classes) for t in range(len(s.tiers)) for _ in range(int(want[k, t]))]
    members = {k: list(rng.permutation(start.pool[clean[start.pool] == k])) for k in range(num_classes)}
    buys = []
    for i in rng.permutation(len(slots)):
        k, t = slots[i]
        if members[k]:
            buys.append((int(members[k].pop()), t))
    return buys


def choose(strategy: str, labeling: Labeling, money: float, s: ReplaySettings, plans: Plans,
           probs: np.ndarray | None) -> list[Purchase]:  # fmt: skip
    """A strategy's purchases for one round with ``money`` left to spend."""
    if strategy == "random":
        price = s.tiers[s.cheapest].price
        count = int(math.floor(money / price + 1e-9))
        order = plans.random_order[labeling.labels[plans.random_order] < 0]
        return [(int(i), "label", s.cheapest) for i in order[:count]]
    if strategy == "cleanlab":
        assert probs is not None
        price = s.tiers[s.best].price
        count = int(math.floor(money / price + 1e-9))
        candidates = np.flatnonzero((labeling.labels >= 0) & ~labeling.relabeled)
        scores = label_quality(labeling.labels[candidates], probs[candidates])
        order = candidates[np.argsort(scores, kind="mergesort")]
        return [(int(i), "relabel", s.best) for i in order[:count]]
    if strategy == "per-class":
        buys, left = [], money
        for record, tier in plans.per_class[labeling.purchases :]:
            price = s.tiers[tier].price
            if price > left + 1e-9:
                break
            buys.append((record, "label", tier))
            left -= price
        return buys
    assert probs is not None
    chosen = recommend(labeling.labels, probs, plans.curves, s.tiers, money, pool=labeling.pool,
                       frozen=np.flatnonzero(labeling.relabeled))  # fmt: skip
    tier_index = {t.name: i for i, t in enumerate(s.tiers)}
    return [(r.record, r.action, tier_index[r.tier]) for r in chosen]


# ---------------------------------------------------------------------------------------
# The replay: stages, results, resumption
# ---------------------------------------------------------------------------------------


def mean_class_accuracy(test_probs: np.ndarray, y_test: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean per-class test accuracy of each replica's predictions (..., M, C) -> (...)."""
    hit = test_probs.argmax(axis=-1) == y_test
    per_class = [hit[..., y_test == k].mean(axis=-1) for k in range(num_classes) if np.any(y_test == k)]
    return np.mean(per_class, axis=0)


def stage_row(labeling: Labeling, clean: np.ndarray, accuracy: np.ndarray) -> dict[str, Any]:
    """A strategy's accounts and test accuracy (mean and SE over the repeats) at one stage."""
    acc = np.asarray(accuracy, np.float64)
    se = float(acc.std(ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else None
    return {
        "spent": round(labeling.spent, 9), "relabel_spent": round(labeling.relabel_spent, 9),
        "labeled": int(np.sum(labeling.labels >= 0)), "wrong": labeling.wrong(clean),
        "relabels": int(labeling.relabeled.sum()), "corrected": labeling.corrected, "spoiled": labeling.spoiled,
        "accuracy": [float(a) for a in acc], "accuracy_mean": float(acc.mean()), "accuracy_se": se,
    }  # fmt: skip


def replay_path(run_dir: Path, s: ReplaySettings, data: str = "") -> Path:
    """RUN/replay/<digest>/replay.json."""
    return Path(run_dir) / REPLAY_DIR / s.digest(data) / REPLAY_FILE


def read_replay(path: Path) -> dict[str, Any]:
    """A replay.json, or a RunDirError that says what to do."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{path} cannot be read ({type(err).__name__}); delete it to start the replay over") from None


def replay(
    s: ReplaySettings,
    clean: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    curves: Any,
    train: StageTrainer,
    path: Path,
    human: dict[str, np.ndarray] | None = None,
    data: str = "",
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run (or continue) the replay, writing ``path`` atomically after every stage; returns its content.

    A replay.json already at ``path`` for the same question is continued at its first
    unfinished stage: the labelings are rebuilt from its purchases."""
    clean = np.asarray(clean, np.int64)
    check_settings(s, len(clean), num_classes)
    source = TierLabels(clean, num_classes, s.tiers, s.seed, human)
    start = start_labeling(s, source)
    plans = make_plans(s, curves, start, clean, num_classes)
    result: dict[str, Any] = {
        "settings": s.identity(), "data": data, "digest": s.digest(data), "strategies": list(s.strategies),
        "start": {"labeled": int(np.sum(start.labels >= 0)), "wrong": start.wrong(clean),
                  "cost": float(np.sum(start.labels >= 0) * s.tiers[s.cheapest].price)},
        "stages": [], "purchases": {name: [] for name in s.strategies}, "complete": False,
    }  # fmt: skip
    if Path(path).is_file():
        stored = read_replay(path)
        if stored.get("settings") != result["settings"] or stored.get("data") != data:
            raise RunDirError(f"{path} holds another replay question; delete it to start over")
        result = stored
    labelings = {name: start.copy() for name in s.strategies}
    for name in s.strategies:
        for bought in result["purchases"][name]:
            apply(labelings[name], [(int(r), str(a), int(t)) for r, a, t in bought], s, source)
    for stage in range(len(result["stages"]), s.rounds + 1):
        log(f"replay: stage {stage} of {s.rounds} (round {stage}: {stage}/{s.rounds} of the budget)")
        distinct = _distinct(labelings)
        needs = [n for n in s.strategies if n in NEEDS_PROBS] if stage < s.rounds else []
        fit_sets = _distinct({n: labelings[n] for n in needs})
        test_probs, oof = train(stage, [labelings[n].labels for n in dict.fromkeys(distinct.values())],
                                [labelings[n].labels for n in dict.fromkeys(fit_sets.values())])  # fmt: skip
        accuracy = mean_class_accuracy(test_probs, np.asarray(y_test), num_classes)
        owners = list(dict.fromkeys(distinct.values()))
        row = {"round": stage, "allowance": s.budget * stage / s.rounds, "strategies": {}}
        for name in s.strategies:
            row["strategies"][name] = stage_row(labelings[name], clean, accuracy[owners.index(distinct[name])])
        if stage < s.rounds:
            fit_owners = list(dict.fromkeys(fit_sets.values()))
            allowance = s.budget * (stage + 1) / s.rounds
            for name in s.strategies:
                probs = oof[fit_owners.index(fit_sets[name])] if name in fit_sets else None
                bought = choose(name, labelings[name], allowance - labelings[name].spent, s, plans, probs)
                apply(labelings[name], bought, s, source)
                result["purchases"][name].append([[r, a, t] for r, a, t in bought])
        result["stages"].append(row)
        result["complete"] = stage == s.rounds
        write_json(Path(path), result)
    return result


def _distinct(labelings: dict[str, Labeling]) -> dict[str, str]:
    """Each strategy -> the first strategy with the same labels (trained once for all of them)."""
    firsts: list[str] = []
    owners: dict[str, str] = {}
    for name, labeling in labelings.items():
        match = next((f for f in firsts if np.array_equal(labelings[f].labels, labeling.labels)), None)
        if match is None:
            firsts.append(name)
        owners[name] = match or name
    return owners


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def replay_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per strategy and stage: money, labels, wrong labels, test accuracy."""
    rows = []
    for stage in result["stages"]:
        for name, r in stage["strategies"].items():
            rows.append({"strategy": name, "round": stage["round"], "spent": r["spent"], "labeled": r["labeled"],
                         "wrong": r["wrong"], "relabels": r["relabels"], "corrected": r["corrected"],
                         "accuracy": r["accuracy_mean"], "se": r["accuracy_se"]})  # fmt: skip
    return rows


def correction_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per strategy at the last finished stage: wrong labels its relabels fixed per unit of money
    spent on them, against the expectation of relabeling as many random labeled records with
    the same tiers (the start's wrong share times each tier's chance of a right label)."""
    if not result["stages"]:
        return []
    tiers = [Tier(n, p, e) for n, p, e in result["settings"]["tiers"]]
    share = result["start"]["wrong"] / max(result["start"]["labeled"], 1)
    rows = []
    for name, r in result["stages"][-1]["strategies"].items():
        relabels = [int(t) for bought in result["purchases"][name][: result["stages"][-1]["round"]]
                    for _, action, t in bought if action == "relabel"]  # fmt: skip
        expected = sum(share * (1.0 - tiers[t].noise) for t in relabels)
        money = r["relabel_spent"]
        rows.append({"strategy": name, "relabel money": money, "relabels": len(relabels), "corrected": r["corrected"],
                     "spoiled": r["spoiled"], "corrected per unit cost": r["corrected"] / money if money else None,
                     "random relabeling per unit cost": expected / money if money else None,
                     "x random relabeling": r["corrected"] / expected if expected else None})  # fmt: skip
    return rows
