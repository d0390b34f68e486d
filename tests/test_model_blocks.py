"""Laterals, Fast-input variants, non-local block and head: behaviour checked against explicit formulas."""

from __future__ import annotations

import pytest
import torch

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.blocks import NonLocal
from slowfast_trt.model.head import Head
from slowfast_trt.model.inputs import GRAY_WEIGHTS, make_fast_input, normalize
from slowfast_trt.model.lateral import Lateral


def _cfg(**kw):
    return model.get_config("slowfast_r50_4x16", **kw)


def test_time_to_channel_packs_alpha_frames_into_channels():
    cfg = _cfg(lateral="ttoc_concat")
    lat = Lateral(cfg, fast_channels=2)
    fast = torch.randn(1, 2, 16, 3, 3)  # alpha=8 -> T=2
    slow = torch.randn(1, 5, 2, 3, 3)
    out = lat(slow, fast)
    assert out.shape == (1, 5 + 16, 2, 3, 3)
    packed = out[:, 5:]
    for c in range(2):
        for t in range(2):
            for j in range(8):
                assert torch.equal(packed[0, c * 8 + j, t], fast[0, c, t * 8 + j])


def test_time_to_channel_sum_adds():
    cfg = _cfg(lateral="ttoc_sum")
    lat = Lateral(cfg, fast_channels=1)
    fast, slow = torch.randn(1, 1, 16, 2, 2), torch.randn(1, 8, 2, 2, 2)
    assert torch.equal(lat(slow, fast), slow + lat.transform(fast))


def test_time_strided_sampling_keeps_every_alpha_th_frame():
    cfg = _cfg(lateral="tsample")
    lat = Lateral(cfg, fast_channels=3)
    fast = torch.arange(32, dtype=torch.float32).view(1, 1, 32, 1, 1).expand(1, 3, 32, 224, 224).contiguous()
    y = lat.transform(fast)  # full-size tensor: the step-slicing trap only shows on large outputs
    assert y.shape == (1, 3, 4, 224, 224)
    assert y[0, 0, :, 100, 100].tolist() == [0.0, 8.0, 16.0, 24.0]


def test_time_strided_conv_shape():
    lat = Lateral(_cfg(), fast_channels=8)
    y = lat.transform(torch.randn(2, 8, 32, 4, 4))
    assert y.shape == (2, 16, 4, 4, 4)


def test_fast_input_variants():
    cfg = _cfg()
    frames = torch.randn(2, 3, 8, 16, 16)
    w = torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1, 1)
    gray = make_fast_input(frames, cfg.replace(fast_input="gray"))
    assert torch.allclose(gray, (frames * w).sum(1, keepdim=True))
    diff = make_fast_input(frames, cfg.replace(fast_input="time_diff"))
    assert diff.shape == (2, 1, 8, 16, 16) and torch.count_nonzero(diff[:, :, 0]) == 0
    assert torch.allclose(diff[:, :, 3], gray[:, :, 3] - gray[:, :, 2])
    half = make_fast_input(frames, cfg.replace(fast_input="half_res", beta_inv=4, fusion_ratio=1))
    assert half.shape == (2, 3, 8, 8, 8)
    assert torch.allclose(half[0, 0, 0, 0, 0], frames[0, 0, 0, :2, :2].mean())
    assert make_fast_input(frames, cfg) is frames


def test_normalize_is_the_papers_formula_for_uint8_and_float():
    cfg = _cfg(mean=(0.4, 0.45, 0.5), std=(0.2, 0.225, 0.25))
    x = torch.randint(0, 256, (2, 4, 5, 6, 3), dtype=torch.uint8)
    ref = (x.float() / 255 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    y = normalize(x, cfg)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.allclose(y, ref, atol=1e-6) and torch.allclose(normalize(x.float(), cfg), ref, atol=1e-6)
    with pytest.raises(SlowFastError, match="channels-last"):
        normalize(x.permute(0, 4, 1, 2, 3), cfg)
    # Into a given buffer, from a strided (cropped) view, per-channel constants kept apart.
    view = x[:, :, 1:4, 2:5]
    out = torch.full(view.shape, float("nan"))
    assert normalize(view, cfg, out=out) is out and torch.allclose(out, ref[:, :, 1:4, 2:5], atol=1e-6)
    with pytest.raises(SlowFastError, match="contiguous float32 output"):
        normalize(view, cfg, out=torch.empty(view.shape, dtype=torch.float64))


@pytest.mark.parametrize("name", ["slowfast_r50_4x16_gray", "slowfast_r50_4x16_timediff", "slowfast_r50_4x16_halfres"])
def test_weak_fast_inputs_run_end_to_end(name):
    net = model.build(name).eval()
    cfg = net.config
    rgb = torch.randn(1, 3, cfg.fast_frames, 64, 64)
    with torch.no_grad():
        out = net(torch.randn(1, 3, cfg.num_frames, 64, 64), make_fast_input(rgb, cfg))
    assert out.shape == (1, 400)


def test_nonlocal_matches_explicit_formula():
    torch.manual_seed(0)
    nl = NonLocal(8).eval()
    assert torch.equal(nl(x := torch.randn(2, 8, 2, 4, 4)), x)  # zero-initialised BN: identity at start
    torch.nn.init.normal_(nl.bn.weight)
    theta = nl.theta(x).flatten(2)
    pooled = torch.nn.functional.max_pool3d(x, (1, 2, 2), (1, 2, 2))
    phi, g = nl.phi(pooled).flatten(2), nl.g(pooled).flatten(2)
    n_keys = phi.shape[-1]
    att = torch.einsum("nct,ncp->ntp", theta, phi) / n_keys
    y = torch.einsum("ntp,ncp->nct", att, g).reshape(2, 4, 2, 4, 4)
    assert torch.allclose(nl(x), x + nl.bn(nl.out(y)), atol=1e-5)


def test_head_reference_pool_gives_2x2_positions_at_256():
    net = model.build("slowfast_r50_4x16", head_pool="reference").eval()
    feats = [torch.randn(1, 2048, 4, 8, 8), torch.randn(1, 256, 32, 8, 8)]  # res5 at a 256 crop
    pos = net.head.positions_logits(feats)
    assert pos.shape == (1, 1, 2, 2, 400)
    assert torch.allclose(net.head(feats), pos.mean(dim=(1, 2, 3)))
    # At the 224 training crop the window covers everything: identical to global pooling.
    feats7 = [f[..., :7, :7] for f in feats]
    glob = Head(2304, 400, 0.5, pool="global").eval()
    glob.load_state_dict(net.head.state_dict())
    assert torch.allclose(net.head(feats7), glob(feats7), atol=1e-6)


def test_missing_pathway_input_is_a_clear_error():
    from slowfast_trt.common.errors import SlowFastError

    net = model.build("slowfast_r50_4x16")
    with pytest.raises(SlowFastError, match="'fast' input"):
        net(torch.randn(1, 3, 4, 32, 32))
    assert model.build("fast_r50_4x16")(fast=torch.randn(2, 3, 32, 32, 32)).shape == (2, 400)
