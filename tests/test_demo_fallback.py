"""The demo always ends with a report: a GPU stage that fails (here: a fault injected with SLOWFAST_FAULT, or a
RuntimeError raised on the GPU path) prints one line, keeps the reason for report.md and reruns on the CPU path.

The stage runner is tested on stand-in stages (seconds); one small end-to-end run of the real demo checks the line,
the CPU rerun of the faulted stage, the reason in report.md and that the demo completes."""

from __future__ import annotations

import json

import pytest

from slowfast_trt.benchmarks import demo
from slowfast_trt.benchmarks.demo import FAULT_ENV, Demo, DemoSettings, Stage, injected_faults
from slowfast_trt.common.errors import EnvironmentFault, SlowFastError
from slowfast_trt.common.threads import split

pytest.importorskip("nvidia.dali")
pytest.importorskip("onnxruntime")


@pytest.fixture
def runner(tmp_path):
    """A claimed demo folder with a line collector, and a GPU stage that writes its output and records its device."""
    lines: list[str] = []
    d = Demo(tmp_path / "demo", quick=True, echo=lines.append)
    d.claim()
    out, calls = tmp_path / "demo" / "out.json", []

    def work(device: str) -> None:
        calls.append(device)
        out.write_text(json.dumps({"device": device}))

    return d, lines, calls, Stage("gpu_stage", "a GPU stage", work, lambda: [out], gpu=True)


def _warnings(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.startswith("warning:")]


def test_an_injected_fault_reruns_the_stage_on_the_cpu_with_one_line(runner, monkeypatch):
    d, lines, calls, stage = runner
    monkeypatch.setenv(FAULT_ENV, "demo:gpu_stage")
    d.faults = injected_faults([stage.name])
    assert d.run_stage(stage) is True
    assert calls == ["cpu"]  # the GPU run never started; the CPU path ran once
    (line,) = _warnings(lines)
    assert "\n" not in line and "a GPU stage: failed on the GPU (InjectedFault: " in line and line.endswith("running it on the CPU")
    record = json.loads((d.stages_dir / "gpu_stage.json").read_text())
    assert record["fallback"].startswith("InjectedFault: injected by SLOWFAST_FAULT=demo:gpu_stage")
    assert d.notes() == [f"- `gpu_stage` failed on the GPU and ran on the CPU: {record['fallback']}"]


def test_a_gpu_error_keeps_its_first_line_as_the_reason(runner):
    """What a real failure looks like: the GPU run raises (a CUDA error here); the CPU run then succeeds."""
    d, lines, calls, stage = runner
    d.gpu = True

    def cuda_fails(device: str) -> None:
        if device != "cpu":
            calls.append(device)
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be reported later")
        stage.run(device)

    assert d.run_stage(Stage(stage.name, stage.title, cuda_fails, stage.outputs, gpu=True)) is True
    assert calls == ["auto", "cpu"]
    assert d.fallbacks == {"gpu_stage": "RuntimeError: CUDA error: an illegal memory access was encountered"}
    assert len(_warnings(lines)) == 1
    # A re-run finds the stage done and still knows it ran on the CPU (report.md is rebuilt from the records).
    d2 = Demo(d.out, quick=True, echo=lines.append)
    assert d2.run_stage(Stage(stage.name, stage.title, cuda_fails, stage.outputs, gpu=True)) is False
    assert d2.fallbacks == d.fallbacks and "ran on the CPU: RuntimeError" in lines[-1]


def test_no_fallback_for_cpu_stages_full_disks_or_a_failing_cpu_rerun(runner):
    d, lines, calls, stage = runner
    d.gpu = True

    def fails(exc):
        def run(device: str) -> None:
            calls.append(device)
            raise exc

        return run

    with pytest.raises(RuntimeError, match="not a GPU stage"):  # gpu=False: the error is the stage's own
        d.run_stage(Stage("cpu_stage", "a CPU stage", fails(RuntimeError("not a GPU stage")), stage.outputs))
    with pytest.raises(EnvironmentFault):  # the disk would fail the CPU run too
        d.run_stage(Stage("disk", "a GPU stage", fails(EnvironmentFault("disk full")), stage.outputs, gpu=True))
    calls.clear()
    with pytest.raises(RuntimeError, match="broken everywhere"):  # the CPU rerun's own failure is not retried
        d.run_stage(Stage("both", "a GPU stage", fails(RuntimeError("broken everywhere")), stage.outputs, gpu=True))
    assert calls == ["auto", "cpu"]


def test_fault_names_select_gpu_stages_and_unknown_names_are_refused(tmp_path):
    d = Demo(tmp_path / "demo", quick=True)
    gpu = [s.name for s in d.stages() if s.gpu]
    assert d.total == len(d.stages()) == len({s.name for s in d.stages()})  # the step count comes from the list
    assert injected_faults(gpu, "demo:train") == {n for n in gpu if n.startswith("train_")} and len(injected_faults(gpu, "demo:train")) == 2
    assert injected_faults(gpu, "demo:int8, demo:tensorrt,other:thing") == {"int8", "tensorrt"}
    assert injected_faults(gpu, "") == set()
    with pytest.raises(SlowFastError, match="names no GPU stage .*'data'.*GPU stages: train_"):
        injected_faults(gpu, "demo:data")


def test_after_the_tensorrt_stage_falls_back_no_stage_expects_plans(tmp_path, monkeypatch):
    d = Demo(tmp_path / "demo", quick=True)
    monkeypatch.setattr(d, "tensorrt_unavailable", lambda: None)  # as on a GPU machine with TensorRT
    assert len(d.plans()) == 2 and d.plans("cpu") == [] and len(d.artifacts()) == 7
    d.fallbacks["tensorrt"] = "RuntimeError: the build failed"
    assert d.plans() == [] and len(d.artifacts()) == 5
    tensorrt = next(s for s in d.stages() if s.name == "tensorrt")
    assert tensorrt.outputs() == []


def test_the_demo_completes_with_a_faulted_stage_rerun_on_the_cpu(tmp_path, monkeypatch):
    """End to end at the smallest sizes: the faulted training stage reruns on the CPU, report.md names the reason."""

    def no_triton(*args, **kwargs):
        raise SlowFastError("no Triton venv in this test")  # the serving stage's own skip, without building a venv

    monkeypatch.setattr(demo, "serving_stage", no_triton)
    monkeypatch.setenv(FAULT_ENV, "demo:train_slow_tiny_4x16")
    tiny = DemoSettings(videos=16, epochs=1, batch_size=4, lr=0.05, val_clips=1, eval_clips=1, calib_clips=2, pipeline_clips=4, e2e_clips=4)
    lines: list[str] = []
    report = Demo(tmp_path / "demo", quick=True, echo=lines.append, progress=False, settings=tiny).run()

    (line,) = _warnings(lines)
    assert "train slow_tiny_4x16 (1 epochs): failed on the GPU (InjectedFault: " in line and line.endswith("running it on the CPU")
    config = json.loads((tmp_path / "demo" / "train" / "slow_tiny_4x16" / "config.json").read_text())
    assert config["options"]["device"] == "cpu"  # the rerun took the CPU path
    assert config["thread_split"] == split(None, model_on_cpu=True).as_dict()  # the demo trains on the whole budget, split
    text = report.read_text()
    assert "## Notes" in text and "- `train_slow_tiny_4x16` failed on the GPU and ran on the CPU: InjectedFault: injected by" in text
    assert "- `serve` skipped: no Triton venv in this test" in text
    assert lines[-1].startswith("demo finished in") and (tmp_path / "demo" / "bench" / "accuracy-int8" / "result.json").is_file()
