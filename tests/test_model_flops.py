"""GFLOPs and params against the paper (Tables 2-5) and against an independent closed-form count."""

from __future__ import annotations

import time

import pytest

from slowfast_trt import model
from slowfast_trt.benchmarks.flops import flops_row
from slowfast_trt.model.config import STAGE_WIDTHS

HEADLINE = {  # Tables 2-4: must be within 1.5% of the paper
    "slowfast_r50_4x16": 36.1,
    "slowfast_r50_8x8": 65.7,
    "slowfast_r101_8x8": 106,
    "slowfast_r101_16x8": 213,
    "slow_r50_4x16": 27.3,
    "slow_r101_16x8": 187,
}
TABLE5A_LATERALS = {
    "slowfast_r50_4x16_nolateral": 34.2,
    "slowfast_r50_4x16_ttoc_sum": 34.2,
    "slowfast_r50_4x16_ttoc_concat": 39.8,
    "slowfast_r50_4x16_tsample": 34.9,
    "slowfast_r50_4x16_tconv": 36.1,
}


@pytest.mark.parametrize("name, paper", {**HEADLINE, **TABLE5A_LATERALS}.items())
def test_within_1_5_percent_of_paper(name, paper):
    got = model.count(name)["gflops"]
    assert abs(got / paper - 1) <= 0.015, f"{name}: {got:.2f} vs paper {paper}"


def test_nonlocal_within_4_percent_and_explained():
    row = flops_row("slowfast_r101_16x8_nl")
    assert row["paper_gflops"] == 234 and abs(row["diff_pct"]) <= 4.0
    assert "matmul" in row["note"] and "12.9" in row["note"]  # the attention matmuls are counted and named


def test_slow_only_4x16_params():
    assert abs(model.count("slow_r50_4x16")["params"] / 32.4e6 - 1) <= 0.01


def test_no_row_silently_off():
    """Every row with a paper number is within its tolerance, and any row off by more than 1.5% carries a note."""
    for name in model.presets():
        row = flops_row(name)
        if row["paper_gflops"] is None:
            continue
        assert row["within_tolerance"], (name, row["diff_pct"])
        if abs(row["diff_pct"]) > 1.5:
            assert row["note"], f"{name} is {row['diff_pct']:+.2f}% off without a note"
        if abs(row["diff_pct"]) > 4.0:
            assert row["note"] and "{" not in row["note"], name


def test_fast_only_row_carries_note_with_numbers():
    row = flops_row("fast_r50_4x16")
    assert row["paper_gflops"] == 6.4
    assert "6.90" in row["note"] and "0.62" in row["note"]


def _closed_form_macs_slow_r50(t: int, size: int, num_classes: int = 400) -> int:
    """Multiply-adds of a Slow-only R50 (T x size^2) written out from Table 1 by hand, independent of torch."""

    def conv(cin, cout, kt, kh, t_out, s_out):
        return cin * cout * kt * kh * kh * t_out * s_out * s_out

    s = size // 2
    macs = conv(3, 64, 1, 7, t, s)  # conv1 at stride 2
    s //= 2  # pool1
    cin = 64
    for stage, ((inner, out), n, kt) in enumerate(zip(STAGE_WIDTHS, (3, 4, 6, 3), (1, 1, 3, 3))):
        for i in range(n):
            s_in = s
            s_out = s // 2 if (i == 0 and stage > 0) else s
            macs += conv(cin, inner, kt, 1, t, s_in)  # conv_a
            macs += conv(inner, inner, 1, 3, t, s_out)  # conv_b (strided)
            macs += conv(inner, out, 1, 1, t, s_out)  # conv_c
            if i == 0:
                macs += conv(cin, out, 1, 1, t, s_out)  # projection shortcut
            cin, s = out, s_out
    return macs + 2048 * num_classes


@pytest.mark.parametrize("t, size", [(4, 256), (8, 224)])
def test_torch_counter_matches_closed_form(t, size):
    got = model.count("slow_r50_4x16", size=size, num_frames=t)["gflops"]
    assert got == pytest.approx(_closed_form_macs_slow_r50(t, size) / 1e9, rel=1e-9)


def test_parts_add_up_and_fast_share():
    c = model.count("slowfast_r50_4x16")
    assert sum(p["gflops"] for p in c["parts"].values()) == pytest.approx(c["gflops"], rel=1e-9)
    assert sum(p["params"] for p in c["parts"].values()) == c["params"]
    assert 0.15 <= c["fast_share"] <= 0.25  # "the Fast pathway typically takes ~20% of the total computation"
    assert c["parts"]["lateral"]["gflops"] > 0 and c["parts"]["head"]["params"] == 2304 * 400 + 400


def test_224_counts_less_than_256():
    """The same model counts (224/256)^2 as much at the training crop: print the input size with every number."""
    a, b = model.count("slowfast_r50_4x16", size=224)["gflops"], model.count("slowfast_r50_4x16")["gflops"]
    assert a / b == pytest.approx((224 / 256) ** 2, rel=0.01)


def test_largest_preset_counts_in_seconds_on_meta():
    start = time.perf_counter()
    c = model.count("slowfast_r101_16x8_nl")
    assert time.perf_counter() - start < 10.0
    assert c["params"] == pytest.approx(60.08e6, rel=0.001)


def _nonlocal_macs(channels: int, t: int, side: int, pool: tuple[int, int, int] = (1, 2, 2)) -> tuple[int, int]:
    """(conv, matmul) multiply-adds of one non-local block on a C x T x side x side map, from the block's definition:
    theta on N positions, phi and g on the P pooled ones (C -> C/2 each), out (C/2 -> C) on N; theta.phi and
    attention.g are N x P x C/2 each."""
    inner, n = channels // 2, t * side * side
    p = (t // pool[0]) * (side // pool[1]) * (side // pool[2])
    return channels * inner * (2 * n + 2 * p), 2 * n * p * inner


@pytest.mark.parametrize(
    "name, base, t",
    [
        ("slowfast_nln_r50_4x16", "slowfast_r50_4x16", 4),
        ("slowfast_nln_r50_8x8", "slowfast_r50_8x8", 8),
        ("slow_nln_r50_8x8", "slow_r50_8x8", 8),
    ],
)
def test_nln_presets_add_the_nonlocal_blocks_cost(name, base, t):
    """PySlowFast's *_NLN_* configs: non-local after res3 blocks 1, 3 (512 channels, 32x32 at 256) and res4 blocks
    1, 3, 5 (1024 channels, 16x16). Expected = the plain preset's count + the closed-form cost of those 5 blocks."""
    res3, res4 = _nonlocal_macs(512, t, 32), _nonlocal_macs(1024, t, 16)
    conv, matmul = 2 * res3[0] + 3 * res4[0], 2 * res3[1] + 3 * res4[1]
    lateral_kernel_delta = 0.0
    if name == "slowfast_nln_r50_8x8":  # its lateral kernel is 5 (the config's FUSION_KERNEL_SZ), the 8x8 preset's 7
        lateral_kernel_delta = model.count("slowfast_r50_8x8", lateral_kernel=5)["gflops"] - model.count(base)["gflops"]
    got, plain = model.count(name), model.count(base)
    assert got["ops_gflops"]["matmul"] == pytest.approx(matmul / 1e9, rel=1e-9)
    assert got["gflops"] == pytest.approx(plain["gflops"] + lateral_kernel_delta + (conv + matmul) / 1e9, rel=1e-9)
    # the 4x16 one: 36.10 + 6.71 (convs) + 5.10 (matmuls) = 47.91 GFLOPs
    if name == "slowfast_nln_r50_4x16":
        assert round(got["gflops"], 2) == 47.91


def test_conv_only_laterals_keep_gflops_and_drop_only_the_lateral_bn():
    """mmaction2's default R50 4x16 has 34,479,288 parameters: ours with BN on the laterals minus 2 x (16+64+128+256)."""
    plain, mm = model.count("slowfast_r50_4x16"), model.count("slowfast_r50_4x16_mmaction2")
    assert mm["params"] == 34_479_288 and plain["params"] - mm["params"] == 2 * (16 + 64 + 128 + 256)
    assert mm["gflops"] == plain["gflops"]
