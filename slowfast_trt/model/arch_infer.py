"""What a set of weights says about the network that produced them (read off key names and tensor shapes).

Recoverable: Slow-only / Fast-only / SlowFast (which stems exist), depth (blocks per stage), the R101 variant
(res4 conv_a temporal kernels), beta_inv (stem width ratio), the Fast input (its stem's input channels), the
lateral and its kernel and channel ratio (the fuse conv's shape), the number of classes (the classifier), the
non-local blocks (their keys). Not recoverable: T, tau and, for a T-conv lateral, alpha (its temporal stride is
not a weight): PySlowFast's 8x8 and 16x8 R101 have identical tensors. Those come from a preset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.config import DEPTHS, R50_RES4_TEMPORAL_BLOCKS, STEM_WIDTH, SlowFastConfig

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


def infer(shapes: Mapping[str, tuple]) -> Inferred:
    """Read the architecture off a {key: shape} map in our layout; a contradiction is a one-line error."""
    paths = [p for p in ("slow", "fast") if f"stem.{p}.conv.weight" in shapes]
    if not paths:
        raise SlowFastError("no stem convolution among the weights (neither Slow nor Fast pathway): not SlowFast weights")
    arch = "slowfast" if len(paths) == 2 else paths[0]
    f: dict[str, Any] = {"arch": arch}
    inf = Inferred(f)

    stage_depths = {p: tuple(_blocks(shapes, k, p) for k in range(2, 6)) for p in paths}
    first = stage_depths[paths[0]]
    if any(d != first for d in stage_depths.values()):
        raise SlowFastError(f"the pathways have different blocks per stage {stage_depths}; SlowFast pathways share one depth")
    depth = next((d for d, stages in DEPTHS.items() if stages == first), None)
    if depth is None:
        known = ", ".join(f"R{d} {s}" for d, s in DEPTHS.items())
        raise SlowFastError(f"blocks per stage res2..res5 are {first}, which matches no supported ResNet ({known})")
    f["depth"] = depth
    if depth == 101:
        kts = [_shape(shapes, f"res4.{paths[0]}.blocks.{j}.conv_a.weight")[2] for j in range(first[2])]
        n = R50_RES4_TEMPORAL_BLOCKS
        if all(k == kts[0] for k in kts):
            f["r101_variant"] = "101_101_101"
        elif all(k == kts[0] for k in kts[:n]) and all(k == 1 for k in kts[n:]):
            f["r101_variant"] = "50_50"
        else:
            raise SlowFastError(f"res4 temporal kernels {kts} match neither R101 variant (50_50: first {n} temporal; 101_101_101: all)")

    if "slow" in paths and _shape(shapes, "stem.slow.conv.weight")[0] != STEM_WIDTH:
        raise SlowFastError(
            f"the Slow stem has {_shape(shapes, 'stem.slow.conv.weight')[0]} channels; only ResNet widths ({STEM_WIDTH}) are supported"
        )
    if "fast" in paths:
        fast_out, fast_in = _shape(shapes, "stem.fast.conv.weight")[:2]
        if STEM_WIDTH % fast_out == 0:
            f["beta_inv"] = STEM_WIDTH // fast_out
        else:
            f["beta_inv"], f["round_widths"] = round(STEM_WIDTH / fast_out), True
        if fast_in not in _FAST_INPUT_BY_CHANNELS:
            raise SlowFastError(f"the Fast stem takes {fast_in} input channels; supported: {_FAST_INPUT_BY_CHANNELS}")
        f["fast_input"] = _FAST_INPUT_BY_CHANNELS[fast_in]
        inf.alternatives["fast_input"] = _FAST_INPUT_ALTERNATIVES[f["fast_input"]]

    if arch == "slowfast":
        if "fuse1.conv.weight" in shapes:
            out, cin, k = _shape(shapes, "fuse1.conv.weight")[:3]
            if out % cin:
                raise SlowFastError(f"the lateral conv maps {cin} to {out} channels, not a whole multiple")
            f.update(lateral="tconv", lateral_kernel=k, fusion_ratio=out // cin)
        else:
            fast_w = _shape(shapes, "stem.fast.conv.weight")[0]
            extra = _shape(shapes, "res2.slow.blocks.0.conv_a.weight")[1] - STEM_WIDTH
            if extra == 0:
                f["lateral"] = None
                inf.alternatives["lateral"] = (None, "ttoc_sum")
                inf.notes.append("no lateral weights and no extra Slow channels: late fusion (ttoc_sum looks the same)")
            elif extra == fast_w:
                f["lateral"] = "tsample"
            elif extra % fast_w == 0:
                f.update(lateral="ttoc_concat", alpha=extra // fast_w)
            else:
                raise SlowFastError(f"res2's Slow input has {extra} channels beyond the stem's {STEM_WIDTH}, which no lateral produces")
    else:
        f["lateral"] = None

    f["num_classes"] = _shape(shapes, "head.projection.weight")[0]
    f["nonlocal_blocks"] = tuple(sorted({int(m.group(1)) for k in shapes if (m := re.match(r"res4\.slow\.nonlocals\.(\d+)\.", k))}))

    inf.unknown = ["num_frames", "tau"] + (["alpha"] if "fast" in paths and "alpha" not in f else [])
    return inf
