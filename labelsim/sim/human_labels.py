"""CIFAR-10N: real human annotations of the 50,000 CIFAR-10 training images.

Wei et al., "Learning with Noisy Labels Revisited: A Study Using Real-World Human
Annotations", ICLR 2022. Licence CC BY-NC 4.0 (non-commercial use, with attribution).

Every array is ``(50000,)`` int64 with values 0-9, aligned with the original CIFAR-10
training order (``data_batch_1`` ... ``data_batch_5`` concatenated):

=========  =============================================  ==========================
set        what it is                                     wrong vs ``clean``
=========  =============================================  ==========================
clean      the original CIFAR-10 labels                   0%
aggre      majority vote of three annotators              9.01%
random1-3  one annotator each                             17.23% / 18.12% / 17.64%
worse      a wrong annotation wherever one exists         40.21%
=========  =============================================  ==========================

Sources: a local ``labels.npz`` holding those six arrays (upstream key names such as
``aggre_label`` / ``random_label1`` / ``clean_label`` are accepted too), or the TFDS
``cifar10_n`` dataset (``"tfds"`` or ``"tfds:DATA_DIR"``), reordered by its ``id`` feature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from labelsim.config import ConfigError

HUMAN_SETS = ("aggre", "random1", "random2", "random3", "worse")
ALL_SETS = ("clean",) + HUMAN_SETS
NUM_IMAGES = 50_000
NUM_CLASSES = 10

# Published disagreement with the clean labels (Wei et al. 2022, Table 1).
PUBLISHED_NOISE = {
    "aggre": 0.0901,
    "random1": 0.1723,
    "random2": 0.1812,
    "random3": 0.1764,
    "worse": 0.4021,
}
# A loaded set whose noise is further than this from the published rate is misaligned.
NOISE_TOLERANCE = 0.01

# Upstream (CIFAR-10_human.pt, TFDS) key -> our name.
_UPSTREAM_KEYS = {
    "clean_label": "clean",
    "label": "clean",
    "aggre_label": "aggre",
    "random_label1": "random1",
    "random_label2": "random2",
    "random_label3": "random3",
    "worse_label": "worse",
}

_TFDS_PREFIX = "tfds"


def load_human_labels(path_or_dir: str | Path) -> dict[str, np.ndarray]:
    """The CIFAR-10N label sets (clean, aggre, random1-3, worse) in the original CIFAR-10 order.

    ``path_or_dir`` is a ``labels.npz`` file, a folder holding one, ``"tfds"`` (TFDS's default
    data folder) or ``"tfds:DATA_DIR"``. The sets are checked against the published noise
    rates, so a file in another image order is refused.
    """
    text = str(path_or_dir)
    if text == _TFDS_PREFIX or text.startswith(_TFDS_PREFIX + ":"):
        data_dir = text[len(_TFDS_PREFIX) + 1 :] or None
        return load_human_labels_tfds(data_dir)
    return check_human_labels(_read_npz(_npz_path(Path(path_or_dir))))


def _npz_path(path: Path) -> Path:
    """The labels file named by a file or folder path."""
    if path.is_dir():
        path = path / "labels.npz"
    if not path.is_file():
        raise ConfigError(
            f"CIFAR-10N labels file {str(path)!r} not found; give the path of labels.npz "
            "(arrays clean, aggre, random1, random2, random3, worse) or of its folder"
        )
    return path


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every label array of an .npz, under our set names."""
    with np.load(path, allow_pickle=False) as archive:
        return {_UPSTREAM_KEYS.get(key, key): np.asarray(archive[key]) for key in archive.files}


def check_human_labels(sets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validated int64 copies of the six sets; ConfigError if any is missing, malformed or
    misaligned (its noise far from the published rate)."""
    missing = [name for name in ALL_SETS if name not in sets]
    if missing:
        raise ConfigError(
            f"CIFAR-10N labels lack the set(s) {missing}; the file needs arrays "
            f"{', '.join(ALL_SETS)} (or the upstream names such as aggre_label)"
        )
    out = {name: _check_array(name, sets[name]) for name in ALL_SETS}
    for name, published in PUBLISHED_NOISE.items():
        noise = float(np.mean(out[name] != out["clean"]))
        if abs(noise - published) > NOISE_TOLERANCE:
            raise ConfigError(
                f"CIFAR-10N set {name!r} disagrees with the clean labels on {noise:.2%} of "
                f"images, not the published {published:.2%}: the file is not in the original "
                "CIFAR-10 training order; use the labels.npz aligned with data_batch_1..5"
            )
    return out


def _check_array(name: str, values: np.ndarray) -> np.ndarray:
    """One set as int64, with the CIFAR-10 training shape and class range."""
    values = np.asarray(values)
    if values.shape != (NUM_IMAGES,):
        raise ConfigError(
            f"CIFAR-10N set {name!r} has shape {values.shape}, not ({NUM_IMAGES},): "
            "give the labels of all CIFAR-10 training images"
        )
    if not np.issubdtype(values.dtype, np.number) or np.any(values != np.round(values)):
        raise ConfigError(f"CIFAR-10N set {name!r} must hold integer class ids 0-9")
    values = values.astype(np.int64)
    if values.min() < 0 or values.max() >= NUM_CLASSES:
        raise ConfigError(f"CIFAR-10N set {name!r} has class ids outside 0-9")
    return values


def subset_human_labels(
    sets: Mapping[str, np.ndarray], indices: np.ndarray
) -> dict[str, np.ndarray]:
    """Every set restricted to the given dataset indices (a training subset)."""
    return {name: np.asarray(values)[indices] for name, values in sets.items()}


def as_record_array(sets: Mapping[str, np.ndarray]) -> np.ndarray:
    """The sets as one structured (N,) array with a field per set, so that indexing it with a
    training subset's dataset indices keeps every set aligned."""
    names = list(sets)
    out = np.zeros(len(sets[names[0]]), dtype=[(name, np.int64) for name in names])
    for name in names:
        out[name] = sets[name]
    return out


def human_label_arrays(path: str | Path | None, noise_models: Sequence[str] = ()) -> np.ndarray:
    """The CIFAR-10N sets loaded from ``path`` as a structured (50000,) array (fields clean,
    aggre, random1-3, worse), ready to pass as ``human=`` to ``noise.corrupt`` after indexing
    with the training subset; ConfigError if a human noise model has no file."""
    if path is None:
        models = ", ".join(noise_models) or "human"
        raise ConfigError(
            f"noise model(s) {models} replay CIFAR-10N human labels: pass the CIFAR-10N labels "
            "file (e.g. --human-labels PATH to labels.npz); they apply only to CIFAR-10 "
            "training images in their original order"
        )
    return as_record_array(load_human_labels(path))


def order_by_id(ids: np.ndarray, sets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reorder sets read in any order by their ``train_NNNNN`` ids (NNNNN = original index)."""
    index = np.array([_id_to_index(i) for i in ids], dtype=np.int64)
    if sorted(index.tolist()) != list(range(NUM_IMAGES)):
        raise ConfigError(
            "the CIFAR-10N ids do not cover train_00000..train_49999 exactly once; "
            "use a local labels.npz instead"
        )
    order = np.argsort(index)
    return {name: np.asarray(values)[order] for name, values in sets.items()}


def _id_to_index(raw: bytes | str) -> int:
    """``b'train_01234'`` -> 1234."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    prefix, _, number = text.rpartition("_")
    if prefix != "train" or not number.isdigit():
        raise ConfigError(f"unexpected CIFAR-10N id {text!r}; use a local labels.npz instead")
    return int(number)


def load_human_labels_tfds(data_dir: str | None = None) -> dict[str, np.ndarray]:
    """The sets from a prepared TFDS ``cifar10_n`` (its train split, reordered by ``id``)."""
    try:
        import tensorflow_datasets as tfds  # heavy: imported only when asked for
    except ImportError as err:
        raise ConfigError(
            "tensorflow_datasets is not installed; install it or pass a local CIFAR-10N "
            "labels.npz instead"
        ) from err
    builder = tfds.builder("cifar10_n", data_dir=data_dir)
    if not builder.is_prepared():
        raise ConfigError(
            "TFDS cifar10_n is not prepared (it needs a manual download, see its TFDS page); "
            "pass a local CIFAR-10N labels.npz instead"
        )
    try:
        dataset = builder.as_dataset(
            split="train", decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
        )
    except ImportError as err:  # TFDS reads its tfrecord files through tensorflow
        raise ConfigError(
            f"reading TFDS cifar10_n needs tensorflow ({err}); install it or pass a local "
            "CIFAR-10N labels.npz instead"
        ) from err
    keys = ("id",) + tuple(k for k, v in _UPSTREAM_KEYS.items() if k != "clean_label")
    columns: dict[str, list] = {key: [] for key in keys}
    for record in tfds.as_numpy(dataset):
        for key in keys:
            columns[key].append(record[key])
    sets = {_UPSTREAM_KEYS[key]: np.asarray(columns[key]) for key in keys if key != "id"}
    return check_human_labels(order_by_id(np.asarray(columns["id"]), sets))
