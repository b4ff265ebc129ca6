"""Metrics from confusion counts, grouping by grid point, ranking, asymmetry, run reading."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest

from fake_run import write_fake_run
from labelsim.analysis import RunDirError, load_run
from labelsim.analysis.metrics import (
    CLEAN,
    GridPoint,
    all_point_metrics,
    asymmetry_rows,
    baseline,
    biggest_movers,
    class_accuracy,
    confusion_rates,
    noise_axis,
    one_vs_rest,
    overall_accuracy,
    pair_asymmetry,
    point_metrics,
    ranking_rows,
    ranks,
    size_axis,
    spread,
)
from labelsim.rundir import Replica, Run
from labelsim.commands import analyze

# rows = true class, columns = predicted class
HAND = np.array([[5, 2, 3], [1, 8, 1], [0, 2, 8]])


def test_one_vs_rest_matches_hand_computation() -> None:
    r = one_vs_rest(HAND)
    # class 0: TP 5, FN 5, FP 1, TN 19; classes 1 and 2: TP 8, FN 2, FP 4, TN 16
    np.testing.assert_allclose(r["tpr"], [5 / 10, 8 / 10, 8 / 10])
    np.testing.assert_allclose(r["fnr"], [5 / 10, 2 / 10, 2 / 10])
    np.testing.assert_allclose(r["fpr"], [1 / 20, 4 / 20, 4 / 20])
    np.testing.assert_allclose(r["tnr"], [19 / 20, 16 / 20, 16 / 20])
    np.testing.assert_allclose(class_accuracy(HAND), r["tpr"])  # per-class accuracy = recall
    assert overall_accuracy(HAND) == pytest.approx(21 / 30)
    np.testing.assert_allclose(confusion_rates(HAND)[0], [0.5, 0.2, 0.3])


def test_metrics_broadcast_over_replicas_and_handle_empty_rows() -> None:
    stack = np.stack([HAND, HAND * 2, np.zeros((3, 3), int)])
    r = one_vs_rest(stack)
    assert r["tpr"].shape == (3, 3)
    np.testing.assert_allclose(r["tpr"][0], r["tpr"][1])  # rates do not depend on scale
    assert np.all(np.isnan(r["tpr"][2]))  # no test images: undefined, not zero


def test_spread_is_mean_std_and_t_interval() -> None:
    s = spread(np.array([0.8, 0.9]))
    assert float(s.mean) == pytest.approx(0.85)
    assert float(s.std) == pytest.approx(math.sqrt(0.005))
    half = 12.7062047 * math.sqrt(0.005) / math.sqrt(2)
    assert (float(s.lo), float(s.hi)) == pytest.approx((0.85 - half, 0.85 + half))
    single = spread(np.array([[0.5, 0.6]]))
    assert single.n == 1 and np.all(np.isnan(single.std)) and np.all(np.isnan(single.lo))


def _constructed_run(per_replica_counts: list[np.ndarray], coords: list[tuple]) -> Run:
    """A Run in memory: coords are (noise_rate, train_size, repeat) per replica."""
    reps = tuple(
        Replica(i, "noise" if size == 300 else "volume", "m", "shuffle", rate, size, rep,
                rate, math.nan, "finished")
        for i, (rate, size, rep) in enumerate(coords)
    )
    classes = ("cat", "dog", "frog")
    return Run(Path("."), {}, classes, reps, np.stack(per_replica_counts),
               class_shares=np.full(3, 1 / 3))


# cat->frog (10%) is five times frog->cat (2%); cat->dog and dog->cat are equal (20%)
BASE = np.array([[70, 20, 10], [20, 78, 2], [2, 0, 98]])
NOISY = np.array([[50, 30, 20], [30, 69, 1], [5, 5, 90]])
SMALL = np.array([[60, 25, 15], [40, 55, 5], [4, 1, 95]])


@pytest.fixture()
def constructed() -> Run:
    coords = [(0.0, 300, 0), (0.0, 300, 1), (0.0, 300, 2), (0.4, 300, 0), (0.4, 300, 1),
              (0.0, 100, 0), (0.0, 100, 1)]
    counts = [BASE, BASE + [[1, -1, 0], [0, 0, 0], [0, 0, 0]], BASE, NOISY, NOISY, SMALL, SMALL]
    return _constructed_run(counts, coords)


def test_asymmetry_of_a_constructed_pair(constructed: Run) -> None:
    pm = baseline(all_point_metrics(constructed), constructed, "m")
    asym = pair_asymmetry(BASE[None], 0, 2)
    assert float(asym["diff"].mean) == pytest.approx(0.10 - 0.02)
    expected = math.log(10.5 / 101) - math.log(2.5 / 101)
    assert float(asym["log_ratio"].mean) == pytest.approx(expected)
    top = asymmetry_rows(pm, constructed.classes, k=None)[0]
    assert top["pair"] == "cat->frog" and top["reverse"] == "frog->cat"
    assert top["rate"] == pytest.approx(0.10, abs=0.01) and top["ratio"] > 3
    assert top["diff_lo"] > 0  # clear across three repeats
    sym = next(r for r in asymmetry_rows(pm, constructed.classes, k=None) if "dog" in r["pair"]
               and "cat" in r["pair"])
    assert abs(sym["diff"]) < 0.01


def test_grid_points_baseline_and_axes(constructed: Run) -> None:
    metrics = all_point_metrics(constructed)
    points = {pm.point for pm in metrics}
    assert GridPoint("m", CLEAN, 0.0, 300) in points  # clean points drop the noise model
    assert GridPoint("m", "shuffle", 0.4, 300) in points
    base = baseline(metrics, constructed, "m")
    assert base.replicas == (0, 1, 2) and base.accuracy.n == 3
    assert [pm.point.noise_rate for pm in noise_axis(metrics, constructed, "m", "shuffle")] \
        == [0.0, 0.4]
    assert [pm.point.train_size for pm in size_axis(metrics, "m")] == [100, 300]
    np.testing.assert_allclose(base.mean_confusion[0], [70 + 1 / 3, 20 - 1 / 3, 10])


def test_ranking_side_by_side_and_movers(constructed: Run) -> None:
    metrics = all_point_metrics(constructed)
    np.testing.assert_array_equal(ranks([0.7, 0.78, 0.98]), [1, 2, 3])
    base = baseline(metrics, constructed, "m")
    noisy = next(pm for pm in metrics if pm.point.noise_rate == 0.4)
    small = next(pm for pm in metrics if pm.point.train_size == 100)
    rows = ranking_rows([("baseline", base), ("noise", noisy), ("size", small)],
                        constructed.classes)
    by_class = {r["class"]: r for r in rows}
    # accuracies: baseline cat .70 dog .78 frog .98; noise cat .50 dog .69; size cat .60 dog .55
    assert by_class["cat"]["baseline rank"] == 1 and by_class["dog"]["size rank"] == 1
    assert by_class["dog"]["size change"] == -1 and by_class["cat"]["size change"] == 1
    assert by_class["frog"]["total_move"] == 0
    assert by_class["dog"]["size acc_x1000"] == 550
    assert set(biggest_movers(rows)) == {"cat", "dog"}


def test_point_metrics_rates_agree_with_counts(constructed: Run) -> None:
    pm = point_metrics(constructed, GridPoint("m", "shuffle", 0.4, 300), [3, 4])
    assert float(pm.overall.mean) == pytest.approx((50 + 69 + 90) / 300)
    np.testing.assert_allclose(pm.rates["fpr"].mean[0], 35 / 200)
    np.testing.assert_allclose(pm.rates["tnr"].mean + pm.rates["fpr"].mean, 1.0)


# ---------------------------------------------------------------- reading a run directory


def test_load_fake_run(tmp_path: Path) -> None:
    write_fake_run(tmp_path, diverged=(3,))
    run = load_run(tmp_path)
    assert run.classes[3] == "cat" and run.counts.shape == (len(run.replicas), 10, 10)
    assert [r.replica for r in run.diverged()] == [3]
    assert run.full_size("small_cnn") == 2000
    np.testing.assert_allclose(run.per_class_counts(run.replicas[0]), 200.0)


def test_diverged_replicas_are_excluded_even_with_counts(tmp_path: Path) -> None:
    write_fake_run(tmp_path, diverged=(3,))
    data = dict(np.load(tmp_path / "confusion.npz"))
    data["counts"][3] = 0
    data["counts"][3][:, 0] = 100  # a diverged net predicting class 0 for everything
    np.savez(tmp_path / "confusion.npz", **data)
    run = load_run(tmp_path)
    pm = next(pm for pm in all_point_metrics(run) if pm.point.noise_rate == 0.2)
    assert pm.replicas == (2,) and pm.accuracy.n == 1
    np.testing.assert_allclose(pm.accuracy.mean, class_accuracy(run.counts[2]))


@pytest.mark.parametrize("damage", ["no_dir", "no_json", "bad_json", "no_csv", "bad_csv",
                                    "no_npz", "bad_shape", "bad_column"])
def test_broken_run_dirs_raise_one_clear_error(tmp_path: Path, damage: str) -> None:
    write_fake_run(tmp_path)
    target = tmp_path
    if damage == "no_dir":
        target = tmp_path / "missing"
    elif damage == "no_json":
        (tmp_path / "run.json").unlink()
    elif damage == "bad_json":
        (tmp_path / "run.json").write_text("{not json")
    elif damage == "no_csv":
        (tmp_path / "replicas.csv").unlink()
    elif damage == "bad_csv":
        text = (tmp_path / "replicas.csv").read_text().replace(",shuffle,0,2000,", ",shuffle,zero,2000,", 1)
        (tmp_path / "replicas.csv").write_text(text)
    elif damage == "no_npz":
        (tmp_path / "confusion.npz").unlink()
    elif damage == "bad_shape":
        np.savez(tmp_path / "confusion.npz", counts=np.zeros((2, 3, 3), int))
    elif damage == "bad_column":
        text = (tmp_path / "replicas.csv").read_text().replace("status", "state", 1)
        (tmp_path / "replicas.csv").write_text(text)
    with pytest.raises(RunDirError) as err:
        load_run(target)
    assert "\n" not in str(err.value)


def test_analyze_command_exits_2_without_traceback(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    analyze.add_arguments(parser)
    assert analyze.run(parser.parse_args([str(tmp_path / "nope")])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and err.count("\n") == 1
