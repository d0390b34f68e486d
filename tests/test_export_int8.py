"""`export int8` from the DALI calibration feed, eval of an ONNX export vs its checkpoint, and bad input at the CLI.

Tiny preset (slowfast_tiny_4x16, 64-pixel crops) on 8 small synthetic videos, so the whole file runs in well
under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")

from click.testing import CliRunner  # noqa: E402

from slowfast_trt import model  # noqa: E402
from slowfast_trt.cli.main import main  # noqa: E402
from slowfast_trt.common.errors import SlowFastError  # noqa: E402
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.synth import synth  # noqa: E402
from slowfast_trt.engines.sidecar import read_sidecar, sidecar_path  # noqa: E402
from slowfast_trt.export.onnx import export_onnx  # noqa: E402
from slowfast_trt.export.qdq import qdq_summary  # noqa: E402
from slowfast_trt.training.evaluate import agreement  # noqa: E402
from tests.helpers import assert_auto_choice, randomize_  # noqa: E402

PRESET = "slowfast_tiny_4x16"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """8 synthetic videos (64x80, 72 frames), a tiny checkpoint with random BN statistics and its FP32 ONNX export."""
    root = tmp_path_factory.mktemp("int8")
    synth(root / "data", videos=8, seed=5, frames=72, workers=2, progress=False)
    net = randomize_(model.build(PRESET, num_classes=8), seed=3).eval()
    ckpt = model.save(net, root / "model" / "tiny.safetensors")
    onnx_path = export_onnx(ckpt, root / "model" / "tiny.onnx").path
    return {"root": root, "manifest": root / "data" / "manifest.csv", "net": net, "ckpt": ckpt, "onnx": onnx_path}


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(r, *needles: str) -> None:
    """Non-zero exit, a single `error: ...` line, no traceback, and every needle in it."""
    assert r.exit_code != 0, r.output
    lines = [line for line in r.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _files(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_cli_export_int8_end_to_end(setup, tmp_path):
    """DALI clips in, a Q/DQ model out that quantizes every Conv3d (both pathways, laterals); settings in the sidecar."""
    out = tmp_path / "a.int8.onnx"
    r = _cli(
        "export", "int8", setup["onnx"], "--calib", setup["manifest"], "--clips", 5, "--seed", 1, "--device", "cpu", "--out", out, "--quiet"
    )
    assert r.exit_code == 0, r.output
    n_conv3d = sum(isinstance(m, torch.nn.Conv3d) for m in setup["net"].modules())
    laterals = [name for name, m in setup["net"].named_modules() if isinstance(m, torch.nn.Conv3d) and name.startswith("fuse")]
    assert len(laterals) == 4  # one time-strided conv lateral after pool1 and res2..res4
    s = qdq_summary(out)
    assert s["convs"] == n_conv3d and s["quantized_convs"] == n_conv3d and s["unquantized"] == [], s
    assert sum("fuse" in name for name in s["quantized_names"]) == 4
    assert s["symmetric"]
    assert f"{n_conv3d}/{n_conv3d} Conv quantized" in r.output
    side = read_sidecar(out)
    cal = side["calibration"]
    assert side["kind"] == "onnx-int8" and side["precision"] == "int8"
    # --method auto (the default): every candidate built, the one closest to FP32 on the calibration clips kept.
    assert_auto_choice(cal)
    assert f"auto: {cal['chosen']}" in r.output
    assert (cal["clips"], cal["seed"], cal["batches"]) == (5, 1, 2)  # 4 + 1 clips
    assert (cal["placement"], cal["bias_correction"], cal["crops"]) == ("inputs", True, 1)
    assert cal["manifest"] == str(setup["manifest"].resolve()) and len(cal["videos"]) == 5
    assert side["source_onnx_sha256"] and side["input_names"] == ["slow", "fast"]

    # The same seed draws the same clips and gives the same scales; another seed draws other videos.
    again = tmp_path / "b.int8.onnx"
    assert (
        _cli(
            "export",
            "int8",
            setup["onnx"],
            "--calib",
            setup["manifest"],
            "--clips",
            5,
            "--seed",
            1,
            "--device",
            "cpu",
            "--out",
            again,
            "--quiet",
        ).exit_code
        == 0
    )
    assert _scales(out) == _scales(again)
    other = tmp_path / "c.int8.onnx"
    assert (
        _cli(
            "export",
            "int8",
            setup["onnx"],
            "--calib",
            setup["manifest"],
            "--clips",
            5,
            "--seed",
            2,
            "--device",
            "cpu",
            "--out",
            other,
            "--quiet",
        ).exit_code
        == 0
    )
    assert read_sidecar(other)["calibration"]["videos"] != cal["videos"]


def _scales(path) -> dict[str, list[float]]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: i for i in m.graph.initializer}
    return {
        n.input[1]: numpy_helper.to_array(inits[n.input[1]]).ravel().tolist()
        for n in m.graph.node
        if n.op_type == "QuantizeLinear" and n.input[1] in inits
    }


def test_eval_engine_onnx_matches_checkpoint(setup, tmp_path):
    """`slowfast eval --engine model.onnx` and `--ckpt` give the same accuracy and the same per-video predictions."""
    common = ["--data", setup["manifest"], "--clips", 2, "--crops", 3, "--device", "cpu", "--batch-size", 4]
    r1 = _cli("eval", "--ckpt", setup["ckpt"], *common, "--out", tmp_path / "ckpt")
    r2 = _cli("eval", "--engine", setup["onnx"], *common, "--out", tmp_path / "onnx")
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1.output, r2.output)
    a = json.loads((tmp_path / "ckpt" / "eval.json").read_text())
    b = json.loads((tmp_path / "onnx" / "eval.json").read_text())
    assert set(a["results"]) == {"1x1", "1x3", "2x1", "2x3"} and a["videos"] == b["videos"] == 8
    for setting in a["results"]:
        assert a["results"][setting] == pytest.approx(b["results"][setting]), setting
        assert agreement(a, b, setting) == 100.0
    assert a["video_paths"] == b["video_paths"] and len(a["predictions"]["2x3"]) == 8
    assert b["engine"] == "onnxruntime-fp32"
    # A random-weight net may put every video in one class, so also compare the view scores of one real batch.
    from slowfast_trt import engines
    from slowfast_trt.dali_pipelines.loader import ClipLoader
    from slowfast_trt.dali_pipelines.plan import multiview_plan
    from slowfast_trt.data.manifest import read_manifest, to_videos

    torch_engine, ort_engine = engines.load(setup["ckpt"], device="cpu"), engines.load(setup["onnx"], device="cpu")
    cfg = torch_engine.config
    batch = next(
        iter(
            ClipLoader(
                multiview_plan(to_videos(read_manifest(setup["manifest"]))[:2], cfg, 1),
                cfg,
                "test",
                FeedSpec(batch_size=2, device="cpu", num_crops=3),
            )
        )
    )
    clips = {p: batch[p] for p in cfg.pathways}
    ref, got = torch_engine(**clips), ort_engine(**clips)
    assert ref.shape == (6, 8) and ref.std(0).max() > 1e-3  # 2 clips x 3 crops, scores that differ between views
    assert (got - ref).abs().max().item() < 1e-4
    shuffled = dict(b, video_paths=b["video_paths"][::-1])
    with pytest.raises(SlowFastError, match="different videos"):
        agreement(a, shuffled, "2x3")


def test_bad_inputs_are_one_line_errors_and_leave_nothing(setup, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    onnx_path = setup["onnx"]

    # A checkpoint that is not one.
    fake = work / "fake.safetensors"
    fake.write_bytes(b"this is not a checkpoint" * 10)
    before = _files(work)
    _one_line_error(_cli("export", "onnx", fake, "--out", work / "fake.onnx"), "fake.safetensors")
    assert _files(work) == before

    # A calibration manifest with fewer videos than --clips.
    _one_line_error(
        _cli("export", "int8", onnx_path, "--calib", setup["manifest"], "--clips", 20, "--device", "cpu", "--out", work / "x.int8.onnx"),
        "calibration needs 20 clips",
        "only 8 videos",
    )
    assert _files(work) == before

    # An ONNX file whose graph inputs have other names than the project's (`slow`, `fast`).
    renamed = _rename_inputs(onnx_path, work / "renamed.onnx", {"slow": "video_slow", "fast": "video_fast"})
    before = _files(work)
    _one_line_error(
        _cli("export", "int8", renamed, "--calib", setup["manifest"], "--clips", 2, "--device", "cpu"), "do not match its sidecar"
    )
    _one_line_error(
        _cli("eval", "--engine", renamed, "--data", setup["manifest"], "--clips", 1, "--device", "cpu"), "do not match its sidecar"
    )
    assert _files(work) == before

    # A sidecar that does not belong to the model: another crop size, and another architecture.
    wrong = work / "wrong.onnx"
    shutil.copy(onnx_path, wrong)
    side = read_sidecar(onnx_path)
    for name in ("slow", "fast"):
        side["inputs"][name]["shape"][3:] = [128, 128]
    side["crop_size"] = 128
    sidecar_path(wrong).write_text(json.dumps(side))
    before = _files(work)
    _one_line_error(
        _cli("export", "int8", wrong, "--calib", setup["manifest"], "--clips", 2, "--device", "cpu"),
        "input 'slow' of the graph has shape",
        "does not belong",
    )
    _one_line_error(_cli("eval", "--engine", wrong, "--data", setup["manifest"], "--clips", 1, "--device", "cpu"), "does not belong")
    slow_only = read_sidecar(onnx_path)
    slow_only["config"]["arch"], slow_only["config"]["lateral"] = "slow", None
    sidecar_path(wrong).write_text(json.dumps(slow_only))
    _one_line_error(
        _cli("eval", "--engine", wrong, "--data", setup["manifest"], "--clips", 1, "--device", "cpu"), "does not belong to this artifact"
    )
    assert _files(work) == before

    # A corrupt model file (with an intact sidecar) and a corrupt TensorRT plan.
    corrupt = work / "corrupt.onnx"
    corrupt.write_bytes(onnx_path.read_bytes()[:5000])
    sidecar_path(corrupt).write_text(sidecar_path(onnx_path).read_text())
    before = _files(work)
    _one_line_error(_cli("eval", "--engine", corrupt, "--data", setup["manifest"], "--clips", 1, "--device", "cpu"), "corrupt.onnx")
    _one_line_error(
        _cli("export", "int8", corrupt, "--calib", setup["manifest"], "--clips", 2, "--device", "cpu"), "not a readable ONNX model"
    )
    plan = work / "corrupt.plan"
    plan.write_bytes(b"\x00" * 4096)
    side = read_sidecar(onnx_path)
    side.update(kind="tensorrt", tensorrt={"version": "10.0", "gpu": "none"})
    sidecar_path(plan).write_text(json.dumps(side))
    before = _files(work)
    # Without TensorRT (here) it says how to install it; with it, that the plan is from elsewhere or corrupt.
    _one_line_error(_cli("eval", "--engine", plan, "--data", setup["manifest"], "--clips", 1, "--device", "cpu"))
    assert _files(work) == before


def _rename_inputs(src, dst, names: dict[str, str]):
    """A copy of `src` whose graph inputs are renamed (same weights), with the original sidecar beside it."""
    import onnx

    m = onnx.load(str(src))
    for i in m.graph.input:
        if i.name in names:
            i.name = names[i.name]
    for node in m.graph.node:
        node.input[:] = [names.get(x, x) for x in node.input]
    onnx.save(m, str(dst))
    shutil.copy(sidecar_path(src), sidecar_path(dst))
    return dst


def test_export_compare_writes_result_files(setup, tmp_path):
    """`export compare` on a model against itself: zero delta, 100% agreement, speed from interleaved calls, files written."""
    out = tmp_path / "cmp"
    r = _cli(
        "export",
        "compare",
        setup["onnx"],
        setup["onnx"],
        "--data",
        setup["manifest"],
        "--out",
        out,
        "--clips",
        2,
        "--crops",
        1,
        "--device",
        "cpu",
        "--repeats",
        2,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    res = json.loads((out / "result.json").read_text())
    assert set(res["accuracy"]) == {"1x1", "2x1"}
    for a in res["accuracy"].values():
        assert a["delta"] == 0 and a["top1_agreement"] == 100.0
    assert len(res["samples"]["speed_s"]["fp32"]) == 2 and res["speed"]["fp32"]["clips_per_s"] > 0
    assert res["speed"]["fp32"]["batch_views"] == 4 and res["versions"]["onnxruntime"]
    assert "top-1 agreement" in (out / "result.md").read_text()


def test_int8_qdq_execution_modes(setup, tmp_path, monkeypatch):
    """INT8 ONNX runs through ONNX Runtime's int8 kernels or as Q/DQ emulation; auto emulates on CPUs without VNNI."""
    from slowfast_trt import engines
    from slowfast_trt.engines import ort_engine

    q = tmp_path / "m.int8.onnx"
    assert (
        _cli(
            "export", "int8", setup["onnx"], "--calib", setup["manifest"], "--clips", 4, "--device", "cpu", "--out", q, "--quiet"
        ).exit_code
        == 0
    )
    emulated = engines.load(q, device="cpu", qdq="emulate")
    kernels = engines.load(q, device="cpu", qdq="kernels")
    assert emulated.name == "onnxruntime-int8-qdq-emulated" and emulated.info["qdq_execution"] == "emulate"
    assert kernels.name == "onnxruntime-int8" and kernels.info["qdq_execution"] == "kernels"
    assert emulated.session.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    assert engines.load(setup["onnx"], device="cpu", qdq="emulate").name == "onnxruntime-fp32"  # float models: no Q/DQ
    for vnni, mode in ((False, "emulate"), (True, "kernels"), (None, "kernels")):
        monkeypatch.setattr(ort_engine, "cpu_has_vnni", lambda v=vnni: v)
        assert ort_engine.resolve_qdq("auto", "int8", "cpu") == mode
    assert ort_engine.resolve_qdq("auto", "int8", "cuda") == "kernels"
    with pytest.raises(SlowFastError, match="--qdq must be one of"):
        ort_engine.resolve_qdq("fake", "int8", "cpu")
    # Both executions run the quantized model to finite scores of the same shape.
    from slowfast_trt.model.inputs import random_inputs

    clips = random_inputs(emulated.config, batch=4, generator=torch.Generator().manual_seed(0))
    a, b = emulated(clips["slow"], clips["fast"]), kernels(clips["slow"], clips["fast"])
    assert a.shape == b.shape == (4, emulated.config.num_classes) and torch.isfinite(a).all() and torch.isfinite(b).all()
    monkeypatch.setattr(ort_engine, "cpu_has_vnni", lambda: False)
    r = _cli(
        "export",
        "compare",
        setup["onnx"],
        q,
        "--data",
        setup["manifest"],
        "--out",
        tmp_path / "cmp",
        "--clips",
        1,
        "--crops",
        1,
        "--device",
        "cpu",
        "--repeats",
        1,
        "--with-kernels",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "cmp" / "result.json").read_text())
    assert res["engines"] == {"fp32": "onnxruntime-fp32", "int8": "onnxruntime-int8-qdq-emulated", "int8-ort-kernels": "onnxruntime-int8"}
    assert "int8-ort-kernels" in res["accuracy"]["1x1"]["others"]


def test_percentile_calibration_with_a_short_last_batch(setup, tmp_path):
    """Histogram calibrators get one clip per call, so 5 clips (batches of 4 + 1) calibrate without an error."""
    out = tmp_path / "p.int8.onnx"
    r = _cli(
        "export",
        "int8",
        setup["onnx"],
        "--calib",
        setup["manifest"],
        "--clips",
        5,
        "--method",
        "percentile",
        "--percentile",
        99.9,
        "--device",
        "cpu",
        "--out",
        out,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    cal = read_sidecar(out)["calibration"]
    assert (cal["method"], cal["percentile"], cal["batches"]) == ("percentile", 99.9, 2) and "moving_average" not in cal


def test_qdq_placement_and_scales(setup, tmp_path):
    """Default: Q/DQ only on the inputs of Conv/MatMul (TensorRT's recipe): every Conv has per-channel symmetric int8
    weights and a per-tensor activation scale, and no Conv output, ReLU input or residual Add carries Q/DQ.
    `--placement inputs+outputs` (ONNX Runtime's QDQ default) quantizes the Conv outputs too."""
    from slowfast_trt.export.qdq import DEFAULT_PLACEMENT

    assert DEFAULT_PLACEMENT == "inputs"
    n_conv3d = sum(isinstance(m, torch.nn.Conv3d) for m in setup["net"].modules())
    summaries = {}
    for placement in (None, "inputs+outputs"):
        out = tmp_path / f"{placement or 'default'}.int8.onnx"
        args = ["--placement", placement] if placement else []
        r = _cli(
            "export", "int8", setup["onnx"], "--calib", setup["manifest"], "--clips", 4, "--device", "cpu", "--out", out, "--quiet", *args
        )
        assert r.exit_code == 0, r.output
        s = summaries[placement] = qdq_summary(out)
        assert s["quantized_convs"] == s["convs"] == n_conv3d and s["unquantized"] == [], s
        assert s["symmetric"] and s["per_channel_weights"] and s["per_tensor_activations"], s
        assert read_sidecar(out)["calibration"]["placement"] == (placement or "inputs")
        assert f"Q/DQ on {placement or 'inputs'}" in r.output
    default, both = summaries[None], summaries["inputs+outputs"]
    assert set(default["qdq_consumers"]) <= {"Conv", "Gemm", "MatMul"}, default["qdq_consumers"]
    assert not {"Conv", "Gemm", "MatMul"} & set(default["quantized_outputs"]), default["quantized_outputs"]
    assert {"Add", "Relu"} <= set(both["qdq_consumers"]) and "Conv" in both["quantized_outputs"], both
    assert default["qdq_nodes"] < both["qdq_nodes"]


def test_qdq_summary_sees_a_missing_or_per_tensor_weight_scale(setup, tmp_path):
    """The checks in `qdq_summary` can fail: a Conv left in float and a per-tensor weight scale are reported."""
    import onnx
    from onnx import numpy_helper

    out = tmp_path / "m.int8.onnx"
    assert (
        _cli(
            "export", "int8", setup["onnx"], "--calib", setup["manifest"], "--clips", 4, "--device", "cpu", "--out", out, "--quiet"
        ).exit_code
        == 0
    )
    m = onnx.load(str(out))
    producers = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name: i for i in m.graph.initializer}
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    wdq = producers[conv.input[1]]
    first_scale = numpy_helper.to_array(inits[wdq.input[1]])
    inits[wdq.input[1]].CopyFrom(numpy_helper.from_array(first_scale[:1].copy(), wdq.input[1]))
    broken = tmp_path / "broken.onnx"
    onnx.save(m, str(broken))
    assert not qdq_summary(broken)["per_channel_weights"]
    quantize = producers[producers[conv.input[0]].input[0]]  # Conv <- DequantizeLinear <- QuantizeLinear <- float tensor
    conv.input[0] = quantize.input[0]
    onnx.save(m, str(broken))
    s = qdq_summary(broken)
    assert s["quantized_convs"] == s["convs"] - 1 and s["unquantized"] == [conv.name]


def test_calibration_on_three_crops(setup, tmp_path):
    """`--calib-crops 3` calibrates on the three test crops of each clip (3 views per clip); the sidecar says so."""
    out = tmp_path / "c3.int8.onnx"
    r = _cli(
        "export",
        "int8",
        setup["onnx"],
        "--calib",
        setup["manifest"],
        "--clips",
        4,
        "--calib-crops",
        3,
        "--device",
        "cpu",
        "--out",
        out,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    cal = read_sidecar(out)["calibration"]
    assert cal["crops"] == 3 and cal["clips"] == 4 and "3 crops" in cal["source"]
    centre = tmp_path / "c1.int8.onnx"
    assert (
        _cli(
            "export", "int8", setup["onnx"], "--calib", setup["manifest"], "--clips", 4, "--device", "cpu", "--out", centre, "--quiet"
        ).exit_code
        == 0
    )
    assert read_sidecar(centre)["calibration"]["crops"] == 1
    assert read_sidecar(centre)["calibration"]["videos"] == cal["videos"]  # the same clips, other views: other ranges
    assert _scales(out) != _scales(centre)


def test_bias_correction_changes_only_the_biases(setup, tmp_path):
    """Bias correction keeps the int8 weights and every activation scale and moves Conv biases by the mean rounding error."""
    import onnx
    from onnx import numpy_helper

    paths = {}
    for flag in ("--bias-correction", "--no-bias-correction"):
        paths[flag] = tmp_path / f"{flag.strip('-')}.int8.onnx"
        # One calibrator for both (with --method auto each run could choose another candidate).
        r = _cli(
            "export",
            "int8",
            setup["onnx"],
            "--calib",
            setup["manifest"],
            "--clips",
            4,
            "--device",
            "cpu",
            "--out",
            paths[flag],
            "--quiet",
            "--method",
            "percentile",
            flag,
        )
        assert r.exit_code == 0, r.output
        assert read_sidecar(paths[flag])["calibration"]["bias_correction"] == (flag == "--bias-correction")
    assert _scales(paths["--bias-correction"]) == _scales(paths["--no-bias-correction"])  # activation scales pinned

    def conv_tensors(path):
        m = onnx.load(str(path))
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        prod = {o: n for n in m.graph.node for o in n.output}
        out = {}
        for n in m.graph.node:
            if n.op_type == "Conv":
                w = prod[n.input[1]]
                out[n.name] = (inits[w.input[0]], inits[w.input[1]], inits[n.input[2]])  # biases stay float (TensorRT)
        return out

    a, b = conv_tensors(paths["--bias-correction"]), conv_tensors(paths["--no-bias-correction"])
    assert a.keys() == b.keys() and len(a) > 0
    moved = 0
    for name in a:
        assert (a[name][0] == b[name][0]).all() and (a[name][1] == b[name][1]).all(), name  # same int8 weights and scales
        moved += not np.allclose(a[name][2], b[name][2])
    assert moved >= len(a) // 2, (moved, len(a))  # most biases moved (a zero-mean error would leave few)
