"""Lateral connections Fast -> Slow (Sec. 3.3-3.4): time-to-channel, time-strided sampling, time-strided conv."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slowfast_trt.model.blocks import bn3d, conv3d
from slowfast_trt.model.config import SlowFastConfig


def lateral_channels(cfg: SlowFastConfig, fast_channels: int) -> int:
    """Channels a lateral concatenates onto the Slow features (0 for summation or no lateral)."""
    return {
        None: 0,
        "ttoc_sum": 0,
        "tconv": cfg.fusion_ratio * fast_channels,
        "tsample": fast_channels,
        "ttoc_concat": cfg.alpha * fast_channels,
    }[cfg.lateral]


class Lateral(nn.Module):
    """Transforms Fast features {alpha*T, S^2, beta*C} to T frames and fuses them into the Slow features.

    `tconv`: a K x 1 x 1 conv with temporal stride alpha to fusion_ratio*beta*C channels, BN, ReLU (the default;
    with `lateral_norm=False` the conv alone, as mmaction2's default SlowFast);
    `tsample`: one frame out of every alpha; `ttoc_*`: the alpha frames packed into channels. Fusion is by
    concatenation, except `ttoc_sum` (summation). When the Fast input is spatially smaller (half_res), the
    transformed features are upsampled (nearest) to the Slow size after the transform, so the conv runs at the
    Fast resolution.
    """

    def __init__(self, cfg: SlowFastConfig, fast_channels: int):
        super().__init__()
        self.kind = cfg.lateral
        self.alpha = cfg.alpha
        self.upsample = cfg.fast_spatial_ratio
        if self.kind == "tconv":
            k = cfg.lateral_kernel
            self.conv = conv3d(fast_channels, cfg.fusion_ratio * fast_channels, (k, 1, 1), stride=(cfg.alpha, 1, 1))
            if cfg.lateral_norm:
                self.bn = bn3d(cfg.fusion_ratio * fast_channels)
                self.relu = nn.ReLU(inplace=True)

    def transform(self, fast: torch.Tensor) -> torch.Tensor:
        if self.kind == "tconv":
            y = self.conv(fast)
            if hasattr(self, "bn"):
                y = self.relu(self.bn(y))
        elif self.kind == "tsample":
            # Frame selection by index_select, never a strided slice (a step-slicing trap in some runtimes).
            idx = torch.arange(0, fast.shape[2], self.alpha, device=fast.device)
            y = fast.index_select(2, idx)
        else:  # ttoc_sum / ttoc_concat: {alpha*T, S^2, C_f} -> {T, S^2, alpha*C_f}
            n, c, t, h, w = fast.shape
            y = fast.reshape(n, c, t // self.alpha, self.alpha, h, w).permute(0, 1, 3, 2, 4, 5)
            y = y.reshape(n, c * self.alpha, t // self.alpha, h, w)
        if self.upsample > 1:
            y = F.interpolate(y, scale_factor=(1.0, float(self.upsample), float(self.upsample)), mode="nearest")
        return y

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        y = self.transform(fast)
        if self.kind == "ttoc_sum":
            return slow + y
        return torch.cat([slow, y], dim=1)
