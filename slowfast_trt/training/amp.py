"""Mixed-precision policy: float16 + GradScaler on CUDA (bfloat16 selectable); on the CPU, measure first.

CPU autocast in bfloat16 was ~50x slower than float32 on this project's 2-core AVX2 machines (no native
bf16), so the CPU default is decided by timing one training step of the actual model both ways; the
result is cached per CPU model, torch version, thread count, preset and input shape, so it runs once per workload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from slowfast_trt.common.environment import cpu_model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.measurements import cache_path, cached

CHOICES = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class AmpPolicy:
    """What autocast does during training: `dtype` None means plain float32."""

    device_type: str
    dtype: torch.dtype | None
    use_scaler: bool
    reason: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)


def measure_cpu_bf16(net: torch.nn.Module, inputs: dict[str, torch.Tensor], repeats: int = 2) -> dict[str, float]:
    """Seconds per forward+backward step of `net` on `inputs` in float32 and under bfloat16 autocast (best of `repeats`)."""
    times = {}
    for name, enabled in (("fp32", False), ("bf16", True)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                loss = net(**inputs).float().square().mean()
            loss.backward()
            best = min(best, time.perf_counter() - start)
        net.zero_grad(set_to_none=True)
        times[name] = best
    return times


def _workload(net: torch.nn.Module | None, inputs: dict[str, torch.Tensor] | None) -> str:
    """What the measurement timed: the preset and input shapes (a test's tiny model must not decide for the demo's)."""
    preset = getattr(getattr(net, "config", None), "name", None) or type(net).__name__
    shapes = ",".join(f"{k}{list(v.shape)}" for k, v in sorted((inputs or {}).items()))
    return f"{preset} {shapes}"


def choose_policy(
    choice: str, device: torch.device, net: torch.nn.Module | None = None, inputs: dict[str, torch.Tensor] | None = None
) -> AmpPolicy:
    """Resolve `--amp auto|fp32|fp16|bf16` for `device`; on the CPU `auto` uses (and caches) a measurement."""
    if choice not in CHOICES:
        raise SlowFastError(f"--amp must be one of {CHOICES}, got {choice!r}")
    if device.type == "cuda":
        if choice in ("auto", "fp16"):
            return AmpPolicy("cuda", torch.float16, True, "CUDA: float16 autocast with a gradient scaler")
        if choice == "bf16":
            return AmpPolicy("cuda", torch.bfloat16, False, "CUDA: bfloat16 autocast (no scaler needed)")
        return AmpPolicy("cuda", None, False, "CUDA: float32 as asked")
    if choice == "fp16":
        raise SlowFastError("float16 autocast is not supported for CPU training; use --amp auto, fp32 or bf16")
    if choice == "fp32":
        return AmpPolicy("cpu", None, False, "CPU: float32 as asked")
    if choice == "bf16":
        return AmpPolicy("cpu", torch.bfloat16, False, "CPU: bfloat16 autocast as asked")
    key = f"{cpu_model()}|torch {torch.__version__}|threads {torch.get_num_threads()}|{_workload(net, inputs)}"
    if net is None or inputs is None:
        return AmpPolicy("cpu", None, False, "CPU: float32 (no measurement available)")
    t, _ = cached(cache_path("cpu_amp"), key, lambda: measure_cpu_bf16(net, inputs), lambda d: {"fp32", "bf16"} <= set(d))
    if t["bf16"] < 0.9 * t["fp32"]:  # a clear win only: bf16 also costs accuracy headroom
        return AmpPolicy("cpu", torch.bfloat16, False, f"CPU: bfloat16 measured faster ({t['bf16']:.3f}s vs {t['fp32']:.3f}s per step)")
    return AmpPolicy(
        "cpu",
        None,
        False,
        f"CPU: float32, bfloat16 measured {t['bf16'] / max(t['fp32'], 1e-9):.2f}x the time ({t['bf16']:.3f}s vs {t['fp32']:.3f}s per step)",
    )
