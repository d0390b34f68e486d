"""The one model config: every fact that builds a SlowFast network (and that downstream code must not re-guess).

Names follow the paper: `alpha` (frame-rate ratio Fast/Slow), `beta_inv` (1/beta, the Fast channel
ratio), `tau` (Slow temporal stride), `num_frames` (T, the Slow pathway's frames). The config travels
inside every checkpoint and every exported artifact's sidecar.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from slowfast_trt.common.errors import SlowFastError

ARCHS = ("slowfast", "slow", "fast")
DEPTHS = {14: (1, 1, 1, 1), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}  # 14: one bottleneck per stage, for CPU demos
R101_VARIANTS = ("50_50", "101_101_101")
LATERALS = ("tconv", "tsample", "ttoc_sum", "ttoc_concat")
FAST_INPUTS = {"rgb": 3, "gray": 1, "time_diff": 1, "half_res": 3, "flow": 2}
SAMPLINGS = ("pyslowfast", "strided")
HEAD_POOLS = ("global", "reference")
HEAD_ACTS = ("none", "softmax", "sigmoid")

# Slow-pathway ResNet widths (stem, then (inner, out) per stage res2..res5), the Table 1 numbers.
STEM_WIDTH = 64
STAGE_WIDTHS = ((64, 256), (128, 512), (256, 1024), (512, 2048))
# Temporal kernel of conv_a per stage res2..res5 (the stem is 1 for Slow, 5 for Fast): Table 1.
SLOW_TEMPORAL = (1, 1, 3, 3)
FAST_TEMPORAL = (3, 3, 3, 3)
SLOW_STEM_TEMPORAL = 1
FAST_STEM_TEMPORAL = 5
# In the paper's R101 ("50_50") only the first 6 res4 blocks keep temporal kernel 3, as in R50.
R50_RES4_TEMPORAL_BLOCKS = 6


@dataclass(frozen=True)
class SlowFastConfig:
    """Everything that defines a SlowFast / Slow-only / Fast-only network and its input."""

    arch: str = "slowfast"  # "slowfast" | "slow" (Slow-only) | "fast" (Fast-only)
    depth: int = 50  # ResNet depth: 50 or 101 (the paper), 14 (one bottleneck per stage; not in the paper)
    width: int = 64  # Slow stem width; every Slow width scales with width/64 (64 in the paper)
    r101_variant: str = "50_50"  # "50_50" (paper) or "101_101_101" (model zoo); only for depth 101
    num_frames: int = 4  # T: frames into the Slow pathway
    tau: int = 16  # temporal stride of the Slow pathway on the raw clip
    alpha: int = 8  # Fast pathway sees alpha * T frames at stride tau / alpha
    beta_inv: int = 8  # Fast pathway has 1 / beta_inv of the Slow channels
    lateral: str | None = "tconv"  # None (late fusion only) | "tconv" | "tsample" | "ttoc_sum" | "ttoc_concat"
    lateral_kernel: int = 5  # temporal kernel of the tconv lateral (5 in the paper, 7 in the zoo's 8x8 R50)
    fusion_ratio: int = 2  # tconv lateral output channels = fusion_ratio * Fast channels (the paper's 2*beta*C)
    nonlocal_blocks: tuple[int, ...] = ()  # res4 block indices (0-based) followed by a non-local block
    fast_input: str = "rgb"  # "rgb" | "gray" | "time_diff" | "half_res" | "flow" (model only)
    num_classes: int = 400
    dropout: float = 0.5
    multilabel: bool = False  # per-class sigmoid + BCE (Charades) instead of softmax + CE
    round_widths: bool = False  # allow beta_inv that does not divide the widths (rounds Fast widths)
    head_pool: str = "global"  # "global" average pool, or "reference" (PySlowFast/PyTorchVideo window pool)
    # Eval-mode activation applied per pooled position before the mean: "none" (logits: the default, since export,
    # INT8 calibration and comparisons want logits), "softmax" (PySlowFast's eval head), "sigmoid" (its multi-label head).
    head_act: str = "none"
    # Input facts that travel with the weights (nothing downstream re-guesses them).
    crop_size: int = 224  # training crop
    test_crop_size: int = 256  # test crop (the paper's GFLOPs are counted at this size)
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    sampling: str = "pyslowfast"  # frame-index convention: "pyslowfast" (truncated linspace) | "strided"
    train_flip: bool = True  # random horizontal flip in training; off for data whose classes depend on left/right
    # Action detection (Section 5): res5 at spatial stride 1 with dilation 2, and an RoI head (model/detection.py)
    # taking boxes beside the clips; multi-label (per-class sigmoid).
    detection: bool = False
    roi_resolution: int = 7  # RoIAlign output per side (PySlowFast's AVA setting), then spatial max-pooling
    roi_sampling_ratio: int = 2  # bilinear samples per bin side (fixed, so the head exports; see model/roi_align.py)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # free-form notes

    # ----- derived facts (one definition each) -----
    @property
    def has_slow(self) -> bool:
        return self.arch in ("slowfast", "slow")

    @property
    def has_fast(self) -> bool:
        return self.arch in ("slowfast", "fast")

    @property
    def pathways(self) -> tuple[str, ...]:
        return tuple(p for p, on in (("slow", self.has_slow), ("fast", self.has_fast)) if on)

    @property
    def input_names(self) -> list[str]:
        """Model inputs in order: the pathways, then `boxes` for detection models (exported graphs use these names)."""
        return [*self.pathways, *(["boxes"] if self.detection else [])]

    @property
    def fast_frames(self) -> int:
        return self.alpha * self.num_frames

    @property
    def fast_stride(self) -> int:
        """Temporal stride of the Fast pathway on the raw clip (tau / alpha)."""
        return self.tau // self.alpha

    @property
    def clip_frames(self) -> int:
        """Raw frames one clip spans (T * tau), at the reference 30 fps."""
        return self.num_frames * self.tau

    @property
    def fast_channels_in(self) -> int:
        return FAST_INPUTS[self.fast_input]

    @property
    def fast_spatial_ratio(self) -> int:
        """How many times smaller the Fast input is spatially than the Slow input (2 for half_res)."""
        return 2 if self.fast_input == "half_res" else 1

    @property
    def stage_depths(self) -> tuple[int, int, int, int]:
        return DEPTHS[self.depth]

    @property
    def stem_width(self) -> int:
        """Slow-pathway conv1 channels (64 in Table 1)."""
        return STEM_WIDTH * self.width // 64

    @property
    def stage_widths(self) -> tuple[tuple[int, int], ...]:
        """Slow-pathway (inner, out) channels of res2..res5 (Table 1 scaled by width/64)."""
        return tuple((i * self.width // 64, o * self.width // 64) for i, o in STAGE_WIDTHS)

    @property
    def spatial_stride(self) -> int:
        """Total spatial stride of res5 on the Slow input: 32, or 16 for detection (res5 not strided)."""
        return 16 if self.detection else 32

    @property
    def name(self) -> str:
        return str(self.extra.get("preset", "custom"))

    # ----- (de)serialisation -----
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["nonlocal_blocks"] = list(self.nonlocal_blocks)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlowFastConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SlowFastError(f"model config has unknown fields {unknown}; it was written by another version or is not a SlowFast config")
        d = dict(d)
        for key in ("nonlocal_blocks", "mean", "std"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def replace(self, **overrides: Any) -> SlowFastConfig:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SlowFastError(f"unknown model option(s) {unknown}; known: {sorted(known)}")
        if "nonlocal_blocks" in overrides:
            overrides["nonlocal_blocks"] = tuple(overrides["nonlocal_blocks"] or ())
        return dataclasses.replace(self, **overrides)

    # ----- validation -----
    def validate(self) -> SlowFastConfig:
        """Fail with a message naming the field when the config cannot build a consistent network."""

        def bad(field_name: str, why: str) -> SlowFastError:
            return SlowFastError(f"invalid model config: {field_name}={getattr(self, field_name)!r}: {why}")

        if self.arch not in ARCHS:
            raise bad("arch", f"must be one of {ARCHS}")
        if self.depth not in DEPTHS:
            raise bad("depth", f"must be one of {sorted(DEPTHS)}")
        if self.r101_variant not in R101_VARIANTS:
            raise bad("r101_variant", f"must be one of {R101_VARIANTS}")
        for name in ("num_frames", "tau", "alpha", "beta_inv", "num_classes", "fusion_ratio", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "must be a positive integer")
        if self.has_fast and self.tau % self.alpha != 0:
            raise bad("alpha", f"must divide tau={self.tau} so that the Fast pathway's stride tau/alpha is a whole number of frames")
        if self.lateral is not None and self.lateral not in LATERALS:
            raise bad("lateral", f"must be None or one of {LATERALS}")
        if self.lateral is not None and self.arch != "slowfast":
            raise bad("lateral", f"lateral connections need both pathways, but arch={self.arch!r}; use lateral=None")
        if self.lateral == "ttoc_sum" and self.alpha != self.beta_inv:
            raise bad(
                "lateral",
                f"time-to-channel with summation packs alpha*beta*C = {self.alpha}/{self.beta_inv}*C channels, "
                "which must equal the Slow width C: needs alpha == beta_inv (or use ttoc_concat)",
            )
        if self.lateral_kernel < 1 or self.lateral_kernel % 2 == 0:
            raise bad("lateral_kernel", "must be a positive odd number so that the strided lateral keeps T frames")
        if not self.round_widths and self.has_fast:
            widths = [self.stem_width] + [w for pair in self.stage_widths for w in pair]
            uneven = [w for w in widths if w % self.beta_inv]
            if uneven:
                raise bad(
                    "beta_inv",
                    f"does not divide the Slow channel widths {uneven} (Fast widths would not be whole); "
                    "use a divisor of 64 or set round_widths=True",
                )
        if self.fast_input not in FAST_INPUTS:
            raise bad("fast_input", f"must be one of {tuple(FAST_INPUTS)}")
        if self.fast_input != "rgb" and not self.has_fast:
            raise bad("fast_input", f"only applies to a Fast pathway, but arch={self.arch!r}")
        n_res4 = self.stage_depths[2]
        for i in self.nonlocal_blocks:
            if not isinstance(i, int) or not 0 <= i < n_res4:
                raise bad("nonlocal_blocks", f"indices must be res4 block numbers in [0, {n_res4 - 1}]")
        if self.nonlocal_blocks and not self.has_slow:
            raise bad("nonlocal_blocks", "non-local blocks sit on the Slow pathway's res4; this model has none")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        if self.head_pool not in HEAD_POOLS:
            raise bad("head_pool", f"must be one of {HEAD_POOLS}")
        if self.head_act not in HEAD_ACTS:
            raise bad("head_act", f"must be one of {HEAD_ACTS}")
        if self.sampling not in SAMPLINGS:
            raise bad("sampling", f"must be one of {SAMPLINGS}")
        if self.detection:
            if not self.multilabel:
                raise bad("detection", "the detection head classifies each box with per-class sigmoids; set multilabel=True")
            if self.roi_resolution < 1 or self.roi_sampling_ratio < 1:
                raise SlowFastError("invalid model config: roi_resolution and roi_sampling_ratio must be >= 1")
        stride = 32
        for name in ("crop_size", "test_crop_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < stride or v % stride:
                raise bad(name, f"must be a positive multiple of {stride} (the network's total spatial stride)")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise SlowFastError("invalid model config: mean/std must have 3 values each, std > 0")
        return self

    # ----- widths -----
    def fast_width(self, slow_width: int) -> int:
        """Fast-pathway channels for a Slow width: slow_width * beta (rounded when round_widths)."""
        if slow_width % self.beta_inv == 0:
            return slow_width // self.beta_inv
        return max(1, int(round(slow_width / self.beta_inv)))

    def temporal_kernels(self, pathway: str, stage: int) -> list[int]:
        """conv_a temporal kernel of each block in stage `stage` (2..5) of `pathway`."""
        base = (SLOW_TEMPORAL if pathway == "slow" else FAST_TEMPORAL)[stage - 2]
        n = self.stage_depths[stage - 2]
        kernels = [base] * n
        if stage == 4 and self.depth == 101 and self.r101_variant == "50_50":
            kernels = [base if i < R50_RES4_TEMPORAL_BLOCKS else 1 for i in range(n)]
        return kernels
