"""The action-detection head of Section 5: per-box RoI features from each pathway's res5, one sigmoid per class.

For each pathway: temporal average pooling of res5, RoIAlign of every box (input-pixel coordinates of the clip,
scaled to the res5 grid), spatial max pooling over the RoI bins; then concatenation, dropout, linear. This is
PySlowFast's `ResNetRoIHead` order. Pooling time first is the same as replicating each 2D box along time,
aligning every frame and averaging (RoIAlign is linear in the features), at 1/T of the cost.
"""

from __future__ import annotations

import torch
from torch import nn

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.roi_align import roi_align


def detection_config(cfg: SlowFastConfig, num_classes: int | None = None) -> SlowFastConfig:
    """The detection variant of a (classification) config: RoI head, res5 stride 1 + dilation 2, sigmoid classes."""
    overrides = {"detection": True, "multilabel": True, "head_pool": "global"}
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    return cfg.replace(**overrides).validate()


class RoIHead(nn.Module):
    """RoI head: `forward(features, boxes)` -> logits `(K, num_classes)`, one row per box.

    `boxes` is `(K, 5)` = [batch_index, x1, y1, x2, y2] in pixels of the Slow input crop. `scales` gives each
    pathway's res5 stride (16, or 32 for a half-resolution Fast input); `aligned` shifts boxes by half a pixel. `act="sigmoid"` applies the sigmoid in
    eval mode (the reference head's behaviour); the default returns logits.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        dropout: float,
        scales: list[int],
        resolution: int = 7,
        sampling_ratio: int = 2,
        act: str = "none",
        aligned: bool = True,
    ):
        super().__init__()
        self.scales, self.aligned = list(scales), aligned
        self.resolution, self.sampling_ratio, self.act = resolution, sampling_ratio, act
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(sum(in_channels), num_classes)
        nn.init.normal_(self.projection.weight, std=0.01)
        nn.init.zeros_(self.projection.bias)

    def roi_features(self, features: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        """`(K, C_total)`: temporal mean, RoIAlign, spatial max per pathway, concatenated."""
        pooled = []
        for f, stride in zip(features, self.scales):
            rois = roi_align(f.mean(dim=2), boxes, self.resolution, 1.0 / stride, self.sampling_ratio, aligned=self.aligned)
            pooled.append(rois.amax(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    def forward(self, features: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise SlowFastError(f"boxes must be K x 5 = [batch_index, x1, y1, x2, y2] in input pixels; got shape {tuple(boxes.shape)}")
        x = self.projection(self.dropout(self.roi_features(features, boxes)))
        if not self.training and self.act == "sigmoid":
            x = torch.sigmoid(x)
        return x
