"""The NVIDIA side of this machine as this process sees it: torch's GPUs, the driver's version and its CUDA version.

Read without starting anything: torch's device list, `nvidia-smi` (bounded by a timeout) or /proc for the driver
version, and `cuDriverGetVersion` from libcuda for the CUDA version the driver supports (what a CUDA 12 build of
DALI or torch needs to be at most).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

SMI_TIMEOUT_S = 10


@dataclass(frozen=True)
class NvidiaFacts:
    """GPUs visible to torch, the driver version, the CUDA version the driver supports, and what nvidia-smi said."""

    gpus: list[dict]  # index, name, compute_capability ("9.0"), memory_gib
    driver_version: str | None  # "550.54.14"
    driver_cuda: tuple[int, int] | None  # (12, 8)
    smi: str  # nvidia-smi's answer in words, or why it could not be asked

    @property
    def driver_cuda_text(self) -> str | None:
        return f"{self.driver_cuda[0]}.{self.driver_cuda[1]}" if self.driver_cuda else None

    @property
    def compute_capabilities(self) -> list[tuple[int, int]]:
        caps = [g["compute_capability"].partition(".") for g in self.gpus]  # "9.0" -> ("9", ".", "0")
        return [(int(major), int(minor)) for major, _, minor in caps]


def driver_cuda_version() -> tuple[int, int] | None:
    """The CUDA version the installed driver supports (cuDriverGetVersion, no CUDA context), or None without a driver."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    v = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(v)) != 0 or v.value <= 0:
        return None
    return v.value // 1000, (v.value % 1000) // 10


def _smi_driver() -> tuple[str | None, str]:
    """(driver version, what nvidia-smi said) from `nvidia-smi --query-gpu`."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None, "nvidia-smi not found"
    try:
        r = subprocess.run(
            [exe, "--query-gpu=index,name,driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=SMI_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return None, f"nvidia-smi gave no answer within {SMI_TIMEOUT_S} s"
    except OSError as e:
        return None, f"nvidia-smi cannot run: {e.strerror or e}"
    if r.returncode:
        said = (r.stdout + r.stderr).strip().splitlines()
        return None, f"nvidia-smi failed: {said[0][:200] if said else f'exit {r.returncode}'}"
    rows = [line.split(", ") for line in r.stdout.strip().splitlines() if line.count(", ") >= 2]
    return (rows[0][-1].strip() if rows else None), f"nvidia-smi lists {len(rows)} GPU(s)"


def _proc_driver() -> str | None:
    """The kernel module's version from /proc/driver/nvidia/version ("NVRM version: ... Kernel Module  550.54.14 ...")."""
    try:
        words = Path("/proc/driver/nvidia/version").read_text(encoding="utf-8").split()
    except OSError:
        return None
    return next((w for w in words if "." in w and w.replace(".", "").isdigit()), None)


def read_nvidia() -> NvidiaFacts:
    """Everything in `NvidiaFacts`, read once."""
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(
                {"index": i, "name": p.name, "compute_capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1)}
            )
    driver, smi = _smi_driver()
    return NvidiaFacts(gpus, driver or _proc_driver(), driver_cuda_version(), smi)
