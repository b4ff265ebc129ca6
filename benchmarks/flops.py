"""FLOP count of the study's small CNN, cross-checked against XLA, and a measured bf16 matmul peak for MFU.

Convention: a multiply-add is 2 FLOPs; only the 6 convolutions and the final dense layer are counted,
each with its bias add (1 FLOP per output). ELU, BatchNorm, max-pooling and dropout are left out: they
are a few FLOPs per activation (about 115k activations per image, so roughly 1% of the total).

By default every 3x3 tap is counted, the zero-padded border included (2*H*W*Cin*Cout*9 per conv),
which is what the hardware computes and the usual basis for MFU: 77.42 MFLOP forward per 32x32 image.
XLA's cost analysis counts only the taps that land inside the image; ``exclude_padding=True``
reproduces that figure exactly (69.74 MFLOP), 10% lower because the feature maps are small (8x8 at the
end, where a quarter of the taps fall on padding).

Run ``PYTHONPATH=. python benchmarks/flops.py [--peak]`` to print the per-layer table and the XLA check.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, save_json  # noqa: E402

# Backward costs about twice the forward (gradients with respect to activations and to weights).
TRAINING_TO_FORWARD = 3
NUM_BLOCKS = 3
CONVS_PER_BLOCK = 2
KERNEL = 3


@dataclass(frozen=True)
class Layer:
    """One convolution (stride 1, SAME padding) or dense layer, with its output map size."""

    name: str
    height: int
    width: int
    in_features: int
    out_features: int
    kernel: int = 1

    @property
    def outputs(self) -> int:
        """Number of output values per image."""
        return self.height * self.width * self.out_features


def small_cnn_layers(width: int = 32, size: int = 32, num_classes: int = 10) -> list[Layer]:
    """The study CNN's conv and dense layers for a size x size RGB input."""
    if size % 2**NUM_BLOCKS:
        raise ValueError(f"image size {size} must be divisible by {2**NUM_BLOCKS}")
    layers, side, channels = [], size, 3
    for block in range(NUM_BLOCKS):
        features = width * 2**block
        for conv in range(CONVS_PER_BLOCK):
            name = f"conv{block + 1}_{conv + 1}"
            layers.append(Layer(name, side, side, channels, features, KERNEL))
            channels = features
        side //= 2
    layers.append(Layer("dense", 1, 1, side * side * channels, num_classes))
    return layers


def _valid_taps(side: int, kernel: int) -> int:
    """Kernel taps summed over one axis of a SAME, stride-1 conv that fall inside the image."""
    reach = (kernel - 1) // 2
    return sum(min(i, reach) + min(side - 1 - i, reach) + 1 for i in range(side))


def layer_macs(layer: Layer, exclude_padding: bool = False) -> int:
    """Multiply-adds of one layer per image, optionally skipping taps on the zero padding."""
    if exclude_padding:
        taps = _valid_taps(layer.height, layer.kernel) * _valid_taps(layer.width, layer.kernel)
    else:
        taps = layer.height * layer.width * layer.kernel**2
    return taps * layer.in_features * layer.out_features


def layer_flops(layer: Layer, exclude_padding: bool = False, include_bias: bool = True) -> int:
    """FLOPs of one layer per image: 2 per multiply-add, plus 1 per output for the bias."""
    return 2 * layer_macs(layer, exclude_padding) + (layer.outputs if include_bias else 0)


def small_cnn_forward_flops(
    width: int = 32,
    size: int = 32,
    num_classes: int = 10,
    *,
    exclude_padding: bool = False,
    include_bias: bool = True,
) -> int:
    """Forward FLOPs per image of the conv and dense layers (77,422,602 for the default config)."""
    layers = small_cnn_layers(width, size, num_classes)
    return sum(layer_flops(layer, exclude_padding, include_bias) for layer in layers)


def training_flops_per_image(width: int = 32, size: int = 32, num_classes: int = 10) -> int:
    """Training FLOPs per image: forward plus backward, taken as 3x the forward."""
    return TRAINING_TO_FORWARD * small_cnn_forward_flops(width, size, num_classes)


def activation_count(width: int = 32, size: int = 32) -> int:
    """Conv outputs per image: each one passes through ELU and BatchNorm (114,688 by default)."""
    return sum(layer.outputs for layer in small_cnn_layers(width, size)[:-1])


def mfu(images_per_second: float, peak_flops: float, flops_per_image: float | None = None) -> float:
    """Model FLOP utilisation: achieved training FLOP/s over peak (default: training_flops_per_image())."""
    per_image = training_flops_per_image() if flops_per_image is None else flops_per_image
    return images_per_second * per_image / peak_flops


def _xla_flops(function: Any, *args: Any, compiled: bool) -> float:
    """FLOPs that XLA's cost analysis reports for function(*args), after or before compilation."""
    import jax

    lowered = jax.jit(function).lower(*args)
    analysis = lowered.compile().cost_analysis() if compiled else lowered.cost_analysis()
    if isinstance(analysis, list):  # older jax returned one dict per device program
        analysis = analysis[0]
    return float(analysis["flops"])


def xla_forward_flops(
    batch_size: int = 1, width: int = 32, num_classes: int = 10, compiled: bool = True
) -> float:
    """Per-image FLOPs of the full flax forward pass (inference mode) by XLA's cost analysis."""
    import jax
    import jax.numpy as jnp

    from labelsim.models import get_model

    model = get_model("small_cnn", num_classes, width)
    images = jnp.zeros((batch_size, 32, 32, 3), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), images, train=False)
    total = _xla_flops(lambda v, x: model.apply(v, x, train=False), variables, images, compiled=compiled)
    return total / batch_size


def xla_conv_dense_flops(
    batch_size: int = 1, width: int = 32, size: int = 32, num_classes: int = 10, compiled: bool = True
) -> float:
    """Per-image FLOPs XLA reports for the model's bias-free convs and dense matmul, layer by layer."""
    import jax.numpy as jnp
    from jax import lax

    def conv(x: Any, kernel: Any) -> Any:
        layout = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=layout)

    total = 0.0
    for layer in small_cnn_layers(width, size, num_classes):
        if layer.name == "dense":
            x = jnp.zeros((batch_size, layer.in_features), jnp.float32)
            w = jnp.zeros((layer.in_features, layer.out_features), jnp.float32)
            total += _xla_flops(jnp.matmul, x, w, compiled=compiled)
        else:
            x = jnp.zeros((batch_size, layer.height, layer.width, layer.in_features), jnp.float32)
            k = jnp.zeros((layer.kernel, layer.kernel, layer.in_features, layer.out_features), jnp.float32)
            total += _xla_flops(conv, x, k, compiled=compiled)
    return total / batch_size


def _default_matmul_size() -> int:
    """8192 on accelerators, 1024 on CPU (where a large bf16 matmul takes seconds)."""
    import jax

    return 1024 if jax.devices()[0].platform == "cpu" else 8192


def peak_bf16_matmul_flops(size: int | None = None, repeats: int = 5, chain: int = 8) -> float:
    """Measured bf16 matmul FLOP/s: median over repeats of `chain` dependent size^3 matmuls in one jit."""
    import jax
    import jax.numpy as jnp

    n = size or _default_matmul_size()
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), jnp.bfloat16)
    # Scaled so the chained products stay O(1) in magnitude.
    b = (jax.random.normal(key_b, (n, n), jnp.float32) / n**0.5).astype(jnp.bfloat16)

    @jax.jit
    def run(x: jax.Array, w: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, chain, lambda _, y: y @ w, x)

    run(a, b).block_until_ready()  # compile and warm up
    run(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 * chain / statistics.median(times)


def flop_table(width: int = 32, size: int = 32, num_classes: int = 10) -> list[dict[str, Any]]:
    """One row per layer: analytic FLOPs with and without the padded taps."""
    rows = []
    for layer in small_cnn_layers(width, size, num_classes):
        rows.append(
            {
                "layer": layer.name,
                "output": f"{layer.height}x{layer.width}x{layer.out_features}",
                "flops": layer_flops(layer),
                "flops_no_padding": layer_flops(layer, exclude_padding=True),
            }
        )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32, help="base conv width (default 32)")
    parser.add_argument("--peak", action="store_true", help="also measure the bf16 matmul peak")
    parser.add_argument("--peak-size", type=int, default=None, help="matmul side for --peak")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write results JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Print the FLOP breakdown, XLA's figures and (optionally) the matmul peak; save JSON."""
    args = parse_args(argv)
    rows = flop_table(args.width)
    forward = small_cnn_forward_flops(args.width)
    summary = {
        "forward_flops": forward,
        "forward_flops_no_padding": small_cnn_forward_flops(args.width, exclude_padding=True),
        "training_flops_per_image": training_flops_per_image(args.width),
        "xla_conv_dense_flops": xla_conv_dense_flops(width=args.width),
        "xla_forward_flops": xla_forward_flops(width=args.width),
    }
    no_padding = summary["forward_flops_no_padding"]
    rows.append({"layer": "total", "flops": forward, "flops_no_padding": no_padding})
    print_table(rows, ["layer", "output", "flops", "flops_no_padding"])
    print()
    for key, value in summary.items():
        print(f"{key:>26}: {value:>14,.0f}")
    if args.peak:
        summary["peak_bf16_matmul_flops"] = peak_bf16_matmul_flops(args.peak_size)
        print(f"{'peak_bf16_matmul_flops':>26}: {summary['peak_bf16_matmul_flops']:>14.4g}")
    if not args.no_save:
        print(f"saved {save_json('flops', {'width': args.width, 'layers': rows, **summary})}")


if __name__ == "__main__":
    main()
