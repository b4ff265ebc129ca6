"""Layers shared by the models."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# (momentum, epsilon) of BatchNorm's running statistics, as each source framework sets them.
KERAS_BATCH_NORM = (0.99, 1e-3)  # Keras defaults: the study's CNN was trained in Keras
TORCH_BATCH_NORM = (0.9, 1e-5)  # PyTorch BatchNorm2d: flax momentum = 1 - torch's 0.1


def batch_norm(train: bool, dtype: Any, defaults: tuple[float, float]) -> nn.BatchNorm:
    """A BatchNorm that uses batch statistics while training and running averages otherwise."""
    momentum, epsilon = defaults
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon, dtype=dtype)


# Where a model keeps its penultimate activations (the classifier's input) when asked for them.
FEATURES_COLLECTION, FEATURES_NAME = "intermediates", "features"


def record_features(module: nn.Module, x: jnp.ndarray) -> None:
    """Keep ``x`` as the model's features for ``labelsim.models.penultimate_features``. A no-op unless the
    caller makes the collection mutable (training never does), and skipped at init, so a model's variables
    hold only its parameters and statistics."""
    if not module.is_initializing():
        module.sow(FEATURES_COLLECTION, FEATURES_NAME, x)
