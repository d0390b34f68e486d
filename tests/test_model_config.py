"""Config validation, builder overrides, and the errors a user can cause."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.config import SlowFastConfig


def test_unknown_preset_lists_closest_names():
    with pytest.raises(SlowFastError) as e:
        model.build("slowfast_r50_4x61")
    msg = str(e.value)
    assert "slowfast_r50_4x16" in msg and "did you mean" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(alpha=3), "alpha"),  # 16 frames of stride cannot split into 3
        (dict(beta_inv=5), "beta_inv"),  # 64 / 5 is not whole
        (dict(lateral="ttoc_sum", beta_inv=4), "lateral"),  # alpha*beta*C != C cannot be summed
        (dict(lateral="bogus"), "lateral"),
        (dict(lateral_kernel=4), "lateral_kernel"),
        (dict(depth=34), "depth"),
        (dict(nonlocal_location=(((), ()), ((), ()), ((6,), ()), ((), ()))), "nonlocal_location"),  # R50 res4: blocks 0..5
        (dict(nonlocal_location=(((), ()), ((4,), ()), ((), ()), ((), ()))), "nonlocal_location"),  # R50 res3: blocks 0..3
        (dict(nonlocal_instantiation="gaussian"), "nonlocal_instantiation"),
        (dict(nonlocal_pool=((1, 2, 2),) * 3), "nonlocal_pool"),
        (dict(r101_variant="50_18"), "r101_variant"),
        (dict(fast_depth=34), "fast_depth"),
        (dict(fast_input="depth"), "fast_input"),
        (dict(crop_size=200), "crop_size"),
        (dict(dropout=1.0), "dropout"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_impossible_config_names_the_field(overrides, field):
    with pytest.raises(SlowFastError, match=rf"\b{field}="):
        model.build("slowfast_r50_4x16", **overrides)


def test_lateral_on_slow_only_is_rejected():
    with pytest.raises(SlowFastError, match="lateral="):
        model.build("slow_r50_4x16", lateral="tconv")


def test_unknown_override_is_rejected():
    with pytest.raises(SlowFastError, match="unknown model option"):
        model.build("slowfast_r50_4x16", speed_ratio=8)


def test_round_widths_allows_uneven_beta():
    cfg = model.get_config("slowfast_r50_4x16", beta_inv=6, round_widths=True)
    assert cfg.fast_width(64) == 11 and cfg.fast_width(2048) == 341


def test_config_round_trips_through_dict():
    cfg = model.get_preset("slowfast_r101_16x8_nl").config
    again = SlowFastConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.nonlocal_blocks(4, "slow") == (6, 13, 20) and hash(again) == hash(cfg)
    with pytest.raises(SlowFastError, match="unknown fields"):
        SlowFastConfig.from_dict({**cfg.to_dict(), "gamma": 1})


def test_configs_saved_with_res4_nonlocal_blocks_still_load():
    """Before non-local blocks could sit at any stage, configs saved `nonlocal_blocks` (res4, Slow pathway)."""
    old = {k: v for k, v in model.get_preset("slowfast_r101_16x8").config.to_dict().items() if k not in NEW_FIELDS}
    cfg = SlowFastConfig.from_dict({**old, "nonlocal_blocks": [6, 13, 20]})
    assert cfg == model.get_preset("slowfast_r101_16x8_nl").config
    assert cfg.lateral_norm and cfg.nonlocal_instantiation == "dot_product" and cfg.fast_depth is None


NEW_FIELDS = (
    "fast_depth",
    "lateral_norm",
    "nonlocal_location",
    "nonlocal_instantiation",
    "nonlocal_pool",
    "nonlocal_group",
    "test_clips",
    "test_crops",
    "roi_aligned",
)


def test_module_carries_config_and_overrides():
    net = model.build("slow_r50_4x16", num_classes=7, dropout=0.2)
    assert net.config.num_classes == 7 and net.config.dropout == 0.2 and net.config.arch == "slow"
    assert net.head.projection.out_features == 7


def test_presets_cover_the_paper_tables():
    names = set(model.presets())
    sources = " ".join(model.get_preset(n).source for n in names)
    for table in ("Table 2", "Table 3", "Table 4", "Table 5a", "Table 5b", "Table 5c"):
        assert table in sources
    for zoo in ("slow_r50_4x16", "slow_r50_8x8", "slowfast_r50_8x8", "slowfast_r101_8x8", "slowfast_r101_8x8_101_101_101"):
        assert zoo in names
    assert model.get_preset("slowfast_r50_8x8").config.lateral_kernel == 7
    assert model.get_preset("slowfast_r101_16x8_charades").config.multilabel


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slowfast_trt", *args], capture_output=True, text=True, timeout=120)


def test_cli_unknown_preset_one_line_no_traceback():
    r = _cli("flops", "slowfast_r50_4x61")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    assert "did you mean" in r.stderr
