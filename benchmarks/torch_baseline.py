"""PyTorch baseline: the study's CNN trained one model at a time, the usual way, to set JAX's grid against.

Keras-like layers (conv -> ELU -> BatchNorm, momentum 0.01 in torch terms, eps 1e-3), channels-last,
bfloat16 autocast on CUDA (float32 on CPU), RMSprop(lr=1e-3, alpha=0.9, eps=1e-7), batch 64, with
synthetic CIFAR-shaped uint8 data kept on the device and normalised there. Optional: ``--compile`` also
times a ``torch.compile`` model. PyTorch is an optional dependency (``pip install 'labelsim[bench]'``).

    PYTHONPATH=. python benchmarks/torch_baseline.py --steps 200 --warmup 20 [--compile]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# JAX is only imported to describe the machine when saving; keep it from grabbing GPU memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as missing:
    raise SystemExit("torch_baseline needs PyTorch: pip install 'labelsim[bench]'") from missing

from benchmarks.common import print_table, save_json  # noqa: E402
from benchmarks.flops import training_flops_per_image  # noqa: E402

EXPECTED_TRAINABLE = 308_394
EXPECTED_PARAMETERS = 309_290  # trainable + BatchNorm running means and variances
BN_MOMENTUM = 0.01  # Keras momentum 0.99: torch weights the new batch statistic instead
BN_EPSILON = 1e-3
DROPOUT_RATES = (0.2, 0.3, 0.4)
IMAGE_SIZE = 32
# CIFAR-10 per-channel mean and standard deviation of pixel values in [0, 1].
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class ConvELUBN(nn.Sequential):
    """3x3 'same' convolution, then ELU, then BatchNorm (the Keras layer order of the study)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ELU(),
            nn.BatchNorm2d(out_channels, eps=BN_EPSILON, momentum=BN_MOMENTUM),
        )


class SmallCNN(nn.Module):
    """Three [conv-ELU-BN x2, maxpool, dropout] blocks of widths w, 2w, 4w, then dense(classes)."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for block, rate in enumerate(DROPOUT_RATES):
            features = width * 2**block
            layers += [ConvELUBN(channels, features), ConvELUBN(features, features)]
            layers += [nn.MaxPool2d(2), nn.Dropout(rate)]
            channels = features
        side = IMAGE_SIZE // 2 ** len(DROPOUT_RATES)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(side * side * channels, num_classes)
        init_like_flax(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for an NCHW (channels-last in memory) batch."""
        x = self.features(x)
        # Flatten in NHWC order like the flax model; a free view for channels-last tensors.
        return self.classifier(x.permute(0, 2, 3, 1).flatten(1))


def init_like_flax(model: nn.Module) -> None:
    """Initialise conv and dense layers as labelsim's flax small_cnn does: Glorot-uniform weights
    (the study's Keras default), zero biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters and BatchNorm running statistics (num_batches_tracked left out)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    statistics = sum(
        buffer.numel()
        for name, buffer in model.named_buffers()
        if not name.endswith("num_batches_tracked")
    )
    return {"trainable": trainable, "batchnorm_statistics": statistics, "total": trainable + statistics}


def check_parameter_count(model: nn.Module) -> dict[str, int]:
    """Assert the model has the study CNN's 309,290 parameters (308,394 trainable)."""
    counts = parameter_counts(model)
    assert counts["trainable"] == EXPECTED_TRAINABLE, counts
    assert counts["total"] == EXPECTED_PARAMETERS, counts
    return counts


@dataclass
class DeviceData:
    """Synthetic CIFAR-shaped training set resident on the device."""

    images: torch.Tensor  # uint8, N x 32 x 32 x 3
    labels: torch.Tensor  # int64, N
    shift: torch.Tensor  # float32, 1 x 3 x 1 x 1: 255 * mean
    scale: torch.Tensor  # float32, 1 x 3 x 1 x 1: 1 / (255 * std)


def synthetic_data(num_images: int, device: torch.device, seed: int = 0) -> DeviceData:
    """Random uint8 images and labels generated directly on the device."""
    generator = torch.Generator(device=device).manual_seed(seed)
    shape = (num_images, IMAGE_SIZE, IMAGE_SIZE, 3)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=generator)
    labels = torch.randint(0, 10, (num_images,), device=device, generator=generator)
    mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)
    return DeviceData(images, labels, 255 * mean, 1 / (255 * std))


def normalise(batch: torch.Tensor, data: DeviceData) -> torch.Tensor:
    """uint8 NHWC batch -> normalised float32 NCHW tensor in channels-last memory format."""
    x = batch.permute(0, 3, 1, 2).float()  # keeps NHWC strides, i.e. channels-last
    x = x.sub_(data.shift).mul_(data.scale)
    return x.contiguous(memory_format=torch.channels_last)


def make_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, data: DeviceData, batch_size: int
) -> Callable[[], torch.Tensor]:
    """One training step on a random batch; returns the loss without syncing the device."""
    device = data.images.device
    use_bf16 = device.type == "cuda"

    def step() -> torch.Tensor:
        index = torch.randint(0, data.images.shape[0], (batch_size,), device=device)
        x, y = normalise(data.images[index], data), data.labels[index]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    step: Callable[[], torch.Tensor], steps: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Run warm-up steps, then time `steps` steps between device synchronisations."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    synchronize(device)
    return {"seconds": time.perf_counter() - start, "warmup_s": warmup_seconds, "final_loss": float(loss)}


def build(device: torch.device, compile_model: bool, seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh channels-last model (optionally torch.compile'd) and its RMSprop optimizer."""
    torch.manual_seed(seed)
    model = SmallCNN().to(device, memory_format=torch.channels_last)
    check_parameter_count(model)
    model.train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    return (torch.compile(model) if compile_model else model), optimizer


def benchmark(args: argparse.Namespace, data: DeviceData, compile_model: bool) -> dict[str, Any]:
    """Train one model for warm-up plus timed steps and summarise throughput."""
    device = data.images.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, optimizer = build(device, compile_model, args.seed)
    timing = time_steps(make_step(model, optimizer, data, args.batch_size), args.steps, args.warmup, device)
    images_per_second = args.steps * args.batch_size / timing["seconds"]
    row: dict[str, Any] = {
        "mode": "compile" if compile_model else "eager",
        "images_per_second": images_per_second,
        "step_ms": 1000 * timing["seconds"] / args.steps,
        "achieved_tflops": images_per_second * training_flops_per_image() / 1e12,
        "final_loss": timing["final_loss"],
        "warmup_s": timing["warmup_s"],
    }
    if device.type == "cuda":
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def try_benchmark(args: argparse.Namespace, data: DeviceData, compile_model: bool) -> dict[str, Any]:
    """benchmark(), but a torch.compile failure becomes an error row instead of ending the run."""
    if not compile_model:
        return benchmark(args, data, compile_model)
    try:
        return benchmark(args, data, compile_model)
    except Exception as error:  # noqa: BLE001 - compile backends fail in many ways
        return {"mode": "compile", "error": f"{type(error).__name__}: {error}"[:2000]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed warm-up steps (default 20)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile model")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    parser.add_argument("--num-images", type=int, default=50_000, help="synthetic training set size")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, init and batches")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write results JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be positive, --warmup non-negative")
    return args


def main(argv: list[str] | None = None) -> None:
    """Time eager (and optionally compiled) training, print a table and save JSON."""
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = synthetic_data(args.num_images, device, args.seed)
    modes = [False, True] if args.compile else [False]
    rows = [try_benchmark(args, data, compile_model) for compile_model in modes]
    columns = ["mode", "images_per_second", "step_ms", "achieved_tflops", "final_loss", "warmup_s"]
    if device.type == "cuda":
        columns.append("peak_memory_mb")
    print(f"torch {torch.__version__} on {device}, batch {args.batch_size}, {args.steps} timed steps")
    print_table([row for row in rows if "error" not in row], columns)
    for row in rows:
        if "error" in row:
            print(f"{row['mode']} failed: {row['error']}")
    if args.no_save:
        return
    payload = {
        "benchmark": "torch_baseline",
        "torch_device": str(device),
        "autocast": "bfloat16" if device.type == "cuda" else None,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "num_images": args.num_images,
        "parameters": parameter_counts(SmallCNN()),
        "training_flops_per_image": training_flops_per_image(),
        "results": rows,
    }
    print(f"saved {save_json('torch_baseline', payload)}")


if __name__ == "__main__":
    main()
