"""Datasets: the synthetic generator, local CIFAR-10 layouts, TFDS loading (Tensor and PNG images, prepared
offline as array_record) and its errors."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labelsim.config import ConfigError, DataConfig
from labelsim.sim.data import (
    CIFAR10_CLASSES,
    DataError,
    Dataset,
    load_cifar10_local,
    load_dataset,
    load_tfds,
    make_synthetic,
)

REPO = Path(__file__).resolve().parents[1]
CAT, DOG, FROG = 3, 5, 6


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------


def test_synthetic_shapes_dtypes_and_balance() -> None:
    ds = make_synthetic(200, 100, 16, seed=0)
    assert isinstance(ds, Dataset)
    assert ds.name == "synthetic"
    assert ds.x_train.shape == (200, 16, 16, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (100, 16, 16, 3) and ds.x_test.dtype == np.uint8
    assert ds.y_train.shape == (200,) and ds.y_train.dtype == np.int32
    assert ds.y_test.shape == (100,) and ds.y_test.dtype == np.int32
    assert ds.class_names == CIFAR10_CLASSES and ds.num_classes == 10
    assert np.bincount(ds.y_train, minlength=10).tolist() == [20] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [10] * 10
    assert not np.array_equal(ds.y_train[:20], np.sort(ds.y_train[:20]))  # shuffled
    assert 60 < ds.x_train.mean() < 200 and ds.x_train.std() > 20  # neither flat nor saturated


def test_synthetic_is_deterministic_and_seeded() -> None:
    a = make_synthetic(300, 100, 16, seed=3)
    b = make_synthetic(300, 100, 16, seed=3)
    c = make_synthetic(300, 100, 16, seed=4)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.y_train, c.y_train)


def test_synthetic_test_split_does_not_depend_on_train_size() -> None:
    small, large = make_synthetic(50, 40, 12, seed=1), make_synthetic(500, 40, 12, seed=1)
    assert np.array_equal(small.x_test, large.x_test)
    assert np.array_equal(small.y_test, large.y_test)


def test_synthetic_other_class_counts_and_sizes() -> None:
    four = make_synthetic(41, 9, 8, seed=0, num_classes=4)
    assert four.class_names == CIFAR10_CLASSES[:4]
    assert sorted(np.bincount(four.y_train).tolist()) == [10, 10, 10, 11]
    assert four.x_train.shape == (41, 8, 8, 3)
    twelve = make_synthetic(120, 12, 32, seed=0, num_classes=12)
    assert twelve.class_names[10:] == ("class10", "class11")
    assert np.bincount(twelve.y_train).tolist() == [10] * 12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_train=0), "at least 1 train"),
        (dict(num_test=0), "at least 1 train and 1 test"),
        (dict(size=2), "too small"),
        (dict(num_classes=1), "at least 2 classes"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs: dict[str, int], match: str) -> None:
    args = dict(num_train=10, num_test=10, size=16, seed=0) | kwargs
    with pytest.raises(DataError, match=match):
        make_synthetic(**args)


def test_synthetic_generation_is_fast() -> None:
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        make_synthetic(2000, 1000, 16, seed=0)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 1.0, timings


def _nearest_mean_confusion(seeds: tuple[int, ...]) -> np.ndarray:
    """(10, 10) test confusion counts of a nearest-class-mean classifier, summed over seeds."""
    confusion = np.zeros((10, 10), np.int64)
    for seed in seeds:
        ds = make_synthetic(2000, 2000, 16, seed)
        x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
        xt = ds.x_test.reshape(len(ds.x_test), -1).astype(np.float32)
        means = np.stack([x[ds.y_train == k].mean(0) for k in range(10)])
        dist = (means**2).sum(1)[None, :] - 2 * xt @ means.T
        np.add.at(confusion, (ds.y_test, dist.argmin(1)), 1)
    return confusion


def test_synthetic_is_learnable_with_unequal_class_difficulty() -> None:
    confusion = _nearest_mean_confusion(seeds=(0, 1, 2))
    per_class = np.diag(confusion) / confusion.sum(1)
    overall = np.trace(confusion) / confusion.sum()
    assert 0.5 < overall < 0.97  # far above chance (0.1), far from trivial
    assert per_class.max() > 0.9 and per_class.max() - per_class.min() > 0.3
    assert per_class.argmin() == CAT  # the class built from three templates is the hardest
    assert per_class[CAT] < per_class[DOG] - 0.1
    wrong = confusion[CAT].copy()
    wrong[CAT] = 0
    assert wrong.argmax() == DOG  # cat is mostly mistaken for dog
    # cat borrows from frog, frog from nobody: frog -> cat confusions are rarer
    assert confusion[CAT, FROG] > 1.5 * confusion[FROG, CAT]


def test_load_dataset_synthetic_uses_config() -> None:
    cfg = DataConfig(name="synthetic", synthetic_train=30, synthetic_test=20, synthetic_size=8)
    ds = load_dataset(cfg)
    assert ds.x_train.shape == (30, 8, 8, 3) and ds.x_test.shape == (20, 8, 8, 3)
    assert np.array_equal(ds.x_train, make_synthetic(30, 20, 8, 0).x_train)


# --------------------------------------------------------------------------------------------
# Real CIFAR-10 (.npz layout) and the python-release layouts
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar10(cifar10_dir: Path) -> Dataset:
    """The real CIFAR-10, loaded once for this module through load_dataset."""
    return load_dataset(DataConfig(name="cifar10", data_dir=str(cifar10_dir)))


@pytest.mark.realdata
def test_cifar10_npz_matches_the_official_release(cifar10: Dataset) -> None:
    assert cifar10.name == "cifar10" and cifar10.class_names == CIFAR10_CLASSES
    assert cifar10.x_train.shape == (50000, 32, 32, 3) and cifar10.x_train.dtype == np.uint8
    assert cifar10.x_test.shape == (10000, 32, 32, 3) and cifar10.x_test.dtype == np.uint8
    assert cifar10.y_train.dtype == np.int32 and cifar10.y_test.dtype == np.int32
    assert np.bincount(cifar10.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar10.y_test).tolist() == [1000] * 10
    assert cifar10.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    mean = cifar10.x_train.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(mean, [125.3069, 122.9504, 113.8654], atol=0.01)


# A few images from each official batch, in order: rows [0, 1, 2] of each.
_PICK = 3
_BATCHES = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]


def _picked(ds: Dataset) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images = [ds.x_train[k * 10000 : k * 10000 + _PICK] for k in range(5)] + [ds.x_test[:_PICK]]
    labels = [ds.y_train[k * 10000 : k * 10000 + _PICK] for k in range(5)] + [ds.y_test[:_PICK]]
    return images, labels


def _batch_pickle(images: np.ndarray, labels: np.ndarray, name: str) -> bytes:
    """A batch in the python-release format: planar rows (R, G, B planes), bytes keys."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(rows),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)


def _meta_pickle() -> bytes:
    meta: dict[bytes, Any] = {b"num_cases_per_batch": 10000, b"num_vis": 3072}
    meta[b"label_names"] = [n.encode() for n in CIFAR10_CLASSES]
    return pickle.dumps(meta, protocol=2)


def _release_files(ds: Dataset) -> dict[str, bytes]:
    images, labels = _picked(ds)
    files = {n: _batch_pickle(x, y, n) for n, x, y in zip(_BATCHES, images, labels, strict=True)}
    files["batches.meta"] = _meta_pickle()
    return files


def _write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    return folder


def _assert_picked(loaded: Dataset, ds: Dataset) -> None:
    images, labels = _picked(ds)
    assert np.array_equal(loaded.x_train, np.concatenate(images[:5]))
    assert np.array_equal(loaded.y_train, np.concatenate(labels[:5]))
    assert np.array_equal(loaded.x_test, images[5])
    assert np.array_equal(loaded.y_test, labels[5])
    assert loaded.x_train.dtype == np.uint8 and loaded.y_train.dtype == np.int32
    assert loaded.class_names == CIFAR10_CLASSES


@pytest.mark.realdata
def test_cifar10_python_archive_round_trips(cifar10: Dataset, tmp_path: Path) -> None:
    staged = _write_folder(tmp_path / "stage" / "cifar-10-batches-py", _release_files(cifar10))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staged, arcname="cifar-10-batches-py")
    _assert_picked(load_cifar10_local(archive), cifar10)
    _assert_picked(load_cifar10_local(tmp_path), cifar10)  # a folder holding the archive
    _assert_picked(load_dataset(DataConfig(name="cifar10", data_dir=str(archive))), cifar10)


@pytest.mark.realdata
def test_cifar10_extracted_folder_round_trips(cifar10: Dataset, tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "cifar-10-batches-py", _release_files(cifar10))
    _assert_picked(load_cifar10_local(folder), cifar10)
    _assert_picked(load_cifar10_local(tmp_path), cifar10)  # its parent folder
    _assert_picked(load_dataset(DataConfig(name="cifar10", data_dir=str(tmp_path))), cifar10)


class _RunsCode:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (os.getcwd, ())


def test_cifar10_batches_refuse_foreign_pickles(tmp_path: Path) -> None:
    files = {name: pickle.dumps({b"data": _RunsCode()}, protocol=2) for name in _BATCHES}
    files["batches.meta"] = _meta_pickle()
    folder = _write_folder(tmp_path / "cifar-10-batches-py", files)
    with pytest.raises(DataError, match="cannot be read"):
        load_cifar10_local(folder)


def test_cifar10_corrupt_archive_says_what_to_do(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        noise = np.random.default_rng(0).bytes(100_000)
        tar.add(_write_folder(tmp_path / "cifar-10-batches-py", {"data_batch_1": noise}), "x")
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])  # a truncated download
    with pytest.raises(DataError, match="cannot be read"):
        load_cifar10_local(archive)


def test_cifar10_folder_without_copy_names_expected_files(tmp_path: Path) -> None:
    (tmp_path / "unrelated.txt").write_text("nothing here")
    with pytest.raises(DataError) as err:
        load_cifar10_local(tmp_path)
    message = str(err.value)
    for expected in ("train_0.npz", "test.npz", "cifar-10-python.tar.gz", "data_batch_1"):
        assert expected in message
    assert isinstance(err.value, ConfigError)
    with pytest.raises(DataError, match="is not a CIFAR-10 archive"):
        load_dataset(DataConfig(name="cifar10", data_dir=str(tmp_path / "unrelated.txt")))


# --------------------------------------------------------------------------------------------
# TFDS
# --------------------------------------------------------------------------------------------


def test_unknown_dataset_lists_the_options(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="cifar-10", data_dir=str(tmp_path)))
    message = str(err.value)
    assert "unknown dataset 'cifar-10'" in message
    assert "synthetic" in message and "cifar10" in message and "TFDS" in message
    assert list(tmp_path.iterdir()) == []


def _assert_missing_data_message(message: str, name: str, where: str) -> None:
    assert f"{name!r} is not prepared" in message and where in message
    for option in ("--data-dir", "cifar-10-python.tar.gz", "train_0..4.npz", "cifar-10-batches-py"):
        assert option in message
    assert "TFDS_DATA_DIR" in message and "--dataset synthetic" in message


def test_missing_cifar10_data_says_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow_datasets")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="cifar10", data_dir=str(empty)))
    _assert_missing_data_message(str(err.value), "cifar10", str(empty))
    assert list(empty.iterdir()) == []  # nothing downloaded or prepared


def test_missing_tfds_data_honours_tfds_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with pytest.raises(DataError) as err:
        load_tfds("mnist", None)
    _assert_missing_data_message(str(err.value), "mnist", str(tmp_path / "tfds"))
    assert "does not exist" in str(err.value)


def test_missing_tfds_package_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now fails
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="mnist"))
    message = str(err.value)
    assert "pip install tensorflow-datasets" in message
    assert "--data-dir" in message and "--dataset synthetic" in message


_TINY_NAMES = ("circle", "square", "star")


@pytest.fixture(scope="module")
def tiny_tfds_name() -> str:
    """Registers a tiny image-classification TFDS builder (Tensor images: no codec needed)."""
    tfds = pytest.importorskip("tensorflow_datasets")

    builder_base: Any = tfds.core.GeneratorBasedBuilder

    class LabelsimTinyImages(builder_base):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self) -> Any:
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(6, 6, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=list(_TINY_NAMES)),
                }
            )
            return tfds.core.DatasetInfo(
                builder=self, features=features, supervised_keys=("image", "label")
            )

        def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
            return {"train": self._generate_examples(12), "test": self._generate_examples(6)}

        def _generate_examples(self, n: int) -> Any:
            for i in range(n):
                yield i, {"image": np.full((6, 6, 3), 10 * i + i % 3, np.uint8), "label": i % 3}

    return "labelsim_tiny_images"


def _prepare(name: str, data_dir: Path) -> None:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()


def _check_tiny(ds: Dataset, name: str) -> None:
    assert ds.name == name and ds.class_names == _TINY_NAMES
    assert ds.x_train.shape == (12, 6, 6, 3) and ds.x_test.shape == (6, 6, 6, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert np.bincount(ds.y_train).tolist() == [4, 4, 4]
    assert np.all(ds.x_train[:, 0, 0, 0] % 10 == ds.y_train)  # pixels travel with their label


def test_tfds_prepared_array_record_loads(
    tiny_tfds_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _prepare(tiny_tfds_name, tmp_path)
    _check_tiny(load_tfds(tiny_tfds_name, str(tmp_path)), tiny_tfds_name)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    _check_tiny(load_dataset(DataConfig(name=tiny_tfds_name)), tiny_tfds_name)


_PNG_NAMES = ("ant", "moth", "zebra")
_PNG_COUNTS = {"train": 24, "test": 12}  # 8x8 RGB: the shapes of test_own_data's tiny runs


@pytest.fixture(scope="module")
def png_tfds(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A TFDS dataset of PNG files, prepared offline as array_record: (name, data_dir).

    Image i of split s has the grey level 85 * label + 5 * (i // 3), so pixels name their label.
    """
    tfds = pytest.importorskip("tensorflow_datasets")
    image_module = pytest.importorskip("PIL.Image")
    pngs = tmp_path_factory.mktemp("pngs")
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, n in _PNG_COUNTS.items():
        files[split] = []
        for i in range(n):
            label = i % 3
            file = pngs / f"{split}_{i:02d}.png"
            image_module.fromarray(np.full((8, 8, 3), 85 * label + 5 * (i // 3), np.uint8)).save(file)
            files[split].append((file, label))

    builder_base: Any = tfds.core.GeneratorBasedBuilder

    class LabelsimTinyPngs(builder_base):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self) -> Any:
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=list(_PNG_NAMES)),
                }
            )
            return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
            return {split: self._generate_examples(split) for split in _PNG_COUNTS}

        def _generate_examples(self, split: str) -> Any:
            for i, (file, label) in enumerate(files[split]):
                yield i, {"image": str(file), "label": label}  # the PNG's bytes are stored as they are

    name = "labelsim_tiny_pngs"
    data_dir = tmp_path_factory.mktemp("tfds")
    _prepare(name, data_dir)
    return name, data_dir


def _check_pngs(ds: Dataset, name: str) -> None:
    assert ds.name == name and ds.class_names == _PNG_NAMES
    assert ds.x_train.shape == (24, 8, 8, 3) and ds.x_test.shape == (12, 8, 8, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_test.dtype == np.int32
    assert np.bincount(ds.y_train).tolist() == [8, 8, 8] and np.bincount(ds.y_test).tolist() == [4, 4, 4]
    for x, y, n in ((ds.x_train, ds.y_train, 24), (ds.x_test, ds.y_test, 12)):
        assert np.all(x == x[:, :1, :1, :1])  # decoded, not raw bytes
        assert np.all(x[:, 0, 0, 0] // 85 == y)  # pixels travel with their label
        assert sorted(x[:, 0, 0, 0].tolist()) == sorted(85 * (i % 3) + 5 * (i // 3) for i in range(n))


def test_tfds_png_images_are_decoded(png_tfds: tuple[str, Path]) -> None:
    name, data_dir = png_tfds
    _check_pngs(load_tfds(name, str(data_dir)), name)
    _check_pngs(load_dataset(DataConfig(name=name, data_dir=str(data_dir))), name)


def test_tfds_dataset_prepared_elsewhere_loads_without_its_builder(png_tfds: tuple[str, Path]) -> None:
    """A process that never saw the builder's code reads the prepared files (a dataset prepared on
    another machine), and never imports TensorFlow."""
    name, data_dir = png_tfds
    code = (
        "import sys; from labelsim.sim.data import load_tfds; "
        f"ds = load_tfds({name!r}, {str(data_dir)!r}); "
        "print(ds.x_train.shape, ds.class_names, int((ds.x_train[:, 0, 0, 0] // 85 == ds.y_train).all()), "
        "'tensorflow' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"(24, 8, 8, 3) {_PNG_NAMES} 1 False"


def test_tfds_dataset_in_another_format_says_how_to_re_prepare(png_tfds: tuple[str, Path], tmp_path: Path) -> None:
    name, data_dir = png_tfds
    copy = tmp_path / "tfrecord"
    shutil.copytree(data_dir, copy)
    (info_file,) = copy.glob(f"{name}/1.0.0/dataset_info.json")
    info = json.loads(info_file.read_text())
    info["fileFormat"] = "tfrecord"  # as TFDS writes by default on a machine with TensorFlow
    info_file.write_text(json.dumps(info))
    with pytest.raises(DataError) as err:
        load_tfds(name, str(copy))
    message = str(err.value)
    assert "\n" not in message and "prepared as tfrecord" in message
    assert f"tfds build {name} --file_format=array_record" in message


def test_tfds_png_dataset_trains_a_tiny_grid(png_tfds: tuple[str, Path], tmp_path: Path) -> None:
    import run_grid

    name, data_dir = png_tfds
    out = tmp_path / "run"
    flags = [
        "--dataset", name, "--data-dir", str(data_dir), "--width", "4", "--epochs", "1", "--batch-size", "8",
        "--noise", "0,0.5", "--sizes", "12", "--repeats", "1", "--no-augment", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    assert run_grid.main(flags) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and meta["dataset"] == {"name": name, "train_size": 24, "test_size": 12}
    assert meta["classes"] == list(_PNG_NAMES) and meta["test_class_counts"] == [4, 4, 4]
    with np.load(out / "confusion.npz") as data:
        np.testing.assert_array_equal(data["counts"].sum(axis=2), [[4, 4, 4]] * 3)


def test_importing_data_does_not_import_tfds() -> None:
    code = (
        "import sys, labelsim.sim.data; "
        "bad = [m for m in ('tensorflow_datasets', 'tensorflow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
