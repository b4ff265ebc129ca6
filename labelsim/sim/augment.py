"""On-device, key-driven augmentation: random rotation, shift and horizontal flip.

It mirrors the Keras ImageDataGenerator settings of the study's recipe (rotation_range=15,
width/height_shift_range=0.1, horizontal_flip=True, fill_mode="nearest") with bilinear
sampling, so it runs inside the jitted train step with no host round trip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labelsim.config import RecipeConfig


def _affine_one(image: jnp.ndarray, angle: jnp.ndarray, shift: jnp.ndarray, flip: jnp.ndarray) -> jnp.ndarray:
    """Rotate by ``angle`` (radians), shift by ``shift`` (pixels, (dy, dx)), maybe flip; one HWC image."""
    h, w = image.shape[0], image.shape[1]
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    cols = jnp.where(flip, (w - 1) - cols, cols)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    y, x = rows - cy - shift[0], cols - cx - shift[1]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_y = cos * y - sin * x + cy
    src_x = sin * y + cos * x + cx
    return _bilinear_nearest_fill(image, src_y, src_x)


def _bilinear_nearest_fill(image: jnp.ndarray, src_y: jnp.ndarray, src_x: jnp.ndarray) -> jnp.ndarray:
    """Bilinear sample at (src_y, src_x); points outside take the nearest edge pixel."""
    h, w = image.shape[0], image.shape[1]
    src_y = jnp.clip(src_y, 0.0, h - 1.0)
    src_x = jnp.clip(src_x, 0.0, w - 1.0)
    y0 = jnp.floor(src_y).astype(jnp.int32)
    x0 = jnp.floor(src_x).astype(jnp.int32)
    y1 = jnp.minimum(y0 + 1, h - 1)
    x1 = jnp.minimum(x0 + 1, w - 1)
    wy = (src_y - y0)[..., None]
    wx = (src_x - x0)[..., None]
    top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
    bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
    return top * (1 - wy) + bottom * wy


def augment_batch(images: jnp.ndarray, key: jax.Array, recipe: RecipeConfig) -> jnp.ndarray:
    """Randomly rotate, shift and flip a float (B, H, W, C) batch; identity if augmentation is off."""
    if not recipe.augment:
        return images
    batch, h, w = images.shape[0], images.shape[1], images.shape[2]
    k_angle, k_shift, k_flip = jax.random.split(key, 3)
    max_angle = jnp.deg2rad(recipe.rotation_deg)
    angle = jax.random.uniform(k_angle, (batch,), minval=-max_angle, maxval=max_angle)
    limits = jnp.array([h, w], jnp.float32) * recipe.shift_frac
    shift = jax.random.uniform(k_shift, (batch, 2), minval=-limits, maxval=limits)
    flip = jax.random.bernoulli(k_flip, 0.5, (batch,)) & recipe.hflip
    return jax.vmap(_affine_one)(images, angle, shift, flip)
