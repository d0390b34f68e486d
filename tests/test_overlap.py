"""One batch ahead (`dali_pipelines.overlap`): order and values kept, the next batch made while the consumer holds
this one, errors raised at their batch, an early stop ends the thread; the CPU loader uses it and gives the
batches it gives inline."""

from __future__ import annotations

import threading

import pytest
import torch

from slowfast_trt.dali_pipelines.overlap import one_ahead


def test_items_come_in_order_and_all_of_them():
    assert list(one_ahead(iter(range(50)))) == list(range(50))
    assert list(one_ahead(iter([]))) == []


def test_the_next_item_is_produced_while_the_consumer_holds_this_one():
    """Inline, the producer could not start item 1 before the consumer asks for it: the consumer's wait would time out."""
    started_second = threading.Event()

    def gen():
        yield 0
        started_second.set()
        yield 1

    it = one_ahead(gen())
    assert next(it) == 0
    assert started_second.wait(timeout=30), "the second item was not started while the first was held"
    assert list(it) == [1]


def test_an_error_reaches_the_consumer_at_its_item():
    def gen():
        yield 0
        yield 1
        raise ValueError("bad batch 2")

    got = []
    with pytest.raises(ValueError, match="bad batch 2"):
        for x in one_ahead(gen()):
            got.append(x)
    assert got == [0, 1]


def test_stopping_early_closes_the_producer_and_ends_its_thread():
    closed = threading.Event()

    def gen():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    before = {t.ident for t in threading.enumerate()}
    it = one_ahead(gen())
    assert next(it) == 0
    it.close()
    assert closed.wait(timeout=30)
    assert not [t for t in threading.enumerate() if t.name == "slowfast-batch-ahead" and t.ident not in before]


def test_cpu_loader_runs_one_batch_ahead_and_matches_inline(tmp_path):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
    pytest.importorskip("av")
    from slowfast_trt import model
    from slowfast_trt.dali_pipelines.loader import ClipLoader
    from slowfast_trt.dali_pipelines.plan import multiview_plan
    from slowfast_trt.dali_pipelines.spec import FeedSpec
    from slowfast_trt.data.manifest import Video
    from tests.helpers import write_indexed_video

    write_indexed_video(tmp_path / "a.webm", 60, 160, 128)
    videos = [Video(0, str(tmp_path / "a.webm"), 0, 60, 30.0, 160, 128), Video(1, str(tmp_path / "a.webm"), 1, 60, 30.0, 160, 128)]
    cfg = model.get_config("slowfast_tiny_4x16")
    loader = ClipLoader(multiview_plan(videos, cfg, 2), cfg, "test", FeedSpec(batch_size=2, device="cpu", threads=1, num_crops=3))
    assert loader.spatial_in_torch
    threads_in_batches = set()
    ahead = []
    for b in loader:
        threads_in_batches |= {t.name for t in threading.enumerate()}
        ahead.append(b)
    assert "slowfast-batch-ahead" in threads_in_batches
    inline = list(loader._batches())
    assert len(ahead) == len(inline) == len(loader)
    for a, b in zip(ahead, inline, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
