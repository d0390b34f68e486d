"""Peer loaders (decord, torchcodec): the same frames as the PyAV reference, the same clips, and skips that say why.

Tolerance against PyAV's swscale frames (the reference the peers are compared with): the burnt-in frame number
must match exactly (frame identity); pixels may differ where a decoder upsamples chroma differently, so at most
1% of values may differ by more than 2 grey levels and the mean difference stays under 0.5. decord 0.6.0 and
torchcodec 0.17.0 (system FFmpeg 5.1) returned PyAV's swscale frames bit for bit on these files; the tolerance is
for other FFmpeg builds, whose swscale flags may upsample chroma differently.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from slowfast_trt import model  # noqa: E402
from slowfast_trt.dali_pipelines import peer_loaders  # noqa: E402
from slowfast_trt.dali_pipelines.plan import multiview_plan, train_plan  # noqa: E402
from slowfast_trt.dali_pipelines.pyav_loader import PyAVClips, decode_frames  # noqa: E402
from slowfast_trt.dali_pipelines.spec import FeedSpec  # noqa: E402
from slowfast_trt.data.manifest import Video  # noqa: E402
from tests.helpers import read_index, write_indexed_video  # noqa: E402

INDICES = [70, 3, 3, 40, 41, 89, 10]  # out of order, a repeat, neighbours, the last frame


def _usable(row: str) -> None:
    why = peer_loaders.missing(row)
    if why:
        pytest.skip(why)


def _frames(row: str, path: str, indices) -> np.ndarray:
    if row == "decord_dataloader":
        return peer_loaders.decord_frames(path, indices)
    return peer_loaders.torchcodec_frames(path, indices, "cuda" if row == "torchcodec_cuda" else "cpu").cpu().numpy()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("peer")
    out = []
    for i, (codec, name) in enumerate((("libvpx-vp9", "a.webm"), ("libx264", "b.mp4"))):
        write_indexed_video(d / name, 90, 320, 240, codec=codec)
        out.append(Video(i, str(d / name), i, 90, 30.0, 320, 240))
    return out


def _within_tolerance(got: np.ndarray, ref: np.ndarray) -> None:
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert (diff > 2).mean() <= 0.01 and diff.mean() < 0.5, (diff.max(), diff.mean())


@pytest.mark.parametrize("row", list(peer_loaders.PEERS))
def test_peer_frames_are_pyav_frames(clips, row):
    _usable(row)
    for v in clips:  # VP9 and H.264
        got = _frames(row, v.path, INDICES)
        assert got.shape == (len(INDICES), 240, 320, 3) and got.dtype == np.uint8
        assert [read_index(f) for f in got] == INDICES
        _within_tolerance(got, decode_frames(v.path, INDICES))


@pytest.mark.parametrize("row", list(peer_loaders.PEERS))
def test_peer_clips_equal_pyav_clips(clips, row):
    """Same plans, same crops, flips and normalisation: a peer's items are the PyAV loader's items."""
    _usable(row)
    cfg = model.get_config("slowfast_tiny_4x16")
    for plans, mode in ((train_plan(clips, cfg, epoch=0), "train"), (multiview_plan(clips, cfg, num_clips=1), "test")):
        ref, peer = PyAVClips(plans, cfg, mode), peer_loaders.peer_dataset(row, plans, cfg, mode)
        for i in range(len(plans)):
            a, b = ref[i], peer[i]
            for key in ("slow", "fast"):
                assert a[key].shape == b[key].shape
                assert (a[key] - b[key].cpu()).abs().mean() < 0.05  # normalised units: ~1 grey level / (255 * std)
            assert a["label"] == b["label"] and a["video"] == b["video"]


def test_peer_dataloader_batches(clips):
    _usable("decord_dataloader")
    cfg = model.get_config("slowfast_tiny_4x16")
    loader = peer_loaders.peer_loader("decord_dataloader", train_plan(clips, cfg, epoch=0), cfg, batch=2, workers=1)
    (batch,) = list(loader)
    assert batch["slow"].shape[:3] == (2, 3, cfg.num_frames) and batch["label"].tolist() == [p.label for p in loader.dataset.plans]


def test_a_missing_peer_names_how_to_install_it(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_decord(name, *a, **k):
        if name == "decord":
            raise ImportError("No module named 'decord'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_decord)
    why = peer_loaders.missing("decord_dataloader")
    assert why and "pip install decord" in why and "\n" not in why


def test_bench_pipeline_skips_missing_peers_and_ratios_against_the_best(clips, monkeypatch):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
    from slowfast_trt.benchmarks.pipeline import bench_pipeline, to_markdown

    monkeypatch.setattr(peer_loaders, "missing", lambda row: None if row == "decord_dataloader" else f"{row} absent: pip install it")
    monkeypatch.setattr("slowfast_trt.benchmarks.pipeline.missing", peer_loaders.missing)
    lines = []
    vp9 = [clips[0]]  # DALI's CPU decoder reads VP9 only
    r = bench_pipeline(
        vp9,
        model.get_config("slowfast_tiny_4x16"),
        FeedSpec(device="cpu", batch_size=2, threads=1),
        clips=4,
        loaders=("dali_train", "pyav_dataloader", "decord_dataloader", "torchcodec_cpu_dataloader"),
        budget=2.0,
        progress=lines.append,
    )
    assert list(r["rows"]) == ["dali_train", "pyav_dataloader", "decord_dataloader"]
    assert r["skipped"] == {"torchcodec_cpu_dataloader": "torchcodec_cpu_dataloader absent: pip install it"}
    assert any(line.startswith("skipped torchcodec_cpu_dataloader:") for line in lines)
    assert r["best_peer"] == "decord_dataloader"
    rate = {k: v["clips_per_s"] for k, v in r["rows"].items()}
    assert r["ratios"]["dali_train_vs_best_peer"] == pytest.approx(rate["dali_train"] / rate["decord_dataloader"])
    assert r["ratios"]["decord_dataloader_vs_pyav_dataloader"] == pytest.approx(rate["decord_dataloader"] / rate["pyav_dataloader"])
    assert r["settings"]["thread_split"]["dali"] == 1 and len(r["loadavg"]) == 3
    md = to_markdown(r)
    assert "Skipped torchcodec_cpu_dataloader" in md and "Best peer: decord_dataloader" in md
    assert torch.get_num_threads() == r["settings"]["thread_split"]["torch_intra"]


def test_bench_pipeline_without_dali_rows_reads_h264(clips):
    """DALI's CPU decoder reads VP9 only; the PyAV and peer rows alone must still run on H.264 files."""
    from slowfast_trt.benchmarks.pipeline import bench_pipeline

    h264 = [clips[1]]
    r = bench_pipeline(
        h264,
        model.get_config("slowfast_tiny_4x16"),
        FeedSpec(device="cpu", batch_size=2, threads=1),
        clips=4,
        loaders=("pyav_dataloader",),
        budget=2.0,
        progress=lambda _l: None,
    )
    assert list(r["rows"]) == ["pyav_dataloader"] and r["rows"]["pyav_dataloader"]["clips"] > 0 and r["settings"]["decoder"] == "-"
