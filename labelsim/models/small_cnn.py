"""The reference study's small CNN: three [conv-ELU-BN, conv-ELU-BN, maxpool, dropout] blocks.

With width 32 it has 309,290 parameters: 308,394 trainable and 896 BatchNorm statistics.
Conv and dense kernels start Glorot-uniform, as the study's Keras layers do by default (flax's
default, LeCun-normal, trained 5.6-7.9 points ahead of the Keras reference at CPU scale; see
``benchmarks/keras_reference.py``); biases start at zero.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from labelsim.models.layers import KERAS_BATCH_NORM, batch_norm, record_features

CONV_IMPLS = ("xla", "patches")
KERNEL_INIT = nn.initializers.glorot_uniform()  # Keras's default for Conv2D and Dense


class PatchConv(nn.Module):
    """A 3x3 'same' convolution as image patches times a matrix.

    Same parameters (names, shapes, initializers) and results as ``nn.Conv``; under ``vmap``
    over replicas it becomes one batched matrix multiply instead of a grouped convolution.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel", KERNEL_INIT, (*self.kernel_size, in_features, self.features), jnp.float32
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        patches = jax.lax.conv_general_dilated_patches(
            x.astype(self.dtype), self.kernel_size, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )  # features ordered (in_features, kh, kw)
        matrix = kernel.transpose(2, 0, 1, 3).reshape(-1, self.features).astype(self.dtype)
        return patches @ matrix + bias.astype(self.dtype)


class SmallCNN(nn.Module):
    """6 conv layers (w, w, 2w, 2w, 4w, 4w; 3x3, same), dropout 0.2/0.3/0.4, dense(classes).

    ``conv`` chooses how convolutions are computed ("xla": ``nn.Conv``; "patches":
    ``PatchConv``); the parameters and results are the same.
    """

    num_classes: int = 10
    width: int = 32
    dtype: Any = jnp.float32
    conv: str = "xla"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        for block, rate in enumerate((0.2, 0.3, 0.4)):
            features = self.width * 2**block
            for layer in range(2):
                name = f"Conv_{2 * block + layer}"
                if self.conv == "patches":
                    x = PatchConv(features, dtype=self.dtype, name=name)(x)
                else:
                    x = nn.Conv(features, (3, 3), padding="SAME", dtype=self.dtype, kernel_init=KERNEL_INIT, name=name)(x)
                x = nn.elu(x)
                x = batch_norm(train, self.dtype, KERAS_BATCH_NORM)(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = nn.Dropout(rate, deterministic=not train)(x)
        x = x.reshape((x.shape[0], -1))
        record_features(self, x)
        return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=KERNEL_INIT)(x)
