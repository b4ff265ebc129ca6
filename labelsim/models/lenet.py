"""LeNet-5 for 32x32 colour images: conv6 5x5 -> max-pool -> conv16 5x5 -> max-pool -> fc120 ->
fc84 -> fc(classes), ReLU throughout, no BatchNorm and no dropout.

With 10 classes and a 32x32x3 input it has 62,006 parameters, all trainable (no BatchNorm
statistics). ``width`` is ignored: LeNet-5's layer sizes are fixed. Practical on CPU.
The reference study's PyTorch LeNet reached 66.6% on CIFAR-10 (125 epochs).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from labelsim.models.layers import record_features


class LeNet(nn.Module):
    """Two 5x5 valid convolutions (6, 16 filters) with 2x2 max-pools, then 120-84-classes."""

    num_classes: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        del train  # no BatchNorm or dropout: train and eval are the same function
        x = x.astype(self.dtype)
        for features in (6, 16):
            x = nn.Conv(features, (5, 5), padding="VALID", dtype=self.dtype)(x)
            x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        for features in (120, 84):
            x = nn.relu(nn.Dense(features, dtype=self.dtype)(x))
        record_features(self, x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)
