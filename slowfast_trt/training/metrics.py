"""Accuracy metrics and multi-view aggregation: top-k, mean average precision, 1x1 / 1x3 / Kx1 / Kx3 views."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from slowfast_trt.common.errors import SlowFastError


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Percentage of rows whose label is among the k highest scores, for each k (k capped at the class count)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1)
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    order = np.argsort(-scores, axis=1, kind="stable")
    out = {}
    for k in ks:
        hit = (order[:, : min(k, scores.shape[1])] == labels[:, None]).any(axis=1)
        out[f"top{k}"] = 100.0 * float(hit.mean()) if len(hit) else float("nan")
    return out


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Area under the precision-recall curve of one class (mean of precision at each positive, as sklearn does)."""
    order = np.argsort(-scores, kind="stable")
    t = np.asarray(targets)[order] > 0
    if not t.any():
        return float("nan")
    tp = np.cumsum(t)
    precision = tp / np.arange(1, len(t) + 1)
    return float(precision[t].mean())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP over the classes that have at least one positive (Charades-style multi-label evaluation), in %."""
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return 100.0 * float(np.mean(aps)) if aps else float("nan")


VIEW_SETTINGS = ("1x1", "1x3", "Kx1", "Kx3")


class ViewAggregator:
    """Collects per-view scores and combines them per video for the four view settings of one test pass.

    Single-label: softmax scores averaged over views. Multi-label: sigmoid scores max-pooled over views
    (the paper's Charades protocol). 1x1 uses the middle clip and centre crop, 1x3 the middle clip's three
    crops, Kx1 every clip's centre crop, Kx3 all views. Every video must receive exactly K x crops views.
    """

    def __init__(self, num_videos: int, num_clips: int, num_crops: int, multilabel: bool = False):
        self.num_videos, self.num_clips, self.num_crops, self.multilabel = num_videos, num_clips, num_crops, multilabel
        self._scores: dict[int, dict[tuple[int, int], np.ndarray]] = defaultdict(dict)

    def add(self, video: np.ndarray, clip: np.ndarray, crop: np.ndarray, scores: np.ndarray) -> None:
        """Add a batch of view scores (probabilities) with their video, clip and crop indices."""
        for v, k, c, s in zip(
            np.asarray(video).reshape(-1), np.asarray(clip).reshape(-1), np.asarray(crop).reshape(-1), np.asarray(scores)
        ):
            key = (int(k), int(c))
            if key in self._scores[int(v)]:
                raise SlowFastError(f"video {int(v)} received view clip={key[0]} crop={key[1]} twice; the test pipeline repeated a sample")
            self._scores[int(v)][key] = np.asarray(s, dtype=np.float64)

    def subset(self, keep: list[int]) -> ViewAggregator:
        """A new aggregator over the videos `keep` (renumbered 0..len-1), e.g. after skipping bad files."""
        out = ViewAggregator(len(keep), self.num_clips, self.num_crops, self.multilabel)
        for new, old in enumerate(keep):
            out._scores[new] = dict(self._scores.get(old, {}))
        return out

    def check_complete(self) -> None:
        """Fail, naming videos, unless every video got all its views."""
        want = self.num_clips * self.num_crops
        bad = [v for v in range(self.num_videos) if len(self._scores.get(v, {})) != want]
        if bad:
            counts = ", ".join(f"video {v}: {len(self._scores.get(v, {}))}" for v in bad[:5])
            raise SlowFastError(f"{len(bad)} video(s) did not receive all {want} views ({counts}{', ...' if len(bad) > 5 else ''})")

    def video_scores(self, setting: str) -> np.ndarray:
        """Per-video scores `num_videos, classes` for one view setting."""
        mid_clip, mid_crop = self.num_clips // 2, self.num_crops // 2
        clips = range(self.num_clips) if setting.startswith("K") else [mid_clip]
        crops = range(self.num_crops) if setting.endswith("3") else [mid_crop]
        pool = np.max if self.multilabel else np.mean
        return np.stack([pool(np.stack([self._scores[v][(k, c)] for k in clips for c in crops]), axis=0) for v in range(self.num_videos)])

    def settings(self) -> dict[str, str]:
        """The view settings this pass has, as {result name ("10x3"): setting ("Kx3")}."""
        out = {}
        for setting in VIEW_SETTINGS:
            if self.num_crops == 1 and setting.endswith("3") or self.num_clips == 1 and setting.startswith("K"):
                continue
            clips = self.num_clips if setting.startswith("K") else 1
            crops = self.num_crops if setting.endswith("3") else 1
            out[f"{clips}x{crops}"] = setting
        return out

    def all_video_scores(self) -> dict[str, np.ndarray]:
        """`video_scores` for every view setting of this pass, keyed like `results` ("10x3")."""
        self.check_complete()
        return {name: self.video_scores(setting) for name, setting in self.settings().items()}

    def results(self, labels: np.ndarray) -> dict[str, dict[str, float]]:
        """Top-1/top-5 (or mAP for multi-label) per view setting; `labels` are ids, or a multi-hot matrix."""
        return results_of(self.all_video_scores(), labels, self.multilabel)

    def predictions(self) -> dict[str, list[int]]:
        """Top-1 class id per video (in video order) for each view setting, keyed like `results`."""
        return predictions_of(self.all_video_scores())


def results_of(scores: dict[str, np.ndarray], labels: np.ndarray, multilabel: bool) -> dict[str, dict[str, float]]:
    """Metrics per view setting from per-video scores (`ViewAggregator.all_video_scores`, or sharded ones joined)."""
    return {name: {"mAP": mean_average_precision(s, labels)} if multilabel else topk_accuracy(s, labels) for name, s in scores.items()}


def predictions_of(scores: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Top-1 class id per video for each view setting of per-video scores."""
    return {name: [int(i) for i in np.argmax(s, axis=1)] for name, s in scores.items()}
