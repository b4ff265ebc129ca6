"""Replicas with per-group label counts and noise (any grouping of the training records), and
``budget --by cluster --simulate``, which trains per-cluster plans as such replicas.

The grouping by label is the per-class replica itself (same keys, subset and noisy labels); sizes
per group are exact; noise per group moves only that group's records, at its rate; one cluster per
class simulates exactly as the per-class plan.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from fake_clusters import one_per_class, write_clustered_run
from labelsim.__main__ import main as labelsim_main
from labelsim.config import ConfigError, ReplicaSpec
from labelsim.rundir import load_run
from labelsim.sim.data import make_synthetic
from labelsim.sim.grid import replica_keys
from labelsim.sim.prepare import grouping_inputs, prepare_replica

C = 5
RNG = np.random.default_rng(11)
CLEAN = RNG.permutation(np.arange(3000) % C).astype(np.int32)
GROUPS = RNG.integers(0, 4, size=len(CLEAN))  # four groups across every class


def _spec(**fields: object) -> ReplicaSpec:
    base = dict(replica=0, experiment="custom", repeat=1, noise_model="shuffle", noise_rate=0.0,
                train_size=len(CLEAN), model="small_cnn")
    return ReplicaSpec(**(base | fields))


def _prepare(spec: ReplicaSpec, groupings: dict[str, np.ndarray] | None = None, seed: int = 3):
    return prepare_replica(spec, replica_keys(seed, spec), CLEAN, C, noise_kwargs=grouping_inputs(groupings))


@pytest.mark.parametrize("noise_model", ["shuffle", "symmetric"])
def test_grouping_by_label_trains_as_the_per_class_replica(noise_model: str) -> None:
    sizes, rates = (300, 500, 120, 600, 410), (0.1, 0.0, 0.35, 0.2, 0.5)
    per_class = _spec(noise_model=noise_model, class_sizes=sizes, class_noise=rates, train_size=sum(sizes))
    by_label = _spec(noise_model=noise_model, grouping=ReplicaSpec.LABELS, group_sizes=sizes,
                     group_noise=rates, train_size=sum(sizes))
    # a named grouping whose ids are the labels: the same replica again
    named = dataclasses.replace(by_label, grouping="mine")
    a, b, c = _prepare(per_class), _prepare(by_label), _prepare(named, {"mine": CLEAN.copy()})
    keys = [replica_keys(3, spec) for spec in (per_class, by_label, named)]
    for other in keys[1:]:
        assert all(np.array_equal(x, y) for x, y in zip(keys[0], other))
    for other in (b, c):
        assert np.array_equal(a.subset, other.subset) and np.array_equal(a.labels, other.labels)
        assert np.array_equal(a.transitions, other.transitions)
    assert by_label.size == per_class.size == sum(sizes) and by_label.per_group == ReplicaSpec.LABELS
    assert a.realized_noise > 0.1  # noise was applied, so the equality says something
    # another repeat draws another subset: the keys follow the coordinates
    assert not np.array_equal(a.subset, _prepare(dataclasses.replace(by_label, repeat=2)).subset)


def test_per_group_sizes_are_honoured_exactly() -> None:
    sizes = (17, 400, 0, 233)
    spec = _spec(grouping="g", group_sizes=sizes, train_size=sum(sizes))
    prepared = _prepare(spec, {"g": GROUPS})
    assert np.bincount(GROUPS[prepared.subset], minlength=4).tolist() == list(sizes)
    assert len(np.unique(prepared.subset)) == sum(sizes)
    assert np.array_equal(prepared.labels, CLEAN[prepared.subset])  # no noise asked: clean labels
    # the groups cut across classes: the subset is not a per-class draw in disguise
    assert len(np.unique(CLEAN[prepared.subset][GROUPS[prepared.subset] == 1])) == C


def test_per_group_noise_flips_only_its_group_at_its_rate() -> None:
    rates = (0.0, 0.1, 0.5, 0.3)
    counts = np.bincount(GROUPS, minlength=4)
    flipped_by_class = np.zeros((4, C))
    seeds = range(6)
    for seed in seeds:
        prepared = _prepare(_spec(grouping="g", group_noise=rates), {"g": GROUPS}, seed=seed)
        assert np.array_equal(prepared.subset, np.arange(len(CLEAN)))  # full set: the noise alone
        changed = prepared.labels != CLEAN
        for g, rate in enumerate(rates):
            # exact counts per group (the protocol's round(r * n_g)), and never into the own class
            assert changed[GROUPS == g].sum() == round(rate * counts[g])
        assert not changed[GROUPS == 0].any()
        for g in range(4):
            flipped_by_class[g] += np.bincount(CLEAN[changed & (GROUPS == g)], minlength=C)
    # within a group the flipped records are drawn uniformly, whatever their class: each class of a
    # group is flipped at the group's rate (a per-class or per-position draw would not be)
    members = np.array([[np.sum((GROUPS == g) & (CLEAN == k)) for k in range(C)] for g in range(4)])
    for g, rate in enumerate(rates[1:], start=1):
        expected = rate * members[g] * len(seeds)
        sd = np.sqrt(len(seeds) * members[g] * rate * (1 - rate))
        assert np.all(np.abs(flipped_by_class[g] - expected) < 4 * sd), (g, flipped_by_class[g], expected)
    # the new labels are spread over the other classes
    prepared = _prepare(_spec(grouping="g", group_noise=(0.9, 0.9, 0.9, 0.9)), {"g": GROUPS})
    moved = prepared.labels != CLEAN
    offsets = np.bincount((prepared.labels[moved] - CLEAN[moved]) % C, minlength=C)
    assert offsets[0] == 0 and offsets[1:].min() > 0.8 * moved.sum() / (C - 1)


def test_per_group_replicas_say_what_is_wrong() -> None:
    spec = _spec(grouping="g", group_sizes=(10, 10, 10, 10), train_size=40)
    with pytest.raises(ConfigError, match="grouping 'g', which the run was not given"):
        _prepare(spec)
    with pytest.raises(ConfigError, match="has 3 entries but the grouping 'g' has 4 groups"):
        _prepare(dataclasses.replace(spec, group_sizes=(10, 10, 20)), {"g": GROUPS})
    with pytest.raises(ConfigError, match="one group id per training record"):
        _prepare(spec, {"g": GROUPS[:-1]})
    with pytest.raises(ConfigError, match="group of 'g' 0 asks for 5000 labels"):
        _prepare(dataclasses.replace(spec, group_sizes=(5000, 1, 1, 1)), {"g": GROUPS})
    with pytest.raises(ConfigError, match="shuffle or symmetric noise model"):
        _prepare(_spec(noise_model="pairflip", grouping="g", group_noise=(0.1,) * 4), {"g": GROUPS})
    with pytest.raises(ConfigError, match="per-group sizes or noise but no grouping"):
        _prepare(dataclasses.replace(spec, grouping=""), {"g": GROUPS})
    with pytest.raises(ConfigError, match="both per-class and per-group"):
        _prepare(_spec(class_sizes=(10,) * C, grouping="g", group_sizes=(10,) * 4, train_size=50), {"g": GROUPS})


# ------------------------------------------------------------------ budget --by cluster --simulate

TIERS = ["--budget", "40", "--tier", "crowd:0.01:0.20", "--tier", "expert:0.05:0.02"]


def _tiny_training(run_dir: Path, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """Give a fake run real (tiny) images for its labels and a tiny recipe, so its plans can train."""
    synthetic = make_synthetic(len(y_train), len(y_test), 8, seed=0)
    images = {}
    for split, y, x_all, y_all in (("train", y_train, synthetic.x_train, synthetic.y_train),
                                   ("test", y_test, synthetic.x_test, synthetic.y_test)):
        order = np.concatenate([np.flatnonzero(y_all == k)[: np.sum(y == k)] for k in range(10)])
        images[split] = x_all[order]
    meta = json.loads((run_dir / "run.json").read_text())
    data = meta["config"]["data"]["name"].removeprefix("npz:")
    np.savez(data, x_train=images["train"], y_train=y_train, x_test=images["test"], y_test=y_test,
             class_names=np.array(meta["classes"]))
    meta["config"]["model"]["width"] = 4
    meta["config"]["recipe"].update(epochs=1, batch_size=64)
    (run_dir / "run.json").write_text(json.dumps(meta))


def test_budget_by_cluster_simulate_with_one_cluster_per_class_measures_as_per_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    y_train, y_test = write_clustered_run(tmp_path)
    run = tmp_path / "run"
    one_per_class(run, y_train, y_test)
    _tiny_training(run, y_train, y_test)
    answers = {}
    for by in ("class", "cluster"):
        out = tmp_path / f"sim_{by}"
        assert labelsim_main(["budget", str(run), *TIERS, "--points", "3", "--by", by, "--simulate",
                              "--repeats", "1", "--simulate-out", str(out), "--json", "--no-save"]) == 0
        answers[by] = json.loads(capsys.readouterr().out)
    rows = {by: answer["simulation"] for by, answer in answers.items()}
    assert rows["class"] and len(rows["class"]) == len(rows["cluster"])
    for a, b in zip(rows["class"], rows["cluster"]):
        assert (a["strategy"], a["class"]) == (b["strategy"], b["class"])
        assert a["measured"] == pytest.approx(b["measured"], abs=1e-12), (a, b)
    # the cluster run's replicas are per-cluster ones, trained on the same subsets as the per-class ones
    per_class, per_cluster = load_run(tmp_path / "sim_class"), load_run(tmp_path / "sim_cluster")
    for a, b in zip(per_class.replicas, per_cluster.replicas):
        assert b.grouping == "clusters" and b.group_sizes == a.class_sizes and b.class_sizes is None
        assert b.finished and a.accuracy == b.accuracy
    assert np.array_equal(per_class.counts, per_cluster.counts)
    # the measured rows come from the test predictions, per cluster: not a copy of the class rows
    cluster_rows = [r for r in rows["cluster"] if r["class"] != "overall"]
    assert {r["class"] for r in cluster_rows} == set(load_run(run).classes)


@pytest.mark.parametrize("flag", [["--rounds", "2"], ["--design", "4"], ["--target", "0.85"]])
def test_budget_by_cluster_still_refuses_what_it_cannot_train_per_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    y_train, y_test = write_clustered_run(tmp_path)
    one_per_class(tmp_path / "run", y_train, y_test)
    code = labelsim_main(["budget", str(tmp_path / "run"), *TIERS, "--by", "cluster", "--simulate", *flag])
    assert code == 2
    assert "--by cluster is not supported yet" in capsys.readouterr().err
    assert not any(p.name.startswith("budget_") for p in (tmp_path / "run").iterdir())


def test_synthetic_subclasses_are_deterministic_and_consistent_with_the_labels() -> None:
    from labelsim.sim.data.synthetic import make_synthetic_subclasses

    a, b = make_synthetic_subclasses(600, 300, 8, seed=2), make_synthetic_subclasses(600, 300, 8, seed=2)
    other = make_synthetic_subclasses(600, 300, 8, seed=3)
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a.dataset, split), getattr(b.dataset, split))
    assert np.array_equal(a.train_subclass, b.train_subclass)
    assert not np.array_equal(a.dataset.x_train, other.dataset.x_train)  # the seed draws the images
    per_class = np.bincount(a.class_of)
    assert per_class.min() >= 2 and per_class.max() <= 4 and len(per_class) == 10
    for sub, y in ((a.train_subclass, a.dataset.y_train), (a.test_subclass, a.dataset.y_test)):
        assert np.array_equal(a.class_of[sub], y)  # every record's sub-class lies in its class
        assert np.bincount(y).tolist() == [len(y) // 10] * 10
    # sub-classes of one class differ in difficulty: the first borrows nothing, the last the most
    for k in range(10):
        borrow = a.borrow[a.class_of == k]
        assert borrow[0] == 0.0 and np.all(np.diff(borrow) > 0)
        assert np.all(a.confuser[a.class_of == k] != k)
