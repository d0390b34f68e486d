"""`slowfast bench model`: clips/s and latency of each artifact per backend, precision and batch size.

Every artifact runs through `engines.load` on random clips of its own input shape (the sidecar's crop):
checkpoints as torch eager in each precision the device supports (and torch.compile when asked), ONNX
exports through ONNX Runtime (fp32 or int8 Q/DQ), TensorRT plans when TensorRT and a GPU are present.
After `warmup` calls, each of `iters` calls is timed: with CUDA events on a GPU, the wall clock on the CPU.
Achieved TFLOP/s comes from the model's counted GFLOPs (model.count at the input size).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from slowfast_trt import engines
from slowfast_trt.benchmarks.peak import math_mode, peak_tflops
from slowfast_trt.benchmarks.results import GFLOPS_NOTE, fmt, latency_stats, write_result
from slowfast_trt.common.device import resolve_device
from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines.sidecar import read_sidecar
from slowfast_trt.model.flops import count
from slowfast_trt.model.inputs import random_inputs

CHECKPOINT_SUFFIXES = (".safetensors", ".pyth", ".pt", ".pth", ".pkl")
TORCH_PRECISIONS = ("fp32", "bf16", "fp16")


def default_settings(device: torch.device) -> dict:
    """Batch sizes and iteration counts: 1 (latency), 8 (the paper's clips per GPU) and 32 (throughput) on a GPU; small
    enough to take seconds on a CPU."""
    if device.type == "cuda":
        return {"batches": [1, 8, 32], "warmup": 10, "iters": 50}
    return {"batches": [1, 4], "warmup": 2, "iters": 5}


def torch_precision_support(precision: str, device: torch.device) -> str | None:
    """None when the torch engine can run `precision` natively on `device`, else the reason it is skipped."""
    if device.type == "cpu":
        if precision == "fp16":
            return "fp16: the torch engine does not run fp16 on the CPU"
        if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "bf16: this CPU has no native bf16 (oneDNN reports none), autocast would only emulate it"
        return None
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "bf16: this GPU does not support bf16"
    return None


def input_size(engine) -> int:
    return int(engine.info.get("crop_size") or engine.config.test_crop_size)


def check_batches(artifact: str | Path, batches: list[int]) -> None:
    """Fail before loading when a batch size is outside what the artifact was built for (profile or fixed batch)."""
    p = Path(artifact)
    if p.suffix.lower() in CHECKPOINT_SUFFIXES:
        return
    side = read_sidecar(p)
    too_big = max(batches)
    if side.get("kind") == "tensorrt":
        limit = side.get("tensorrt", {}).get("profile", {}).get("max")
        if limit is not None and too_big > limit:
            raise SlowFastError(
                f"{p}: batch {too_big} exceeds the plan's optimization profile (max {limit}); pass --batch-size "
                f"sizes up to {limit} or rebuild with `slowfast export engine --max-batch {too_big}`"
            )
    elif isinstance(side.get("batch"), int) and any(b != side["batch"] for b in batches):
        raise SlowFastError(
            f"{p}: exported with a fixed batch of {side['batch']}; pass --batch-size {side['batch']} or re-export with --batch-size dynamic"
        )


def engine_device(artifact: str | Path, device: str) -> str:
    """The device to open `artifact` on: "auto" runs ONNX exports on the CPU when ONNX Runtime has no CUDA provider."""
    if device == "auto" and Path(artifact).suffix.lower() == ".onnx" and torch.cuda.is_available():
        import onnxruntime as ort  # lazy: onnxruntime, optional (extra [export])

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "cpu"
    return device


def open_variants(
    artifact: str | Path, precisions: list[str], compile: bool, device: str, threads: int | None, tune: bool = True
) -> tuple[list[tuple[str, Callable]], list[dict]]:
    """The engines to time for one artifact (as lazy openers) and the variants skipped, each with its reason."""
    p = Path(artifact)
    suffix = p.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        dev = engine_device(p, device)
        return [(suffix.lstrip("."), lambda: engines.load(p, device=dev, threads=threads))], []
    dev = resolve_device(device)
    openers, skipped = [], []
    for prec in precisions:
        reason = torch_precision_support(prec, dev)
        if reason:
            skipped.append({"artifact": str(p), "engine": f"torch-{prec}", "reason": reason})
            continue
        openers.append((f"torch-{prec}", lambda prec=prec: engines.load(p, device=device, precision=prec)))
        if tune and dev.type == "cuda":  # settings chosen by measurement (engines.gpu_policy), next to the plain path
            openers.append((f"torch-tuned-{prec}", lambda prec=prec: engines.load(p, device=device, precision=prec, tune=True)))
        if compile:
            openers.append((f"torch-compile-{prec}", lambda prec=prec: engines.load(p, device=device, precision=prec, compile=True)))
    if not compile:
        skipped.append({"artifact": str(p), "engine": "torch-compile", "reason": "not requested (pass --compile)"})
    return openers, skipped


def open_engine(artifact: Path, opener: Callable):
    """Open an engine; any failure becomes one line naming the artifact and what to do."""
    try:
        return opener()
    except SlowFastError as e:
        msg = str(e)
        raise SlowFastError(msg if str(artifact) in msg else f"{artifact}: {msg}") from None
    except Exception as e:  # corrupt files surface as library-specific exceptions (safetensors, pickle, ORT)
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise SlowFastError(
            f"{artifact}: cannot be loaded ({type(e).__name__}: {first}); re-export or re-train it, "
            "or check the path points at a checkpoint (.safetensors), an .onnx export or a TensorRT .plan"
        ) from None


def time_engine(engine, batch: int, warmup: int, iters: int, seed: int = 0) -> list[float]:
    """Seconds per call of `engine` on random clips of `batch`: CUDA events on a GPU, the wall clock on the CPU."""
    cfg, dev = engine.config, engine.device
    g = torch.Generator().manual_seed(seed)
    x = {k: v.to(dev) for k, v in random_inputs(cfg, size=input_size(engine), batch=batch, generator=g).items()}
    for _ in range(warmup):
        engine(**x)
    samples = []
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            engine(**x)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            engine(**x)
            samples.append(time.perf_counter() - t0)
    return samples


def bench_model(
    artifacts: list[str],
    *,
    batches: list[int] | None = None,
    warmup: int | None = None,
    iters: int | None = None,
    precisions: list[str] | None = None,
    compile: bool = False,
    device: str = "auto",
    threads: int | None = None,
    tune: bool = True,
    progress: Callable[[str], None] = print,
) -> dict:
    """Time every artifact's engines over `batches`; returns the result dict (rows, skipped variants, raw samples)."""
    if not artifacts:
        raise SlowFastError("give at least one artifact (checkpoint, .onnx or .plan)")
    dev = resolve_device(device)
    defaults = default_settings(dev)
    batches = sorted(set(batches or defaults["batches"]))
    warmup = defaults["warmup"] if warmup is None else warmup
    iters = defaults["iters"] if iters is None else iters
    precisions = list(precisions or TORCH_PRECISIONS)
    bad = [p for p in precisions if p not in TORCH_PRECISIONS]
    if bad:
        raise SlowFastError(f"--precision {bad[0]!r} is not one of {TORCH_PRECISIONS}")
    if min(batches) < 1 or iters < 1 or warmup < 0:
        raise SlowFastError("--batch-size values and --iters must be >= 1 and --warmup >= 0")
    env = environment()
    rows, skipped, gflops_cache = [], [], {}
    saved_threads = torch.get_num_threads()
    if threads:  # the same intra-op thread count for torch as for ONNX Runtime
        torch.set_num_threads(threads)
    try:
        _bench_all(
            artifacts, batches, warmup, iters, precisions, compile, device, threads, env, rows, skipped, gflops_cache, progress, tune
        )
        torch_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(saved_threads)
    for s in skipped:
        progress(f"skipped {Path(s['artifact']).name} {s['engine']}: {s['reason']}")
    return {
        "benchmark": "model",
        **env,
        "settings": {
            "artifacts": [str(a) for a in artifacts],
            "batches": batches,
            "warmup": warmup,
            "iters": iters,
            "precisions": precisions,
            "compile": compile,
            "tune": tune and dev.type == "cuda",
            "device": str(dev),
            "threads": threads,
            "torch_threads": torch_threads,
            "gflops": GFLOPS_NOTE,
        },
        "rows": rows,
        "skipped": skipped,
    }


def first_call_seconds(engine, batch: int) -> float:
    """Seconds of one call on fresh inputs, synchronised: a compiled engine's compile time (measured apart from its rate)."""
    x = {k: v.to(engine.device) for k, v in random_inputs(engine.config, size=input_size(engine), batch=batch).items()}
    t0 = time.perf_counter()
    engine(**x)
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    return time.perf_counter() - t0


def _bench_all(
    artifacts, batches, warmup, iters, precisions, compile, device, threads, env, rows, skipped, gflops_cache, progress, tune: bool = True
) -> None:
    """The measurement loop of bench_model: appends to `rows` and `skipped`."""
    for artifact in artifacts:
        path = Path(artifact)
        if not path.exists():
            raise SlowFastError(f"artifact {path} not found; pass a checkpoint (.safetensors), an .onnx export or a TensorRT .plan")
        check_batches(path, batches)
        openers, skips = open_variants(path, precisions, compile, device, threads, tune)
        skipped += skips
        for _name, opener in openers:
            engine = open_engine(path, opener)
            size = input_size(engine)
            key = (engine.config.name, size, repr(engine.config.to_dict()))
            if key not in gflops_cache:
                gflops_cache[key] = count(engine.config, size=size)["gflops"]
            gflops = gflops_cache[key]
            gpu = torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else None
            peak = peak_tflops(gpu, engine.precision)
            for b in batches:
                try:
                    # compile (or, tuned, the settings' measurement) happens on a shape's first call: timed apart from the rate
                    first_s = (
                        first_call_seconds(engine, b) if getattr(engine, "compiled", False) or getattr(engine, "tune", False) else None
                    )
                    if gpu:
                        torch.cuda.reset_peak_memory_stats(engine.device)
                    samples = time_engine(engine, b, warmup, iters)
                    peak_mb = torch.cuda.max_memory_allocated(engine.device) / 2**20 if gpu else None
                except SlowFastError:
                    raise
                except Exception as e:  # e.g. torch.compile without a working compiler: record why, keep going
                    if not getattr(engine, "compiled", False):
                        raise
                    skipped.append(
                        {
                            "artifact": str(path),
                            "engine": engine.name,
                            "reason": f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}",
                        }
                    )
                    break
                stats = latency_stats(samples, b)
                tflops = 2 * gflops * stats["clips_per_s"] / 1e3
                row = {
                    "artifact": str(path),
                    "preset": engine.config.name,
                    "engine": engine.name,
                    "backend": engine.backend,
                    "precision": engine.precision,
                    "device": gpu or f"cpu: {env['cpu']}",
                    "batch": b,
                    "size": size,
                    "gflops_per_clip": gflops,
                    **stats,
                    "achieved_tflops": tflops,
                    "math_mode": math_mode(engine.precision) if gpu else None,
                    "peak_tflops": peak,
                    "fraction_of_peak": tflops / peak if peak else None,
                    "timer": "cuda_events" if gpu else "wall_clock",
                    "samples_s": samples,
                    "peak_memory_mb": peak_mb,
                    "compile_s": first_s if getattr(engine, "compiled", False) else None,
                    "tune_s": first_s if getattr(engine, "tune", False) else None,
                    "gpu_policy": next((v for k, v in engine.info.get("gpu_policy", {}).items() if k.startswith(f"batch {b} ")), None),
                }
                rows.append(row)
                progress(
                    f"{path.name:28s} {engine.name:22s} batch {b:3d}: {stats['clips_per_s']:9.2f} clips/s  "
                    f"p50 {stats['latency_ms_p50']:8.2f} ms  p99 {stats['latency_ms_p99']:8.2f} ms"
                )
            del engine


def to_markdown(result: dict) -> str:
    """One row per artifact x engine x batch; skipped variants listed with their reasons."""
    s = result["settings"]
    lines = [
        f"Model throughput on {result['device']}: {s['warmup']} warm-up + {s['iters']} timed calls per batch, "
        f"random clips at each artifact's input size. {s['gflops']}.",
        "",
        "| artifact | engine | batch | clips/s | p50 ms | p95 ms | p99 ms | GFLOPs/clip | TFLOP/s | of peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        frac = "-" if r["fraction_of_peak"] is None else f"{100 * r['fraction_of_peak']:.2f}%"
        lines.append(
            f"| {Path(r['artifact']).name} | {r['engine']} | {r['batch']} | {r['clips_per_s']:.2f} | "
            f"{r['latency_ms_p50']:.2f} | {r['latency_ms_p95']:.2f} | {r['latency_ms_p99']:.2f} | "
            f"{r['gflops_per_clip']:.3f} | {fmt(r['achieved_tflops'], '.4f')} | {frac} |"
        )
    extra = [r for r in result["rows"] if r.get("peak_memory_mb") is not None or r.get("compile_s") is not None or r.get("gpu_policy")]
    if extra:
        lines += [
            "",
            "| engine | batch | peak memory MB | compile s (apart from the rate) | chosen GPU settings (of measured) |",
            "|---|---:|---:|---:|---|",
        ]
        for r in extra:
            pol = r.get("gpu_policy")
            chosen = f"{pol['choice']} (of {len(pol['timings_ms'])})" if pol else "-"
            lines.append(
                f"| {r['engine']} | {r['batch']} | {fmt(r.get('peak_memory_mb'), '.0f')} | {fmt(r.get('compile_s'), '.1f')} | {chosen} |"
            )
        notes = sorted({r["gpu_policy"]["regression"] for r in extra if r.get("gpu_policy") and r["gpu_policy"].get("regression")})
        lines += [""] + notes if notes else []
    if result["skipped"]:
        lines += ["", "Not measured:", ""] + [f"- {Path(x['artifact']).name} {x['engine']}: {x['reason']}" for x in result["skipped"]]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    return write_result(result, out_dir, to_markdown(result), "model.md")
