"""The clip-index math: the reference's 4x16 positions, strided sampling, clamping, train/test starts."""

from __future__ import annotations

import numpy as np
import pytest

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines import sampling as s


def test_pyslowfast_4x16_positions():
    span = s.clip_span(4, 16)
    assert span == 64
    fast = s.fast_indices(10, span, 32, 500, "pyslowfast")
    assert fast.dtype == np.int64 and len(fast) == 32
    assert fast[0] == 10 and fast[-1] == 10 + 63
    assert (fast - 10)[:5].tolist() == [0, 2, 4, 6, 8]
    slow = s.slow_indices(fast, 4, "pyslowfast")
    # Slow = Fast positions 0, 10, 20, 31 (truncated linspace), not every 8th Fast frame.
    assert [int(np.flatnonzero(fast == v)[0]) for v in slow] == [0, 10, 20, 31]
    assert (slow - 10).tolist() == [0, 20, 40, 63]


def test_strided_4x16_and_8x8():
    fast = s.fast_indices(5, s.clip_span(4, 16), 32, 500, "strided")
    assert (fast - 5).tolist() == list(range(0, 64, 2))
    assert (s.slow_indices(fast, 4, "strided") - 5).tolist() == [0, 16, 32, 48]
    fast = s.fast_indices(0, s.clip_span(8, 8), 32, 500, "strided")
    assert fast.tolist() == list(range(0, 64, 2))
    assert s.slow_indices(fast, 8, "strided").tolist() == list(range(0, 64, 8))


@pytest.mark.parametrize("convention", s.CONVENTIONS)
def test_clamped_to_short_video_and_slow_subset_of_fast(convention):
    fast = s.fast_indices(0, 64, 32, 40, convention)
    assert fast.min() == 0 and fast.max() == 39 and np.all(np.diff(fast) >= 0)
    assert (fast == 39).sum() > 1  # the tail repeats the last frame (edge padding), as the reference does
    slow = s.slow_indices(fast, 4, convention)
    assert set(slow.tolist()) <= set(fast.tolist()) and slow.max() <= 39


def test_clip_span_scales_with_fps():
    assert s.clip_span(8, 8, fps=60) == 128
    assert s.clip_span(4, 16, fps=15) == 32
    assert s.clip_span(4, 16, fps=29.97) == 64
    with pytest.raises(SlowFastError, match="fps"):
        s.clip_span(4, 16, fps=0)


def test_train_start_uniform_and_in_range():
    rng = np.random.default_rng(0)
    starts = [s.train_start(100, 64, rng) for _ in range(2000)]
    assert min(starts) == 0 and max(starts) == 36
    assert len(set(starts)) == 37
    assert s.train_start(40, 64, rng) == 0  # shorter than a clip: start at 0 and clamp the indices


def test_test_starts_k10_and_centre():
    assert [s.test_start(164, 64, k, 10) for k in range(10)] == list(range(0, 100, 10))
    assert [s.test_start(100, 64, k, 10) for k in range(10)] == [int(np.floor(36 * k / 10)) for k in range(10)]
    assert s.test_start(100, 64, 0, 1) == 18  # K = 1: the centre clip, as PySlowFast
    assert s.test_start(30, 64, 3, 10) == 0
    with pytest.raises(SlowFastError):
        s.test_start(100, 64, 10, 10)


def test_unknown_convention():
    with pytest.raises(SlowFastError, match="convention"):
        s.fast_indices(0, 64, 32, 100, "uniform")


def test_train_flip_off_keeps_every_other_draw():
    """`train_flip=False` (data whose classes depend on left/right) never flips and leaves clips and crops unchanged."""
    from slowfast_trt.dali_pipelines.plan import train_plan
    from slowfast_trt.data.manifest import Video
    from slowfast_trt.model.zoo import get_config

    videos = [Video(i, f"v{i}.webm", i % 2, 120, 30.0, 80, 64) for i in range(32)]
    on = train_plan(videos, get_config("slowfast_tiny_4x16"), epoch=1, seed=3)
    off = train_plan(videos, get_config("slowfast_tiny_4x16", train_flip=False), epoch=1, seed=3)
    assert any(p.flip for p in on) and not any(p.flip for p in off)
    for a, b in zip(on, off):
        assert a.video == b.video and (a.fast_idx == b.fast_idx).all()
        y0, x0, y1, x1 = a.roi
        assert b.roi == ((y0, x1, y1, x0) if a.flip else a.roi)
