"""What a set of weights says about the network that produced them (read off key names and tensor shapes).

Recoverable: Slow-only / Fast-only / SlowFast (which stems exist), each pathway's depth (blocks per stage), the
R101 variant (each pathway's res4 conv_a temporal kernels), beta_inv (stem width ratio), the Fast input (its
stem's input channels), the lateral, its kernel, channel ratio and norm (the fuse conv's shape, a fuse BN), the
number of classes (the classifier), the non-local blocks of every stage and pathway (their keys). Not
recoverable either: the non-local pooling, instantiation and groups (no weights). Not recoverable: T, tau and, for a T-conv lateral, alpha (its temporal stride is
not a weight): PySlowFast's 8x8 and 16x8 R101 have identical tensors. Those come from a preset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.config import (
    DEPTHS,
    FAST_STEM_TEMPORAL,
    R50_RES4_TEMPORAL_BLOCKS,
    R101_VARIANTS,
    SLOW_STEM_TEMPORAL,
    STEM_WIDTH,
    SlowFastConfig,
)

_FAST_INPUT_BY_CHANNELS = {3: "rgb", 1: "gray", 2: "flow"}
# Inputs with the same stem shape: the weights cannot tell them apart.
_FAST_INPUT_ALTERNATIVES = {"rgb": ("rgb", "half_res"), "gray": ("gray", "time_diff"), "flow": ("flow",)}


@dataclass
class Inferred:
    """Config fields read off the weights, the values each could equally be, and what the weights cannot tell."""

    fields: dict[str, Any]
    alternatives: dict[str, tuple] = field(default_factory=dict)  # field -> every value the weights allow
    unknown: list[str] = field(default_factory=list)  # config fields not recoverable from the weights
    notes: list[str] = field(default_factory=list)

    def allows(self, name: str, value: Any) -> bool:
        """Whether the weights are consistent with config field `name` having `value`."""
        if name in self.alternatives:
            return value in self.alternatives[name]
        return self.fields[name] == value

    def mismatches(self, cfg: SlowFastConfig) -> list[str]:
        """`field: weights X, preset Y` for every inferred field that `cfg` contradicts."""
        out = []
        for name, value in self.fields.items():
            if not self.allows(name, getattr(cfg, name)):
                shown = "/".join(map(str, self.alternatives.get(name, (value,))))
                out.append(f"{name}: weights {shown}, preset {getattr(cfg, name)}")
        return out


def _blocks(shapes: Mapping[str, tuple], stage: int, pathway: str) -> int:
    idx = {int(m.group(1)) for k in shapes if (m := re.match(rf"res{stage}\.{pathway}\.blocks\.(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _shape(shapes: Mapping[str, tuple], key: str) -> tuple:
    if key not in shapes:
        raise SlowFastError(f"the weights have no {key} (in our layout), which every such network has; the file is incomplete")
    return tuple(shapes[key])


def _depth_of(stages: tuple[int, ...], pathway: str) -> int:
    depth = next((d for d, s in DEPTHS.items() if s == stages), None)
    if depth is None:
        known = ", ".join(f"R{d} {s}" for d, s in DEPTHS.items())
        raise SlowFastError(
            f"the {pathway} pathway's blocks per stage res2..res5 are {stages}, which matches no supported ResNet ({known})"
        )
    return depth


def _kernel_hint(kts: list[int]) -> str:
    """What a pattern of conv_a temporal kernels is, when it is not SlowFast's."""
    if len(set(kts)) == 2 and 1 in kts and all(a != b for a, b in zip(kts, kts[1:])):
        return "I3D-style inflation (temporal kernels in every other block) is not supported"
    if all(k == 1 for k in kts):
        return "a stage without temporal kernels where SlowFast has them (C2D-style) is not supported"
    return "only Table 1's temporal kernels are supported"


def _temporal_rule(shapes: Mapping[str, tuple], pathway: str, n_res4: int) -> str:
    """R101 rule of `pathway` from its res4 conv_a temporal kernels: "101" (all temporal) or "50" (first 6)."""
    kts = [_shape(shapes, f"res4.{pathway}.blocks.{j}.conv_a.weight")[2] for j in range(n_res4)]
    n = R50_RES4_TEMPORAL_BLOCKS
    if all(k == kts[0] for k in kts):
        return "101"
    if all(k == kts[0] for k in kts[:n]) and all(k == 1 for k in kts[n:]):
        return "50"
    raise SlowFastError(
        f"the {pathway} pathway's res4 temporal kernels {kts} match neither R101 rule (50: first {n} temporal; 101: all); "
        + _kernel_hint(kts)
    )


def _check_temporal_kernels(shapes: Mapping[str, tuple], cfg_like: SlowFastConfig, paths: list[str]) -> None:
    """Refuse, naming the feature, weights whose stem or conv_a temporal kernels are not Table 1's."""
    for p in paths:
        want_stem = SLOW_STEM_TEMPORAL if p == "slow" else FAST_STEM_TEMPORAL
        got_stem = _shape(shapes, f"stem.{p}.conv.weight")[2]
        if got_stem != want_stem:
            raise SlowFastError(
                f"the {p} stem has temporal kernel {got_stem} where SlowFast's {p} pathway has {want_stem} "
                f"(an I3D-style stem when 5 on a single pathway); such stems are not supported"
            )
        for k in range(2, 6):
            want = cfg_like.temporal_kernels(p, k)
            got = [_shape(shapes, f"res{k}.{p}.blocks.{j}.conv_a.weight")[2] for j in range(len(want))]
            if got != want:
                raise SlowFastError(
                    f"res{k} of the {p} pathway has conv_a temporal kernels {got} where SlowFast has {want}: {_kernel_hint(got)}"
                )


def _check_plain_bottlenecks(shapes: Mapping[str, tuple], paths: list[str]) -> None:
    """Refuse grouped (ResNeXt) 3x3 convs by name: conv_b must map its inner width to itself."""
    for p in paths:
        out_c, in_c = _shape(shapes, f"res2.{p}.blocks.0.conv_b.weight")[:2]
        if in_c != out_c:
            raise SlowFastError(
                f"the {p} pathway's 3x3 convs are grouped ({out_c} outputs from {in_c} inputs per group, ResNeXt); grouped convolutions are not supported"
            )


def _nonlocal_location(shapes: Mapping[str, tuple]) -> tuple:
    found = {
        (int(m.group(1)), m.group(2), int(m.group(3))) for k in shapes if (m := re.match(r"res(\d)\.(slow|fast)\.nonlocals\.(\d+)\.", k))
    }
    return tuple(tuple(tuple(sorted(i for s, q, i in found if s == k and q == p)) for p in ("slow", "fast")) for k in range(2, 6))


def infer(shapes: Mapping[str, tuple]) -> Inferred:
    """Read the architecture off a {key: shape} map in our layout; a contradiction is a one-line error."""
    paths = [p for p in ("slow", "fast") if f"stem.{p}.conv.weight" in shapes]
    if not paths:
        raise SlowFastError("no stem convolution among the weights (neither Slow nor Fast pathway): not SlowFast weights")
    arch = "slowfast" if len(paths) == 2 else paths[0]
    f: dict[str, Any] = {"arch": arch}
    inf = Inferred(f)

    stage_depths = {p: tuple(_blocks(shapes, k, p) for k in range(2, 6)) for p in paths}
    depths = {p: _depth_of(stage_depths[p], p) for p in paths}
    f["depth"] = depths[paths[0]]
    f["fast_depth"] = depths["fast"] if arch == "slowfast" and depths["fast"] != depths["slow"] else None
    _check_plain_bottlenecks(shapes, paths)
    rules = {p: _temporal_rule(shapes, p, stage_depths[p][2]) for p in paths if depths[p] == 101}
    if rules:
        allowed = [v for v, (slow, fast) in R101_VARIANTS.items() if rules.get("slow", slow) == slow and rules.get("fast", fast) == fast]
        f["r101_variant"] = allowed[0] if len(allowed) == 1 else next(v for v in allowed if R101_VARIANTS[v][0] == R101_VARIANTS[v][1])
        inf.alternatives["r101_variant"] = tuple(allowed)
    probe = SlowFastConfig(
        arch=arch, depth=f["depth"], fast_depth=f["fast_depth"], r101_variant=f.get("r101_variant", "50_50"), lateral=None
    )
    _check_temporal_kernels(shapes, probe, paths)

    stem = STEM_WIDTH
    if "slow" in paths:
        stem = _shape(shapes, "stem.slow.conv.weight")[0]
        if stem != STEM_WIDTH:
            f["width"] = stem  # a narrower/wider ResNet (every Slow width scales with it)
    if "fast" in paths:
        fast_out, fast_in = _shape(shapes, "stem.fast.conv.weight")[:2]
        if stem % fast_out == 0:
            f["beta_inv"] = stem // fast_out
        else:
            f["beta_inv"], f["round_widths"] = round(stem / fast_out), True
        if fast_in not in _FAST_INPUT_BY_CHANNELS:
            raise SlowFastError(f"the Fast stem takes {fast_in} input channels; supported: {_FAST_INPUT_BY_CHANNELS}")
        f["fast_input"] = _FAST_INPUT_BY_CHANNELS[fast_in]
        inf.alternatives["fast_input"] = _FAST_INPUT_ALTERNATIVES[f["fast_input"]]

    if arch == "slowfast":
        if "fuse1.conv.weight" in shapes:
            out, cin, k = _shape(shapes, "fuse1.conv.weight")[:3]
            if out % cin:
                raise SlowFastError(f"the lateral conv maps {cin} to {out} channels, not a whole multiple")
            f.update(lateral="tconv", lateral_kernel=k, fusion_ratio=out // cin, lateral_norm="fuse1.bn.weight" in shapes)
        else:
            fast_w = _shape(shapes, "stem.fast.conv.weight")[0]
            extra = _shape(shapes, "res2.slow.blocks.0.conv_a.weight")[1] - stem
            if extra == 0:
                f["lateral"] = None
                inf.alternatives["lateral"] = (None, "ttoc_sum")
                inf.notes.append("no lateral weights and no extra Slow channels: late fusion (ttoc_sum looks the same)")
            elif extra == fast_w:
                f["lateral"] = "tsample"
            elif extra % fast_w == 0:
                f.update(lateral="ttoc_concat", alpha=extra // fast_w)
            else:
                raise SlowFastError(f"res2's Slow input has {extra} channels beyond the stem's {stem}, which no lateral produces")
    else:
        f["lateral"] = None

    f["num_classes"] = _shape(shapes, "head.projection.weight")[0]
    f["nonlocal_location"] = _nonlocal_location(shapes)

    inf.unknown = ["num_frames", "tau"] + (["alpha"] if "fast" in paths and "alpha" not in f else [])
    return inf
