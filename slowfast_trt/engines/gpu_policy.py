"""GPU settings chosen by measurement: memory format, cuDNN autotuning, autocast vs half weights, CUDA graphs.

Half precision ran slower than TF32 on an H200 with torch 2.11/cuDNN 9 (2-3% of the dense fp16 rate), and
public reports blame conv3d regressions in some cuDNN releases; so nothing here is assumed. For one
(GPU, torch, cuDNN, preset, mode, precision, batch, shape) the candidates are timed once on the real net,
the fastest is kept (a more complex setting must win by `MARGIN`), and the decision with every measured
alternative is cached per machine, as `training.amp` does for the CPU's bf16, and recorded in result JSON and
sidecars. `conv3d_regression` times one conv3d of the network's own shape in fp16 and fp32 and names a
half-precision path that is not faster, with the version facts, so a slow install is reported instead of silently used.
"""

from __future__ import annotations

import contextlib
import copy
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.measurements import cache_path, cached
from slowfast_trt.common.precision import DTYPES, memory_format
from slowfast_trt.model.config import type_problem

DECISION_TYPES: dict[str, Any] = {"setting": dict[str, Any], "timings_ms": dict[str, float], "reason": str, "regression": str | None}
MARGIN = 0.03  # a setting with more moving parts (graphs, half weights, autotuning) must be >= 3% faster to be kept


@dataclass(frozen=True)
class Setting:
    """One way to run the net: `precision` 'fp32' (TF32 on tensor cores) or fp16/bf16 as autocast or cast weights."""

    precision: str  # fp32 | fp16 | bf16
    half_weights: bool = False  # .half()/.bfloat16() weights and inputs instead of autocast (inference only)
    channels_last: bool = True  # channels_last_3d memory format
    cudnn_benchmark: bool = False
    cuda_graphs: bool = False

    @property
    def name(self) -> str:
        parts = [self.precision + ("-weights" if self.half_weights else ("-autocast" if self.precision != "fp32" else ""))]
        parts.append("cl3d" if self.channels_last else "ncdhw")
        parts += ["cudnn-benchmark"] * self.cudnn_benchmark + ["cuda-graphs"] * self.cuda_graphs
        return "/".join(parts)

    @property
    def complexity(self) -> int:
        return int(self.half_weights) + int(self.cudnn_benchmark) + int(self.cuda_graphs)


def candidates(precision: str, mode: str = "infer", graphs: bool = True) -> list[Setting]:
    """Settings worth timing for `precision` ('auto' = every precision) in `mode` ('infer' | 'train')."""
    if mode not in ("infer", "train"):
        raise SlowFastError(f"mode must be infer or train, got {mode!r}")
    precs = ("fp32", "fp16", "bf16") if precision == "auto" else (precision,)
    out = []
    for p in precs:
        for half_weights in (False, True) if p != "fp32" and mode == "infer" else (False,):
            for cl in (True, False):
                for bench in (False, True):
                    for g in (False, True) if graphs and mode == "infer" else (False,):
                        out.append(Setting(p, half_weights, cl, bench, g))
    return out


@dataclass(frozen=True)
class Decision:
    """The chosen setting, what it was chosen from (ms per call, fastest first) and why."""

    setting: Setting
    timings_ms: dict[str, float]
    reason: str
    regression: str | None = None

    def to_dict(self) -> dict:
        return {
            "choice": self.setting.name,
            "setting": asdict(self.setting),
            "timings_ms": self.timings_ms,
            "reason": self.reason,
            "regression": self.regression,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Decision:
        """The decision stored as `d` (the cache, a checkpoint), every field checked by type first."""
        problem = type_problem(d, dict[str, Any], "the GPU decision") or next(
            (p for k, t in DECISION_TYPES.items() if (p := type_problem(d.get(k), t, k))), None
        )
        if problem is None:
            problem = next(
                (
                    p
                    for k, t in typing.get_type_hints(Setting).items()
                    if k in d["setting"] and (p := type_problem(d["setting"][k], t, f"setting.{k}"))
                ),
                None,
            )
        if problem is None and d["setting"].get("precision") not in DTYPES:
            problem = f"setting.precision must be one of {sorted(DTYPES)}"
        if problem:
            raise SlowFastError(f"unusable GPU decision: {problem}")
        return cls(Setting(**d["setting"]), dict(d["timings_ms"]), d["reason"], d.get("regression"))


def choose(timings: dict[Setting, float | None], regression: str | None = None) -> Decision:
    """The fastest measured setting; a simpler one within MARGIN of it wins (less to go wrong for no measured gain)."""
    ok = {s: t for s, t in timings.items() if t is not None and t > 0}
    if not ok:
        raise SlowFastError("no GPU setting could be measured (every candidate failed); run with --device cpu or check the CUDA install")
    fastest = min(ok, key=lambda s: ok[s])
    near = [s for s in ok if ok[s] <= ok[fastest] * (1 + MARGIN)]
    best = min(near, key=lambda s: (s.complexity, ok[s]))
    ranked = {s.name: round(1e3 * t, 4) for s, t in sorted(ok.items(), key=lambda kv: kv[1])}
    reason = f"{best.name}: {1e3 * ok[best]:.3f} ms per call, fastest of {len(ok)} measured"
    if best != fastest:
        reason += f" within {MARGIN:.0%} of {fastest.name} ({1e3 * ok[fastest]:.3f} ms) and simpler"
    return Decision(best, ranked, reason, regression)


def version_facts() -> str:
    """'torch 2.11.0+cu130, cuDNN 91400, CUDA 13.0, NVIDIA H200': what a slow path depends on."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, CUDA {torch.version.cuda}, {gpu}"


def regression_verdict(fp16_s: float, fp32_s: float, facts: str, shape: str) -> str | None:
    """One line when half-precision conv3d is not faster than fp32 (tensor cores should make it ~2x faster); else None."""
    if fp16_s < fp32_s:
        return None
    return (
        f"warning: conv3d {shape} in fp16 takes {fp16_s / max(fp32_s, 1e-12):.2f}x the fp32/TF32 time on {facts} "
        "(known cuDNN 3D-convolution regressions: pytorch#166122, #174051); the measured fastest path is used instead"
    )


def time_cuda(fn: Callable[[], object], warmup: int = 3, iters: int = 10) -> float:
    """Median seconds per call of `fn` on the current CUDA stream (CUDA events)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
    return sorted(samples)[len(samples) // 2]


def conv3d_regression(net: torch.nn.Module, timer: Callable[[Callable], float] = time_cuda) -> str | None:
    """Time the net's most expensive conv3d (by output voxels x weights) alone in fp16 and fp32; `regression_verdict` of it."""
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    if not convs or not torch.cuda.is_available():
        return None
    conv = max(convs, key=lambda m: m.weight.numel() * m.in_channels)
    dev = torch.device("cuda")
    x = torch.randn(8, conv.in_channels, 8, 56, 56, device=dev).contiguous(memory_format=torch.channels_last_3d)
    c32 = copy.deepcopy(conv).to(dev).float().to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # torch documents Module.to(memory_format=...); its stubs omit it
    c16 = copy.deepcopy(c32).half()
    with torch.inference_mode():
        t32 = timer(lambda: c32(x))
        x16 = x.half()
        t16 = timer(lambda: c16(x16))
    shape = f"{tuple(conv.weight.shape)} on {tuple(x.shape)}"
    return regression_verdict(t16, t32, version_facts(), shape)


def cache_key(preset: str, mode: str, precision: str, batch: int, shape: tuple) -> str:
    """GPU name, torch/cuDNN versions, preset, mode, precision, batch and input shape: what the measurement depends on."""
    return f"{version_facts()}|{preset}|{mode}|{precision}|batch {batch}|shape {list(shape)}"


def decide(key: str, measure: Callable[[], Decision], path: Path | None = None) -> tuple[Decision, bool]:
    """The cached decision for `key`, or `measure()` stored under it; also whether it came from the cache."""

    def valid(d: dict) -> bool:
        try:
            Decision.from_dict(d)
            return True
        except (KeyError, TypeError, ValueError, SlowFastError):
            return False  # an entry from another version of this file: measure again

    entry, hit = cached(path or cache_path("gpu_policy"), key, lambda: measure().to_dict(), valid)
    return Decision.from_dict(entry), hit


def _fp32_precision(holder: Any) -> str | None:
    """`holder.fp32_precision` where this torch has the TF32 API of 2.9+ ('ieee', 'tf32' or 'none': inherit), else None."""
    try:
        return holder.fp32_precision
    except (AttributeError, RuntimeError):
        return None


def enable_tf32() -> None:
    """TF32 tensor cores for fp32 convolutions (cuDNN's default, made sure of): torch's `cudnn.conv.fp32_precision`
    where it exists (torch 2.9+ deprecates `allow_tf32`, and a mix of both makes the old getters raise), else
    `cudnn.allow_tf32`. Matmuls (only the classifier head) keep the caller's setting: torch 2.13's cuda-only matmul
    switch makes `torch.get_float32_matmul_precision()`, which inductor reads, raise."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and _fp32_precision(conv) is not None:
        conv.fp32_precision = "tf32"
    else:
        torch.backends.cudnn.allow_tf32 = True


def conv_tf32() -> bool:
    """Whether fp32 convolutions run in TF32: cuDNN conv's `fp32_precision`, then its parents' ('none' inherits), else `allow_tf32`."""
    chain = [getattr(torch.backends.cudnn, "conv", None), torch.backends.cudnn, torch.backends]
    values = [_fp32_precision(h) for h in chain]
    if values[0] is None:
        return bool(torch.backends.cudnn.allow_tf32)
    return next((v for v in values if v not in (None, "none")), "ieee") == "tf32"


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """cuDNN autotuning as asked inside the block, the caller's setting restored after it (a process-wide switch)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def apply_setting(net: torch.nn.Module, s: Setting) -> torch.nn.Module:
    """`net` laid out for `s` (memory format, half weights), TF32 on; cuDNN autotuning is the runner's (`forward_fn`)."""
    enable_tf32()
    net = net.to(memory_format=memory_format(s.channels_last))  # type: ignore[call-overload]  # torch documents Module.to(memory_format=...); its stubs omit it
    if s.half_weights:
        net = net.to(DTYPES[s.precision])
    return net


def prepare_inputs(xs: list[torch.Tensor], s: Setting) -> list[torch.Tensor]:
    """Inputs in the memory format and dtype `s` runs on (5-D clips only; boxes stay as they are)."""
    fmt = memory_format(s.channels_last)
    out = []
    for x in xs:
        if x.dim() == 5:
            x = x.contiguous(memory_format=fmt)
            if s.half_weights:
                x = x.to(DTYPES[s.precision])
        out.append(x)
    return out


def forward_fn(net: torch.nn.Module, s: Setting, names: list[str]) -> Callable[..., torch.Tensor]:
    """A call of `net` under `s` (inference mode, autocast unless weights are cast, cuDNN autotuning as `s` says and
    restored after the call, so engines timed next are not affected) taking positional inputs."""
    autocast = s.precision != "fp32" and not s.half_weights

    def run(*xs: torch.Tensor) -> torch.Tensor:
        with (
            cudnn_benchmark(s.cudnn_benchmark),
            torch.inference_mode(),
            torch.autocast("cuda", dtype=DTYPES[s.precision], enabled=autocast),
        ):
            return net(**dict(zip(names, xs)))

    return run


class GraphedCall:
    """A forward pass captured as a CUDA graph for one input shape: inputs are copied into static buffers, then replayed."""

    def __init__(self, fn: Callable[..., torch.Tensor], example: list[torch.Tensor]):
        self.static_in = [x.clone() for x in example]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
            for _ in range(3):
                fn(*self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_out = fn(*self.static_in)

    def __call__(self, *xs: torch.Tensor) -> torch.Tensor:
        for buf, x in zip(self.static_in, xs):
            buf.copy_(x)
        self.graph.replay()
        return self.static_out.clone()


def measure_inference(
    net: torch.nn.Module,
    names: list[str],
    example: list[torch.Tensor],
    settings: list[Setting],
    timer: Callable[[Callable], float] = time_cuda,
) -> dict[Setting, float | None]:
    """Seconds per call of a copy of `net` on `example` under each setting (None where a setting fails to run)."""
    out: dict[Setting, float | None] = {}
    for s in settings:
        trial = None
        try:
            trial = apply_setting(copy.deepcopy(net), s)
            xs = prepare_inputs(example, s)
            fn = forward_fn(trial, s, names)
            call = GraphedCall(fn, xs) if s.cuda_graphs else fn
            out[s] = timer(lambda call=call, xs=xs: call(*xs))
        except (RuntimeError, torch.cuda.OutOfMemoryError):
            out[s] = None
        finally:
            del trial
            torch.cuda.empty_cache()
    return out


def measure_training(
    step: Callable[[Setting], Callable[[], object]], settings: list[Setting], timer: Callable[..., float] = time_cuda
) -> dict[Setting, float | None]:
    """Seconds per training step under each setting; `step(s)` returns a zero-argument step laid out for `s` (it may set
    cuDNN autotuning: the caller's setting is restored after the last one)."""
    out: dict[Setting, float | None] = {}
    with cudnn_benchmark(torch.backends.cudnn.benchmark):
        for s in settings:
            try:
                out[s] = timer(step(s), 2, 5)
            except (RuntimeError, torch.cuda.OutOfMemoryError):
                out[s] = None
            torch.cuda.empty_cache()
    return out


def wall_timer(fn: Callable[[], object], warmup: int = 1, iters: int = 3) -> float:
    """Median wall-clock seconds per call (what the CPU smoke tests of the measuring code use)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return sorted(samples)[len(samples) // 2]
