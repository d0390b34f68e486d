"""Official PySlowFast / PyTorchVideo / Caffe2 weights in, a SlowFast network with its config out (and back).

    net = model.convert("SLOWFAST_8x8_R50.pyth")                 # layout and architecture from the weights
    net = model.convert("SLOWFAST_16x8_R101_50_50.pkl", preset="slowfast_r101_16x8")   # cross-checked
    psf = model.to_pyslowfast_state(net)                         # our weights under PySlowFast's names

The steps: read the file without executing anything from it (safe_pickle), find its layout from the key names,
rename to our layout (layouts), read the architecture off the shapes (arch_infer), take what the weights cannot
tell (T, tau, often alpha) from `preset` or, without one, from the preset that fits the weights, check every key
and shape, and fill a network built on the meta device. The converted model pools the head as the references
do (`head_pool="reference"`) with its origin's eval activation (softmax for PySlowFast, logits for PyTorchVideo),
so it reproduces the reference outputs; what was inferred and what was assumed is kept in
`net.config.extra["conversion"]`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model import checkpoint, embedded_config, layouts
from slowfast_trt.model.arch_infer import Inferred, infer
from slowfast_trt.model.config import HEAD_ACTS, SlowFastConfig
from slowfast_trt.model.embedded_config import EmbeddedConfig
from slowfast_trt.model.safe_pickle import TORCH_LEGACY_MAGIC, check_numeric_array, load_numpy_pickle, load_torch_file
from slowfast_trt.model.slowfast import SlowFast
from slowfast_trt.model.statedict import build_with_state, compare, expected_shapes, listing
from slowfast_trt.model.zoo import Preset, get_preset, presets

FORMATS = ("auto",) + layouts.LAYOUTS
# When the weights fit several presets that differ only in what weights cannot show (T, tau, alpha), prefer the
# model the zoos publish: the 16x8 R101 (50_50) rather than 8x8, and PyTorchVideo's slow_r50 (8x8) rather than 4x16.
PREFERRED_PRESETS = ("slowfast_r101_16x8", "slow_r50_8x8")
_WRAPPER_KEYS = ("model_state", "state_dict", "model")  # PySlowFast/PyTorchVideo, Lightning-style, plain
_PREFIXES = ("module.", "model.")  # DDP, and PyTorchVideo copies published beside PySlowFast
_CONV_WEIGHT_SUFFIXES = (
    "conv.weight",
    "conv_a.weight",
    "conv_b.weight",
    "conv_c.weight",
    "theta.weight",
    "phi.weight",
    "g.weight",
    "out.weight",
)


@dataclass
class _Source:
    """Weights as read, in their own layout."""

    state: dict[str, torch.Tensor]
    layout: str  # one of layouts.LAYOUTS, or "project"
    label: str  # how errors name the source
    original: dict[str, str] = field(default_factory=dict)  # key -> the file's key, where a prefix was stripped
    embedded: EmbeddedConfig | None = None  # the checkpoint's own config, where it carries one


# ----- reading -----


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and 2 <= int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{"


def _read_file(path: Path) -> tuple[Any, bool]:
    """The file's content (a torch object, a Caffe2 dict, or a safetensors dict) and whether it is our own checkpoint."""
    if not path.exists():
        raise SlowFastError(f"checkpoint {path} not found")
    if path.is_dir():
        raise SlowFastError(f"{path} is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise SlowFastError(f"{path}: empty file, not a checkpoint")
    if head.startswith(b"PK\x03\x04"):
        return load_torch_file(path), False
    if _looks_like_safetensors(head):
        try:
            with safetensors.safe_open(str(path), "pt") as f:
                if (f.metadata() or {}).get("format") == checkpoint.FORMAT:
                    return None, True
            return safetensors.torch.load_file(str(path)), False
        except (safetensors.SafetensorError, OSError) as e:
            raise SlowFastError(f"{path}: truncated or corrupt safetensors file ({e})") from None
    if head[:1] == b"\x80" or path.suffix.lower() == ".pkl":
        obj = load_numpy_pickle(path)
        if isinstance(obj, int) and obj == TORCH_LEGACY_MAGIC:
            return load_torch_file(path), False
        return obj, False
    raise SlowFastError(
        f"{path}: not a checkpoint (neither a PyTorch .pyth/.pt file, a safetensors file nor a Caffe2 .pkl pickle; "
        f"it starts with {head[:8]!r})"
    )


def _weights_of(obj: Any, label: str) -> tuple[dict[str, Any], bool]:
    """The name -> tensor/array mapping inside a loaded checkpoint, and whether it is Caffe2 blobs."""
    if not isinstance(obj, Mapping):
        raise SlowFastError(f"{label}: holds a {type(obj).__name__}, not a dict of weights")
    if isinstance(obj.get("blobs"), Mapping):
        return dict(obj["blobs"]), True
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), False

    if obj and all(isinstance(v, (np.ndarray, np.generic)) for v in obj.values()):
        return dict(obj), True
    tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
    if not tensors:
        raise SlowFastError(
            f"{label}: no model weights found (top-level keys: {listing(sorted(map(str, obj)), 8)}); "
            "expected model_state, a state dict, or Caffe2 blobs"
        )
    odd = [f"{k} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    raise SlowFastError(f"{label}: the state dict has entries that are not tensors: {listing(odd)}")


def _strip_prefixes(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The state without wrapper prefixes shared by all keys, and stripped key -> original key."""
    original = {k: k for k in state}
    changed = True
    while changed and state:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                original = {k[len(prefix) :]: v for k, v in original.items()}
                changed = True
    return state, original


def _caffe2_tensors(blobs: dict[str, Any], label: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in blobs.items():
        if layouts.CAFFE2_IGNORED.match(name):
            continue
        out[name] = torch.tensor(check_numeric_array(name, value, label))
    return out


def read_source(src: str | os.PathLike | Mapping, fmt: str = "auto", ignore_config: bool = False) -> _Source | Path:
    """The weights of `src` in their own layout (or `src` itself when it is one of our checkpoints), with the
    checkpoint's own config unless `ignore_config`."""
    if fmt not in FORMATS:
        raise SlowFastError(f"unknown checkpoint format {fmt!r}; expected one of {FORMATS}")
    if isinstance(src, Mapping):
        label = "the given state dict"
        obj = src
        weights, is_c2 = _weights_of(src, label)
        if not is_c2:  # never share storage with the caller's model
            weights = {k: v.detach().clone() for k, v in weights.items()}
    else:
        path = Path(src)
        label = str(path)
        obj, own = _read_file(path)
        if own:
            return path
        weights, is_c2 = _weights_of(obj, label)
    state, original = (_caffe2_tensors(weights, label), {}) if is_c2 else _strip_prefixes(weights)
    if not state:
        raise SlowFastError(f"{label}: holds no weights")
    detected = "caffe2" if is_c2 else layouts.detect(state)
    if detected is None:
        raise SlowFastError(
            f"{label}: the key names match no known layout (e.g. {listing(sorted(state), 3)}); expected PySlowFast "
            "(s1.pathway0_stem...), PyTorchVideo (blocks.0...), Caffe2 (conv1_w...) or mmaction2 (backbone.slow_path...) names"
        )
    if fmt != "auto" and fmt != detected:
        raise SlowFastError(
            f"{label}: --from {fmt} was given, but the weights are in the {detected} layout "
            f"(keys like {listing(sorted(state), 2)}); use --from {detected} or auto"
        )
    embedded = None
    if not ignore_config and isinstance(obj, Mapping):
        try:
            embedded = embedded_config.read(obj)
        except SlowFastError as e:
            raise SlowFastError(f"{label}: {e}") from None
    return _Source(state, detected, label, original, embedded)


# ----- renaming -----


def _layout_for(source: _Source) -> layouts.Layout | None:
    if source.layout == "project":
        return None
    if source.layout == "pytorchvideo":
        return layouts.pytorchvideo_layout_of(source.state)
    return layouts.layout(source.layout)


def _to_ours(source: _Source) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Our-layout state dict and, for error messages, our key -> the source's key."""
    lay = _layout_for(source)
    ours: dict = {}
    names: dict[str, str] = {}
    unknown: list = []
    for key, value in source.state.items():
        new = key if lay is None else lay.to_ours(key)
        if new is None:
            unknown.append(key)
            continue
        if new in ours:
            raise SlowFastError(f"{source.label}: {names[new]} and {key} both name {new}")
        if value.is_floating_point() and value.dtype != torch.float32:
            value = value.float()
        if source.layout == "caffe2" and new.endswith(_CONV_WEIGHT_SUFFIXES) and value.dim() < 5:
            value = value.reshape(tuple(value.shape) + (1,) * (5 - value.dim()))  # 2-D-style blobs lack trailing 1s
        ours[new], names[new] = value, source.original.get(key, key)
    if unknown:
        unknown = [source.original.get(k, k) for k in unknown]
        feature = _missing_feature(unknown)
        what = f"{feature} are not supported; " if feature else ""
        raise SlowFastError(f"{source.label}: {what}{len(unknown)} unexpected key(s) for the {source.layout} layout: {listing(unknown)}")
    if source.layout == "mmaction2":
        ours = layouts.head_columns(ours, _fast_features(ours), fast_first=True)
    return ours, names


# Key fragments of features the project does not build, and how a refusal names them.
_FEATURES = (
    ("non_local", "non-local blocks in this layout"),
    ("nonlocal", "non-local blocks at these positions"),
    (".se.", "squeeze-excitation blocks (X3D)"),
    ("attn", "attention blocks (a video transformer, not a SlowFast ResNet)"),
    ("conv_xy", "(2+1)D convolutions"),
    ("deconv", "deconvolution laterals"),
)


def _missing_feature(keys: list[str]) -> str | None:
    """What the unexpected `keys` are, when they belong to a feature the project lacks."""
    for fragment, feature in _FEATURES:
        if any(fragment in k for k in keys):
            return feature
    return None


def _fast_features(state: dict[str, torch.Tensor]) -> int:
    """The Fast pathway's res5 output width (the classifier's Fast columns)."""
    last = max((int(m.group(1)) for k in state if (m := re.match(r"res5\.fast\.blocks\.(\d+)\.conv_c\.weight", k))), default=None)
    if last is None:
        raise SlowFastError("an mmaction2 classifier needs the Fast pathway's res5 (backbone.fast_path.layer4), which the weights lack")
    return state[f"res5.fast.blocks.{last}.conv_c.weight"].shape[0]


# ----- choosing the config -----


def _fits(cfg: SlowFastConfig, inferred: Inferred) -> bool:
    return all(inferred.allows(k, getattr(cfg, k)) for k in inferred.fields if k != "num_classes")


# Fields a conversion sets from the origin's eval behaviour, never from a preset.
_HEAD_FIELDS = ("head_pool", "head_act")


def _disagreements(cfg: SlowFastConfig, facts: dict[str, Any]) -> list[str]:
    return [k for k, v in facts.items() if k not in _HEAD_FIELDS and getattr(cfg, k) != v]


def default_preset(inferred: Inferred, facts: dict[str, Any] | None = None) -> Preset | None:
    """The preset the weights fit best: same structure, then what the checkpoint's config says (T, tau, ...), then
    same classes, then the published zoo model."""
    names = presets()
    fitting = [n for n in names if _fits(get_preset(n).config, inferred)]

    def rank(n: str):
        cfg, base = get_preset(n).config, n.removesuffix("_k600")
        told = len(_disagreements(cfg, {k: v for k, v in (facts or {}).items() if k != "num_classes"}))
        return (told, cfg.num_classes != inferred.fields["num_classes"], base not in PREFERRED_PRESETS, names.index(n))

    return get_preset(min(fitting, key=rank)) if fitting else None


def _origin_act(layout: str, cfg: SlowFastConfig) -> str:
    if layout in ("pyslowfast", "caffe2"):
        return "sigmoid" if cfg.multilabel else "softmax"
    if layout in ("pytorchvideo", "mmaction2"):
        return "none"
    return cfg.head_act


def _check_embedded(source: _Source, inferred: Inferred) -> dict[str, Any]:
    """The checkpoint config's fields, after refusing what it describes that the project lacks or the weights deny."""
    emb = source.embedded
    if emb is None:
        return {}
    denied = [
        f"{k}: weights {inferred.fields[k]}, {emb.origin} {v}"
        for k, v in emb.fields.items()
        if k in inferred.fields and not inferred.allows(k, v)
    ]
    if denied:
        raise SlowFastError(f"{source.label}: the weights contradict the checkpoint's own config: " + "; ".join(denied))
    return dict(emb.fields)


def _resolve(
    source: _Source,
    state: dict[str, torch.Tensor],
    names: dict[str, str],
    preset: str | None,
    num_classes: int | None,
    head_act: str | None,
) -> SlowFastConfig:
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    emb = source.embedded
    if emb is not None and emb.unsupported:  # the config names the feature more exactly than the shapes can
        raise SlowFastError(f"{source.label}: its {emb.origin} describes " + "; ".join(emb.unsupported) + ", which is not supported")
    inferred = infer(shapes)
    facts = _check_embedded(source, inferred)
    origin, origin_keys = (emb.origin, emb.keys) if emb is not None else ("", {})  # facts is empty without an embedded config
    weights_classes = inferred.fields["num_classes"]
    if num_classes is not None and num_classes != weights_classes:
        raise SlowFastError(
            f"{source.label}: --num-classes {num_classes}, but the classifier "
            f"{names.get('head.projection.weight', 'head.projection.weight')} has {weights_classes} classes"
        )
    warnings = []
    if preset is not None:
        base = get_preset(preset).config
        if num_classes is not None:
            base = base.replace(num_classes=num_classes)
        problems = inferred.mismatches(base)
        problems += compare(expected_shapes(base), shapes, _namer(source, names, base))
        if problems:
            raise SlowFastError(f"{source.label} contradicts preset {preset}: " + "; ".join(problems))
        differ = _disagreements(base, facts)
        if differ:
            pairs = ", ".join(f"{k} {facts[k]!r} vs {getattr(base, k)!r}" for k in differ)
            warnings.append(f"the checkpoint's {origin} and --preset {preset} disagree ({pairs}); the preset's values are used")
        cfg, chosen, assumed_from = base, preset, f"preset {preset}"
        applied: dict[str, Any] = {}
    else:
        found = default_preset(inferred, facts)
        base = found.config if found else SlowFastConfig()
        overrides = {k: v for k, v in inferred.fields.items() if not inferred.allows(k, getattr(base, k))}
        applied = {k: v for k, v in facts.items() if k not in _HEAD_FIELDS}
        cfg = base.replace(**overrides).replace(**applied)
        chosen = found.name if found else "converted"
        assumed_from = (
            f"preset {found.name}, which the weights fit; pass --preset to choose another"
            if found
            else "the library defaults; pass --preset to set them"
        )
        if emb is not None and any(k in applied for k in inferred.unknown):
            assumed_from = f"the checkpoint's {emb.origin}"
    if head_act is not None and head_act not in HEAD_ACTS:
        raise SlowFastError(f"head_act must be one of {HEAD_ACTS}, got {head_act!r}")
    act = head_act or facts.get("head_act") or _origin_act(source.layout, cfg)
    pool = facts.get("head_pool", "reference")
    provenance = {}
    for name in (f.name for f in dataclasses.fields(SlowFastConfig) if f.name != "extra"):
        if name in inferred.fields:
            provenance[name] = "weights"
        elif name in applied or (name in _HEAD_FIELDS and name in facts and not (name == "head_act" and head_act)):
            provenance[name] = f"{origin}: {origin_keys[name]}"
        elif name in _HEAD_FIELDS:
            provenance[name] = "--head-act" if (name == "head_act" and head_act) else f"the {source.layout} reference's eval head"
        else:
            provenance[name] = assumed_from.split(",")[0]
    report = {
        "source": source.label,
        "format": source.layout,
        "preset": preset,
        "inferred": {k: (list(v) if isinstance(v, tuple) else v) for k, v in inferred.fields.items()},
        "not_in_weights": {k: getattr(cfg, k) for k in inferred.unknown},
        "assumed_from": assumed_from,
        "config_from_checkpoint": {k: (list(v) if isinstance(v, tuple) else v) for k, v in facts.items()} if emb else None,
        "provenance": provenance,
        "head": {"pool": pool, "act": act},
        "notes": inferred.notes + (emb.notes if emb else []),
        "warnings": warnings,
    }
    extra = {**cfg.extra, "preset": chosen, "conversion": report}
    return cfg.replace(head_pool=pool, head_act=act, extra=extra).validate()


def _namer(source: _Source, names: dict[str, str], cfg: SlowFastConfig):
    """Our key -> the name the user's file uses (or would use, for a missing key)."""
    lay = _layout_for(source)

    def name(key: str) -> str:
        if key in names:
            return names[key]
        if lay is None:
            return key
        try:
            return lay.to_theirs(key, {"depths": cfg.pathway_stage_depths("fast")}) or key
        except SlowFastError:
            return key

    return name


# ----- public API -----


def convert(
    src: str | os.PathLike | Mapping,
    fmt: str = "auto",
    preset: str | None = None,
    num_classes: int | None = None,
    *,
    head_act: str | None = None,
    ignore_config: bool = False,
) -> SlowFast:
    """A SlowFast network (eval mode) holding the weights of a PySlowFast `.pyth`, PyTorchVideo `.pyth`/state dict,
    or PySlowFast Caffe2 `.pkl` file (or an in-memory state dict / checkpoint dict).

    `fmt` names the layout ("pyslowfast" | "pytorchvideo" | "caffe2"; "auto" detects it). The architecture is
    read off the weights; `preset` supplies what they cannot show (T, tau, alpha) and is cross-checked against
    every inferred field and tensor shape. `num_classes` must match the classifier (it overrides the preset's).
    `head_act` overrides the eval activation, which otherwise follows the origin (softmax for PySlowFast and
    Caffe2, logits for PyTorchVideo and mmaction2). Our own checkpoints are loaded as they are.

    A config the file carries (PySlowFast's `cfg`, mmaction2's `meta["cfg"]`) is parsed, never executed, and
    supplies T, tau, alpha, crops, test views and the rest, unless `ignore_config`; with a `preset` the preset's
    values win and each disagreement is reported in `extra["conversion"]["warnings"]`.
    """
    source = read_source(src, fmt, ignore_config)
    if isinstance(source, Path):
        if preset is None and num_classes is None and head_act is None:
            return checkpoint.load(source)
        net = checkpoint.load(source)
        source = _Source(dict(net.state_dict()), "project", str(source))
    state, names = _to_ours(source)
    cfg = _resolve(source, state, names, preset, num_classes, head_act)
    return build_with_state(cfg, state, source.label, _namer(source, names, cfg))


def to_layout_state(net: SlowFast, fmt: str) -> dict[str, torch.Tensor]:
    """`net`'s weights under the names of `fmt` (one of layouts.LAYOUTS), as detached copies.

    Caffe2 has no num_batches_tracked counters; those entries are left out. mmaction2's classifier gets its
    [Fast | Slow] column order. A tensor the layout cannot name
    (a non-local block in PyTorchVideo's create_slowfast) is an error.
    """
    cfg = _config_of(net)
    lay = layouts.layout(fmt, cfg.arch)
    state = dict(net.state_dict())
    if fmt == "mmaction2":
        state = layouts.head_columns(state, _fast_features(state), fast_first=False)
    out = {}
    for key, value in state.items():
        name = lay.to_theirs(key, {"depths": cfg.pathway_stage_depths("fast")})
        if name is not None:
            out[name] = value.detach().clone()
    return out


def to_pyslowfast_state(net: SlowFast) -> dict[str, torch.Tensor]:
    """`net`'s weights under PySlowFast's names (`model_state` of a `.pyth`; load with `convert`)."""
    return to_layout_state(net, "pyslowfast")


def to_pytorchvideo_state(net: SlowFast) -> dict[str, torch.Tensor]:
    """`net`'s weights under PyTorchVideo's names (`create_slowfast` / `create_resnet` state dicts)."""
    return to_layout_state(net, "pytorchvideo")


def _config_of(net: nn.Module) -> SlowFastConfig:
    cfg = getattr(net, "config", None)
    if not isinstance(cfg, SlowFastConfig):
        raise SlowFastError(f"expected a SlowFast network with a .config, got {type(net).__name__}")
    return cfg


def summary(net: SlowFast) -> list[str]:
    """Human-readable lines on what a conversion inferred and assumed (from `net.config.extra["conversion"]`)."""
    cfg = _config_of(net)
    rep = cfg.extra.get("conversion")
    if not rep:
        return [f"{cfg.name}: a SlowFast-TRT checkpoint (nothing converted)"]
    params = sum(p.numel() for p in net.parameters()) / 1e6
    inferred = ", ".join(f"{k}={v}" for k, v in rep["inferred"].items())
    assumed = ", ".join(f"{k}={v}" for k, v in rep["not_in_weights"].items())
    lines = [
        f"{rep['source']}: {rep['format']} layout, {params:.2f}M params, config {cfg.name}",
        f"from the weights: {inferred}",
        f"not in the weights: {assumed} (from {rep['assumed_from']})",
        f"head: pool={rep['head']['pool']} act={rep['head']['act']} (eval-mode output as the {rep['format']} reference)",
    ]
    taken = rep.get("config_from_checkpoint")
    if taken:
        lines.append("from the checkpoint's config: " + ", ".join(f"{k}={v}" for k, v in taken.items()))
    lines += [f"note: {n}" for n in rep["notes"]]
    lines += [f"warning: {w}" for w in rep.get("warnings", [])]
    return lines
