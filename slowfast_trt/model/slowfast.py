"""The SlowFast network (and its Slow-only / Fast-only members) assembled from blocks, per Table 1."""

from __future__ import annotations

import torch
from torch import nn

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.blocks import ResStage, Stem
from slowfast_trt.model.config import FAST_STEM_TEMPORAL, SLOW_STEM_TEMPORAL, SlowFastConfig
from slowfast_trt.model.detection import RoIHead
from slowfast_trt.model.head import Head
from slowfast_trt.model.lateral import Lateral, lateral_channels

STAGES = ("res2", "res3", "res4", "res5")


class Pathways(nn.Module):
    """Holds one module per pathway (`slow`, `fast`) and applies each to its own features."""

    def __init__(self, **modules: nn.Module):
        super().__init__()
        for name, m in modules.items():
            self.add_module(name, m)

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name)(x[name]) for name in x}


class SlowFast(nn.Module):
    """SlowFast network: stem, res2..res5 per pathway, laterals after pool1/res2/res3/res4, head.

    `forward(slow, fast[, boxes])` takes `N, C, T, H, W` clips (Slow: T frames; Fast: alpha*T frames, already in the
    config's fast_input form) and returns logits `N, num_classes`. Slow-only models take `slow` alone,
    Fast-only models `fast` alone. The config is kept as `.config`.
    """

    def __init__(self, cfg: SlowFastConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        widths = {"slow": lambda w: w, "fast": cfg.fast_width}
        stem_in = {"slow": 3, "fast": cfg.fast_channels_in}
        stem_kt = {"slow": SLOW_STEM_TEMPORAL, "fast": FAST_STEM_TEMPORAL}
        paths = cfg.pathways
        self.stem = Pathways(**{p: Stem(stem_in[p], widths[p](cfg.stem_width), stem_kt[p]) for p in paths})

        fused = cfg.arch == "slowfast" and cfg.lateral is not None
        # Slow input channels of each stage grow by what the lateral before it concatenates.
        cin = {p: widths[p](cfg.stem_width) for p in paths}
        self.fuse1 = Lateral(cfg, cin["fast"]) if fused else None
        for k, (stage, (inner, out)) in enumerate(zip(STAGES, cfg.stage_widths), start=2):
            if fused and k > 2:
                self.add_module(f"fuse{k - 1}", Lateral(cfg, cin["fast"]))
            elif k > 2:
                setattr(self, f"fuse{k - 1}", None)
            if fused:
                cin["slow"] += lateral_channels(cfg, cin["fast"])
            modules = {}
            nonlocal_options = dict(
                pool=cfg.nonlocal_pool[k - 2], instantiation=cfg.nonlocal_instantiation, group=cfg.nonlocal_group[k - 2]
            )
            for p in paths:
                modules[p] = ResStage(
                    cin[p],
                    widths[p](inner),
                    widths[p](out),
                    cfg.temporal_kernels(p, k),
                    spatial_stride=1 if k == 2 or (k == 5 and cfg.detection) else 2,
                    nonlocal_after=cfg.nonlocal_blocks(k, p),
                    dilation=2 if (k == 5 and cfg.detection) else 1,  # Section 5: res5 keeps res4's resolution
                    nonlocal_options=nonlocal_options,
                )
            self.add_module(stage, Pathways(**modules))
            cin = {p: widths[p](out) for p in paths}

        if cfg.detection:
            scales = [cfg.spatial_stride * (cfg.fast_spatial_ratio if p == "fast" else 1) for p in paths]
            self.head: Head | RoIHead = RoIHead(
                list(cin.values()),
                cfg.num_classes,
                cfg.dropout,
                scales,
                cfg.roi_resolution,
                cfg.roi_sampling_ratio,
                act=cfg.head_act,
                aligned=cfg.roi_aligned,
            )
            return
        window = []
        s = cfg.crop_size // 32
        for p in paths:
            frames = cfg.num_frames if p == "slow" else cfg.fast_frames
            sp = s if p == "slow" else s // cfg.fast_spatial_ratio
            window.append((frames, sp, sp))
        self.head = Head(sum(cin.values()), cfg.num_classes, cfg.dropout, pool=cfg.head_pool, window=window, act=cfg.head_act)

    def _inputs(self, slow: torch.Tensor | None, fast: torch.Tensor | None) -> dict[str, torch.Tensor]:
        given = {"slow": slow, "fast": fast}
        x = {}
        for p in self.config.pathways:
            t = given[p]
            if t is None:
                raise SlowFastError(f"{self.config.arch} model needs a '{p}' input tensor (N, C, T, H, W)")
            x[p] = t
        return x

    def features(self, slow: torch.Tensor | None = None, fast: torch.Tensor | None = None) -> list[torch.Tensor]:
        """res5 features of each pathway (Slow first), before the head."""
        x = self._inputs(slow, fast)
        x = self.stem(x)
        for k, stage in enumerate(STAGES, start=1):
            fuse = getattr(self, f"fuse{k}")
            if fuse is not None:
                x = {"slow": fuse(x["slow"], x["fast"]), "fast": x["fast"]}
            x = getattr(self, stage)(x)
        return [x[p] for p in self.config.pathways]

    def forward(
        self, slow: torch.Tensor | None = None, fast: torch.Tensor | None = None, boxes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits `N, classes`; detection models take `boxes` (K, 5) too and return `K, classes`, one row per box."""
        if self.config.detection:
            if boxes is None:
                raise SlowFastError("a detection model needs boxes (K, 5) = [batch_index, x1, y1, x2, y2] in input pixels")
            return self.head(self.features(slow, fast), boxes)
        return self.head(self.features(slow, fast))

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores from the forward's output: sigmoid per class for multi-label models, softmax otherwise.

        A model whose head already applies an eval activation (`head_act` "softmax"/"sigmoid", as converted
        PySlowFast models) returns scores in eval mode; they pass through unchanged rather than twice activated.
        """
        if not self.training and self.config.head_act != "none":
            return logits
        return torch.sigmoid(logits) if self.config.multilabel else torch.softmax(logits, dim=-1)
