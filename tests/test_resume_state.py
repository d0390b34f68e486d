"""What --resume restores besides the weights, on the CPU: the optimizer state in its parameters' layout and the
precision `--amp auto` chose when the run started (the CUDA side of both runs in tests/test_gpu_paths.py)."""

from __future__ import annotations

import pytest
import torch

from slowfast_trt.data.manifest import read_manifest, to_videos
from slowfast_trt.data.synth import synth
from slowfast_trt.training import amp
from slowfast_trt.training.run import resolve_config
from slowfast_trt.training.run_state import match_param_layout
from slowfast_trt.training.task import Classification
from slowfast_trt.training.trainer import Trainer, TrainOptions

PRESET = "slowfast_tiny_4x16"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume_data")
    synth(out, videos=8, seed=7, frames=72, val_fraction=0.0, workers=2, progress=False)
    return out


def _trainer(data, out, resume=False, **kw) -> Trainer:
    m = read_manifest(data / "train.csv")
    opts = TrainOptions(out_dir=str(out), epochs=2, batch_size=4, device="cpu", threads=1, progress=False, **kw)
    return Trainer(resolve_config(PRESET, m, {}), opts, Classification(to_videos(m)), resume=resume)


def test_resume_gives_each_momentum_buffer_its_parameters_strides(data, tmp_path):
    """CUDA's fused SGD requires params, grads and momentum buffers with equal strides; checkpoints store the
    buffers contiguous while the trainer's parameters are channels_last_3d."""
    first = _trainer(data, tmp_path / "run", amp="fp32", max_steps=1)
    first.run()
    resumed = _trainer(data, tmp_path / "run", resume=True, amp="fp32", max_steps=2)
    checked = 0
    for group in resumed.optimizer.param_groups:
        for p in group["params"]:
            buf = resumed.optimizer.state[p]["momentum_buffer"]
            assert buf.stride() == p.stride(), (tuple(p.shape), buf.stride(), p.stride())
            checked += p.dim() == 5 and p.shape[2] > 1  # a 3-D kernel: channels_last_3d strides differ from contiguous ones
    assert checked > 0
    resumed.run()  # and the resumed run steps on


def test_match_param_layout_copies_contiguous_state_into_the_parameters_layout():
    conv = torch.nn.Conv3d(4, 8, 3).to(memory_format=torch.channels_last_3d)
    opt = torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    state = {"state": {0: {"momentum_buffer": torch.arange(conv.weight.numel(), dtype=torch.float32).view_as(conv.weight)}}}
    state["state"][1] = {"momentum_buffer": torch.ones(8)}
    state["param_groups"] = opt.state_dict()["param_groups"]
    opt.load_state_dict(state)  # as a checkpoint restores it: contiguous buffers
    assert opt.state[conv.weight]["momentum_buffer"].stride() != conv.weight.stride()
    assert match_param_layout(opt) == 1  # the bias (1-D) already matches
    buf = opt.state[conv.weight]["momentum_buffer"]
    assert buf.stride() == conv.weight.stride() and torch.equal(buf, state["state"][0]["momentum_buffer"])


def test_resume_keeps_the_precision_amp_auto_chose_instead_of_measuring_again(data, tmp_path, monkeypatch):
    """Resumed elsewhere (another cache, a measurement that now favours bf16), an --amp auto run keeps its fp32."""
    calls = []

    def measured(favour):
        def measure(net, inputs, repeats=2):
            calls.append(favour)
            return {"fp32": 1.0, "bf16": 0.1} if favour == "bf16" else {"fp32": 0.1, "bf16": 1.0}

        return measure

    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path / "cache-a"))
    monkeypatch.setattr(amp, "measure_cpu_bf16", measured("fp32"))
    first = _trainer(data, tmp_path / "run", amp="auto", max_steps=1)
    assert first.amp.name == "fp32" and calls == ["fp32"]
    first.run()

    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path / "cache-b"))  # another machine: nothing cached
    monkeypatch.setattr(amp, "measure_cpu_bf16", measured("bf16"))
    resumed = _trainer(data, tmp_path / "run", resume=True, amp="auto", max_steps=2)
    assert resumed.amp.name == "fp32" and "kept from the interrupted run" in resumed.amp.reason
    assert calls == ["fp32"]  # not measured again
    fresh = _trainer(data, tmp_path / "other", amp="auto", max_steps=1)
    assert fresh.amp.name == "bf16" and calls == ["fp32", "bf16"]  # a new run does measure
