"""A measured ceiling for a preset: its own conv3d layers timed one by one, summed into clips/s.

The shapes come from the network itself (forward hooks on every `Conv3d`, run on the meta device, so no
memory or compute is spent finding them). Each distinct (input shape, conv) is timed alone in the asked
precision and memory format, multiplied by how often it occurs, and summed: the time per batch the installed
cuDNN (or CPU kernels) needs for the convolutions alone. `bench model` numbers far below this ceiling point
at the rest of the network (norms, launches); a ceiling far below the GPU's dense rate points at the
convolution library.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from slowfast_trt.benchmarks.results import fmt, write_result
from slowfast_trt.common.device import resolve_device
from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.precision import dtype_of, memory_format
from slowfast_trt.engines.gpu_policy import version_facts
from slowfast_trt.model.build import build as model_build
from slowfast_trt.model.inputs import random_inputs


def conv_shapes(preset: str, size: int, batch: int) -> Counter:
    """Counter of (input shape, out_channels, kernel, stride, padding, groups) over the preset's conv3d calls at `size`, `batch`."""
    net = model_build(preset, device="meta").eval()
    seen: Counter = Counter()

    def hook(mod, inp, _out):
        seen[(tuple(inp[0].shape), mod.out_channels, mod.kernel_size, mod.stride, mod.padding, mod.groups)] += 1

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    try:
        with torch.no_grad():
            net(**random_inputs(net.config, size=size, batch=batch, device="meta"))
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise SlowFastError(f"{preset} has no conv3d layers to time")
    return seen


def conv_gflops(shape: tuple) -> float:
    """Multiply-add GFLOPs (2 per MAC) of one conv call."""
    (n, c, t, h, w), out_c, k, s, p, g = shape
    to = (t + 2 * p[0] - k[0]) // s[0] + 1
    ho = (h + 2 * p[1] - k[1]) // s[1] + 1
    wo = (w + 2 * p[2] - k[2]) // s[2] + 1
    return 2 * n * out_c * to * ho * wo * (c // g) * k[0] * k[1] * k[2] / 1e9


def _timer(device: torch.device, warmup: int, iters: int) -> Callable[[Callable], float]:
    def run(fn: Callable) -> float:
        for _ in range(warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / iters
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) / iters

    return run


def conv_ceiling(
    preset: str,
    *,
    size: int = 256,
    batch: int = 8,
    precision: str = "fp16",
    device: str = "auto",
    channels_last: bool = True,
    cudnn_benchmark: bool = True,
    warmup: int = 3,
    iters: int = 10,
    progress: Callable[[str], None] = print,
) -> dict:
    """Time each distinct conv3d of `preset` alone; the summed time per batch gives the convolutions' clips/s ceiling."""
    dtype = dtype_of(precision, "--precision")
    dev = resolve_device(device)
    if dev.type == "cpu" and precision == "fp16":
        raise SlowFastError("fp16 convolutions are a GPU measurement; use --precision fp32 (or bf16) on the CPU")
    shapes = conv_shapes(preset, size, batch)
    fmt_ = memory_format(channels_last)
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark
    timer = _timer(dev, warmup, iters)
    rows = []
    try:
        for shape, count in sorted(shapes.items(), key=lambda kv: -conv_gflops(kv[0]) * kv[1]):
            in_shape, out_c, k, s, p, g = shape
            conv = torch.nn.Conv3d(in_shape[1], out_c, k, s, p, groups=g, bias=False).to(dev, dtype).to(memory_format=fmt_)
            x = torch.randn(in_shape, device=dev, dtype=dtype).contiguous(memory_format=fmt_)
            with torch.inference_mode():
                t = timer(lambda conv=conv, x=x: conv(x))
            gf = conv_gflops(shape)
            rows.append(
                {
                    "input": list(in_shape),
                    "out_channels": out_c,
                    "kernel": list(k),
                    "stride": list(s),
                    "padding": list(p),
                    "groups": g,
                    "calls": count,
                    "ms": 1e3 * t,
                    "gflops": gf,
                    "tflops": gf / t / 1e3 if t > 0 else None,
                }
            )
            progress(
                f"conv {tuple(in_shape)} -> {out_c} k{tuple(k)} s{tuple(s)} x{count}: {1e3 * t:.3f} ms, {gf / max(t, 1e-12) / 1e3:.2f} TFLOP/s"
            )
    finally:
        torch.backends.cudnn.benchmark = saved
    total_s = sum(r["ms"] * r["calls"] for r in rows) / 1e3
    total_gf = sum(r["gflops"] * r["calls"] for r in rows)
    env = environment()
    return {
        "benchmark": "conv_ceiling",
        **env,
        "versions_facts": version_facts(),
        "settings": {
            "preset": preset,
            "size": size,
            "batch": batch,
            "precision": precision,
            "device": str(dev),
            "channels_last_3d": channels_last,
            "cudnn_benchmark": cudnn_benchmark,
            "warmup": warmup,
            "iters": iters,
        },
        "conv_ms_per_batch": 1e3 * total_s,
        "conv_gflops_per_clip": total_gf / batch,
        "ceiling_clips_per_s": batch / total_s if total_s > 0 else None,
        "achieved_tflops": total_gf / total_s / 1e3 if total_s > 0 else None,
        "rows": rows,
    }


def to_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"Conv3d ceiling of {s['preset']} on {result['device']} ({result['versions_facts']}): {s['precision']}, batch {s['batch']}, "
        f"{s['size']}x{s['size']}, {'channels_last_3d' if s['channels_last_3d'] else 'NCDHW'}, cudnn.benchmark={s['cudnn_benchmark']}",
        "",
        f"Convolutions alone: {result['conv_ms_per_batch']:.2f} ms per batch = **{fmt(result['ceiling_clips_per_s'], '.1f')} clips/s** "
        f"({result['conv_gflops_per_clip']:.1f} GFLOPs per clip in conv3d, {fmt(result['achieved_tflops'], '.2f')} TFLOP/s).",
        "",
        "| input N,C,T,H,W | out | kernel | stride | calls | ms each | TFLOP/s |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['input']} | {r['out_channels']} | {r['kernel']} | {r['stride']} | {r['calls']} | {r['ms']:.3f} | {fmt(r['tflops'], '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    return write_result(result, out_dir, to_markdown(result), "conv_ceiling.md")
