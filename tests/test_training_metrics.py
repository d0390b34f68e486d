"""Learning-rate schedule, top-k, mAP and multi-view aggregation against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.training.metrics import ViewAggregator, average_precision, mean_average_precision, topk_accuracy
from slowfast_trt.training.schedule import cosine_lr, lr_at, scaled_lr


def test_schedule_matches_the_paper():
    assert scaled_lr(1024) == pytest.approx(1.6) and scaled_lr(8) == pytest.approx(0.0125)
    assert cosine_lr(0, 100, 1.6) == pytest.approx(1.6)
    assert cosine_lr(50, 100, 1.6) == pytest.approx(0.8)
    assert cosine_lr(100, 100, 1.6) == pytest.approx(0.0)
    assert lr_at(0, 100, 1.0, warmup_steps=10, warmup_start_lr=0.1) == pytest.approx(0.1)
    end = 0.5 * (math.cos(math.pi * 10 / 100) + 1)
    assert lr_at(5, 100, 1.0, warmup_steps=10, warmup_start_lr=0.1) == pytest.approx(0.1 + (end - 0.1) / 2)
    assert lr_at(10, 100, 1.0, warmup_steps=10) == pytest.approx(end)


def test_topk():
    s = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    r = topk_accuracy(s, np.array([1, 1, 0]), ks=(1, 2, 5))
    assert r == {"top1": pytest.approx(100 / 3), "top2": pytest.approx(200 / 3), "top5": 100.0}


def test_average_precision_hand_computed():
    # ranking: pos, neg, pos, neg -> precisions at positives 1/1 and 2/3 -> AP = 5/6
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    assert math.isnan(average_precision(np.array([0.3, 0.2]), np.array([0, 0])))
    m = mean_average_precision(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [0, 1]]))
    assert m == pytest.approx(100.0)


def test_view_aggregation_settings():
    agg = ViewAggregator(num_videos=2, num_clips=3, num_crops=3)
    rng = np.random.default_rng(0)
    views = []
    for v in range(2):
        for k in range(3):
            for c in range(3):
                s = rng.dirichlet(np.ones(4))
                views.append((v, k, c, s))
    # Make video 0's middle clip + centre crop alone point to class 3, the rest to class 0.
    views = [
        (v, k, c, np.array([0, 0, 0, 1.0]) if (v, k, c) == (0, 1, 1) else (np.array([1.0, 0, 0, 0]) if v == 0 else s))
        for v, k, c, s in views
    ]
    v, k, c, s = map(np.array, zip(*views))
    agg.add(v, k, c, np.stack(s))
    res = agg.results(np.array([0, 2]))
    assert set(res) == {"1x1", "1x3", "3x1", "3x3"}
    assert agg.video_scores("1x1")[0].argmax() == 3 and agg.video_scores("Kx3")[0].argmax() == 0
    assert np.allclose(agg.video_scores("Kx3")[1], np.mean([x[3] for x in views if x[0] == 1], axis=0))


def test_view_aggregation_detects_missing_and_repeated_views():
    agg = ViewAggregator(num_videos=2, num_clips=2, num_crops=1)
    agg.add([0, 0, 1], [0, 1, 0], [0, 0, 0], np.eye(3)[:3])
    with pytest.raises(SlowFastError, match="video 1: 1"):
        agg.results(np.array([0, 1]))
    with pytest.raises(SlowFastError, match="twice"):
        agg.add([1], [0], [0], np.eye(3)[:1])


def test_multilabel_max_over_views():
    agg = ViewAggregator(num_videos=1, num_clips=2, num_crops=1, multilabel=True)
    agg.add([0, 0], [0, 1], [0, 0], np.array([[0.9, 0.1], [0.2, 0.7]]))
    assert np.allclose(agg.video_scores("Kx1")[0], [0.9, 0.7])
    assert agg.results(np.array([[1, 1]]))["2x1"]["mAP"] == pytest.approx(100.0)
