"""`slowfast doctor`: the record's form, one line with a fix for every missing part, the decoder breakdown of a manifest,
the TensorRT and DALI rules, and the GPU lines absent with their reason where there is no GPU (all on the CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys

import pytest
import torch
from click.testing import CliRunner

from slowfast_trt.benchmarks import doctor
from slowfast_trt.benchmarks.doctor import STATUSES, Check, check_dali, check_nvdec, check_triton, run_doctor, to_text
from slowfast_trt.cli.main import main
from slowfast_trt.common.nvidia import NvidiaFacts
from slowfast_trt.dali_pipelines import nvdec
from slowfast_trt.dali_pipelines.decoder_paths import breakdown
from slowfast_trt.engines.trt_targets import builds_for, parse_version, support_range
from slowfast_trt.serving.env import STAMP
from tests.helpers import write_indexed_video

PARTS = ["Python", "torch", "GPU", "NVDEC", "DALI", "PyAV", "ONNX Runtime", "TensorRT", "Triton"]
NO_GPU = NvidiaFacts([], None, None, "nvidia-smi not found")
ONE_GPU = NvidiaFacts([{"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0", "memory_gib": 139.8}], "570.86", (12, 8), "")


def _cli(*args: str):
    return CliRunner().invoke(main, ["doctor", *args])


@pytest.fixture
def no_triton(tmp_path, monkeypatch):
    """No Triton venv, wherever the suite runs (a machine may have one)."""
    monkeypatch.setenv("SLOWFAST_TRITON_VENV", str(tmp_path / "no-triton-venv"))


def test_json_record_has_every_part_and_a_fix_for_each_that_is_not_ok(no_triton):
    r = _cli("--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    assert rec["schema"] == "slowfast-doctor/1" and rec["manifest"] is None and rec["environment"]["cpu_count"]
    assert [c["part"] for c in rec["checks"]] == PARTS
    for c in rec["checks"]:
        assert set(c) == {"part", "status", "summary", "fix", "facts", "details", "line"}
        assert c["status"] in STATUSES and "\n" not in c["line"] and c["line"].startswith(c["part"] + ": ")
        assert (c["status"] == "ok") == (c["fix"] is None), c
        if c["fix"]:
            assert c["line"].endswith("; fix: " + c["fix"])
    assert rec["missing"] == [c["line"] for c in rec["checks"] if c["status"] != "ok"]
    torch_facts = next(c for c in rec["checks"] if c["part"] == "torch")["facts"]
    assert torch_facts["version"] == torch.__version__ and {"cuda.matmul.allow_tf32", "cudnn.allow_tf32"} <= set(torch_facts["tf32"])
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # the new API, where torch has it, is reported beside the old flags
        assert "cuda.matmul.fp32_precision" in torch_facts["tf32"]


def test_a_part_that_is_not_ok_cannot_be_made_without_a_fix():
    with pytest.raises(ValueError, match="needs a fix"):
        Check("DALI", "missing", "not installed")
    with pytest.raises(ValueError, match="unknown status"):
        Check("DALI", "broken", "?", fix="x")


def test_every_missing_part_gets_one_line_naming_its_fix(no_triton, monkeypatch, tmp_path):
    for name in ("nvidia.dali", "nvidia.dali.backend", "av", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError, as if not installed
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real_find_spec(name, *a))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nv.webm,0\n")
    rec = run_doctor(manifest)
    status = {c["part"]: c["status"] for c in rec["checks"]}
    assert {p for p, s in status.items() if s == "missing"} == {"DALI", "PyAV", "ONNX Runtime", "TensorRT", "Triton"}
    fixes = {
        "DALI": "pip install nvidia-dali-cuda120",
        "PyAV": "pip install av",
        "ONNX Runtime": "pip install onnxruntime",
        "TensorRT": "pip install -e .[tensorrt] on a GPU machine",
        "Triton": "SLOWFAST_TRITON_VENV",
    }
    text = to_text(rec).splitlines()
    for part, fix in fixes.items():
        (line,) = [ln for ln in text if ln.startswith(part + ": ")]  # exactly one line per part
        assert "not installed" in line or "no Triton venv" in line
        assert "; fix: " in line and fix in line.split("; fix: ", 1)[1], line
        assert line in rec["missing"]
    assert rec["manifest"] == {"manifest": str(manifest), "error": "the breakdown probes each file with PyAV; pip install av"}


def test_without_a_gpu_the_gpu_lines_say_why(no_triton):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the GPU proof script runs `slowfast doctor --json` there")
    rec = json.loads(_cli("--json").output)
    c = {x["part"]: x for x in rec["checks"]}
    assert (
        c["GPU"]["status"] == "unavailable" and c["GPU"]["summary"].startswith("none visible to torch") and c["GPU"]["facts"]["gpus"] == []
    )
    assert c["NVDEC"]["status"] == "unavailable" and "driver cannot be asked" in c["NVDEC"]["summary"]
    assert {v["source"] for v in c["NVDEC"]["facts"]["codecs"].values()} == {"table"}  # the table, and it says so
    assert all(d.endswith("(table)") for d in c["NVDEC"]["details"])
    assert "no GPU" in c["TensorRT"]["summary"] and c["TensorRT"]["status"] in ("missing", "unavailable")


def test_nvdec_limits_come_from_the_driver_where_it_answers():
    asked = []

    def driver(codec, chroma, bits):
        asked.append((codec, chroma, bits))
        return {"vp9": (True, 64, 64, 4096, 2304), "av1": (False, 0, 0, 0, 0)}.get(codec)

    c = check_nvdec(ONE_GPU, ask_driver=driver)
    assert c.status == "ok" and ("vp9", "420", 8) in asked
    codecs = c.facts["codecs"]
    assert codecs["vp9"] == {"source": "driver", "limits": codecs["vp9"]["limits"]} and codecs["vp9"]["limits"]["min_width"] == 64
    assert codecs["av1"] == {"source": "driver", "limits": None} and "av1: not decoded (driver)" in c.details
    assert codecs["h264"]["source"] == "table" and codecs["h264"]["limits"]["min_width"] == nvdec.NVDEC_TABLE["h264"].min_width
    silent = check_nvdec(ONE_GPU, ask_driver=lambda *_: None)
    assert silent.status == "warning" and "libnvcuvid.so.1" in silent.fix


def test_tensorrt_support_ranges_by_compute_capability():
    assert parse_version("10.13.2.6") == (10, 13) and parse_version("11") == (11, 0)
    assert support_range((8, 6)) is None and builds_for((8, 6), (8, 0))[0] is False
    assert builds_for((10, 4), (7, 0))[0] is True  # Volta until 10.4
    assert builds_for((10, 13), (7, 0))[0] is False  # removed in 10.5
    assert builds_for((10, 13), (9, 0))[0] is True and builds_for((11, 4), (9, 0))[0] is True
    assert builds_for((10, 7), (12, 0))[0] is None  # Blackwell is newer than 10.7's range: the build decides
    assert builds_for((10, 8), (12, 0))[0] is True and builds_for((11, 0), (7, 5))[0] is True


def test_dali_build_against_the_drivers_cuda():
    pytest.importorskip("nvidia.dali")
    newer = NvidiaFacts(ONE_GPU.gpus, "570.86", (13, 0), "")
    older = NvidiaFacts(ONE_GPU.gpus, "470.57", (11, 4), "")
    build = check_dali(newer).facts["cuda_build"]
    assert check_dali(NO_GPU).status == "ok" and "CPU pipelines only" in check_dali(NO_GPU).summary
    assert check_dali(newer).status == "ok"  # a newer driver runs an older CUDA build
    if build is not None and build > 11:
        bad = check_dali(older)
        assert bad.status == "warning" and f"CUDA {build}" in bad.summary and "update the NVIDIA driver" in bad.fix


def _fake_triton_venv(root, help_text: str, exit_code: int = 0):
    """A venv as serving.env leaves it: bin/python, the stamp, PyTriton's tritonserver (a script here) and the stub."""
    site = root / "site"
    server = site / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    stub = site / "pytriton" / "tritonserver" / "python_backend_stubs" / "3.11" / "triton_python_backend_stub"
    for p in (root / "bin" / "python", server, stub):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
    server.write_text(f"#!/bin/sh\necho '{help_text}'\nexit {exit_code}\n")
    server.chmod(server.stat().st_mode | stat.S_IXUSR)
    (root / STAMP).write_text(json.dumps({"libdir": str(root), "purelib": str(site), "version": "3.11"}))


def test_triton_found_without_creating_anything_and_run_with_help(tmp_path, monkeypatch):
    venv = tmp_path / "tv"
    monkeypatch.setenv("SLOWFAST_TRITON_VENV", str(venv))
    missing = check_triton()
    assert missing.status == "missing" and "no Triton venv at" in missing.summary and not venv.exists()
    _fake_triton_venv(venv, "Usage: tritonserver [options]  --model-repository <string>")
    ok = check_triton()
    assert ok.status == "ok" and "tritonserver --help runs" in ok.summary and ok.facts["python_backend_stub"]
    _fake_triton_venv(venv, "tritonserver: error while loading shared libraries: libdcgm.so.4", exit_code=127)
    broken = check_triton()
    assert broken.status == "warning" and "libdcgm" in broken.summary and str(venv) in broken.fix


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """VP9 and H.264 files on both sides of NVDEC's minimums, plus a file that is not a video."""
    pytest.importorskip("av")
    d = tmp_path_factory.mktemp("doctor")
    for name, w, h, codec in (
        ("small.webm", 64, 64, "libvpx-vp9"),  # below VP9's 128x128: DALI's CPU decoder inside a GPU graph
        ("big.webm", 160, 128, "libvpx-vp9"),
        ("big.mp4", 160, 128, "libx264"),  # DALI's CPU decoder cannot read H.264
        ("tiny.mp4", 32, 32, "libx264"),  # below H.264's 48x16 and not a CPU-decoder codec: refused on a GPU
    ):
        write_indexed_video(d / name, 8, w, h, codec=codec)
    (d / "notes.mp4").write_text("not a video at all, just some text\n")
    names = ["small.webm", "big.webm", "big.mp4", "tiny.mp4", "notes.mp4", "big.webm"]  # a repeated file counts once
    (d / "m.csv").write_text("path,label\n" + "".join(f"{n},0\n" for n in names))
    return d / "m.csv"


def test_manifest_breakdown_counts_each_decoder_path_with_the_loaders_rules(mixed):
    b = breakdown(mixed, limits=lambda codec, chroma, bits: nvdec.limits_for(codec, chroma, bits, ask_driver=lambda *_: None))
    assert b["files"] == 5
    p = b["paths"]
    text = "a text file, not a video (starts with 'not a video at all, just some text\\n')"
    assert p["dali_cpu"] == {"takes": 2, "refuses": {"codec h264 (DALI's CPU decoder reads vp8/vp9/mjpeg)": 2, text: 1}}
    assert p["dali_gpu"] == {"nvdec": 2, "cpu_decoder": {"VP9 below 128x128": 1}, "refuses": {"H264 below 48x16": 1, text: 1}}
    assert p["pyav"] == {"takes": 4, "refuses": {text: 1}}
    rows = {os.path.basename(r["path"]): r for r in b["rows"]}
    assert rows["small.webm"]["gpu"] == "cpu" and rows["big.mp4"]["gpu"] == "nvdec" and rows["tiny.mp4"]["gpu"] == "refused"
    assert (rows["big.webm"]["codec"], rows["big.webm"]["width"], rows["big.webm"]["height"]) == ("vp9", 160, 128)


def test_doctor_with_a_manifest_prints_one_line_per_decoder_path(mixed, no_triton):
    r = _cli(str(mixed))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    start = lines.index(f"manifest {mixed}: 5 file(s)")
    cpu, gpu, pyav = lines[start + 1 : start + 4]
    assert cpu.startswith("  DALI on the CPU (--device cpu): takes 2 of 5, refuses 2 codec h264")
    assert gpu.startswith("  DALI on a GPU (NVDEC's limits: ") and "NVDEC takes" in gpu
    assert pyav.startswith("  PyAV (the reference loader): takes 4 of 5, refuses 1 a text file")


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    r = _cli(str(tmp_path / "nope.csv"))
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        f"error: manifest not found: {tmp_path / 'nope.csv'}; pass a manifest CSV (`slowfast data synth` and `data prepare` write one)"
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("no,header,here\n")
    r = _cli(str(bad))
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: ")


def test_out_writes_the_json_and_the_text(tmp_path, no_triton, monkeypatch):
    fake = {
        "schema": doctor.SCHEMA,
        "created": "now",
        "environment": {"device": "cpu: test"},
        "checks": [],
        "missing": [],
        "manifest": None,
    }
    monkeypatch.setattr("slowfast_trt.cli.doctor.run_doctor", lambda manifest: fake)
    r = _cli("--out", str(tmp_path / "d"))
    assert r.exit_code == 0 and json.loads((tmp_path / "d" / "doctor.json").read_text()) == fake
    assert (tmp_path / "d" / "doctor.txt").read_text() == to_text(fake) == r.output.split("wrote ")[0]
