"""Multi-view testing: K clips x crops per video through the DALI test pipeline, scores aggregated per video.

One pass produces all four view settings (1x1, 1x3, Kx1, Kx3; the KxN run contains the others). Any
engine (checkpoint, ONNX, TensorRT plan) goes through the same code, so their accuracies are comparable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import multiview_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import Video
from slowfast_trt.training.metrics import ViewAggregator


def check_model_labels(videos: list[Video], cfg) -> None:
    """Every label must be one of the model's classes, and several labels need a multi-label model: otherwise the
    metrics would be computed over the wrong classes without a word."""
    for v in videos:
        labels = list(v.label) if isinstance(v.label, (list, tuple)) else [v.label]
        bad = [lab for lab in labels if not 0 <= int(lab) < cfg.num_classes]
        if bad:
            raise SlowFastError(
                f"{v.path} has label {bad[0]} but the model knows {cfg.num_classes} classes (0..{cfg.num_classes - 1}); "
                "evaluate on data labelled with the model's classes"
            )
        if len(labels) > 1 and not cfg.multilabel:
            raise SlowFastError(
                f"{v.path} has several labels ({';'.join(map(str, labels))}) but the model is single-label; "
                "evaluate a multi-label model, or give each row one label"
            )


def evaluate_engine(engine, videos: list[Video], feed: FeedSpec) -> dict:
    """Accuracy per view setting of `engine` (callable slow, fast -> logits/probs) on `videos` with `feed`'s
    `num_clips` x `num_crops` views; returns a result dict."""
    return evaluate_engines({"engine": engine}, videos, feed)["engine"]


def evaluate_engines(engines: dict, videos: list[Video], feed: FeedSpec) -> dict[str, dict]:
    """`evaluate_engine` for several engines over one decode: every batch of views goes through each engine in turn.

    The engines must take the same inputs (pathways, shapes, sampling); the clips are decoded once with the first
    engine's config, so comparisons (FP32 vs INT8) see identical views and decoding is not paid per engine.
    """
    first = next(iter(engines.values()))
    cfg = first.config
    for name, e in engines.items():
        if e.info["inputs"] != first.info["inputs"] or e.config.sampling != cfg.sampling or e.config.pathways != cfg.pathways:
            raise SlowFastError(f"{name} takes other inputs than {next(iter(engines))}; evaluate exports of the same model together")
    check_model_labels(videos, cfg)
    run = view_scores(engines, videos, feed)
    aggs, engine_s, views, elapsed, bad = run.aggs, run.engine_seconds, run.views, run.seconds, run.skipped
    if bad:
        keep = [i for i, v in enumerate(videos) if v.path not in bad]
        aggs = {k: a.subset(keep) for k, a in aggs.items()}
        videos = [videos[i] for i in keep]
    labels = label_array([v.label for v in videos], cfg.multilabel, cfg.num_classes)
    return {
        name: {
            "engine": engine.name,
            "artifact": engine.info.get("path"),
            "precision": engine.precision,
            "videos": len(videos),
            "skipped": sorted(bad),
            "clips": feed.num_clips,
            "crops": feed.num_crops,
            # decode + every engine's inference, end to end (so with several engines this is the shared pass's rate)
            "views_per_s": views / elapsed if elapsed else None,
            "engine_views_per_s": views / engine_s[name] if engine_s[name] else None,  # inside engine(slow, fast) only
            "batch_size": feed.batch_size,
            "results": aggs[name].results(labels),
            "predictions": aggs[name].predictions(),
            "video_paths": [v.path for v in videos],
        }
        for name, engine in engines.items()
    }


@dataclass
class ViewPass:
    """One decode of K x C views per video through one or more engines: the aggregated scores and the timings."""

    aggs: dict[str, ViewAggregator]
    engine_seconds: dict[str, float]  # inside engine(slow, fast) only
    views: int
    seconds: float  # decode + every engine, end to end
    skipped: dict[str, str]  # path -> reason, for files skipped with skip_bad


def view_scores(engines: dict, videos: list[Video], feed: FeedSpec) -> ViewPass:
    """Every engine's per-view probabilities of `videos` (`feed`'s K x C views), aggregated per video (the part of
    evaluation without labels; the Triton video models call it too). Non-finite scores stop the pass with the engine's name."""
    cfg = next(iter(engines.values())).config
    num_clips, num_crops = feed.num_clips, feed.num_crops
    loader = ClipLoader(multiview_plan(videos, cfg, num_clips), cfg, "test", feed, videos=videos)
    index = {v.index: i for i, v in enumerate(videos)}
    aggs = {k: ViewAggregator(len(videos), num_clips, num_crops, multilabel=cfg.multilabel) for k in engines}
    engine_s = dict.fromkeys(engines, 0.0)
    start, views = time.perf_counter(), 0
    for batch in progress_bar(loader, desc="eval", unit="batch", enabled=feed.progress, leave=False):
        clips = {p: batch[p] for p in cfg.pathways}
        vids = np.array([index[int(v)] for v in batch["video"].cpu()])
        for name, engine in engines.items():
            t0 = time.perf_counter()
            scores = engine(**clips, sampling=loader.cfg.sampling).float()
            if scores.is_cuda:
                torch.cuda.synchronize(scores.device)
            engine_s[name] += time.perf_counter() - t0
            if not torch.isfinite(scores).all():
                raise SlowFastError(
                    f"{name} gave non-finite scores (NaN or inf) on {sorted({videos[i].path for i in vids})[0]}; "
                    "its weights are probably NaN (a diverged or corrupt checkpoint): evaluate another checkpoint"
                )
            scores = to_probabilities(scores, engine.info, cfg.multilabel)
            aggs[name].add(vids, batch["clip"].cpu().numpy(), batch["crop"].cpu().numpy(), scores.cpu().numpy())
        views += len(vids)
    elapsed = time.perf_counter() - start
    return ViewPass(aggs, engine_s, views, elapsed, dict(loader.bad))


def to_probabilities(scores: torch.Tensor, info: dict, multilabel: bool) -> torch.Tensor:
    """Per-view scores as the aggregation takes them: an artifact that outputs logits (its sidecar's output kind)
    gets softmax (sigmoid for multi-label models); probabilities pass through. Shared with the Triton models."""
    if info.get("output", {}).get("kind", "logits") == "logits":
        return torch.sigmoid(scores) if multilabel else torch.softmax(scores, dim=-1)
    return scores


def agreement(a: dict, b: dict, setting: str) -> float:
    """Top-1 agreement (%) between two `evaluate_engine` results for one view setting (e.g. "10x3").

    Both must cover the same videos in the same order; a video skipped by one run makes them incomparable.
    """
    for r in (a, b):
        if "predictions" not in r or "video_paths" not in r:
            raise SlowFastError("an evaluation result without per-video predictions; re-run the evaluation with this version")
        if setting not in r["predictions"]:
            raise SlowFastError(f"view setting {setting!r} is not in the result (has {sorted(r['predictions'])})")
    if a["video_paths"] != b["video_paths"]:
        raise SlowFastError(
            "the two evaluations cover different videos (or another order); compare runs on the same manifest without skipped files"
        )
    pa, pb = a["predictions"][setting], b["predictions"][setting]
    if not pa:
        raise SlowFastError("no videos to compare")
    return 100.0 * sum(x == y for x, y in zip(pa, pb)) / len(pa)


def label_array(labels: list, multilabel: bool, num_classes: int) -> np.ndarray:
    """Manifest labels (an id, or a tuple of ids) as the metrics take them: ids, or a multi-hot matrix."""
    if not multilabel:
        return np.array([int(lab if not isinstance(lab, (list, tuple)) else lab[0]) for lab in labels])
    hot = np.zeros((len(labels), num_classes))
    for i, lab in enumerate(labels):
        hot[i, list(lab) if isinstance(lab, (list, tuple)) else [lab]] = 1
    return hot


def to_markdown(result: dict) -> str:
    """A Markdown table of one evaluation: one row per view setting."""
    metric_keys = sorted({k for r in result["results"].values() for k in r})
    lines = [
        f"Engine `{result['engine']}` ({result['artifact']}), {result['videos']} videos, {result['clips']} clips x {result['crops']} crops",
        "",
        "| views | " + " | ".join(metric_keys) + " |",
        "|---|" + "---:|" * len(metric_keys),
    ]
    for setting, r in result["results"].items():
        lines.append(f"| {setting} | " + " | ".join(f"{r[k]:.2f}" for k in metric_keys) + " |")
    return "\n".join(lines) + "\n"


def write_eval(result: dict, out_dir: str | Path, *, benchmark: str = "accuracy", markdown=to_markdown) -> dict[str, Path]:
    """Write `eval.json` (environment + result, tagged with its `benchmark` kind) and `eval.md` into `out_dir`."""
    out = Path(out_dir)
    paths = {"json": out / "eval.json", "markdown": out / "eval.md"}
    atomic_write_text(paths["json"], json.dumps({"benchmark": benchmark, **environment(), **result}, indent=2) + "\n")
    atomic_write_text(paths["markdown"], markdown(result))
    return paths
