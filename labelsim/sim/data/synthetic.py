"""Embedded synthetic images: per-class templates with shifts, flips, clutter and noise.

``make_synthetic_subclasses`` gives each class built-in sub-classes of different difficulty, with
every record's sub-class id, to check per-cluster analyses against a known truth.

Needs nothing beyond numpy; the same arguments give bit-identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelsim.sim.data.cifar10 import CIFAR10_CLASSES
from labelsim.sim.data.dataset import DataError, Dataset

_WORLD_SEED = 8_451_207  # fixes the class templates; the ``seed`` argument draws the images
_TEMPLATE_WAVES = 4  # sinusoids per class template
_BLOCK = 10  # class templates drawn per block of the world seed
_CLUTTER_WAVES = 3  # random sinusoids per image, independent of the class
_MAX_SHIFT = 0.08  # max template shift, fraction of the side
_CHUNK = 1024  # images rendered at once (bounds memory for large requests)

# (class, other class, weight): the class's appearance borrows ``weight`` of the other's
# template. Asymmetric on purpose: cat leans on dog more than dog on cat, and on frog while
# frog leans on nothing.
_BORROWS: tuple[tuple[int, int, float], ...] = (
    (0, 8, 0.20),  # airplane ~ ship
    (8, 0, 0.10),  # ship ~ airplane, less
    (1, 9, 0.25),  # automobile ~ truck
    (9, 1, 0.20),  # truck ~ automobile
    (2, 0, 0.15),  # bird ~ airplane
    (2, 4, 0.15),  # bird ~ deer
    (3, 5, 0.40),  # cat ~ dog, strongly
    (3, 6, 0.25),  # cat ~ frog
    (5, 3, 0.30),  # dog ~ cat
    (4, 7, 0.25),  # deer ~ horse
    (7, 4, 0.15),  # horse ~ deer
)
# Per-class clutter amplitude (0-1 intensity scale): the larger, the harder the class.
_CLUTTER = (0.34, 0.19, 0.58, 0.72, 0.43, 0.43, 0.31, 0.29, 0.19, 0.24)
_PIXEL_NOISE = 0.08  # i.i.d. Gaussian pixel noise, all classes
_BASE_SPREAD = 0.05  # class base colours lie in 0.5 +- this (per channel)
_WAVE_AMPLITUDE = (0.10, 0.20)  # range of a template wave's colour amplitude
_CONTRAST = (0.6, 1.4)  # per-image template contrast range
_BRIGHTNESS = 0.15  # per-image brightness offset range, +-
# Sub-classes (make_synthetic_subclasses): each class has 2-4; sub-class j of m borrows
# _SUB_BORROW * j / (m - 1) of another class's look and has clutter scaled by
# _SUB_CLUTTER[0] .. _SUB_CLUTTER[1] (easiest to hardest), plus its own signature waves.
_SUB_COUNTS = (2, 4)  # fewest and most sub-classes per class
_SUB_BORROW = 0.45
_SUB_CLUTTER = (0.7, 1.3)
_SUB_WAVES = 2  # signature sinusoids per sub-class
_SUB_AMPLITUDE = 0.14  # colour amplitude of a signature wave


@dataclass(frozen=True)
class _Templates:
    """Per-class template waves: base colour and sinusoid parameters, mixed per class."""

    base: np.ndarray  # (C, 3) mean colour
    freq: np.ndarray  # (C, K, 2) cycles per side along (x, y)
    phase: np.ndarray  # (C, K) radians
    colour: np.ndarray  # (C, K, 3) amplitude per channel
    clutter: np.ndarray  # (C,) clutter amplitude


def make_synthetic(
    num_train: int, num_test: int, size: int, seed: int, num_classes: int = 10
) -> Dataset:
    """Embedded synthetic images: class templates with shifts, flips, clutter and noise.

    The images are synthetic; the class names borrow CIFAR-10's so that reports read easily.
    Classes differ in difficulty (clutter level) and some pairs are deliberately confusable
    in an asymmetric way (cat borrows 40% of dog's look, dog 30% of cat's; cat also borrows
    from frog, frog from nobody). Classes are balanced and shuffled. The same arguments give
    bit-identical arrays; train and test images come from independent streams of ``seed``.
    """
    _check_synthetic_args(num_train, num_test, size, num_classes)
    templates = _class_templates(num_classes)
    x_train, y_train = _render_split(templates, num_train, size, np.random.default_rng([seed, 0]))
    x_test, y_test = _render_split(templates, num_test, size, np.random.default_rng([seed, 1]))
    return Dataset("synthetic", x_train, y_train, x_test, y_test, _class_names(num_classes))


@dataclass(frozen=True)
class SubclassData:
    """Synthetic images with built-in sub-classes: the dataset, every record's sub-class id, and
    each sub-class's class, the class it leans towards and how much (its difficulty)."""

    dataset: Dataset
    train_subclass: np.ndarray  # (n_train,) int32, 0..S-1
    test_subclass: np.ndarray  # (n_test,) int32
    class_of: np.ndarray  # (S,) int32
    confuser: np.ndarray  # (S,) int32: the other class a sub-class borrows from
    borrow: np.ndarray  # (S,) float: the share of the other class's look (0: none)
    clutter: np.ndarray  # (S,) float: clutter amplitude


def make_synthetic_subclasses(
    num_train: int, num_test: int, size: int, seed: int, num_classes: int = 10
) -> SubclassData:
    """Synthetic images whose classes hold 2-4 sub-classes each, of increasing difficulty: sub-class j
    of m borrows ``_SUB_BORROW * j / (m - 1)`` of another class's look and has more clutter, and each
    has its own signature waves. Classes are balanced, sub-classes within a class about equal; the
    sub-class structure is fixed by the world seed and the images by ``seed``."""
    _check_synthetic_args(num_train, num_test, size, num_classes)
    units = _subclass_templates(num_classes)
    t, class_of = units[0], units[1]
    splits = []
    for stream, n in ((0, num_train), (1, num_test)):
        rng = np.random.default_rng([seed, 2, stream])
        labels = _balanced_labels(n, num_classes, rng)
        sub = _subclass_ids(labels, class_of, rng)
        images = np.empty((n, size, size, 3), np.uint8)
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            images[start:stop] = _render(t, sub[start:stop], size, rng)
        splits.append((images, labels, sub))
    (x_train, y_train, s_train), (x_test, y_test, s_test) = splits
    dataset = Dataset("synthetic-sub", x_train, y_train, x_test, y_test, _class_names(num_classes))
    return SubclassData(dataset, s_train, s_test, *units[1:])


def _subclass_ids(labels: np.ndarray, class_of: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sub-class of its class for every record, counts within a class equal up to one."""
    sub = np.empty(len(labels), np.int32)
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        options = np.flatnonzero(class_of == k)
        sub[members] = options[rng.permutation(np.arange(len(members)) % len(options))]
    return sub


def _subclass_templates(num_classes: int) -> tuple[_Templates, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Templates of every sub-class (a class's mixed look leaning towards a confuser class, plus
    signature waves), and per sub-class: its class, confuser, borrowed share and clutter."""
    base, freq, phase, colour = _own_templates(num_classes)
    mix = _borrow_matrix(num_classes)
    world = np.random.default_rng([_WORLD_SEED, 99])
    counts = world.integers(_SUB_COUNTS[0], _SUB_COUNTS[1] + 1, num_classes)
    rows, class_of, confuser, borrow, clutter, signatures = [], [], [], [], [], []
    for k, m in enumerate(counts.tolist()):
        others = world.permutation(np.delete(np.arange(num_classes), k))
        for j in range(m):
            share = _SUB_BORROW * j / (m - 1)
            row = (1.0 - share) * mix[k]
            row[others[j % len(others)]] += share
            rows.append(row)
            class_of.append(k)
            confuser.append(int(others[j % len(others)]))
            borrow.append(share)
            scale = _SUB_CLUTTER[0] + (_SUB_CLUTTER[1] - _SUB_CLUTTER[0]) * j / (m - 1)
            clutter.append(_CLUTTER[k % len(_CLUTTER)] * scale)
            signatures.append(_signature_waves(world))
    rows_arr = np.array(rows)
    out_freq, out_phase, out_colour = _mixed_waves(rows_arr, freq, phase, colour, extra=_SUB_WAVES)
    for u, row in enumerate(rows_arr):
        n = np.count_nonzero(row > 0) * _TEMPLATE_WAVES
        sig_freq, sig_phase, sig_colour = signatures[u]
        out_freq[u, n:n + _SUB_WAVES] = sig_freq
        out_phase[u, n:n + _SUB_WAVES] = sig_phase
        out_colour[u, n:n + _SUB_WAVES] = sig_colour
    templates = _Templates(rows_arr @ base, out_freq, out_phase, out_colour, np.array(clutter))
    return (templates, np.array(class_of, np.int32), np.array(confuser, np.int32), np.array(borrow),
            np.array(clutter))


def _signature_waves(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sub-class's own sinusoids: frequencies, phases and colours."""
    cycles = rng.uniform(1.0, 3.0, _SUB_WAVES)
    angle = rng.uniform(0.0, 2 * np.pi, _SUB_WAVES)
    freq = cycles[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    colour = rng.normal(0.0, 1.0, (_SUB_WAVES, 3))
    colour *= _SUB_AMPLITUDE / np.linalg.norm(colour, axis=-1, keepdims=True)
    return freq, rng.uniform(0.0, 2 * np.pi, _SUB_WAVES), colour


def _check_synthetic_args(num_train: int, num_test: int, size: int, num_classes: int) -> None:
    if num_classes < 2:
        raise DataError(f"synthetic data needs at least 2 classes, got {num_classes}")
    if num_train < 1 or num_test < 1:
        raise DataError(
            f"synthetic data needs at least 1 train and 1 test image, got {num_train} and "
            f"{num_test}; raise synthetic_train / synthetic_test"
        )
    if size < 4:
        raise DataError(f"synthetic image side {size} is too small; use 4 pixels or more")


def _class_names(num_classes: int) -> tuple[str, ...]:
    extra = tuple(f"class{k}" for k in range(len(CIFAR10_CLASSES), num_classes))
    return (CIFAR10_CLASSES + extra)[:num_classes]


def _borrow_matrix(num_classes: int) -> np.ndarray:
    """Row-stochastic (C, C) matrix: row k weighs the own templates in class k's look."""
    mix = np.eye(num_classes)
    for target, source, weight in _BORROWS:
        if target < num_classes and source < num_classes:
            mix[target, source] += weight
            mix[target, target] -= weight
    return mix


def _own_templates(num_classes: int) -> tuple[np.ndarray, ...]:
    """Unmixed per-class base colours and waves, fixed by the world seed.

    Drawn in blocks of ten classes, so a smaller world is a prefix of a larger one.
    """
    blocks = [_template_block(b) for b in range(-(-num_classes // _BLOCK))]
    return tuple(np.concatenate(parts)[:num_classes] for parts in zip(*blocks, strict=True))


def _template_block(block: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(_WORLD_SEED if block == 0 else [_WORLD_SEED, block])
    shape = (_BLOCK, _TEMPLATE_WAVES)
    base = 0.5 + rng.uniform(-_BASE_SPREAD, _BASE_SPREAD, (_BLOCK, 3))
    cycles = rng.uniform(1.0, 3.0, shape)
    angle = rng.uniform(0.0, 2 * np.pi, shape)
    freq = cycles[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    phase = rng.uniform(0.0, 2 * np.pi, shape)
    colour = rng.normal(0.0, 1.0, (*shape, 3))
    amplitude = rng.uniform(*_WAVE_AMPLITUDE, (*shape, 1))
    colour *= amplitude / np.linalg.norm(colour, axis=-1, keepdims=True)
    return base, freq, phase, colour


def _class_templates(num_classes: int) -> _Templates:
    """Mixed templates: class k's waves are every class's waves weighted by the borrow row."""
    base, freq, phase, colour = _own_templates(num_classes)
    mix = _borrow_matrix(num_classes)
    out_freq, out_phase, out_colour = _mixed_waves(mix, freq, phase, colour)
    clutter = np.array([_CLUTTER[k % len(_CLUTTER)] for k in range(num_classes)])
    return _Templates(mix @ base, out_freq, out_phase, out_colour, clutter)


def _mixed_waves(
    mix: np.ndarray, freq: np.ndarray, phase: np.ndarray, colour: np.ndarray, extra: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(freq, phase, colour) of each row's waves: the waves of every template the row borrows from,
    coloured by its weight (equal wave energy per row), then ``extra`` empty slots for waves of its own."""
    sources = [np.flatnonzero(row > 0) for row in mix]
    width = max(len(s) for s in sources) * _TEMPLATE_WAVES + extra
    out_freq = np.zeros((len(mix), width, 2))
    out_phase = np.zeros((len(mix), width))
    out_colour = np.zeros((len(mix), width, 3))
    for k, src in enumerate(sources):
        n = len(src) * _TEMPLATE_WAVES
        out_freq[k, :n] = freq[src].reshape(-1, 2)
        out_phase[k, :n] = phase[src].reshape(-1)
        weight = mix[k, src] / np.linalg.norm(mix[k, src])
        out_colour[k, :n] = (weight[:, None, None] * colour[src]).reshape(-1, 3)
    return out_freq, out_phase, out_colour


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class counts equal (differing by at most one), in shuffled order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int32)


def _render_split(
    t: _Templates, n: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(n, len(t.base), rng)
    images = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        images[start:stop] = _render(t, labels[start:stop], size, rng)
    return images, labels


def _render(t: _Templates, labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Images of the given labels: shifted/flipped template + clutter + brightness + noise."""
    n = len(labels)
    grid = (np.arange(size) + 0.5) / size
    flip = rng.random(n) < 0.5
    shift = rng.uniform(-_MAX_SHIFT, _MAX_SHIFT, (n, 2))
    xs = np.where(flip[:, None], 1.0 - grid, grid) + shift[:, :1]  # (n, W)
    ys = grid + shift[:, 1:]  # (n, H)
    img = _waves(t.freq[labels], t.phase[labels], t.colour[labels], xs, ys)
    img += _clutter(t.clutter[labels], grid, rng)
    contrast = rng.uniform(*_CONTRAST, (n, 1, 1, 1))
    brightness = rng.uniform(-_BRIGHTNESS, _BRIGHTNESS, (n, 1, 1, 1))
    img = t.base[labels][:, None, None, :] + contrast * img + brightness
    img += rng.normal(0.0, _PIXEL_NOISE, img.shape)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _waves(
    freq: np.ndarray, phase: np.ndarray, colour: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """Sum of coloured sinusoids: (n, K) waves on per-image coordinates -> (n, H, W, 3).

    Separable: sin(a_y + b_x) = sin(a_y) cos(b_x) + cos(a_y) sin(b_x), so each image is one
    (H*3, 2K) x (2K, W) product instead of K full-size sine evaluations.
    """
    n, height, width = len(freq), ys.shape[1], xs.shape[1]
    a = 2 * np.pi * freq[..., 1, None] * ys[:, None, :] + phase[..., None]  # (n, K, H)
    b = 2 * np.pi * freq[..., 0, None] * xs[:, None, :]  # (n, K, W)
    rows = np.concatenate([np.sin(a), np.cos(a)], axis=1)  # (n, 2K, H)
    cols = np.concatenate([np.cos(b), np.sin(b)], axis=1)  # (n, 2K, W)
    weights = np.concatenate([colour, colour], axis=1)  # (n, 2K, 3)
    left = (rows[..., None] * weights[:, :, None, :]).reshape(n, -1, height * 3)
    out = np.matmul(left.transpose(0, 2, 1), cols)  # (n, H*3, W)
    return out.reshape(n, height, 3, width).transpose(0, 1, 3, 2)


def _clutter(amplitude: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random class-independent sinusoids, scaled per image by its class's clutter level."""
    n = len(amplitude)
    cycles = rng.uniform(0.5, 3.5, (n, _CLUTTER_WAVES))
    angle = rng.uniform(0.0, 2 * np.pi, (n, _CLUTTER_WAVES))
    freq = cycles[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    phase = rng.uniform(0.0, 2 * np.pi, (n, _CLUTTER_WAVES))
    colour = rng.normal(0.0, 1.0, (n, _CLUTTER_WAVES, 3)) / np.sqrt(3 * _CLUTTER_WAVES)
    colour *= amplitude[:, None, None]
    coords = np.broadcast_to(grid, (n, len(grid)))
    return _waves(freq, phase, colour, coords, coords)
