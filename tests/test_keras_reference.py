"""The Keras reference model of benchmarks/keras_reference.py has labelsim's small_cnn's parameters."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("the Keras reference needs KERAS_BACKEND=jax", allow_module_level=True)

from benchmarks.keras_reference import build_model  # noqa: E402
from labelsim.config import RecipeConfig  # noqa: E402
from labelsim.models import get_model  # noqa: E402


def _flax_counts(width: int) -> tuple[int, int]:
    """(trainable, BatchNorm statistics) of labelsim's small_cnn at ``width``, from shapes only."""
    shapes = jax.eval_shape(
        lambda: get_model("small_cnn", 10, width).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    size = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))  # noqa: E731
    return size(shapes["params"]), size(shapes["batch_stats"])


@pytest.mark.parametrize("width", [32, 8])
def test_keras_model_has_small_cnn_parameters(width: int) -> None:
    trainable, stats = _flax_counts(width)
    model = build_model(10, width)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == stats
    assert model.count_params() == trainable + stats


def test_augmentation_layers_add_no_parameters() -> None:
    plain, augmented = build_model(10, 32), build_model(10, 32, recipe=RecipeConfig())
    assert len(augmented.layers) == len(plain.layers) + 3
    assert augmented.count_params() == plain.count_params() == 309_290
