"""Model zoo: exact parameter counts (via eval_shape), output shapes, dtypes, small forwards."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelsim.config import ConfigError
from labelsim.models import MODELS, get_model, standard_width
from labelsim.models.googlenet import BLOCKS, Inception

X = jnp.zeros((2, 32, 32, 3), jnp.float32)

# name -> (trainable parameters, BatchNorm statistics) at the standard width, 10 classes.
COUNTS = {
    "small_cnn": (308_394, 896),
    "lenet": (62_006, 0),
    "resnet18": (11_173_962, 9_600),
    "resnet18_noskip": (11_000_138, 7_808),
    "googlenet": (6_166_250, 15_808),
}


def _shapes(model: nn.Module, x: jnp.ndarray = X) -> dict[str, Any]:
    """Variable shapes of ``model.init`` without running it."""
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))


def _size(tree: Any) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def _fake_variables(model: nn.Module, x: jnp.ndarray = X) -> Any:
    """Random variables of the right shapes: much faster than a real init on CPU."""
    rng = np.random.default_rng(0)

    def fill(leaf: jax.ShapeDtypeStruct) -> jnp.ndarray:
        # Kernels small and centred; vectors (biases, BN scales, means, variances) positive.
        if leaf.ndim > 1:
            return jnp.asarray(rng.normal(0.0, 0.1, leaf.shape), leaf.dtype)
        return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map(fill, _shapes(model, x))


def _forward(model: nn.Module, variables: Any, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if train:
        apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[0])
    else:
        apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return apply(variables, x)


def test_registry_names() -> None:
    assert set(MODELS) == set(COUNTS)
    with pytest.raises(ConfigError, match="choose one of: googlenet, lenet, resnet18"):
        get_model("vgg16", 10)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts(name: str) -> None:
    variables = _shapes(get_model(name, 10))
    trainable, stats = COUNTS[name]
    assert _size(variables["params"]) == trainable
    assert _size(variables.get("batch_stats", {})) == stats
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))


def test_standard_widths() -> None:
    assert standard_width("small_cnn") == 32
    assert standard_width("resnet18") == 64 and standard_width("googlenet") == 64
    assert standard_width("lenet") == 0  # ignores width
    assert get_model("resnet18", 10, 0).width == 64
    assert get_model("resnet18", 10, None).width == 64
    assert get_model("resnet18", 10, 16).width == 16
    assert _size(_shapes(get_model("lenet", 10, 999))["params"]) == 62_006


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_bfloat16_compute_float32_params(name: str) -> None:
    model = get_model(name, 10, dtype=jnp.bfloat16)
    variables = _shapes(model)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))
    out = jax.eval_shape(
        lambda v: model.apply(
            v, X, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(1)}
        ),
        variables,
    )
    logits, updates = out
    assert logits.shape == (2, 10) and logits.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(updates))


@pytest.mark.parametrize("name", ["resnet18", "resnet18_noskip", "googlenet"])
def test_large_models_output_shape(name: str) -> None:
    model = get_model(name, 7)
    variables = _shapes(model)
    logits, updates = jax.eval_shape(
        lambda v: model.apply(v, X, train=True, mutable=["batch_stats"]), variables
    )
    assert logits.shape == (2, 7)
    assert jax.tree_util.tree_structure(updates["batch_stats"]) == jax.tree_util.tree_structure(
        variables["batch_stats"]
    )


def test_lenet_forward() -> None:
    model = get_model("lenet", 10)
    x = jnp.asarray(np.random.default_rng(0).random((2, 32, 32, 3)), jnp.float32)
    variables = _fake_variables(model)
    logits = _forward(model, variables, x, train=False)
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
    np.testing.assert_allclose(_forward(model, variables, x, train=True), logits, rtol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "resnet18_noskip"])
def test_resnet_forward_at_small_width(name: str) -> None:
    model = get_model(name, 10, width=8)
    x = jnp.asarray(np.random.default_rng(0).random((2, 32, 32, 3)), jnp.float32)
    variables = _fake_variables(model)
    train_logits = _forward(model, variables, x, train=True)
    eval_logits = _forward(model, variables, x, train=False)
    assert train_logits.shape == eval_logits.shape == (2, 10)
    assert bool(jnp.all(jnp.isfinite(train_logits))) and bool(jnp.all(jnp.isfinite(eval_logits)))
    assert not np.allclose(train_logits, eval_logits)  # batch vs running statistics


def _one_by_one_kernels(name: str) -> int:
    params = _shapes(get_model(name, 10))["params"]
    kernels = [k for k in jax.tree_util.tree_leaves(params) if k.ndim == 4]
    return sum(k.shape[:2] == (1, 1) for k in kernels)


def test_noskip_has_no_projection_shortcuts() -> None:
    assert _one_by_one_kernels("resnet18") == 3  # one projection at each of stages 2-4
    assert _one_by_one_kernels("resnet18_noskip") == 0


def test_inception_block_forward() -> None:
    block = Inception(BLOCKS["a3"])
    x = jnp.asarray(np.random.default_rng(0).random((2, 8, 8, 192)), jnp.float32)
    variables = _fake_variables(block, x)
    y = _forward(block, variables, x, train=True)
    assert y.shape == (2, 8, 8, 64 + 128 + 32 + 32)
    assert bool(jnp.all(y >= 0)) and bool(jnp.all(jnp.isfinite(y)))  # ReLU on every branch


@pytest.mark.parametrize("conv", ["xla", "patches"])
def test_small_cnn_kernels_start_glorot_uniform_like_the_studys_keras_layers(conv: str) -> None:
    from labelsim.models.small_cnn import SmallCNN

    model = SmallCNN(num_classes=10, width=32, conv=conv)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)["params"]
    for name, fan_in, fan_out in (("Conv_0", 9 * 3, 9 * 32), ("Conv_5", 9 * 128, 9 * 128), ("Dense_0", 2048, 10)):
        kernel = np.asarray(params[name]["kernel"])
        limit = np.sqrt(6.0 / (fan_in + fan_out))  # uniform on [-limit, limit]
        assert np.abs(kernel).max() <= limit
        assert np.abs(kernel).max() > 0.95 * limit  # uniform fills the range; a normal would not stop at it
        assert np.std(kernel) == pytest.approx(limit / np.sqrt(3.0), rel=0.1)
        assert not np.any(np.asarray(params[name]["bias"]))
