"""The reference study's small CNN: three [conv-ELU-BN, conv-ELU-BN, maxpool, dropout] blocks.

With width 32 it has 309,290 parameters: 308,394 trainable and 896 BatchNorm statistics.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# Keras BatchNormalization defaults, which the study's recipe used.
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


class SmallCNN(nn.Module):
    """6 conv layers (w, w, 2w, 2w, 4w, 4w; 3x3, same), dropout 0.2/0.3/0.4, dense(classes)."""

    num_classes: int = 10
    width: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        for block, rate in enumerate((0.2, 0.3, 0.4)):
            features = self.width * 2**block
            for _ in range(2):
                x = nn.Conv(features, (3, 3), padding="SAME", dtype=self.dtype)(x)
                x = nn.elu(x)
                x = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=BN_MOMENTUM,
                    epsilon=BN_EPSILON,
                    dtype=self.dtype,
                )(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = nn.Dropout(rate, deterministic=not train)(x)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)
