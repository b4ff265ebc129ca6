"""Helpers shared by the benchmark scripts: device and version facts, JSON results, text tables.

JAX and PyTorch are imported lazily and their absence (or a failing backend) is tolerated, so a
PyTorch-only benchmark never pays for JAX until it saves, and the reverse.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Distributions whose versions every result records; torch and the jax CUDA plugins only when installed.
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "jax-cuda12-plugin", "jax-cuda13-plugin")


def _jax_devices() -> dict[str, Any]:
    """Platform, device kind and count of JAX's default backend, or the error that stopped it."""
    try:
        import jax

        devices = jax.devices()
    except Exception as error:  # noqa: BLE001 - any backend failure is recorded, not raised
        return {"jax_error": f"{type(error).__name__}: {error}"}
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
    }


def _torch_cuda() -> dict[str, Any]:
    """Name and count of PyTorch's CUDA devices; empty when torch or CUDA is absent."""
    try:
        import torch
    except ImportError:
        return {}
    try:
        if not torch.cuda.is_available():
            return {}
        return {
            "torch_cuda_device": torch.cuda.get_device_name(0),
            "torch_cuda_device_count": torch.cuda.device_count(),
        }
    except Exception as error:  # noqa: BLE001
        return {"torch_error": f"{type(error).__name__}: {error}"}


def device_info() -> dict[str, Any]:
    """Describe the accelerator: JAX platform, device kind and count, plus torch's CUDA device if any."""
    return {**_jax_devices(), **_torch_cuda()}


def versions() -> dict[str, str]:
    """Versions of Python and of the installed numerical packages (torch only when installed)."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string, to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _to_json(value: Any) -> Any:
    """Make numpy scalars and arrays, paths and other odd values JSON-serialisable."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def save_json(name: str, payload: dict[str, Any]) -> Path:
    """Write payload plus device, versions and date to benchmarks/results/{name}.json; payload keys win."""
    record = {"device": device_info(), "versions": versions(), "date": utc_now(), **payload}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=_to_json) + "\n")
    return path


def format_cell(value: Any) -> str:
    """Render one table cell: thousands separators for big numbers, 4 significant digits otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print rows as an aligned text table: numbers right-aligned, text left-aligned."""
    cells = [[format_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)]
    numeric = [
        all(isinstance(row.get(column), (int, float)) or row.get(column) is None for row in rows)
        for column in columns
    ]

    def render(values: list[str]) -> str:
        parts = [
            value.rjust(width) if is_number else value.ljust(width)
            for value, width, is_number in zip(values, widths, numeric)
        ]
        return "  ".join(parts).rstrip()

    print(render(columns))
    print(render(["-" * width for width in widths]))
    for line in cells:
        print(render(line))
