"""Classification head: per-pathway average pool, concatenation, dropout, fully-connected classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Head(nn.Module):
    """Pools each pathway, concatenates, applies dropout and a linear classifier; returns logits.

    `pool="global"` averages over all positions. `pool="reference"` averages windows of the training-crop
    size (T x crop/32 x crop/32, stride 1) as PySlowFast and PyTorchVideo do, so a 256 test crop gives a 2x2
    grid of positions, which are then averaged.

    `act` is applied in eval mode only, at each position before that mean: "none" averages logits (as
    PyTorchVideo; our default, because export, INT8 calibration and engine comparisons want logits), "softmax"
    averages per-position probabilities (as PySlowFast's eval head), "sigmoid" its multi-label variant. In
    training mode the head always returns logits (the losses take logits).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        dropout: float,
        pool: str = "global",
        window: Sequence[tuple[int, int, int]] = (),
        act: str = "none",
    ):
        super().__init__()
        self.pool_mode = pool
        self.act = act
        self.window = tuple(window)  # one (T, S, S) per pathway for pool="reference"
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(in_features, num_classes)
        nn.init.normal_(self.projection.weight, std=0.01)
        nn.init.zeros_(self.projection.bias)

    def pool(self, features: list[torch.Tensor]) -> torch.Tensor:
        """N, C_total, t, h, w after pooling each pathway (t = h = w = 1 for global pooling)."""
        if self.pool_mode == "global":
            return torch.cat([f.mean(dim=(2, 3, 4), keepdim=True) for f in features], dim=1)
        pooled = []
        for f, (t, s1, s2) in zip(features, self.window):
            k = (min(t, f.shape[2]), min(s1, f.shape[3]), min(s2, f.shape[4]))
            pooled.append(nn.functional.avg_pool3d(f, k, stride=1))
        return torch.cat(pooled, dim=1)

    def positions_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Logits at every pooled position: N, t, h, w, classes."""
        x = self.pool(features).permute(0, 2, 3, 4, 1)
        return self.projection(self.dropout(x))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.positions_logits(features)
        if not self.training and self.act == "softmax":
            x = torch.softmax(x, dim=-1)
        elif not self.training and self.act == "sigmoid":
            x = torch.sigmoid(x)
        return x.mean(dim=(1, 2, 3))
