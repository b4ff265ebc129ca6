"""Noise models: exact realized counts, determinism, human-label replay and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labelsim.sim import noise
from labelsim.config import ConfigError
from labelsim.sim.human_labels import (
    HUMAN_SETS,
    check_human_labels,
    load_human_labels,
    order_by_id,
    subset_human_labels,
)

C = 10
RATES = (0.0, 0.05, 0.13, 0.3, 0.5, 1.0)


def _labels(n: int = 1003, seed: int = 0) -> np.ndarray:
    """Unbalanced labels so per-class rounding differs between classes."""
    p = np.arange(1, C + 1) / np.arange(1, C + 1).sum()
    return np.random.default_rng(seed).choice(C, size=n, p=p)


def _rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


def _noisy_matrix() -> np.ndarray:
    t = np.random.default_rng(3).random((C, C))
    t[np.arange(C), np.arange(C)] += 3.0
    return t / t.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def human(cifar10n_dir: Path) -> dict[str, np.ndarray]:
    return load_human_labels(cifar10n_dir)


# --- names --------------------------------------------------------------------------------


def test_noise_model_names() -> None:
    assert set(noise.NOISE_MODELS) == {
        "shuffle", "symmetric", "pairflip", "cifar10-semantic", "matrix", "human",
        "human-aggre", "human-random1", "human-random2", "human-random3", "human-worse",
    }
    assert noise.validate_noise_model("pairflip") == "pairflip"
    assert noise.human_set("human") == "worse"
    assert noise.human_set("human-random2") == "random2"
    assert noise.is_human_model("human-aggre") and not noise.is_human_model("shuffle")


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="symmetric.*pairflip.*human-worse"):
        noise.validate_noise_model("gaussian")
    with pytest.raises(ConfigError, match="unknown noise model"):
        noise.corrupt("gaussian", _labels(), 0.1, _rng(), C)
    with pytest.raises(ConfigError, match="does not use human labels"):
        noise.human_set("pairflip")


@pytest.mark.parametrize("model", ["shuffle", "symmetric", "pairflip", "cifar10-semantic"])
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_rates_outside_unit_interval_are_refused(model: str, rate: float) -> None:
    with pytest.raises(ConfigError, match="outside"):
        noise.corrupt(model, _labels(), rate, _rng(), C)


def test_bad_labels_are_refused() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        noise.corrupt("symmetric", np.array([0, 1, 10]), 0.1, _rng(), C)
    with pytest.raises(ConfigError, match="1-D integer"):
        noise.corrupt("symmetric", np.zeros(5, float), 0.1, _rng(), C)


# --- shuffle and symmetric ---------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_shuffle_keeps_histogram_and_selects_exactly(rate: float) -> None:
    labels = _labels()
    noisy = noise.corrupt("shuffle", labels, rate, _rng(), C)
    np.testing.assert_array_equal(np.bincount(noisy, minlength=C), np.bincount(labels, minlength=C))
    # Distinct labels (one class per record) expose the selection: it is a permuted subset.
    ids = np.arange(len(labels))
    permuted = noise.shuffle_labels(ids, rate, _rng())
    chosen = np.random.default_rng(1).choice(len(ids), size=round(rate * len(ids)), replace=False)
    assert len(chosen) == round(rate * len(ids))
    outside = np.setdiff1d(ids, chosen)
    np.testing.assert_array_equal(permuted[outside], ids[outside])
    np.testing.assert_array_equal(np.sort(permuted[chosen]), np.sort(chosen))


@pytest.mark.parametrize("rate", RATES)
def test_symmetric_changes_exactly_round_rate_n(rate: float) -> None:
    labels = _labels()
    noisy = noise.corrupt("symmetric", labels, rate, _rng(), C)
    assert np.sum(noisy != labels) == round(rate * len(labels))
    assert noise.realized_noise(labels, noisy) == round(rate * len(labels)) / len(labels)


def test_symmetric_targets_cover_every_other_class() -> None:
    labels = np.zeros(20_000, np.int64)
    noisy = noise.corrupt("symmetric", labels, 0.9, _rng(), C)
    counts = np.bincount(noisy, minlength=C)[1:]
    assert counts.sum() == 18_000
    assert np.all(np.abs(counts - 2000) < 200)  # uniform over the 9 other classes


# --- pair-flip and CIFAR-10 semantic -----------------------------------------------------


def expected_flip_counts(n_k: np.ndarray, rate: float, flips: dict[int, int]) -> np.ndarray:
    """The transition counts when round(rate * n_k) records of each source class move to its target."""
    expected = np.diag(n_k).astype(np.int64)
    for source, target in flips.items():
        moved = round(rate * n_k[source])
        expected[source, source] -= moved
        expected[source, target] += moved
    return expected


@pytest.mark.parametrize("rate", RATES)
def test_pairflip_transition_matrix_has_rate_on_shifted_diagonal(rate: float) -> None:
    labels = _labels()
    noisy = noise.corrupt("pairflip", labels, rate, _rng(), C)
    counts = noise.transition_counts(labels, noisy, C)
    n_k = np.bincount(labels, minlength=C)
    expected = expected_flip_counts(n_k, rate, {k: (k + 1) % C for k in range(C)})
    np.testing.assert_array_equal(counts, expected)
    shifted = counts[np.arange(C), (np.arange(C) + 1) % C] / n_k
    np.testing.assert_allclose(shifted, rate, atol=0.5 / n_k.min())


@pytest.mark.parametrize("rate", RATES)
def test_cifar10_semantic_flips_exact_counts(rate: float) -> None:
    labels = _labels()
    noisy = noise.corrupt("cifar10-semantic", labels, rate, _rng(), C)
    counts = noise.transition_counts(labels, noisy, C)
    n_k = np.bincount(labels, minlength=C)
    flips = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}  # truck, bird, deer, cat, dog
    np.testing.assert_array_equal(counts, expected_flip_counts(n_k, rate, flips))
    share = n_k[list(flips)].sum() / len(labels)
    assert noise.realized_noise(labels, noisy) == pytest.approx(rate * share, abs=3 / len(labels))


def test_cifar10_semantic_needs_ten_classes() -> None:
    with pytest.raises(ConfigError, match="10 classes"):
        noise.corrupt("cifar10-semantic", np.array([0, 1, 2]), 0.2, _rng(), 3)


# --- transition matrix --------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_identity_matrix_changes_nothing(rate: float) -> None:
    labels = _labels()
    noisy = noise.corrupt("matrix", labels, rate, _rng(), C, matrix=np.eye(C))
    np.testing.assert_array_equal(noisy, labels)


@pytest.mark.parametrize("rate", RATES)
def test_matrix_counts_match_the_scaled_matrix(rate: float) -> None:
    labels = _labels()
    t = _noisy_matrix()
    noisy = noise.corrupt("matrix", labels, rate, _rng(), C, matrix=t)
    counts = noise.transition_counts(labels, noisy, C)
    n_k = np.bincount(labels, minlength=C)
    t_r = (1 - rate) * np.eye(C) + rate * t
    np.testing.assert_array_equal(counts.sum(axis=1), n_k)
    assert np.all(np.abs(counts - n_k[:, None] * t_r) < 1.0)  # floor or ceiling of each quota
    for k in range(C):
        np.testing.assert_array_equal(counts[k], noise.largest_remainder(int(n_k[k]), t_r[k]))


def test_matrix_level_one_replays_the_matrix() -> None:
    labels = np.repeat(np.arange(C), 1000)
    thousandths = np.random.default_rng(4).multinomial(400, np.full(C, 1 / C), size=C)
    thousandths[np.arange(C), np.arange(C)] += 600  # rows of integers summing to 1000
    t = thousandths / 1000
    noisy = noise.corrupt("matrix", labels, 1.0, _rng(), C, matrix=t)
    np.testing.assert_array_equal(noise.transition_counts(labels, noisy, C), thousandths)


def test_largest_remainder_sums_to_total() -> None:
    counts = noise.largest_remainder(10, np.full(3, 1 / 3))
    np.testing.assert_array_equal(counts, [4, 3, 3])
    assert noise.largest_remainder(0, np.array([0.5, 0.5])).sum() == 0


def _negative() -> np.ndarray:
    t = np.eye(C)
    t[0, 0], t[0, 1] = 1.5, -0.5
    return t


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (_negative(), "negative"),
        (np.full((C, C), 0.2), "sum to"),
        (np.eye(C - 1), "shape"),
        (np.full((C, C), np.nan), "non-finite"),
        (np.array([["a"] * C] * C), "not numeric"),
    ],
)
def test_bad_matrices_are_refused(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        noise.corrupt("matrix", _labels(), 0.2, _rng(), C, matrix=matrix)


def test_matrix_model_needs_a_matrix() -> None:
    with pytest.raises(ConfigError, match="needs a transition matrix"):
        noise.corrupt("matrix", _labels(), 0.2, _rng(), C)


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".json"])
def test_load_matrix_formats(tmp_path: Path, suffix: str) -> None:
    t = _noisy_matrix()
    path = tmp_path / f"t{suffix}"
    if suffix == ".npy":
        np.save(path, t)
    elif suffix == ".csv":
        np.savetxt(path, t, delimiter=",", fmt="%.17g")
    else:
        path.write_text(json.dumps(t.tolist()))
    np.testing.assert_allclose(noise.load_matrix(path), t, atol=1e-12)


def test_load_matrix_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        noise.load_matrix(tmp_path / "missing.npy")
    (tmp_path / "t.txt").write_text("1")
    with pytest.raises(ConfigError, match=".npy, .csv or .json"):
        noise.load_matrix(tmp_path / "t.txt")
    (tmp_path / "bad.json").write_text("[[0.5, 0.6], [0.0, 1.0]]")
    with pytest.raises(ConfigError, match="sum to"):
        noise.load_matrix(tmp_path / "bad.json")
    (tmp_path / "wide.csv").write_text("1,0,0\n0,1,0\n")
    with pytest.raises(ConfigError, match="square"):
        noise.load_matrix(tmp_path / "wide.csv")


# --- per-class rates -------------------------------------------------------------------------

CLASS_RATES = np.linspace(0.0, 0.45, C)


@pytest.mark.parametrize("model", ["shuffle", "symmetric", "pairflip"])
def test_class_rates_exact_per_class(model: str) -> None:
    labels = _labels()
    noisy = noise.corrupt(model, labels, 0.0, _rng(), C, class_rates=CLASS_RATES)
    n_k = np.bincount(labels, minlength=C)
    changed = np.bincount(labels[noisy != labels], minlength=C)
    np.testing.assert_array_equal(changed, np.round(CLASS_RATES * n_k).astype(int))


def test_matrix_class_rates_per_class_largest_remainder() -> None:
    labels = _labels()
    t = (np.ones((C, C)) - np.eye(C)) / (C - 1)  # all mass off the diagonal
    noisy = noise.corrupt("matrix", labels, 0.0, _rng(), C, class_rates=CLASS_RATES, matrix=t)
    counts = noise.transition_counts(labels, noisy, C)
    n_k = np.bincount(labels, minlength=C)
    for k in range(C):
        t_k = (1 - CLASS_RATES[k]) * np.eye(C)[k] + CLASS_RATES[k] * t[k]
        np.testing.assert_array_equal(counts[k], noise.largest_remainder(int(n_k[k]), t_k))
    assert np.all(np.abs(n_k - np.diag(counts) - CLASS_RATES * n_k) < 1.0)


def test_class_rates_errors() -> None:
    with pytest.raises(ConfigError, match="one rate per class"):
        noise.corrupt("pairflip", _labels(), 0.1, _rng(), C, class_rates=np.full(3, 0.1))
    with pytest.raises(ConfigError, match="class 2"):
        bad = np.full(C, 0.1)
        bad[2] = 1.2
        noise.corrupt("symmetric", _labels(), 0.1, _rng(), C, class_rates=bad)


# --- determinism -------------------------------------------------------------------------


ALL_KINDS = ["shuffle", "symmetric", "pairflip", "cifar10-semantic", "matrix", "human-worse"]


@pytest.mark.parametrize("model", ALL_KINDS)
def test_same_seed_same_labels(model: str) -> None:
    labels = _labels()
    extra = {"matrix": _noisy_matrix(), "human": _half_wrong(labels)}
    first = noise.corrupt(model, labels, 0.3, _rng(7), C, **extra)
    again = noise.corrupt(model, labels, 0.3, _rng(7), C, **extra)
    other = noise.corrupt(model, labels, 0.3, _rng(8), C, **extra)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(labels, _labels())  # the input is never modified


# --- human labels: synthetic -------------------------------------------------------------


def _half_wrong(labels: np.ndarray, shift: int = 1) -> np.ndarray:
    """A human who is wrong on every other record."""
    wrong = labels.copy()
    wrong[::2] = (labels[::2] + shift) % C
    return wrong


@pytest.mark.parametrize("rate", RATES)
def test_human_mix_replaces_exactly_round_rate_n(rate: float) -> None:
    labels = _labels()
    wrong = (labels + 3) % C  # a human who is always wrong exposes every replaced record
    noisy = noise.human_mix_labels(labels, rate, _rng(), wrong)
    assert np.sum(noisy != labels) == round(rate * len(labels))
    assert np.all((noisy == labels) | (noisy == wrong))


def test_human_mix_through_corrupt_takes_only_human_labels() -> None:
    labels = _labels()
    half = _half_wrong(labels)
    noisy = noise.corrupt("human-random1", labels, 0.6, _rng(), C, human=half)
    assert np.all((noisy == labels) | (noisy == half))
    assert noise.realized_noise(labels, noisy) == pytest.approx(0.3, abs=0.04)


def test_human_mapping_picks_the_models_set() -> None:
    labels = _labels()
    sets = {name: _half_wrong(labels, 1 + i) for i, name in enumerate(HUMAN_SETS)}
    sets["clean"] = labels
    for i, name in enumerate(HUMAN_SETS):
        noisy = noise.corrupt(f"human-{name}", labels, 1.0, _rng(), C, human=sets)
        np.testing.assert_array_equal(noisy, sets[name])
    noisy = noise.corrupt("human", labels, 1.0, _rng(), C, human=sets)
    np.testing.assert_array_equal(noisy, sets["worse"])


def test_human_class_rates_exact_per_class() -> None:
    labels = _labels()
    wrong = (labels + 1) % C
    noisy = noise.human_mix_labels(labels, 0.0, _rng(), wrong, CLASS_RATES, C)
    changed = np.bincount(labels[noisy != labels], minlength=C)
    np.testing.assert_array_equal(changed, np.round(CLASS_RATES * np.bincount(labels, minlength=C)))
    half = _half_wrong(labels)
    noisy = noise.corrupt("human", labels, 0.0, _rng(), C, class_rates=CLASS_RATES, human=half)
    changed = np.bincount(labels[noisy != labels], minlength=C)
    assert np.all((noisy == labels) | (noisy == half))
    assert np.all(changed <= np.round(CLASS_RATES * np.bincount(labels, minlength=C)))


def test_human_errors() -> None:
    labels = _labels()
    with pytest.raises(ConfigError, match="--human-labels PATH.*original order"):
        noise.corrupt("human-worse", labels, 0.2, _rng(), C)
    with pytest.raises(ConfigError, match="not aligned"):
        sets = {"clean": np.roll(labels, 1), "worse": labels}
        noise.corrupt("human-worse", labels, 0.2, _rng(), C, human=sets)
    with pytest.raises(ConfigError, match="shape"):
        noise.corrupt("human-worse", labels, 0.2, _rng(), C, human=labels[:-1])
    with pytest.raises(ConfigError, match="not aligned"):
        guessed = np.random.default_rng(0).integers(0, C, len(labels))
        noise.corrupt("human-worse", labels, 0.2, _rng(), C, human=guessed)


# --- human labels: the real CIFAR-10N file -------------------------------------------------


def test_load_human_labels_file_and_folder(
    cifar10n_dir: Path, human: dict[str, np.ndarray]
) -> None:
    assert set(human) == {"clean", *HUMAN_SETS}
    again = load_human_labels(cifar10n_dir / "labels.npz")
    for name, values in human.items():
        assert values.shape == (50_000,) and values.dtype == np.int64
        np.testing.assert_array_equal(values, again[name])


@pytest.mark.parametrize(("name", "published"), [("aggre", 0.0901), ("worse", 0.4021)])
def test_full_human_set_reproduces_published_noise(
    human: dict[str, np.ndarray], name: str, published: float
) -> None:
    clean = human["clean"]
    noisy = noise.corrupt(f"human-{name}", clean, 1.0, _rng(), C, human=human)
    np.testing.assert_array_equal(noisy, human[name])
    assert round(noise.realized_noise(clean, noisy), 4) == published


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.75])
def test_human_mix_realized_noise_is_rate_times_disagreement(
    human: dict[str, np.ndarray], rate: float
) -> None:
    clean = human["clean"]
    noisy = noise.corrupt("human-worse", clean, rate, _rng(), C, human=human)
    realized = noise.realized_noise(clean, noisy)
    assert realized < rate
    assert realized == pytest.approx(rate * 0.40208, abs=0.005)
    assert np.all((noisy == clean) | (noisy == human["worse"]))


def test_human_subset_alignment(human: dict[str, np.ndarray]) -> None:
    subset = np.sort(np.random.default_rng(0).choice(50_000, 5000, replace=False))
    sets = subset_human_labels(human, subset)
    noisy = noise.corrupt("human-aggre", human["clean"][subset], 1.0, _rng(), C, human=sets)
    np.testing.assert_array_equal(noisy, human["aggre"][subset])
    with pytest.raises(ConfigError, match="not aligned"):
        noise.corrupt("human-aggre", human["clean"][subset + 1], 1.0, _rng(), C, human=sets)


def test_misordered_human_file_is_refused(human: dict[str, np.ndarray], tmp_path: Path) -> None:
    order = np.random.default_rng(0).permutation(50_000)
    shuffled = {name: values[order] for name, values in human.items() if name != "clean"}
    shuffled["clean"] = human["clean"]
    with pytest.raises(ConfigError, match="original"):
        check_human_labels(shuffled)
    path = tmp_path / "labels.npz"
    np.savez(path, clean=human["clean"])
    with pytest.raises(ConfigError, match="lack the set"):
        load_human_labels(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_human_labels(tmp_path / "nothing.npz")


def test_upstream_names_and_id_order(human: dict[str, np.ndarray], tmp_path: Path) -> None:
    upstream = {"clean_label": "clean", "aggre_label": "aggre", "random_label1": "random1",
                "random_label2": "random2", "random_label3": "random3", "worse_label": "worse"}
    np.savez(tmp_path / "labels.npz", **{key: human[name] for key, name in upstream.items()})
    loaded = load_human_labels(tmp_path)
    np.testing.assert_array_equal(loaded["worse"], human["worse"])
    order = np.random.default_rng(1).permutation(50_000)
    ids = np.array([f"train_{i:05d}".encode() for i in order])
    restored = order_by_id(ids, {name: values[order] for name, values in human.items()})
    for name in human:
        np.testing.assert_array_equal(restored[name], human[name])
    with pytest.raises(ConfigError, match="exactly once"):
        order_by_id(ids[:10], {"clean": human["clean"][:10]})


def test_human_mapping_without_the_set() -> None:
    labels = _labels()
    with pytest.raises(ConfigError, match="lack the set 'aggre'"):
        noise.corrupt("human-aggre", labels, 0.2, _rng(), C, human={"worse": _half_wrong(labels)})


def test_unprepared_tfds_points_to_the_local_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ConfigError, match="labels.npz"):
        load_human_labels(f"tfds:{tmp_path}")


def test_structured_human_array_survives_subsetting(cifar10n_dir: Path) -> None:
    from labelsim.sim.human_labels import human_label_arrays

    records = human_label_arrays(cifar10n_dir, ["human-aggre", "human-worse"])
    assert records.shape == (50_000,) and set(records.dtype.names) == {"clean", *HUMAN_SETS}
    subset = np.sort(np.random.default_rng(2).choice(50_000, 3000, replace=False))
    clean = records["clean"][subset]
    for name in ("aggre", "worse"):
        noisy = noise.corrupt(f"human-{name}", clean, 1.0, _rng(), C, human=records[subset])
        np.testing.assert_array_equal(noisy, records[name][subset])
    with pytest.raises(ConfigError, match="not aligned"):
        noise.corrupt("human-worse", clean, 0.5, _rng(), C, human=records[subset[::-1]])
    with pytest.raises(ConfigError, match="--human-labels PATH"):
        human_label_arrays(None, ["human-worse"])
