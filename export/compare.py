"""FP32 vs INT8 (or any two engines) in one run: multi-view accuracy, top-1 agreement and clips/s, as JSON + Markdown.

Both engines see the same videos through the same DALI test pipeline (`training.evaluate.evaluate_engine`).
Speed is measured twice: inside the evaluation (engine calls only, views/s, so decoding does not count), and
on one fixed batch of real clips with the two engines interleaved round by round, so that load from other
processes on a shared CPU hits both alike; the ratio comes from that interleaved run.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from common.io import atomic_write_text

SPEED_BATCH = 4  # clips per speed batch (x crops views)


def _speed(engines_: dict, clips: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each engine on the same batch, interleaved (one warm-up call each, not recorded)."""
    times: dict[str, list[float]] = {name: [] for name in engines_}
    for e in engines_.values():
        e(**clips)
    for _ in range(repeats):
        for name, e in engines_.items():
            t0 = time.perf_counter()
            e(**clips)
            times[name].append(time.perf_counter() - t0)
    return times


def compare(
    fp32: str | os.PathLike,
    int8: str | os.PathLike,
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    num_clips: int = 10,
    num_crops: int = 3,
    batch_size: int = 4,
    device: str = "cpu",
    threads: int = 2,
    engine_threads: int | None = None,
    repeats: int = 10,
    progress: bool = True,
) -> dict:
    """Evaluate `fp32` and `int8` (any artifacts `engines.load` opens) on `manifest`; write result.json and result.md."""
    import engines
    from benchmarks.environment import environment
    from dali_pipelines.loader import ClipLoader
    from dali_pipelines.plan import multiview_plan
    from training.evaluate import agreement, evaluate_engine
    from training.run import _manifest_videos

    _, videos = _manifest_videos(str(manifest), "evaluation")
    loaded = {"fp32": engines.load(fp32, device=device, threads=engine_threads),
              "int8": engines.load(int8, device=device, threads=engine_threads)}
    cfgs = {k: e.config for k, e in loaded.items()}
    if cfgs["fp32"].pathways != cfgs["int8"].pathways or loaded["fp32"].info["inputs"] != loaded["int8"].info["inputs"]:
        from common.errors import SlowFastError

        raise SlowFastError(f"{fp32} and {int8} take different inputs; compare exports of the same model")
    evals = {k: evaluate_engine(e, videos, num_clips=num_clips, num_crops=num_crops, batch_size=batch_size, device=device,
                                threads=threads, progress=progress) for k, e in loaded.items()}
    cfg = cfgs["fp32"]
    batch = next(iter(ClipLoader(multiview_plan(videos[:SPEED_BATCH], cfg, 1), cfg, "test", SPEED_BATCH, device=device,
                                 threads=threads, num_crops=num_crops)))
    clips = {p: batch[p] for p in cfg.pathways}
    views = int(batch["video"].shape[0])
    times = _speed(loaded, clips, repeats)

    settings = list(evals["fp32"]["results"])
    accuracy = {}
    for s in settings:
        a, b = evals["fp32"]["results"][s], evals["int8"]["results"][s]
        key = "top1" if "top1" in a else "mAP"
        accuracy[s] = {"metric": key, "fp32": a[key], "int8": b[key], "delta": b[key] - a[key],
                       "top1_agreement": agreement(evals["fp32"], evals["int8"], s)}
    speed = {k: {"batch_views": views, "median_s": statistics.median(t), "clips_per_s": views / statistics.median(t),
                 "eval_engine_clips_per_s": evals[k]["engine_views_per_s"], "eval_end_to_end_clips_per_s": evals[k]["views_per_s"]}
             for k, t in times.items()}
    speed["int8_vs_fp32"] = speed["int8"]["clips_per_s"] / speed["fp32"]["clips_per_s"]
    result = {
        "benchmark": "int8-vs-fp32",
        **environment(),
        "artifacts": {k: str(v) for k, v in (("fp32", fp32), ("int8", int8))},
        "calibration": loaded["int8"].info.get("calibration"),
        "settings": {"manifest": str(manifest), "videos": len(videos), "clips": num_clips, "crops": num_crops,
                     "batch_size": batch_size, "device": device, "dali_threads": threads, "engine_threads": engine_threads,
                     "speed_repeats": repeats},
        "accuracy": accuracy,
        "speed": speed,
        "samples": {"speed_s": times},
        "evaluations": evals,
    }
    out = Path(out_dir)
    atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "result.md", to_markdown(result))
    return result


def to_markdown(result: dict) -> str:
    """The comparison as two Markdown tables: accuracy per view setting, and speed."""
    st = result["settings"]
    lines = [f"FP32 `{result['artifacts']['fp32']}` vs INT8 `{result['artifacts']['int8']}` on {st['videos']} videos, "
             f"{st['clips']} clips x {st['crops']} crops, {result['device']}", "",
             "| views | FP32 | INT8 | delta | top-1 agreement % |", "|---|---:|---:|---:|---:|"]
    for s, a in result["accuracy"].items():
        lines.append(f"| {s} ({a['metric']}) | {a['fp32']:.2f} | {a['int8']:.2f} | {a['delta']:+.2f} | {a['top1_agreement']:.1f} |")
    sp = result["speed"]
    lines += ["", f"Speed ({sp['fp32']['batch_views']} views per call, median of {st['speed_repeats']} interleaved calls; "
              "during eval: engine calls only, and end to end with DALI decoding):", "",
              "| engine | clips/s | clips/s in eval | end to end in eval |", "|---|---:|---:|---:|"]
    for k in ("fp32", "int8"):
        lines.append(f"| {k} | {sp[k]['clips_per_s']:.1f} | {sp[k]['eval_engine_clips_per_s']:.1f} | {sp[k]['eval_end_to_end_clips_per_s']:.1f} |")
    lines += ["", f"INT8 / FP32 speed: {sp['int8_vs_fp32']:.2f}x"]
    return "\n".join(lines) + "\n"
