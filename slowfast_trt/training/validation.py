"""Per-epoch validation of the training network and best-checkpoint tracking.

The network is scored in float32 through the torch engine by the task's own validation (multi-view accuracy, or
frame mAP for detection) with the run's validation feed; the widest view setting's top-1 (mAP for multi-label
models) decides which checkpoint is `best.safetensors`.
"""

from __future__ import annotations

import torch
from torch import nn

from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.engines.torch_engine import TorchEngine
from slowfast_trt.training.run_state import RunState
from slowfast_trt.training.task import Task


class Validation:
    """When to validate (every `every` epochs and after the last), how (the task with `feed`), and which result is best."""

    def __init__(self, task: Task, feed: FeedSpec, every: int, epochs: int, multilabel: bool):
        self.task, self.feed, self.every, self.epochs = task, feed, every, epochs
        self.metric = "mAP" if multilabel else "top1"

    def due(self, epoch: int) -> bool:
        """Whether the epoch `epoch` (0-based, just finished) ends with a validation."""
        return self.task.validates and ((epoch + 1) % self.every == 0 or epoch + 1 == self.epochs)

    def score(self, module: nn.Module, device: torch.device) -> dict:
        """The task's validation result for `module` in float32 (its train/eval mode restored afterwards)."""
        was_training = module.training
        engine = TorchEngine(module, device=str(device), precision="fp32", channels_last=False)
        res = self.task.validate(engine, self.feed)
        module.train(was_training)
        return res

    def run(self, module: nn.Module, device: torch.device, state: RunState) -> tuple[dict, bool]:
        """Validate; the metrics row entries (`val_<setting>_<metric>`) and whether this is the best result so far
        (`state.best` is updated then)."""
        res = self.score(module, device)
        row = {f"val_{setting}_{k}": v for setting, metrics in res["results"].items() for k, v in metrics.items()}
        widest = list(res["results"])[-1]  # the KxN setting, which contains the others
        value = res["results"][widest][self.metric]
        if value > state.best["value"]:
            state.best = {"metric": f"val_{widest}_{self.metric}", "value": value, "step": state.global_step}
            return row, True
        return row, False
