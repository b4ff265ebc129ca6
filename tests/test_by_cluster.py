"""Sensitivity by cluster: ``analyze``, ``report`` and ``budget`` with ``--by cluster``.

One cluster per class must give the per-class figures exactly (the same code path); clusters
within a class must give their own accuracies and volumes; small clusters are flagged and never
ranked; a run without clusters or predictions says which command makes them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fake_clusters import halves, one_per_class, write_clustered_run, write_clusters
from fake_run import CLASSES
from labelsim.__main__ import main as labelsim_main
from labelsim.analysis.budget import DESIGN_DIR, SIMULATION_DIR
from labelsim.analysis.by_cluster import cluster_units
from labelsim.analysis.clusters import Clusters
from labelsim.rundir import load_run

BOOT = ["--n-boot", "60"]
TIERS = ["--budget", "40", "--tier", "crowd:0.01:0.20", "--tier", "expert:0.05:0.02"]


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A clustered fake run with a cross grid (so the joint fit runs too): (run, y_train, y_test)."""
    base = tmp_path_factory.mktemp("clustered")
    y_train, y_test = write_clustered_run(base, cross=True)
    return base / "run", y_train, y_test


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _as_classes(value: object) -> object:
    """Cluster words back to class words, in keys and texts."""
    if isinstance(value, dict):
        return {_word(k): _as_classes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_classes(v) for v in value]
    return _word(value) if isinstance(value, str) else value


def _word(text: str) -> str:
    return text.replace("clusters", "classes").replace("cluster", "class")


def _assert_same(a: object, b: object, where: str = "") -> None:
    """Field by field: equal keys, equal values (floats exactly, NaN as NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_one_cluster_per_class_gives_the_per_class_results_exactly(
    clustered: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    run, y_train, y_test = clustered
    one_per_class(run, y_train, y_test)
    assert labelsim_main(["analyze", str(run), *BOOT]) == 0
    assert labelsim_main(["analyze", str(run), "--by", "cluster", *BOOT]) == 0
    by_class, by_cluster = run / "analysis", run / "analysis" / "by_cluster"

    fits = json.loads((by_class / "fits.json").read_text())
    cluster_fits = json.loads((by_cluster / "fits.json").read_text())
    assert cluster_fits["units"] == "cluster" and cluster_fits["joint"]
    extra = {"units", "clusters_info", "note"}
    _assert_same(fits, _as_classes({k: v for k, v in cluster_fits.items() if k not in extra}), "fits.json")

    for name in ("sensitivity.csv", "ranking.csv", "sizes_needed.csv", "impact.csv", "fits_noise.csv",
                 "fits_volume.csv", "fits_joint.csv", "overall.csv", "size_fractions.csv"):
        _assert_same(_csv(by_class / name), _as_classes(_csv(by_cluster / name)), name)
    per_class = _csv(by_class / "per_class.csv")
    per_cluster = [{k: v for k, v in r.items() if k not in ("class", "test_records", "train_share", "ranked",
                                                               "reason")}
                   for r in _csv(by_cluster / "per_cluster.csv")]
    _assert_same(per_class, _as_classes(per_cluster), "per_class.csv")
    accuracy = [c for c in _csv(by_cluster / "cluster_metrics.csv")[0] if c != "cluster"]
    _assert_same([{k: r[k] for k in accuracy} for r in _csv(by_class / "class_metrics.csv")],
                 [{k: r[k] for k in accuracy} for r in _csv(by_cluster / "cluster_metrics.csv")],
                 "class_metrics.csv")
    out = capsys.readouterr().out
    assert "accuracy only" in out and "flagged" not in out


def test_clusters_within_a_class_have_their_own_accuracy_and_volume(tmp_path: Path) -> None:
    favour = np.tile(np.r_[np.full(50, 4.0), np.ones(50)], len(CLASSES))  # first half of each class
    y_train, y_test = write_clustered_run(tmp_path, favour=favour, seed=3)
    run_dir = tmp_path / "run"
    k = len(CLASSES)
    train_ids, test_ids = halves(y_train, small=50), halves(y_test)
    names = [f"{c}-{part}" for c in CLASSES for part in ("near", "far")]
    write_clusters(run_dir, train_ids, test_ids, np.repeat(np.arange(k), 2), names)
    run = load_run(run_dir)
    units = cluster_units(run)
    predictions = np.load(run_dir / "test_predictions.npy").astype(int)
    finished = [r.replica for r in run.finished()]
    for u in (0, 7, 19):
        hits = (predictions[finished][:, test_ids == u] == y_test[test_ids == u]).sum(axis=1)
        np.testing.assert_array_equal(units.correct[finished, u], hits)
    # the two halves of a class add up to the class: correct counts and test records
    diagonal = np.diagonal(run.counts[finished], axis1=1, axis2=2)
    np.testing.assert_array_equal(units.correct[finished].reshape(len(finished), k, 2).sum(axis=2), diagonal)
    assert (units.correct[finished, 0::2] >= units.correct[finished, 1::2]).mean() > 0.8  # favoured halves
    # volume: a quarter of each class's training records (50 of 200) go to its first cluster
    counts = units.train_counts(run, run.finished())
    per_class = np.array([run.per_class_counts(r) for r in run.finished()])
    np.testing.assert_allclose(counts[:, 0::2], per_class * 0.25)
    np.testing.assert_allclose(counts[:, 1::2], per_class * 0.75)
    np.testing.assert_allclose(units.shares, np.tile([0.025, 0.075], k))


def test_clusters_across_classes_take_their_share_of_the_training_size(tmp_path: Path) -> None:
    y_train, y_test = write_clustered_run(tmp_path)
    run = load_run(tmp_path / "run")
    train_ids = (np.arange(len(y_train)) % 4 == 0).astype(int)  # a quarter of every class in cluster 1
    clusters = Clusters(train_ids, np.arange(len(y_test)) % 2, np.array([-1, -1]), ("a", "b"), {})
    units = cluster_units(run, clusters=clusters, labels=(y_train, y_test))
    sizes = np.array([r.train_size for r in run.finished()], float)
    np.testing.assert_allclose(units.train_counts(run, run.finished()), np.c_[sizes * 0.75, sizes * 0.25])


def test_a_small_cluster_is_flagged_and_not_ranked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y_train, y_test = write_clustered_run(tmp_path)
    run = tmp_path / "run"
    names = [f"{c}-{part}" for c in CLASSES for part in ("small", "big")]
    write_clusters(run, halves(y_train, small=20), halves(y_test, small=12), np.repeat(np.arange(10), 2), names)
    assert labelsim_main(["analyze", str(run), "--by", "cluster", *BOOT]) == 0
    out = capsys.readouterr().out
    folder = run / "analysis" / "by_cluster"
    rows = {r["cluster"]: r for r in _csv(folder / "per_cluster.csv")}
    small = [n for n in names if n.endswith("small")]
    for name in names:
        flagged = name in small
        assert rows[name]["ranked"] == str(not flagged)
        assert ("fewer than --min-records 30" in rows[name]["reason"]) == flagged
        assert (rows[name]["test_records"] == "12") == flagged
        assert rows[name]["baseline_x1000"]  # shown, with its reason, not hidden
    sensitivity = {r["cluster"]: r for r in _csv(folder / "sensitivity.csv")}
    assert all(sensitivity[n]["slope_rank"] == "" and sensitivity[n]["slope"] for n in small)
    assert sorted(int(sensitivity[n]["slope_rank"]) for n in names if n not in small) == list(range(1, 11))
    assert {r["cluster"] for r in _csv(folder / "ranking.csv")} == set(names) - set(small)
    assert "10 cluster(s) flagged" in out
    ranking = out.split("Ranking")[1]
    assert not any(n in ranking.split("cluster(s) flagged")[0] for n in small)
    # a lower threshold ranks them
    assert labelsim_main(["analyze", str(run), "--by", "cluster", "--min-records", "10", *BOOT]) == 0
    assert all(r["ranked"] == "True" for r in _csv(folder / "per_cluster.csv"))


def test_missing_inputs_name_the_command_that_makes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    y_train, y_test = write_clustered_run(tmp_path)
    run = tmp_path / "run"
    for command in ("analyze", "report"):
        assert labelsim_main([command, str(run), "--by", "cluster"]) == 2
        err = capsys.readouterr().err
        assert "clusters.npz is missing" in err and f"labelsim clusters {run} --k K" in err
    assert labelsim_main(["budget", str(run), *TIERS, "--by", "cluster"]) == 2
    assert f"labelsim clusters {run} --k K" in capsys.readouterr().err
    one_per_class(run, y_train, y_test)
    predictions = run / "test_predictions.npy"
    saved = np.load(predictions)
    predictions.unlink()
    assert labelsim_main(["analyze", str(run), "--by", "cluster"]) == 2
    err = capsys.readouterr().err
    assert "test_predictions.npy is missing" in err and "train the run again" in err
    saved[1, :5] = -1  # a finished replica without its predictions
    np.save(predictions, saved)
    assert labelsim_main(["analyze", str(run), "--by", "cluster"]) == 2
    assert "no predictions for finished replica(s) 1" in capsys.readouterr().err
    saved[1, :5] = (saved[1, :5] + 1) % len(CLASSES)  # predictions of another run
    np.save(predictions, saved)
    assert labelsim_main(["analyze", str(run), "--by", "cluster"]) == 2
    assert "disagrees with the confusion counts of replica(s) 1" in capsys.readouterr().err
    assert labelsim_main(["analyze", str(run)]) == 0  # the per-class analysis needs neither


def test_a_cluster_of_one_class_holding_another_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y_train, y_test = write_clustered_run(tmp_path)
    run = tmp_path / "run"
    test_ids = y_test.copy()
    test_ids[0] = 1  # an airplane test record in the automobile cluster
    write_clusters(run, y_train, test_ids, np.arange(10), CLASSES)
    assert labelsim_main(["analyze", str(run), "--by", "cluster"]) == 2
    assert "cluster automobile belongs to class automobile but holds test records" in capsys.readouterr().err
    write_clusters(run, y_train[:-1], y_test, np.arange(10), CLASSES)
    assert labelsim_main(["analyze", str(run), "--by", "cluster"]) == 2
    assert "assigns 1999 training and 1000 test records" in capsys.readouterr().err


def test_report_by_cluster_writes_its_own_page(
    clustered: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    run, y_train, y_test = clustered
    names = [f"{c}-{part}" for c in CLASSES for part in ("small", "big")]
    write_clusters(run, halves(y_train), halves(y_test, small=12), np.repeat(np.arange(10), 2), names)
    assert labelsim_main(["report", str(run), "--by", "cluster", *BOOT]) == 0
    page = (run / "report_by_cluster.html").read_text()
    assert "<h2>Clusters</h2>" in page and "Per-cluster summary" in page
    assert "fewer than --min-records 30" in page and "only its accuracy (recall)" in page
    assert "airplane-big" in page and "Confusion asymmetry" not in page
    assert not (run / "report.html").exists()


def test_budget_by_cluster_with_one_cluster_per_class_plans_as_per_class(
    clustered: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    run, y_train, y_test = clustered
    one_per_class(run, y_train, y_test)
    answers = []
    for by in ("class", "cluster"):
        assert labelsim_main(["budget", str(run), *TIERS, "--target", "0.85", "--json", "--no-save",
                              "--by", by]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    _assert_same(answers[0], answers[1], "budget")
    assert answers[0]["plan"]["classes"]
    # a cluster's price multiplier moves the plan away from that cluster's dearer labels
    assert labelsim_main(["budget", str(run), *TIERS, "--json", "--no-save", "--by", "cluster",
                          "--class-price", "cat=5"]) == 0
    priced = json.loads(capsys.readouterr().out)
    cat = next(e for e in priced["plan"]["classes"] if e["class"] == "cat")
    before = next(e for e in answers[0]["plan"]["classes"] if e["class"] == "cat")
    assert cat["labels"].get("expert", 0) < before["labels"].get("expert", 0)
    price = {"crowd": 0.01 * 5, "expert": 0.05 * 5}
    assert cat["cost"] == pytest.approx(sum(price[t] * n for t, n in cat["labels"].items()))
    assert labelsim_main(["budget", str(run), *TIERS, "--by", "cluster", "--save",
                          str(run / "analysis" / "by_cluster" / "budget.json")]) == 0
    capsys.readouterr()
    assert labelsim_main(["report", str(run), "--by", "cluster", *BOOT]) == 0
    assert "Labeling budget" in (run / "report_by_cluster.html").read_text()


@pytest.mark.parametrize("flag", [["--design", "4"], ["--simulate", "--rounds", "2"]])
def test_budget_by_cluster_refuses_to_train(
    clustered: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    run, y_train, y_test = clustered
    one_per_class(run, y_train, y_test)
    assert labelsim_main(["budget", str(run), *TIERS, "--by", "cluster", *flag]) == 2
    err = capsys.readouterr().err
    assert f"{flag[-2]} --by cluster is not supported yet" in err
    assert not (run / SIMULATION_DIR).exists() and not (run / DESIGN_DIR).exists()
