"""The CPU pipelines' spatial ops in torch (dali_pipelines/spatial.py): geometry against the whole-frame definition."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slowfast_trt import model
from slowfast_trt.dali_pipelines import spatial
from slowfast_trt.dali_pipelines.plan import short_side_size, train_plan
from slowfast_trt.data.manifest import Video


def _frames(h: int, w: int, n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize(
    "h,w,crop,short", [(240, 320, 224, (256, 320)), (320, 240, 224, (256, 320)), (720, 1280, 96, (128, 160)), (64, 80, 64, (64, 80))]
)
def test_train_crop_equals_resizing_the_whole_frame(h, w, crop, short):
    """Resizing only up to the window's far edges gives the pixels of PySlowFast's resize-then-crop, bit for bit."""
    cfg = model.get_config("slowfast_r50_4x16", crop_size=crop, test_crop_size=short[0])
    videos = [Video(i, f"v{i}", 0, 96, 30.0, w, h) for i in range(12)]
    frames = _frames(h, w)
    seen_flip = False
    for p in train_plan(videos, cfg, epoch=0, seed=1):
        rh, rw, y, x = p.window
        assert short[0] <= min(rh, rw) <= short[1] + 1
        whole = F.interpolate(frames.permute(0, 3, 1, 2), size=(rh, rw), mode="bilinear", align_corners=False, antialias=False)
        want = whole[:, :, y : y + crop, x : x + crop]
        if p.flip:
            want, seen_flip = want.flip(-1), True
        got = spatial.train_crop(frames, p, crop)
        assert got.shape == (4, crop, crop, 3) and got.dtype == torch.uint8
        assert torch.equal(got, want.permute(0, 2, 3, 1))
    assert seen_flip


def test_test_crops_positions_and_sizes():
    frames = _frames(240, 320)
    views = spatial.test_crops(frames, 128, (0.0, 0.5, 1.0))
    nh, nw = short_side_size(240, 320, 128, at_least=128)
    assert (nh, nw) == (128, 171)
    short = F.interpolate(frames.permute(0, 3, 1, 2), size=(nh, nw), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    for v, x in zip(views, (0, 22, 43)):  # anchors round half up: (171 - 128) * 0.5 = 21.5 -> 22
        assert torch.equal(v, short[:, :, x : x + 128])
    portrait = spatial.test_crops(_frames(320, 240), 128, (0.0, 1.0))
    assert [tuple(v.shape) for v in portrait] == [(4, 128, 128, 3)] * 2


def test_batches_normalise_and_take_the_slow_frames():
    cfg = model.get_config("slowfast_r50_4x16", crop_size=64, test_crop_size=96)
    videos = [Video(i, f"v{i}", 0, 96, 30.0, 96, 72) for i in range(3)]
    plans = train_plan(videos, cfg, epoch=0)
    frames = [_frames(72, 96, n=cfg.fast_frames, seed=i) for i in range(3)]
    pool = spatial.BufferPool()
    slow, fast = spatial.train_batch(frames, plans, cfg, pool, batch_size=4)
    assert fast.shape == (3, cfg.fast_frames, 64, 64, 3) and slow.shape == (3, cfg.num_frames, 64, 64, 3)
    for i, p in enumerate(plans):
        crop = spatial.train_crop(frames[i], p, 64).float()
        expect = (crop / 255 - cfg.mean[0]) / cfg.std[0]
        assert torch.allclose(fast[i], expect, atol=1e-5)
        assert torch.equal(slow[i], fast[i][torch.tensor(p.slow_pos.tolist())])
    tslow, tfast = spatial.test_batch(frames, plans, cfg, (0.0, 0.5, 1.0), pool, batch_size=4)
    assert tfast.shape == (9, cfg.fast_frames, 96, 96, 3) and tslow.shape == (9, cfg.num_frames, 96, 96, 3)
    for c in range(3):
        for i, p in enumerate(plans):
            view = spatial.test_crops(frames[i], 96, (0.0, 0.5, 1.0))[c].float()
            assert torch.allclose(tfast[c * 3 + i], (view / 255 - cfg.mean[0]) / cfg.std[0], atol=1e-5)
            assert torch.equal(tslow[c * 3 + i], tfast[c * 3 + i][torch.tensor(p.slow_pos.tolist())])
    bad = dataclasses.replace(plans[0], window=(70, 90, 10, 0))  # a 64 crop at row 10 needs 74 rows
    with pytest.raises(Exception, match="does not hold"):
        spatial.train_crop(frames[0], bad, 64)
    assert np.isfinite(fast.numpy()).all()


def test_pooled_intermediates_are_exact_and_stop_allocating_once_grown():
    """Windows differ from clip to clip; the pool's scratch buffers give the same crops as fresh tensors, and after
    one pass over an epoch's plans a second pass allocates nothing new (the rule behind flat memory in a soak)."""
    cfg = model.get_config("slowfast_r50_4x16", crop_size=64)
    videos = [Video(i, f"v{i}", 0, 96, 30.0, 96, 72) for i in range(12)]
    plans = [p for e in range(3) for p in train_plan(videos, cfg, epoch=e)]
    assert {p.flip for p in plans} == {True, False} and len({p.window[:2] for p in plans}) > 3
    frames = _frames(72, 96, n=8)
    pool = spatial.BufferPool()
    for p in plans:
        got = spatial.train_crop(frames, p, 64, pool)
        assert torch.equal(got, spatial.train_crop(frames, p, 64))
    ptrs = {k: (b.untyped_storage().data_ptr(), b.untyped_storage().nbytes()) for k, b in pool._scratch.items()}
    assert set(ptrs) >= {"resized", "flipped"}
    for p in plans:
        spatial.train_crop(frames, p, 64, pool)
    assert {k: (b.untyped_storage().data_ptr(), b.untyped_storage().nbytes()) for k, b in pool._scratch.items()} == ptrs
