"""``python -m labelsim clusters``: every training and test record gets exactly one cluster and every
id is used; clusters within classes never mix classes; embeddings are the models' penultimate
layer, cached so that another clustering trains nothing; a user's assignment round-trips exactly
and a wrong one gets a one-line error that says what is wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from labelsim.__main__ import main as labelsim_main
from labelsim.analysis.clusters import CLUSTERS_FILE, cluster_classes
from labelsim.models import get_model, penultimate_features
from labelsim.sim import embed
from labelsim.sim.embed import EMBEDDINGS_FILE, load_run_data

# The tiny grid of tests/test_resume.py, so one compilation cache serves both.
FLAGS = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--synthetic-size", "8",
    "--width", "4", "--epochs", "3", "--batch-size", "32", "--noise", "0,0.4", "--sizes", "none",
    "--repeats", "2", "--slots", "2", "--no-progress",
]  # fmt: skip
ARRAYS = {"train", "test", "class_of", "names", "meta"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: clean and noisy replicas of repeats 0 and 1."""
    out = tmp_path_factory.mktemp("clusters") / "run"
    assert labelsim_main(["train", *FLAGS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def labels(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(y_train, y_test) of the run's dataset."""
    _, _, dataset, _ = load_run_data(run_dir)
    return dataset.y_train, dataset.y_test


def clusters_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``python -m labelsim clusters ARGS``."""
    capsys.readouterr()
    status = labelsim_main(["clusters", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def stored(run_dir: Path) -> dict[str, np.ndarray]:
    """RUN/clusters.npz as plain arrays (read as any consumer would, without labelsim)."""
    with np.load(run_dir / CLUSTERS_FILE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def assert_valid(arrays: dict[str, np.ndarray], y_train: np.ndarray, y_test: np.ndarray) -> int:
    """The file's layout: one id per record, ids 0..K-1 all used, class_of as the records' classes."""
    assert set(arrays) == ARRAYS
    train, test, class_of, names = arrays["train"], arrays["test"], arrays["class_of"], arrays["names"]
    k = len(class_of)
    assert train.dtype == test.dtype == class_of.dtype == np.int32
    assert train.shape == y_train.shape and test.shape == y_test.shape and names.shape == (k,)
    assert set(np.concatenate([train, test]).tolist()) == set(range(k))
    for cluster in range(k):
        members = set(y_train[train == cluster].tolist()) | set(y_test[test == cluster].tolist())
        assert class_of[cluster] == (members.pop() if len(members) == 1 else -1)
    assert len(set(names.tolist())) == k
    return k


def test_within_class_clusters_cover_every_record_once_and_never_mix_classes(
    run_dir: Path, labels: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture
) -> None:
    y_train, y_test = labels
    status, out, err = clusters_cli(capsys, run_dir, "--k", 25, "--seed", 3)
    assert status == 0, err
    arrays = stored(run_dir)
    assert assert_valid(arrays, y_train, y_test) == 20  # 25 // 10 classes = 2 per class
    assert "--k 25 makes 2 clusters in each of 10 classes, 20 in all" in err
    class_of = arrays["class_of"]
    assert np.array_equal(class_of[arrays["train"]], y_train) and np.array_equal(class_of[arrays["test"]], y_test)
    assert np.array_equal(np.bincount(class_of), np.full(10, 2))
    assert arrays["names"][class_of == 3].tolist() == ["cat/0", "cat/1"]
    meta = json.loads(str(arrays["meta"]))
    assert meta["source"] == "embedding" and meta["k"] == 20 and meta["within_class"] is True and meta["seed"] == 3
    assert meta["embedding"]["model"] == "small_cnn" and meta["embedding"]["repeats"] == [0]
    assert meta["labelsim_version"]
    assert "20 clusters (every cluster within one class)" in out
    assert re.search(r"\d+ cluster\(s\) have fewer than 30 test records", out)


def test_embeddings_are_cached_and_another_k_trains_nothing(
    run_dir: Path, labels: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert clusters_cli(capsys, run_dir, "--k", 20)[0] == 0
    cache = run_dir / EMBEDDINGS_FILE
    before = cache.stat().st_mtime_ns

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached embeddings were trained again")

    monkeypatch.setattr(embed, "train_baselines", no_training)
    status, _, err = clusters_cli(capsys, run_dir, "--k", 7, "--across-classes")
    assert status == 0, err
    assert "embeddings: read from" in err and cache.stat().st_mtime_ns == before
    arrays = stored(run_dir)
    assert assert_valid(arrays, *labels) == 7
    assert json.loads(str(arrays["meta"]))["within_class"] is False
    with np.load(cache) as data:
        assert data["train"].dtype == np.float16 and data["train"].shape[0] == len(labels[0])
        assert json.loads(str(data["meta"]))["model"] == "small_cnn"


def test_more_repeats_train_only_the_missing_ones_and_concatenate(
    run_dir: Path, labels: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert clusters_cli(capsys, run_dir, "--k", 20)[0] == 0
    with np.load(run_dir / EMBEDDINGS_FILE) as data:
        one = data["train"]
    trained: list[list[int]] = []
    real = embed.train_baselines

    def counting(config, dataset, model, repeats, rows, log):  # noqa: ANN001, ANN202
        trained.append(list(repeats))
        return real(config, dataset, model, repeats, rows, log)

    monkeypatch.setattr(embed, "train_baselines", counting)
    status, _, err = clusters_cli(capsys, run_dir, "--k", 20, "--repeats", 2)
    assert status == 0, err
    assert trained == [[1]]
    # Repeat 1 is the run's replica of that grid point: its retrained accuracy is the recorded one.
    accuracy = re.search(r"repeat 1: test accuracy (\S+) \(the run's replica \d+ recorded (\S+)\)", err)
    assert accuracy and accuracy.group(1) == accuracy.group(2)
    with np.load(run_dir / EMBEDDINGS_FILE) as data:
        two = data["train"]
    assert two.shape == (one.shape[0], 2 * one.shape[1]) and np.array_equal(two[:, : one.shape[1]], one)
    assert json.loads(str(stored(run_dir)["meta"]))["embedding"]["repeats"] == [0, 1]


@pytest.mark.parametrize("name,width", [("small_cnn", 4), ("lenet", 0), ("resnet18", 4), ("resnet18_noskip", 4),
                                        ("googlenet", 4)])  # fmt: skip
def test_features_are_the_input_of_the_final_dense_layer(name: str, width: int) -> None:
    model = get_model(name, 10, width)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 16, 16, 3))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert set(variables) <= {"params", "batch_stats"}  # recording features adds no variables
    features = penultimate_features(model, variables, x)
    dense = variables["params"][max((k for k in variables["params"] if k.startswith("Dense_")),
                                    key=lambda k: int(k.split("_")[1]))]  # fmt: skip
    logits = model.apply(variables, x, train=False)
    assert features.ndim == 2 and features.shape[0] == 3
    np.testing.assert_allclose(features @ dense["kernel"] + dense["bias"], logits, rtol=1e-4, atol=1e-4)
    assert not np.allclose(features, 0.0)


def test_an_assignment_round_trips_exactly_from_npy_and_csv(
    run_dir: Path, labels: tuple[np.ndarray, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    y_train, y_test = labels
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(len(y_train) + len(y_test)) % 9)  # ids 0..8, each used
    file = tmp_path / "mine.npy"
    np.save(file, ids)
    status, out, err = clusters_cli(capsys, run_dir, "--assign", file)
    assert status == 0, err
    arrays = stored(run_dir)
    assert np.array_equal(arrays["train"], ids[: len(y_train)]) and np.array_equal(arrays["test"], ids[len(y_train) :])
    assert assert_valid(arrays, y_train, y_test) == 9
    assert json.loads(str(arrays["meta"]))["source"] == "user"
    rows = [("train", i, c) for i, c in enumerate(ids[: len(y_train)])]
    rows += [("test", i, c) for i, c in enumerate(ids[len(y_train) :])]
    csv_file = tmp_path / "mine.csv"
    order = rng.permutation(len(rows))
    csv_file.write_text("split,index,cluster\n" + "".join(f"{s},{i},{c}\n" for s, i, c in (rows[j] for j in order)))
    assert clusters_cli(capsys, run_dir, "--assign", csv_file)[0] == 0
    again = stored(run_dir)
    assert np.array_equal(again["train"], arrays["train"]) and np.array_equal(again["test"], arrays["test"])


def test_an_assignment_whose_records_each_keep_to_one_class_gets_their_classes(
    run_dir: Path, labels: tuple[np.ndarray, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Unused ids are renumbered away, in their order, with a note naming them."""
    y_train, y_test = labels
    ids = np.concatenate([y_train, y_test]) * 3  # class k -> cluster 3k: ids 1, 2, 4, 5, ... unused
    file = tmp_path / "by_class.npy"
    np.save(file, ids)
    status, out, err = clusters_cli(capsys, run_dir, "--assign", file)
    assert status == 0, err
    assert "note: 18 cluster id(s) below the largest are unused (1, 2, 4, 5, 7, 8, 10, 11 and 10 more)" in err
    arrays = stored(run_dir)
    assert np.array_equal(arrays["train"], y_train) and np.array_equal(arrays["test"], y_test)
    assert arrays["class_of"].tolist() == list(range(10))
    assert arrays["names"][3] == "cat/0"


def test_cluster_classes_marks_a_cluster_that_spans_classes() -> None:
    class_of = cluster_classes(np.array([0, 0, 1, 2]), np.array([1, 2]), np.array([4, 4, 5, 6]), np.array([7, 6]), 3)
    assert class_of.tolist() == [4, -1, 6]


BAD_CSV = {
    "header": ("record,cluster\n0,1\n", "the first line must be split,index,cluster"),
    "split": ("split,index,cluster\nvalid,0,1\n", "split 'valid' is neither train nor test"),
    "range": ("split,index,cluster\ntest,64,1\n", "test index 64 is outside the run's 64 test records (0..63)"),
    "twice": ("split,index,cluster\ntrain,5,1\ntrain,5,2\n", "line 3: train record 5 is given twice"),
    "missing": ("split,index,cluster\ntrain,0,1\n", "319 record(s) have no cluster (train 1, train 2,"),
    "negative": (None, "have a negative cluster id (first: train record 0 has -2)"),
}


@pytest.mark.parametrize("what", BAD_CSV)
def test_a_wrong_csv_assignment_gets_a_one_line_error(
    what: str, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text, message = BAD_CSV[what]
    if text is None:
        text = "split,index,cluster\n" + "".join(f"train,{i},{-2 if i == 0 else 1}\n" for i in range(256))
        text += "".join(f"test,{i},1\n" for i in range(64))
    file = tmp_path / "bad.csv"
    file.write_text(text)
    before = (run_dir / CLUSTERS_FILE).read_bytes() if (run_dir / CLUSTERS_FILE).exists() else None
    status, _, err = clusters_cli(capsys, run_dir, "--assign", file)
    assert status == 2 and err.count("\n") == 1 and err.startswith(f"error: --assign {file}")
    assert message in err
    after = (run_dir / CLUSTERS_FILE).read_bytes() if (run_dir / CLUSTERS_FILE).exists() else None
    assert after == before  # nothing written


def test_a_wrong_npy_assignment_gets_a_one_line_error(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cases = {
        "short.npy": (np.zeros(300, np.int64), "holds 300 ids, expected 320: one id per record, the run's 256 "
                                               "training records then its 64 test records"),
        "negative.npy": (np.r_[np.zeros(310, np.int64), -np.ones(10, np.int64)],
                         "10 record(s) have a negative cluster id (first: test record 54 has -1)"),
        "float.npy": (np.zeros(320), "holds float64 values; give whole-number cluster ids"),
        "table.npy": (np.zeros((320, 2), np.int64), "holds an array of shape (320, 2), expected 320"),
    }  # fmt: skip
    for name, (ids, message) in cases.items():
        np.save(tmp_path / name, ids)
        status, _, err = clusters_cli(capsys, run_dir, "--assign", tmp_path / name)
        assert status == 2 and message in err and err.count("\n") == 1, (name, err)
    (tmp_path / "broken.npy").write_bytes(b"not an array")
    status, _, err = clusters_cli(capsys, run_dir, "--assign", tmp_path / "broken.npy")
    assert status == 2 and "broken.npy is unreadable" in err
    status, _, err = clusters_cli(capsys, run_dir, "--assign", tmp_path / "ids.txt")
    assert status == 2 and "no such file" in err


def test_k_that_cannot_work_is_refused_before_any_training(
    run_dir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embed, "baseline_embeddings", lambda *a, **k: pytest.fail("embeddings were computed"))
    status, _, err = clusters_cli(capsys, run_dir, "--k", 5)
    assert status == 2 and "--k 5 is fewer than the run's 10 classes" in err and "--across-classes" in err
    status, _, err = clusters_cli(capsys, run_dir, "--k", 300, "--across-classes")
    assert status == 2 and "--k 300 exceeds the run's 256 training records" in err
    status, _, err = clusters_cli(capsys, run_dir)
    assert status == 2 and "give --k K" in err
