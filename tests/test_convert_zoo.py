"""Every SlowFast / Slow-only / I3D-style ResNet config of PySlowFast's Kinetics, Charades and AVA zoos and mmaction2's
SlowFast recognizers: a state dict with the file's key names and shapes converts (or is refused naming the feature).

The facts below were read off the configs (PySlowFast 287ec00 configs/*, mmaction2 1.2.0 configs/recognition/slowfast);
the key names and shapes are generated here from those facts with code written for this test from the two projects'
model-building rules, not from model.layouts, so a wrong rename or shape rule on either side fails. Files under a
config's `c2/` folder are Caffe2 `.pkl` blobs (no embedded config: converted from the weights, with a --preset where
the weights cannot tell T and tau); the others carry their config (PySlowFast's YAML `cfg`, mmaction2's meta["cfg"]).
"""

from __future__ import annotations

import re

import pytest
import torch

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from tests.test_convert import psf_to_caffe2

# PySlowFast: name -> (layout, MODEL.ARCH, RESNET.DEPTH, DATA.NUM_FRAMES, DATA.SAMPLING_RATE, SLOWFAST.ALPHA,
# FUSION_KERNEL_SZ, res4 NUM_BLOCK_TEMP_KERNEL (slow, fast), NONLOCAL.LOCATION {stage: blocks} (Slow pathway),
# NONLOCAL.INSTANTIATION, NONLOCAL.POOL, classes, extra), expected preset or the refusal's words.
_NO = {}
_NLN = {3: (1, 3), 4: (1, 3, 5)}
_NL101 = {4: (6, 13, 20)}
DP, SM = "dot_product", "softmax"
P122, P222 = (1, 2, 2), (2, 2, 2)
DET = dict(detection=True, classes=80)
PYSLOWFAST = {
    "Kinetics/SLOWFAST_4x16_R50": (("pyslowfast", "slowfast", 50, 32, 2, 8, 5, (6, 6), _NO, DP, P122, 400, {}), "slowfast_r50_4x16"),
    "Kinetics/SLOWFAST_8x8_R50": (("pyslowfast", "slowfast", 50, 32, 2, 4, 7, (6, 6), _NO, DP, P122, 400, {}), "slowfast_r50_8x8"),
    "Kinetics/SLOWFAST_8x8_R50_stepwise": (("pyslowfast", "slowfast", 50, 32, 2, 4, 7, (6, 6), _NO, DP, P122, 400, {}), "slowfast_r50_8x8"),
    "Kinetics/SLOWFAST_8x8_R50_stepwise_multigrid": (
        ("pyslowfast", "slowfast", 50, 32, 2, 4, 7, (6, 6), _NO, DP, P122, 400, {"multigrid": True}),
        "slowfast_r50_8x8",
    ),
    "Kinetics/SLOWFAST_NLN_4x16_R50": (
        ("pyslowfast", "slowfast", 50, 32, 2, 8, 5, (6, 6), _NLN, DP, P122, 400, {}),
        "slowfast_nln_r50_4x16",
    ),
    "Kinetics/SLOWFAST_NLN_8x8_R50": (("pyslowfast", "slowfast", 50, 32, 2, 4, 5, (6, 6), _NLN, DP, P122, 400, {}), "slowfast_nln_r50_8x8"),
    "Kinetics/SLOW_4x16_R50": (("pyslowfast", "slow", 50, 4, 16, 0, 0, (6,), _NO, DP, P122, 400, {}), "slow_r50_4x16"),
    "Kinetics/SLOW_8x8_R50": (("pyslowfast", "slow", 50, 8, 8, 0, 0, (6,), _NO, DP, P122, 400, {}), "slow_r50_8x8"),
    "Kinetics/SLOW_NLN_4x16_R50": (("pyslowfast", "slow", 50, 4, 16, 0, 0, (6,), _NLN, DP, P122, 400, {}), "slow_nln_r50_4x16"),
    "Kinetics/SLOW_NLN_8x8_R50": (("pyslowfast", "slow", 50, 8, 8, 0, 0, (6,), _NLN, DP, P122, 400, {}), "slow_nln_r50_8x8"),
    "Kinetics/c2/SLOWFAST_16x8_R101_50_50": (
        ("caffe2", "slowfast", 101, 64, 2, 4, 5, (6, 6), _NO, DP, P122, 400, {}),
        "slowfast_r101_16x8",
    ),
    "Kinetics/c2/SLOWFAST_4x16_R50": (("caffe2", "slowfast", 50, 32, 2, 8, 5, (6, 6), _NO, DP, P122, 400, {}), "slowfast_r50_4x16"),
    "Kinetics/c2/SLOWFAST_8x8_R101_101_101": (
        ("caffe2", "slowfast", 101, 32, 2, 4, 5, (23, 23), _NO, DP, P122, 400, {}),
        "slowfast_r101_8x8_101_101_101",
    ),
    "Kinetics/c2/SLOWFAST_8x8_R101_50_101": (
        ("caffe2", "slowfast", 101, 32, 2, 4, 5, (6, 23), _NO, DP, P122, 400, {}),
        "slowfast_r101_8x8_50_101",
    ),
    "Kinetics/c2/SLOWFAST_8x8_R101_50_50": (("caffe2", "slowfast", 101, 32, 2, 4, 5, (6, 6), _NO, DP, P122, 400, {}), "slowfast_r101_8x8"),
    "Kinetics/c2/SLOWFAST_8x8_R50": (("caffe2", "slowfast", 50, 32, 2, 4, 7, (6, 6), _NO, DP, P122, 400, {}), "slowfast_r50_8x8"),
    "Kinetics/c2/SLOWFAST_NLN_16x8_R101_50_50": (
        ("caffe2", "slowfast", 101, 64, 2, 4, 5, (6, 6), _NL101, DP, P122, 400, {}),
        "slowfast_r101_16x8_nl",
    ),
    "Kinetics/c2/SLOW_4x16_R50": (("caffe2", "slow", 50, 4, 16, 0, 0, (6,), _NO, DP, P122, 400, {}), "slow_r50_4x16"),
    "Kinetics/c2/SLOW_8x8_R50": (("caffe2", "slow", 50, 8, 8, 0, 0, (6,), _NO, DP, P122, 400, {}), "slow_r50_8x8"),
    "Kinetics/pytorchvideo/SLOWFAST_16x8_R101_50_50": (
        ("pytorchvideo", "slowfast", 101, 64, 2, 4, 5, (6, 6), _NO, DP, P122, 400, {}),
        "slowfast_r101_16x8",
    ),
    "Kinetics/pytorchvideo/SLOWFAST_4x16_R50": (
        ("pytorchvideo", "slowfast", 50, 32, 2, 8, 5, (6, 6), _NO, DP, P122, 400, {}),
        "slowfast_r50_4x16",
    ),
    "Kinetics/pytorchvideo/SLOWFAST_8x8_R101": (
        ("pytorchvideo", "slowfast", 101, 32, 2, 4, 5, (23, 23), _NO, DP, P122, 400, {}),
        "slowfast_r101_8x8_101_101_101",
    ),
    "Kinetics/pytorchvideo/SLOWFAST_8x8_R50": (
        ("pytorchvideo", "slowfast", 50, 32, 2, 4, 7, (6, 6), _NO, DP, P122, 400, {}),
        "slowfast_r50_8x8",
    ),
    "Kinetics/pytorchvideo/SLOW_4x16_R50": (("pytorchvideo", "slow", 50, 4, 16, 0, 0, (6,), _NO, DP, P122, 400, {}), "slow_r50_4x16"),
    "Kinetics/pytorchvideo/SLOW_8x8_R50": (("pytorchvideo", "slow", 50, 8, 8, 0, 0, (6,), _NO, DP, P122, 400, {}), "slow_r50_8x8"),
    "Charades/SLOWFAST_16x8_R50": (
        ("pyslowfast", "slowfast", 50, 64, 2, 4, 7, (6, 6), _NO, DP, P122, 157, {"multilabel": True}),
        "slowfast_r50_8x8",
    ),
    "Charades/SLOWFAST_16x8_R50_multigrid": (
        ("pyslowfast", "slowfast", 50, 64, 2, 4, 7, (6, 6), _NO, DP, P122, 157, {"multilabel": True, "multigrid": True}),
        "slowfast_r50_8x8",
    ),
    "Charades/pytorchvideo/SLOWFAST_8x8_R50": (
        ("pytorchvideo", "slowfast", 50, 32, 2, 4, 7, (6, 6), _NO, DP, P122, 157, {"multilabel": True}),
        "slowfast_r50_8x8",
    ),
    "Charades/pytorchvideo/SLOW_8x8_R50": (
        ("pytorchvideo", "slow", 50, 8, 8, 0, 0, (6,), _NO, SM, P122, 157, {"multilabel": True}),
        "slow_r50_8x8",
    ),
    "AVA/SLOWFAST_32x2_R50_SHORT": (
        ("pyslowfast", "slowfast", 50, 32, 2, 4, 7, (6, 6), _NO, DP, P122, 80, {**DET, "aligned": True}),
        "slowfast_r50_8x8_ava",
    ),
    "AVA/SLOW_8x8_R50_SHORT": (
        ("pyslowfast", "slow", 50, 4, 16, 0, 0, (6,), _NO, SM, P122, 80, {**DET, "aligned": True}),
        "slow_r50_4x16_ava",
    ),
    "AVA/c2/SLOWFAST_32x2_R101_50_50": (
        ("caffe2", "slowfast", 101, 32, 2, 4, 5, (6, 6), _NL101, DP, P222, 80, DET),
        "slowfast_r101_8x8_nl_ava",
    ),
    "AVA/c2/SLOWFAST_32x2_R101_50_50_v2.1": (
        ("caffe2", "slowfast", 101, 32, 2, 4, 5, (6, 6), _NL101, DP, P222, 80, DET),
        "slowfast_r101_8x8_nl_ava",
    ),
    "AVA/c2/SLOWFAST_32x2_R50": (("caffe2", "slowfast", 50, 32, 2, 4, 7, (6, 6), _NO, DP, P122, 80, DET), "slowfast_r50_8x8_ava"),
    "AVA/c2/SLOWFAST_64x2_R101_50_50": (
        ("caffe2", "slowfast", 101, 64, 2, 4, 5, (6, 6), _NL101, DP, P222, 80, DET),
        "slowfast_r101_16x8_nl_ava",
    ),
    "AVA/c2/SLOW_8x8_R50": (("caffe2", "slow", 50, 4, 16, 0, 0, (6,), _NO, SM, P122, 80, DET), "slow_r50_4x16_ava"),
}
# I3D / C2D ResNets (MODEL.ARCH i3d / c2d): refused, naming what they have that the project lacks.
I3D_C2D = {
    "Kinetics/C2D_8x8_R50": ("pyslowfast", "c2d", 50, _NO, SM),
    "Kinetics/C2D_8x8_R50_IN1K": ("pyslowfast", "c2d", 50, _NO, SM),
    "Kinetics/C2D_NLN_8x8_R50": ("pyslowfast", "c2d", 50, _NLN, SM),
    "Kinetics/C2D_NLN_8x8_R50_IN1K": ("pyslowfast", "c2d", 50, _NLN, SM),
    "Kinetics/I3D_8x8_R101": ("pyslowfast", "i3d", 101, _NO, SM),
    "Kinetics/I3D_8x8_R50": ("pyslowfast", "i3d", 50, _NO, SM),
    "Kinetics/I3D_8x8_R50_IN1K": ("pyslowfast", "i3d", 50, _NO, SM),
    "Kinetics/I3D_NLN_8x8_R101": ("pyslowfast", "i3d", 101, _NLN, SM),
    "Kinetics/I3D_NLN_8x8_R50": ("pyslowfast", "i3d", 50, _NLN, SM),
    "Kinetics/I3D_NLN_8x8_R50_IN1K": ("pyslowfast", "i3d", 50, _NLN, SM),
    "Kinetics/c2/C2D_NOPOOL_8x8_R50": ("caffe2", "c2d", 50, _NO, SM),
    "Kinetics/c2/I3D_8x8_R50": ("caffe2", "i3d", 50, _NO, SM),
    "Kinetics/c2/I3D_NLN_8x8_R50": ("caffe2", "i3d", 50, _NLN, SM),
    "Kinetics/pytorchvideo/C2D_8x8_R50": ("pytorchvideo", "c2d", 50, _NO, DP),
    "Kinetics/pytorchvideo/I3D_8x8_R50": ("pytorchvideo", "i3d", 50, _NO, DP),
}
# mmaction2 (configs/recognition/slowfast): name -> (resample_rate, speed_ratio, fusion_kernel, lateral_norm, slow depth,
# fast depth), expected preset.
MMACTION2 = {
    "slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb": ((8, 8, 5, False, 50, 50), "slowfast_r50_4x16_mmaction2"),
    "slowfast_r50_8xb8-8x8x1-256e_kinetics400-rgb": ((4, 4, 7, False, 50, 50), "slowfast_r50_8x8_mmaction2"),
    "slowfast_r50_8xb8-8x8x1-steplr-256e_kinetics400-rgb": ((4, 4, 7, True, 50, 50), "slowfast_r50_8x8"),
    "slowfast_r101_8xb8-8x8x1-256e_kinetics400-rgb": ((4, 4, 7, False, 101, 101), "slowfast_r101_8x8_mmaction2"),
    "slowfast_r101-r50_32xb8-4x16x1-256e_kinetics400-rgb": ((8, 8, 5, False, 101, 50), "slowfast_r101_r50_4x16_mmaction2"),
}

# ----- PySlowFast key names and shapes, from its builder's rules -----

_KERNEL_BASIS = {  # conv1 then res2..res5 (Slow; Fast), cycled over a stage's blocks
    "slowfast": ([[1], [1], [1], [3], [3]], [[5], [3], [3], [3], [3]]),
    "slow": ([[1], [1], [1], [3], [3]], None),
    "i3d": ([[5], [3], [3, 1], [3, 1], [1, 3]], None),
    "c2d": ([[1], [1], [1], [1], [1]], None),
}
_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.{f}": (() if f == "num_batches_tracked" else (c,)) for f in _BN}


def pyslowfast_shapes(arch, depth, res4_temporal, nonlocal_blocks, classes, alpha=0, kernel=5, beta_inv=8, ratio=2, fast_depth=None):
    """{PySlowFast key: shape} of a SlowFast (two pathways) or single-pathway ResNet, width 64."""
    basis = _KERNEL_BASIS[arch]
    paths = [0, 1] if arch == "slowfast" else [0]
    width = {0: 64, 1: 64 // beta_inv}
    blocks = {0: _BLOCKS[depth], 1: _BLOCKS[fast_depth or depth]}
    out = {}
    for p in paths:
        out[f"s1.pathway{p}_stem.conv.weight"] = (width[p], 3, basis[p][0][0], 7, 7)
        out.update(_bn(f"s1.pathway{p}_stem.bn", width[p]))
    fuse_extra = lambda c: ratio * c // beta_inv if arch == "slowfast" else 0  # noqa: E731
    if arch == "slowfast":
        cf = 64 // beta_inv
        out["s1_fuse.conv_f2s.weight"] = (ratio * cf, cf, kernel, 1, 1)
        out.update(_bn("s1_fuse.bn", ratio * cf))
    dim_in = {0: 64 + fuse_extra(64), 1: width[1]}
    for k in range(2, 6):
        mult = 2 ** (k - 2)
        for p in paths:
            inner, dout = 64 * mult // (beta_inv if p else 1), 256 * mult // (beta_inv if p else 1)
            n = blocks[p][k - 2]
            n_temporal = res4_temporal[p] if k == 4 else n
            kts = (basis[p][k - 1] * n)[:n_temporal] + [1] * (n - n_temporal)
            for i in range(n):
                name = f"s{k}.pathway{p}_res{i}"
                cin = dim_in[p] if i == 0 else dout
                if i == 0:
                    out[f"{name}.branch1.weight"] = (dout, cin, 1, 1, 1)
                    out.update(_bn(f"{name}.branch1_bn", dout))
                out[f"{name}.branch2.a.weight"] = (inner, cin, kts[i], 1, 1)
                out[f"{name}.branch2.b.weight"] = (inner, inner, 1, 3, 3)
                out[f"{name}.branch2.c.weight"] = (dout, inner, 1, 1, 1)
                for c, w in (("a", inner), ("b", inner), ("c", dout)):
                    out.update(_bn(f"{name}.branch2.{c}_bn", w))
                if p == 0 and i in nonlocal_blocks.get(k, ()):
                    nl = f"s{k}.pathway0_nonlocal{i}"
                    for conv in ("theta", "phi", "g"):
                        out[f"{nl}.conv_{conv}.weight"], out[f"{nl}.conv_{conv}.bias"] = (dout // 2, dout, 1, 1, 1), (dout // 2,)
                    out[f"{nl}.conv_out.weight"], out[f"{nl}.conv_out.bias"] = (dout, dout // 2, 1, 1, 1), (dout,)
                    out.update(_bn(f"{nl}.bn", dout))
            dim_in[p] = dout + (fuse_extra(dout) if p == 0 and k < 5 else 0)
        if arch == "slowfast" and k < 5:
            cf = 256 * mult // beta_inv
            out[f"s{k}_fuse.conv_f2s.weight"] = (ratio * cf, cf, kernel, 1, 1)
            out.update(_bn(f"s{k}_fuse.bn", ratio * cf))
    out["head.projection.weight"] = (classes, 2048 + (2048 // beta_inv if arch == "slowfast" else 0))
    out["head.projection.bias"] = (classes,)
    return out


def to_pytorchvideo(key: str, arch: str) -> str:
    """PyTorchVideo's create_slowfast / create_resnet name of a PySlowFast key."""
    key = key.replace("_bn.", "_norm.").replace(".bn.", ".norm.")
    if arch == "slowfast":
        key = re.sub(r"^s1\.pathway(\d)_stem\.", r"blocks.0.multipathway_blocks.\1.", key)
        key = re.sub(r"^s(\d)_fuse\.conv_f2s\.", lambda m: f"blocks.{int(m.group(1)) - 1}.multipathway_fusion.conv_fast_to_slow.", key)
        key = re.sub(r"^s(\d)_fuse\.norm\.", lambda m: f"blocks.{int(m.group(1)) - 1}.multipathway_fusion.norm.", key)
        key = re.sub(
            r"^s(\d)\.pathway(\d)_res(\d+)\.",
            lambda m: f"blocks.{int(m.group(1)) - 1}.multipathway_blocks.{m.group(2)}.res_blocks.{m.group(3)}.",
            key,
        )
        head = "blocks.6.proj."
    else:
        key = re.sub(r"^s1\.pathway0_stem\.", "blocks.0.", key)
        key = re.sub(r"^s(\d)\.pathway0_res(\d+)\.", lambda m: f"blocks.{int(m.group(1)) - 1}.res_blocks.{m.group(2)}.", key)
        head = "blocks.5.proj."
    key = key.replace("branch1.weight", "branch1_conv.weight")
    key = re.sub(r"branch2\.([abc])\.weight", r"branch2.conv_\1.weight", key)
    key = re.sub(r"branch2\.([abc])_norm\.", r"branch2.norm_\1.", key)
    return key.replace("head.projection.", head)


def _yaml_cfg(arch, depth, frames, rate, alpha, kernel, res4_temporal, nl, inst, pool, classes, extra) -> str:
    """A PySlowFast cfg dump (YAML) with the config's facts."""
    paths = 2 if arch == "slowfast" else 1
    blocks = _BLOCKS[depth]
    nbtk = [[blocks[k]] * paths if k != 2 else list(res4_temporal) for k in range(4)]
    location = [[list(nl.get(k, ()))] + [[]] * (paths - 1) for k in range(2, 6)]
    det = extra.get("detection", False)
    lines = [
        "DATA:",
        f"  MEAN: [0.45, 0.45, 0.45]\n  MULTI_LABEL: {str(extra.get('multilabel', False)).lower()}",
        f"  NUM_FRAMES: {frames}\n  SAMPLING_RATE: {rate}\n  STD:\n  - 0.225\n  - 0.225\n  - 0.225",
        f"  TEST_CROP_SIZE: 256\n  TRAIN_CROP_SIZE: 224\nDETECTION:\n  ALIGNED: {str(extra.get('aligned', False)).lower()}",
        f"  ENABLE: {str(det).lower()}\n  ROI_XFORM_RESOLUTION: 7",
        f"MODEL:\n  ARCH: {arch}\n  DROPOUT_RATE: 0.5\n  HEAD_ACT: {'sigmoid' if det or extra.get('multilabel') else 'softmax'}",
        f"  LOSS_FUNC: {'bce' if det else 'cross_entropy'}\n  MODEL_NAME: {'SlowFast' if paths == 2 else 'ResNet'}\n  NUM_CLASSES: {classes}",
        f"MULTIGRID:\n  SHORT_CYCLE: {str(extra.get('multigrid', False)).lower()}",
        "NONLOCAL:",
        "  GROUP:\n" + "".join(f"  - {[1] * paths}\n" for _ in range(4)).rstrip("\n"),
        f"  INSTANTIATION: {inst}\n  LOCATION: {location}",
        "  POOL:\n" + "".join(f"  - - {list(pool)}\n" + (f"    - {list(pool)}\n" if paths == 2 else "") for _ in range(4)).rstrip("\n"),
        f"RESNET:\n  DEPTH: {depth}\n  NUM_BLOCK_TEMP_KERNEL: {nbtk}\n  NUM_GROUPS: 1\n  STRIDE_1X1: false",
        f"  SPATIAL_DILATIONS: {[[1] * paths] * 3 + [[2 if det else 1] * paths]}",
        f"  SPATIAL_STRIDES: {[[1] * paths, [2] * paths, [2] * paths, [1 if det else 2] * paths]}",
        "  TRANS_FUNC: bottleneck_transform\n  WIDTH_PER_GROUP: 64",
        f"SLOWFAST:\n  ALPHA: {alpha or 8}\n  BETA_INV: 8\n  FUSION_CONV_CHANNEL_RATIO: 2\n  FUSION_KERNEL_SZ: {kernel or 5}",
        "TEST:\n  NUM_ENSEMBLE_VIEWS: 10\n  NUM_SPATIAL_CROPS: 3",
    ]
    return "\n".join(lines) + "\n"


def _checkpoint(layout: str, arch: str, shapes: dict, cfg_text: str | None, depth: int) -> dict:
    if layout == "caffe2":
        names = {k: psf_to_caffe2(k, _BLOCKS[depth]) for k in shapes}
        return {"blobs": {names[k]: torch.empty(s).numpy() for k, s in shapes.items() if names[k] is not None}}
    rename = (lambda k: to_pytorchvideo(k, arch)) if layout == "pytorchvideo" else (lambda k: k)
    state = {rename(k): torch.empty(s) for k, s in shapes.items()}
    return {"model_state": state, "epoch": 196, **({"cfg": cfg_text} if cfg_text else {})}


@pytest.mark.parametrize("name", sorted(PYSLOWFAST))
def test_pyslowfast_zoo_config_converts(name):
    (layout, arch, depth, frames, rate, alpha, kernel, res4, nl, inst, pool, classes, extra), preset = PYSLOWFAST[name]
    shapes = pyslowfast_shapes(arch, depth, res4, nl, classes, alpha, kernel)
    cfg_text = _yaml_cfg(arch, depth, frames, rate, alpha, kernel, res4, nl, inst, pool, classes, extra) if layout == "pyslowfast" else None
    ckpt = _checkpoint(layout, arch, shapes, cfg_text, depth)
    # A file without a config needs --preset where its tensors fit several (T and tau are not weights).
    net = model.convert(ckpt, preset=None, num_classes=None) if cfg_text else model.convert(ckpt, preset=preset, num_classes=classes)
    cfg = net.config
    slow_frames = frames // alpha if arch == "slowfast" else frames
    tau = rate * alpha if arch == "slowfast" else rate
    assert (cfg.num_frames, cfg.tau) == (slow_frames, tau), name
    assert cfg.arch == arch and cfg.depth == depth and cfg.num_classes == classes
    assert all(cfg.nonlocal_blocks(k, "slow") == tuple(nl.get(k, ())) for k in range(2, 6))
    if arch == "slowfast":
        assert (cfg.alpha, cfg.lateral_kernel, cfg.lateral_norm) == (alpha, kernel, True)
    if depth == 101:
        assert tuple(cfg.temporal_kernels("slow", 4)).count(3) == res4[0]
        assert arch != "slowfast" or tuple(cfg.temporal_kernels("fast", 4)).count(3) == res4[1]
    if cfg_text:
        assert cfg.nonlocal_instantiation == inst and cfg.nonlocal_pool == (pool,) * 4
        assert cfg.detection == extra.get("detection", False) and cfg.multilabel == bool(extra.get("multilabel") or extra.get("detection"))
        assert cfg.head_pool == ("global" if extra.get("multigrid") else "reference")
        prov = cfg.extra["conversion"]["provenance"]
        assert prov["num_frames"].startswith("PySlowFast cfg: DATA.NUM_FRAMES") and prov["depth"] == "weights"
    assert cfg.name == preset  # with a config, the preset found fits both the weights and the config best
    # the structure matches the expected preset: same tensors
    want = {k: tuple(v.shape) for k, v in model.build(preset, device="meta", num_classes=classes).state_dict().items()}
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == want


def test_slow_4x16_reads_its_config_instead_of_defaulting_to_8x8():
    """SLOW_4x16_R50 has the tensors of SLOW_8x8_R50; its embedded cfg (4 frames at stride 16) decides."""
    (layout, arch, depth, frames, rate, alpha, kernel, res4, nl, inst, pool, classes, extra), _ = PYSLOWFAST["Kinetics/SLOW_4x16_R50"]
    shapes = pyslowfast_shapes(arch, depth, res4, nl, classes)
    text = _yaml_cfg(arch, depth, frames, rate, alpha, kernel, res4, nl, inst, pool, classes, extra)
    cfg = model.convert(_checkpoint("pyslowfast", arch, shapes, text, depth)).config
    assert (cfg.name, cfg.num_frames, cfg.tau) == ("slow_r50_4x16", 4, 16)
    assert model.convert(_checkpoint("pyslowfast", arch, shapes, None, depth)).config.name == "slow_r50_8x8"  # no cfg: the zoo default
    with_preset = model.convert(_checkpoint("pyslowfast", arch, shapes, text, depth), preset="slow_r50_8x8").config
    (warning,) = with_preset.extra["conversion"]["warnings"]
    assert "num_frames 4 vs 8" in warning and "tau 16 vs 8" in warning and "slow_r50_8x8" in warning
    assert with_preset.num_frames == 8


@pytest.mark.parametrize("name", sorted(I3D_C2D))
def test_i3d_and_c2d_configs_are_refused_naming_the_feature(name):
    layout, arch, depth, nl, inst = I3D_C2D[name]
    shapes = pyslowfast_shapes(arch, depth, (_BLOCKS[depth][2],), nl, 400)
    text = _yaml_cfg(arch, depth, 8, 8, 0, 0, (_BLOCKS[depth][2],), nl, inst, P122, 400, {}) if layout == "pyslowfast" else None
    if layout == "pytorchvideo":  # create_resnet puts C2D/I3D's temporal pool after res2 as blocks.2
        ckpt = {
            "model_state": {
                re.sub(r"^blocks\.([2-5])\.", lambda m: f"blocks.{int(m.group(1)) + 1}.", to_pytorchvideo(k, arch)): torch.empty(s)
                for k, s in shapes.items()
            }
        }
    else:
        ckpt = _checkpoint(layout, arch, shapes, text, depth)
    with pytest.raises(SlowFastError) as e:
        model.convert(ckpt)
    msg = str(e.value)
    assert "\n" not in msg and "not supported" in msg
    want = {"pyslowfast": f"MODEL.ARCH {arch}", "pytorchvideo": "temporal max-pool after res2 of C2D/I3D"}.get(layout)
    assert (want or ("I3D" if arch == "i3d" else "C2D")) in msg, msg


# ----- mmaction2 -----


def mmaction2_shapes(speed, kernel, lateral_norm, slow_depth, fast_depth, classes=400, ratio=8, infl=2) -> dict:
    """{mmaction2 key: shape} of a Recognizer3D with ResNet3dSlowFast (ResNet3dPathway rules) and SlowFastHead."""
    out = {}
    for path, base, conv1_t, depth, inflate in (("slow", 64, 1, slow_depth, (0, 0, 1, 1)), ("fast", 8, 5, fast_depth, (1, 1, 1, 1))):
        pre = f"backbone.{path}_path"
        out[f"{pre}.conv1.conv.weight"] = (base, 3, conv1_t, 7, 7)
        out.update(_bn(f"{pre}.conv1.bn", base))
        inplanes = base + (base * infl // ratio if path == "slow" else 0)
        for i, n in enumerate(_BLOCKS[depth]):
            planes = base * 2**i
            for j in range(n):
                cin = inplanes if j == 0 else planes * 4
                name = f"{pre}.layer{i + 1}.{j}"
                if j == 0:
                    out[f"{name}.downsample.conv.weight"] = (planes * 4, cin, 1, 1, 1)
                    out.update(_bn(f"{name}.downsample.bn", planes * 4))
                for c, shape in (
                    ("conv1", (planes, cin, 3 if inflate[i] else 1, 1, 1)),
                    ("conv2", (planes, planes, 1, 3, 3)),
                    ("conv3", (planes * 4, planes, 1, 1, 1)),
                ):
                    out[f"{name}.{c}.conv.weight"] = shape
                    out.update(_bn(f"{name}.{c}.bn", shape[0]))
            inplanes = planes * 4 + (planes * 4 * infl // ratio if path == "slow" and i < 3 else 0)
    for name, cf in (("conv1_lateral", 8), ("layer1_lateral", 32), ("layer2_lateral", 64), ("layer3_lateral", 128)):
        out[f"backbone.slow_path.{name}.conv.weight"] = (cf * infl, cf, kernel, 1, 1)
        if lateral_norm:
            out.update(_bn(f"backbone.slow_path.{name}.bn", cf * infl))
    out["cls_head.fc_cls.weight"], out["cls_head.fc_cls.bias"] = (classes, 2048 + 256), (classes,)
    return out


def mmaction2_cfg_text(resample, speed, kernel, lateral_norm, slow_depth, fast_depth) -> str:
    """mmengine pretty_text of the config's model and pipelines (the parts conversion reads)."""
    clip = 32
    return f"""model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='ResNet3dSlowFast', pretrained=None, resample_rate={resample}, speed_ratio={speed}, channel_ratio=8,
        slow_pathway=dict(type='resnet3d', depth={slow_depth}, pretrained=None, lateral=True, fusion_kernel={kernel},
            lateral_norm={lateral_norm}, conv1_kernel=(1, 7, 7), dilations=(1, 1, 1, 1), conv1_stride_t=1,
            pool1_stride_t=1, inflate=(0, 0, 1, 1), norm_eval=False),
        fast_pathway=dict(type='resnet3d', depth={fast_depth}, pretrained=None, lateral=False, base_channels=8,
            conv1_kernel=(5, 7, 7), conv1_stride_t=1, pool1_stride_t=1, norm_eval=False)),
    cls_head=dict(type='SlowFastHead', in_channels=2304, num_classes=400, spatial_type='avg', dropout_ratio=0.5,
        average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        format_shape='NCTHW'))
file_client_args = dict(io_backend='disk')
train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len={clip}, frame_interval=2, num_clips=1),
    dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 256)), dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(224, 224), keep_ratio=False), dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'), dict(type='PackActionInputs')
]
test_dataloader = dict(batch_size=1, dataset=dict(type='VideoDataset', pipeline=[
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len={clip}, frame_interval=2, num_clips=10, test_mode=True),
    dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 256)), dict(type='ThreeCrop', crop_size=256),
    dict(type='FormatShape', input_format='NCTHW'), dict(type='PackActionInputs')
], test_mode=True))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1 * 4, momentum=0.9))
"""


@pytest.mark.parametrize("name", sorted(MMACTION2))
def test_mmaction2_config_converts(name):
    (resample, speed, kernel, lateral_norm, slow_depth, fast_depth), preset = MMACTION2[name]
    state = {k: torch.empty(s) for k, s in mmaction2_shapes(speed, kernel, lateral_norm, slow_depth, fast_depth).items()}
    ckpt = {"meta": {"cfg": mmaction2_cfg_text(resample, speed, kernel, lateral_norm, slow_depth, fast_depth)}, "state_dict": state}
    net = model.convert(ckpt)
    cfg = net.config
    assert cfg.extra["conversion"]["format"] == "mmaction2"
    assert (cfg.num_frames, cfg.tau, cfg.alpha) == (32 // resample, resample * 2, speed)
    assert (cfg.lateral_kernel, cfg.lateral_norm, cfg.depth, cfg.pathway_depth("fast")) == (kernel, lateral_norm, slow_depth, fast_depth)
    assert cfg.mean == pytest.approx((0.485, 0.456, 0.406)) and cfg.sampling == "strided" and cfg.test_crop_size == 256
    assert (cfg.head_pool, cfg.head_act, cfg.test_clips, cfg.test_crops) == ("global", "softmax", 10, 3)
    want = model.build(preset, device="meta").state_dict()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {k: tuple(v.shape) for k, v in want.items()}
    if not lateral_norm:
        assert cfg.name == preset
    assert cfg.extra["conversion"]["provenance"]["tau"] == "mmaction2 meta cfg: test pipeline SampleFrames, model.backbone.resample_rate"
