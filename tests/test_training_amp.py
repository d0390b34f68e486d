"""The mixed-precision policy: CUDA fp16 + scaler, CPU decided by a cached measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.inputs import random_inputs
from slowfast_trt.training import amp


def test_cuda_policies_without_running_cuda():
    cuda = torch.device("cuda")
    p = amp.choose_policy("auto", cuda)
    assert p.dtype == torch.float16 and p.use_scaler and p.name == "fp16"
    assert amp.choose_policy("bf16", cuda).use_scaler is False
    assert amp.choose_policy("fp32", cuda).dtype is None


def test_cpu_explicit_choices():
    cpu = torch.device("cpu")
    assert amp.choose_policy("fp32", cpu).dtype is None
    assert amp.choose_policy("bf16", cpu).dtype == torch.bfloat16
    with pytest.raises(SlowFastError, match="float16 autocast is not supported"):
        amp.choose_policy("fp16", cpu)
    with pytest.raises(SlowFastError, match="--amp must be"):
        amp.choose_policy("int8", cpu)


@pytest.mark.parametrize(
    "times, expect",
    [({"fp32": 1.0, "bf16": 38.0}, None), ({"fp32": 1.0, "bf16": 0.5}, torch.bfloat16), ({"fp32": 1.0, "bf16": 0.95}, None)],
)
def test_cpu_auto_follows_the_measurement_and_caches_it(tmp_path, monkeypatch, times, expect):
    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(amp, "measure_cpu_bf16", lambda net, x: calls.append(1) or times)
    net = model.build("fast_r50_4x16", num_classes=2)
    x = random_inputs(net.config, 32, 1)
    p = amp.choose_policy("auto", torch.device("cpu"), net, x)
    assert p.dtype == expect and "measured" in p.reason
    again = amp.choose_policy("auto", torch.device("cpu"), net, x)
    assert again.dtype == expect and len(calls) == 1  # cached: measured once per machine
    assert json.loads((tmp_path / "cpu_amp.json").read_text())
    other = model.build("slow_r50_4x16", num_classes=2)  # another workload is measured, not taken from the first
    amp.choose_policy("auto", torch.device("cpu"), other, random_inputs(other.config, 32, 1))
    assert len(calls) == 2


def test_measurements_live_in_their_own_folder_when_asked(tmp_path, monkeypatch):
    """$SLOWFAST_CACHE_DIR moves only the measurements (the suite gives each test an empty one); else the XDG cache."""
    from slowfast_trt.common.measurements import cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path / "own"))
    assert cache_path("cpu_amp") == tmp_path / "own" / "cpu_amp.json"
    monkeypatch.delenv("SLOWFAST_CACHE_DIR")
    assert cache_path("cpu_amp") == tmp_path / "xdg" / "slowfast-trt" / "cpu_amp.json"


def test_suite_starts_each_test_with_an_empty_measurement_cache():
    """No CPU bf16 or GPU policy choice is read from this machine's earlier runs (tests/conftest.py)."""
    from slowfast_trt.common.measurements import cache_path

    folder = cache_path("cpu_amp").parent
    assert folder != Path.home() / ".cache" / "slowfast-trt" and not any(folder.iterdir())


def test_real_measurement_returns_both_timings():
    net = model.build("fast_r50_4x16", num_classes=2)
    t = amp.measure_cpu_bf16(net, random_inputs(net.config, 32, 1), repeats=1)
    assert set(t) == {"fp32", "bf16"} and all(v > 0 for v in t.values())


@pytest.mark.gpu
def test_cuda_training_uses_fp16_convolutions_with_an_active_loss_scale(tmp_path):
    """The trainer on CUDA with --amp fp16 (--amp auto is measured: test_gpu_paths): float16 convolutions, a loss scale > 1, finite weights."""
    from slowfast_trt.data.manifest import read_manifest, to_videos
    from slowfast_trt.data.synth import synth
    from slowfast_trt.training.run import resolve_config
    from slowfast_trt.training.task import Classification
    from slowfast_trt.training.trainer import Trainer, TrainOptions

    synth(tmp_path / "data", videos=16, seed=1, frames=72, workers=2, progress=False)
    m = read_manifest(tmp_path / "data" / "train.csv")
    cfg = resolve_config("slowfast_tiny_4x16", m, {})
    trainer = Trainer(
        cfg,
        TrainOptions(out_dir=str(tmp_path / "run"), epochs=1, batch_size=4, amp="fp16", device="cuda", progress=False),
        Classification(to_videos(m)),
    )
    assert trainer.amp.dtype == torch.float16 and trainer.amp.use_scaler
    dtypes = set()
    hooks = [
        mod.register_forward_hook(lambda mod, inp, out: dtypes.add(out.dtype))
        for mod in trainer.module.modules()
        if isinstance(mod, torch.nn.Conv3d)
    ]
    result = trainer.run()
    for h in hooks:
        h.remove()
    assert dtypes == {torch.float16}, f"conv outputs were {dtypes}"
    assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() > 1
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result["history"])
