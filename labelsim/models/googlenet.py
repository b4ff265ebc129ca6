"""GoogLeNet for CIFAR (Szegedy et al. 2015, in its common 32x32 adaptation).

A 3x3 stem convolution (192 filters) replaces the ImageNet stem; then Inception blocks
a3, b3, max-pool, a4..e4, max-pool, a5, b5, global average pooling (1024 features) and a
dense classifier. Each Inception block concatenates four branches: 1x1; 1x1 -> 3x3;
1x1 -> 3x3 -> 3x3 (two 3x3 convolutions in place of the paper's 5x5, as in the common CIFAR
version); 3x3 max-pool (stride 1) -> 1x1. Every convolution is followed by BatchNorm and
ReLU. There is no dropout and no auxiliary classifier.

Convolutions keep their bias, as in the PyTorch version the reference study compared
(88.6% on CIFAR-10 after 25 epochs), so the parameter count matches it: with 10 classes and
width 64, 6,166,250 trainable parameters and 15,808 BatchNorm statistics (6,182,058 in all).
``width`` scales every channel count by width / 64; 64 is the standard network. Not
practical on CPU beyond smoke tests; use a GPU.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from labelsim.models.layers import TORCH_BATCH_NORM, batch_norm, record_features

STEM = 192
# Channels per block at width 64: (1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3,
# pool projection); the block's output is the sum of the 1st, 3rd, 5th and 6th.
BLOCKS: dict[str, tuple[int, int, int, int, int, int]] = {
    "a3": (64, 96, 128, 16, 32, 32),
    "b3": (128, 128, 192, 32, 96, 64),
    "a4": (192, 96, 208, 16, 48, 64),
    "b4": (160, 112, 224, 24, 64, 64),
    "c4": (128, 128, 256, 24, 64, 64),
    "d4": (112, 144, 288, 32, 64, 64),
    "e4": (256, 160, 320, 32, 128, 128),
    "a5": (256, 160, 320, 32, 128, 128),
    "b5": (384, 192, 384, 48, 128, 128),
}
POOL_AFTER = ("b3", "e4")  # 3x3 stride-2 max-pools: 32 -> 16 -> 8 pixels


class ConvBN(nn.Module):
    """Convolution (with bias), BatchNorm, ReLU."""

    features: int
    kernel: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        k = (self.kernel, self.kernel)
        x = nn.Conv(self.features, k, padding="SAME", dtype=self.dtype)(x)
        x = batch_norm(train, self.dtype, TORCH_BATCH_NORM)(x)
        return nn.relu(x)


class Inception(nn.Module):
    """Four parallel branches, concatenated along channels."""

    channels: tuple[int, int, int, int, int, int]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        c1, c3r, c3, c5r, c5, cp = self.channels
        conv = partial(ConvBN, dtype=self.dtype)
        b1 = conv(c1, 1)(x, train)
        b2 = conv(c3, 3)(conv(c3r, 1)(x, train), train)
        b3 = conv(c5, 3)(conv(c5, 3)(conv(c5r, 1)(x, train), train), train)
        pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding="SAME")
        b4 = conv(cp, 1)(pooled, train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


def scale_channels(channels: tuple[int, ...], width: int) -> tuple[int, ...]:
    """Channel counts scaled by width / 64 (at least 1 each)."""
    return tuple(max(1, c * width // 64) for c in channels)


class GoogLeNet(nn.Module):
    """CIFAR GoogLeNet: stem, Inception a3..b5 with two max-pools, average pool, dense."""

    num_classes: int = 10
    width: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        x = x.astype(self.dtype)
        (stem,) = scale_channels((STEM,), self.width)
        x = ConvBN(stem, 3, self.dtype)(x, train)
        for name, channels in BLOCKS.items():
            x = Inception(scale_channels(channels, self.width), self.dtype, name=name)(x, train)
            if name in POOL_AFTER:
                x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        x = jnp.mean(x, axis=(1, 2))
        record_features(self, x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)
