"""ResNet-18 for CIFAR (He et al. 2016, the CIFAR adaptation): a 3x3 stem convolution with
no max-pool, four stages of two BasicBlocks (w, 2w, 4w, 8w filters; stride 2 from the second
stage on), global average pooling and a dense classifier. Where a block changes the shape
its shortcut is a 1x1 strided convolution + BatchNorm; otherwise it is the identity.

``width`` is the stem's filters; 64 is the standard network. With 10 classes and width 64:

- ``resnet18``: 11,183,562 parameters: 11,173,962 trainable and 9,600 BatchNorm statistics.
- ``resnet18_noskip`` (no shortcuts at all, neither identity nor projection, as the study's
  "UnResNet-18"): 11,007,946 parameters: 11,000,138 trainable and 7,808 BatchNorm statistics.

Convolutions have no bias (the BatchNorm after each makes it redundant). BatchNorm follows
PyTorch's defaults (momentum 0.1, i.e. a 0.9 running-average decay; epsilon 1e-5), since the
reference study trained these in PyTorch (ResNet-18 88.29%, no-skip 85.77%, 25 epochs).
Not practical on CPU beyond smoke tests; use a GPU.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from labelsim.models.layers import TORCH_BATCH_NORM, batch_norm, record_features

BN_MOMENTUM, BN_EPSILON = TORCH_BATCH_NORM
STAGES = (2, 2, 2, 2)  # BasicBlocks per stage: ResNet-18


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut when ``skip``, then ReLU."""

    features: int
    strides: int = 1
    skip: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype)
        norm = partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            dtype=self.dtype,
        )
        s = (self.strides, self.strides)
        y = nn.relu(norm()(conv(self.features, (3, 3), s, padding=1)(x)))
        y = norm()(conv(self.features, (3, 3), padding=1)(y))
        if not self.skip:
            return nn.relu(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = norm()(conv(self.features, (1, 1), s)(x))
        return nn.relu(y + x)


class ResNet18(nn.Module):
    """CIFAR ResNet-18; ``skip=False`` removes every shortcut (the no-skip variant)."""

    num_classes: int = 10
    width: int = 64
    skip: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        x = x.astype(self.dtype)
        x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
        x = batch_norm(train, self.dtype, TORCH_BATCH_NORM)(x)
        x = nn.relu(x)
        for stage, blocks in enumerate(STAGES):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(self.width * 2**stage, strides, self.skip, self.dtype)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        record_features(self, x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)
