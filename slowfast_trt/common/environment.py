"""What every result file records about where it was measured: device, CPU/GPU model, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import torch

from slowfast_trt.common.device import cpuinfo


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (falls back to platform.processor())."""
    return cpuinfo("model name") or platform.processor() or platform.machine()


def versions(
    packages: tuple[str, ...] = ("torch", "numpy", "nvidia-dali-cuda120", "onnx", "onnxruntime", "tensorrt", "av"),
) -> dict[str, str | None]:
    """Installed versions of the libraries that shape the numbers (None where absent)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict:
    """Device description for result files: `device` is the GPU name when CUDA is used, else the CPU model."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "device": gpu or f"cpu: {cpu_model()}",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
    }
