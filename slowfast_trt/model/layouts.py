"""Key layouts of the reference implementations and pure renames between them and ours, in both directions.

Our module tree names a tensor like `res4.slow.blocks.2.conv_a.weight`; PySlowFast calls it
`s4.pathway0_res2.branch2.a.weight`, PyTorchVideo `blocks.3.multipathway_blocks.0.res_blocks.2.branch2.conv_a.weight`
and PySlowFast's Caffe2 zoo files `res4_2_branch2a_w`. Shapes are equal in every layout (Caffe2 blobs may lack
trailing singleton dimensions). Each layout is a list of rules: one template on our side, one on theirs, with
placeholders for the pathway {P}, stage {S}, block {J}, bottleneck conv {C}, BatchNorm field {X}, non-local conv {N}
and weight/bias {W}; a layout encodes some placeholders differently (pathway "slow" is `0` in PySlowFast, an empty
prefix in Caffe2; stage k is `blocks.{k-1}` in PyTorchVideo).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from slowfast_trt.common.errors import SlowFastError

LAYOUTS = ("pyslowfast", "pytorchvideo", "caffe2", "mmaction2")

# What each placeholder matches on our side.
_OURS = {
    "P": r"slow|fast",
    "S": r"\d",
    "J": r"\d+",
    "C": r"[abc]",
    "X": r"weight|bias|running_mean|running_var|num_batches_tracked",
    "N": r"theta|phi|g|out",
    "W": r"weight|bias",
}


@dataclass(frozen=True)
class _Code:
    """How a layout writes one placeholder: our value -> theirs (None: no counterpart), and back."""

    regex: str
    encode: Callable[[str], str | None]
    decode: Callable[[str], str]


def _table(mapping: dict[str, str]) -> _Code:
    inverse = {v: k for k, v in mapping.items()}
    return _Code("|".join(re.escape(v) for v in sorted(mapping.values(), key=len, reverse=True)), mapping.get, inverse.__getitem__)


_PATHWAY_INDEX = _table({"slow": "0", "fast": "1"})
_STAGE_MINUS_ONE = _Code(r"\d", lambda s: str(int(s) - 1), lambda b: str(int(b) + 1))
_C2_PATHWAY = _table({"slow": "", "fast": "t_"})
_C2_BN = _table({"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"})  # no num_batches_tracked
_C2_WB = _table({"weight": "w", "bias": "b"})
_MM_CONV = _table({"a": "1", "b": "2", "c": "3"})


def _compile(template: str, codes: dict[str, str]) -> re.Pattern:
    out, pos = [], 0
    for m in re.finditer(r"\{(\w)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{codes[m.group(1)]})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out) + r"\Z")


@dataclass
class Layout:
    """A named key layout: rules from our names to theirs and back (first matching rule wins)."""

    name: str
    rules: list[tuple[str, str]]
    codes: dict[str, _Code] = field(default_factory=dict)
    # Placeholders only their side has, computed from ours plus a context (e.g. Caffe2's last block index).
    derived: dict[str, Callable[[dict[str, str], dict], str]] = field(default_factory=dict)
    derived_regex: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        theirs_codes = {k: (self.codes[k].regex if k in self.codes else v) for k, v in _OURS.items()}
        theirs_codes.update(self.derived_regex)
        self._compiled = [(_compile(o, _OURS), _compile(t, theirs_codes), o, t) for o, t in self.rules]

    def to_theirs(self, key: str, context: dict | None = None) -> str | None:
        """Their name for our `key`; None when the layout has no such tensor (e.g. Caffe2's num_batches_tracked)."""
        for ours_re, _, _, theirs_t in self._compiled:
            m = ours_re.match(key)
            if not m:
                continue
            values = {}
            for k, v in m.groupdict().items():
                enc = self.codes[k].encode(v) if k in self.codes else v
                if enc is None:
                    return None
                values[k] = enc
            for k, fn in self.derived.items():
                if "{" + k + "}" in theirs_t:
                    values[k] = fn(m.groupdict(), context or {})
            return theirs_t.format(**values)
        raise SlowFastError(f"the {self.name} layout has no counterpart for our tensor {key!r}")

    def to_ours(self, key: str) -> str | None:
        """Our name for their `key`, or None when no rule matches."""
        for _, theirs_re, ours_t, _ in self._compiled:
            m = theirs_re.match(key)
            if not m:
                continue
            values = {
                k: (self.codes[k].decode(v) if k in self.codes else v) for k, v in m.groupdict().items() if k not in self.derived_regex
            }
            return ours_t.format(**values)
        return None


PYSLOWFAST = Layout(
    "pyslowfast",
    [
        ("stem.{P}.conv.weight", "s1.pathway{P}_stem.conv.weight"),
        ("stem.{P}.bn.{X}", "s1.pathway{P}_stem.bn.{X}"),
        ("fuse{S}.conv.weight", "s{S}_fuse.conv_f2s.weight"),
        ("fuse{S}.bn.{X}", "s{S}_fuse.bn.{X}"),
        ("res{S}.{P}.blocks.{J}.shortcut.conv.weight", "s{S}.pathway{P}_res{J}.branch1.weight"),
        ("res{S}.{P}.blocks.{J}.shortcut.bn.{X}", "s{S}.pathway{P}_res{J}.branch1_bn.{X}"),
        ("res{S}.{P}.blocks.{J}.conv_{C}.weight", "s{S}.pathway{P}_res{J}.branch2.{C}.weight"),
        ("res{S}.{P}.blocks.{J}.bn_{C}.{X}", "s{S}.pathway{P}_res{J}.branch2.{C}_bn.{X}"),
        ("res{S}.{P}.nonlocals.{J}.{N}.{W}", "s{S}.pathway{P}_nonlocal{J}.conv_{N}.{W}"),
        ("res{S}.{P}.nonlocals.{J}.bn.{X}", "s{S}.pathway{P}_nonlocal{J}.bn.{X}"),
        ("head.projection.{W}", "head.projection.{W}"),
    ],
    codes={"P": _PATHWAY_INDEX},
)

# create_slowfast: blocks.0 = stems (+ fusion 1), blocks.1..4 = res2..res5 (+ fusions 2..4), blocks.6 = head.
PYTORCHVIDEO_SLOWFAST = Layout(
    "pytorchvideo",
    [
        ("stem.{P}.conv.weight", "blocks.0.multipathway_blocks.{P}.conv.weight"),
        ("stem.{P}.bn.{X}", "blocks.0.multipathway_blocks.{P}.norm.{X}"),
        ("fuse{S}.conv.weight", "blocks.{S}.multipathway_fusion.conv_fast_to_slow.weight"),
        ("fuse{S}.bn.{X}", "blocks.{S}.multipathway_fusion.norm.{X}"),
        ("res{S}.{P}.blocks.{J}.shortcut.conv.weight", "blocks.{S}.multipathway_blocks.{P}.res_blocks.{J}.branch1_conv.weight"),
        ("res{S}.{P}.blocks.{J}.shortcut.bn.{X}", "blocks.{S}.multipathway_blocks.{P}.res_blocks.{J}.branch1_norm.{X}"),
        ("res{S}.{P}.blocks.{J}.conv_{C}.weight", "blocks.{S}.multipathway_blocks.{P}.res_blocks.{J}.branch2.conv_{C}.weight"),
        ("res{S}.{P}.blocks.{J}.bn_{C}.{X}", "blocks.{S}.multipathway_blocks.{P}.res_blocks.{J}.branch2.norm_{C}.{X}"),
        ("head.projection.{W}", "blocks.6.proj.{W}"),
    ],
    codes={"P": _PATHWAY_INDEX, "S": _STAGE_MINUS_ONE},
)

# create_resnet (Slow-only): blocks.0 = stem, blocks.1..4 = res2..res5, blocks.5 = head.
PYTORCHVIDEO_RESNET = Layout(
    "pytorchvideo",
    [
        ("stem.slow.conv.weight", "blocks.0.conv.weight"),
        ("stem.slow.bn.{X}", "blocks.0.norm.{X}"),
        ("res{S}.slow.blocks.{J}.shortcut.conv.weight", "blocks.{S}.res_blocks.{J}.branch1_conv.weight"),
        ("res{S}.slow.blocks.{J}.shortcut.bn.{X}", "blocks.{S}.res_blocks.{J}.branch1_norm.{X}"),
        ("res{S}.slow.blocks.{J}.conv_{C}.weight", "blocks.{S}.res_blocks.{J}.branch2.conv_{C}.weight"),
        ("res{S}.slow.blocks.{J}.bn_{C}.{X}", "blocks.{S}.res_blocks.{J}.branch2.norm_{C}.{X}"),
        ("head.projection.{W}", "blocks.5.proj.{W}"),
    ],
    codes={"S": _STAGE_MINUS_ONE},
)


# mmaction2's Recognizer3D with ResNet3dSlowFast: backbone.{slow,fast}_path are ResNet3d pathways (layer1..4 =
# res2..res5, ConvModules with .conv/.bn), the laterals live on the Slow pathway, cls_head.fc_cls is the classifier.
# Its classifier reads [Fast | Slow] features; ours [Slow | Fast]: `head_columns` reorders them.
MMACTION2 = Layout(
    "mmaction2",
    [
        ("stem.{P}.conv.weight", "backbone.{P}_path.conv1.conv.weight"),
        ("stem.{P}.bn.{X}", "backbone.{P}_path.conv1.bn.{X}"),
        ("fuse1.conv.weight", "backbone.slow_path.conv1_lateral.conv.weight"),
        ("fuse1.bn.{X}", "backbone.slow_path.conv1_lateral.bn.{X}"),
        ("fuse{S}.conv.weight", "backbone.slow_path.layer{S}_lateral.conv.weight"),
        ("fuse{S}.bn.{X}", "backbone.slow_path.layer{S}_lateral.bn.{X}"),
        ("res{S}.{P}.blocks.{J}.shortcut.conv.weight", "backbone.{P}_path.layer{S}.{J}.downsample.conv.weight"),
        ("res{S}.{P}.blocks.{J}.shortcut.bn.{X}", "backbone.{P}_path.layer{S}.{J}.downsample.bn.{X}"),
        ("res{S}.{P}.blocks.{J}.conv_{C}.weight", "backbone.{P}_path.layer{S}.{J}.conv{C}.conv.weight"),
        ("res{S}.{P}.blocks.{J}.bn_{C}.{X}", "backbone.{P}_path.layer{S}.{J}.conv{C}.bn.{X}"),
        ("head.projection.{W}", "cls_head.fc_cls.{W}"),
    ],
    codes={"S": _STAGE_MINUS_ONE, "C": _MM_CONV},
)


def head_columns(state: dict, fast_features: int, fast_first: bool) -> dict:
    """`state` with the classifier's input columns moved between [Fast | Slow] (mmaction2) and [Slow | Fast] (ours).

    `fast_first=True` takes a [Fast | Slow] classifier to ours; False takes ours to [Fast | Slow]. `fast_features`
    is the Fast pathway's res5 width.
    """
    w = state.get("head.projection.weight")
    if w is None:
        return state
    split = fast_features if fast_first else w.shape[1] - fast_features
    return {**state, "head.projection.weight": w[:, list(range(split, w.shape[1])) + list(range(split))].contiguous()}


def _c2_last_block(values: dict[str, str], context: dict) -> str:
    """Caffe2 names the lateral after stage k by the Fast pathway's last block of that stage."""
    depths = context.get("depths")
    if depths is None:
        raise SlowFastError("naming Caffe2 laterals needs the stage depths")
    return str(depths[int(values["S"]) - 2] - 1)


# PySlowFast's Caffe2 zoo blobs ("t_" marks the Fast pathway). BatchNorm is stored as _s/_b/_rm/_riv.
CAFFE2 = Layout(
    "caffe2",
    [
        ("stem.{P}.conv.weight", "{P}conv1_w"),
        ("stem.{P}.bn.{X}", "{P}res_conv1_bn_{X}"),
        ("fuse1.conv.weight", "t_pool1_subsample_w"),
        ("fuse1.bn.{X}", "t_pool1_subsample_bn_{X}"),
        ("fuse{S}.conv.weight", "t_res{S}_{L}_branch2c_bn_subsample_w"),
        ("fuse{S}.bn.{X}", "t_res{S}_{L}_branch2c_bn_subsample_bn_{X}"),
        ("res{S}.{P}.blocks.{J}.shortcut.conv.weight", "{P}res{S}_{J}_branch1_w"),
        ("res{S}.{P}.blocks.{J}.shortcut.bn.{X}", "{P}res{S}_{J}_branch1_bn_{X}"),
        ("res{S}.{P}.blocks.{J}.conv_{C}.weight", "{P}res{S}_{J}_branch2{C}_w"),
        ("res{S}.{P}.blocks.{J}.bn_{C}.{X}", "{P}res{S}_{J}_branch2{C}_bn_{X}"),
        ("res{S}.slow.nonlocals.{J}.{N}.{W}", "nonlocal_conv{S}_{J}_{N}_{W}"),
        ("res{S}.slow.nonlocals.{J}.bn.{X}", "nonlocal_conv{S}_{J}_bn_{X}"),
        ("head.projection.{W}", "pred_{W}"),
    ],
    codes={"P": _C2_PATHWAY, "X": _C2_BN, "W": _C2_WB},
    derived={"L": _c2_last_block},
    derived_regex={"L": r"\d+"},
)

# Caffe2 blobs that are training bookkeeping, not weights: SGD momentum, the learning rate, the iteration,
# and BatchNorm's saved batch statistics.
CAFFE2_IGNORED = re.compile(r"(.*_momentum|lr|model_iter|.*_bn_(sm|siv))\Z")


def layout(name: str, arch: str = "slowfast") -> Layout:
    """The layout called `name` (one of LAYOUTS); PyTorchVideo's depends on the arch."""
    if name == "pyslowfast":
        return PYSLOWFAST
    if name == "caffe2":
        return CAFFE2
    if name == "mmaction2":
        if arch != "slowfast":
            raise SlowFastError(f"the mmaction2 layout here is that of its SlowFast recognizers; a {arch} network has no such names")
        return MMACTION2
    if name == "pytorchvideo":
        if arch == "slow":
            return PYTORCHVIDEO_RESNET
        if arch == "fast":
            raise SlowFastError("PyTorchVideo has no Fast-only model, so no layout to write a Fast-only network in")
        return PYTORCHVIDEO_SLOWFAST
    raise SlowFastError(f"unknown checkpoint layout {name!r}; expected one of {LAYOUTS}")


def detect(keys: Iterable[str]) -> str | None:
    """Which layout a set of keys is in: one of LAYOUTS, "project" (ours) or None."""
    keys = list(keys)

    def share(pred) -> float:
        return sum(1 for k in keys if pred(k)) / max(len(keys), 1)

    votes = {
        "pyslowfast": share(lambda k: re.match(r"s\d(\.pathway\d_|_fuse\.)", k) is not None),
        "pytorchvideo": share(lambda k: k.startswith("blocks.")),
        "caffe2": share(
            lambda k: re.match(r"(t_)?(conv1_|res_conv1_|res\d_\d+_branch|pool1_subsample)|nonlocal_conv\d|pred_", k) is not None
        ),
        "project": share(lambda k: re.match(r"(stem|res\d|fuse\d)\.", k) is not None),
        "mmaction2": share(lambda k: k.startswith(("backbone.", "cls_head."))),
    }
    best = max(votes, key=lambda k: votes[k])
    return best if votes[best] >= 0.5 else None


def pytorchvideo_layout_of(keys: Iterable[str]) -> Layout:
    """PyTorchVideo's SlowFast (multi-pathway) or ResNet (Slow-only) layout, from the keys."""
    keys = list(keys)
    if any(".multipathway_" in k for k in keys):
        return PYTORCHVIDEO_SLOWFAST
    if any(k.startswith("blocks.6.") for k in keys) and not any(k.startswith("blocks.2.") for k in keys):
        raise SlowFastError(
            "the temporal max-pool after res2 of C2D/I3D (PyTorchVideo's stage1_pool, blocks.2) is not supported: "
            "only SlowFast and Slow-only ResNets are"
        )
    return PYTORCHVIDEO_RESNET
