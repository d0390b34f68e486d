"""Issue 29 ("Faults 3"), class 3: metadata read from files (checkpoint configs, sidecars, the measurement caches) is
validated by type and size where it is read; a wrong type names the field, and echoed values are cut short."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.measurements import cache_path
from slowfast_trt.data.synth import synth
from slowfast_trt.engines.sidecar import make_sidecar, read_sidecar, write_sidecar
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.zoo import get_config
from tests.helpers import rewrite_config

PRESET = "slowfast_tiny_4x16"
MB = "x" * (4 << 20)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    pytest.importorskip("av")
    out = tmp_path_factory.mktemp("synth")
    synth(out, videos=8, seed=5, frames=72, val_fraction=0.0, workers=1, progress=False)
    return out


def _cli(*args) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def _one_error_line(code: int, output: str) -> str:
    lines = [ln for ln in re.split(r"[\r\n]+", output) if ln.strip() and not ln.startswith(("warning:", "note:")) and "%|" not in ln]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in output, (code, output[:2000])
    assert len(lines[0]) < 600, f"{len(lines[0])} characters"
    return lines[0]


def test_short_cuts_echoed_values():
    from slowfast_trt.common.bounds import MAX_ECHO, short

    assert short("abc") == "'abc'"
    s = short(MB)
    assert len(s) < MAX_ECHO + 40 and s.startswith("'xxx") and "4194304 characters" in s, s


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"arch": MB}, "arch"),
        ({MB: 1}, "unknown"),
        ({"num_frames": "4"}, "num_frames"),
        ({"mean": {"r": 0.4}}, "mean"),
        ({"crop_size": [64]}, "crop_size"),
        ({"extra": [1, 2]}, "extra"),
        ({"extra": {"note": MB}}, "extra"),
        ({"nonlocal_location": "none"}, "nonlocal_location"),
        ({"dropout": "0.5"}, "dropout"),
        ({"lateral_norm": 1}, "lateral_norm"),
    ],
    ids=["huge-string", "huge-key", "str-int", "dict-tuple", "list-int", "list-dict", "huge-extra", "str-nested", "str-float", "int-bool"],
)
def test_checkpoint_config_of_the_wrong_type_or_size_is_one_short_line(data, tmp_path, changes, field):
    """A checkpoint config with a multi-megabyte string, or a field of the wrong type: one short line naming the field."""
    ckpt = tmp_path / "m.safetensors"
    model.save(model.build(PRESET, num_classes=8), ckpt)
    bad = rewrite_config(ckpt, tmp_path / "bad.safetensors", **changes)
    msg = _one_error_line(*_cli("eval", "--ckpt", bad, "--data", data / "train.csv", "--device", "cpu", "--clips", "1", "--crops", "1"))
    assert field in msg and str(bad) in msg, msg


def test_config_from_dict_names_the_field_of_the_wrong_type():
    d = get_config(PRESET).to_dict()
    with pytest.raises(SlowFastError, match=r"num_classes.*int.*str"):
        SlowFastConfig.from_dict({**d, "num_classes": "400"})
    with pytest.raises(SlowFastError, match=r"model config is a list"):
        SlowFastConfig.from_dict([1, 2])  # type: ignore[arg-type]
    assert SlowFastConfig.from_dict(d) == get_config(PRESET)  # a good config still reads
    assert SlowFastConfig.from_dict({**d, "dropout": 0}).dropout == 0  # an int where a float belongs is a number


def _exported(tmp_path: Path) -> Path:
    pytest.importorskip("onnxruntime")
    ckpt = tmp_path / "m.safetensors"
    model.save(model.build(PRESET, num_classes=8), ckpt)
    onnx = tmp_path / "m.onnx"
    code, out = _cli("export", "onnx", ckpt, "--out", onnx, "--no-verify", "--trt-check", "off")
    assert code == 0, out
    return onnx


SIDECAR_FAULTS = [
    ("config", [1, 2]),
    ("inputs", ["slow", "fast"]),
    ("input_names", "slow"),
    ("output", "scores"),
    ("crop_size", "64"),
    ("precision", 32),
    ("batch", [1]),
    ("kind", MB),
]


def test_sidecar_fields_of_the_wrong_type_are_one_line_in_every_reader(data, tmp_path):
    """`eval --engine`, `export int8`, `export triton` and `export info` on sidecars with a field of the wrong type."""
    onnx = _exported(tmp_path)
    good = json.loads((tmp_path / "m.onnx.json").read_text())
    for key, value in SIDECAR_FAULTS:
        (tmp_path / "m.onnx.json").write_text(json.dumps({**good, key: value}))
        for args in (
            ["eval", "--engine", onnx, "--data", data / "train.csv", "--device", "cpu", "--clips", "1", "--crops", "1"],
            ["export", "int8", onnx, "--calib", data / "train.csv", "--clips", "1", "--device", "cpu", "--quiet"],
            ["export", "triton", onnx, "--out", tmp_path / "repo", "--no-validate"],
            ["export", "info", onnx],
        ):
            msg = _one_error_line(*_cli(*args))
            assert key in msg and "sidecar" in msg, (key, args[:2], msg)
    nested = {**good, "inputs": {**good["inputs"], "slow": {"shape": "1x3", "dtype": "float32"}}}
    (tmp_path / "m.onnx.json").write_text(json.dumps(nested))
    msg = _one_error_line(*_cli("export", "info", onnx))
    assert "inputs.slow.shape" in msg, msg
    nested = {**good, "output": {**good["output"], "num_classes": "2"}}
    (tmp_path / "m.onnx.json").write_text(json.dumps(nested))
    msg = _one_error_line(*_cli("export", "info", onnx))
    assert "output.num_classes" in msg, msg


def test_a_good_sidecar_still_reads(tmp_path):
    side = make_sidecar(get_config(PRESET), kind="onnx", precision="fp32", size=64, batch="dynamic", outputs="logits")
    (tmp_path / "a.onnx").write_bytes(b"")
    write_sidecar(tmp_path / "a.onnx", side)
    assert read_sidecar(tmp_path / "a.onnx")["crop_size"] == 64


def test_amp_cache_entries_of_the_wrong_type_are_measured_again():
    """The AMP cache: `--amp auto` on the CPU reads its bf16-vs-fp32 timings from the cache; an entry whose timings are
    not positive numbers is damaged, so it is measured again (it used to end in a TypeError comparing them)."""
    import torch

    from slowfast_trt.model.inputs import random_inputs
    from slowfast_trt.training.amp import choose_policy

    cfg = get_config(PRESET, num_classes=2, crop_size=32, test_crop_size=32)
    net, inputs = model.build(cfg).train(), random_inputs(cfg, size=32, batch=1)
    first = choose_policy("auto", torch.device("cpu"), net, inputs)
    path = cache_path("cpu_amp")
    known = json.loads(path.read_text())
    path.write_text(json.dumps(dict.fromkeys(known, {"fp32": "slow", "bf16": "fast"})))
    again = choose_policy("auto", torch.device("cpu"), net, inputs)
    assert "measured" in again.reason and "measured" in first.reason
    assert all(isinstance(v["fp32"], float) for v in json.loads(path.read_text()).values())
    from slowfast_trt.training.amp import CPU_AMP_FIELDS

    for bad in ({"fp32": [1], "bf16": {}}, {"fp32": 1.0, "bf16": None}, {"fp32": 1.0, "bf16": float("nan")}, {"fp32": True, "bf16": 1}):
        assert not CPU_AMP_FIELDS(bad), bad
    assert CPU_AMP_FIELDS({"fp32": 1.5, "bf16": 1})


def test_gpu_policy_cache_of_the_wrong_type_is_measured_again(tmp_path):
    """The GPU-policy cache: a `setting` that is a list, or timings that are a string, are measured again."""
    from slowfast_trt.engines import gpu_policy

    path = tmp_path / "gp.json"
    measured = []

    def measure():
        measured.append(1)
        return gpu_policy.Decision(gpu_policy.Setting("fp32"), {"fp32": 1.0}, "measured", None)

    for bad in (
        {"setting": [1, 2], "timings_ms": {}, "reason": "r"},
        {"setting": {"precision": ["fp32"]}, "timings_ms": {"a": "b"}, "reason": 1},
        {"setting": {"precision": "fp32", "cuda_graphs": "yes"}, "timings_ms": {}, "reason": "r"},
    ):
        path.write_text(json.dumps({"k": bad}))
        decision, hit = gpu_policy.decide("k", measure, path)
        assert not hit and decision.reason == "measured"
    assert len(measured) == 3


def test_csv_fields_are_echoed_as_a_short_prefix(tmp_path):
    """A multi-megabyte field in a label CSV, a manifest header or a PySlowFast list gives one short line."""
    from slowfast_trt.data.ava import read_ava_csv
    from slowfast_trt.data.layouts import read_pyslowfast_list
    from slowfast_trt.data.manifest import read_manifest

    (tmp_path / "labels.csv").write_text(f"v,{MB},0.1,0.2,0.5,0.9,1,0\n")
    (tmp_path / "bad.csv").write_text(f"path,label,{MB}\nx.webm,0\n")
    (tmp_path / "noheader.csv").write_text(f"{MB},label\nx.webm,0\n")
    (tmp_path / "list.txt").write_text(f"x.webm {MB}\n")
    for read in (
        lambda: read_ava_csv(tmp_path / "labels.csv", "labels"),
        lambda: read_manifest(tmp_path / "bad.csv"),
        lambda: read_manifest(tmp_path / "noheader.csv"),
        lambda: read_pyslowfast_list(tmp_path / "list.txt"),
    ):
        with pytest.raises(SlowFastError) as e:
            read()
        assert "\n" not in str(e.value) and len(str(e.value)) < 600, len(str(e.value))
    for args in (["eval", "--ckpt", tmp_path / "m.safetensors"], ["train", "--preset", PRESET, "--out", tmp_path / "run"]):
        _one_error_line(*_cli(*args, "--data" if args[0] == "eval" else "--train", tmp_path / "noheader.csv"))
