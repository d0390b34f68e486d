"""The public builder: a preset name or a config in, an nn.Module carrying its config out."""

from __future__ import annotations

import torch

from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.slowfast import SlowFast
from slowfast_trt.model.zoo import get_config


def build(preset_or_config: str | SlowFastConfig, device: str | torch.device | None = None, **overrides) -> SlowFast:
    """Build a network from a preset name (see `presets()`) or a `SlowFastConfig`, with field overrides.

    Example: `build("slowfast_r50_4x16", num_classes=10)`. The returned module keeps the config as `.config`
    (with `extra["preset"]` naming the preset), so checkpoints and exports can record it.
    """
    cfg = get_config(preset_or_config, **overrides)
    if device is None:
        return SlowFast(cfg)
    with torch.device(device):
        return SlowFast(cfg)
