"""Frame-level mAP at IoU 0.5, computed as the official AVA evaluation (its Pascal VOC object-detection evaluator).

Per class: in each keyframe, detections sorted by score take, one by one, the ground-truth box they overlap
most; a match (IoU >= 0.5) to a box not yet taken is a true positive, anything else (lower IoU, a box already
taken by a higher-scoring detection: duplicates) a false positive; detections on keyframes without ground truth
are false positives. All of a class's detections are then ranked by score (the evaluator's `argsort` order),
precision/recall accumulated, and AP is the area under the precision envelope (VOC 2010+: precision made
monotone, summed at each recall change). Classes without ground truth get no AP and are left out of the mean
(the evaluator's `nanmean`); classes with ground truth but no detections get AP 0. No per-frame detection cap.
Boxes are `(x1, y1, x2, y2)`; IoU uses areas without the +1 of pixel-index conventions, as the evaluator.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Box:
    """One labelled box on one keyframe: ground truth (score None) or a detection."""

    key: Hashable  # the keyframe, e.g. (video_id, timestamp)
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    label: int
    score: float | None = None


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4), boxes as x1, y1, x2, y2."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def tp_fp_one_frame(
    det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, threshold: float = IOU_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, is_true_positive) of one class's detections on one keyframe, in descending score order."""
    order = np.argsort(np.asarray(det_scores, dtype=np.float64))[::-1]  # the evaluator's sort_by_field order
    scores = np.asarray(det_scores, dtype=np.float64)[order]
    tp = np.zeros(len(order), dtype=bool)
    if len(order) == 0 or len(gt_boxes) == 0:
        return scores, tp
    iou = iou_matrix(np.asarray(det_boxes)[order], gt_boxes)
    best = iou.argmax(axis=1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i, g in enumerate(best):
        if iou[i, g] >= threshold and not taken[g]:
            tp[i] = True
            taken[g] = True
    return scores, tp


def average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """VOC AP of ranked detections: precision envelope summed over recall steps (0 without detections)."""
    if num_gt <= 0:
        return float("nan")
    order = np.argsort(scores)[::-1]
    hits = np.asarray(tp, dtype=np.float64)[order]
    cum_tp, cum_fp = np.cumsum(hits), np.cumsum(1.0 - hits)
    precision = np.concatenate([[0.0], cum_tp / np.maximum(cum_tp + cum_fp, 1e-12), [0.0]])
    recall = np.concatenate([[0.0], cum_tp / num_gt, [1.0]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def frame_map(groundtruth: Iterable[Box], detections: Iterable[Box], num_classes: int, threshold: float = IOU_THRESHOLD) -> dict:
    """Per-class AP and their mean over the classes that have ground truth; see the module docstring."""
    gt = defaultdict(list)  # (class, key) -> boxes
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for b in groundtruth:
        gt[(b.label, b.key)].append(b.box)
        num_gt[b.label] += 1
    det = defaultdict(list)
    for d in detections:
        det[(d.label, d.key)].append(d)
    scores = [[] for _ in range(num_classes)]
    hits = [[] for _ in range(num_classes)]
    for (label, key), ds in det.items():
        s, tp = tp_fp_one_frame(
            np.array([d.box for d in ds]),
            np.array([d.score for d in ds]),
            np.array(gt.get((label, key), []), dtype=np.float64).reshape(-1, 4),
            threshold,
        )
        scores[label].append(s)
        hits[label].append(tp)
    per_class = []
    for c in range(num_classes):
        s = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        h = np.concatenate(hits[c]) if hits[c] else np.zeros(0, dtype=bool)
        per_class.append(average_precision(s, h, int(num_gt[c])))
    valid = [ap for ap in per_class if not np.isnan(ap)]
    return {
        "mAP": float(np.mean(valid)) if valid else float("nan"),
        "per_class_ap": [None if np.isnan(ap) else ap for ap in per_class],
        "num_gt": num_gt.tolist(),
        "iou_threshold": threshold,
        "classes_evaluated": len(valid),
    }
