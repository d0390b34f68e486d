"""What one kind of training brings to the shared trainer: its data, its model inputs and its validation.

`Trainer` runs any `Task`: classification (`Classification`, below) and action detection
(`training.detect.DetectionTask`) differ only in these methods; the schedule, AMP, checkpoints, resume and the
epoch loop are the trainer's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import ClipPlan, train_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import Video
from slowfast_trt.model.build import build as model_build
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.statedict import build_with_state
from slowfast_trt.training.evaluate import evaluate_engine


class Task(Protocol):
    """The kind-specific part of a training run; every method is called by `Trainer`, none holds training state."""

    @property
    def validates(self) -> bool:
        """Whether the run has validation data (and so per-epoch validation and best-checkpoint selection)."""
        ...

    def check(self, cfg: SlowFastConfig) -> None:
        """Refuse data that does not fit the model (labels outside its classes, a classification model for boxes)."""
        ...

    def adapt_init(self, net: nn.Module, cfg: SlowFastConfig, source: str) -> nn.Module:
        """Fine-tuning: the network `cfg` asks for, filled with the weights of `net` (loaded from `source`, --init)."""
        ...

    def plans(self, cfg: SlowFastConfig, epoch: int, seed: int, rank: int, world_size: int) -> list[ClipPlan]:
        """This rank's clips for `epoch`, padded so every rank takes the same number of steps."""
        ...

    def loader(self, cfg: SlowFastConfig, feed: FeedSpec, plans: Callable[[int], list[ClipPlan]]) -> ClipLoader:
        """The training loader over `plans(epoch)` with the run's feed."""
        ...

    def inputs(
        self, batch: dict, cfg: SlowFastConfig, device: torch.device, memory_format: torch.memory_format
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        """(model inputs on `device` in the run's memory format, loss target, clips in the batch) of one training batch."""
        ...

    def validate(self, engine, feed: FeedSpec) -> dict:
        """Validation of `engine` with the validation feed: a result whose "results" map view settings to metrics,
        the widest setting last (its top-1, or mAP for multi-label models, picks the best checkpoint)."""
        ...


def check_labels(videos: list[Video], cfg: SlowFastConfig, what: str) -> None:
    """Labels must be class ids in [0, num_classes)."""
    for v in videos:
        labels = v.label if isinstance(v.label, (list, tuple)) else [v.label]
        bad = [lab for lab in labels if not 0 <= int(lab) < cfg.num_classes]
        if bad:
            raise SlowFastError(
                f"{what}: {v.path} has label {bad[0]} outside [0, {cfg.num_classes - 1}]; fix the manifest or pass --num-classes"
            )


def pad_to_equal_steps(plans: list[ClipPlan], items: int, world_size: int) -> list[ClipPlan]:
    """A rank's plans padded to the longest shard of `items` by repeating its first clips (equal steps on every rank)."""
    if world_size == 1:
        return plans
    longest = math.ceil(items / world_size)
    return plans + plans[: longest - len(plans)]


def clip_inputs(batch: dict, pathways: tuple[str, ...], device: torch.device, memory_format: torch.memory_format) -> dict:
    """The batch's clips of each pathway on `device` in `memory_format`."""
    return {p: batch[p].to(device, non_blocking=True).contiguous(memory_format=memory_format) for p in pathways}


class Classification:
    """Video classification on manifests: one label (or a label set) per video, multi-view validation."""

    def __init__(self, train_videos: list[Video], val_videos: list[Video] | None = None):
        self.train_videos, self.val_videos = train_videos, val_videos or []

    @property
    def validates(self) -> bool:
        return bool(self.val_videos)

    def check(self, cfg: SlowFastConfig) -> None:
        if not self.train_videos:
            raise SlowFastError("the training manifest has no videos")
        check_labels(self.train_videos, cfg, "training manifest")
        if self.val_videos:
            check_labels(self.val_videos, cfg, "validation manifest")

    def adapt_init(self, net: nn.Module, cfg: SlowFastConfig, source: str) -> nn.Module:
        """The requested network filled with `net`'s weights (a fresh classifier when the class count differs);
        weights of another architecture are a one-line error naming the keys and shapes."""
        state = net.state_dict()
        if net.config.num_classes != cfg.num_classes or net.config.multilabel != cfg.multilabel:
            fresh_head = {k: v for k, v in model_build(cfg).state_dict().items() if k.startswith("head.")}
            state = {k: v for k, v in state.items() if not k.startswith("head.")} | fresh_head
        return build_with_state(cfg, state, f"--init {source}")

    def plans(self, cfg: SlowFastConfig, epoch: int, seed: int, rank: int, world_size: int) -> list[ClipPlan]:
        plans = train_plan(self.train_videos, cfg, epoch, seed, rank, world_size)
        return pad_to_equal_steps(plans, len(self.train_videos), world_size)

    def loader(self, cfg: SlowFastConfig, feed: FeedSpec, plans: Callable[[int], list[ClipPlan]]) -> ClipLoader:
        return ClipLoader(plans, cfg, "train", feed, videos=self.train_videos)

    def inputs(self, batch: dict, cfg: SlowFastConfig, device: torch.device, memory_format: torch.memory_format):
        target = batch["label"].to(device)
        return clip_inputs(batch, cfg.pathways, device, memory_format), target, len(target)

    def validate(self, engine, feed: FeedSpec) -> dict:
        return evaluate_engine(engine, self.val_videos, feed)
