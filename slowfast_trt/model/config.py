"""The one model config: every fact that builds a SlowFast network (and that downstream code must not re-guess).

Names follow the paper: `alpha` (frame-rate ratio Fast/Slow), `beta_inv` (1/beta, the Fast channel
ratio), `tau` (Slow temporal stride), `num_frames` (T, the Slow pathway's frames). The config travels
inside every checkpoint and every exported artifact's sidecar.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from slowfast_trt.common.bounds import short
from slowfast_trt.common.errors import SlowFastError

ARCHS = ("slowfast", "slow", "fast")
DEPTHS = {14: (1, 1, 1, 1), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}  # 14: one bottleneck per stage, for CPU demos
# R101 variants as PySlowFast names them: the Slow rule, then the Fast rule, for res4's temporal kernels. Rule "50"
# keeps temporal kernels in the first 6 res4 blocks only (as R50 has 6); rule "101" in all 23. "101_101_101" is
# the model zoo's name for both pathways on rule "101".
R101_VARIANTS = {"50_50": ("50", "50"), "50_101": ("50", "101"), "101_50": ("101", "50"), "101_101_101": ("101", "101")}
NONLOCAL_INSTANTIATIONS = ("dot_product", "softmax")  # affinity normalised by 1/N, or softmax of (theta.phi)/sqrt(C_inner)
NO_NONLOCAL = (((), ()),) * 4  # res2..res5 x (Slow, Fast): block indices followed by a non-local block
NONLOCAL_POOL = ((1, 2, 2),) * 4  # per stage: max-pool kernel (= stride) on phi and g
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


_NESTED_FIELDS = ("mean", "std", "nonlocal_location", "nonlocal_pool", "nonlocal_group")
MAX_TEXT = 256  # characters of a string field read from a file (preset names, conventions)
MAX_EXTRA = 1 << 20  # characters of the free-form `extra` notes as JSON
MAX_ITEMS = 64  # entries of a sequence field (non-local block indices per stage and pathway, the longest)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def type_problem(value: Any, hint: Any, where: str) -> str | None:
    """Why `value` (from JSON: lists stand for tuples) is not of type `hint`, naming the part at fault; None when it is.

    Handles the types of config and file fields: int (not bool), float (an int is a number too), bool, str (at most
    MAX_TEXT characters), None, unions, tuple[X, ...] / tuple[X, Y] (lists or tuples, at most MAX_ITEMS), dict[str, X]."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        problems = [type_problem(value, a, where) for a in args]
        return None if None in problems else f"{where} must be {' or '.join(_type_name(a) for a in args)}, not {type(value).__name__}"
    if hint is type(None):
        return None if value is None else f"{where} must be None"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{where} must be a number, not {type(value).__name__}"
    if hint in (int, bool, str):
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        if not ok:
            return f"{where} must be {hint.__name__}, not {type(value).__name__}"
        return f"{where} is a string of {len(value)} characters (at most {MAX_TEXT})" if hint is str and len(value) > MAX_TEXT else None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return f"{where} must be a list, not {type(value).__name__}"
        if len(value) > MAX_ITEMS:
            return f"{where} lists {len(value)} values (at most {MAX_ITEMS})"
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            return f"{where} must list {len(kinds)} values, not {len(value)}"
        return next((p for i, (v, k) in enumerate(zip(value, kinds)) if (p := type_problem(v, k, f"{where}[{i}]"))), None)
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} must be a mapping, not {type(value).__name__}"
        return next(
            (
                p
                for k, v in value.items()
                if (p := type_problem(k, args[0], f"{where} key") or type_problem(v, args[1], f"{where}[{short(k, 20)}]"))
            ),
            None,
        )
    return None if isinstance(value, hint) else f"{where} must be {_type_name(hint)}, not {type(value).__name__}"


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(SlowFastConfig)


def _check_types(d: dict[str, Any]) -> None:
    """One line naming the first field of a config read from a file whose value has the wrong type or size."""
    for name, hint in _field_types().items():
        if name in d and (problem := type_problem(d[name], hint, name)):
            raise SlowFastError(f"invalid model config: {problem}")
    if "extra" in d:
        try:
            size = len(json.dumps(d["extra"]))
        except (TypeError, ValueError):
            raise SlowFastError("invalid model config: extra must hold JSON values") from None
        if size > MAX_EXTRA:
            raise SlowFastError(f"invalid model config: extra is {size} characters as JSON (at most {MAX_EXTRA})")


def _deep(value: Any, kind: type) -> Any:
    return kind(_deep(v, kind) for v in value) if isinstance(value, (list, tuple)) else value


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """`d` with the sequence fields as (nested) tuples, so configs from JSON compare and hash equal."""
    return {k: (_deep(v, tuple) if k in _NESTED_FIELDS and v is not None else v) for k, v in d.items()}


def _lists(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_deep(v, list) if k in _NESTED_FIELDS and v is not None else v) for k, v in d.items()}


@dataclass(frozen=True)
class SlowFastConfig:
    """Everything that defines a SlowFast / Slow-only / Fast-only network and its input."""

    arch: str = "slowfast"  # "slowfast" | "slow" (Slow-only) | "fast" (Fast-only)
    depth: int = 50  # ResNet depth: 50 or 101 (the paper), 14 (one bottleneck per stage; not in the paper)
    width: int = 64  # Slow stem width; every Slow width scales with width/64 (64 in the paper)
    r101_variant: str = "50_50"  # "{slow rule}_{fast rule}" (R101_VARIANTS): "50_50" (paper), "101_101_101" (zoo), "50_101"
    fast_depth: int | None = None  # the Fast pathway's depth when it differs from the Slow one (mmaction2's R101-R50)
    num_frames: int = 4  # T: frames into the Slow pathway
    tau: int = 16  # temporal stride of the Slow pathway on the raw clip
    alpha: int = 8  # Fast pathway sees alpha * T frames at stride tau / alpha
    beta_inv: int = 8  # Fast pathway has 1 / beta_inv of the Slow channels
    lateral: str | None = "tconv"  # None (late fusion only) | "tconv" | "tsample" | "ttoc_sum" | "ttoc_concat"
    lateral_kernel: int = 5  # temporal kernel of the tconv lateral (5 in the paper, 7 in the zoo's 8x8 R50)
    fusion_ratio: int = 2  # tconv lateral output channels = fusion_ratio * Fast channels (the paper's 2*beta*C)
    lateral_norm: bool = True  # BN + ReLU after the tconv lateral (PySlowFast); False: the conv alone (mmaction2's default)
    # Non-local blocks as PySlowFast's NONLOCAL.LOCATION: per stage res2..res5, per pathway (Slow, Fast), the 0-based
    # indices of the blocks each followed by a non-local block; then the per-stage pool on phi/g and temporal groups.
    nonlocal_location: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = NO_NONLOCAL
    nonlocal_instantiation: str = "dot_product"  # "dot_product" (the appendix) | "softmax"
    nonlocal_pool: tuple[tuple[int, int, int], ...] = NONLOCAL_POOL
    nonlocal_group: tuple[int, ...] = (1, 1, 1, 1)  # per stage: time split into this many groups, attended separately
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
    test_clips: int = 10  # views per video at test time: temporal clips x spatial crops (the zoos' 10 x 3)
    test_crops: int = 3
    # Action detection (Section 5): res5 at spatial stride 1 with dilation 2, and an RoI head (model/detection.py)
    # taking boxes beside the clips; multi-label (per-class sigmoid).
    detection: bool = False
    roi_resolution: int = 7  # RoIAlign output per side (PySlowFast's AVA setting), then spatial max-pooling
    roi_sampling_ratio: int = 2  # bilinear samples per bin side (fixed, so the head exports; see model/roi_align.py)
    roi_aligned: bool = True  # box corners shifted by half a pixel (PySlowFast's DETECTION.ALIGNED; its c2 AVA models: False)
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
        """Blocks per stage res2..res5 at `depth` (the Slow pathway; both unless `fast_depth` is set)."""
        return DEPTHS[self.depth]

    def pathway_depth(self, pathway: str) -> int:
        """ResNet depth of `pathway`: `fast_depth` for the Fast one where set, else `depth`."""
        return self.fast_depth if (pathway == "fast" and self.fast_depth is not None) else self.depth

    def pathway_stage_depths(self, pathway: str) -> tuple[int, int, int, int]:
        return DEPTHS[self.pathway_depth(pathway)]

    def nonlocal_blocks(self, stage: int, pathway: str) -> tuple[int, ...]:
        """Block indices of stage `stage` (2..5) of `pathway` that are followed by a non-local block."""
        return tuple(self.nonlocal_location[stage - 2][0 if pathway == "slow" else 1])

    @property
    def has_nonlocal(self) -> bool:
        return any(blocks for stage in self.nonlocal_location for blocks in stage)

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
        return _lists(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlowFastConfig:
        """The config stored as `d` (a checkpoint's or sidecar's JSON), every field checked by type and size first."""
        if not isinstance(d, dict):
            raise SlowFastError(f"the model config is a {type(d).__name__}, not a mapping of fields; it is not a SlowFast config")
        d = dict(d)
        if "nonlocal_blocks" in d:  # configs saved before non-local blocks could sit anywhere: res4 of the Slow pathway
            legacy = d.pop("nonlocal_blocks") or ()
            if problem := type_problem(legacy, tuple[int, ...], "nonlocal_blocks"):
                raise SlowFastError(f"invalid model config: {problem}")
            d.setdefault("nonlocal_location", (((), ()), ((), ()), (tuple(legacy), ()), ((), ())))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known, key=str)
        if unknown:
            raise SlowFastError(
                f"model config has unknown fields {short(unknown)} ({len(unknown)}); it was written by another version or is not a SlowFast config"
            )
        _check_types(d)
        return cls(**_tuples(d))

    def replace(self, **overrides: Any) -> SlowFastConfig:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SlowFastError(f"unknown model option(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **_tuples(overrides))

    # ----- validation -----
    def validate(self) -> SlowFastConfig:
        """Fail with a message naming the field when the config cannot build a consistent network."""

        def bad(field_name: str, why: str) -> SlowFastError:
            return SlowFastError(f"invalid model config: {field_name}={short(getattr(self, field_name))}: {why}")

        if self.arch not in ARCHS:
            raise bad("arch", f"must be one of {ARCHS}")
        if self.depth not in DEPTHS:
            raise bad("depth", f"must be one of {sorted(DEPTHS)}")
        if self.r101_variant not in R101_VARIANTS:
            raise bad("r101_variant", f"must be one of {tuple(R101_VARIANTS)}")
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
        if not isinstance(self.lateral_norm, bool):
            raise bad("lateral_norm", "must be True or False")
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
        if self.fast_depth is not None and self.fast_depth not in DEPTHS:
            raise bad("fast_depth", f"must be None or one of {sorted(DEPTHS)}")
        self._validate_nonlocal(bad)
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
        for name in ("test_clips", "test_crops"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be a positive integer")
        return self

    def _validate_nonlocal(self, bad) -> None:
        loc = self.nonlocal_location
        if len(loc) != 4 or any(len(stage) != 2 for stage in loc):
            raise bad("nonlocal_location", "must list 4 stages (res2..res5), each as (Slow blocks, Fast blocks)")
        for k, stage in enumerate(loc, start=2):
            for p, blocks in zip(("slow", "fast"), stage):
                if not blocks:
                    continue
                if p not in self.pathways:
                    raise bad("nonlocal_location", f"res{k} has non-local blocks on the {p} pathway, which this {self.arch} model lacks")
                n = self.pathway_stage_depths(p)[k - 2]
                if any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n for i in blocks):
                    raise bad("nonlocal_location", f"res{k} {p} block indices must be in [0, {n - 1}]")
        if self.nonlocal_instantiation not in NONLOCAL_INSTANTIATIONS:
            raise bad("nonlocal_instantiation", f"must be one of {NONLOCAL_INSTANTIATIONS}")
        if len(self.nonlocal_pool) != 4 or any(len(p) != 3 or min(p) < 1 for p in self.nonlocal_pool):
            raise bad("nonlocal_pool", "must give a (t, h, w) pool of positive sizes for each of res2..res5")
        if len(self.nonlocal_group) != 4 or any(not isinstance(g, int) or g < 1 for g in self.nonlocal_group):
            raise bad("nonlocal_group", "must give a positive group count for each of res2..res5")

    # ----- widths -----
    def fast_width(self, slow_width: int) -> int:
        """Fast-pathway channels for a Slow width: slow_width * beta (rounded when round_widths)."""
        if slow_width % self.beta_inv == 0:
            return slow_width // self.beta_inv
        return max(1, int(round(slow_width / self.beta_inv)))

    def temporal_rule(self, pathway: str) -> str:
        """The R101 temporal-kernel rule ("50" or "101") of `pathway`, from `r101_variant` (Slow rule, Fast rule)."""
        return R101_VARIANTS[self.r101_variant][0 if pathway == "slow" else 1]

    def temporal_kernels(self, pathway: str, stage: int) -> list[int]:
        """conv_a temporal kernel of each block in stage `stage` (2..5) of `pathway`."""
        base = (SLOW_TEMPORAL if pathway == "slow" else FAST_TEMPORAL)[stage - 2]
        n = self.pathway_stage_depths(pathway)[stage - 2]
        kernels = [base] * n
        if stage == 4 and self.pathway_depth(pathway) == 101 and self.temporal_rule(pathway) == "50":
            kernels = [base if i < R50_RES4_TEMPORAL_BLOCKS else 1 for i in range(n)]
        return kernels
