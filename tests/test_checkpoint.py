"""The project checkpoint format: self-describing, lossless, atomic, with training state, and clear on bad files."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import safetensors.torch
import torch

from slowfast_trt import model
from slowfast_trt.common import io as sf_io
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.checkpoint import STATE_PREFIX
from slowfast_trt.model.inputs import random_inputs
from tests.helpers import randomize_

SMALL = dict(num_classes=7)  # a small head keeps the files light; the body is a full R50


def _net(preset: str = "slowfast_r50_4x16", **overrides):
    return randomize_(model.build(preset, **{**SMALL, **overrides})).eval()


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)


def _training_state(net) -> tuple[dict, torch.optim.Optimizer]:
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    net.train()
    x = random_inputs(net.config, size=64)
    net(**x).sum().backward()
    opt.step()
    sched.step()
    net.eval()
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    state = {
        "optimizer": opt.state_dict(),  # int keys, tensors, None, bools, nested lists
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": 3,
        "global_step": 1234,
        "lr": float("inf"),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "history": [{"epoch": 1, "top1": 0.25}],
    }
    return state, opt


def test_save_load_round_trip_needs_no_other_argument(tmp_path):
    net = _net("slowfast_r50_8x8", head_act="softmax", head_pool="reference")
    path = model.save(net, tmp_path / "a.safetensors", extra_metadata={"dataset": "kinetics400"})
    loaded = model.load(path)
    assert loaded.config == net.config and loaded.config.to_dict() == net.config.to_dict()
    assert loaded.config.name == "slowfast_r50_8x8"
    assert not loaded.training and _same_weights(loaded, net)
    x = random_inputs(net.config, size=64)
    with torch.no_grad():
        assert (loaded(**x) - net(**x)).abs().max() < 1e-6  # same weights; bitwise equality may hinge on alignment
    info = model.checkpoint_info(path)
    assert info["format"] == "slowfast-trt" and info["format_version"] == "1"
    assert info["extra"] == {"dataset": "kinetics400"} and not info["has_training_state"]
    assert info["config"] == net.config
    # the file is plain safetensors: anyone can read the weights and the config without this project
    raw = safetensors.torch.load_file(str(path))
    assert raw.keys() == net.state_dict().keys()


def test_slow_only_and_nonlocal_models_round_trip(tmp_path):
    for preset in ("slow_r50_4x16", "fast_r50_4x16"):
        net = _net(preset)
        loaded = model.load(model.save(net, tmp_path / f"{preset}.safetensors"))
        assert loaded.config == net.config and _same_weights(loaded, net)


def test_training_state_round_trip_and_resume(tmp_path):
    net = _net()
    state, opt = _training_state(net)
    path = model.save(net, tmp_path / "step.safetensors", training_state=state)
    loaded, got = model.load(path, with_state=True)
    assert _same_weights(loaded, net)
    assert got["epoch"] == 3 and got["global_step"] == 1234 and got["lr"] == float("inf")
    assert got["history"] == [{"epoch": 1, "top1": 0.25}]
    assert got["scheduler"] == state["scheduler"] and got["scaler"] == state["scaler"]
    assert isinstance(got["rng"]["python"], tuple) and got["rng"]["python"] == random.getstate()
    np_state = got["rng"]["numpy"]
    assert isinstance(np_state, tuple) and isinstance(np_state[1], np.ndarray) and np_state[1].dtype == np.uint32
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(np_state, np.random.get_state()))
    assert torch.equal(got["rng"]["torch"], torch.get_rng_state())
    assert list(got["optimizer"]["state"]) == list(state["optimizer"]["state"])  # int keys survive
    # resuming: the restored optimizer takes the same next step as the original
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt2.load_state_dict(got["optimizer"])
    x = random_inputs(net.config, size=64)
    for n, o in ((net, opt), (loaded, opt2)):
        n.train()
        torch.manual_seed(5)  # the same dropout masks in both runs
        o.zero_grad()
        n(**x).sum().backward()
        o.step()
    assert _same_weights(net, loaded)
    # loading the weights alone ignores the state's tensors
    weights_only = model.load(path)
    assert all(not k.startswith(STATE_PREFIX) for k in weights_only.state_dict())
    assert len(weights_only.state_dict()) == len(net.state_dict())
    _, none = model.load(model.save(net, tmp_path / "plain.safetensors"), with_state=True)
    assert none is None


def test_unstorable_training_state_is_refused_before_writing(tmp_path):
    net = _net()
    path = tmp_path / "c.safetensors"
    with pytest.raises(SlowFastError, match=r"training_state\['optimizer'\]\['hook'\] is a function"):
        model.save(net, path, training_state={"optimizer": {"hook": lambda: 0}})
    assert not path.exists() and not list(tmp_path.iterdir())


class _CrashingFile:
    """Writes half of what it is given, then fails: a crash in the middle of writing the checkpoint."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(28, "No space left on device (simulated)")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def test_crash_mid_write_keeps_previous_checkpoint_and_leaves_no_partial_file(tmp_path, monkeypatch):
    net = _net()
    path = tmp_path / "last.safetensors"
    state, _ = _training_state(net)
    model.save(net, path, training_state=state)
    before = path.read_bytes()
    changed = _net(num_classes=7)
    with torch.no_grad():
        changed.head.projection.bias.add_(1.0)

    real_fdopen = os.fdopen
    monkeypatch.setattr(sf_io.os, "fdopen", lambda fd, mode: _CrashingFile(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="simulated"):
        model.save(changed, path, training_state={**state, "global_step": 9999})
    with pytest.raises(OSError, match="simulated"):
        model.save(changed, tmp_path / "new.safetensors")
    monkeypatch.undo()

    assert path.read_bytes() == before  # the previous checkpoint, weights and state together, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]  # no temp file, no partial new file
    loaded, got = model.load(path, with_state=True)
    assert _same_weights(loaded, net) and got["global_step"] == 1234


def test_crash_before_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    net = _net()
    path = tmp_path / "last.safetensors"
    model.save(net, path)
    before = path.read_bytes()

    def crash(src, dst):
        raise KeyboardInterrupt  # killed after writing and fsync, before the rename

    monkeypatch.setattr(sf_io.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(_net(num_classes=7, dropout=0.1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_bad_files_give_one_line_errors(tmp_path):
    net = _net()
    good = model.save(net, tmp_path / "good.safetensors")
    data = good.read_bytes()

    with pytest.raises(SlowFastError, match="not found") as e:
        model.load(tmp_path / "missing.safetensors")
    _one_line(e)

    text = tmp_path / "notes.safetensors"
    text.write_text("these are not weights\n")
    with pytest.raises(SlowFastError, match="not a readable safetensors checkpoint") as e:
        model.load(text)
    _one_line(e)

    for cut in (len(data) // 2, 100, 5):
        trunc = tmp_path / f"trunc{cut}.safetensors"
        trunc.write_bytes(data[:cut])
        with pytest.raises(SlowFastError, match="truncated") as e:
            model.load(trunc)
        _one_line(e)

    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(plain))
    with pytest.raises(SlowFastError, match="slowfast convert") as e:
        model.load(plain)
    _one_line(e)


def _rewrite(src, dst, drop=(), add=None, meta_update=None):
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys() if k not in drop}
    tensors.update(add or {})
    meta.update(meta_update or {})
    safetensors.torch.save_file(tensors, str(dst), metadata=meta)
    return dst


def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path):
    net = _net()
    good = model.save(net, tmp_path / "good.safetensors")
    with pytest.raises(SlowFastError, match=r"1 missing key\(s\): res3\.slow\.blocks\.1\.conv_b\.weight") as e:
        model.load(_rewrite(good, tmp_path / "m.safetensors", drop=["res3.slow.blocks.1.conv_b.weight"]))
    _one_line(e)
    with pytest.raises(SlowFastError, match=r"1 unexpected key\(s\): head\.extra\.weight") as e:
        model.load(_rewrite(good, tmp_path / "u.safetensors", add={"head.extra.weight": torch.zeros(2)}))
    _one_line(e)
    with pytest.raises(SlowFastError, match=r"head\.projection\.weight \(file \[3, 2304\], model \[7, 2304\]\)") as e:
        model.load(_rewrite(good, tmp_path / "s.safetensors", add={"head.projection.weight": torch.zeros(3, 2304)}))
    _one_line(e)
    bad_cfg = {**net.config.to_dict(), "gamma": 1}
    with pytest.raises(SlowFastError, match="unknown fields") as e:
        model.load(_rewrite(good, tmp_path / "c.safetensors", meta_update={"config": json.dumps(bad_cfg)}))
    _one_line(e)
    with pytest.raises(SlowFastError, match="format version 99") as e:
        model.load(_rewrite(good, tmp_path / "v.safetensors", meta_update={"format_version": "99"}))
    _one_line(e)


def test_save_needs_a_slowfast_network(tmp_path):
    with pytest.raises(SlowFastError, match="needs a SlowFast network"):
        model.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())
