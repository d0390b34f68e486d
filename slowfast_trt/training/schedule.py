"""The paper's learning-rate recipe: linear scaling with the global batch, linear warm-up, half-period cosine."""

from __future__ import annotations

import math

# The paper trains with a base learning rate of 1.6 at a global batch of 1024 clips (8 per GPU x 128 GPUs).
PAPER_BASE_LR = 1.6
PAPER_BATCH = 1024


def scaled_lr(global_batch: int, base_lr: float = PAPER_BASE_LR, reference_batch: int = PAPER_BATCH) -> float:
    """Linear scaling rule: the learning rate grows in proportion to the global batch size."""
    if global_batch < 1:
        raise ValueError("global batch must be >= 1")
    return base_lr * global_batch / reference_batch


def cosine_lr(step: int, total_steps: int, base_lr: float) -> float:
    """eta * 0.5 * (cos(pi * n / n_max) + 1): the half-period cosine of the paper's appendix."""
    n = min(max(step, 0), total_steps)
    return base_lr * 0.5 * (math.cos(math.pi * n / max(total_steps, 1)) + 1.0)


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, warmup_start_lr: float | None = None) -> float:
    """Learning rate at `step`: linear warm-up from `warmup_start_lr` to the cosine curve, then the cosine."""
    if warmup_steps > 0 and step < warmup_steps:
        start = base_lr * 0.01 if warmup_start_lr is None else warmup_start_lr
        end = cosine_lr(warmup_steps, total_steps, base_lr)
        return start + (end - start) * step / warmup_steps
    return cosine_lr(step, total_steps, base_lr)
