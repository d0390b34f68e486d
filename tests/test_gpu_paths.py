"""Every GPU path against its CPU counterpart (marker `gpu`: skipped with a reason without CUDA).

Tolerances, and why: NVDEC and libvpx decode the same VP9 bit-exactly, but DALI's 'mixed' decoder converts
YUV to RGB on the GPU with its own rounding, so decoded pixels may differ by a few grey levels (bound: max 4,
mean 0.5). The GPU graphs resize in DALI's CUDA kernels where the CPU pipelines use torch's uint8 kernels; the
same bound as the CPU's own torch-vs-DALI-graph test applies (mean under 1.5 grey levels per pixel).

Order: the quick checks first (driver caps, routing, resume), the heavy ones (tuned R50 engines, torch.compile,
bounded benchmarks) last, so a run cut short by its time limit still reports the checks. Results worth keeping go
to benchmarks/results/gpu-tests/ (`scripts/gpu/run.sh` packs them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda130)")
pytest.importorskip("av")

from slowfast_trt import model  # noqa: E402
from slowfast_trt.common.errors import SlowFastError  # noqa: E402
from slowfast_trt.dali_pipelines import nvdec  # noqa: E402
from slowfast_trt.dali_pipelines.loader import ClipLoader  # noqa: E402
from slowfast_trt.dali_pipelines.plan import multiview_plan, train_plan  # noqa: E402
from slowfast_trt.dali_pipelines.spec import FeedSpec  # noqa: E402
from slowfast_trt.data.manifest import Video  # noqa: E402
from tests.helpers import randomize_, read_index, write_indexed_video  # noqa: E402

PIXEL_MAX, PIXEL_MEAN = 4, 0.5  # NVDEC + DALI's GPU colour conversion vs the CPU decoder, grey levels
GRAPH_MEAN = 1.5  # GPU graph (DALI CUDA resize) vs CPU pipeline (torch uint8 resize), grey levels per pixel
KEEP = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "gpu-tests"


def keep(name: str, obj) -> None:
    """Write a result of a GPU test under benchmarks/results/gpu-tests/ (collected by scripts/gpu/run.sh)."""
    KEEP.mkdir(parents=True, exist_ok=True)
    (KEEP / name).write_text(json.dumps(obj, indent=2, default=str))


def test_nvdec_caps_come_from_the_driver():
    """libnvcuvid.so.1 resolves and answers (`ldconfig -p | grep nvcuvid`), so routing uses the driver's limits, not the
    SDK table; and the table's AV1 rule for this GPU's compute capability says what the driver says."""
    import ctypes

    ctypes.CDLL("libnvcuvid.so.1")  # an OSError here names the missing library
    answers = {c: nvdec.driver_caps(c, "420", 8) for c in ("h264", "hevc", "vp9", "av1")}
    assert all(a is not None for a in answers.values()), answers
    assert answers["h264"][0] and answers["vp9"][0], answers
    assert nvdec.limits_for("vp9", "420", 8).source == "driver (cuvidGetDecoderCaps)"
    assert answers["av1"][0] == (nvdec.table_limits("av1", nvdec.gpu_capability()) is not None), (nvdec.gpu_capability(), answers["av1"])


@pytest.fixture(scope="module")
def big_vp9(tmp_path_factory):
    """VP9 inside NVDEC's limits (>= 128x128), landscape and portrait, frame numbers burnt in."""
    d = tmp_path_factory.mktemp("gpu_vp9")
    out = []
    for i, (name, n, w, h) in enumerate([("land.webm", 140, 320, 240), ("port.webm", 100, 240, 320), ("wide.webm", 90, 320, 256)]):
        write_indexed_video(d / name, n, w, h)
        out.append(Video(i, str(d / name), i % 3, n, 30.0, w, h))
    return out


def test_gpu_decode_equals_cpu_decode_of_the_same_vp9_frames(big_vp9):
    cfg = model.get_config("slowfast_r50_4x16")
    plans = multiview_plan(big_vp9, cfg, num_clips=2)
    gpu = ClipLoader(plans, cfg, "decode", FeedSpec(batch_size=1, device="cuda"), videos=big_vp9)
    cpu = ClipLoader(plans, cfg, "decode", FeedSpec(batch_size=1, device="cpu"))
    assert gpu.device == "gpu" and not gpu.on_cpu  # every file on NVDEC
    n = 0
    for g, c, plan in zip(gpu, cpu, plans, strict=True):
        assert g["fast"].is_cuda
        fg, fc = g["fast"][0].cpu().numpy(), c["fast"][0].numpy()
        assert fg.shape == fc.shape
        assert [read_index(f) for f in fg] == plan.fast_idx.tolist()  # the same frames
        diff = np.abs(fg.astype(int) - fc.astype(int))
        worst = np.unravel_index(diff.argmax(), diff.shape)  # (frame, row, column, channel): the chroma edge at row 32?
        assert diff.max() <= PIXEL_MAX and diff.mean() <= PIXEL_MEAN, (plan.path, diff.max(), diff.mean(), worst, (diff > PIXEL_MAX).sum())
        n += 1
    assert n == len(plans)


@pytest.mark.parametrize("mode", ["train", "test"])
def test_gpu_graphs_equal_the_cpu_pipelines(big_vp9, mode):
    cfg = model.get_config("slowfast_r50_4x16", crop_size=96, test_crop_size=128)
    plans = train_plan(big_vp9, cfg, epoch=0, seed=11) if mode == "train" else multiview_plan(big_vp9, cfg, num_clips=1)
    gpu = ClipLoader(plans, cfg, mode, FeedSpec(batch_size=3, device="cuda", num_crops=3))
    cpu = ClipLoader(plans, cfg, mode, FeedSpec(batch_size=3, device="cpu", num_crops=3))
    grey = 255 * cfg.std[0]
    n = 0
    for g, c in zip(gpu, cpu, strict=True):
        assert torch.equal(g["video"].cpu(), c["video"]) and torch.equal(g["crop"].cpu(), c["crop"])
        for key in ("slow", "fast"):
            assert g[key].is_cuda and g[key].shape == c[key].shape
            diff = grey * (g[key].cpu() - c[key]).abs()
            assert diff.mean() < GRAPH_MEAN, (mode, key, float(diff.mean()))
        n += 1
    assert n == len(gpu)


def test_too_small_vp9_is_routed_to_dalis_cpu_decoder_in_the_gpu_graph(tmp_path, capsys):
    """The H200 failure ('Video is too small ... 80x64 vs 128x128'): the same file now decodes, via the CPU decoder, next to NVDEC files."""
    small, big = tmp_path / "small.webm", tmp_path / "big.webm"
    write_indexed_video(small, 80, 128, 64)  # 128 wide for the burnt-in index, 64 high: below VP9's 128x128
    write_indexed_video(big, 80, 320, 240)
    videos = [Video(0, str(small), 0, 80, 30.0, 128, 64), Video(1, str(big), 1, 80, 30.0, 320, 240)]
    caps = nvdec.driver_caps("vp9", "420", 8)
    assert caps is not None and caps[0] and caps[1] >= 64  # the driver answers, and VP9 has a minimum
    cfg = model.get_config("slowfast_r50_4x16")
    plans = multiview_plan(videos, cfg, num_clips=2)
    loader = ClipLoader(plans, cfg, "decode", FeedSpec(batch_size=2, device="cuda"), videos=videos)
    assert loader.on_cpu == {str(small)}
    assert "1 of 2 files outside NVDEC's limits" in capsys.readouterr().err
    seen = 0
    for batch in loader:
        for j in range(len(batch["video"])):
            plan = plans[seen]
            assert [read_index(f) for f in batch["fast"][j].cpu().numpy()] == plan.fast_idx.tolist()
            seen += 1
    assert seen == len(plans)
    # An all-small set runs the whole graph on the CPU decoder (then the GPU); train mode needs train plans (with an roi).
    only = ClipLoader(train_plan(videos[:1], cfg, epoch=0), cfg, "train", FeedSpec(batch_size=1, device="cuda"), videos=videos[:1])
    assert next(iter(only))["fast"].is_cuda


def _mixed_vp9(tmp_path) -> list[Video]:
    """2 VP9 files below NVDEC's 128x128 (the CPU decoder's) and 2 above it (NVDEC's), alternating."""
    out = []
    for i, (w, h) in enumerate([(128, 64), (320, 240), (128, 64), (240, 320)]):
        p = tmp_path / f"v{i}.webm"
        write_indexed_video(p, 80, w, h)
        out.append(Video(i, str(p), i % 2, 80, 30.0, w, h))
    return out


@pytest.mark.parametrize("mode", ["train", "test"])
def test_the_split_graph_trains_and_tests_on_mixed_sizes(tmp_path, mode):
    """NVDEC and DALI's CPU decoder in one conditional graph in train and test mode (batch 2: both branches in some
    batches, one empty in others), against the CPU pipelines on the same plans."""
    videos = _mixed_vp9(tmp_path)
    cfg = model.get_config("slowfast_r50_4x16", crop_size=96, test_crop_size=128)
    plans = train_plan(videos, cfg, epoch=0, seed=3) if mode == "train" else multiview_plan(videos, cfg, num_clips=2)
    gpu = ClipLoader(plans, cfg, mode, batch_size=2, device="cuda", videos=videos)
    assert gpu.on_cpu == {videos[0].path, videos[2].path}
    cpu = ClipLoader(plans, cfg, mode, batch_size=2, device="cpu")
    grey = 255 * cfg.std[0]
    n = 0
    for g, c in zip(gpu, cpu, strict=True):
        assert torch.equal(g["video"].cpu(), c["video"]) and torch.equal(g["crop"].cpu(), c["crop"])
        for key in ("slow", "fast"):
            assert g[key].is_cuda and g[key].shape == c[key].shape
            diff = grey * (g[key].cpu() - c[key]).abs()
            assert diff.mean() < GRAPH_MEAN, (mode, key, float(diff.mean()))
        n += 1
    assert n == len(gpu) == len(plans) // 2


def test_detection_keyframes_take_the_nvdec_routing_on_the_gpu(tmp_path):
    """`data synth --detection`'s default 64x96 VP9 is below NVDEC's minimum: the keyframe graph decodes it on DALI's
    CPU decoder (no mid-run "Video is too small"), and matches the CPU loader's clips and boxes."""
    from slowfast_trt.dali_pipelines.ava import KeyframeLoader
    from slowfast_trt.data.ava import load_ava
    from slowfast_trt.data.synth_ava import synth_detection
    from slowfast_trt.model.detection import detection_config

    synth_detection(tmp_path / "ava", videos=4, frames=96, val_fraction=0.5, workers=2, progress=False)
    s = load_ava(tmp_path / "ava" / "val.csv", use_proposals=True)
    cfg = detection_config(model.get_config("slowfast_tiny_4x16", crop_size=64, test_crop_size=64), s.num_classes)
    gpu = KeyframeLoader(s.keyframes, cfg, FeedSpec(batch_size=2, device="cuda"), boxes="gt", videos=s.videos)
    assert {k.video.path for k in s.keyframes} <= gpu.on_cpu
    cpu = KeyframeLoader(s.keyframes, cfg, FeedSpec(batch_size=2, device="cpu"), boxes="gt", videos=s.videos)
    grey = 255 * cfg.std[0]
    n = 0
    for g, c in zip(gpu, cpu, strict=True):
        assert g["fast"].is_cuda and g["fast"].shape == c["fast"].shape
        assert torch.equal(g["boxes"].cpu(), c["boxes"]) and torch.equal(g["keyframe"].cpu(), c["keyframe"])
        assert float((grey * (g["fast"].cpu() - c["fast"]).abs()).mean()) < GRAPH_MEAN
        n += 1
    assert n == len(cpu) > 0


def test_resume_on_cuda_steps_fused_sgd_with_the_runs_own_settings(tmp_path, monkeypatch):
    """Train 1 step, checkpoint, --resume, step on: the fused SGD kernel needs the momentum buffers in the parameters'
    channels_last_3d strides; the resumed run reuses the interrupted run's measured precision and GPU settings
    (another cache, as on another machine: nothing is measured again)."""
    from slowfast_trt.data.manifest import read_manifest, to_videos
    from slowfast_trt.data.synth import synth
    from slowfast_trt.engines import gpu_policy
    from slowfast_trt.training.run import resolve_config
    from slowfast_trt.training.task import Classification
    from slowfast_trt.training.trainer import Trainer, TrainOptions

    synth(tmp_path / "data", videos=8, seed=3, frames=72, size="128x160", workers=2, val_fraction=0.0, progress=False)
    m = read_manifest(tmp_path / "data" / "train.csv")
    cfg = resolve_config("slowfast_tiny_4x16", m, {})
    real = gpu_policy.candidates
    monkeypatch.setattr(gpu_policy, "candidates", lambda *a, **kw: [s for s in real(*a, **kw) if s.channels_last])  # the cl3d case

    def trainer(resume: bool, max_steps: int) -> Trainer:
        opts = TrainOptions(
            out_dir=str(tmp_path / "run"), epochs=2, batch_size=4, amp="auto", device="cuda", max_steps=max_steps, progress=False
        )
        return Trainer(cfg, opts, Classification(to_videos(m)), resume=resume)

    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path / "cache-a"))
    first = trainer(False, 1)
    assert first.optimizer.defaults.get("fused") is True and first.memory_format == torch.channels_last_3d
    first.run()
    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path / "cache-b"))
    monkeypatch.setattr(gpu_policy, "measure_training", lambda *a, **kw: pytest.fail("--resume measured the GPU settings again"))
    resumed = trainer(True, 3)
    assert resumed.gpu_policy["resumed"] and resumed.gpu_policy["choice"] == first.gpu_policy["choice"]
    assert resumed.amp.name == first.amp.name and resumed.scaler.is_enabled() == first.scaler.is_enabled()
    for group in resumed.optimizer.param_groups:
        for p in group["params"]:
            assert resumed.optimizer.state[p]["momentum_buffer"].stride() == p.stride()
    result = resumed.run()  # crosses the epoch end: fused steps on the restored buffers
    assert resumed.global_step == 3 and all(np.isfinite(row["train_loss"]) for row in result["history"])


def test_too_small_h264_is_refused_before_the_run(tmp_path):
    path = tmp_path / "tiny.mp4"
    write_indexed_video(path, 80, 32, 16, codec="libx264")  # below H.264's 48x16; DALI's CPU decoder cannot read H.264
    v = [Video(0, str(path), 0, 80, 30.0, 32, 16)]
    cfg = model.get_config("slowfast_r50_4x16")
    with pytest.raises(SlowFastError, match=r"1 of 1 files .*H264 below .*--short-side"):
        ClipLoader(multiview_plan(v, cfg, 1), cfg, "decode", FeedSpec(batch_size=1, device="cuda"), videos=v)


def test_default_synthetic_set_trains_on_the_gpu(tmp_path):
    """`data synth` defaults (64x80 VP9) run unchanged on a GPU: routed to the CPU decoder, then AMP fp16 training steps."""
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
    assert trainer.loader.on_cpu  # every 64x80 VP9 file goes to DALI's CPU decoder
    assert trainer.amp.dtype == torch.float16 and trainer.scaler.is_enabled()
    result = trainer.run()
    assert all(np.isfinite(row["train_loss"]) and 0 <= row["data_wait"] <= 1 for row in result["history"])
    assert trainer.optimizer.defaults.get("fused") is True  # torch's fused SGD kernel on CUDA


def test_auto_amp_is_chosen_by_measurement_and_recorded(tmp_path, monkeypatch):
    from slowfast_trt.data.manifest import read_manifest, to_videos
    from slowfast_trt.data.synth import synth
    from slowfast_trt.training.run import resolve_config
    from slowfast_trt.training.task import Classification
    from slowfast_trt.training.trainer import Trainer, TrainOptions

    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path / "cache"))
    synth(tmp_path / "data", videos=8, seed=2, frames=72, size="128x160", workers=2, progress=False)
    m = read_manifest(tmp_path / "data" / "train.csv")
    cfg = resolve_config("slowfast_tiny_4x16", m, {})
    trainer = Trainer(
        cfg,
        TrainOptions(out_dir=str(tmp_path / "run"), epochs=1, batch_size=4, amp="auto", device="cuda", progress=False),
        Classification(to_videos(m)),
    )
    pol = trainer.gpu_policy
    assert pol and len(pol["timings_ms"]) == 12 and pol["choice"].split("-")[0].split("/")[0] == trainer.amp.name
    trainer.run()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["gpu_policy"]["choice"] == pol["choice"]
    assert (tmp_path / "cache" / "gpu_policy.json").is_file()


def test_half_precision_and_tuned_engines_agree_with_fp32(tmp_path, monkeypatch):
    """fp16/bf16 (autocast, or the tuned engine's choice) keep the fp32 top-1 on real-size random clips; logits within a bound."""
    from slowfast_trt.engines.torch_engine import TorchEngine
    from slowfast_trt.model.inputs import random_inputs

    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path / "cache"))
    net = randomize_(model.build("slowfast_r50_4x16", num_classes=400))
    x = random_inputs(net.config, size=224, batch=8, generator=torch.Generator().manual_seed(0))
    ref = TorchEngine(net, device="cuda", precision="fp32")(**x)
    tuned = {}
    for prec in ("fp16", "bf16"):
        for tune in (False, True):
            e = TorchEngine(net, device="cuda", precision=prec, tune=tune)
            out = e(**x)
            agree = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
            assert agree >= 0.875, (prec, tune, agree)
            assert (out - ref).abs().max().item() < (0.05 if prec == "fp16" else 0.25) * ref.abs().max().item()
            if tune:
                pol = next(iter(e.info["gpu_policy"].values()))
                tuned[prec] = pol
                assert pol["choice"].startswith(prec) and len(pol["timings_ms"]) >= 8
    keep("tuned-engines.json", tuned)  # how many of the 16 candidates produced a timing (failed graph captures are None)


def test_multiview_eval_on_the_gpu_matches_the_cpu(big_vp9):
    from slowfast_trt.engines.torch_engine import TorchEngine
    from slowfast_trt.training.evaluate import agreement, evaluate_engine

    net = randomize_(model.build("slowfast_tiny_4x16", num_classes=3))
    kw = dict(num_clips=2, num_crops=3, batch_size=2, progress=False)
    gpu = evaluate_engine(TorchEngine(net, device="cuda", precision="fp32"), big_vp9, FeedSpec(device="cuda", **kw))
    cpu = evaluate_engine(TorchEngine(net, device="cpu", precision="fp32"), big_vp9, FeedSpec(device="cpu", **kw))
    assert agreement(gpu, cpu, "2x3") == 100.0


def test_onnx_export_from_cuda_weights(tmp_path):
    from slowfast_trt.export.onnx import export_onnx

    net = randomize_(model.build("slowfast_tiny_4x16", num_classes=5)).cuda()
    ckpt = model.save(net, tmp_path / "cuda.safetensors")
    r = export_onnx(ckpt, tmp_path / "cuda.onnx")
    assert r.path.is_file() and r.sidecar["parity"]["max_abs_diff"] < 1e-3


def test_bench_model_reports_peak_memory_tuning_and_compile_time(tmp_path, monkeypatch):
    from slowfast_trt.benchmarks.throughput import bench_model, to_markdown

    monkeypatch.setenv("SLOWFAST_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = model.save(model.build("slowfast_tiny_4x16", num_classes=5), tmp_path / "m.safetensors")
    r = bench_model([str(ckpt)], batches=[4], warmup=2, iters=5, precisions=["fp16"], compile=True, device="cuda", progress=lambda _s: None)
    rows = {x["engine"]: x for x in r["rows"]}
    assert {"torch-fp16", "torch-tuned-fp16"} <= set(rows)
    assert all(x["peak_memory_mb"] > 0 for x in r["rows"])
    assert rows["torch-tuned-fp16"]["gpu_policy"]["choice"].startswith("fp16") and rows["torch-tuned-fp16"]["tune_s"] > 0
    if "torch-compile-fp16" in rows:  # or skipped with the compiler's reason
        assert rows["torch-compile-fp16"]["compile_s"] > 0
    assert "peak memory MB" in to_markdown(r)


def test_conv3d_ceiling_on_the_gpu():
    from slowfast_trt.benchmarks.conv_ceiling import conv_ceiling

    r = conv_ceiling("slowfast_r50_4x16", size=224, batch=8, precision="fp16", device="cuda", warmup=2, iters=5, progress=lambda _s: None)
    assert r["ceiling_clips_per_s"] > 0 and r["achieved_tflops"] > 0


def test_bench_pipeline_and_e2e_finish_within_a_minute(tmp_path):
    """256 clips, every loader incl. a PyAV DataLoader on every core: bounded by --budget, under 60 s each."""
    import os

    from slowfast_trt.benchmarks.e2e import bench_e2e
    from slowfast_trt.benchmarks.pipeline import bench_pipeline
    from slowfast_trt.data.manifest import read_manifest, to_videos
    from slowfast_trt.data.synth import synth

    synth(tmp_path / "data", videos=16, seed=4, frames=96, codec="h264", size="240x320", workers=4, progress=False)
    videos = to_videos(read_manifest(tmp_path / "data" / "manifest.csv"))
    threads = os.cpu_count() or 4
    cfg = model.get_config("slowfast_r50_4x16")
    t0 = time.perf_counter()
    r = bench_pipeline(videos, cfg, FeedSpec(device="cuda", batch_size=8, threads=threads), clips=256, progress=lambda _s: None)
    assert time.perf_counter() - t0 < 60 and "pyav_dataloader" in r["rows"] and r["rows"]["dali_train"]["decoded_frames_per_s"] > 0
    ckpt = model.save(model.build("slowfast_r50_4x16", num_classes=8), tmp_path / "r50.safetensors")
    t0 = time.perf_counter()
    e = bench_e2e(
        videos, ckpt, FeedSpec(device="cuda", batch_size=8, threads=threads), clips=256, precision="fp16", progress=lambda _s: None
    )
    assert time.perf_counter() - t0 < 60 and {x["pipeline"] for x in e["rows"]} == {"dali", "pyav"}
    keep("pipeline.json", r)
    keep("e2e.json", e)
