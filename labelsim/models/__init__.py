"""Model registry: every model is a Flax module ``model(x, train) -> logits``.

Parameter counts (10 classes, 32x32x3 input, standard width), trainable + BatchNorm statistics:

=================  ======  ===========  ==========  ===============
name               width   trainable    BN stats    practical on
=================  ======  ===========  ==========  ===============
small_cnn          32      308,394      896         CPU and GPU
lenet              (none)  62,006       0           CPU and GPU
resnet18           64      11,173,962   9,600       GPU
resnet18_noskip    64      11,000,138   7,808       GPU
googlenet          64      6,166,250    15,808      GPU
=================  ======  ===========  ==========  ===============

``width`` is each model's base number of filters; ``lenet`` ignores it (fixed sizes).
``penultimate_features`` reads any model's activations before its final Dense layer.
Computation runs in the factory's ``dtype`` (bfloat16 on GPU); parameters stay float32.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from labelsim.config import ConfigError
from labelsim.models.googlenet import GoogLeNet
from labelsim.models.layers import FEATURES_COLLECTION, FEATURES_NAME
from labelsim.models.lenet import LeNet
from labelsim.models.resnet import ResNet18
from labelsim.models.small_cnn import CONV_IMPLS, SmallCNN


def _lenet(num_classes: int, width: int, dtype: Any) -> nn.Module:
    """LeNet-5; ``width`` is ignored."""
    del width
    return LeNet(num_classes, dtype)


def _resnet18(num_classes: int, width: int, dtype: Any) -> nn.Module:
    """CIFAR ResNet-18 with shortcuts."""
    return ResNet18(num_classes, width, True, dtype)


def _resnet18_noskip(num_classes: int, width: int, dtype: Any) -> nn.Module:
    """CIFAR ResNet-18 without any shortcut."""
    return ResNet18(num_classes, width, False, dtype)


# name -> factory(num_classes, width, dtype) -> module
MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": lambda num_classes, width, dtype: SmallCNN(num_classes, width, dtype),
    "lenet": _lenet,
    "resnet18": _resnet18,
    "resnet18_noskip": _resnet18_noskip,
    "googlenet": lambda num_classes, width, dtype: GoogLeNet(num_classes, width, dtype),
}

# name -> the width of the published network (None: the model has no width to set).
STANDARD_WIDTHS: dict[str, int | None] = {
    "small_cnn": 32,
    "lenet": None,
    "resnet18": 64,
    "resnet18_noskip": 64,
    "googlenet": 64,
}


def standard_width(name: str) -> int:
    """The width of the published network (0 for models that ignore width)."""
    if name not in STANDARD_WIDTHS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return STANDARD_WIDTHS[name] or 0


def get_model(
    name: str, num_classes: int, width: int | None = None, dtype: Any = jnp.float32, conv: str = "xla"
) -> nn.Module:
    """Build a registered model by name; ``width`` None or <= 0 means the standard width;
    ``conv`` (small_cnn only) picks how convolutions are computed, with the same results."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    if conv not in CONV_IMPLS:
        raise ConfigError(f"unknown conv {conv!r}; choose one of: {', '.join(CONV_IMPLS)}")
    if conv != "xla" and name != "small_cnn":
        raise ConfigError(f"conv {conv!r} is implemented for small_cnn only; use conv 'xla' for {name}")
    if width is None or width <= 0:
        width = standard_width(name)
    if name == "small_cnn":
        return SmallCNN(num_classes, width, dtype, conv)
    return MODELS[name](num_classes, width, dtype)


def penultimate_features(model: nn.Module, variables: dict[str, Any], x: jnp.ndarray) -> jnp.ndarray:
    """(batch, features) activations of ``model`` in evaluation mode just before its final Dense layer
    (after pooling or flattening), for records ``x`` prepared as for its logits."""
    _, state = model.apply(variables, x, train=False, mutable=[FEATURES_COLLECTION])
    recorded = state.get(FEATURES_COLLECTION, {}).get(FEATURES_NAME)
    if recorded is None:
        raise ConfigError(
            f"model {type(model).__name__} does not record its penultimate features (record_features before its "
            "final Dense layer); give your own cluster assignment with --assign FILE instead"
        )
    return recorded[-1]
