"""Table 1: the SlowFast 4x16 R50 feature shapes and kernels, stage by stage, at 224x224."""

from __future__ import annotations

import pytest
import torch

from slowfast_trt import model
from slowfast_trt.model.inputs import input_shapes

# (channels, T, S) after each stage, Slow and Fast, straight from Table 1 (alpha=8, beta=1/8, tau=16).
TABLE1 = {
    "conv1": {"slow": (64, 4, 112), "fast": (8, 32, 112)},
    "pool1": {"slow": (64, 4, 56), "fast": (8, 32, 56)},
    "res2": {"slow": (256, 4, 56), "fast": (32, 32, 56)},
    "res3": {"slow": (512, 4, 28), "fast": (64, 32, 28)},
    "res4": {"slow": (1024, 4, 14), "fast": (128, 32, 14)},
    "res5": {"slow": (2048, 4, 7), "fast": (256, 32, 7)},
}


def _capture(net, inputs):
    seen = {}

    def hook(name):
        return lambda _m, _i, out: seen.__setitem__(name, tuple(out.shape))

    for p in ("slow", "fast"):
        getattr(net.stem, p).conv.register_forward_hook(hook(("conv1", p)))
        getattr(net.stem, p).register_forward_hook(hook(("pool1", p)))
        for stage in ("res2", "res3", "res4", "res5"):
            getattr(getattr(net, stage), p).register_forward_hook(hook((stage, p)))
    with torch.no_grad():
        out = net(**inputs)
    return seen, out


def test_table1_shapes_slowfast_4x16_r50():
    with torch.device("meta"):
        net = model.build("slowfast_r50_4x16").eval()
    shapes = input_shapes(net.config, size=224)
    assert shapes == {"slow": (1, 3, 4, 224, 224), "fast": (1, 3, 32, 224, 224)}  # data layer: stride 16 / stride 2
    seen, out = _capture(net, {k: torch.empty(v, device="meta") for k, v in shapes.items()})
    for stage, per_path in TABLE1.items():
        for p, (c, t, s) in per_path.items():
            assert seen[(stage, p)] == (1, c, t, s, s), (stage, p)
    assert tuple(out.shape) == (1, 400)


def test_table1_kernels_slowfast_4x16_r50():
    """Non-degenerate temporal kernels only where Table 1 underlines them; spatial stride on the 3x3 conv."""
    with torch.device("meta"):
        net = model.build("slowfast_r50_4x16")
    assert tuple(net.stem.slow.conv.weight.shape) == (64, 3, 1, 7, 7)
    assert tuple(net.stem.fast.conv.weight.shape) == (8, 3, 5, 7, 7)
    expect_kt = {"slow": (1, 1, 3, 3), "fast": (3, 3, 3, 3)}
    for p in ("slow", "fast"):
        for stage, kt, n in zip(("res2", "res3", "res4", "res5"), expect_kt[p], (3, 4, 6, 3)):
            blocks = getattr(getattr(net, stage), p).blocks
            assert len(blocks) == n
            for b in blocks:
                assert b.conv_a.weight.shape[2] == kt
                assert b.conv_b.weight.shape[2:] == (1, 3, 3) and b.conv_c.weight.shape[2:] == (1, 1, 1)
                assert b.conv_a.stride == (1, 1, 1) and b.conv_c.stride == (1, 1, 1)
            assert blocks[0].conv_b.stride == ((1, 1, 1) if stage == "res2" else (1, 2, 2))
            assert blocks[0].shortcut is not None and all(b.shortcut is None for b in blocks[1:])
    # T-conv laterals: 5x1x1, stride alpha in time, 2*beta*C out; the Slow stage inputs grow by them.
    for k, cf in zip((1, 2, 3, 4), (8, 32, 64, 128)):
        conv = getattr(net, f"fuse{k}").conv
        assert tuple(conv.weight.shape) == (2 * cf, cf, 5, 1, 1) and conv.stride == (8, 1, 1)
    assert net.res2.slow.blocks[0].conv_a.in_channels == 64 + 16
    assert net.res5.slow.blocks[0].conv_a.in_channels == 1024 + 256
    assert net.head.projection.in_features == 2048 + 256


@pytest.mark.parametrize(
    "variant, res4_kernels",
    [("50_50", [3] * 6 + [1] * 17), ("101_101_101", [3] * 23)],
)
def test_r101_variants_temporal_kernels(variant, res4_kernels):
    with torch.device("meta"):
        net = model.build("slowfast_r101_8x8", r101_variant=variant)
    for p in ("slow", "fast"):
        got = [b.conv_a.weight.shape[2] for b in getattr(net.res4, p).blocks]
        assert got == res4_kernels
    assert [b.conv_a.weight.shape[2] for b in net.res5.slow.blocks] == [3, 3, 3]
    assert [b.conv_a.weight.shape[2] for b in net.res3.fast.blocks] == [3, 3, 3, 3]


def test_nonlocal_positions_r101():
    with torch.device("meta"):
        net = model.build("slowfast_r101_16x8_nl")
    assert sorted(int(k) for k in net.res4.slow.nonlocals) == [6, 13, 20]
    assert len(net.res4.fast.nonlocals) == 0 and len(net.res3.slow.nonlocals) == 0


@pytest.mark.parametrize("name", model.presets())
def test_every_preset_forward_backward_cpu(name):
    """Each preset trains on the CPU: a small input, forward, backward, finite gradients everywhere."""
    net = model.build(name, num_classes=3)
    assert net.config.name == name
    from slowfast_trt.model.inputs import random_inputs

    x = random_inputs(net.config, size=32, batch=2)
    if net.config.detection:  # one box per clip (batch index, x1, y1, x2, y2 in input pixels)
        x["boxes"] = torch.tensor([[0.0, 0.0, 0.0, 16.0, 16.0], [1.0, 4.0, 4.0, 30.0, 30.0]])
    logits = net(**x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
