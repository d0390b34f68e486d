"""Frame mAP at IoU 0.5 against hand-computed AP on constructed cases (the official AVA / VOC rules)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slowfast_trt.training.ava_eval import Box, average_precision, frame_map, iou_matrix

A, B = ("v", 1), ("v", 2)  # two keyframes
BOX1, BOX2 = (0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0)


def gt(key, box, label):
    return Box(key, box, label)


def det(key, box, label, score):
    return Box(key, box, label, score)


def test_iou_by_hand():
    assert iou_matrix([BOX1], [BOX1])[0, 0] == 1.0
    assert iou_matrix([BOX1], [BOX2])[0, 0] == 0.0
    # (0,0,1,1) vs (0.5,0,1.5,1): intersection 0.5, union 1.5
    assert iou_matrix([(0, 0, 1, 1)], [(0.5, 0, 1.5, 1)])[0, 0] == pytest.approx(1 / 3)


def test_perfect_detections_give_ap_one():
    g = [gt(A, BOX1, 0), gt(A, BOX2, 0), gt(B, BOX1, 1)]
    d = [det(A, BOX1, 0, 0.9), det(A, BOX2, 0, 0.8), det(B, BOX1, 1, 0.7)]
    r = frame_map(g, d, num_classes=2)
    assert r["per_class_ap"] == [1.0, 1.0] and r["mAP"] == 1.0


def test_no_detections_give_ap_zero():
    r = frame_map([gt(A, BOX1, 0), gt(B, BOX2, 1)], [], num_classes=2)
    assert r["per_class_ap"] == [0.0, 0.0] and r["mAP"] == 0.0


def test_duplicates_are_false_positives():
    # Class 0: GT on A and B. Ranked: A (tp, 0.9), duplicate of A (fp, 0.8), B (tp, 0.7).
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> envelope 1, 2/3, 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    g = [gt(A, BOX1, 0), gt(B, BOX2, 0)]
    d = [det(A, BOX1, 0, 0.9), det(A, (0.0, 0.0, 0.5, 0.49), 0, 0.8), det(B, BOX2, 0, 0.7)]
    assert frame_map(g, d, 1)["mAP"] == pytest.approx(5 / 6)
    # The same duplicate ranked last costs nothing: 1/2 * 1 + 1/2 * 1.
    d_last = [det(A, BOX1, 0, 0.9), det(B, BOX2, 0, 0.8), det(A, BOX1, 0, 0.1)]
    assert frame_map(g, d_last, 1)["mAP"] == pytest.approx(1.0)


def test_low_iou_is_a_miss_and_half_is_a_hit():
    g = [gt(A, (0.0, 0.0, 1.0, 1.0), 0)]
    low = det(A, (0.5, 0.0, 1.5, 1.0), 0, 0.9)  # IoU 1/3
    assert frame_map(g, [low], 1)["mAP"] == 0.0
    half = det(A, (0.0, 0.0, 1.0, 0.5), 0, 0.9)  # IoU exactly 0.5 counts (>=)
    assert frame_map(g, [half], 1)["mAP"] == 1.0
    # A low-IoU detection ranked above a hit: precision 0, 1/2 at recall 0, 1 -> AP = 1/2.
    assert frame_map(g, [low, det(A, (0.0, 0.0, 1.0, 1.0), 0, 0.5)], 1)["mAP"] == pytest.approx(0.5)


def test_missing_classes_leave_the_mean_and_wrong_frames_are_false_positives():
    # Class 0: perfect. Class 1: no GT anywhere (detections ignored for the mean). Class 2: GT, only a detection
    # on a keyframe without class-2 GT (false positive) -> AP 0. Class 3: no GT, no detections.
    g = [gt(A, BOX1, 0), gt(A, BOX2, 2)]
    d = [det(A, BOX1, 0, 0.9), det(A, BOX2, 1, 0.9), det(B, BOX2, 2, 0.9)]
    r = frame_map(g, d, num_classes=4)
    assert r["per_class_ap"] == [1.0, None, 0.0, None]
    assert r["classes_evaluated"] == 2 and r["mAP"] == pytest.approx(0.5)
    assert r["num_gt"] == [1, 0, 1, 0]
    assert math.isnan(frame_map([], d, 4)["mAP"])


def test_greedy_by_score_takes_the_best_overlapping_box_first():
    # Two GT boxes side by side; the top detection overlaps GT1 most (IoU 0.6) and GT2 too (IoU 0.5); the second
    # detection's best box is also GT1, already taken -> false positive even though it overlaps GT2 at 0.5 (VOC rule).
    g1, g2 = (0.0, 0.0, 1.0, 1.0), (0.5, 0.0, 1.5, 1.0)
    g = [gt(A, g1, 0), gt(A, g2, 0)]
    top = det(A, (0.25, 0.0, 1.0, 1.0), 0, 0.9)  # IoU with g1 0.75, with g2 0.5/1.25 = 0.4
    second = det(A, (0.0, 0.0, 1.0, 1.0), 0, 0.8)  # IoU with g1 1.0, with g2 1/3: best is g1, taken
    r = frame_map(g, [top, second], 1)
    # ranked tp, fp: precision 1, 1/2 at recall 1/2, 1/2 -> AP = 1/2
    assert r["mAP"] == pytest.approx(0.5)


def test_average_precision_envelope_by_hand():
    # ranked: tp, fp, fp, tp, tp with 4 GT: precision 1, .5, .333, .5, .6; recall .25, .25, .25, .5, .75
    # envelope at recall steps: .25 -> 1, .5 -> .6, .75 -> .6 -> AP = .25 + .25*.6 + .25*.6 = 0.55
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    tp = np.array([1, 0, 0, 1, 1], dtype=bool)
    assert average_precision(scores, tp, 4) == pytest.approx(0.55)
