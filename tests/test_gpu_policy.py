"""GPU settings by measurement (`engines.gpu_policy`): the decision, its cache and the regression line, on the CPU with injected timings."""

from __future__ import annotations

import json

import pytest
import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines import gpu_policy
from slowfast_trt.engines.gpu_policy import Decision, Setting, candidates, choose, decide, regression_verdict


def test_candidates_cover_formats_autotuning_precisions_and_graphs():
    fp16 = candidates("fp16", "infer")
    assert len(fp16) == 16 and len(set(fp16)) == 16  # autocast/weights x cl3d/ncdhw x benchmark x graphs
    assert {s.precision for s in fp16} == {"fp16"} and any(s.half_weights and s.cuda_graphs for s in fp16)
    train = candidates("auto", "train")
    assert len(train) == 12 and not any(s.half_weights or s.cuda_graphs for s in train)  # autocast only, no graphs in training
    assert {s.precision for s in train} == {"fp32", "fp16", "bf16"}
    assert all(not s.half_weights for s in candidates("fp32", "infer"))
    with pytest.raises(SlowFastError, match="mode must be"):
        candidates("fp16", "serve")


def test_choose_takes_the_fastest_and_records_every_alternative():
    a = Setting("fp16", channels_last=True)
    b = Setting("fp16", channels_last=False)
    c = Setting("fp16", half_weights=True, cudnn_benchmark=True, cuda_graphs=True)
    d = choose({a: 0.010, b: 0.030, c: 0.005, Setting("bf16"): None})  # a failed candidate is left out
    assert d.setting == c and list(d.timings_ms) == [c.name, a.name, b.name]
    assert d.timings_ms[a.name] == pytest.approx(10.0) and "fastest of 3 measured" in d.reason


def test_a_simpler_setting_within_the_margin_wins():
    plain = Setting("fp16")
    graphs = Setting("fp16", cudnn_benchmark=True, cuda_graphs=True)
    d = choose({plain: 0.0101, graphs: 0.0100})  # 1% is noise, not a reason for CUDA graphs
    assert d.setting == plain and "simpler" in d.reason
    assert choose({plain: 0.0101, graphs: 0.0080}).setting == graphs


def test_choose_without_any_measurement_is_an_error():
    with pytest.raises(SlowFastError, match="no GPU setting could be measured"):
        choose({Setting("fp16"): None})


def test_regression_line_names_versions_and_the_ratio():
    facts = "torch 2.11.0+cu130, cuDNN 91400, CUDA 13.0, NVIDIA H200"
    line = regression_verdict(0.040, 0.010, facts, "(256, 256, 3, 3, 3) on (8, 256, 8, 56, 56)")
    assert line is not None and "\n" not in line and "4.00x" in line and facts in line and "pytorch#166122" in line
    assert regression_verdict(0.004, 0.010, facts, "x") is None  # fp16 faster: nothing to say


def test_decision_survives_the_cache_and_is_measured_once(tmp_path):
    path = tmp_path / "gpu_policy.json"
    calls = []

    def measure():
        calls.append(1)
        return choose({Setting("fp16"): 0.02, Setting("fp32"): 0.01}, regression="warning: slow fp16")

    key = gpu_policy.cache_key("slowfast_r50_4x16", "infer", "auto", 64, ((64, 3, 4, 256, 256), (64, 3, 32, 256, 256)))
    assert "slowfast_r50_4x16" in key and "batch 64" in key and "cuDNN" in key and "torch " in key
    d1, cached1 = decide(key, measure, path)
    d2, cached2 = decide(key, measure, path)
    assert (cached1, cached2) == (False, True) and len(calls) == 1
    assert d2 == d1 and d2.setting == Setting("fp32") and d2.regression == "warning: slow fp16"
    other = gpu_policy.cache_key("slowfast_r50_4x16", "infer", "auto", 8, ((8, 3, 4, 256, 256),))
    decide(other, measure, path)
    assert len(calls) == 2 and set(json.loads(path.read_text())) == {key, other}
    path.write_text("{not json")  # a damaged cache is measured again, not an error
    assert decide(key, measure, path)[1] is False and len(calls) == 3


def test_decision_round_trips_through_json():
    d = choose({Setting("bf16", half_weights=True, cuda_graphs=True): 0.001, Setting("fp32"): 0.002})
    back = Decision.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back == d and back.to_dict()["choice"] == "bf16-weights/cl3d/cuda-graphs"


def test_measuring_code_runs_a_real_net_on_the_cpu():
    """The timing loop itself (deep copy, layout, autocast off, inference mode) on a small net with a wall clock."""
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, slow):
            return self.net(slow)

    settings = [Setting("fp32", channels_last=True), Setting("fp32", channels_last=False)]
    x = [torch.randn(2, 3, 4, 16, 16)]
    timings = gpu_policy.measure_inference(Named(), ["slow"], x, settings, timer=gpu_policy.wall_timer)
    assert set(timings) == set(settings) and all(t is not None and t > 0 for t in timings.values())
    d = choose(timings)
    assert d.setting in settings
    out = gpu_policy.forward_fn(gpu_policy.apply_setting(Named(), d.setting), d.setting, ["slow"])(*gpu_policy.prepare_inputs(x, d.setting))
    assert torch.allclose(out, Named()(x[0]), atol=1e-5)
    assert torch.backends.cudnn.benchmark is False  # measuring leaves the caller's autotuning setting (off here)


def test_conv_ceiling_times_the_presets_own_convolutions_on_the_cpu(tmp_path):
    """The micro-benchmark's shapes are the network's (one per conv3d call) and its FLOPs stay within the model's count."""
    from slowfast_trt.benchmarks.conv_ceiling import conv_ceiling, conv_shapes, to_markdown, write_results
    from slowfast_trt.model.build import build
    from slowfast_trt.model.flops import count

    shapes = conv_shapes("slowfast_tiny_4x16", 32, 2)
    net = build("slowfast_tiny_4x16")
    assert sum(shapes.values()) == sum(isinstance(m, torch.nn.Conv3d) for m in net.modules())
    r = conv_ceiling("slowfast_tiny_4x16", size=32, batch=2, precision="fp32", device="cpu", warmup=0, iters=1, progress=lambda _s: None)
    assert r["ceiling_clips_per_s"] > 0 and sum(row["calls"] for row in r["rows"]) == sum(shapes.values())
    macs = count(net.config, size=32)["gflops"]  # the model's count is in multiply-adds (PySlowFast's convention); 2 FLOPs each
    assert 0.9 * macs <= r["conv_gflops_per_clip"] / 2 <= macs * 1.001  # conv3d is nearly all of the network's work
    assert "clips/s" in to_markdown(r) and write_results(r, tmp_path)["json"].is_file()
    with pytest.raises(SlowFastError, match="GPU measurement"):
        conv_ceiling("slowfast_tiny_4x16", size=32, batch=1, precision="fp16", device="cpu")


class _Probe(torch.nn.Module):
    """Records cuDNN's autotuning flag at each forward."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.seen: list[bool] = []

    def forward(self, slow):
        self.seen.append(torch.backends.cudnn.benchmark)
        return slow.flatten(1).mean(1, keepdim=True) * self.w


def test_autotuning_applies_inside_the_runners_calls_only(monkeypatch):
    """A tuned runner's cudnn.benchmark is set for its own calls; building, measuring and running one leave the
    process-wide flag as the caller had it, so the engines `bench model` times next are not autotuned by accident."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    x = [torch.randn(2, 3, 2, 4, 4)]
    tuned = Setting("fp32", cudnn_benchmark=True)
    probe = gpu_policy.apply_setting(_Probe(), tuned)
    assert torch.backends.cudnn.benchmark is False
    gpu_policy.forward_fn(probe, tuned, ["slow"])(*x)
    assert probe.seen == [True] and torch.backends.cudnn.benchmark is False
    torch.backends.cudnn.benchmark = True  # the caller's own choice survives measuring (inference and training)
    gpu_policy.measure_inference(_Probe(), ["slow"], x, [Setting("fp32"), tuned], timer=gpu_policy.wall_timer)
    assert torch.backends.cudnn.benchmark is True

    def step(s):
        torch.backends.cudnn.benchmark = s.cudnn_benchmark  # as the trainer's step does
        return lambda: None

    gpu_policy.measure_training(step, [Setting("fp32", cudnn_benchmark=False)], timer=gpu_policy.wall_timer)
    assert torch.backends.cudnn.benchmark is True


def _backends(conv=None, cudnn_all="none", generic="none", allow_tf32=True):
    """A stand-in for torch.backends: the 2.9+ fp32_precision switches (conv=None: an older torch without them)."""
    from types import SimpleNamespace

    cudnn = SimpleNamespace(allow_tf32=allow_tf32, fp32_precision=cudnn_all)
    if conv is not None:
        cudnn.conv = SimpleNamespace(fp32_precision=conv)
    return SimpleNamespace(cudnn=cudnn, fp32_precision=generic)


@pytest.mark.parametrize(
    "backends, tf32",
    [
        (_backends(conv="tf32", allow_tf32=False), True),
        (_backends(conv="ieee", allow_tf32=True), False),  # set through the new API: the old getter would say otherwise
        (_backends(conv="none", cudnn_all="ieee"), False),  # 'none' inherits from cuDNN's, then torch's own setting
        (_backends(conv="none", cudnn_all="none", generic="tf32", allow_tf32=False), True),
        (_backends(conv=None, allow_tf32=True), True),  # torch < 2.9: allow_tf32 is all there is
        (_backends(conv=None, allow_tf32=False), False),
    ],
)
def test_tf32_is_read_from_the_fp32_precision_api_where_it_exists(backends, tf32, monkeypatch):
    from slowfast_trt.benchmarks.peak import math_mode

    monkeypatch.setattr(torch, "backends", backends)
    assert gpu_policy.conv_tf32() is tf32
    assert math_mode("fp32") == ("tf32" if tf32 else "fp32") and math_mode("fp16") == "fp16"


def test_tf32_is_switched_on_through_the_new_api_where_it_exists(monkeypatch):
    new = _backends(conv="ieee", allow_tf32=False)
    monkeypatch.setattr(torch, "backends", new)
    gpu_policy.enable_tf32()
    assert new.cudnn.conv.fp32_precision == "tf32" and new.cudnn.allow_tf32 is False  # the deprecated switch is not touched
    old = _backends(conv=None, allow_tf32=False)
    monkeypatch.setattr(torch, "backends", old)
    gpu_policy.enable_tf32()
    assert old.cudnn.allow_tf32 is True
