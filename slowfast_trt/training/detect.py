"""Action detection training and evaluation on AVA-format data (Section 5), on top of the classification trainer.

Training: the `Trainer` loop (SGD, warm-up + cosine, AMP, atomic checkpoints, exact resume) over labelled
keyframes, one clip per keyframe with its ground-truth boxes; the loss is per-class binary cross-entropy over
the boxes. Evaluation: the proposals (score >= threshold) of every keyframe go through any engine (checkpoint,
ONNX, TensorRT plan), each proposal gets one score per class, and frame mAP at IoU 0.5 is computed as the
official AVA evaluator does (`training.ava_eval`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.dali_pipelines.ava import KeyframeLoader, train_keyframe_plans
from slowfast_trt.dali_pipelines.plan import ClipPlan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.ava import AvaSet
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.training.ava_eval import Box, frame_map
from slowfast_trt.training.evaluate import write_eval
from slowfast_trt.training.task import check_labels, clip_inputs, pad_to_equal_steps
from slowfast_trt.training.trainer import Trainer, TrainOptions


class DetectionTask:
    """The `task.Task` of action detection: labelled keyframe clips with their ground-truth boxes, per-box
    multi-label targets, a detection backbone initialised from classification weights, frame-mAP validation."""

    def __init__(self, train_set: AvaSet, val_set: AvaSet | None = None):
        self.train_set, self.val_set = train_set, val_set
        used = {k.video.index for k in train_set.keyframes if k.gt_boxes}
        self.train_videos = [v for v in train_set.videos if v.index in used]

    @property
    def validates(self) -> bool:
        return bool(self.val_set and self.val_set.videos)

    def check(self, cfg: SlowFastConfig) -> None:
        if not cfg.detection:
            raise SlowFastError(f"{cfg.name} is not a detection model; build it with model.detection.detection_config")
        if not self.train_videos:
            raise SlowFastError("the training manifest has no videos")
        check_labels(self.train_videos, cfg, "training manifest")
        if self.val_set and self.val_set.videos:
            check_labels(self.val_set.videos, cfg, "validation manifest")

    def adapt_init(self, net: nn.Module, cfg: SlowFastConfig, source: str) -> nn.Module:
        """--init from classification weights (the paper starts from Kinetics models): same backbone tensors, a new RoI head."""
        fresh = model.build(cfg)
        backbone = {k: v for k, v in net.state_dict().items() if not k.startswith("head.")}
        try:
            missing, unexpected = fresh.load_state_dict(backbone, strict=False)
        except RuntimeError as e:
            raise SlowFastError(
                f"--init weights do not fit the {cfg.name} detection backbone ({str(e).splitlines()[1].strip()[:200]}); "
                "use weights of the same preset"
            ) from None
        missing = [k for k in missing if not k.startswith("head.")]
        if missing or unexpected:
            raise SlowFastError(
                f"--init weights do not fit the {cfg.name} detection backbone: "
                f"{len(missing)} missing, {len(unexpected)} unexpected tensors; use weights of the same preset"
            )
        return fresh

    def plans(self, cfg: SlowFastConfig, epoch: int, seed: int, rank: int, world_size: int) -> list[ClipPlan]:
        plans = train_keyframe_plans(self.train_set.keyframes, cfg, epoch, seed, rank, world_size)
        return pad_to_equal_steps(plans, sum(1 for k in self.train_set.keyframes if k.gt_boxes), world_size)

    def loader(self, cfg: SlowFastConfig, feed: FeedSpec, plans: Callable[[int], list[ClipPlan]]) -> KeyframeLoader:
        return KeyframeLoader(self.train_set.keyframes, cfg, feed, boxes="gt", plans=plans, videos=self.train_videos)

    def inputs(self, batch: dict, cfg: SlowFastConfig, device: torch.device, memory_format: torch.memory_format):
        inputs = clip_inputs(batch, cfg.pathways, device, memory_format)
        inputs["boxes"] = batch["boxes"].to(device)
        return inputs, batch["targets"].to(device), len(batch["keyframe"])

    def validate(self, engine, feed: FeedSpec) -> dict:
        return evaluate_detection(engine, self.val_set, feed)


class DetectionTrainer(Trainer):
    """The trainer with a `DetectionTask` (kept as a name: `slowfast train` on AVA labels builds one)."""

    def __init__(self, cfg: SlowFastConfig, opts: TrainOptions, train_set: AvaSet, val_set: AvaSet | None = None, resume: bool = False):
        super().__init__(cfg, opts, DetectionTask(train_set, val_set), resume=resume)


def evaluate_detection(engine, data: AvaSet, feed: FeedSpec) -> dict:
    """Frame mAP at IoU 0.5 of `engine` on `data`'s proposals against its ground truth (one view per keyframe with
    `feed`'s device, batch, threads and bad-file policy); returns a result dict."""
    cfg = engine.config
    if not cfg.detection:
        raise SlowFastError(
            f"{engine.info.get('path', engine.name)} is a classification model; detection evaluation needs "
            "a detection checkpoint (trained with `slowfast train` on AVA-format labels)"
        )
    if cfg.num_classes != data.num_classes:
        raise SlowFastError(
            f"the model has {cfg.num_classes} classes but {data.labels_csv.parent}/classes.txt lists "
            f"{data.num_classes}; evaluate on the set it was trained for"
        )
    if data.proposals_csv is None:
        raise SlowFastError("detection evaluation needs proposals; load the set with use_proposals=True")
    run = [k for k in data.keyframes if k.proposals]
    without = [k for k in data.keyframes if not k.proposals and k.gt_boxes]
    start = time.perf_counter()
    detections, boxes_done, bad = _detect(engine, data, run, feed) if run else ([], 0, {})
    elapsed = time.perf_counter() - start
    kept = [k for k in data.keyframes if k.video.path not in bad]
    groundtruth = [Box(k.key, box, c) for k in kept for box, labels in zip(k.gt_boxes, k.gt_labels) for c in sorted(labels)]
    res = frame_map(groundtruth, detections, cfg.num_classes)
    return {
        "engine": engine.name,
        "artifact": engine.info.get("path"),
        "precision": engine.precision,
        "labels": str(data.labels_csv),
        "proposals": str(data.proposals_csv),
        "keyframes": len(kept),
        "keyframes_run": len([k for k in run if k.video.path not in bad]),
        "keyframes_without_proposals": len(without),
        "proposal_keyframes_without_labels": data.unlabelled_proposal_keyframes,
        "gt_boxes": sum(len(k.gt_boxes) for k in kept),
        "proposal_boxes": boxes_done,
        "skipped": sorted(bad),
        "boxes_per_s": boxes_done / elapsed if elapsed and boxes_done else None,
        "results": {"frame": {"mAP": 100.0 * res["mAP"]}},
        "per_class_ap": {name: (None if ap is None else 100.0 * ap) for name, ap in zip(data.classes, res["per_class_ap"])},
        "num_gt": dict(zip(data.classes, res["num_gt"])),
        "iou_threshold": res["iou_threshold"],
    }


def _detect(engine, data: AvaSet, run: list, feed: FeedSpec) -> tuple[list[Box], int, dict[str, str]]:
    """Every proposal of the keyframes `run` through `engine`: one scored box per class, the boxes scored, the files skipped."""
    cfg = engine.config
    outputs_kind = engine.info.get("output", {}).get("kind", "logits")
    by_index = {k.index: k for k in run}
    used = {k.video.index for k in run}
    loader = KeyframeLoader(run, cfg, feed, boxes="proposals", videos=[v for v in data.videos if v.index in used])
    detections: list[Box] = []
    boxes_done = 0
    for batch in progress_bar(loader, desc="detect", unit="batch", enabled=feed.progress, leave=False):
        scores = engine(**{p: batch[p] for p in cfg.pathways}, boxes=batch["boxes"]).float()
        if outputs_kind == "logits":
            scores = torch.sigmoid(scores)
        scores = scores.cpu().numpy()
        for row, (kid, j) in enumerate(zip(batch["box_keyframe"].tolist(), batch["box_index"].tolist())):
            k = by_index[kid]
            for c in range(cfg.num_classes):
                detections.append(Box(k.key, k.proposals[j], c, float(scores[row, c])))
        boxes_done += len(scores)
    return detections, boxes_done, dict(loader.bad)


def detection_markdown(result: dict) -> str:
    """A Markdown summary of one detection evaluation: frame mAP and AP per class."""
    m = result["results"]["frame"]["mAP"]
    lines = [
        f"Engine `{result['engine']}` ({result['artifact']}), {result['keyframes']} keyframes "
        f"({result['keyframes_without_proposals']} without proposals), {result['proposal_boxes']} proposals",
        "",
        f"**frame mAP@{result['iou_threshold']}: {m:.2f}**",
        "",
        "| class | GT boxes | AP |",
        "|---|---:|---:|",
    ]
    for name, ap in result["per_class_ap"].items():
        lines.append(f"| {name} | {result['num_gt'][name]} | {'n/a' if ap is None else f'{ap:.2f}'} |")
    return "\n".join(lines) + "\n"


def write_detection_eval(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write `eval.json` (environment, settings, per-class AP) and `eval.md` into `out_dir`."""
    return write_eval(result, out_dir, benchmark="detection", markdown=detection_markdown)
