"""DALI pipelines: frame-exact against PyAV, Slow subset of Fast at full size, epochs, shards, test views, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
av = pytest.importorskip("av")

from slowfast_trt import model  # noqa: E402
from slowfast_trt.common.errors import SlowFastError  # noqa: E402
from slowfast_trt.dali_pipelines.loader import ClipLoader  # noqa: E402
from slowfast_trt.dali_pipelines.plan import epoch_order, multiview_plan, shard, train_plan  # noqa: E402
from slowfast_trt.dali_pipelines.spec import FeedSpec  # noqa: E402
from slowfast_trt.data.manifest import Video  # noqa: E402
from tests.helpers import read_index, write_indexed_video  # noqa: E402


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("vids")
    specs = [("land.webm", 140, 320, 240), ("port.webm", 100, 240, 320), ("short.webm", 40, 320, 240), ("land2.webm", 90, 320, 256)]
    out = []
    for i, (name, n, w, h) in enumerate(specs):
        write_indexed_video(d / name, n, w, h)
        out.append(Video(i, str(d / name), i % 3, n, 30.0, w, h))
    return out


def _pyav_frames(path: str, indices) -> np.ndarray:
    from slowfast_trt.dali_pipelines.colour import frame_to_rgb

    with av.open(path) as c:
        frames = [frame_to_rgb(f) for f in c.decode(video=0)]
    return np.stack([frames[i] for i in indices])


@pytest.mark.parametrize("convention", ["pyslowfast", "strided"])
def test_decoded_frames_equal_pyav_and_slow_is_subset_at_full_size(videos, convention):
    cfg = model.get_config("slowfast_r50_4x16", sampling=convention)
    plans = multiview_plan(videos, cfg, num_clips=2)
    loader = ClipLoader(plans, cfg, "decode", FeedSpec(batch_size=1, device="cpu"))  # raw frames of different sizes: one per batch
    seen = 0
    for batch in loader:
        for j in range(len(batch["video"])):
            plan = plans[seen]
            fast = batch["fast"][j].numpy()
            slow = batch["slow"][j].numpy()
            assert fast.shape == (cfg.fast_frames, videos[plan.video].height, videos[plan.video].width, 3)
            assert [read_index(f) for f in fast] == plan.fast_idx.tolist()
            # Same libvpx frames; the YUV->RGB conversion (BT.601, bilinear chroma) differs by rounding only.
            diff = np.abs(fast.astype(int) - _pyav_frames(plan.path, plan.fast_idx).astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.005
            assert slow.shape[0] == cfg.num_frames and np.array_equal(slow, fast[plan.slow_pos])
            assert [read_index(f) for f in slow] == plan.slow_idx.tolist()
            seen += 1
    assert seen == len(plans)


def test_pyslowfast_positions_4x16(videos):
    cfg = model.get_config("slowfast_r50_4x16")
    p = multiview_plan(videos[:1], cfg, num_clips=1)[0]
    start = p.fast_idx[0]
    assert (p.fast_idx - start)[:4].tolist() == [0, 2, 4, 6]
    assert (p.slow_idx - start).tolist() == [0, 20, 40, 63]  # truncated linspace, not 0, 16, 32, 48


def test_train_batches_shapes_normalisation_and_flip(videos):
    cfg = model.get_config("slowfast_r50_4x16", crop_size=64, test_crop_size=96)
    loader = ClipLoader(lambda e: train_plan(videos, cfg, e, seed=3), cfg, "train", FeedSpec(batch_size=4, device="cpu"), videos=videos)
    batch = next(iter(loader))
    assert batch["slow"].shape == (4, 3, 4, 64, 64) and batch["fast"].shape == (4, 3, 32, 64, 64)
    assert batch["slow"].dtype == torch.float32 and -2.1 < batch["fast"].min() and batch["fast"].max() < 2.5
    # The Slow clip is the Fast clip's frames at the Slow positions, after the same crop and flip.
    plans = {p.video: p for p in loader.plans}
    for j, v in enumerate(batch["video"].tolist()):
        assert torch.equal(batch["slow"][j], batch["fast"][j][:, torch.tensor(plans[v].slow_pos.tolist())])
    # A flipped window gives the mirror image of the same window unflipped.
    p = loader.plans[0]
    y0, x0, y1, x1 = p.roi
    flipped = [dataclasses.replace(p, roi=(y0, x1, y1, x0), flip=not p.flip)]
    a = next(iter(ClipLoader([p], cfg, "train", FeedSpec(batch_size=1, device="cpu"))))["fast"]
    b = next(iter(ClipLoader(flipped, cfg, "train", FeedSpec(batch_size=1, device="cpu"))))["fast"]
    assert torch.allclose(a, b.flip(-1), atol=0.05)


def test_epochs_are_permutations_and_shards_partition(videos):
    cfg = model.get_config("slowfast_r50_4x16", crop_size=64, test_crop_size=96)
    loader = ClipLoader(lambda e: train_plan(videos, cfg, e, seed=0), cfg, "train", FeedSpec(batch_size=3, device="cpu"))
    orders = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        seen = [v for b in loader for v in b["video"].tolist()]
        assert sorted(seen) == list(range(len(videos)))
        orders.append(seen)
    assert len({tuple(o) for o in orders}) > 1  # reshuffled between epochs
    order = epoch_order(10, epoch=2, seed=5)
    a, b = shard(order, 0, 2), shard(order, 1, 2)
    assert set(a).isdisjoint(b) and sorted([*a, *b]) == list(range(10))
    p0 = train_plan(videos, cfg, 1, seed=0, shard_id=0, num_shards=2)
    p1 = train_plan(videos, cfg, 1, seed=0, shard_id=1, num_shards=2)
    assert {p.video for p in p0}.isdisjoint({p.video for p in p1}) and len(p0) + len(p1) == len(videos)
    single = {p.video: p for p in train_plan(videos, cfg, 1, seed=0)}
    assert all(np.array_equal(p.fast_idx, single[p.video].fast_idx) and p.roi == single[p.video].roi for p in p0 + p1)


def test_every_video_gets_k_by_3_views_and_crops_follow_orientation(videos):
    cfg = model.get_config("slowfast_r50_4x16", crop_size=64, test_crop_size=96)
    k = 3
    loader = ClipLoader(multiview_plan(videos, cfg, k), cfg, "test", FeedSpec(batch_size=2, device="cpu", num_crops=3))
    views: dict[int, set] = {}
    red: dict[tuple[int, int], float] = {}
    for b in loader:
        assert b["slow"].shape[1:] == (3, 4, 96, 96) and b["fast"].shape[1:] == (3, 32, 96, 96)
        for v, c, cr, f in zip(b["video"].tolist(), b["clip"].tolist(), b["crop"].tolist(), b["fast"]):
            views.setdefault(v, set()).add((c, cr))
            red[(v, cr)] = float(f[0, 0, -10:, :].mean())  # the red ramp grows left to right (bottom rows)
    assert all(len(s) == k * 3 for s in views.values()) and len(views) == len(videos)
    land, port = 0, 1
    assert red[(land, 0)] < red[(land, 1)] < red[(land, 2)]  # left / centre / right
    assert abs(red[(port, 0)] - red[(port, 2)]) < 0.05  # portrait: top / centre / bottom span the full width


def test_bad_input_errors(videos, tmp_path):
    cfg = model.get_config("slowfast_r50_4x16", crop_size=64, test_crop_size=96)
    good = videos[0]
    trunc = tmp_path / "trunc.webm"
    trunc.write_bytes(open(good.path, "rb").read()[:20000])
    vids = [good, Video(1, str(trunc), 0, good.frame_count, 30.0, 320, 240), Video(2, good.path, 1, good.frame_count, 30.0, 320, 240)]
    with pytest.raises(SlowFastError, match="trunc.webm"):
        list(ClipLoader(multiview_plan(vids, cfg, 2), cfg, "test", FeedSpec(batch_size=2, device="cpu", num_crops=3)))
    loader = ClipLoader(multiview_plan(vids, cfg, 2), cfg, "test", FeedSpec(batch_size=2, device="cpu", skip_bad=True, num_crops=3))
    seen = {v for b in loader for v in b["video"].tolist()}
    assert seen == {0, 2} and list(loader.bad) == [str(trunc)]
    with pytest.raises(SlowFastError, match="not found"):
        ClipLoader(
            [], cfg, "train", FeedSpec(batch_size=2, device="cpu"), videos=[Video(0, str(tmp_path / "nope.webm"), 0, 90, 30.0, 320, 240)]
        )
    with pytest.raises(SlowFastError, match="no videos"):
        ClipLoader([], cfg, "train", FeedSpec(batch_size=2, device="cpu"), videos=[])
    short = [Video(0, videos[2].path, 0, 40, 30.0, 320, 240)]
    with pytest.raises(SlowFastError, match="shorter than one clip"):
        ClipLoader([], cfg, "train", FeedSpec(batch_size=2, device="cpu"), videos=short)
    h264 = tmp_path / "clip.mp4"
    write_indexed_video(h264, 70, 160, 128, codec="libx264")
    with pytest.raises(SlowFastError, match=r"clip\.mp4: codec h264 .*data prepare --codec vp9"):
        ClipLoader([], cfg, "train", FeedSpec(batch_size=2, device="cpu"), videos=[Video(0, str(h264), 0, 70, 30.0, 160, 128)])


def test_pyav_reference_loader_agrees_with_dali(videos):
    """Same plans through PyAV + torch and through DALI: same frames, same crops, same flips (swscale rounding aside)."""
    from slowfast_trt.dali_pipelines.pyav_loader import PyAVClips

    cfg = model.get_config("slowfast_r50_4x16", crop_size=96, test_crop_size=128)
    same = [v for v in videos if (v.width, v.height) == (320, 240)]
    plans = train_plan(same, cfg, epoch=0, seed=7)
    dali = next(iter(ClipLoader(plans, cfg, "train", FeedSpec(batch_size=len(plans), device="cpu"))))
    ref = PyAVClips(plans, cfg, "train")
    grey = 255 * cfg.std[0]
    for j in range(len(plans)):
        r = ref[j]
        assert r["video"] == int(dali["video"][j])
        assert grey * (r["fast"] - dali["fast"][j]).abs().mean() < 1.5
        assert grey * (r["slow"] - dali["slow"][j]).abs().mean() < 1.5
    tplans = multiview_plan(videos[:2], cfg, num_clips=1)  # landscape and portrait
    views = list(ClipLoader(tplans, cfg, "test", FeedSpec(batch_size=1, device="cpu", num_crops=3)))
    for p, batch in zip(tplans, views):
        r = PyAVClips([p], cfg, "test")[0]
        for c in range(3):
            assert grey * (r["fast"][c] - batch["fast"][c]).abs().mean() < 1.5, (p.path, c)


def test_bench_pipeline_reports_every_loader(videos):
    from slowfast_trt.benchmarks.pipeline import bench_pipeline, to_markdown

    cfg = model.get_config("slowfast_r50_4x16", crop_size=64, test_crop_size=96)
    r = bench_pipeline(videos, cfg, FeedSpec(device="cpu", batch_size=2, threads=2), clips=4, progress=lambda _l: None)
    for key in (
        "device",
        "dali_train_clips_per_s",
        "dali_decode_only_clips_per_s",
        "pyav_serial_clips_per_s",
        "pyav_dataloader_clips_per_s",
    ):
        assert key in r
    assert all(row["clips_per_s"] > 0 and row["clips"] >= 4 for row in r["rows"].values())
    assert r["ratios"]["dali_train_vs_pyav_serial"] > 0 and "| dali_train |" in to_markdown(r)


def test_bench_pipeline_picks_loaders_stops_at_its_budget_and_counts_decoded_frames(videos):
    """Rows chosen by name, each bounded by seconds as well as clips; frames decoded per clip follow the GOP."""
    from slowfast_trt.benchmarks.pipeline import bench_pipeline, frames_decoded, parse_loaders, to_markdown

    assert parse_loaders("dali-train,pyav_dataloader") == ("dali_train", "pyav_dataloader")
    with pytest.raises(SlowFastError, match="unknown loader"):
        parse_loaders("dali_train,nvdec")
    cfg = model.get_config("slowfast_r50_4x16", crop_size=64, test_crop_size=96)
    lines = []
    r = bench_pipeline(
        videos,
        cfg,
        FeedSpec(device="cpu", batch_size=2, threads=2),
        clips=200,
        loaders=("dali_decode_only", "pyav_serial"),
        budget=0.5,
        progress=lines.append,
    )
    assert list(r["rows"]) == ["dali_decode_only", "pyav_serial"] and "dali_train_clips_per_s" not in r
    assert all(0 < row["clips"] < 200 for row in r["rows"].values())  # the budget, not the clip count, ended each row
    k = r["seek"]
    # write_indexed_video uses GOP 32: a seek decodes up to 31 frames before the clip; PyAV decodes from frame 0.
    assert k["gop_median"] == 32 and k["frames_needed_per_clip"] <= k["dali_frames_decoded_per_clip"] <= k["frames_needed_per_clip"] + 31
    assert k["pyav_frames_decoded_per_clip"] >= k["dali_frames_decoded_per_clip"]
    row = r["rows"]["dali_decode_only"]
    assert row["decoded_frames_per_s"] == pytest.approx(row["clips_per_s"] * k["dali_frames_decoded_per_clip"])
    assert r["external_source"]["first_pass_ms_per_batch"] > 0 and r["external_source"]["cached_ms_per_batch"] > 0
    assert any(line.startswith("external source") for line in lines) and "frames decoded per clip" in to_markdown(r)
    plan = train_plan(videos, cfg, 0, seed=0)[0]
    first, last = int(plan.fast_idx.min()), int(plan.fast_idx.max())
    assert frames_decoded(plan, [0, 32, 64, 96, 128]) == last - max(k for k in (0, 32, 64, 96, 128) if k <= first) + 1
    assert frames_decoded(plan, [0, 32], from_start=True) == last + 1


@pytest.mark.parametrize("mode", ["train", "test"])
def test_torch_spatial_ops_equal_the_dali_graph(videos, mode):
    """CPU pipelines: DALI decodes, torch's uint8 kernels resize/crop/flip/normalise; the DALI graph (as on a GPU) agrees."""
    cfg = model.get_config("slowfast_r50_4x16", crop_size=96, test_crop_size=128)
    plans = train_plan(videos, cfg, epoch=0, seed=11) if mode == "train" else multiview_plan(videos, cfg, num_clips=1)
    if mode == "train":
        assert any(p.flip for p in plans) and any(not p.flip for p in plans)
    torch_ops = ClipLoader(plans, cfg, mode, FeedSpec(batch_size=3, device="cpu", num_crops=3))
    graph = ClipLoader(plans, cfg, mode, FeedSpec(batch_size=3, device="cpu", spatial="dali", num_crops=3))
    assert torch_ops.spatial_in_torch and not graph.spatial_in_torch
    grey = 255 * cfg.std[0]
    n = 0
    for a, b in zip(torch_ops, graph):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["crop"], b["crop"]) and torch.equal(a["label"], b["label"])
        for key in ("slow", "fast"):
            assert a[key].shape == b[key].shape and a[key].dtype == torch.float32
            diff = grey * (a[key] - b[key]).abs()
            # Both resize bilinearly with the same geometry; rounding to uint8 differs by at most a grey level or two.
            assert diff.max() <= 2.01 and diff.mean() < 0.5, (key, float(diff.max()), float(diff.mean()))
        n += len(a["video"])
    assert n == len(plans) * (3 if mode == "test" else 1)


def test_buffer_pool_reuses_only_released_buffers():
    from slowfast_trt.dali_pipelines.spatial import BufferPool

    pool = BufferPool(limit=2)
    a = pool.take((4, 5), 4)
    view = a[1:].permute(1, 0)  # a view keeps the storage, and so the buffer, in use
    a_ptr = a.data_ptr()
    del a
    b = pool.take((4, 5), 3)
    assert b.data_ptr() != a_ptr and b.shape == (3, 5)
    del view
    c = pool.take((4, 5), 4)
    assert c.data_ptr() == a_ptr  # released: written again instead of a fresh allocation
    assert pool.take((2, 2), 2).shape == (2, 2)


def test_spatial_option_errors(videos):
    from slowfast_trt.dali_pipelines.spec import spatial_in_torch

    cfg = model.get_config("slowfast_r50_4x16", crop_size=64, test_crop_size=96)
    with pytest.raises(SlowFastError, match="spatial must be one of"):
        ClipLoader([], cfg, "train", FeedSpec(batch_size=2, device="cpu", spatial="opencv"))
    with pytest.raises(SlowFastError, match="CPU pipelines"):
        spatial_in_torch("train", "gpu", "torch")
    assert not spatial_in_torch("decode", "cpu") and spatial_in_torch("test", "cpu") and not spatial_in_torch("train", "gpu")
    plan = dataclasses.replace(train_plan(videos, cfg, 0)[0], window=None)
    with pytest.raises(SlowFastError, match="no resize/crop window"):
        next(iter(ClipLoader([plan], cfg, "train", FeedSpec(batch_size=1, device="cpu"))))
