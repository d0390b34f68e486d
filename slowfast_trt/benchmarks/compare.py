"""FP32 vs INT8 (or any two engines) in one run: multi-view accuracy, top-1 agreement and clips/s, as JSON + Markdown.

Every engine sees the same views: the clips are decoded once and each batch goes through all engines
(`training.evaluate.evaluate_engines`).
Speed is measured twice: inside the evaluation (engine calls only, views/s, so decoding does not count), and
on one fixed batch of real clips with the two engines interleaved round by round, so that load from other
processes on a shared CPU hits both alike; the ratio comes from that interleaved run.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from slowfast_trt import engines
from slowfast_trt.common.environment import environment
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import multiview_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import load_manifest_videos
from slowfast_trt.training.evaluate import agreement, evaluate_engines

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
    feed: FeedSpec,
    *,
    extra: Sequence[str | os.PathLike] = (),
    engine_threads: int | None = None,
    repeats: int = 10,
    qdq: str = "auto",
    with_kernels: bool = False,
) -> dict:
    """Evaluate `fp32`, `int8` and any `extra` artifacts on `manifest` over one decode with `feed`'s views; write
    result.json and result.md.

    Each view goes through every engine (`training.evaluate.evaluate_engines`), so all see identical clips.
    `qdq` says how ONNX Runtime runs the INT8 model (`engines.ort_engine`); `with_kernels` adds, when that is
    the Q/DQ emulation, the same INT8 file through ONNX Runtime's int8 kernels as a row named "int8-ort-kernels".
    """
    _, videos = load_manifest_videos(str(manifest), "evaluation")
    device = feed.device
    paths = {"fp32": fp32, "int8": int8, **{Path(x).name: x for x in extra}}
    loaded = {k: engines.load(v, device=device, threads=engine_threads, qdq=qdq) for k, v in paths.items()}
    if with_kernels and getattr(loaded["int8"], "qdq", None) == "emulate":
        paths["int8-ort-kernels"] = int8
        loaded["int8-ort-kernels"] = engines.load(int8, device=device, threads=engine_threads, qdq="kernels")
    evals = evaluate_engines(loaded, videos, feed)
    cfg = loaded["fp32"].config
    speed_feed = feed.but(batch_size=SPEED_BATCH, skip_bad=False)
    batch = next(iter(ClipLoader(multiview_plan(videos[:SPEED_BATCH], cfg, 1), cfg, "test", speed_feed)))
    clips = {p: batch[p] for p in cfg.pathways}
    times = _speed(loaded, clips, repeats)
    result = {
        "benchmark": "int8-vs-fp32",
        **environment(),
        "artifacts": {k: str(v) for k, v in paths.items()},
        "calibration": {k: e.info.get("calibration") for k, e in loaded.items() if k != "fp32"},
        "engines": {k: e.name for k, e in loaded.items()},
        "settings": {
            "manifest": str(manifest),
            "videos": len(videos),
            "clips": feed.num_clips,
            "crops": feed.num_crops,
            "batch_size": feed.batch_size,
            "device": device,
            "dali_threads": feed.dali_threads,
            "engine_threads": engine_threads,
            "speed_repeats": repeats,
            "end_to_end_views_per_s": evals["fp32"]["views_per_s"],
        },
        "accuracy": _accuracy(evals, list(paths)[1:]),
        "speed": _speed_table(evals, times, int(batch["video"].shape[0]), list(paths)[1:]),
        "samples": {"speed_s": times},
        "evaluations": evals,
    }
    out = Path(out_dir)
    atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "result.md", to_markdown(result))
    return result


def _accuracy(evals: dict[str, dict], others: list[str]) -> dict[str, dict]:
    """Per view setting: FP32's top-1 (mAP), each other engine's value, its difference and its top-1 agreement with FP32."""
    accuracy = {}
    for s in evals["fp32"]["results"]:
        ref = evals["fp32"]["results"][s]
        key = "top1" if "top1" in ref else "mAP"
        row = {"metric": key, "fp32": ref[key]}
        for name in others:
            got = evals[name]["results"][s][key]
            entry = {"value": got, "delta": got - ref[key], "top1_agreement": agreement(evals["fp32"], evals[name], s)}
            if name == "int8":
                row.update(int8=got, delta=entry["delta"], top1_agreement=entry["top1_agreement"])
            else:
                row.setdefault("others", {})[name] = entry
        accuracy[s] = row
    return accuracy


def _speed_table(evals: dict[str, dict], times: dict[str, list[float]], views: int, others: list[str]) -> dict[str, dict]:
    """Clips/s of each engine on the interleaved batch (and inside the evaluation), the others relative to FP32."""
    speed = {
        k: {
            "batch_views": views,
            "median_s": statistics.median(t),
            "clips_per_s": views / statistics.median(t),
            "eval_engine_clips_per_s": evals[k]["engine_views_per_s"],
        }
        for k, t in times.items()
    }
    for k in others:
        speed[k]["vs_fp32"] = speed[k]["clips_per_s"] / speed["fp32"]["clips_per_s"]
    return speed


def to_markdown(result: dict) -> str:
    """The comparison as Markdown tables: accuracy per view setting (and per extra artifact), and speed."""
    st = result["settings"]
    arts = result["artifacts"]
    lines = [
        f"FP32 `{arts['fp32']}` vs INT8 `{arts['int8']}` on {st['videos']} videos, "
        f"{st['clips']} clips x {st['crops']} crops, {result['device']}; INT8 run as "
        f"`{result.get('engines', {}).get('int8', 'int8')}`",
        "",
        "| views | FP32 | INT8 | delta | top-1 agreement % |",
        "|---|---:|---:|---:|---:|",
    ]
    for s, a in result["accuracy"].items():
        lines.append(f"| {s} ({a['metric']}) | {a['fp32']:.2f} | {a['int8']:.2f} | {a['delta']:+.2f} | {a['top1_agreement']:.1f} |")
    extras = [k for k in arts if k not in ("fp32", "int8")]
    if extras:
        lines += ["", "| views | artifact | value | delta vs FP32 | top-1 agreement % |", "|---|---|---:|---:|---:|"]
        for s, a in result["accuracy"].items():
            for k in extras:
                e = a["others"][k]
                lines.append(f"| {s} | `{k}` | {e['value']:.2f} | {e['delta']:+.2f} | {e['top1_agreement']:.1f} |")
    sp = result["speed"]
    lines += [
        "",
        f"Speed ({sp['fp32']['batch_views']} views per call, median of {st['speed_repeats']} interleaved calls; "
        "and engine calls only during the evaluation):",
        "",
        "| engine | clips/s | vs FP32 | clips/s in eval |",
        "|---|---:|---:|---:|",
    ]
    for k in arts:
        ratio = f"{sp[k]['vs_fp32']:.2f}x" if "vs_fp32" in sp[k] else "1"
        lines.append(
            f"| {k} (`{result.get('engines', {}).get(k, k)}`) | {sp[k]['clips_per_s']:.1f} | {ratio} | {sp[k]['eval_engine_clips_per_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"
