"""Fingerprints of what a run's results depend on, stored in run.json as ``inputs`` and
checked by ``--resume``: the config (as stored, less the speed settings), the dataset's arrays
and the noise models' extra inputs (the transition matrix, the human labels), each by content.

Paths alone are not enough: a matrix file rewritten between a kill and ``--resume``, or
``run.json``'s config edited by hand, would otherwise train the remaining replicas on other
inputs than the finished ones and mix the two in one table.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from labelsim.rundir import RUN_FILE, RunDirError

if TYPE_CHECKING:  # the data package imports jax; check and the reader must not
    from labelsim.sim.data import Dataset

INPUTS_KEY = "inputs"


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 of a config dict as canonical JSON, without ``exec`` (speed settings only)."""
    results = {k: v for k, v in config.items() if k != "exec"}
    return hashlib.sha256(json.dumps(results, sort_keys=True).encode()).hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """SHA-256 of arrays' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes() if array.dtype.kind != "V" else array.view(np.uint8).tobytes())
    return h.hexdigest()


def input_fingerprints(config: Mapping[str, Any], dataset: "Dataset", extra: Mapping[str, Any]) -> dict[str, str]:
    """The fingerprints of a run about to train: config, dataset, and each extra noise input."""
    prints = {
        "config": config_digest(config),
        "dataset": array_digest(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test),
    }
    for name in sorted(extra):  # "matrix", "human"
        prints[name] = array_digest(np.asarray(extra[name]))
    return prints


def check_stored_config(out: Path, meta: Mapping[str, Any]) -> None:
    """RunDirError when run.json's config no longer matches the fingerprint it was started with."""
    stored = (meta.get(INPUTS_KEY) or {}).get("config")
    if stored is not None and stored != config_digest(meta.get("config") or {}):
        raise RunDirError(
            f"the config in {Path(out) / RUN_FILE} was changed after the run started (it no longer matches "
            "its fingerprint), so its finished replicas were trained with another one; restore the file, "
            "or start a new --out"
        )


def check_inputs(out: Path, stored: Mapping[str, str] | None, now: Mapping[str, str]) -> None:
    """RunDirError naming every input whose content differs from the one the run started on
    (runs from before fingerprints were recorded are not checked)."""
    if not stored:
        return
    changed = [name for name in sorted(set(stored) | set(now)) if name != "config" and stored.get(name) != now.get(name)]
    if changed:
        names = {"matrix": "the --noise-matrix file", "human": "the --human-labels file", "dataset": "the dataset"}
        listed = ", ".join(names.get(name, name) for name in changed)
        raise RunDirError(
            f"{out} was started on other inputs: {listed} changed since (content fingerprint differs); "
            "resume it with the inputs it started on, or start a new --out"
        )
