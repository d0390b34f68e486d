"""`slowfast bench pipeline`: clips/s of the DALI train/test pipelines against PyAV loaders, in one run.

Measured on the same files and the same clip plans: DALI training pipeline, DALI test pipeline (3 crops per
clip), DALI decode-only (the ceiling: decoding the clip's frames, nothing else), a PySlowFast-style PyAV
loader run serially, and the same in a torch DataLoader with worker processes. On the CPU the training and
test pipelines hand decoded frames to torch for the spatial ops, and the same pipelines with every op in the
DALI graph (`spatial="dali"`, what a GPU runs) are measured too. Ratios are taken within the
run, since absolute numbers drift with the machine.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from slowfast_trt.benchmarks.results import write_result
from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.pipelines import PlanSource, build_pipeline
from slowfast_trt.dali_pipelines.plan import multiview_plan, train_plan
from slowfast_trt.dali_pipelines.pyav_loader import PyAVClips
from slowfast_trt.data.manifest import Video
from slowfast_trt.model.config import SlowFastConfig


def _plans(videos: list[Video], cfg: SlowFastConfig, clips: int, seed: int):
    plans, epoch = [], 0
    while len(plans) < clips:
        plans += train_plan(videos, cfg, epoch, seed)
        epoch += 1
    return plans[:clips]


def _rate(batches, warmup: int = 1) -> tuple[float, int]:
    """Clips per second over `batches` after `warmup` batches; also the clip count timed."""
    it = iter(batches)
    for _ in range(warmup):
        next(it, None)
    n, start = 0, time.perf_counter()
    for b in it:
        label = b["label"]
        n += label.shape[0] if label.dim() > 0 else 1  # a batch, or a single dataset item
    elapsed = time.perf_counter() - start
    return (n / elapsed if elapsed > 0 and n else 0.0), n


def _clip_rate(test: ClipLoader) -> tuple[float, int]:
    """Clips/s and clips timed of a test loader, whose batches hold `views_per_sample` views of each clip."""
    views, n = _rate(test)
    return views / test.views_per_sample, n // test.views_per_sample


def _decode_rate(plans, cfg: SlowFastConfig, batch: int, device: str, threads: int) -> tuple[float, int]:
    """Clips/s of DALI decoding alone: the decode graph run directly, its outputs left inside DALI."""
    source = PlanSource(plans, batch, cfg, "decode")
    pipe = build_pipeline(source, cfg, "decode", batch, device, threads, prefetch=2)
    pipe.build()
    pipe.run()  # warm-up batch
    n, start = 0, time.perf_counter()
    while True:
        try:
            out = pipe.run()
        except StopIteration:
            break
        n += len(out[0])
    elapsed = time.perf_counter() - start
    return (n / elapsed if elapsed > 0 and n else 0.0), n


def bench_pipeline(videos: list[Video], cfg: SlowFastConfig, *, batch: int = 8, threads: int = 2, clips: int = 64,
                   device: str = "auto", seed: int = 0, progress=print) -> dict:
    """Measure every loader on `clips` clips of `videos`; returns the result dict (see module docstring)."""
    if not videos:
        raise SlowFastError("the manifest has no videos")
    clips = max(clips, 2 * batch)
    plans = _plans(videos, cfg, clips + batch, seed)  # one extra batch for warm-up
    rows: dict[str, dict] = {}

    def record(name: str, rate_n: tuple[float, int], note: str = "") -> None:
        rows[name] = {"clips_per_s": rate_n[0], "clips": rate_n[1], "note": note}
        progress(f"{name:28s} {rate_n[0]:8.2f} clips/s  ({rate_n[1]} clips){'  ' + note if note else ''}")

    loader = ClipLoader(plans, cfg, "train", batch, device=device, threads=threads, videos=videos)
    dali_device = loader.device
    how = "DALI decode, torch uint8 resize/crop/flip/normalise" if loader.spatial_in_torch else "every op in the DALI graph"
    record("dali_train", _rate(loader), how)
    test_plans = multiview_plan(videos, cfg, num_clips=max(1, -(-(clips + batch) // len(videos))))[: clips + batch]
    test = ClipLoader(test_plans, cfg, "test", batch, device=device, threads=threads)
    record("dali_test", _clip_rate(test), f"{test.views_per_sample} crops per clip; {how}")
    if loader.spatial_in_torch:  # the same pipelines with every op in the DALI graph (the GPU graph, run on the CPU)
        record("dali_train_graph_only", _rate(ClipLoader(plans, cfg, "train", batch, device=device, threads=threads, spatial="dali")),
               "every op in the DALI graph (DALI's CPU resize)")
        record("dali_test_graph_only", _clip_rate(ClipLoader(test_plans, cfg, "test", batch, device=device, threads=threads, spatial="dali")),
               "every op in the DALI graph")
    record("dali_decode_only", _decode_rate(plans, cfg, batch, dali_device, threads),
           "decoding the clips' frames inside DALI, outputs not handed to torch: the ceiling")
    record("pyav_serial", _rate(PyAVClips(plans, cfg, "train"), warmup=batch), "PySlowFast-style: PyAV decode + torch crop/flip/normalise, one process")
    dl = torch.utils.data.DataLoader(PyAVClips(plans, cfg, "train"), batch_size=batch, num_workers=threads, persistent_workers=False)
    record("pyav_dataloader", _rate(dl), f"torch DataLoader, {threads} workers")

    get = lambda k: rows[k]["clips_per_s"]  # noqa: E731
    ratios = {
        "dali_train_vs_pyav_serial": get("dali_train") / max(get("pyav_serial"), 1e-9),
        "dali_train_vs_pyav_dataloader": get("dali_train") / max(get("pyav_dataloader"), 1e-9),
        "dali_train_vs_decode_only": get("dali_train") / max(get("dali_decode_only"), 1e-9),
    }
    if "dali_train_graph_only" in rows:
        ratios["dali_train_vs_graph_only"] = get("dali_train") / max(get("dali_train_graph_only"), 1e-9)
        ratios["dali_test_vs_graph_only"] = get("dali_test") / max(get("dali_test_graph_only"), 1e-9)
    env = environment()
    return {
        "benchmark": "pipeline",
        **env,
        "device": f"DALI {dali_device} / {env['device']}",
        "settings": {"preset": cfg.name, "batch": batch, "threads": threads, "spatial_ops": "torch" if loader.spatial_in_torch else "dali", "clips": clips, "crop": cfg.crop_size,
                     "test_crop": cfg.test_crop_size, "clip": f"{cfg.num_frames}x{cfg.tau}, alpha={cfg.alpha}", "videos": len(videos),
                     "sizes": sorted({f"{v.width}x{v.height}" for v in videos})},
        "dali_train_clips_per_s": get("dali_train"),
        "dali_test_clips_per_s": get("dali_test"),
        "dali_decode_only_clips_per_s": get("dali_decode_only"),
        "pyav_serial_clips_per_s": get("pyav_serial"),
        "pyav_dataloader_clips_per_s": get("pyav_dataloader"),
        "ratios": ratios,
        "rows": rows,
    }


def to_markdown(result: dict) -> str:
    """The pipeline table with ratios."""
    s = result["settings"]
    lines = [f"Pipeline throughput on {result['device']} ({result['cpu_count']} CPU threads), preset {s['preset']}, "
             f"batch {s['batch']}, {s['threads']} threads, {s['clips']} clips, crop {s['crop']}", "",
             "| loader | clips/s | note |", "|---|---:|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['clips_per_s']:.2f} | {r['note']} |")
    lines += ["", "| ratio (same run) | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f}x |" for k, v in result["ratios"].items()]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write `result.json` and `pipeline.md` into `out_dir`."""
    return write_result(result, out_dir, to_markdown(result), "pipeline.md")
