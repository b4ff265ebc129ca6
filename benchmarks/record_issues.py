"""How well do cross-fitted predictions find wrong labels, and does relabeling by the
recommendations beat relabeling at random?

On the demo run's synthetic data, with labels whose truth is known (the run's own noise
protocol at a given rate, and pairflip), this trains one batched grid per noise case: K folds
x R repeats of fold replicas (each on K-1 folds) plus one replica trained the usual way on
every record. cleanlab's label-quality scores on the out-of-fold probabilities averaged over
the first 1..R repeats, and on the in-sample replica's own probabilities, are scored against
the truth: AUROC, precision and recall at k = the number of wrong labels, find_label_issues'
flagged set, per class.

Then the relabeling check (first noise case): ``recommend`` (relabel only, one tier, the run's
per-class curves) picks records to send back; random relabeling of as many records at the
same tier is the alternative (cleanlab's global order is counted too). Each labeling's
corrections are counted, and the noisy labels, the recommended and the random relabeling are
each trained ``--train-repeats`` times (one batched grid) and measured on the test set.

    python -m labelsim train --preset demo --out runs/demo
    python benchmarks/record_issues.py --run runs/demo     # about 17 minutes on 2 busy CPU cores

``--cifar N`` scores CIFAR-10N's human ``random1`` labels of the first N CIFAR-10 training images
the same way (detection only; ``--cases ""`` skips the synthetic cases, ``--name`` the results file):

    python benchmarks/record_issues.py --run runs/demo --cases "" --cifar 2000 --cifar-epochs 6 \
        --folds 3 --repeats 2 --name record_issues_cifar10n
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from common import print_table, save_json  # noqa: E402
from labelsim.analysis.budget import Tier, load_context  # noqa: E402
from labelsim.analysis.records import auroc, detection_report, label_quality, noise_matrix, recommend  # noqa: E402
from labelsim.config import RunConfig  # noqa: E402
from labelsim.rundir import read_meta  # noqa: E402
from labelsim.sim.data import Dataset, load_cifar10_local, load_dataset  # noqa: E402
from labelsim.sim.human_labels import load_human_labels  # noqa: E402
from labelsim.sim.oof import (  # noqa: E402
    BatchTrainer,
    Job,
    OofSettings,
    assign_folds,
    fold_key,
    fold_training_set,
    out_of_fold,
    run_labels,
)
from labelsim.sim.noise import transition_counts  # noqa: E402
from labelsim.sim.runner import noise_kwargs  # noqa: E402

IN_SAMPLE_FOLD = 10_000  # key index of the in-sample replica (no fold uses it)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True,
                        help="a finished demo run (python -m labelsim train --preset demo)")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="shuffle:0.3,pairflip:0.2", help="NOISE_MODEL:RATE,... (truth known)")
    parser.add_argument("--relabel", type=int, default=200, help="records the relabeling check may send back")
    parser.add_argument("--tier", default="expert:1:0.02", help="NAME:PRICE:NOISE of the relabeling tier")
    parser.add_argument("--train-repeats", type=int, default=3, help="trainings per labeling in the relabeling check")
    parser.add_argument("--epochs", type=int, default=0, help="epochs of every replica (default: the run's)")
    parser.add_argument("--cifar", type=int, default=0, metavar="N",
                        help="also score CIFAR-10N human-random1 labels of the first N CIFAR-10 training images")
    parser.add_argument("--cifar-dir", default="/work/shared/data/cifar10", help="CIFAR-10 folder (original order)")
    parser.add_argument("--cifar10n-dir", default="/work/shared/data/cifar10n", help="CIFAR-10N labels.npz folder")
    parser.add_argument("--cifar-epochs", type=int, default=8, help="epochs of the CIFAR-10 replicas")
    parser.add_argument("--name", default="record_issues", help="results file: benchmarks/results/NAME.json")
    return parser.parse_args()


def curve_rows(case: str, labels: np.ndarray, clean: np.ndarray, per_repeat: list[np.ndarray],
               in_sample: np.ndarray, classes: tuple[str, ...]) -> tuple[list[dict], dict]:
    """One row per source of probabilities (in-sample, out-of-fold averaged over 1..R repeats)."""
    rows, reports = [], {}
    sources = [("in-sample (1 model, all records)", in_sample)]
    sources += [(f"out-of-fold, {r} repeat(s)", np.mean(per_repeat[:r], axis=0)) for r in range(1, len(per_repeat) + 1)]
    for name, probs in sources:
        report = detection_report(labels, probs, clean, classes)
        at = next(iter(report["at_k"].values()))
        rows.append({
            "case": case, "probabilities": name, "auroc": report["auroc"], "precision@k": at["precision"],
            "recall@k": at["recall"], "flagged": report["flagged"], "flagged precision": report["flagged_precision"],
            "flagged recall": report["flagged_recall"],
        })  # fmt: skip
        reports[name] = report
    return rows, reports


def relabel(labels: np.ndarray, clean: np.ndarray, records: np.ndarray, noise: float, c: int,
            rng: np.random.Generator) -> np.ndarray:
    """New labels from a tier: the clean label, except a ``noise`` share of them moved to another class."""
    out = labels.copy()
    wrong = rng.random(len(records)) < noise
    out[records] = np.where(wrong, (clean[records] + rng.integers(1, c, len(records))) % c, clean[records])
    return out


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    meta = read_meta(args.run)
    config = RunConfig.from_dict(meta["config"])
    if args.epochs:
        config = dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, epochs=args.epochs))
    dataset = load_dataset(config.data)
    classes, seed = dataset.class_names, config.grid.seed
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    first: dict[str, Any] = {}
    cases = [(case, config, dataset) for case in args.cases.split(",") if case]
    if args.cifar:
        cases.append(cifar_case(args, config))
    for case, case_config, dataset in cases:
        clean = dataset.y_train.astype(np.int32)
        if case.startswith("cifar10n"):
            labels = load_human_labels(args.cifar10n_dir)["random1"][: args.cifar].astype(np.int32)
        else:
            noise_model, rate = case.split(":")
            grid = dataclasses.replace(config.grid, noise_models=(noise_model,))
            case_config = dataclasses.replace(config, grid=grid)
            settings = OofSettings(args.folds, args.repeats, noise_model, float(rate))
            labels = run_labels(case_config, dataset, settings, noise_kwargs(case_config))
        ids = [assign_folds(labels, args.folds, seed, r) for r in range(args.repeats)]
        jobs = [Job(fold_training_set(ids[r], k), labels[fold_training_set(ids[r], k)], fold_key(seed, r, k))
                for r in range(args.repeats) for k in range(args.folds)]  # fmt: skip
        everything = np.arange(len(labels))
        jobs.append(Job(everything, labels, fold_key(seed, 0, IN_SAMPLE_FOLD)))
        t0 = time.monotonic()
        trainer = BatchTrainer(case_config, dataset, len(jobs), min(len(j.train) for j in jobs))
        probs = trainer.train_predict(jobs, dataset.x_train)
        seconds = time.monotonic() - t0
        per_repeat = [out_of_fold(probs[r * args.folds : (r + 1) * args.folds], ids[r]) for r in range(args.repeats)]
        case_rows, reports = curve_rows(case, labels, clean, per_repeat, probs[-1], classes)
        rows += case_rows
        true_matrix = transition_counts(clean, labels, len(classes)).astype(float)
        true_matrix /= np.maximum(true_matrix.sum(axis=1, keepdims=True), 1)
        estimated = noise_matrix(labels, np.mean(per_repeat, axis=0))
        details[case] = {"wrong_labels": int((labels != clean).sum()), "train_seconds": seconds,
                         "replicas": len(jobs), "reports": reports, "noise_matrix_true": true_matrix.round(4),
                         "noise_matrix_estimated": estimated.round(4),
                         "noise_matrix_mean_abs_error": float(np.abs(estimated - true_matrix).mean())}  # fmt: skip
        print(f"{case}: {len(jobs)} replicas trained in {seconds:.0f} s", file=sys.stderr)
        if not first and not case.startswith("cifar10n"):
            first = {"dataset": dataset, "case": case, "labels": labels, "probs": np.mean(per_repeat, axis=0)}
        save_json(args.name, {"settings": settings_record(args, config, meta), "detection": rows,
                                    "details": details, "partial": True})  # fmt: skip
    print_table(rows, ["case", "probabilities", "auroc", "precision@k", "recall@k", "flagged", "flagged precision",
                       "flagged recall"])  # fmt: skip
    check = {}
    if first:
        check = relabel_check(args, config, first["dataset"], first, first["dataset"].y_train.astype(np.int32), classes)
    payload = {
        "settings": settings_record(args, config, meta),
        "detection": rows, "details": details, "relabel": check, "seconds": time.monotonic() - started,
    }  # fmt: skip
    print(f"saved {save_json(args.name, payload)}")


def cifar_case(args: argparse.Namespace, config: RunConfig) -> tuple[str, RunConfig, Dataset]:
    """The first ``--cifar`` CIFAR-10 training images (the model of the run, ``--cifar-epochs``)."""
    full = load_cifar10_local(args.cifar_dir)
    n = args.cifar
    subset = Dataset("cifar10", full.x_train[:n], full.y_train[:n], full.x_test[:1000], full.y_test[:1000],
                     full.class_names)  # fmt: skip
    recipe = dataclasses.replace(config.recipe, epochs=args.cifar_epochs)
    return f"cifar10n-random1 (first {n})", dataclasses.replace(config, recipe=recipe), subset


def settings_record(args: argparse.Namespace, config: RunConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's flags and the data and model it ran on."""
    return {**vars(args), "run": str(args.run), "epochs": config.recipe.epochs, "dataset": meta.get("dataset"),
            "model": meta["config"].get("model")}  # fmt: skip


def relabel_check(args: argparse.Namespace, config: RunConfig, dataset: Any, first: dict[str, Any],
                  clean: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """Recommended vs random relabeling of as many records with one tier: corrections and test accuracy."""
    name, price, noise = args.tier.split(":")
    tier = Tier(name, float(price), float(noise))
    labels, probs, c = first["labels"], first["probs"], dataset.num_classes
    context = load_context(args.run)
    chosen = recommend(labels, probs, context.curves, [tier], args.relabel * tier.price, actions=("relabel",))
    picked = np.array([r.record for r in chosen], np.int64)
    m = len(picked)
    rng = np.random.default_rng(7)
    wrong = labels != clean
    quality = label_quality(labels, probs)
    orders = {
        "recommended": picked,
        "random": rng.choice(len(labels), size=m, replace=False),
        "cleanlab order": np.argsort(quality, kind="mergesort")[:m],
    }
    table = []
    results: dict[str, Any] = {"case": first["case"], "records": m, "tier": args.tier, "wrong_before": int(wrong.sum())}
    new_labels = {"noisy (no relabeling)": labels}
    for strategy, records in orders.items():
        new = relabel(labels, clean, records, tier.noise, c, np.random.default_rng(11))
        new_labels[strategy] = new
        fixed = int((wrong[records] & (new[records] == clean[records])).sum())
        results[strategy] = {"relabeled": int(len(records)), "were_wrong": int(wrong[records].sum()),
                             "corrected": fixed, "wrong_after": int((new != clean).sum())}  # fmt: skip
    trained = [s for s in ("noisy (no relabeling)", "recommended", "random")]
    jobs = [Job(np.arange(len(labels)), new_labels[s], np.asarray([17 + r, i], np.uint32))
            for i, s in enumerate(trained) for r in range(args.train_repeats)]  # fmt: skip
    trainer = BatchTrainer(config, dataset, len(jobs), len(labels))
    test = trainer.train_predict(jobs, dataset.x_test)
    predicted = test.argmax(axis=-1)
    for i, strategy in enumerate(trained):
        block = predicted[i * args.train_repeats : (i + 1) * args.train_repeats]
        per_class = np.stack([[np.mean(p[dataset.y_test == k] == k) for k in range(c)] for p in block])
        mean = per_class.mean(axis=1)
        results.setdefault(strategy, {}).update(
            test_accuracy=[float(x) for x in mean], test_accuracy_mean=float(mean.mean()),
            test_accuracy_se=float(mean.std(ddof=1) / np.sqrt(len(mean))) if len(mean) > 1 else float("nan"),
            per_class=dict(zip(classes, per_class.mean(axis=0).round(4).tolist())),
        )  # fmt: skip
    for strategy in ("noisy (no relabeling)", "recommended", "random", "cleanlab order"):
        r = results[strategy]
        table.append({"strategy": strategy, "relabeled": r.get("relabeled", 0), "were wrong": r.get("were_wrong"),
                      "corrected": r.get("corrected"), "wrong after": r.get("wrong_after", int(wrong.sum())),
                      "test acc": r.get("test_accuracy_mean"), "se": r.get("test_accuracy_se")})  # fmt: skip
    print_table(table, ["strategy", "relabeled", "were wrong", "corrected", "wrong after", "test acc", "se"])
    results["table"] = table
    results["auroc_of_quality_scores"] = auroc(-quality, wrong)
    return results


if __name__ == "__main__":
    main()
