"""Action detection training and evaluation on AVA-format data (Section 5), on top of the classification trainer.

Training: the `Trainer` loop (SGD, warm-up + cosine, AMP, atomic checkpoints, exact resume) over labelled
keyframes, one clip per keyframe with its ground-truth boxes; the loss is per-class binary cross-entropy over
the boxes. Evaluation: the proposals (score >= threshold) of every keyframe go through any engine (checkpoint,
ONNX, TensorRT plan), each proposal gets one score per class, and frame mAP at IoU 0.5 is computed as the
official AVA evaluator does (`training.ava_eval`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.dali_pipelines.ava import AvaSet, KeyframeLoader, train_keyframe_plans
from slowfast_trt.data.manifest import Video
from slowfast_trt.engines.torch_engine import TorchEngine
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.training.ava_eval import Box, frame_map
from slowfast_trt.training.evaluate import write_eval
from slowfast_trt.training.trainer import Trainer, TrainOptions


class DetectionTrainer(Trainer):
    """The classification trainer with keyframe clips, box inputs, per-box targets and frame-mAP validation."""

    def __init__(self, cfg: SlowFastConfig, opts: TrainOptions, train_set: AvaSet, val_set: AvaSet | None = None, resume: bool = False):
        if not cfg.detection:
            raise SlowFastError(f"{cfg.name} is not a detection model; build it with model.detection.detection_config")
        self.train_set, self.val_set = train_set, val_set
        used = {k.video.index for k in train_set.keyframes if k.gt_boxes}
        super().__init__(cfg, opts, [v for v in train_set.videos if v.index in used], val_set.videos if val_set else None, resume=resume)

    def _adapt_init(self, net, cfg: SlowFastConfig):
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

    def _plan(self, epoch: int):
        plans = train_keyframe_plans(self.train_set.keyframes, self.cfg, epoch, self.opts.seed, self.dist.rank, self.dist.world_size)
        if self.dist.enabled:  # equal steps on every rank
            longest = math.ceil(sum(1 for k in self.train_set.keyframes if k.gt_boxes) / self.dist.world_size)
            plans = plans + plans[: longest - len(plans)]
        return plans

    def _make_loader(self, train_videos: list[Video]) -> KeyframeLoader:
        return KeyframeLoader(
            self.train_set.keyframes,
            self.cfg,
            self.opts.batch_size,
            boxes="gt",
            plans=self._plan,
            device=self.opts.device,
            threads=self.threads.dali,
            skip_bad=self.opts.skip_bad,
            videos=train_videos,
        )

    def _step_inputs(self, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        inputs = {
            p: batch[p].to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last_3d) for p in self.cfg.pathways
        }
        inputs["boxes"] = batch["boxes"].to(self.device)
        return inputs, batch["targets"].to(self.device), len(batch["keyframe"])

    def _validate(self) -> dict:
        was_training = self.module.training
        engine = TorchEngine(self.module, device=str(self.device), precision="fp32", channels_last=False)
        res = evaluate_detection(
            engine,
            self.val_set,
            batch_size=self.opts.batch_size,
            device=self.opts.device,
            threads=self.threads.dali,
            skip_bad=self.opts.skip_bad,
            progress=False,
        )
        self.module.train(was_training)
        return res


def evaluate_detection(
    engine, data: AvaSet, *, batch_size: int = 8, device: str = "auto", threads: int = 2, skip_bad: bool = False, progress: bool = True
) -> dict:
    """Frame mAP at IoU 0.5 of `engine` on `data`'s proposals against its ground truth; returns a result dict."""
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
    detections: list[Box] = []
    outputs_kind = engine.info.get("output", {}).get("kind", "logits")
    start, boxes_done, bad = time.perf_counter(), 0, {}
    if run:
        by_index = {k.index: k for k in run}
        used = {k.video.index for k in run}
        loader = KeyframeLoader(
            run,
            cfg,
            batch_size,
            boxes="proposals",
            device=device,
            threads=threads,
            skip_bad=skip_bad,
            videos=[v for v in data.videos if v.index in used],
        )
        for batch in progress_bar(loader, desc="detect", unit="batch", enabled=progress, leave=False):
            scores = engine(**{p: batch[p] for p in cfg.pathways}, boxes=batch["boxes"]).float()
            if outputs_kind == "logits":
                scores = torch.sigmoid(scores)
            scores = scores.cpu().numpy()
            for row, (kid, j) in enumerate(zip(batch["box_keyframe"].tolist(), batch["box_index"].tolist())):
                k = by_index[kid]
                for c in range(cfg.num_classes):
                    detections.append(Box(k.key, k.proposals[j], c, float(scores[row, c])))
            boxes_done += len(scores)
        bad = dict(loader.bad)
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
