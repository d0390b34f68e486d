"""`slowfast bench e2e`: encoded video to scores, DALI test pipeline feeding an engine, against the PyAV loader.

Stages are measured, not apportioned from one timer: on the same clip plans, a decode-only pass (decode +
frame sampling), a loader pass (decode + sample + preprocess: resize, crops, normalise, Fast-input form),
an inference-only pass (the engine on an already loaded batch, as many times as there are batches) and the
end-to-end pass (loader feeding the engine; time waiting on the loader and time in the engine are recorded
separately). Preprocess = loader pass - decode-only pass. The stage with the largest time per clip bounds
the rate. DALI passes use its worker threads; the PyAV stage passes run serially in one process (its
per-clip cost) and its end-to-end pass runs in a torch DataLoader with as many workers as DALI has threads.
Every pass stops at its clips or after `budget` seconds, whichever comes first (so a slow baseline cannot hold
the run up), and `loaders` picks the pipelines measured (dali, pyav).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from slowfast_trt import engines
from slowfast_trt.benchmarks.results import fmt, write_result
from slowfast_trt.benchmarks.throughput import check_batches, engine_device, input_size, open_engine
from slowfast_trt.common.device import apply_threads, resolve_device
from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import multiview_plan
from slowfast_trt.dali_pipelines.pyav_loader import PyAVClips, decode_frames
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import Video
from slowfast_trt.data.video_io import count_packets

STAGES = ("decode", "preprocess", "inference")
LOADERS = ("dali", "pyav")


def parse_loaders(text: str | None) -> tuple[str, ...]:
    """'dali,pyav' -> the pipelines to measure; None or 'all' -> both."""
    if text is None or text.strip() == "all":
        return LOADERS
    asked = {t.strip() for t in text.split(",") if t.strip()}
    unknown = sorted(asked - set(LOADERS))
    if unknown or not asked:
        raise SlowFastError(
            f"--loaders: unknown pipeline(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(LOADERS)} (or all)"
        )
    return tuple(n for n in LOADERS if n in asked)


def decodable(videos: list[Video], what: str = "the manifest", progress: Callable[[str], None] = print) -> list[Video]:
    """The videos whose files hold video packets; a warning per dropped file, an error when none is left."""
    keep, dropped = [], []
    for v in videos:
        (keep if Path(v.path).is_file() and count_packets(v.path) > 0 else dropped).append(v)
    if not keep:
        first = dropped[0].path if dropped else "(no entries)"
        raise SlowFastError(
            f"{what}: none of its {len(videos)} videos can be decoded (first: {first}); "
            "fix the files or the manifest (`slowfast data check MANIFEST`)"
        )
    for v in dropped[:5]:
        progress(f"warning: skipping {v.path}: missing, unreadable or without video packets")
    if len(dropped) > 5:
        progress(f"warning: ... and {len(dropped) - 5} more undecodable files")
    return keep


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clip_count(batch: dict, crops: int) -> int:
    return int(batch["slow" if "slow" in batch else "fast"].shape[0]) // crops


def _timed_pass(
    batches: Iterable, crops: int, device: torch.device, warmup: int = 1, budget: float = float("inf")
) -> tuple[float, int, list[float]]:
    """Iterate `batches` (after `warmup` untimed ones, stopping after `budget` seconds): seconds, clips and per-batch seconds."""
    it = iter(batches)
    for _ in range(warmup):
        next(it, None)
    samples, clips = [], 0
    t0 = time.perf_counter()
    last = t0
    for b in it:
        _sync(device)
        now = time.perf_counter()
        samples.append(now - last)
        last = now
        clips += _clip_count(b, crops)
        if now - t0 >= budget:
            break
    return time.perf_counter() - t0, clips, samples


def _inference_pass(engine, batch: dict, pathways: tuple[str, ...], calls: int) -> tuple[float, list[float]]:
    """The engine alone on one loaded batch, `calls` times after one warm-up call."""
    x = {p: batch[p] for p in pathways}
    engine(**x).cpu()
    samples = []
    for _ in range(calls):
        _sync(engine.device)
        t0 = time.perf_counter()
        engine(**x).cpu()  # scores on the host: the end of "encoded video to scores"
        samples.append(time.perf_counter() - t0)
    return sum(samples), samples


def _e2e_pass(batches: Iterable, engine, pathways: tuple[str, ...], crops: int, warmup: int = 1, budget: float = float("inf")) -> dict:
    """Loader feeding the engine (for at most `budget` seconds): total time, time waiting on the loader, time in the engine (per batch)."""
    it = iter(batches)
    for _ in range(warmup):
        b = next(it, None)
        if b is not None:
            engine(**{p: b[p] for p in pathways}).cpu()
    wait, run, clips = [], [], 0
    t0 = time.perf_counter()
    while True:
        t_wait = time.perf_counter()
        b = next(it, None)
        if b is None:
            break
        _sync(engine.device)
        t_run = time.perf_counter()
        engine(**{p: b[p] for p in pathways}).cpu()
        t_end = time.perf_counter()
        wait.append(t_run - t_wait)
        run.append(t_end - t_run)
        clips += _clip_count(b, crops)
        if t_end - t0 >= budget:
            break
    total = time.perf_counter() - t0
    return {"seconds": total, "clips": clips, "loader_wait_s": wait, "engine_s": run}


def _stage_row(name: str, decode: tuple, load: tuple, infer: tuple, e2e: dict, note: str) -> dict:
    """Per-clip stage times (ms) from the isolated passes, the end-to-end rate, and the bounding stage."""
    per = lambda seconds, clips: 1e3 * seconds / clips if clips else None  # noqa: E731
    decode_ms = per(decode[0], decode[1])
    load_ms = per(load[0], load[1])
    infer_ms = per(infer[0], infer[1])
    stages = {"decode": decode_ms, "preprocess": max(0.0, load_ms - decode_ms), "inference": infer_ms}
    bound = max(stages, key=lambda k: stages[k])
    return {
        "pipeline": name,
        "e2e_clips_per_s": e2e["clips"] / e2e["seconds"] if e2e["seconds"] > 0 else None,
        "decode_ms_per_clip": stages["decode"],
        "preprocess_ms_per_clip": stages["preprocess"],
        "inference_ms_per_clip": stages["inference"],
        "loader_ms_per_clip": load_ms,
        "e2e_loader_wait_ms_per_clip": per(sum(e2e["loader_wait_s"]), e2e["clips"]),
        "e2e_engine_ms_per_clip": per(sum(e2e["engine_s"]), e2e["clips"]),
        "bound": bound,
        "clips_timed": e2e["clips"],
        "note": note,
        "samples": {
            "decode_batch_s": decode[2],
            "loader_batch_s": load[2],
            "inference_batch_s": infer[2],
            "e2e_loader_wait_s": e2e["loader_wait_s"],
            "e2e_engine_s": e2e["engine_s"],
        },
    }


def _pyav_decode_pass(plans, warmup: int, budget: float = float("inf")) -> tuple[float, int, list[float]]:
    for p in plans[:warmup]:
        decode_frames(p.path, p.fast_idx)
    samples = []
    for p in plans[warmup:]:
        t0 = time.perf_counter()
        decode_frames(p.path, p.fast_idx)
        samples.append(time.perf_counter() - t0)
        if sum(samples) >= budget:
            break
    return sum(samples), len(samples), samples


def _pyav_batches(loader: Iterable, crops: int, pathways: tuple[str, ...]):
    """PyAV test items carry their crops in dim 1; flatten to the N*crops views the engine takes."""
    for b in loader:
        yield {p: b[p].flatten(0, 1) for p in pathways if p in b}


def _dali_row(plans, cfg, engine, feed: FeedSpec, videos: list[Video], clips: int, budget: float, progress) -> tuple[dict, dict[str, str]]:
    """The DALI stage passes (decode only, loader, inference only, end to end) over `plans`; the row and the files skipped."""
    batch, crops, pathways, dev = feed.batch_size, feed.num_crops, tuple(engine.input_names), engine.device
    feed = feed.but(skip_bad=True)
    progress(f"DALI: decode-only pass over {clips} clips")
    dec_loader = ClipLoader(plans, cfg, "decode", feed, videos=videos)
    decode = _timed_pass(dec_loader, 1, dev, budget=budget)
    progress("DALI: loader pass (decode + preprocess)")
    test_loader = ClipLoader(plans, cfg, "test", feed, videos=videos)
    load = _timed_pass(test_loader, crops, dev, budget=budget)
    first = next(iter(test_loader))
    n_batches = max(1, len(load[2]))
    progress(f"DALI: inference-only pass ({n_batches} calls, batch {batch} x {crops} crops)")
    t_inf, s_inf = _inference_pass(engine, first, pathways, n_batches)
    infer = (t_inf, _clip_count(first, crops) * n_batches, s_inf)
    progress("DALI: end-to-end pass")
    e2e = _e2e_pass(ClipLoader(plans, cfg, "test", feed, videos=videos), engine, pathways, crops, budget=budget)
    row = _stage_row("dali", decode, load, infer, e2e, f"DALI {test_loader.device}, {feed.dali_threads} threads")
    return row, dict(dec_loader.bad) | dict(test_loader.bad)


def _pyav_row(good, cfg, engine, feed: FeedSpec, budget: float, progress) -> dict:
    """The PyAV stage passes: decode, loader and inference serially, end to end in a DataLoader with `feed.dali_threads` workers."""
    batch, crops, threads, pathways, dev = feed.batch_size, feed.num_crops, feed.dali_threads, tuple(engine.input_names), engine.device
    progress("PyAV: decode-only pass (serial)")
    p_decode = _pyav_decode_pass(good, batch, budget)
    progress("PyAV: loader pass (serial)")
    serial = torch.utils.data.DataLoader(PyAVClips(good, cfg, "test", num_crops=crops), batch_size=batch, num_workers=0)
    p_load = _timed_pass(_pyav_batches(serial, crops, pathways), crops, torch.device("cpu"), budget=budget)
    pfirst = next(_pyav_batches(serial, crops, pathways))
    pfirst = {k: v.to(dev) for k, v in pfirst.items()}
    t_pinf, s_pinf = _inference_pass(engine, pfirst, pathways, max(1, len(p_load[2])))
    p_infer = (t_pinf, _clip_count(pfirst, crops) * max(1, len(p_load[2])), s_pinf)
    progress(f"PyAV: end-to-end pass (DataLoader, {threads} workers)")
    workers = torch.utils.data.DataLoader(
        PyAVClips(good, cfg, "test", num_crops=crops), batch_size=batch, num_workers=threads, persistent_workers=False
    )
    p_e2e = _e2e_pass(_pyav_batches(workers, crops, pathways), engine, pathways, crops, budget=budget)
    note = f"PyAV: stage passes serial (one process), end-to-end in a DataLoader with {threads} workers"
    return _stage_row("pyav", p_decode, p_load, p_infer, p_e2e, note)


def _open(artifact: Path, feed: FeedSpec, precision: str):
    """The engine for `artifact`, refused when its batch or input size cannot take the test pipeline's views."""
    if not artifact.exists():
        raise SlowFastError(f"artifact {artifact} not found; pass a checkpoint (.safetensors), an .onnx export or a TensorRT .plan")
    check_batches(artifact, [feed.batch_size * feed.num_crops])  # the engine sees batch x crops views per call
    engine = open_engine(
        artifact,
        lambda: engines.load(artifact, device=engine_device(artifact, feed.device), precision=precision, threads=feed.split.engine),
    )
    cfg = engine.config
    if input_size(engine) != cfg.test_crop_size:
        raise SlowFastError(
            f"{artifact}: built for {input_size(engine)}-pixel inputs but the test pipeline crops "
            f"{cfg.test_crop_size}; re-export it at --size {cfg.test_crop_size}"
        )
    return engine


def bench_e2e(
    videos: list[Video],
    artifact: str | Path,
    feed: FeedSpec,
    *,
    clips: int = 32,
    precision: str = "fp32",
    manifest: str | None = None,
    loaders: tuple[str, ...] = LOADERS,
    budget: float = 6.0,
    progress: Callable[[str], None] = print,
) -> dict:
    """Run the stage passes of `loaders` (DALI, PyAV) on the same `clips` clips with `feed`'s batch, crops, device and
    threads, at most `budget` seconds a pass; returns the result dict."""
    if clips < 1:
        raise SlowFastError("--batch-size and --clips must be >= 1")
    if budget <= 0:
        raise SlowFastError(f"--budget must be a positive number of seconds, got {budget}")
    loaders = parse_loaders(",".join(loaders))
    artifact = Path(artifact)
    # One budget for the loader and the engine: a TensorRT plan runs on the GPU; anything else where `device` resolves.
    on_cpu = artifact.suffix.lower() not in engines.PLAN_SUFFIXES and resolve_device(engine_device(artifact, feed.device)).type == "cpu"
    feed = feed.but(model_on_cpu=on_cpu)
    apply_threads(feed.split)
    engine = _open(artifact, feed, precision)
    cfg, batch = engine.config, feed.batch_size
    videos = decodable(videos, manifest or "the manifest", progress)
    per_video = -(-(clips + batch) // len(videos))  # one extra batch for warm-up
    plans = multiview_plan(videos, cfg, num_clips=per_video)
    # Interleave videos (clip 0 of every video, then clip 1, ...) so few clips still cover many files.
    plans = sorted(plans, key=lambda p: (p.clip, p.video))[: clips + batch]
    rows, bad = [], {}
    if "dali" in loaders:
        row, bad = _dali_row(plans, cfg, engine, feed, videos, clips, budget, progress)
        rows.append(row)
    if "pyav" in loaders:
        rows.append(_pyav_row([p for p in plans if p.path not in bad], cfg, engine, feed, budget, progress))
    for r in rows:
        progress(
            f"{r['pipeline']:5s} e2e {fmt(r['e2e_clips_per_s'])} clips/s; decode {fmt(r['decode_ms_per_clip'])} ms, "
            f"preprocess {fmt(r['preprocess_ms_per_clip'])} ms, inference {fmt(r['inference_ms_per_clip'])} ms per clip; "
            f"bound by {r['bound']}"
        )
    for path, reason in bad.items():
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    env = environment()
    dali_device = feed.dali_device if "dali" in loaders else "-"
    return {
        "benchmark": "e2e",
        **env,
        "loadavg": list(os.getloadavg()),
        "device": f"{engine.backend} on {engine.device.type} / DALI {dali_device} / {env['device']}",
        "settings": {
            "manifest": manifest,
            "artifact": str(artifact),
            "engine": engine.name,
            "preset": cfg.name,
            "batch": batch,
            "clips": clips,
            "crops": feed.num_crops,
            "threads": feed.dali_threads,
            "thread_split": feed.split.as_dict(),
            "videos": len(videos),
            "crop": cfg.test_crop_size,
            "clip": f"{cfg.num_frames}x{cfg.tau}, alpha={cfg.alpha}",
            "loaders": list(loaders),
            "budget_s": budget,
        },
        "rows": rows,
        "ratios": (
            {"dali_vs_pyav_e2e": (rows[0]["e2e_clips_per_s"] or 0) / max(rows[1]["e2e_clips_per_s"] or 0, 1e-9)} if len(rows) == 2 else {}
        ),
        "skipped": bad,
    }


def to_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"End to end (encoded video -> scores) on {result['device']}: `{Path(s['artifact']).name}` ({s['engine']}), "
        f"batch {s['batch']} x {s['crops']} crop(s), {s['clips']} clips of {s['videos']} videos, "
        + (
            f"{s['thread_split']['budget']} CPU threads: {s['threads']} for the loader (DALI threads / PyAV workers), "
            f"{s['thread_split']['engine']} for the engine. "
            if "thread_split" in s
            else f"{s['threads']} threads. "
        )
        + "Stage times per clip from isolated passes; the largest bounds the rate.",
        "",
        "| pipeline | e2e clips/s | decode+sample ms | preprocess ms | inference ms | bound by | e2e: loader wait ms | e2e: engine ms | note |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['pipeline']} | {fmt(r['e2e_clips_per_s'])} | {fmt(r['decode_ms_per_clip'])} | {fmt(r['preprocess_ms_per_clip'])} | "
            f"{fmt(r['inference_ms_per_clip'])} | {r['bound']} | {fmt(r['e2e_loader_wait_ms_per_clip'])} | "
            f"{fmt(r['e2e_engine_ms_per_clip'])} | {r['note']} |"
        )
    lines += ["", "| ratio (same run) | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f}x |" for k, v in result["ratios"].items()]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    return write_result(result, out_dir, to_markdown(result), "e2e.md")
