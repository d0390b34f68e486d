"""`slowfast demo`: the whole system on one machine, from synthetic videos to a benchmark report.

Synthetic motion data -> train SlowFast and its Slow-only counterpart -> multi-view evaluation of both ->
ONNX export -> INT8 with DALI calibration -> TensorRT plans (only with TensorRT and a GPU) -> benchmarks
(model, pipeline, e2e, accuracy FP32 vs INT8, Triton serving, flops) -> report.md. Every stage keeps its outputs in OUT and
records what it read and wrote in OUT/.stages/<stage>.json, so a re-run skips stages whose outputs exist,
are readable and were made from the same inputs, and an interrupted run resumes (training from its last
checkpoint).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from slowfast_trt.benchmarks import accuracy, e2e, flops, pipeline, throughput
from slowfast_trt.benchmarks.report import write_report
from slowfast_trt.benchmarks.serve_demo import serving_stage
from slowfast_trt.common.errors import EnvironmentFault, SlowFastError
from slowfast_trt.common.io import atomic_write, atomic_write_text
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import read_manifest, to_videos
from slowfast_trt.data.synth import synth
from slowfast_trt.engines.sidecar import read_sidecar
from slowfast_trt.export.onnx import export_onnx
from slowfast_trt.export.quantize import quantize_from_manifest
from slowfast_trt.export.tensorrt import build_engine
from slowfast_trt.model.checkpoint import read_info
from slowfast_trt.model.zoo import get_config
from slowfast_trt.training.run import train

# The demo's SlowFast takes time differences into its Fast pathway (Table 5c): with RGB the tiny network was still
# at chance after the CPU budget's epochs on the synthetic set (docs/training.md).
SLOWFAST, SLOW = "slowfast_tiny_4x16_timediff", "slow_tiny_4x16"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo mode; the training recipe the CPU budget allows."""

    videos: int  # synthetic videos (80% train, 20% val)
    epochs: int
    batch_size: int
    lr: float | None  # base learning rate; None: the paper's 1.6 scaled linearly to the batch (training.schedule)
    val_clips: int  # clips per video in the per-epoch validation
    eval_clips: int  # K of the multi-view evaluation (x 3 crops)
    calib_clips: int  # INT8 calibration clips (from the training split)
    pipeline_clips: int  # clips per loader in `bench pipeline`
    e2e_clips: int  # clips per pass in `bench e2e`


# 2-core CPU budgets: full <= 15 minutes, --quick <= 3 minutes.
# lr 0.05 at batch 8 for 20 epochs, with the tiny presets' dropout 0: the SlowFast reached 95.8% at 10x3 on the
# validation videos this way (0.005 with dropout 0.5 stayed below 50%; 0.1 was unstable; docs/training.md, "Recipe").
# INT8: 128 calibration clips with `export.quantize`'s default recipe (docs/int8.md has the measurements behind it).
FULL = DemoSettings(
    videos=480, epochs=20, batch_size=8, lr=0.05, val_clips=1, eval_clips=5, calib_clips=128, pipeline_clips=64, e2e_clips=32
)
QUICK = DemoSettings(videos=96, epochs=2, batch_size=8, lr=0.05, val_clips=1, eval_clips=2, calib_clips=8, pipeline_clips=16, e2e_clips=8)

# The paper's headline models next to the demo's, for the GFLOPs table.
FLOPS_PRESETS = (SLOWFAST, SLOW, "slowfast_r50_4x16", "slow_r50_4x16", "slowfast_r50_8x8", "slow_r50_8x8")
MARKER = "demo.json"
FAULT_ENV = "SLOWFAST_FAULT"  # demo:STAGE makes that GPU stage fail as a GPU failure would (tests of the CPU fallback)


def _valid(path: Path) -> bool:
    """An output is valid when it exists, is non-empty and (for the kinds we can check cheaply) parses."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".safetensors":
            read_info(path)
        elif path.suffix in (".onnx", ".plan"):
            read_sidecar(path)
    except (SlowFastError, OSError, ValueError):
        return False
    return True


def _stamp(paths: list[Path]) -> dict[str, list]:
    """Size and modification time of each input, so a stage re-runs when something it read has changed."""
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] if p.exists() else None for p in paths}


def _no_paths() -> list[Path]:
    return []


@dataclass(frozen=True)
class Stage:
    """One demo stage: `run(device)` does its work, with device 'auto' and, after a failure on the GPU, 'cpu'.

    `outputs` and `inputs` are called when the stage is checked, so they can follow what earlier stages did (no
    TensorRT plans after the TensorRT stage fell back, for instance)."""

    name: str
    title: str
    run: Callable[[str], None]
    outputs: Callable[[], list[Path]]
    inputs: Callable[[], list[Path]] = _no_paths
    gpu: bool = False  # uses the GPU where there is one: a failure there reruns the stage on the CPU


class InjectedFault(RuntimeError):
    """Raised where a GPU stage starts when SLOWFAST_FAULT names it, so the CPU fallback can be exercised without a GPU."""


def injected_faults(gpu_stages: list[str], value: str | None = None) -> set[str]:
    """The GPU stages SLOWFAST_FAULT names: `demo:STAGE[,demo:STAGE...]`, where STAGE is a stage name or its prefix before
    an underscore (`demo:train` names both training stages). A name that matches no GPU stage is a user error."""
    value = os.environ.get(FAULT_ENV, "") if value is None else value
    hit: set[str] = set()
    for entry in (e.strip() for e in value.split(",")):
        if not entry.startswith("demo:"):
            continue
        want = entry.removeprefix("demo:")
        match = {n for n in gpu_stages if n == want or n.startswith(want + "_")}
        if not match:
            raise SlowFastError(f"{FAULT_ENV}={value} names no GPU stage of the demo ({want!r}); GPU stages: {', '.join(gpu_stages)}")
        hit |= match
    return hit


class Demo:
    """Runs the stages in order, skipping those already done with unchanged inputs; a GPU stage that fails reruns on the CPU."""

    def __init__(
        self,
        out: str | Path,
        quick: bool,
        echo: Callable[[str], None] = print,
        progress: bool = True,
        settings: DemoSettings | None = None,
    ):
        self.out = Path(out)
        self.progress = progress
        self.quick = quick
        self.settings = settings or (QUICK if quick else FULL)
        self.echo = echo
        self.stages_dir = self.out / ".stages"
        self.t0 = time.perf_counter()
        self.gpu = torch.cuda.is_available()
        self.skipped_reasons: dict[str, str] = {}
        self.fallbacks: dict[str, str] = {}  # GPU stage -> why it failed there (it then ran on the CPU)
        self.faults: set[str] = set()
        self.step, self.total = 0, len(self.stages())

    # --- paths -------------------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.out / "data"

    def ckpt(self, preset: str) -> Path:
        """The trained model under its preset's name (tables name artifacts by file name)."""
        return self.out / "models" / f"{preset}.safetensors"

    def onnx(self, preset: str, int8: bool = False) -> Path:
        return self.out / "export" / f"{preset}{'.int8' if int8 else ''}.onnx"

    def plan(self, precision: str) -> Path:
        return self.out / "export" / f"{SLOWFAST}.{precision}.plan"

    def bench(self, name: str) -> Path:
        return self.out / "bench" / name

    # --- bookkeeping ---------------------------------------------------------------------------------------
    def claim(self) -> None:
        """Make OUT a demo folder, refusing a non-demo folder or one made in the other mode."""
        mine = {"mode": "quick" if self.quick else "full", "settings": asdict(self.settings)}
        marker = self.out / MARKER
        if marker.is_file():
            theirs = json.loads(marker.read_text(encoding="utf-8"))
            if theirs != mine:
                raise SlowFastError(
                    f"{self.out} holds a {theirs.get('mode')} demo with other settings; pass another --out "
                    "or delete the folder to start over"
                )
        elif self.out.exists() and any(self.out.iterdir()):
            raise SlowFastError(f"{self.out} is not empty and was not made by `slowfast demo`; pick a new --out")
        else:
            atomic_write_text(marker, json.dumps(mine, indent=2) + "\n")

    def run_stage(self, s: Stage) -> bool:
        """Run stage `s` unless its outputs are valid and made from the same inputs; returns True if it ran."""
        self.step += 1
        head = f"[{self.step}/{self.total}] {s.title}"
        record = self.stages_dir / f"{s.name}.json"
        try:
            done = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
        except (OSError, json.JSONDecodeError):
            done = {}
        if done.get("fallback"):  # what the stage's outputs are can depend on it (no plans after a failed TensorRT build)
            self.fallbacks[s.name] = done["fallback"]
        if done and done.get("inputs") == _stamp(s.inputs()) and all(_valid(p) for p in s.outputs()):
            if done.get("skipped"):
                self.skipped_reasons[s.name] = done["skipped"]
            notes = [x for x in (done.get("skipped"), done.get("fallback") and f"ran on the CPU: {done['fallback']}") if x]
            self.echo(f"{head}: done earlier, outputs kept{' (' + '; '.join(notes) + ')' if notes else ''}")
            return False
        self.fallbacks.pop(s.name, None)
        self.echo(f"{head} ... (elapsed {self._elapsed()})")
        t = time.perf_counter()
        self._attempt(s, head)
        missing = [str(p) for p in s.outputs() if not _valid(p)]
        if missing:
            raise SlowFastError(f"demo stage '{s.name}' finished without writing {missing[0]}; re-run `slowfast demo` to retry it")
        atomic_write_text(
            record,
            json.dumps(
                {
                    "inputs": _stamp(s.inputs()),
                    "outputs": [str(p) for p in s.outputs()],
                    "seconds": time.perf_counter() - t,
                    "skipped": self.skipped_reasons.get(s.name),
                    "fallback": self.fallbacks.get(s.name),
                },
                indent=2,
            )
            + "\n",
        )
        self.echo(f"{head}: {time.perf_counter() - t:.1f} s")
        return True

    def _attempt(self, s: Stage, head: str) -> None:
        """Run `s` where it would run; when a GPU stage fails on the GPU (NVDEC, a TensorRT build, cuDNN, anything but
        a full disk), say so in one line, keep the reason for report.md and run the stage again on the CPU."""
        if s.gpu and (self.gpu or s.name in self.faults):
            try:
                if s.name in self.faults:
                    raise InjectedFault(f"injected by {FAULT_ENV}={os.environ.get(FAULT_ENV)} where the GPU run of '{s.name}' starts")
                s.run("auto")
                return
            except EnvironmentFault:  # the disk, not the GPU: the CPU run would meet it too
                raise
            except Exception as e:
                lines = str(e).strip().splitlines()
                self.fallbacks[s.name] = f"{type(e).__name__}: {lines[0][:300] if lines else 'no message'}"
                self.echo(f"warning: {head}: failed on the GPU ({self.fallbacks[s.name]}); running it on the CPU")
        s.run("cpu" if s.name in self.fallbacks else "auto")

    def notes(self) -> list[str]:
        """report.md's record of the stages that fell back to the CPU or were skipped, with their reasons."""
        lines = [f"- `{n}` failed on the GPU and ran on the CPU: {why}" for n, why in self.fallbacks.items()]
        return lines + [f"- `{n}` {why}" for n, why in self.skipped_reasons.items()]

    def _elapsed(self) -> str:
        s = int(time.perf_counter() - self.t0)
        return f"{s // 60}:{s % 60:02d}"

    # --- stages --------------------------------------------------------------------------------------------
    def _synth(self) -> None:
        if self.data.exists():  # an interrupted synth leaves no marker; start the set afresh (our own folder)
            shutil.rmtree(self.data)
        synth(self.data, videos=self.settings.videos, seed=0, progress=self.progress)

    def _train(self, preset: str, device: str) -> None:
        run_dir = self.out / "train" / preset
        # After a failure on the GPU the CPU run starts afresh rather than resuming what the failed run saved.
        resume = (run_dir / "checkpoints" / "latest.json").is_file() and f"train_{preset}" not in self.fallbacks
        if resume:
            self.echo(f"  resuming {preset} from its last checkpoint")
        s = self.settings
        # No flip: the synthetic set's dash/drift classes are left vs right, and a flip would swap them.
        train(
            preset,
            str(self.data / "train.csv"),
            str(run_dir),
            val_manifest=str(self.data / "val.csv"),
            resume=resume,
            overwrite=not resume,  # a run killed before its first checkpoint leaves only config.json: start afresh
            model_overrides={"train_flip": False},
            epochs=s.epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            val_clips=s.val_clips,
            val_crops=1,
            device=device,
            threads=None,  # the budget of every CPU this process may use, split between DALI and torch (common.threads)
            progress=self.progress,
        )
        best = run_dir / "best.safetensors"
        if not best.is_file():
            raise SlowFastError(f"training {preset} wrote no best.safetensors in {run_dir}; see its metrics.csv")
        with atomic_write(self.ckpt(preset)) as f, open(best, "rb") as src:
            shutil.copyfileobj(src, f)

    def _videos(self, split: str = "val"):
        return to_videos(read_manifest(self.data / f"{split}.csv"))

    def feed(self, device: str) -> FeedSpec:
        """A stage's feed on `device` with the CPU budget of every CPU this process may use (split by the stage when a
        model runs beside the loader), decided once per stage; each sets its batch and views on it."""
        return FeedSpec(device=device, threads=None)

    def _accuracy(self, name: str, artifacts: list[Path], device: str) -> None:
        result = accuracy.bench_accuracy(
            self._videos(),
            [str(a) for a in artifacts],
            self.feed(device).but(batch_size=4, num_clips=self.settings.eval_clips, num_crops=3, progress=True),
            manifest=str(self.data / "val.csv"),
            progress=self._indent,
        )
        accuracy.write_results(result, self.bench(name))

    def _export(self) -> None:
        for preset in (SLOWFAST, SLOW):
            r = export_onnx(self.ckpt(preset), self.onnx(preset))
            p = r.sidecar.get("parity")
            if p:
                self._indent(
                    f"{r.path.name}: ONNX Runtime vs PyTorch max abs diff {p['max_abs_diff']:.2g}, "
                    f"top-1 agreement {100 * p['top1_agreement']:.0f}%"
                )

    def _int8(self, device: str) -> None:
        quantize_from_manifest(
            self.onnx(SLOWFAST),
            self.data / "train.csv",
            self.feed(device).but(skip_bad=None, progress=self.progress),
            clips=self.settings.calib_clips,
            seed=0,
            out=self.onnx(SLOWFAST, int8=True),
        )

    def tensorrt_unavailable(self) -> str | None:
        """Why TensorRT plans cannot be built here, or None when they can."""
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (`pip install tensorrt` on a machine with an NVIDIA GPU)"
        if not torch.cuda.is_available():
            return "no NVIDIA GPU is visible to torch"
        return None

    def _tensorrt(self, device: str) -> None:
        reason = self.tensorrt_unavailable()
        if reason:
            self.skipped_reasons["tensorrt"] = f"skipped: {reason}"
            self._indent(f"TensorRT plans skipped: {reason}")
            return
        if device == "cpu":  # the CPU path of this stage: no plans; the later stages use the ONNX models
            self._indent("no TensorRT plans: the later stages use the ONNX models")
            return
        build_engine(self.onnx(SLOWFAST), self.plan("fp16"), precision="fp16", max_batch=32)
        build_engine(self.onnx(SLOWFAST, int8=True), self.plan("int8"), precision="int8", max_batch=32)

    def plans(self, device: str = "auto") -> list[Path]:
        """The TensorRT plans a stage on `device` uses: none on the CPU, without TensorRT, or after its build failed."""
        if device == "cpu" or "tensorrt" in self.fallbacks or self.tensorrt_unavailable():
            return []
        return [self.plan("fp16"), self.plan("int8")]

    def artifacts(self, device: str = "auto") -> list[Path]:
        """Every model the benchmarks compare: both checkpoints, both ONNX exports, the INT8 export, the plans."""
        return [
            self.ckpt(SLOWFAST),
            self.ckpt(SLOW),
            self.onnx(SLOWFAST),
            self.onnx(SLOW),
            self.onnx(SLOWFAST, int8=True),
            *self.plans(device),
        ]

    def _bench_model(self, device: str) -> None:
        result = throughput.bench_model([str(a) for a in self.artifacts(device)], device=device, progress=self._indent)
        throughput.write_results(result, self.bench("model"))

    def _bench_pipeline(self, device: str) -> None:
        result = pipeline.bench_pipeline(
            self._videos(),
            get_config(SLOWFAST),
            self.feed(device).but(batch_size=8),
            clips=self.settings.pipeline_clips,
            progress=self._indent,
        )
        pipeline.write_results(result, self.bench("pipeline"))

    def _bench_e2e(self, device: str) -> None:
        if device != "cpu" and torch.cuda.is_available():  # DALI mixed decode feeding the fp16 plan, or torch fp16 without TensorRT
            artifact, precision = (self.plan("fp16"), "fp32") if self.plans() else (self.ckpt(SLOWFAST), "fp16")
        else:
            artifact, precision = self.onnx(SLOWFAST), "fp32"
        result = e2e.bench_e2e(
            self._videos(),
            artifact,
            self.feed(device).but(batch_size=4),
            clips=self.settings.e2e_clips,
            precision=precision,
            manifest=str(self.data / "val.csv"),
            progress=self._indent,
        )
        e2e.write_results(result, self.bench("e2e"))

    def _serve(self) -> None:
        try:
            serving_stage(
                self.onnx(SLOWFAST),
                self.data / "val.csv",
                self.data / "classes.txt",
                self.out / "serve" / "repo",
                self.bench("serve"),
                clips=self.settings.eval_clips,
                duration=2.0 if self.quick else 5.0,
                echo=self._indent,
            )
            done = {"result": str(self.bench("serve") / "result.json")}
        except SlowFastError as e:  # no Triton venv here (no network, no wheel): the demo goes on, as without TensorRT
            self.skipped_reasons["serve"] = f"skipped: {e}"
            self._indent(f"serving skipped: {e}")
            done = {"skipped": str(e)}
        atomic_write_text(self.out / "serve" / "stage.json", json.dumps(done, indent=2) + "\n")

    def _bench_flops(self) -> None:
        flops.write_results(flops.flops_table(list(FLOPS_PRESETS)), self.bench("flops"))

    def _report(self) -> None:
        write_report([self.out / "bench"], self.out, notes=self.notes())

    def _indent(self, line: str) -> None:
        if self.progress or line.startswith(("warning", "skipped")):
            self.echo(f"  {line}")

    def stages(self) -> list[Stage]:
        """Every stage, in order; `gpu=True` marks those that use a GPU where there is one (and fall back to the CPU)."""
        s = self.settings
        csvs = [self.data / "train.csv", self.data / "val.csv"]
        ckpts = [self.ckpt(SLOWFAST), self.ckpt(SLOW)]
        onnx = [self.onnx(SLOWFAST), self.onnx(SLOW)]
        int8 = self.onnx(SLOWFAST, int8=True)
        results = ("accuracy-models", "model", "pipeline", "e2e", "accuracy-int8", "serve", "flops")
        return [
            Stage("data", f"synthetic data ({s.videos} videos)", lambda _d: self._synth(), lambda: [*csvs, self.data / "synth.json"]),
            *(
                Stage(
                    f"train_{p}",
                    f"train {p} ({s.epochs} epochs)",
                    lambda d, p=p: self._train(p, d),
                    lambda p=p: [self.ckpt(p)],
                    lambda: csvs,
                    gpu=True,
                )
                for p in (SLOWFAST, SLOW)
            ),
            Stage(
                "eval",
                "multi-view evaluation, SlowFast vs Slow-only",
                lambda d: self._accuracy("accuracy-models", ckpts, d),
                lambda: [self.bench("accuracy-models") / "result.json"],
                lambda: [*ckpts, csvs[1]],
                gpu=True,
            ),
            Stage("export", "export ONNX (with PyTorch parity check)", lambda _d: self._export(), lambda: onnx, lambda: ckpts),
            Stage(
                "int8",
                f"INT8 quantization, DALI calibration on {s.calib_clips} training clips",
                self._int8,
                lambda: [int8],
                lambda: [onnx[0], csvs[0]],
                gpu=True,
            ),
            Stage("tensorrt", "TensorRT plans", self._tensorrt, self.plans, lambda: [onnx[0], int8], gpu=True),
            Stage(
                "bench_model",
                "bench model: clips/s per backend, precision and batch",
                self._bench_model,
                lambda: [self.bench("model") / "result.json"],
                self.artifacts,
                gpu=True,
            ),
            Stage(
                "bench_pipeline",
                "bench pipeline: DALI vs PyAV loading",
                self._bench_pipeline,
                lambda: [self.bench("pipeline") / "result.json"],
                lambda: csvs,
                gpu=True,
            ),
            Stage(
                "bench_e2e",
                "bench e2e: encoded video to scores",
                self._bench_e2e,
                lambda: [self.bench("e2e") / "result.json"],
                lambda: [*self.artifacts(), csvs[1]],
                gpu=True,
            ),
            Stage(
                "bench_accuracy",
                "bench accuracy: FP32 vs INT8 (and TensorRT plans)",
                lambda d: self._accuracy("accuracy-int8", [onnx[0], int8, *self.plans(d)], d),
                lambda: [self.bench("accuracy-int8") / "result.json"],
                lambda: [onnx[0], int8, *self.plans(), csvs[1]],
                gpu=True,
            ),
            Stage(
                "serve",
                "serve: Triton (Python backend) on 127.0.0.1, load test and parity",
                lambda _d: self._serve(),
                lambda: [self.out / "serve" / "stage.json"],
                lambda: [onnx[0], csvs[1]],
            ),
            Stage(
                "bench_flops",
                "bench flops: GFLOPs against the paper",
                lambda _d: self._bench_flops(),
                lambda: [self.bench("flops") / "result.json"],
            ),
            Stage(
                "report",
                "report",
                lambda _d: self._report(),
                lambda: [self.out / "report.md"],
                lambda: [self.bench(n) / "result.json" for n in results],
            ),
        ]

    def run(self) -> Path:
        """All stages; returns the report's path."""
        stages = self.stages()
        self.faults = injected_faults([st.name for st in stages if st.gpu])  # a bad name fails before OUT is touched
        self.claim()
        mode = "quick" if self.quick else "full"
        s = self.settings
        self.echo(
            f"slowfast demo ({mode}): {s.videos} synthetic videos, {s.epochs} epochs at batch {s.batch_size}, "
            f"K={s.eval_clips} x 3 views; outputs in {self.out}"
        )
        for st in stages:
            self.run_stage(st)
        report = self.out / "report.md"
        self.echo(f"demo finished in {self._elapsed()}; report: {report}")
        return report


def run_demo(out: str | Path | None = None, quick: bool = False, echo: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Run (or resume) the demo into `out` (default: demo-out, or demo-out-quick); returns the report path.

    `progress=False` keeps the stage lines and drops the per-stage bars and benchmark rows.
    """
    return Demo(out or ("demo-out-quick" if quick else "demo-out"), quick, echo, progress).run()
