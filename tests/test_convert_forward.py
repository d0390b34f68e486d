"""Known answers for the structures conversion newly represents, from a reference forward written here.

`reference_forward` runs a SlowFast straight from a state dict with torch.nn.functional, following the published
architecture and the two reference implementations' forward semantics as read in their source (PySlowFast 287ec00:
FuseFastToSlow, ResStage, Nonlocal, ResNetBasicHead; mmaction2 1.2.0: ResNet3dSlowFast, ResNet3dPathway,
SlowFastHead), with none of the project's modules. Each case makes random tiny-width weights, writes them under the
origin's names with the origin's config, converts them, and compares outputs: non-local blocks in res3 and res4 with
softmax affinity, 2x2x2 pooling and temporal groups; the 50_101 R101 variant; mmaction2's conv-only laterals and
its [Fast | Slow] classifier.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from slowfast_trt import model
from slowfast_trt.model.convert import to_layout_state
from tests.helpers import randomize_


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], False, 0.0, 1e-5)


def _conv(x, w, stride=(1, 1, 1)):
    return F.conv3d(x, w, stride=stride, padding=tuple(k // 2 for k in w.shape[2:]))


def _nonlocal(x, sd, p, pool, inst, group):
    n, c, t, h, w = x.shape
    if group > 1:  # PySlowFast folds time into the batch: (N, T, C) -> (N * G, T / G, C)
        x = x.permute(0, 2, 1, 3, 4).reshape(n * group, t // group, c, h, w).permute(0, 2, 1, 3, 4)
    conv = lambda y, name: F.conv3d(y, sd[f"{p}conv_{name}.weight"], sd[f"{p}conv_{name}.bias"])  # noqa: E731
    theta = conv(x, "theta")
    pooled = F.max_pool3d(x, pool, pool) if max(pool) > 1 else x
    phi, g = conv(pooled, "phi"), conv(pooled, "g")
    b, ci = theta.shape[:2]
    tp = torch.einsum("nct,ncp->ntp", theta.reshape(b, ci, -1), phi.reshape(b, ci, -1))
    tp = torch.softmax(tp * ci**-0.5, dim=2) if inst == "softmax" else tp / tp.shape[2]
    y = torch.einsum("ntg,ncg->nct", tp, g.reshape(b, ci, -1)).reshape(b, ci, *x.shape[2:])
    x = x + _bn(conv(y, "out"), sd, p + "bn.")
    if group > 1:
        x = x.permute(0, 2, 1, 3, 4).reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4)
    return x


def reference_forward(sd, names, slow, fast, alpha, nl=None, nl_pool=None, nl_inst="dot_product", nl_group=None, fast_first=False):
    """Eval-mode SlowFast from `sd`; `names` maps (part, ...) to the origin's key prefixes. Returns (logits, features)."""
    nl, nl_pool, nl_group = nl or {}, nl_pool or {}, nl_group or {}
    x = {}
    for p, clip in ((0, slow), (1, fast)):
        y = _conv(clip, sd[names("stem", p) + "conv.weight"], (1, 2, 2))
        x[p] = F.max_pool3d(F.relu(_bn(y, sd, names("stem", p) + "bn.")), (1, 3, 3), (1, 2, 2), (0, 1, 1))

    def fuse(k):
        pre = names("fuse", k)
        y = _conv(x[1], sd[pre + "conv.weight"], (alpha, 1, 1))
        if pre + "bn.weight" in sd:  # PySlowFast always, mmaction2 with lateral_norm: BN + ReLU; else the conv alone
            y = F.relu(_bn(y, sd, pre + "bn."))
        x[0] = torch.cat([x[0], y], dim=1)

    fuse(1)
    for k in range(2, 6):
        for p in (0, 1):
            i = 0
            while names("block", p, k, i) + "a.weight" in sd:
                pre = names("block", p, k, i)
                s = 2 if (k > 2 and i == 0) else 1
                short = x[p]
                if pre + "short.weight" in sd:
                    short = _bn(F.conv3d(x[p], sd[pre + "short.weight"], stride=(1, s, s)), sd, pre + "short_bn.")
                y = F.relu(_bn(_conv(x[p], sd[pre + "a.weight"]), sd, pre + "a_bn."))
                y = F.relu(_bn(_conv(y, sd[pre + "b.weight"], (1, s, s)), sd, pre + "b_bn."))
                x[p] = F.relu(_bn(_conv(y, sd[pre + "c.weight"]), sd, pre + "c_bn.") + short)
                if p == 0 and i in nl.get(k, ()):
                    x[p] = _nonlocal(x[p], sd, names("nonlocal", p, k, i), nl_pool.get(k, (1, 2, 2)), nl_inst, nl_group.get(k, 1))
                i += 1
        if k < 5:
            fuse(k)
    pooled = [x[p].mean(dim=(2, 3, 4)) for p in ((1, 0) if fast_first else (0, 1))]
    w, b = sd[names("head") + "weight"], sd[names("head") + "bias"]
    return F.linear(torch.cat(pooled, dim=1), w, b), (x[0], x[1])


def pyslowfast_names(part, p=0, k=0, i=0):
    return {
        "stem": f"s1.pathway{p}_stem.",
        "fuse": f"s{p}_fuse.",
        "nonlocal": f"s{k}.pathway{p}_nonlocal{i}.",
        "head": "head.projection.",
    }.get(part) or f"s{k}.pathway{p}_res{i}.@"


def _psf_view(sd):
    """PySlowFast state under the reference's block-field names: branch2.a -> a, branch1 -> short."""
    out = {}
    for k, v in sd.items():
        k = k.replace("_fuse.conv_f2s.", "_fuse.conv.")
        k = re.sub(r"_res(\d+)\.branch2\.([abc])(_bn)?\.", lambda m: f"_res{m.group(1)}.@{m.group(2)}{m.group(3) or ''}.", k)
        k = re.sub(r"_res(\d+)\.branch1\.", r"_res\1.@short.", k)
        k = re.sub(r"_res(\d+)\.branch1_bn\.", r"_res\1.@short_bn.", k)
        out[k] = v
    return out


def mmaction2_names(part, p=0, k=0, i=0):
    path = "backbone.slow_path" if p == 0 else "backbone.fast_path"
    if part == "stem":
        return f"{path}.conv1."
    if part == "fuse":
        return "backbone.slow_path." + ("conv1_lateral." if p == 1 else f"layer{p - 1}_lateral.")
    if part == "head":
        return "cls_head.fc_cls."
    return f"{path}.layer{k - 1}.{i}.@"


def _mm_view(sd):
    out = {}
    for k, v in sd.items():
        k = re.sub(r"\.(\d+)\.conv([123])\.conv\.", lambda m: f".{m.group(1)}.@{'abc'[int(m.group(2)) - 1]}.", k)
        k = re.sub(r"\.(\d+)\.conv([123])\.bn\.", lambda m: f".{m.group(1)}.@{'abc'[int(m.group(2)) - 1]}_bn.", k)
        k = re.sub(r"\.(\d+)\.downsample\.conv\.", r".\1.@short.", k)
        k = re.sub(r"\.(\d+)\.downsample\.bn\.", r".\1.@short_bn.", k)
        out[k] = v
    return out


def _clips(cfg, size, seed=3):
    g = torch.Generator().manual_seed(seed)
    slow = torch.randn(1, 3, cfg.num_frames, size, size, generator=g)
    fast = torch.randn(1, 3, cfg.fast_frames, size, size, generator=g)
    return slow, fast


TINY = dict(width=16, crop_size=64, test_crop_size=64)


def test_nonlocal_res3_res4_softmax_pool_and_groups_match_the_reference():
    nl = {3: (1, 3), 4: (1, 3, 5)}
    src = model.build(
        "slowfast_nln_r50_4x16",
        **TINY,
        num_classes=7,
        nonlocal_instantiation="softmax",
        nonlocal_pool=((1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 2, 2)),
        nonlocal_group=(1, 2, 1, 1),
    )
    randomize_(src, seed=5).eval()
    state = to_layout_state(src, "pyslowfast")
    cfg_node = {
        "MODEL": {"ARCH": "slowfast", "NUM_CLASSES": 7, "HEAD_ACT": "none"},
        "DATA": {"NUM_FRAMES": 32, "SAMPLING_RATE": 2, "TRAIN_CROP_SIZE": 64, "TEST_CROP_SIZE": 64},
        "SLOWFAST": {"ALPHA": 8, "BETA_INV": 8, "FUSION_CONV_CHANNEL_RATIO": 2, "FUSION_KERNEL_SZ": 5},
        "NONLOCAL": {
            "LOCATION": [[[], []], [[1, 3], []], [[1, 3, 5], []], [[], []]],
            "INSTANTIATION": "softmax",
            "POOL": [[[1, 2, 2]] * 2, [[1, 2, 2]] * 2, [[2, 2, 2]] * 2, [[1, 2, 2]] * 2],
            "GROUP": [[1, 1], [2, 2], [1, 1], [1, 1]],
        },
    }
    net = model.convert({"model_state": state, "cfg": cfg_node}, fmt="pyslowfast")
    assert net.config.nonlocal_group == (1, 2, 1, 1) and net.config.nonlocal_pool[2] == (2, 2, 2)
    slow, fast = _clips(net.config, 64)
    with torch.no_grad():
        want, (ws, wf) = reference_forward(_psf_view(state), pyslowfast_names, slow, fast, 8, nl, {4: (2, 2, 2)}, "softmax", {3: 2})
        got = net(slow, fast)
        gs, gf = net.features(slow, fast)
    assert torch.allclose(gs, ws, atol=1e-4, rtol=1e-4) and torch.allclose(gf, wf, atol=1e-4, rtol=1e-4)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_r101_50_101_variant_matches_the_reference():
    src = randomize_(
        model.build("slowfast_r101_8x8_50_101", width=8, crop_size=32, test_crop_size=32, num_frames=2, num_classes=5), 2
    ).eval()
    state = to_layout_state(src, "pyslowfast")
    cfg_node = {"MODEL": {"ARCH": "slowfast", "HEAD_ACT": "none"}, "SLOWFAST": {"ALPHA": 4}, "DATA": {"NUM_FRAMES": 8, "SAMPLING_RATE": 2}}
    net = model.convert({"model_state": state, "cfg": cfg_node})  # the variant is read off each pathway's res4 kernels
    assert net.config.r101_variant == "50_101"
    assert state["s4.pathway0_res10.branch2.a.weight"].shape[2] == 1 and state["s4.pathway1_res10.branch2.a.weight"].shape[2] == 3
    slow, fast = _clips(src.config, 32)
    with torch.no_grad():
        want, _ = reference_forward(_psf_view(state), pyslowfast_names, slow, fast, 4)
        got = net.head.projection(torch.cat([f.mean(dim=(2, 3, 4)) for f in net.features(slow, fast)], dim=1))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_mmaction2_conv_only_laterals_and_fast_first_classifier_match_the_reference():
    src = randomize_(model.build("slowfast_r50_4x16_mmaction2", **TINY, num_classes=6), 4).eval()
    state = to_layout_state(src, "mmaction2")
    assert not any("lateral.bn" in k for k in state) and state["cls_head.fc_cls.weight"].shape[1] == 512 + 64
    net = model.convert({"state_dict": state, "meta": {}}, fmt="mmaction2")
    assert net.config.lateral_norm is False and net.config.head_act == "none"
    slow, fast = _clips(net.config, 64)
    with torch.no_grad():
        want, (ws, wf) = reference_forward(_mm_view(state), mmaction2_names, slow, fast, 8, fast_first=True)
        gs, gf = net.features(slow, fast)
        got = net.head.projection(torch.cat([gs.mean(dim=(2, 3, 4)), gf.mean(dim=(2, 3, 4))], dim=1))
    assert torch.allclose(gs, ws, atol=1e-4, rtol=1e-4) and torch.allclose(gf, wf, atol=1e-4, rtol=1e-4)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    # without the column reorder, [Slow | Fast] features through mmaction2's [Fast | Slow] classifier are wrong
    unordered = F.linear(
        torch.cat([ws.mean(dim=(2, 3, 4)), wf.mean(dim=(2, 3, 4))], 1), state["cls_head.fc_cls.weight"], state["cls_head.fc_cls.bias"]
    )
    assert not torch.allclose(unordered, want, atol=1e-3)
