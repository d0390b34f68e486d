"""Sharded evaluation: each torchrun rank, or each scheduler job given `--shard I/N`, scores its 1/N of the videos
(common.shards), and the per-video scores are joined into the result a single process gives.

Metrics are computed only after the join, from the per-video scores of every view setting, so top-1/top-5/mAP
are those of the whole set, not an average of per-shard numbers. A shard folder holds `shard.json` (what was
evaluated, labels, timings) and `scores.npz` (per-video scores, read without pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from slowfast_trt.common.device import resolve_device
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write, atomic_write_text
from slowfast_trt.common.shards import Shard, check_cover
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import Video
from slowfast_trt.training import distributed as dist_util
from slowfast_trt.training.evaluate import check_model_labels, label_array, view_scores
from slowfast_trt.training.metrics import predictions_of, results_of

SHARD_JSON = "shard.json"
SCORES = "scores.npz"
# What every shard of one evaluation must share; a merge of shards that differ in any of these is refused.
SAME = ("videos_sha256", "num_videos", "engine", "artifact", "precision", "clips", "crops", "multilabel", "num_classes")


def _videos_sha256(videos: list[Video]) -> str:
    return hashlib.sha256("\n".join(v.path for v in videos).encode()).hexdigest()


def score_shard(engine, videos: list[Video], shard: Shard, feed: FeedSpec) -> dict:
    """Per-video scores of `shard`'s videos of `videos` (every setting of `feed`'s views), with their labels: one shard's part."""
    cfg = engine.config
    check_model_labels(videos, cfg)
    positions = list(shard.indices(len(videos)))
    mine = [videos[i] for i in positions]
    run = view_scores({"engine": engine}, mine, feed)
    keep = [i for i, v in enumerate(mine) if v.path not in run.skipped]
    agg = run.aggs["engine"].subset(keep)
    return {
        "shard": [shard.index, shard.count],
        "num_videos": len(videos),
        "videos_sha256": _videos_sha256(videos),
        "engine": engine.name,
        "artifact": engine.info.get("path"),
        "precision": engine.precision,
        "clips": feed.num_clips,
        "crops": feed.num_crops,
        "batch_size": feed.batch_size,
        "multilabel": cfg.multilabel,
        "num_classes": cfg.num_classes,
        "positions": [positions[i] for i in keep],
        "paths": [mine[i].path for i in keep],
        "labels": [list(mine[i].label) if isinstance(mine[i].label, tuple) else mine[i].label for i in keep],
        "skipped": sorted(run.skipped),
        "views": run.views,
        "seconds": run.seconds,
        "scores": agg.all_video_scores() if keep else {},
    }


def merge(parts: list[dict], where: list[str] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(the evaluation result, per-video scores per setting) of shards 0/N .. N-1/N, in manifest order.

    The result has the keys of `evaluate.evaluate_engine`'s; a missing, repeated or foreign shard is a one-line error."""
    where = where or [f"rank {i}" for i in range(len(parts))]
    check_cover((Shard(*p["shard"]), w) for p, w in zip(parts, where, strict=True))
    first = parts[0]
    for p, w in zip(parts, where, strict=True):
        k = next((k for k in SAME if p.get(k) != first.get(k)), None)
        if k is not None:
            raise SlowFastError(
                f"{w} evaluated another {k} ({p.get(k)!r}) than {where[0]} ({first.get(k)!r}); merge shards of one evaluation"
            )
    order = sorted((pos, j, i) for j, p in enumerate(parts) for i, pos in enumerate(p["positions"]))
    names = next((list(p["scores"]) for p in parts if p["scores"]), [])
    scores = {n: np.stack([parts[j]["scores"][n][i] for _, j, i in order]) if order else np.zeros((0, 0)) for n in names}
    labels = [parts[j]["labels"][i] for _, j, i in order]
    if not order:
        raise SlowFastError("no video was scored in any shard (all skipped); see the skipped files in the shard folders")
    views, seconds = sum(p["views"] for p in parts), max(p["seconds"] for p in parts)
    result = {
        "engine": first["engine"],
        "artifact": first["artifact"],
        "precision": first["precision"],
        "videos": len(order),
        "skipped": sorted(s for p in parts for s in p["skipped"]),
        "clips": first["clips"],
        "crops": first["crops"],
        "views_per_s": views / seconds if seconds else None,  # all shards' views over the slowest shard's time
        "batch_size": first["batch_size"],
        "results": results_of(scores, label_array(labels, first["multilabel"], first["num_classes"]), first["multilabel"]),
        "predictions": predictions_of(scores),
        "video_paths": [parts[j]["paths"][i] for _, j, i in order],
        "shards": [{"shard": f"{p['shard'][0]}/{p['shard'][1]}", "videos": len(p["positions"]), "seconds": p["seconds"]} for p in parts],
    }
    return result, scores


def write_scores(scores: dict[str, np.ndarray], out_dir: str | os.PathLike) -> Path:
    """Per-video scores per view setting as `scores.npz` in `out_dir` (numpy arrays only: loads without pickle)."""
    path = Path(out_dir) / SCORES
    with atomic_write(path) as f:
        np.savez(f, **scores)
    return path


def write_shard(part: dict, out_dir: str | os.PathLike) -> Path:
    """`shard.json` + `scores.npz` of one shard into `out_dir`; the JSON is written last, so it marks a finished shard."""
    out = Path(out_dir)
    write_scores(part["scores"], out)
    meta = {k: v for k, v in part.items() if k != "scores"}
    atomic_write_text(out / SHARD_JSON, json.dumps(meta, indent=1) + "\n")
    return out


def read_shard(folder: str | os.PathLike) -> dict:
    """A shard folder written by `write_shard`; one without a finished shard is a one-line error."""
    folder = Path(folder)
    try:
        part = json.loads((folder / SHARD_JSON).read_text())
        with np.load(folder / SCORES, allow_pickle=False) as z:
            part["scores"] = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as e:
        raise SlowFastError(
            f"{folder} holds no finished evaluation shard ({e}); re-run that shard's `slowfast eval --shard I/N --out`"
        ) from None
    return part


def merge_folders(folders: list[str | os.PathLike]) -> tuple[dict, dict[str, np.ndarray]]:
    """`merge` of the shard folders `slowfast eval --shard I/N --out DIR` wrote."""
    return merge([read_shard(f) for f in folders], [str(f) for f in folders])


def score_shard_into(engine, videos: list[Video], shard: Shard, out_dir: str | os.PathLike, feed: FeedSpec) -> dict:
    """`--shard I/N`: score that shard into `out_dir` (`write_shard`); returns a summary of what was scored."""
    part = score_shard(engine, videos, shard, feed)
    write_shard(part, out_dir)
    return {"shard": str(shard), "videos": len(part["positions"]), "skipped": part["skipped"], "out": str(out_dir)}


def evaluate_ranks(engine, videos: list[Video], feed: FeedSpec) -> tuple[dict, dict[str, np.ndarray]] | None:
    """Under torchrun: every rank scores its share; rank 0 returns the joined (result, per-video scores), the others None."""
    info = dist_util.init(resolve_device(feed.device))
    part = score_shard(engine, videos, Shard(info.rank, info.world_size), feed)
    parts = dist_util.all_gather_object(part, info)
    dist_util.shutdown(info)
    return merge(parts) if info.is_main else None
