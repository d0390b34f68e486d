"""What a checkpoint's own config says: PySlowFast's `cfg` and mmaction2's `meta["cfg"]`, as SlowFastConfig fields.

The weights cannot tell T, tau or alpha; the config a checkpoint was trained with can, and also its crops, test
views, normalisation, head and non-local options. Each field read keeps the config keys it came from, so the
converted checkpoint can record its provenance. What the config describes and the project cannot build is listed
in `unsupported` (one phrase each); what it describes and the project does differently, in `notes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.config_text import parse_python_config, parse_yaml


@dataclass
class EmbeddedConfig:
    """Config fields read from a checkpoint's own config, with where each came from."""

    origin: str  # "PySlowFast cfg" | "mmaction2 meta cfg"
    fields: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # field -> the config keys it was read from
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def set(self, name: str, value: Any, keys: str) -> None:
        self.fields[name] = value
        self.keys[name] = keys


def _get(cfg: Mapping, path: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _has(cfg: Mapping, *paths: str) -> bool:
    return all(_get(cfg, p, _MISSING) is not _MISSING for p in paths)


_MISSING = object()


# ----- PySlowFast -----

_PSF_ARCHS = {"slowfast": "slowfast", "slow": "slow"}
_R101_RULE = {6: "50", 23: "101"}  # res4 NUM_BLOCK_TEMP_KERNEL of a depth-101 pathway -> its rule


def _psf_variant(out: EmbeddedConfig, cfg: Mapping, arch: str) -> None:
    blocks = _get(cfg, "RESNET.NUM_BLOCK_TEMP_KERNEL")
    if not isinstance(blocks, list) or len(blocks) != 4:
        return
    depth = _get(cfg, "RESNET.DEPTH")
    full = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}.get(depth)
    n_paths = 2 if arch == "slowfast" else 1
    for k, stage in enumerate(blocks):
        if k != 2 and full and any(n != full[k] for n in stage[:n_paths]):
            out.unsupported.append(f"temporal kernels in only {stage} of res{k + 2}'s blocks (RESNET.NUM_BLOCK_TEMP_KERNEL)")
            return
    if depth != 101:
        return
    rules = [_R101_RULE.get(n) for n in blocks[2][:n_paths]]
    if None in rules:
        out.unsupported.append(f"res4 temporal kernels in {blocks[2]} blocks (only 6 or 23 are R101 variants)")
        return
    known = [r for r in rules if r is not None]  # every one, after the check above
    slow, fast = (known + known)[:2] if arch == "slowfast" else (known[0], known[0])
    variant = {("50", "50"): "50_50", ("50", "101"): "50_101", ("101", "50"): "101_50", ("101", "101"): "101_101_101"}[(slow, fast)]
    out.set("r101_variant", variant, "RESNET.NUM_BLOCK_TEMP_KERNEL")


def _psf_nonlocal(out: EmbeddedConfig, cfg: Mapping, arch: str) -> None:
    loc = _get(cfg, "NONLOCAL.LOCATION")
    if not isinstance(loc, list) or len(loc) != 4:
        return
    paths = ("slow", "fast") if arch == "slowfast" else (arch,)
    location = []
    for stage in loc:
        by_path = dict(zip(paths, stage))
        location.append(tuple(tuple(by_path.get(p) or ()) for p in ("slow", "fast")))
    out.set("nonlocal_location", tuple(location), "NONLOCAL.LOCATION")
    if _has(cfg, "NONLOCAL.INSTANTIATION"):
        out.set("nonlocal_instantiation", _get(cfg, "NONLOCAL.INSTANTIATION"), "NONLOCAL.INSTANTIATION")
    for name, key, size in (("nonlocal_pool", "NONLOCAL.POOL", 3), ("nonlocal_group", "NONLOCAL.GROUP", 1)):
        per_stage = _get(cfg, key)
        if not isinstance(per_stage, list) or len(per_stage) != 4:
            continue
        values = []
        for k, stage in enumerate(per_stage):
            used = [stage[i] for i, p in enumerate(paths) if i < len(stage) and location[k][0 if p == "slow" else 1]]
            if len({str(v) for v in used}) > 1:
                out.unsupported.append(f"different {key} per pathway in res{k + 2}")
            values.append(used[0] if used else stage[0])
        out.set(name, tuple(tuple(v) if size == 3 else v for v in values), key)


def pyslowfast_config(cfg: Mapping) -> EmbeddedConfig:
    """Config fields from a PySlowFast cfg (the parsed YAML dump or the CfgNode's items)."""
    out = EmbeddedConfig("PySlowFast cfg")
    arch_name = _get(cfg, "MODEL.ARCH")
    arch = _PSF_ARCHS.get(arch_name)
    if arch_name is not None and arch is None:
        out.unsupported.append(f"MODEL.ARCH {arch_name} (only slowfast and slow ResNets are built here)")
        return out
    if arch:
        out.set("arch", arch, "MODEL.ARCH")
    arch = arch or "slowfast"
    for name, key in (
        ("num_classes", "MODEL.NUM_CLASSES"),
        ("dropout", "MODEL.DROPOUT_RATE"),
        ("depth", "RESNET.DEPTH"),
        ("crop_size", "DATA.TRAIN_CROP_SIZE"),
        ("test_crop_size", "DATA.TEST_CROP_SIZE"),
        ("test_clips", "TEST.NUM_ENSEMBLE_VIEWS"),
        ("test_crops", "TEST.NUM_SPATIAL_CROPS"),
        ("train_flip", "DATA.RANDOM_FLIP"),
    ):
        if _has(cfg, key):
            out.set(name, _get(cfg, key), key)
    for name, key in (("mean", "DATA.MEAN"), ("std", "DATA.STD")):
        if _has(cfg, key):
            out.set(name, tuple(float(v) for v in _get(cfg, key)), key)
    if _has(cfg, "DATA.MULTI_LABEL") or _has(cfg, "MODEL.LOSS_FUNC"):
        multilabel = bool(_get(cfg, "DATA.MULTI_LABEL")) or _get(cfg, "MODEL.LOSS_FUNC") in ("bce", "bce_logit")
        out.set("multilabel", multilabel, "DATA.MULTI_LABEL, MODEL.LOSS_FUNC")
    if _has(cfg, "MODEL.HEAD_ACT"):
        out.set("head_act", _get(cfg, "MODEL.HEAD_ACT"), "MODEL.HEAD_ACT")
    if _get(cfg, "MULTIGRID.SHORT_CYCLE"):
        out.set("head_pool", "global", "MULTIGRID.SHORT_CYCLE")  # PySlowFast's head then pools adaptively
    if arch == "slowfast":
        for name, key in (
            ("alpha", "SLOWFAST.ALPHA"),
            ("beta_inv", "SLOWFAST.BETA_INV"),
            ("fusion_ratio", "SLOWFAST.FUSION_CONV_CHANNEL_RATIO"),
            ("lateral_kernel", "SLOWFAST.FUSION_KERNEL_SZ"),
        ):
            if _has(cfg, key):
                out.set(name, _get(cfg, key), key)
    # DATA.NUM_FRAMES / SAMPLING_RATE describe the input of the Fast pathway for SlowFast, of the one pathway otherwise.
    if _has(cfg, "DATA.NUM_FRAMES", "DATA.SAMPLING_RATE") and (arch != "slowfast" or "alpha" in out.fields):
        alpha = out.fields.get("alpha", 1) if arch == "slowfast" else 1
        frames, rate = _get(cfg, "DATA.NUM_FRAMES"), _get(cfg, "DATA.SAMPLING_RATE")
        keys = "DATA.NUM_FRAMES, DATA.SAMPLING_RATE" + (", SLOWFAST.ALPHA" if arch == "slowfast" else "")
        out.set("num_frames", frames // alpha, keys)
        out.set("tau", rate * alpha, keys)
    _psf_variant(out, cfg, arch)
    _psf_nonlocal(out, cfg, arch)
    _psf_resnet(out, cfg, arch)
    if _has(cfg, "DETECTION.ENABLE"):
        out.set("detection", bool(_get(cfg, "DETECTION.ENABLE")), "DETECTION.ENABLE")
    if _get(cfg, "DETECTION.ENABLE"):
        if _has(cfg, "DETECTION.ROI_XFORM_RESOLUTION"):
            out.set("roi_resolution", _get(cfg, "DETECTION.ROI_XFORM_RESOLUTION"), "DETECTION.ROI_XFORM_RESOLUTION")
        if _has(cfg, "DETECTION.ALIGNED"):
            out.set("roi_aligned", bool(_get(cfg, "DETECTION.ALIGNED")), "DETECTION.ALIGNED")
        out.notes.append("RoIAlign takes a fixed number of samples per bin here; PySlowFast adapts it to each box (sampling_ratio 0)")
    if _get(cfg, "DATA.REVERSE_INPUT_CHANNEL"):
        out.notes.append("the checkpoint was trained on BGR frames (DATA.REVERSE_INPUT_CHANNEL); feed BGR clips to reproduce it")
    return out


def _psf_resnet(out: EmbeddedConfig, cfg: Mapping, arch: str) -> None:
    if _get(cfg, "RESNET.NUM_GROUPS", 1) != 1:
        out.unsupported.append(f"grouped convolutions (RESNET.NUM_GROUPS {_get(cfg, 'RESNET.NUM_GROUPS')})")
    if _get(cfg, "RESNET.WIDTH_PER_GROUP", 64) != 64:
        out.unsupported.append(f"RESNET.WIDTH_PER_GROUP {_get(cfg, 'RESNET.WIDTH_PER_GROUP')} (only 64)")
    if _get(cfg, "RESNET.TRANS_FUNC", "bottleneck_transform") != "bottleneck_transform":
        out.unsupported.append(f"RESNET.TRANS_FUNC {_get(cfg, 'RESNET.TRANS_FUNC')} (only bottleneck_transform)")
    if _get(cfg, "RESNET.STRIDE_1X1", False):
        out.unsupported.append("the spatial stride on the 1x1 conv (RESNET.STRIDE_1X1)")
    strides, dilations = _get(cfg, "RESNET.SPATIAL_STRIDES"), _get(cfg, "RESNET.SPATIAL_DILATIONS")
    if isinstance(strides, list) and isinstance(dilations, list):
        flat = (tuple(s[0] for s in strides), tuple(d[0] for d in dilations))
        if flat not in (((1, 2, 2, 2), (1, 1, 1, 1)), ((1, 2, 2, 1), (1, 1, 1, 2))):
            out.unsupported.append(f"spatial strides {flat[0]} with dilations {flat[1]} (RESNET.SPATIAL_STRIDES/DILATIONS)")
        elif flat[0][3] == 1 and not _get(cfg, "DETECTION.ENABLE"):
            out.unsupported.append("a dilated res5 without the detection head")


# ----- mmaction2 (mmengine) -----

_MM_BACKBONES = {"ResNet3dSlowFast": "slowfast"}


def _pipeline_step(pipeline: Any, kind: str) -> Mapping | None:
    return next((s for s in pipeline or [] if isinstance(s, Mapping) and s.get("type") == kind), None)


def mmaction2_config(cfg: Mapping) -> EmbeddedConfig:
    """Config fields from mmaction2 config data (`parse_python_config` of meta["cfg"])."""
    out = EmbeddedConfig("mmaction2 meta cfg")
    model: Mapping = cfg["model"] if isinstance(cfg.get("model"), Mapping) else {}
    backbone = model.get("backbone") or {}
    kind = backbone.get("type")
    if kind is not None and kind not in _MM_BACKBONES:
        out.unsupported.append(f"the mmaction2 backbone {kind} (only ResNet3dSlowFast)")
        return out
    if kind is None:
        return out
    out.set("arch", "slowfast", "model.backbone.type")
    resample, speed = backbone.get("resample_rate", 8), backbone.get("speed_ratio", 8)
    out.set("alpha", speed, "model.backbone.speed_ratio")
    out.set("beta_inv", backbone.get("channel_ratio", 8), "model.backbone.channel_ratio")
    slow, fast = backbone.get("slow_pathway") or {}, backbone.get("fast_pathway") or {}
    out.set("depth", slow.get("depth", 50), "model.backbone.slow_pathway.depth")
    if fast.get("depth", 50) != slow.get("depth", 50):
        out.set("fast_depth", fast.get("depth", 50), "model.backbone.fast_pathway.depth")
    if 101 in (slow.get("depth", 50), fast.get("depth", 50)):
        out.set("r101_variant", "101_101_101", "model.backbone.*_pathway.inflate (every block of a stage)")
    out.set("lateral_kernel", slow.get("fusion_kernel", 5), "model.backbone.slow_pathway.fusion_kernel")
    out.set("lateral_norm", bool(slow.get("lateral_norm", False)), "model.backbone.slow_pathway.lateral_norm")
    out.set("fusion_ratio", slow.get("lateral_infl", 2), "model.backbone.slow_pathway.lateral_infl")
    for name, path in (("slow_pathway", slow), ("fast_pathway", fast)):
        if any(path.get("non_local", ())):
            out.unsupported.append(f"mmaction2 non-local blocks (model.backbone.{name}.non_local)")
        if path.get("lateral_inv"):
            out.unsupported.append(f"deconvolution laterals (model.backbone.{name}.lateral_inv)")
    if not slow.get("lateral", True):
        out.set("lateral", None, "model.backbone.slow_pathway.lateral")
    head = model.get("cls_head") or {}
    for name, key in (("num_classes", "num_classes"), ("dropout", "dropout_ratio")):
        if key in head:
            out.set(name, head[key], f"model.cls_head.{key}")
    out.set("head_pool", "global", "model.cls_head (adaptive average pool)")
    out.set("head_act", "softmax" if head.get("average_clips", "score") == "prob" else "none", "model.cls_head.average_clips")
    out.set("multilabel", bool(head.get("multi_class", False)), "model.cls_head.multi_class")
    out.set("detection", False, "model.type (a recognizer)")
    pre = model.get("data_preprocessor") or {}
    for name in ("mean", "std"):
        if isinstance(pre.get(name), (list, tuple)) and len(pre[name]) == 3:
            out.set(name, tuple(float(v) / 255.0 for v in pre[name]), f"model.data_preprocessor.{name} / 255")
    out.set("sampling", "strided", "model.backbone (nearest-neighbour resampling of one strided clip)")
    test = _get(cfg, "test_dataloader.dataset.pipeline") or cfg.get("test_pipeline")
    frames = _pipeline_step(test, "SampleFrames")
    if frames and "clip_len" in frames:
        interval, keys = frames.get("frame_interval", 1), "test pipeline SampleFrames, model.backbone.resample_rate"
        out.set("num_frames", frames["clip_len"] // resample, keys)
        out.set("tau", resample * interval, keys)
        if "num_clips" in frames:
            out.set("test_clips", frames["num_clips"], "test pipeline SampleFrames.num_clips")
    for step, crops in (("ThreeCrop", 3), ("TenCrop", 10), ("CenterCrop", 1)):
        found = _pipeline_step(test, step)
        if found:
            out.set("test_crops", crops, f"test pipeline {step}")
            size = found.get("crop_size")
            if isinstance(size, int):
                out.set("test_crop_size", size, f"test pipeline {step}.crop_size")
            break
    train = _get(cfg, "train_dataloader.dataset.pipeline") or cfg.get("train_pipeline")
    resize = [s for s in train or [] if isinstance(s, Mapping) and s.get("type") == "Resize" and s.get("keep_ratio") is False]
    if resize and isinstance(resize[-1].get("scale"), (list, tuple)):
        out.set("crop_size", int(resize[-1]["scale"][0]), "train pipeline Resize.scale")
    return out


# ----- finding the config in a checkpoint -----


def read(checkpoint: Mapping) -> EmbeddedConfig | None:
    """The config a loaded checkpoint carries (PySlowFast `cfg`, mmengine `meta["cfg"]`), or None."""
    try:
        psf = checkpoint.get("cfg")
        if isinstance(psf, str) and psf.strip():
            return pyslowfast_config(parse_yaml(psf) or {})
        if isinstance(psf, Mapping) and psf:
            return pyslowfast_config(psf)
        meta = checkpoint.get("meta")
        text = meta.get("cfg") if isinstance(meta, Mapping) else None
        if isinstance(text, str) and text.strip():
            return mmaction2_config(parse_python_config(text))
        if isinstance(text, Mapping):
            return mmaction2_config(text)
    except (SlowFastError, TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise SlowFastError(
            f"the checkpoint's own config is unreadable ({e}); convert with ignore_config (--ignore-config) and a preset"
        ) from None
    return None
