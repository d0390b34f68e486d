"""One optimisation step of the paper's recipe: learning rate from the schedule, forward under the run's autocast,
loss, gradient scaling and SGD (momentum 0.9, weight decay 1e-4 except on BatchNorm, fused on CUDA where torch has it)."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from slowfast_trt.training.amp import AmpPolicy
from slowfast_trt.training.schedule import lr_at


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BatchNorm parameters (as the reference recipe), weight decay elsewhere."""
    bn, rest = [], []
    for m in net.modules():
        for p in m.parameters(recurse=False):
            (bn if isinstance(m, nn.modules.batchnorm._BatchNorm) else rest).append(p)
    return [{"params": rest, "weight_decay": weight_decay}, {"params": bn, "weight_decay": 0.0}]


def make_optimizer(module: nn.Module, lr: float, momentum: float, weight_decay: float, device: torch.device) -> torch.optim.SGD:
    """SGD over `module`; on CUDA the fused kernel (one launch for all parameters) where this torch has it."""
    fused = {"fused": True} if device.type == "cuda" and "fused" in inspect.signature(torch.optim.SGD).parameters else {}
    return torch.optim.SGD(param_groups(module, weight_decay), lr=lr, momentum=momentum, **fused)


class TrainStep:
    """Forward, loss and update of one batch; `loss` and `update` are apart so the loop can stop on a non-finite loss first."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        amp: AmpPolicy,
        loss_fn: nn.Module,
        *,
        base_lr: float,
        total_steps: int,
        warmup_steps: int,
        warmup_start_lr: float | None,
        multilabel: bool,
    ):
        self.net, self.optimizer, self.amp, self.loss_fn = net, optimizer, amp, loss_fn
        self.base_lr, self.total_steps, self.warmup_steps, self.warmup_start_lr = base_lr, total_steps, warmup_steps, warmup_start_lr
        self.multilabel = multilabel
        self.scaler = torch.amp.GradScaler(amp.device_type, enabled=amp.use_scaler)

    def lr(self, step: int) -> float:
        """The schedule's learning rate at global step `step` (warm-up, then half cosine)."""
        return lr_at(step, self.total_steps, self.base_lr, self.warmup_steps, self.warmup_start_lr)

    def loss(self, step: int, inputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Set step `step`'s learning rate, run the net under the run's autocast, and return the float32 loss."""
        lr = self.lr(step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        with self.amp.autocast():
            logits = self.net(**inputs)
        return self.loss_fn(logits.float(), target.float() if self.multilabel else target)

    def update(self, loss: torch.Tensor) -> None:
        """Backward through the (scaled) loss and one optimizer step."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
