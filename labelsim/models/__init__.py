"""Model registry: every model is a Flax module ``model(x, train) -> logits``."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from labelsim.config import ConfigError
from labelsim.models.small_cnn import SmallCNN

# name -> factory(num_classes, width, dtype) -> module
MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": lambda num_classes, width, dtype: SmallCNN(num_classes, width, dtype),
}


def get_model(name: str, num_classes: int, width: int = 32, dtype: Any = jnp.float32) -> nn.Module:
    """Build a registered model by name."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes, width, dtype)
