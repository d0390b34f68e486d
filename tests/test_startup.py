"""Start-up on a large manifest (issue 29, class 8): the rule is about files opened, never about time.

A manifest with every column is trusted: reading it, making its `Video` records and building a CPU loader open no
video file (`data check` is the full pass; each file's packets are checked when a loader first uses it). A file
whose codec the manifest lacks is opened once per process, not once per loader. Timings are in
benchmarks/results/cpu-epyc-2core/startup/.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from slowfast_trt import model
from slowfast_trt.dali_pipelines import loader as loader_mod
from slowfast_trt.dali_pipelines.loader import ClipLoader, preflight
from slowfast_trt.dali_pipelines.plan import train_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import Entry, load_manifest_videos, read_manifest, to_videos, write_manifest
from slowfast_trt.data.video_io import CODECS, VideoWriter

ROWS = 300


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two real 70-frame VP9 files and ROWS distinct links to them (a manifest drops repeated paths)."""
    d = tmp_path_factory.mktemp("startup")
    for k in range(2):
        with VideoWriter(str(d / f"real{k}.webm"), CODECS["vp9"], 80, 64, Fraction(30)) as w:
            for i in range(70):
                w.write(np.full((64, 80, 3), (i * 3 + k * 50) % 256, np.uint8))
    (d / "v").mkdir()
    for i in range(ROWS):
        (d / "v" / f"{i:05d}.webm").symlink_to(d / f"real{i % 2}.webm")
    return d


def _manifest(folder: Path, name: str, full: bool) -> Path:
    cols = (70, 30.0, 80, 64, "vp9") if full else ()
    return write_manifest(folder / name, [Entry(f"v/{i:05d}.webm", i % 2, *cols) for i in range(ROWS)], ["a", "b"])


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Every path PyAV opens (each probe, packet count and header read goes through `av.open`)."""
    paths: list[str] = []
    real = av.open

    def counting(file, *a, **k):
        paths.append(str(file))
        return real(file, *a, **k)

    monkeypatch.setattr(av, "open", counting)
    cached = getattr(loader_mod, "probed_codec", None)
    if cached is not None:
        cached.cache_clear()
    return paths


def test_full_manifest_starts_without_opening_a_video(folder, opened):
    cfg = model.get_config("slowfast_tiny_4x16")
    _, videos = load_manifest_videos(_manifest(folder, "full.csv", full=True), "training")
    ClipLoader(lambda e: train_plan(videos, cfg, e, seed=0), cfg, "train", FeedSpec(batch_size=4, device="cpu"), videos=videos)
    assert len(videos) == ROWS and opened == []


def test_path_label_manifest_opens_each_file_once(folder, opened):
    """Frame counts must come from the files then, but the codec found by that probe is kept: one open per file."""
    cfg = model.get_config("slowfast_tiny_4x16")
    _, videos = load_manifest_videos(_manifest(folder, "short.csv", full=False), "training")
    ClipLoader(lambda e: train_plan(videos, cfg, e, seed=0), cfg, "train", FeedSpec(batch_size=4, device="cpu"), videos=videos)
    assert sorted(opened) == sorted(str(folder / "v" / f"{i:05d}.webm") for i in range(ROWS))


def test_codec_probe_is_cached_across_loaders(folder, opened):
    """Records without a codec (to_videos without probing) are probed once per file, however many loaders start."""
    cfg = model.get_config("slowfast_tiny_4x16")
    videos = to_videos(read_manifest(_manifest(folder, "noprobe.csv", full=False)), probe_missing=False)[:10]
    videos = [v.__class__(v.index, v.path, v.label, 70, 30.0, 80, 64) for v in videos]
    preflight(videos, cfg, "cpu")
    preflight(videos, cfg, "cpu")
    assert sorted(opened) == sorted(v.path for v in videos)
