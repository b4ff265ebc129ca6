"""Print the README's benchmark tables from the saved JSON in benchmarks/results/.

    python benchmarks/summary.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_REPLICA_IMAGES = 125 * (35 * 50_000 + 5 * (5_000 + 10_000 + 20_000 + 30_000 + 40_000))


def load(name: str) -> dict[str, Any] | None:
    """A saved result, or None."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def device_name(result: dict[str, Any]) -> str:
    """The device a result was measured on, in words."""
    device = result.get("device", {})
    return device.get("device_kind") or device.get("platform", "?")


def gpu_section() -> list[str]:
    """Batched JAX vs one PyTorch model at a time, MFU, and the paper-preset projection."""
    jax_run, torch_run, flops = load("throughput_gpu"), load("torch_baseline"), load("flops")
    if not (jax_run and torch_run and flops):
        return ["(no GPU results saved)"]
    torch_rate = max(r["images_per_second"] for r in torch_run["results"])
    peak, per_image = flops["peak_bf16_matmul_flops"], flops["training_flops_per_image"]
    lines = [
        f"GPU: {device_name(jax_run)}, {jax_run['date'][:10]}; the study's CNN, batch 64 per replica, "
        f"bf16 compute; PyTorch {torch_run['versions'].get('torch', '?')} eager one model at a time "
        f"(channels-last, bf16 autocast): {torch_rate:,.0f} images/s; measured bf16 matmul peak "
        f"{peak / 1e12:,.0f} TFLOP/s; {per_image / 1e6:.1f} MFLOP per training image.",
        "",
        "| replicas | replica-images/s | vs PyTorch one model | MFU | compile s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in jax_run["rows"]:
        rate = row["batched_img_s"]
        lines.append(
            f"| {row['replicas']} | {rate:,.0f} | {rate / torch_rate:.1f}x | {rate * per_image / peak:.1%} "
            f"| {row['batched_compile_s']:.0f} |"
        )
    best = max(row["batched_img_s"] for row in jax_run["rows"])
    lines += ["", f"Projection for `--preset paper` (60 unique replicas, {PAPER_REPLICA_IMAGES / 1e6:.0f}M "
              f"replica-images): {PAPER_REPLICA_IMAGES / best / 60:.0f} minutes at {best:,.0f} replica-images/s."]
    return lines


def conv_section() -> list[str]:
    """The two small_cnn convolution implementations, batched on the GPU."""
    result, torch_run = load("throughput_gpu_conv"), load("torch_baseline")
    if not result:
        return ["(no convolution comparison saved)"]
    torch_rate = max(r["images_per_second"] for r in torch_run["results"]) if torch_run else float("nan")
    lines = [
        f"Convolution implementations ({device_name(result)}, {result['date'][:10]}; `--conv`):",
        "",
        "| conv | replicas | replica-images/s | vs PyTorch one model |",
        "|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['conv']} | {row['replicas']} | {row['batched_img_s']:,.0f} | {row['batched_img_s'] / torch_rate:.1f}x |"
        )
    return lines


def cpu_section() -> list[str]:
    """Batched vs sequential on this machine's CPUs."""
    result = load("throughput_cpu")
    if not result:
        return ["(no CPU results saved)"]
    lines = [
        f"CPU: {result['device'].get('device_kind', 'cpu')}, {result['date'][:10]}; 32x32 images, the study's CNN, batch 64.",
        "",
        "| strategy | loop group | replicas | batched img/s | sequential img/s | batched / sequential |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        group = row.get("loop_group") or "-"
        lines.append(
            f"| {row['strategy']} | {group} | {row['replicas']} | {row['batched_img_s']:,.0f} | "
            f"{row.get('sequential_img_s', float('nan')):,.0f} | {row.get('speedup', float('nan')):.2f} |"
        )
    return lines


def main() -> None:
    """Print every section."""
    for section in (gpu_section(), conv_section(), cpu_section()):
        print("\n".join(section))
        print()


if __name__ == "__main__":
    main()
