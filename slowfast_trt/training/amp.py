"""The run's precision policy, decided once by `choose_policy` for the CPU and the GPU: autocast dtype, loss scaling,
memory format and cuDNN autotuning, with the reason.

CPU autocast in bfloat16 was ~50x slower than float32 on this project's 2-core AVX2 machines (no native
bf16), so the CPU default is decided by timing one training step of the actual model both ways; the
result is cached per CPU model, torch version, thread count, preset and input shape, so it runs once per workload.
On a GPU the training step is timed under every candidate setting (`engines.gpu_policy`: precision for `auto`,
memory format, cuDNN autotuning) and the fastest kept, cached per machine; without a net to time, CUDA `auto`
is float16 with a gradient scaler.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from slowfast_trt.common.environment import cpu_model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.measurements import cache_path, cached
from slowfast_trt.common.precision import DTYPES, memory_format, name_of
from slowfast_trt.engines import gpu_policy

CHOICES = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class AmpPolicy:
    """How the run trains: autocast `dtype` (None: plain float32), loss scaling, memory format, cuDNN autotuning, and why.

    `gpu_decision` is the GPU measurement behind it (the chosen setting and every timed alternative), None on the CPU."""

    device_type: str
    dtype: torch.dtype | None
    use_scaler: bool
    reason: str
    channels_last: bool = True  # channels_last_3d: ~2x faster conv3d/BatchNorm training on the CPU here, the tensor-core layout on GPUs
    cudnn_benchmark: bool = False
    gpu_decision: dict | None = None

    @property
    def name(self) -> str:
        return name_of(self.dtype)

    @property
    def memory_format(self) -> torch.memory_format:
        return memory_format(self.channels_last)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def apply(self, net: torch.nn.Module) -> torch.nn.Module:
        """`net` in this policy's memory format; on CUDA, cuDNN autotuning set process-wide as the policy says."""
        if self.device_type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
        return net.to(memory_format=self.memory_format)


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


def _asked(choice: str, device_type: str) -> AmpPolicy:
    """The policy an explicit `--amp` (or CUDA `auto` with nothing to time) names, before any measurement."""
    if device_type == "cuda":
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
    return AmpPolicy("cpu", None, False, "CPU: float32 (no measurement available)")


def kept_precision(choice: str, device: torch.device, resumed: dict | None) -> str | None:
    """On --resume of an `--amp auto` run: the precision the run started with (stored in its checkpoints).

    A new measurement on another machine or torch could choose another precision: fp16 -> bf16 would drop the
    loss scaler's state, bf16 -> fp16 would need a scaler state that was never saved."""
    saved = (resumed or {}).get("amp")
    if choice != "auto" or saved is None:
        return None
    if saved == "fp16" and device.type != "cuda":
        raise SlowFastError("--resume: this run trains in fp16 (chosen by --amp auto on a GPU); resume it on a CUDA device")
    return saved


def choose_policy(
    choice: str,
    device: torch.device,
    net: torch.nn.Module | None = None,
    inputs: dict[str, torch.Tensor] | None = None,
    *,
    agree: Callable[[dict], dict] = lambda d: d,
    announce: Callable[[str], None] | None = None,
    resumed: dict | None = None,
) -> AmpPolicy:
    """The run's final precision policy for `--amp auto|fp32|fp16|bf16` on `device`, the one place it is decided.

    With `net` and `inputs` to time: on the CPU `auto` measures bf16 against fp32 (cached); on CUDA the training
    step is timed under each setting (`cuda_policy`). `agree` makes every process of a distributed run take the
    same GPU decision (rank 0's); `announce` prints a half-precision conv3d regression the measurement found.
    `resumed` is the interrupted run's decision (`run_state.resumed_precision`): `--resume` keeps it."""
    if choice not in CHOICES:
        raise SlowFastError(f"--amp must be one of {CHOICES}, got {choice!r}")
    kept = kept_precision(choice, device, resumed)
    asked = _asked(choice, device.type)
    if kept is not None:
        p = _asked(kept, device.type)
        asked = replace(p, reason=f"{p.reason}; kept from the interrupted run (--amp auto chose {kept})")
    if net is None or inputs is None:
        return asked
    if device.type == "cuda":
        return cuda_policy(kept or choice, asked, net, inputs, agree, announce, saved=(resumed or {}).get("gpu_policy"))
    if choice != "auto" or kept is not None:
        return asked
    key = f"{cpu_model()}|torch {torch.__version__}|threads {torch.get_num_threads()}|{_workload(net, inputs)}"
    t, _ = cached(cache_path("cpu_amp"), key, lambda: measure_cpu_bf16(net, inputs), CPU_AMP_FIELDS)
    if t["bf16"] < 0.9 * t["fp32"]:  # a clear win only: bf16 also costs accuracy headroom
        return AmpPolicy("cpu", torch.bfloat16, False, f"CPU: bfloat16 measured faster ({t['bf16']:.3f}s vs {t['fp32']:.3f}s per step)")
    return AmpPolicy(
        "cpu",
        None,
        False,
        f"CPU: float32, bfloat16 measured {t['bf16'] / max(t['fp32'], 1e-9):.2f}x the time ({t['bf16']:.3f}s vs {t['fp32']:.3f}s per step)",
    )


def _cpu_timings(entry: dict) -> bool:
    """A cached CPU measurement is usable when it holds finite, positive seconds per step for fp32 and bf16; anything
    else (another version's entry, a hand-edited file) is measured again rather than compared as numbers."""
    return all(
        isinstance(t := entry.get(k), (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0 for k in ("fp32", "bf16")
    )


CPU_AMP_FIELDS: Callable[[dict], bool] = _cpu_timings  # the `valid` test of the cpu_amp cache entries


def training_step(net: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Callable[[gpu_policy.Setting], Callable[[], None]]:
    """`step(s)`: a forward+backward of a copy of `net` on `inputs`, laid out and autocast as setting `s` says."""

    def step(s: gpu_policy.Setting) -> Callable[[], None]:
        trial = copy.deepcopy(net).train().to(memory_format=memory_format(s.channels_last))
        torch.backends.cudnn.benchmark = s.cudnn_benchmark
        xs = gpu_policy.prepare_inputs(list(inputs.values()), s)

        def run() -> None:
            with torch.autocast("cuda", dtype=DTYPES[s.precision], enabled=s.precision != "fp32"):
                loss = trial(**dict(zip(inputs, xs))).float().square().mean()
            loss.backward()

        return run

    return step


def cuda_policy(
    choice: str,
    asked: AmpPolicy,
    net: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    agree: Callable[[dict], dict] = lambda d: d,
    announce: Callable[[str], None] | None = None,
    saved: dict | None = None,
) -> AmpPolicy:
    """Precision (for `auto`), memory format and cuDNN autotuning by timing training steps, cached per machine;
    `saved` (the interrupted run's decision, --resume) is used as it is."""
    precision = "auto" if choice == "auto" else asked.name
    shapes = tuple(tuple(x.shape) for x in inputs.values())
    preset = getattr(getattr(net, "config", None), "name", type(net).__name__)
    key = gpu_policy.cache_key(preset, "train", precision, int(next(iter(inputs.values())).shape[0]), shapes)

    def measure() -> gpu_policy.Decision:
        regression = gpu_policy.conv3d_regression(net) if precision != "fp32" else None
        return gpu_policy.choose(
            gpu_policy.measure_training(training_step(net, inputs), gpu_policy.candidates(precision, "train")), regression
        )

    if saved is not None:
        decision, was_cached = gpu_policy.Decision.from_dict(saved), bool(saved.get("cached"))
    else:
        decision, was_cached = gpu_policy.decide(key, measure)
    decision = gpu_policy.Decision.from_dict(agree(decision.to_dict()))
    if decision.regression:
        (announce or (lambda line: print(line, file=sys.stderr)))(decision.regression)
    s = decision.setting
    policy = replace(
        asked,
        channels_last=s.channels_last,
        cudnn_benchmark=s.cudnn_benchmark,
        gpu_decision=decision.to_dict() | {"cached": was_cached} | ({"resumed": True} if saved is not None else {}),
    )
    if choice == "auto":
        dtype = None if s.precision == "fp32" else DTYPES[s.precision]
        policy = replace(policy, dtype=dtype, use_scaler=dtype == torch.float16, reason=f"CUDA: {decision.reason}")
    return policy
