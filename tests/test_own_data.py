"""A user's own data: image folders (``--dataset folder:PATH``) and arrays (``--dataset npz:PATH``):
layouts, labels, resizing, the decoded-array cache, every error's one line, and tiny runs end to end."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import run_grid
from labelsim.config import ConfigError, DataConfig
from labelsim.sim.data import DataError, load_dataset, load_folder, load_npz_arrays
from labelsim.sim.data import folder as folder_module

CLASSES = ("zebra", "ant", "moth")  # written in this order; read back sorted
SORTED = ("ant", "moth", "zebra")
HEIGHT, WIDTH = 20, 24  # not square, so a swapped height and width shows


def shade(k: int, i: int) -> int:
    """The grey level of image ``i`` (up to 16) of class ``k`` (sorted order): classes 85 apart, images 5 apart."""
    return 85 * k + 5 * i


def write_image(file: Path, pixels: np.ndarray) -> None:
    """One image file; the suffix picks PNG or JPEG. Skips the test where Pillow is missing."""
    image = pytest.importorskip("PIL.Image")
    file.parent.mkdir(parents=True, exist_ok=True)
    image.fromarray(pixels).save(file)


def uniform(value: int, channels: int = 3, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """An image of one level (exact in PNG, within a few levels in JPEG)."""
    return np.full(shape + ((channels,) if channels > 1 else ()), value, np.uint8)


def write_class(folder: Path, k: int, indices: Iterable[int], suffix: str | None = None) -> None:
    """Images ``indices`` of sorted class ``k``: even ones PNG, odd ones JPEG, unless ``suffix``."""
    for i in indices:
        ext = suffix or ("png" if i % 2 == 0 else "jpg")
        write_image(folder / SORTED[k] / f"{i:02d}.{ext}", uniform(shade(k, i)))


def split_folder(root: Path, train: int = 8, test: int = 4) -> Path:
    """root/train/<class>/ and root/test/<class>/, classes created in unsorted order."""
    for name in CLASSES:
        k = SORTED.index(name)
        write_class(root / "train", k, range(train))
        write_class(root / "test", k, range(train, train + test))
    return root


def one_folder(root: Path, per_class: int = 12, suffix: str = "png") -> Path:
    """root/<class>/ only, to be split by the test fraction."""
    for name in CLASSES:
        write_class(root, SORTED.index(name), range(per_class), suffix)
    return root


@pytest.fixture(autouse=True)
def no_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches beside the test folders unless a test sets the cache folder."""
    monkeypatch.delenv(folder_module.CACHE_ENV, raising=False)


def levels(x: np.ndarray) -> np.ndarray:
    """Each image's mean level."""
    return x.reshape(len(x), -1).mean(axis=1)


def folder_error(root: Path, **options: Any) -> str:
    """The one-line DataError that loading ``root`` raises."""
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name=f"folder:{root}", **options))
    message = str(err.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# Folders: layouts, labels, resizing
# --------------------------------------------------------------------------------------------


def test_train_and_test_folders_give_sorted_classes_and_matching_pixels(tmp_path: Path) -> None:
    ds = load_dataset(DataConfig(name=f"folder:{split_folder(tmp_path / 'shapes')}"))
    assert ds.name == "folder:shapes" and ds.class_names == SORTED
    assert ds.x_train.shape == (24, 32, 32, 3) and ds.x_test.shape == (12, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    assert np.bincount(ds.y_train).tolist() == [8, 8, 8] and np.bincount(ds.y_test).tolist() == [4, 4, 4]
    # Rows run class by class, files sorted: row k*8+i of train is image i of class k.
    want_train = np.array([shade(k, i) for k in range(3) for i in range(8)])
    want_test = np.array([shade(k, i) for k in range(3) for i in range(8, 12)])
    np.testing.assert_array_equal(ds.y_train, np.repeat(np.arange(3), 8))
    np.testing.assert_allclose(levels(ds.x_train), want_train, atol=3)  # JPEGs within a few levels
    np.testing.assert_allclose(levels(ds.x_test), want_test, atol=3)
    png = np.arange(24) % 2 == 0
    assert np.all(ds.x_train[png] == want_train[png][:, None, None, None])  # PNGs exact


def test_resize_keeps_orientation_and_zero_keeps_the_native_size(tmp_path: Path) -> None:
    root = one_folder(tmp_path / "grad", per_class=3)
    ramp = np.broadcast_to(np.linspace(0, 255, WIDTH).astype(np.uint8)[None, :, None], (HEIGHT, WIDTH, 3))
    write_image(root / "ant" / "ramp.png", np.ascontiguousarray(ramp))
    for side, shape in ((8, (8, 8, 3)), (0, (HEIGHT, WIDTH, 3))):
        ds = load_folder(root, side, test_fraction=0.5, seed=0)
        assert ds.x_train.shape[1:] == shape and ds.x_test.shape[1:] == shape
        images = np.concatenate([ds.x_train, ds.x_test])
        ramps = [im for im in images if im[0, 0, 0] < 20 and im[0, -1, 0] > 230]
        assert len(ramps) == 1  # the left-dark, right-bright image, not transposed
        columns = ramps[0][0, :, 0].astype(int)
        assert np.all(np.diff(columns) >= 0) and np.all(ramps[0] == ramps[0][:1])  # rows equal


def test_one_folder_is_split_per_class_by_fraction_and_seed(tmp_path: Path) -> None:
    root = one_folder(tmp_path / "flat")
    write_class(root, 0, range(12, 17), "png")  # ant: 17 images

    def split(fraction: float, seed: int) -> tuple[set[int], set[int], Any]:
        ds = load_folder(root, 8, fraction, seed)
        return set(levels(ds.x_train).astype(int)), set(levels(ds.x_test).astype(int)), ds

    train, test, ds = split(0.2, 0)
    everything = {shade(0, i) for i in range(17)} | {shade(k, i) for k in (1, 2) for i in range(12)}
    assert train | test == everything and not train & test  # every image once
    assert np.bincount(ds.y_test).tolist() == [3, 2, 2]  # round(0.2 * 17), round(0.2 * 12)
    assert np.all(levels(ds.x_test) // 85 == ds.y_test)  # labels travel with their images
    assert split(0.2, 0)[1] == test  # the same seed, the same split
    assert split(0.2, 1)[1] != test
    assert np.bincount(split(0.5, 0)[2].y_test).tolist() == [9, 6, 6]


def test_greyscale_folder_gives_one_channel(tmp_path: Path) -> None:
    root = tmp_path / "grey"
    for k in range(3):
        for i in range(3):
            write_image(root / SORTED[k] / f"{i}.png", uniform(shade(k, i), channels=1))
    ds = load_folder(root, 16, 0.34, 0)
    assert ds.x_train.shape[1:] == (16, 16, 1) and ds.x_test.shape[1:] == (16, 16, 1)
    assert np.all(levels(ds.x_train) // 85 == ds.y_train)


def test_other_files_are_left_out_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = one_folder(tmp_path / "notes", per_class=4)
    (root / "ant" / "labels.txt").write_text("not an image")
    (root / "ant" / ".hidden.png").write_bytes(b"ignored without a note")
    ds = load_folder(root, 8, 0.25, 0)
    assert len(ds.y_train) + len(ds.y_test) == 12
    err = capsys.readouterr().err
    assert "1 file(s)" in err and "labels.txt" in err and ".hidden" not in err


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every file the folder loader decodes."""
    decoded: list[Path] = []
    real = folder_module._decode

    def counting(module: Any, file: Path, side: int) -> np.ndarray:
        decoded.append(file)
        return real(module, file, side)

    monkeypatch.setattr(folder_module, "_decode", counting)
    return decoded


def test_cache_is_written_once_and_reused_until_the_files_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = split_folder(tmp_path / "cached")
    decoded = count_decodes(monkeypatch)
    first = load_folder(root)
    assert len(decoded) == 36 and (root / ".labelsim_cache_32.npz").is_file()
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]  # written atomically
    second = load_folder(root)
    assert len(decoded) == 36  # nothing decoded again
    for a, b in ((first.x_train, second.x_train), (first.x_test, second.x_test), (first.y_test, second.y_test)):
        np.testing.assert_array_equal(a, b)
    load_folder(root, side=16)  # another side: its own cache
    assert len(decoded) == 72 and (root / ".labelsim_cache_16.npz").is_file()
    write_image(root / "train" / "ant" / "99.png", uniform(7))  # a new image: decoded again
    third = load_folder(root)
    assert len(decoded) == 72 + 37 and len(third.y_train) == 25
    (root / ".labelsim_cache_32.npz").write_bytes(b"damaged")
    np.testing.assert_array_equal(load_folder(root).x_train, third.x_train)  # rebuilt


def test_cache_goes_to_the_cache_dir_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = split_folder(tmp_path / "data", train=2, test=1)
    monkeypatch.setenv(folder_module.CACHE_ENV, str(tmp_path / "cache"))
    decoded = count_decodes(monkeypatch)
    load_folder(root)
    load_folder(root)
    assert len(decoded) == 9
    assert not list(root.glob(".labelsim_cache*"))
    (cached,) = (tmp_path / "cache").iterdir()
    assert cached.name.startswith("data-") and cached.name.endswith("_32.npz")


def test_unwritable_cache_leaves_a_note_and_still_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = split_folder(tmp_path / "data", train=2, test=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(folder_module.CACHE_ENV, str(blocker / "cache"))  # cannot be created
    ds = load_folder(root)
    assert len(ds.y_train) == 6
    err = capsys.readouterr().err
    assert "cannot write the image cache" in err and folder_module.CACHE_ENV in err
    decoded = count_decodes(monkeypatch)
    load_folder(root)
    assert len(decoded) == 9  # no cache: decoded again


# --------------------------------------------------------------------------------------------
# Folder errors: one line each, naming what to fix
# --------------------------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    message = folder_error(tmp_path / "nowhere")
    assert "nowhere does not exist" in message and "train/<class>/" in message


def test_train_without_test(tmp_path: Path) -> None:
    root = tmp_path / "half"
    write_class(root / "train", 0, range(2))
    write_class(root / "train", 1, range(2))
    message = folder_error(root)
    assert "has train/ but no test/" in message and str(root / "test") in message


def test_empty_class_folder(tmp_path: Path) -> None:
    root = one_folder(tmp_path / "d", per_class=3)
    (root / "wasp").mkdir()
    message = folder_error(root)
    assert f"class folder {root / 'wasp'} holds no" in message and ".png" in message


def test_fewer_than_two_classes(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_class(root, 0, range(4))
    message = folder_error(root)
    assert "only the class folder 'ant'" in message and "at least two classes" in message


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    root = one_folder(tmp_path / "d", per_class=3)
    bad = root / "moth" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    message = folder_error(root)
    assert f"cannot read image {bad}" in message and "replace or remove" in message


def test_mixed_image_modes(tmp_path: Path) -> None:
    root = one_folder(tmp_path / "d", per_class=3)
    grey = root / "zebra" / "grey.png"
    write_image(grey, uniform(200, channels=1))
    message = folder_error(root)
    assert "mixes greyscale images" in message and str(grey) in message and "all to RGB" in message


def test_mixed_sizes_need_an_image_size(tmp_path: Path) -> None:
    root = one_folder(tmp_path / "d", per_class=3)
    big = root / "zebra" / "big.png"
    write_image(big, uniform(10, shape=(32, 32)))
    message = folder_error(root, image_size=0)
    assert "differ in size" in message and str(big) in message and "32x32" in message
    assert "--image-size N" in message
    assert load_dataset(DataConfig(name=f"folder:{root}", image_size=12)).x_train.shape[1:] == (12, 12, 3)


def test_too_few_images_for_the_test_split(tmp_path: Path) -> None:
    root = one_folder(tmp_path / "d", per_class=3)
    write_image(root / "wasp" / "only.png", uniform(1))
    message = folder_error(root)
    assert "class 'wasp' has 1 image" in message and "--test-fraction 0.2" in message


def test_test_fraction_leaving_no_training_image(tmp_path: Path) -> None:
    root = one_folder(tmp_path / "d", per_class=2)
    message = folder_error(root, test_fraction=0.9)
    assert "leaves none for training" in message and "lower --test-fraction" in message


def test_train_and_test_class_folders_differ(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "d", train=2, test=1)
    write_image(root / "test" / "wasp" / "0.png", uniform(1))
    message = folder_error(root)
    assert "differ" in message and "lacks ['wasp']" in message and str(root / "train") in message


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"image_size": 2}, "--image-size 2 is too small"),
        ({"test_fraction": 1.0}, r"--test-fraction 1.0 is outside \(0, 1\)"),
        ({"split_seed": -1}, "--split-seed -1 is negative"),
    ],
)
def test_bad_folder_options(tmp_path: Path, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_dataset(DataConfig(name=f"folder:{tmp_path}", **options))


def test_prefix_without_path_and_path_without_prefix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="names no path; give --dataset folder:PATH"):
        load_dataset(DataConfig(name="folder:"))
    with pytest.raises(ConfigError, match="--dataset is empty"):
        load_dataset(DataConfig(name=""))
    arrays = tmp_path / "mine.npz"
    arrays.write_bytes(b"")
    for path, kind in ((tmp_path, "folder"), (arrays, "npz")):
        with pytest.raises(DataError, match=re.escape(f"is a path; give --dataset {kind}:{path}")):
            load_dataset(DataConfig(name=str(path)))


def test_cli_reports_a_folder_error_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_grid.main(["--dataset", f"folder:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "does not exist" in lines[0]
    assert not (tmp_path / "run" / "run.json").exists()


# --------------------------------------------------------------------------------------------
# npz arrays
# --------------------------------------------------------------------------------------------


def arrays(n_train: int = 12, n_test: int = 6, classes: int = 3, side: int = 8) -> dict[str, np.ndarray]:
    """Images whose level is 70 * label + a per-image offset, with balanced labels."""
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}
    for part, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % classes
        level = 70 * y + rng.integers(0, 60, n)
        out[f"x_{part}"] = np.broadcast_to(level[:, None, None, None], (n, side, side, 3)).astype(np.uint8)
        out[f"y_{part}"] = y
    return out


def save(path: Path, **items: Any) -> Path:
    np.savez(path, **items)
    return path


def npz_error(path: Path) -> str:
    """The one-line DataError that loading ``path`` raises."""
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name=f"npz:{path}"))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_npz_uint8_arrays_with_class_names(tmp_path: Path) -> None:
    a = arrays()
    ds = load_dataset(DataConfig(name=f"npz:{save(tmp_path / 'mine.npz', **a, class_names=np.array(SORTED))}"))
    assert ds.name == "npz:mine" and ds.class_names == SORTED
    np.testing.assert_array_equal(ds.x_train, a["x_train"])
    np.testing.assert_array_equal(ds.y_test, a["y_test"])
    assert ds.y_train.dtype == np.int32 and ds.x_test.dtype == np.uint8


def test_npz_floats_greyscale_and_column_labels_are_converted(tmp_path: Path) -> None:
    a = arrays()
    grey = a["x_train"][..., 0]
    file = save(
        tmp_path / "f.npz",
        x_train=grey.astype(np.float32) / 255.0,  # (N, H, W) floats in [0, 1]
        y_train=a["y_train"][:, None],  # (N, 1), as Keras gives them
        x_test=a["x_test"][..., :1].astype(np.int64),  # integers 0..255
        y_test=a["y_test"].astype(np.uint8),
    )
    ds = load_npz_arrays(file)
    assert ds.x_train.shape == (12, 8, 8, 1) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train[..., 0], grey)  # exact round trip through [0, 1]
    np.testing.assert_array_equal(ds.x_test, a["x_test"][..., :1])
    np.testing.assert_array_equal(ds.y_train, a["y_train"])
    assert ds.class_names == ("class0", "class1", "class2")


def test_npz_missing_arrays_are_named(tmp_path: Path) -> None:
    a = arrays()
    message = npz_error(save(tmp_path / "m.npz", x_train=a["x_train"], y_train=a["y_train"]))
    assert "lacks the array(s) x_test, y_test" in message and "np.savez" in message


def test_npz_label_out_of_range(tmp_path: Path) -> None:
    a = arrays()
    a["y_test"][2] = 3
    message = npz_error(save(tmp_path / "m.npz", **a, class_names=np.array(SORTED)))
    assert "y_test has label 3" in message and "lists 3 classes (labels 0..2)" in message
    a["y_test"][2] = -1
    assert "y_test has label -1" in npz_error(save(tmp_path / "n.npz", **a))


def test_npz_class_missing_from_test(tmp_path: Path) -> None:
    a = arrays()
    a["y_test"] = np.where(a["y_test"] == 2, 0, a["y_test"])  # train has 3 classes, test 2
    message = npz_error(save(tmp_path / "m.npz", **a))
    assert "class 'class2' (label 2) has no test images" in message


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x_train": np.full((12, 8, 8, 3), 1.5, np.float32)}, "x_train holds floats from 1.5 to 1.5"),
        ({"x_train": np.zeros((12, 8, 8, 4), np.uint8)}, r"x_train has shape \(12, 8, 8, 4\)"),
        ({"x_test": np.zeros((6, 9, 9, 3), np.uint8)}, "give both the same"),
        ({"y_train": np.eye(3)[np.arange(12) % 3]}, r"save y.argmax\(axis=1\)"),
        ({"y_train": np.arange(12) % 3 + 0.0}, "labels must be integers"),
        ({"y_train": np.zeros(12, int), "y_test": np.zeros(6, int)}, "has 1 class; a classifier needs at least two"),
        ({"class_names": np.array(["a", 1], dtype=object)}, "class_names is stored as Python objects"),
        ({"class_names": np.array(["a", "b", "a"])}, r"class_names repeats \['a'\]"),
    ],
)
def test_npz_bad_arrays(tmp_path: Path, change: dict[str, np.ndarray], match: str) -> None:
    assert re.search(match, npz_error(save(tmp_path / "m.npz", **(arrays() | change))))


def test_npz_missing_or_foreign_file(tmp_path: Path) -> None:
    assert "does not exist" in npz_error(tmp_path / "none.npz")
    (tmp_path / "text.npz").write_text("hello")
    assert "cannot be read as an .npz file" in npz_error(tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    assert "holds a single array" in npz_error(tmp_path / "one.npy")


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------

# 3 classes, 24 training and 12 test images of 8x8 pixels in every end-to-end test (here and the
# TFDS one in test_data.py): the same shapes reuse one compiled program.
TINY = [
    "--width", "4", "--epochs", "1", "--batch-size", "8", "--noise", "0,0.5", "--sizes", "12",
    "--repeats", "1", "--no-augment", "--no-progress",
]  # fmt: skip


def check_tiny_run(out: Path, name: str) -> None:
    """A finished 3-replica grid on 3 classes with 24 training and 12 test images (4 per class)."""
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished"
    assert meta["dataset"] == {"name": name, "train_size": 24, "test_size": 12}
    assert meta["classes"] == list(SORTED) and meta["test_class_counts"] == [4, 4, 4]
    with (out / "replicas.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["finished"] * 3
    assert sorted(int(r["train_size"]) for r in table) == [12, 24, 24]
    with np.load(out / "confusion.npz") as data:
        assert data["counts"].shape == (3, 3, 3)
        np.testing.assert_array_equal(data["counts"].sum(axis=2), [[4, 4, 4]] * 3)


def test_folder_dataset_trains_a_tiny_grid(tmp_path: Path) -> None:
    root = split_folder(tmp_path / "pets")
    out = tmp_path / "run"
    assert run_grid.main(["--dataset", f"folder:{root}", "--image-size", "8", *TINY, "--out", str(out)]) == 0
    check_tiny_run(out, "folder:pets")
    assert json.loads((out / "run.json").read_text())["config"]["data"]["image_size"] == 8


def test_npz_dataset_trains_a_tiny_grid(tmp_path: Path) -> None:
    ds = load_folder(split_folder(tmp_path / "pets"), 8)  # the folder run's pixels: its compiled program
    file = save(
        tmp_path / "mine.npz",
        x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test, class_names=np.array(SORTED),
    )  # fmt: skip
    out = tmp_path / "run"
    assert run_grid.main(["--dataset", f"npz:{file}", *TINY, "--out", str(out)]) == 0
    check_tiny_run(out, "npz:mine")
