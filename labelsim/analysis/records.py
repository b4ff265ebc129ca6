"""Record-level label quality: the run folder's out-of-fold predictions (``oof.npz``), label
issues found on them with cleanlab (confident learning), and how well a ranking finds the
labels known to be wrong. Jax-free: the predictions are read from the file ``python -m
labelsim oof`` writes.

``oof.npz`` holds, for the N training records of the run's dataset:

- ``probs`` (N, C) float16: each record's predicted class probabilities from the fold replicas
  that did not train on it, averaged over the finished repeats (unlabeled pool records: the
  mean of every replica of a repeat, since none trained on them);
- ``probs_sum`` (N, C) float32: the same before dividing by the repeats (exact resumption);
- ``folds`` (R, N) int16: each record's held-out fold per finished repeat, -1 for the pool;
- ``labels`` (N,) int32: the noisy labels the replicas trained on, -1 for the pool;
- ``repeat_probs`` (R, N, C) float16: per-repeat probabilities, when at most
  ``MAX_REPEAT_VALUES`` values (else an empty array);
- ``repeats_done``, ``repeats`` (requested), ``fingerprint`` (of the run's config, its dataset
  and the oof settings other than the repeats), ``settings`` (JSON), ``classes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from labelsim.rundir import NPZ_ERRORS, RunDirError, write_npz

OOF_FILE = "oof.npz"
MAX_REPEAT_VALUES = 20_000_000  # per-repeat probabilities kept up to this many values (40 MB as float16)
CLEANLAB_REQUIREMENT = "cleanlab>=2.6,<3"


@dataclass(frozen=True)
class OofData:
    """Out-of-fold predictions of a run's training records (see the module docstring)."""

    probs_sum: np.ndarray  # (N, C) float32
    folds: np.ndarray  # (R_done, N) int16
    labels: np.ndarray  # (N,) int32, -1 = unlabeled pool
    repeat_probs: np.ndarray | None  # (R_done, N, C) float16, None when too large to keep
    repeats: int  # requested
    fingerprint: str
    settings: dict[str, Any]
    classes: tuple[str, ...]

    @property
    def repeats_done(self) -> int:
        """Finished repeats."""
        return int(self.folds.shape[0])

    @property
    def complete(self) -> bool:
        """Whether every requested repeat finished."""
        return self.repeats_done >= self.repeats

    @property
    def probs(self) -> np.ndarray:
        """(N, C) float32 probabilities averaged over the finished repeats."""
        return self.probs_sum / max(self.repeats_done, 1)

    @property
    def labeled(self) -> np.ndarray:
        """Indices of the labeled records."""
        return np.flatnonzero(self.labels >= 0)

    @property
    def pool(self) -> np.ndarray:
        """Indices of the unlabeled pool records."""
        return np.flatnonzero(self.labels < 0)


def keeps_repeats(repeats: int, n: int, c: int) -> bool:
    """Whether per-repeat probabilities of this size are stored."""
    return repeats * n * c <= MAX_REPEAT_VALUES


def write_oof(path: Path, oof: OofData) -> None:
    """Write ``oof.npz`` atomically."""
    repeat_probs = oof.repeat_probs if oof.repeat_probs is not None else np.zeros((0,), np.float16)
    write_npz(
        Path(path),
        probs=oof.probs.astype(np.float16),
        probs_sum=oof.probs_sum.astype(np.float32),
        folds=oof.folds.astype(np.int16),
        labels=oof.labels.astype(np.int32),
        repeat_probs=repeat_probs.astype(np.float16),
        repeats_done=np.int64(oof.repeats_done),
        repeats=np.int64(oof.repeats),
        fingerprint=np.str_(oof.fingerprint),
        settings=np.str_(json.dumps(oof.settings, sort_keys=True)),
        classes=np.asarray(oof.classes, dtype=np.str_),
    )


def read_oof(run_dir: str | Path) -> OofData:
    """``RUN_DIR/oof.npz``, or a RunDirError that says how to make it."""
    path = Path(run_dir) / OOF_FILE
    if not path.is_file():
        raise RunDirError(
            f"{run_dir} has no {OOF_FILE} (out-of-fold predictions); make it first with "
            f"python -m labelsim oof {run_dir} --folds 5"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            repeat_probs = f["repeat_probs"]
            oof = OofData(
                probs_sum=f["probs_sum"].astype(np.float32),
                folds=f["folds"].astype(np.int16),
                labels=f["labels"].astype(np.int32),
                repeat_probs=repeat_probs if repeat_probs.ndim == 3 else None,
                repeats=int(f["repeats"]),
                fingerprint=str(f["fingerprint"]),
                settings=json.loads(str(f["settings"])),
                classes=tuple(str(c) for c in f["classes"]),
            )
    except (*NPZ_ERRORS, json.JSONDecodeError) as err:
        raise RunDirError(
            f"{path} is damaged ({type(err).__name__}: {err}); delete it and run python -m labelsim oof again"
        ) from None
    n, c = oof.probs_sum.shape
    if oof.labels.shape != (n,) or oof.folds.shape[1:] != (n,) or len(oof.classes) != c:
        raise RunDirError(f"{path} holds arrays of mismatched shapes; delete it and run python -m labelsim oof again")
    return oof


# ---------------------------------------------------------------------------------------
# Label issues (cleanlab)
# ---------------------------------------------------------------------------------------


def _cleanlab() -> Any:
    try:
        import cleanlab.count
        import cleanlab.filter
        import cleanlab.rank
    except ImportError:
        raise RunDirError(
            f"label-issue scores need cleanlab, which is not installed; pip install '{CLEANLAB_REQUIREMENT}'"
        ) from None
    return cleanlab


def _checked(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (M,) and probabilities (M, C) as cleanlab takes them: float64 rows summing to 1."""
    labels = np.asarray(labels, np.int64)
    probs = np.asarray(probs, np.float64)
    probs = np.clip(probs, 0.0, None)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return labels, probs


def label_quality(labels: np.ndarray, probs: np.ndarray, method: str = "self_confidence") -> np.ndarray:
    """cleanlab's label-quality score per record (M,): near 0 = likely wrong, near 1 = likely right."""
    labels, probs = _checked(labels, probs)
    return np.asarray(_cleanlab().rank.get_label_quality_scores(labels, probs, method=method))


def ranked_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Positions of the records confident learning flags as mislabeled, most likely wrong first
    (cleanlab.filter.find_label_issues, pruned by noise rate, ranked by self-confidence)."""
    labels, probs = _checked(labels, probs)
    ranked = _cleanlab().filter.find_label_issues(
        labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1  # no fork of a process running jax
    )
    return np.asarray(ranked, np.int64)


def noise_matrix(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Estimated (C, C) label-noise matrix, row k = where the labels of true class k go
    (P(given label = j | true class = k); rows sum to 1)."""
    labels, probs = _checked(labels, probs)
    _, matrix, _, _ = _cleanlab().count.estimate_py_and_noise_matrices_from_probabilities(labels, probs)
    return np.asarray(matrix, np.float64).T  # cleanlab's columns are the true classes


# ---------------------------------------------------------------------------------------
# Detection quality where the truth is known
# ---------------------------------------------------------------------------------------


def auroc(suspicion: np.ndarray, wrong: np.ndarray) -> float:
    """Area under the ROC curve of ``suspicion`` (higher = more likely wrong) for the records
    that are ``wrong``: the chance a random wrong label outranks a random right one (ties
    count half); nan when either group is empty."""
    suspicion = np.asarray(suspicion, np.float64)
    wrong = np.asarray(wrong, bool)
    positives, negatives = int(wrong.sum()), int((~wrong).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(suspicion)  # ties share their mean rank
    return float((ranks[wrong].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def precision_recall_at(ranking: np.ndarray, wrong: np.ndarray, k: int) -> tuple[float, float]:
    """Precision and recall of the first ``k`` positions of ``ranking`` (positions into ``wrong``)."""
    wrong = np.asarray(wrong, bool)
    top = np.asarray(ranking)[:k]
    hits = int(wrong[top].sum())
    return hits / max(len(top), 1), hits / max(int(wrong.sum()), 1)


def detection_report(
    labels: np.ndarray, probs: np.ndarray, clean: np.ndarray, classes: tuple[str, ...], ks: tuple[int, ...] = ()
) -> dict[str, Any]:
    """How well cleanlab finds the wrong labels (``labels != clean``) from ``probs``: AUROC of the
    label-quality score, precision and recall at k (k = the true number of wrong labels unless
    ``ks`` given) of its ranking, the same for find_label_issues' flagged set, and per class (of
    the given label)."""
    wrong = np.asarray(labels) != np.asarray(clean)
    scores = label_quality(labels, probs)
    ranking = np.argsort(scores, kind="mergesort")
    flagged = ranked_issues(labels, probs)
    n_wrong = int(wrong.sum())
    report: dict[str, Any] = {
        "records": int(len(labels)),
        "wrong": n_wrong,
        "auroc": auroc(-scores, wrong),
        "flagged": int(len(flagged)),
        "flagged_precision": float(wrong[flagged].mean()) if len(flagged) else float("nan"),
        "flagged_recall": float(wrong[flagged].sum() / max(n_wrong, 1)),
        "at_k": {},
    }
    for k in ks or (n_wrong,):
        precision, recall = precision_recall_at(ranking, wrong, k)
        report["at_k"][str(k)] = {"precision": precision, "recall": recall}
    per_class = {}
    for c, name in enumerate(classes):
        members = np.flatnonzero(np.asarray(labels) == c)
        w = wrong[members]
        order = members[np.argsort(scores[members], kind="mergesort")]
        precision, recall = precision_recall_at(np.searchsorted(members, order), w, int(w.sum()))
        per_class[name] = {
            "records": int(len(members)),
            "wrong": int(w.sum()),
            "auroc": auroc(-scores[members], w),
            "precision_at_wrong": precision,
            "recall_at_wrong": recall,
        }
    report["per_class"] = per_class
    return report


# ---------------------------------------------------------------------------------------
# Recommendations: which records to label or relabel, at which tier
# ---------------------------------------------------------------------------------------

RECOMMEND_COLUMNS = ("record", "action", "tier", "class", "score", "cost", "expected_gain", "gain_per_cost")


@dataclass(frozen=True)
class Recommendation:
    """One purchase: ``relabel`` a labeled record or ``label`` a pool record with a tier.

    ``score`` is the record's cleanlab label-quality score for a relabel (low = likely wrong)
    and its uncertainty (1 - the largest predicted probability) for a label; ``gain`` is the
    predicted rise of the mean per-class accuracy at the moment it was chosen."""

    record: int
    action: str
    tier: str
    class_index: int
    score: float
    cost: float
    gain: float


def recommend(
    labels: np.ndarray,
    probs: np.ndarray,
    curves: Any,
    tiers: Any,
    budget: float,
    pool: np.ndarray | None = None,
    actions: tuple[str, ...] = ("label", "relabel"),
    frozen: np.ndarray | None = None,
) -> list[Recommendation]:
    """Spend ``budget`` greedily on the purchase with the highest predicted gain per unit cost.

    The labeled set is described by each class's labeled count n_k and by its expected wrong
    labels W = sum over the N labeled records of (1 - p_i[label_i]), the out-of-fold
    probability that the label is wrong. Class k's predicted accuracy is the run's fitted curve
    ``curves[k].accuracy(n_k, W / N)``: the noise axis is the labeled set's share of wrong
    labels, as the run's noise grids measured it (every class noisy at once), so a wrong label
    costs every class, not only the one it names. Relabeling record i with tier t replaces its
    chance of being wrong by the tier's noise (W - (1 - p_i[label_i]) + eps_t); labeling pool
    record j adds p_j[k] of a label to every class k, and eps_t to W. A relabel's gain thus
    grows with its chance of being wrong alone: relabels go in cleanlab's order (the lowest
    label-quality score, p_i[label_i], first); pool records are labeled most uncertain first
    within their predicted class. A record is chosen at most once; purchases stop when no
    affordable one is predicted to gain. ``pool`` limits the candidate pool records (default:
    every unlabeled record); ``frozen`` labeled records are never relabeled (e.g. those
    relabeled before)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    c = probs.shape[1]
    labeled = np.flatnonzero(labels >= 0)
    pool = np.flatnonzero(labels < 0) if pool is None else np.asarray(pool)
    quality = np.zeros(len(labels))
    quality[labeled] = label_quality(labels[labeled], probs[labeled]) if len(labeled) else []
    wrong_chance = np.zeros(len(labels))
    wrong_chance[labeled] = 1.0 - probs[labeled, labels[labeled]]
    uncertainty = 1.0 - probs.max(axis=1)
    predicted = probs.argmax(axis=1)
    movable = np.ones(len(labels), bool)
    if frozen is not None:
        movable[np.asarray(frozen, np.int64)] = False
    candidates = labeled[movable[labeled]] if "relabel" in actions else labeled[:0]
    relabel_queue = list(candidates[np.argsort(quality[candidates], kind="mergesort")])
    label_queues = [list(members[np.argsort(-uncertainty[members], kind="mergesort")]) if "label" in actions else []
                    for members in (pool[predicted[pool] == k] for k in range(c))]  # fmt: skip
    noise = np.array([t.noise for t in tiers], np.float64)
    price = np.array([t.price for t in tiers], np.float64)
    counts = np.bincount(labels[labeled], minlength=c).astype(np.float64)
    wrong, size = float(wrong_chance[labeled].sum()), float(len(labeled))

    def mean_accuracy(n: np.ndarray, wrong_labels: np.ndarray, records: float) -> np.ndarray:
        """Predicted mean per-class accuracy per tier: counts n (C,), wrong labels (T,)."""
        eps = np.clip(wrong_labels / max(records, 1.0), 0.0, 1.0)
        return sum(curves[k].accuracy(np.full(len(tiers), n[k]), eps) for k in range(c)) / c

    chosen: list[Recommendation] = []
    left = float(budget)
    while True:
        base = mean_accuracy(counts, np.full(len(tiers), wrong), size)
        gains = np.full((1 + c, len(tiers)), -np.inf)  # row 0: the next relabel; row 1 + k: class k's next label
        if relabel_queue:
            gains[0] = mean_accuracy(counts, wrong - wrong_chance[relabel_queue[0]] + noise, size) - base
        for k in range(c):
            if label_queues[k]:
                gains[1 + k] = mean_accuracy(counts + probs[label_queues[k][0]], wrong + noise, size + 1.0) - base
        value = np.where((price <= left + 1e-9) & (gains > 0), gains / price, -np.inf)
        if not np.isfinite(value).any():
            return chosen
        row, t = np.unravel_index(int(np.argmax(value)), value.shape)
        if row == 0:
            i = relabel_queue.pop(0)
            wrong += noise[t] - wrong_chance[i]
            chosen.append(Recommendation(int(i), "relabel", tiers[t].name, int(labels[i]), float(quality[i]),
                                         float(price[t]), float(gains[row, t])))  # fmt: skip
        else:
            j = label_queues[row - 1].pop(0)
            counts = counts + probs[j]
            wrong += noise[t]
            size += 1.0
            chosen.append(Recommendation(int(j), "label", tiers[t].name, int(row - 1), float(uncertainty[j]),
                                         float(price[t]), float(gains[row, t])))  # fmt: skip
        left -= float(price[t])


def recommendation_rows(chosen: list[Recommendation], classes: tuple[str, ...]) -> list[dict[str, Any]]:
    """CSV rows (``RECOMMEND_COLUMNS``) of recommendations, in the order chosen."""
    return [
        {
            "record": r.record, "action": r.action, "tier": r.tier, "class": classes[r.class_index],
            "score": f"{r.score:.6f}", "cost": f"{r.cost:g}", "expected_gain": f"{r.gain:.3e}",
            "gain_per_cost": f"{r.gain / r.cost:.3e}",
        }  # fmt: skip
        for r in chosen
    ]
