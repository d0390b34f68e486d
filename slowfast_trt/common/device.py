"""Device selection shared by every entry point: "auto" picks CUDA when present."""

from __future__ import annotations

import torch

from slowfast_trt.common.errors import SlowFastError

DEVICES = ("auto", "cpu", "cuda")


def cpuinfo(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo ("model name", "flags"); None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto" | "cpu" | "cuda[:N]" into a torch.device, failing clearly when CUDA is asked for but absent."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SlowFastError(f"device {device!r} asked for, but no CUDA GPU is visible to torch; use --device cpu or auto")
        return torch.device(name)
    raise SlowFastError(f"unknown device {device!r}; use one of auto, cpu, cuda, cuda:N")
