"""Encoded video bytes -> per-video scores, exactly as `slowfast eval` computes them.

`training.evaluate.view_scores` does the work: `multiview_plan` (K uniformly spaced clips with the artifact's own
sampling config), the `ClipLoader` test pipeline (DALI decode; C crops), the engine, and the `ViewAggregator`
(softmax averaged over the K x C views, or sigmoid max-pooled for multi-label models). The
Triton Python-backend video model and the local reference of `slowfast bench serve` both call `score_videos`;
the plan step of the DALI ensemble calls `decode_plan`.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.plan import multiview_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import Video
from slowfast_trt.data.video_io import VideoError, probe
from slowfast_trt.training.evaluate import view_scores


@dataclass
class VideoScores:
    """Per video: the aggregated scores (num_classes,) or the reason it could not be scored."""

    scores: np.ndarray | None
    error: str | None = None


def _probe(path: str, index: int):
    try:
        info = probe(path)
    except (VideoError, OSError, ValueError) as e:
        raise SlowFastError(f"the VIDEO bytes are not a decodable video ({str(e).splitlines()[0][:200]})") from None
    return Video(index, path, 0, info.num_frames, info.fps, info.width, info.height), info.codec


def setting(num_clips: int, num_crops: int) -> str:
    """The ViewAggregator setting that uses every view of a K x C pass."""
    return "K" + ("x3" if num_crops == 3 else "x1")


def _score_files(engine, paths: list[str], feed: FeedSpec) -> np.ndarray:
    videos = [_probe(p, i)[0] for i, p in enumerate(paths)]
    agg = view_scores({"engine": engine}, videos, feed).aggs["engine"]
    agg.check_complete()
    return agg.video_scores(setting(feed.num_clips, feed.num_crops)).astype(np.float32)


def score_videos(engine, blobs: list[bytes], feed: FeedSpec) -> list[VideoScores]:
    """Scores of each encoded video in `blobs` with `feed`'s K x C views (one decode pass for all); a bad video gets its
    reason, the rest their scores."""
    with tempfile.TemporaryDirectory(prefix="slowfast-serve-") as tmp:
        paths = []
        for i, blob in enumerate(blobs):
            p = Path(tmp) / f"video{i}"
            p.write_bytes(bytes(blob))
            paths.append(str(p))
        try:
            scores = _score_files(engine, paths, feed)
            return [VideoScores(s) for s in scores]
        except SlowFastError as e:
            if len(paths) == 1:
                return [VideoScores(None, _clean(str(e), tmp))]
        out = []  # one bad video in a batch: score each alone so the others still get their answer
        for p in paths:
            try:
                out.append(VideoScores(_score_files(engine, [p], feed)[0]))
            except SlowFastError as e:
                out.append(VideoScores(None, _clean(str(e), tmp)))
        return out


def _clean(message: str, tmp: str) -> str:
    """Error text without the server's temporary file names."""
    return re.sub(re.escape(tmp) + r"/video\d+:?\s*", "", message)


def decode_plan(blob: bytes, cfg, num_clips: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the DALI model decodes for one video, from the same `multiview_plan` as the Python-backend model: the sorted
    distinct frame numbers of its K clips (int32), and the positions in that list of each clip's Fast frames (K*alpha*T)
    and Slow frames (K*T), clip after clip. Overlapping clips of a short video share decoded frames."""
    fd, path = tempfile.mkstemp(prefix="slowfast-serve-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(blob))
        video, _ = _probe(path, 0)
        plans = multiview_plan([video], cfg, num_clips)
    finally:
        os.unlink(path)
    frames = np.unique(np.concatenate([p.fast_idx for p in plans])).astype(np.int32)
    fast = np.concatenate([np.searchsorted(frames, p.fast_idx) for p in plans]).astype(np.int32)
    slow = np.concatenate([np.searchsorted(frames, p.slow_idx) for p in plans]).astype(np.int32)
    return frames, fast, slow
