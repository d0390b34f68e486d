"""Per-sample plans: which frames and which crop each clip uses, decided in Python from (seed, epoch, video).

Every random draw of the training pipeline (clip start, scale jitter, crop position, flip) is made here
with a generator seeded by (seed, epoch, video index), then handed to DALI as per-sample arguments. So an
epoch is reproducible sample by sample, a resumed run sees exactly the clips an uninterrupted run would,
and shards draw the same numbers as a single process would. The clip-index math comes from
`dali_pipelines.sampling`, the one definition shared with the PyAV reference decoder and the tests.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from slowfast_trt.common.bounds import check_fits
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines import sampling
from slowfast_trt.data.manifest import Video
from slowfast_trt.model.config import SlowFastConfig

PLAN_OBJECT_BYTES = 320  # a ClipPlan without its arrays, at least (see plan_bytes)


@dataclass(frozen=True)
class ClipPlan:
    """One clip to decode: the Fast frame indices, the Slow positions inside them, and the spatial window."""

    video: int
    path: str
    label: int | list[int]
    fast_idx: np.ndarray  # frame numbers into the video, alpha*T of them
    slow_pos: np.ndarray  # positions inside fast_idx that form the Slow clip, T of them
    clip: int = 0  # test clip k of K (0 for training)
    roi: tuple[float, float, float, float] | None = None  # train: (y0, x0, y1, x1) in source pixels; x0 > x1 flips
    flip: bool = False
    window: tuple[int, int, int, int] | None = None  # train: (rh, rw, y, x): frame resized to rh x rw, crop at (y, x)
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def slow_idx(self) -> np.ndarray:
        return self.fast_idx[self.slow_pos]


def slow_positions(fast_idx: np.ndarray, slow_idx: np.ndarray) -> np.ndarray:
    """Positions in `fast_idx` of each Slow frame (the Slow clip is a subset of the Fast clip by construction)."""
    pos = []
    for s in slow_idx:
        hits = np.flatnonzero(fast_idx == s)
        if not len(hits):
            raise AssertionError(f"Slow frame {s} is not among the Fast frames {fast_idx.tolist()}")
        pos.append(int(hits[0]))
    return np.asarray(pos, dtype=np.int32)


def _indices(cfg: SlowFastConfig, video: Video, start: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    return clip_indices(start, span, cfg.fast_frames, video.frame_count, cfg.num_frames, cfg.sampling)


@functools.lru_cache(maxsize=1 << 16)
def clip_indices(start: int, span: int, alpha_T: int, n: int, T: int, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """(Fast frame numbers, Slow positions among them) of one clip, cached (read-only arrays): a 200k-video epoch
    plan repeats few (start, frame count) pairs, and the index math was most of its start-up time."""
    fast = sampling.fast_indices(start, span, alpha_T, n, convention)
    slow = sampling.slow_indices(fast, T, convention)
    out = fast.astype(np.int32), slow_positions(fast, slow)
    for a in out:
        a.setflags(write=False)
    return out


def jitter_range(cfg: SlowFastConfig) -> tuple[int, int]:
    """Short-side scale jitter for training: [256, 320] at the paper's 256 test crop, proportionally otherwise."""
    return cfg.test_crop_size, int(round(cfg.test_crop_size * 320 / 256))


def short_side_size(height: int, width: int, short: int, at_least: int = 0) -> tuple[int, int]:
    """(H, W) of a frame whose short side is resized to `short`, aspect kept, rounded to whole pixels (>= `at_least`)."""
    scale = short / min(height, width)
    return max(at_least, int(round(height * scale))), max(at_least, int(round(width * scale)))


def train_window(
    height: int, width: int, crop: int, short_range: tuple[int, int], rng: np.random.Generator, allow_flip: bool = True
) -> tuple[tuple[float, float, float, float], bool, tuple[int, int, int, int]]:
    """Scale jitter + random crop + random flip: (roi, flip, window).

    window = (rh, rw, y, x): the frame resized to rh x rw (short side drawn from `short_range`), then the crop x crop
    square at (y, x), as PySlowFast does it (the CPU pipelines' torch ops follow it literally). roi = the same
    square as a source-pixel window (y0, x0, y1, x1), x0 > x1 when flipped, for DALI's one-pass ROI resize (GPU).
    The flip is drawn even when not allowed, so the other draws do not depend on `allow_flip`."""
    short = int(rng.integers(short_range[0], short_range[1] + 1))
    rh, rw = short_side_size(height, width, short, at_least=crop)
    y = int(rng.integers(0, rh - crop + 1))
    x = int(rng.integers(0, rw - crop + 1))
    sy, sx = height / rh, width / rw
    y0, y1, x0, x1 = y * sy, (y + crop) * sy, x * sx, (x + crop) * sx
    flip = bool(rng.integers(0, 2)) and allow_flip
    return ((y0, x1, y1, x0) if flip else (y0, x0, y1, x1)), flip, (rh, rw, y, x)


def epoch_order(num_videos: int, epoch: int, seed: int) -> np.ndarray:
    """The epoch's permutation of all videos (identical in every shard)."""
    return np.random.default_rng([seed, epoch, 0x5F]).permutation(num_videos)


def shard(order: np.ndarray, shard_id: int, num_shards: int) -> np.ndarray:
    """This shard's part of an epoch: every num_shards-th video, so shards are disjoint and cover the set."""
    if not 0 <= shard_id < num_shards:
        raise SlowFastError(f"shard_id must be in [0, {num_shards - 1}], got {shard_id}")
    return order[shard_id::num_shards]


def train_plan(
    videos: list[Video], cfg: SlowFastConfig, epoch: int, seed: int = 0, shard_id: int = 0, num_shards: int = 1
) -> list[ClipPlan]:
    """One random clip per video of this shard, in the epoch's shuffled order."""
    if not videos:
        raise SlowFastError("the manifest has no videos")
    plans = []
    short_range = jitter_range(cfg)
    for i in shard(epoch_order(len(videos), epoch, seed), shard_id, num_shards):
        v = videos[int(i)]
        rng = np.random.default_rng([seed, epoch, v.index])
        span = sampling.clip_span(cfg.num_frames, cfg.tau, v.fps)
        start = sampling.train_start(v.frame_count, span, rng)
        fast, slow_pos = _indices(cfg, v, start, span)
        roi, flip, window = train_window(v.height, v.width, cfg.crop_size, short_range, rng, cfg.train_flip)
        plans.append(ClipPlan(v.index, v.path, v.label, fast, slow_pos, 0, roi, flip, window))
    return plans


def plan_bytes(cfg: SlowFastConfig) -> int:
    """Memory of one ClipPlan at least: its frame-index arrays, and the object (625 bytes a plan of the tiny preset
    measured with tracemalloc, 288 of them in the arrays)."""
    return 8 * (cfg.fast_frames + cfg.num_frames) + PLAN_OBJECT_BYTES


def multiview_plan(videos: list[Video], cfg: SlowFastConfig, num_clips: int = 10) -> list[ClipPlan]:
    """K uniformly spaced clips per video (each later cut into the three test crops), in manifest order."""
    if not videos:
        raise SlowFastError("the manifest has no videos")
    if num_clips < 1:
        raise SlowFastError(f"--clips must be >= 1, got {num_clips}")
    check_fits("--clips", num_clips, f"the command line, for {len(videos)} videos", lambda k: len(videos) * k * plan_bytes(cfg))
    plans = []
    for v in videos:
        span = sampling.clip_span(cfg.num_frames, cfg.tau, v.fps)
        for k in range(num_clips):
            start = sampling.test_start(v.frame_count, span, k, num_clips)
            fast, slow_pos = _indices(cfg, v, start, span)
            plans.append(ClipPlan(v.index, v.path, v.label, fast, slow_pos, k))
    return plans


def calibration_plan(videos: list[Video], cfg: SlowFastConfig, num_clips: int, seed: int = 0) -> list[ClipPlan]:
    """`num_clips` test-style clips (centre clip of randomly chosen videos, deterministic with `seed`)."""
    if num_clips < 1:
        raise SlowFastError(f"--clips must be >= 1, got {num_clips}")
    if len(videos) < num_clips:
        raise SlowFastError(
            f"calibration needs {num_clips} clips but the manifest has only {len(videos)} videos; pass --clips {len(videos)} or a larger manifest"
        )
    chosen = np.random.default_rng([seed, 0xCA1]).choice(len(videos), size=num_clips, replace=False)
    return [p for p in multiview_plan([videos[int(i)] for i in sorted(chosen)], cfg, num_clips=1)]
