"""Device selection shared by every entry point: "auto" picks CUDA when present."""

from __future__ import annotations

import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.threads import ThreadSplit, set_openmp_env, split

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


def use_threads(budget: int | None = None, *, model_on_cpu: bool = True) -> ThreadSplit:
    """Split `budget` CPU threads (common.threads.split) and apply torch's share now; one call at a command's start.

    The caller passes `.dali` to its loaders and `.engine` to ONNX Runtime, and records `.as_dict()`."""
    return apply_threads(split(budget, model_on_cpu=model_on_cpu))


def apply_threads(s: ThreadSplit) -> ThreadSplit:
    """Size torch's intra-op and inter-op pools (and child processes' OpenMP) to `s`'s share; returns `s`."""
    set_openmp_env(s.torch_intra)  # for child processes; this process's pools are sized below
    torch.set_num_threads(s.torch_intra)
    try:
        torch.set_num_interop_threads(s.torch_interop)
    except RuntimeError:  # inter-op work already ran in this process (or it was set before): the pool keeps its size
        pass
    return s
