"""`slowfast bench model|e2e|accuracy`, `slowfast report` and the demo's stage bookkeeping, on the tiny preset.

A handful of small synthetic videos and an untrained tiny SlowFast keep this fast; the numbers are not
checked (they are measurements), their form is: the same rows and keys on every run, raw samples present,
PNG plots that open, and one-line errors for bad input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("nvidia.dali")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from slowfast_trt.cli.main import main  # noqa: E402
from slowfast_trt.common.errors import SlowFastError  # noqa: E402

PRESET = "slowfast_tiny_4x16"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from slowfast_trt.data.synth import synth

    out = tmp_path_factory.mktemp("bench") / "synth"
    synth(out, videos=8, seed=3, frames=80, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from slowfast_trt import model
    from slowfast_trt.export.onnx import export_onnx
    from slowfast_trt.model.zoo import get_config
    from tests.helpers import randomize_

    d = tmp_path_factory.mktemp("artifacts")
    net = randomize_(model.build(get_config(PRESET, num_classes=8)))
    ckpt = model.save(net, d / "sf.safetensors")
    onnx = export_onnx(ckpt, d / "sf.onnx", verify=False).path
    return {"ckpt": Path(ckpt), "onnx": Path(onnx), "dir": d}


def _run(args: list[str], ok: bool = True):
    r = CliRunner().invoke(main, args)
    if ok:
        assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def _shape(result: dict) -> tuple:
    """The form of a result: its keys, and per row its identity and keys (values vary run to run)."""
    ident = ("artifact", "engine", "batch", "pipeline", "setting")
    rows = [(tuple(r.get(k) for k in ident), tuple(sorted(r))) for r in result["rows"]]
    return tuple(sorted(result)), tuple(sorted(result["settings"])), tuple(rows)


def test_bench_model_rows_samples_and_stable_schema(artifacts, tmp_path):
    args = [
        "bench",
        "model",
        str(artifacts["ckpt"]),
        str(artifacts["onnx"]),
        "--batch-size",
        "1,2",
        "--warmup",
        "1",
        "--iters",
        "2",
        "--device",
        "cpu",
    ]
    results = []
    for name in ("a", "b"):
        _run([*args, "--out", str(tmp_path / name)])
        results.append(json.loads((tmp_path / name / "result.json").read_text()))
        assert (tmp_path / name / "model.md").read_text().count("\n|") >= 5
    a, b = results
    assert _shape(a) == _shape(b)
    assert a["benchmark"] == "model" and a["device"].startswith("cpu") and a["versions"]["torch"]
    engines = {(Path(r["artifact"]).name, r["engine"], r["batch"]) for r in a["rows"]}
    # bf16 runs where oneDNN has native bf16 (AVX-512 BF16 / AMX CPUs) and is skipped with a reason elsewhere.
    native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    ran = [("sf.safetensors", "torch-fp32"), ("sf.onnx", "onnxruntime-fp32")] + [("sf.safetensors", "torch-bf16")] * native_bf16
    assert engines == {(n, e, bs) for n, e in ran for bs in (1, 2)}
    assert native_bf16 or any(s["engine"] == "torch-bf16" and "no native bf16" in s["reason"] for s in a["skipped"])
    for r in a["rows"]:
        assert len(r["samples_s"]) == 2 and all(s > 0 for s in r["samples_s"])
        assert r["latency_ms_p50"] <= r["latency_ms_p95"] <= r["latency_ms_p99"]
        assert r["clips_per_s"] == pytest.approx(r["batch"] * 2 / sum(r["samples_s"]))
        assert r["achieved_tflops"] == pytest.approx(2 * r["gflops_per_clip"] * r["clips_per_s"] / 1e3)
        assert r["fraction_of_peak"] is None and r["timer"] == "wall_clock"  # CPU: no peak
    # fp16 on the CPU is not run, and says why
    assert any(s["engine"] == "torch-fp16" and "CPU" in s["reason"] for s in a["skipped"])


def _one_line_error(r, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in line, line
    for n in needles:
        assert n in line, line


def test_unloadable_artifacts_are_named(artifacts, tmp_path):
    bad_onnx = tmp_path / "broken.onnx"
    bad_onnx.write_bytes(b"not a protobuf at all")
    shutil.copy(str(artifacts["onnx"]) + ".json", str(bad_onnx) + ".json")
    _one_line_error(_run(["bench", "model", str(bad_onnx), "--batch-size", "1", "--iters", "1"], ok=False), str(bad_onnx), "re-export")
    bad_ckpt = tmp_path / "broken.safetensors"
    bad_ckpt.write_bytes(b"\x00" * 64)
    _one_line_error(
        _run(["bench", "model", str(bad_ckpt), "--batch-size", "1", "--iters", "1", "--device", "cpu"], ok=False), str(bad_ckpt)
    )
    no_side = tmp_path / "alone.onnx"
    shutil.copy(artifacts["onnx"], no_side)
    _one_line_error(_run(["bench", "model", str(no_side), "--batch-size", "1"], ok=False), str(no_side), "sidecar")


def test_batch_over_the_plan_profile_fails_before_loading(artifacts, tmp_path):
    side = json.loads(Path(str(artifacts["onnx"]) + ".json").read_text())
    side.update(
        kind="tensorrt", precision="fp16", tensorrt={"version": "10.0", "gpu": "NVIDIA H100", "profile": {"min": 1, "opt": 4, "max": 4}}
    )
    plan = tmp_path / "sf.fp16.plan"
    plan.write_bytes(b"plan bytes")
    (tmp_path / "sf.fp16.plan.json").write_text(json.dumps(side))
    _one_line_error(_run(["bench", "model", str(plan), "--batch-size", "1,8"], ok=False), str(plan), "batch 8", "max 4", "--max-batch")


def test_bench_e2e_stages_and_stable_schema(data, artifacts, tmp_path):
    args = [
        "bench",
        "e2e",
        str(data / "manifest.csv"),
        str(artifacts["onnx"]),
        "--batch-size",
        "2",
        "--clips",
        "4",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    results = []
    for name in ("a", "b"):
        _run([*args, "--out", str(tmp_path / name)])
        results.append(json.loads((tmp_path / name / "result.json").read_text()))
    a, b = results
    assert _shape(a) == _shape(b)
    rows = {r["pipeline"]: r for r in a["rows"]}
    assert set(rows) == {"dali", "pyav"}
    for r in rows.values():
        assert r["bound"] in ("decode", "preprocess", "inference")
        assert r["e2e_clips_per_s"] > 0 and r["clips_timed"] == 4
        assert r["decode_ms_per_clip"] > 0 and r["inference_ms_per_clip"] > 0 and r["preprocess_ms_per_clip"] >= 0
        assert len(r["samples"]["e2e_engine_s"]) == 2  # 4 clips in batches of 2 after the warm-up batch
    assert a["ratios"]["dali_vs_pyav_e2e"] == pytest.approx(rows["dali"]["e2e_clips_per_s"] / rows["pyav"]["e2e_clips_per_s"])


def test_e2e_manifest_without_decodable_files(artifacts, tmp_path):
    from slowfast_trt.data.manifest import Entry, write_manifest

    for i in range(2):
        (tmp_path / f"v{i}.webm").write_text("this is not a video\n")
    m = write_manifest(tmp_path / "bad.csv", [Entry(f"v{i}.webm", i, 96, 30.0, 80, 64, "vp9") for i in range(2)], ["a", "b"])
    _one_line_error(
        _run(["bench", "e2e", str(m), str(artifacts["onnx"]), "--device", "cpu"], ok=False),
        "none of its 2 videos can be decoded",
        "v0.webm",
    )


def test_bench_accuracy_views_cost_and_report(data, artifacts, tmp_path):
    out = tmp_path / "acc"
    _run(
        [
            "bench",
            "accuracy",
            str(data / "manifest.csv"),
            str(artifacts["ckpt"]),
            str(artifacts["onnx"]),
            "--clips",
            "2",
            "--crops",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    res = json.loads((out / "result.json").read_text())
    assert res["benchmark"] == "accuracy"
    settings = [(Path(r["artifact"]).name, r["setting"]) for r in res["rows"]]
    assert settings == [(n, s) for n in ("sf.safetensors", "sf.onnx") for s in ("1x1", "1x3", "2x1", "2x3")]
    for r in res["rows"]:
        assert r["views"] == {"1x1": 1, "1x3": 3, "2x1": 2, "2x3": 6}[r["setting"]]
        assert r["gflops_x_views"] == pytest.approx(r["gflops_per_view"] * r["views"])
        assert 0 <= r["top1"] <= r["top5"] <= 100
    # The ONNX export is the same network: identical accuracy on identical clips.
    by = {(Path(r["artifact"]).suffix, r["setting"]): r["top1"] for r in res["rows"]}
    assert all(by[(".safetensors", s)] == by[(".onnx", s)] for s in ("1x1", "1x3", "2x1", "2x3"))
    assert all(r["agreement_with_first"] is not None and 0 <= r["agreement_with_first"] <= 100 for r in res["rows"])

    # Report: the accuracy run plus a flops table and a model run.
    _run(["bench", "flops", PRESET, "--out", str(tmp_path / "flops")])
    _run(
        ["bench", "model", str(artifacts["onnx"]), "--batch-size", "1,2", "--warmup", "0", "--iters", "2", "--out", str(tmp_path / "model")]
    )
    _run(["report", str(tmp_path), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    for heading in ("## Headlines", "## flops: flops", "## model: model", "## accuracy: acc"):
        assert heading in text
    pngs = sorted((tmp_path / "report" / "plots").glob("*.png"))
    assert [p.name.split("_", 1)[1] for p in pngs] == ["model_model.png", "accuracy_acc.png"]
    from PIL import Image

    for p in pngs:
        with Image.open(p) as im:
            im.verify()
            assert im.format == "PNG" and im.size[0] > 200


def test_report_never_divides_across_devices(tmp_path):
    from slowfast_trt.benchmarks.report import compare_runs

    def run(name: str, device: str, rate: float) -> dict:
        return {
            "benchmark": "model",
            "device": device,
            "cpu": device,
            "gpu": None,
            "_path": f"{name}/result.json",
            "rows": [{"artifact": "m.onnx", "engine": "onnxruntime-fp32", "batch": 1, "clips_per_s": rate}],
        }

    lines = "\n".join(compare_runs([run("a", "cpu: X", 10.0), run("b", "cpu: X", 20.0), run("c", "cpu: Y", 40.0)]))
    assert "b/result.json (same device): m.onnx onnxruntime-fp32 b1: 2.00x" in lines
    assert "c/result.json: not compared, measured on another device (cpu: Y)" in lines
    assert "4.00x" not in lines


def test_report_rejects_folders_without_results(tmp_path):
    from slowfast_trt.benchmarks.report import write_report

    with pytest.raises(SlowFastError, match="no result.json"):
        write_report([tmp_path], tmp_path / "out")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "result.json").write_text('{"rows": []}')
    with pytest.raises(SlowFastError, match="no 'benchmark' key"):
        write_report([tmp_path], tmp_path / "out")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize(
    "command", ["train", "eval", "eval --engine", "export engine", "bench model", "bench pipeline", "bench e2e", "bench accuracy"]
)
def test_gpu_commands_stay_strict_without_a_gpu(command, data, artifacts, tmp_path):
    """Unlike the demo, which falls back to the CPU, a command asked for the GPU (`--device cuda`, or a TensorRT build)
    refuses with one line and exit 2 where there is none."""
    ckpt, onnx, val = str(artifacts["ckpt"]), str(artifacts["onnx"]), str(data / "manifest.csv")
    args = {
        "train": ["train", "--preset", PRESET, "--train", str(data / "train.csv"), "--out", str(tmp_path / "run"), "--epochs", "1"],
        "eval": ["eval", "--ckpt", ckpt, "--data", val],
        "eval --engine": ["eval", "--engine", onnx, "--data", val],
        "export engine": ["export", "engine", onnx, "--precision", "fp16"],
        "bench model": ["bench", "model", ckpt],
        "bench pipeline": ["bench", "pipeline", val],
        "bench e2e": ["bench", "e2e", val, ckpt],
        "bench accuracy": ["bench", "accuracy", val, ckpt],
    }[command]
    r = _run(args + ([] if command == "export engine" else ["--device", "cuda"]), ok=False)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert any(w in lines[0] for w in ("CUDA", "GPU", "TensorRT")), lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_demo_stages_skip_when_done_and_rerun_when_inputs_change(tmp_path):
    from slowfast_trt.benchmarks.demo import Demo, Stage

    d = Demo(tmp_path / "demo", quick=True, echo=lambda line: None)
    d.claim()
    src, dst, calls = tmp_path / "demo" / "in.txt", tmp_path / "demo" / "out.json", []
    src.write_text("1")

    def work(device):
        calls.append(device)
        dst.write_text(json.dumps({"n": len(calls)}))

    s = Stage("s", "stage", work, lambda: [dst], lambda: [src])
    assert d.run_stage(s) is True
    assert d.run_stage(s) is False  # outputs valid, inputs unchanged: skipped
    src.write_text("22")  # an input changed: re-run
    assert d.run_stage(s) is True
    dst.write_text("{truncated")  # an output no longer parses: re-run
    assert d.run_stage(s) is True
    assert calls == ["auto"] * 3

    with pytest.raises(SlowFastError, match="finished without writing"):
        d.run_stage(Stage("t", "stage", lambda _device: None, lambda: [tmp_path / "demo" / "never.json"]))
    # A full-mode demo refuses the quick folder, and no demo takes over a foreign non-empty folder.
    with pytest.raises(SlowFastError, match="quick demo with other settings"):
        Demo(tmp_path / "demo", quick=False).claim()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(SlowFastError, match="not made by `slowfast demo`"):
        Demo(tmp_path / "mine", quick=True).claim()


@pytest.mark.gpu
def test_gpu_e2e_dali_mixed_decode_into_torch_fp16(data, artifacts, tmp_path):
    """On a GPU: DALI decodes on the GPU ('mixed') and feeds the torch engine in fp16; the result is kept in the repo."""
    out = tmp_path / "e2e"
    _run(
        [
            "bench",
            "e2e",
            str(data / "manifest.csv"),
            str(artifacts["ckpt"]),
            "--precision",
            "fp16",
            "--device",
            "cuda",
            "--batch-size",
            "4",
            "--clips",
            "16",
            "--out",
            str(out),
        ]
    )
    res = json.loads((out / "result.json").read_text())
    assert "DALI gpu" in res["device"] and res["gpu"]
    assert res["settings"]["engine"] == "torch-fp16"
    assert all(r["e2e_clips_per_s"] > 0 for r in res["rows"])
    keep = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "e2e-gpu"
    keep.mkdir(parents=True, exist_ok=True)
    for f in ("result.json", "e2e.md"):
        shutil.copy(out / f, keep / f)


def test_bench_serve_settings_cross_the_venv_boundary_as_json_unchanged():
    """`bench serve` hands its settings to a process in Triton's venv as JSON: they come back equal, typed, and a
    field the other side does not know is refused instead of being ignored."""
    from slowfast_trt.benchmarks.serve import MAX_REQUESTS, ServeSettings

    s = ServeSettings(
        url="http://localhost:8000", protocol="grpc", models=("a_py", "a_video_py"), concurrency=(1, 4), batching=("on", "off")
    )
    back = ServeSettings.from_json(s.to_json())
    assert back == s and isinstance(back.concurrency, tuple) and back.max_requests == MAX_REQUESTS
    with pytest.raises(SlowFastError, match=r"unknown field\(s\) \['concurency'\]"):
        ServeSettings.from_json(json.dumps({"url": "u", "protocol": "http", "models": ["m"], "concurency": [1]}))
