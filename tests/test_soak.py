"""`bench soak`: per-epoch memory, descriptors and clips/s, and a verdict that flags growth."""

from __future__ import annotations

import os

import pytest

from slowfast_trt.benchmarks import soak
from slowfast_trt.common.errors import SlowFastError


def _epochs(rss, fds, rates):
    return [{"epoch": i + 1, "rss_mb": r, "fds": f, "clips_per_s": c} for i, (r, f, c) in enumerate(zip(rss, fds, rates))]


def test_verdict_ignores_warm_up_and_flags_growth_leaks_and_drift():
    flat = soak.verdict(_epochs([100, 200, 201, 202], [9, 12, 12, 12], [5, 6, 10.5, 9.8]))
    assert flat["rss_ok"] and flat["fds_ok"] and flat["clips_per_s_ok"] and flat["fds_range"] == [12, 12]
    grows = soak.verdict(_epochs([100, 200, 206, 212], [9, 12, 13, 14], [5, 10, 10, 4]))
    assert grows["rss_growth_after_epoch_2"] == pytest.approx(0.06)
    assert not grows["rss_ok"] and not grows["fds_ok"] and not grows["clips_per_s_ok"]
    with pytest.raises(SlowFastError, match="at least 4 epochs"):
        soak.verdict(_epochs([1, 2, 3], [1, 1, 1], [1, 1, 1]))


def test_tree_rss_counts_children_and_fds_count_opens():
    import subprocess
    import sys

    alone = soak.tree_rss_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"]
    )
    try:
        import time

        deadline = time.time() + 20
        while soak.tree_rss_bytes() - alone < 60 << 20 and time.time() < deadline:
            time.sleep(0.1)
        assert soak.tree_rss_bytes() - alone >= 60 << 20
    finally:
        child.kill()
        child.wait()
    before = soak.open_fds()
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        assert soak.open_fds() == before + 1
    finally:
        os.close(fd)


def test_soak_runs_dali_train_over_epochs(tmp_path):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
    pytest.importorskip("av")
    from slowfast_trt import model
    from slowfast_trt.dali_pipelines.spec import FeedSpec
    from slowfast_trt.data.manifest import Video
    from tests.helpers import write_indexed_video

    write_indexed_video(tmp_path / "a.webm", 80, 160, 128)
    videos = [Video(0, str(tmp_path / "a.webm"), 0, 80, 30.0, 160, 128), Video(1, str(tmp_path / "a.webm"), 1, 80, 30.0, 160, 128)]
    feed = FeedSpec(device="cpu", batch_size=2, threads=1)
    r = soak.soak(videos, model.get_config("slowfast_tiny_4x16"), feed, loaders=("dali_train",), epochs=4, progress=lambda _l: None)
    rows = r["rows"]["dali_train"]["epochs"]
    assert [e["epoch"] for e in rows] == [1, 2, 3, 4] and all(e["clips_per_s"] > 0 and e["rss_mb"] > 0 and e["fds"] > 0 for e in rows)
    assert set(r["rows"]["dali_train"]["verdict"]) >= {"rss_ok", "fds_ok", "clips_per_s_ok"} and len(r["loadavg"]) == 3
    assert "| dali_train |" in soak.to_markdown(r)
    with pytest.raises(SlowFastError, match="unknown loader"):
        soak.soak(videos, model.get_config("slowfast_tiny_4x16"), feed, loaders=("nope",))
