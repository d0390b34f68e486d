"""The training loop: the paper's recipe (SGD, momentum 0.9, wd 1e-4, warm-up + half cosine, dropout 0.5),
AMP, atomic checkpoints with full training state, exact resume, DDP through torchrun, validation per view.

Every source of randomness is seeded and saved: the data plan is a pure function of (seed, epoch, video)
(see dali_pipelines.plan), and torch/numpy/python RNG states travel in each checkpoint, so a run killed
at any point and resumed reproduces the uninterrupted run's weights and metrics.
"""

from __future__ import annotations

import copy
import csv
import inspect
import io
import json
import math
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slowfast_trt import model
from slowfast_trt.common.device import resolve_device, use_threads
from slowfast_trt.common.errors import EnvironmentFault, SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import train_plan
from slowfast_trt.data.manifest import Video
from slowfast_trt.engines import gpu_policy
from slowfast_trt.engines.torch_engine import TorchEngine
from slowfast_trt.model.build import build as model_build
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import random_inputs
from slowfast_trt.model.statedict import build_with_state
from slowfast_trt.training import distributed as dist_util
from slowfast_trt.training.amp import AmpPolicy, choose_policy
from slowfast_trt.training.evaluate import evaluate_engine
from slowfast_trt.training.schedule import lr_at, scaled_lr


@dataclass
class TrainOptions:
    """Everything a run needs besides the data; saved in every checkpoint so --resume can check it."""

    out_dir: str
    epochs: int = 10
    batch_size: int = 8  # per process (the paper: 8 clips per GPU)
    lr: float | None = None  # base LR; None = the paper's 1.6 scaled linearly to the global batch
    warmup_epochs: float = 1.0
    warmup_start_lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    amp: str = "auto"
    device: str = "auto"
    seed: int = 0
    save_every: int = 0  # steps between checkpoints (0: only at epoch ends)
    keep_last: int = 3
    val_clips: int = 3
    val_crops: int = 1
    val_every: int = 1  # epochs
    threads: int | None = None  # the CPU thread budget (common.threads); None: every CPU this process may use
    skip_bad: bool = False
    init: str | None = None
    progress: bool = True
    max_steps: int | None = None  # stop after this many steps (tests, smoke runs); the schedule still spans all epochs
    model_overrides: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # {"train": {"path", "sha256"}, "val": ...}: what --resume must find again


# Options whose change would make a resumed run differ from the uninterrupted one; --resume refuses a change.
RESULT_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "warmup_epochs",
    "warmup_start_lr",
    "momentum",
    "weight_decay",
    "amp",
    "seed",
    "skip_bad",
    "val_clips",
    "val_crops",
    "val_every",
)
STEP_FILE = re.compile(r"step_\d{8}\.safetensors")


class Checkpoints:
    """The run's checkpoint folder: step files, `latest.json` pointing at the newest, `best.safetensors`."""

    def __init__(self, out_dir: Path, keep_last: int):
        self.dir = out_dir / "checkpoints"
        self.keep_last = keep_last

    def path(self, step: int) -> Path:
        return self.dir / f"step_{step:08d}.safetensors"

    def latest(self) -> Path | None:
        """The newest checkpoint: the one `latest.json` names (a step file in this folder, nothing else), else the
        highest-numbered step file."""
        pointer = self.dir / "latest.json"
        if pointer.exists():
            try:
                name = json.loads(pointer.read_text())["file"]
            except (ValueError, KeyError, TypeError, OSError):
                name = None
            if name is not None and not (isinstance(name, str) and STEP_FILE.fullmatch(name)):
                raise SlowFastError(
                    f"{pointer} points at {name!r}, which is not a step checkpoint in {self.dir}; "
                    "delete latest.json to resume from the newest step file"
                )
            if name is not None and (self.dir / name).exists():
                return self.dir / name
        steps = sorted(self.dir.glob("step_*.safetensors"))
        return steps[-1] if steps else None

    def save(self, net: nn.Module, state: dict, step: int, best: bool = False) -> Path:
        path = self.path(step)
        previous = self.latest()
        try:
            model.save(net, path, training_state=state)
            atomic_write_text(self.dir / "latest.json", json.dumps({"file": path.name, "step": step}) + "\n")
        except OSError as e:
            then = "then --resume" if previous else "then run the same command with --overwrite (there is no checkpoint to resume from yet)"
            raise EnvironmentFault(
                f"could not write checkpoint {path} ({e.strerror or e}); "
                f"the previous checkpoint {previous or '(none)'} is intact; free disk space, {then}"
            ) from None
        if best:
            best_path = self.dir.parent / "best.safetensors"
            try:
                model.save(net, best_path, training_state=None)
            except OSError as e:
                raise EnvironmentFault(
                    f"could not write {best_path} ({e.strerror or e}); checkpoint {path} was saved; free disk space, then --resume"
                ) from None
        for old in sorted(self.dir.glob("step_*.safetensors"))[: -self.keep_last or None]:
            if old != path:
                for f in old.parent.glob(old.stem + "*"):
                    f.unlink(missing_ok=True)
        return path


def _tensorboard(log_dir: Path):
    """A TensorBoard writer when the `tensorboard` package is installed, else None (metrics.csv has everything)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: needs the optional `tensorboard` package
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


def _fresh_accumulators() -> dict:
    """Per-epoch sums behind the epoch's metrics row (kept in checkpoints so a resumed epoch reports the whole epoch)."""
    return {"loss_sum": 0.0, "n_loss": 0, "clips": 0, "seconds": 0.0, "data_wait_s": 0.0}


def data_wait_share(acc: dict) -> float:
    """Share of the epoch's step time spent blocked on the loader (0: never input-bound, 1: only waiting)."""
    return acc.get("data_wait_s", 0.0) / max(acc["seconds"], 1e-9)


def _rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(_np_state()),
        "python": json.dumps(_py_state()),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _np_state():
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def _py_state():
    v, state, gauss = random.getstate()
    return [v, list(state), gauss]


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    name, keys, pos, has_gauss, gauss = json.loads(s["numpy"])
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    v, state, gauss = json.loads(s["python"])
    random.setstate((v, tuple(state), gauss))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def match_param_layout(optimizer: torch.optim.Optimizer) -> int:
    """Give every per-parameter state tensor (SGD's momentum buffer) its parameter's strides; returns how many moved.

    Checkpoints store state tensors contiguous and `load_state_dict` keeps that layout, but CUDA's fused SGD needs
    parameters, gradients and buffers with equal strides: without this, the first step after `--resume` on
    channels_last_3d parameters raises."""
    moved = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    like = torch.empty_like(p, dtype=v.dtype)  # preserve_format: p's strides
                    like.copy_(v)
                    state[k] = like
                    moved += 1
    return moved


def _param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BatchNorm parameters (as the reference recipe), weight decay elsewhere."""
    bn, rest = [], []
    for m in net.modules():
        for p in m.parameters(recurse=False):
            (bn if isinstance(m, nn.modules.batchnorm._BatchNorm) else rest).append(p)
    return [{"params": rest, "weight_decay": weight_decay}, {"params": bn, "weight_decay": 0.0}]


def check_labels(videos: list[Video], cfg: SlowFastConfig, what: str) -> None:
    """Labels must be class ids in [0, num_classes)."""
    for v in videos:
        labels = v.label if isinstance(v.label, (list, tuple)) else [v.label]
        bad = [lab for lab in labels if not 0 <= int(lab) < cfg.num_classes]
        if bad:
            raise SlowFastError(
                f"{what}: {v.path} has label {bad[0]} outside [0, {cfg.num_classes - 1}]; fix the manifest or pass --num-classes"
            )


class Trainer:
    """Runs one training job; `run()` returns the final metrics."""

    def __init__(
        self,
        cfg: SlowFastConfig,
        opts: TrainOptions,
        train_videos: list[Video],
        val_videos: list[Video] | None = None,
        resume: bool = False,
    ):
        self.opts, self.out = opts, Path(opts.out_dir)
        self.device = resolve_device(opts.device)
        self.dist = dist_util.init(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)  # init() made it the current device
        self.threads = use_threads(opts.threads, model_on_cpu=self.device.type == "cpu")
        if not train_videos:
            raise SlowFastError("the training manifest has no videos")
        check_labels(train_videos, cfg, "training manifest")
        if val_videos:
            check_labels(val_videos, cfg, "validation manifest")
        self.train_videos, self.val_videos = train_videos, val_videos or []
        self.ckpts = Checkpoints(self.out, opts.keep_last)
        torch.manual_seed(opts.seed)
        np.random.seed(opts.seed)
        random.seed(opts.seed)

        state = None
        latest = self.ckpts.latest() if resume else None
        if resume and latest is None:
            raise SlowFastError(f"--resume: no checkpoint in {self.ckpts.dir}; start without --resume")
        if latest is not None:
            net, state = model.load(latest, with_state=True)
            have, want = net.config.to_dict(), cfg.to_dict()
            if have != want:
                field_ = next(k for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k))
                raise SlowFastError(
                    f"--resume: {latest} holds a model that differs from the requested {cfg.name} in {field_} "
                    f"({have.get(field_)!r} there, {want.get(field_)!r} now); use the same preset and options"
                )
            if state is None:
                raise SlowFastError(f"--resume: {latest} has no training state; start a new run from it with --init")
            self._check_resume(state)
        elif opts.init:
            net = model.load(opts.init) if str(opts.init).endswith(".safetensors") else model.convert(opts.init)
            net = self._adapt_init(net, cfg)
        else:
            net = model_build(cfg)
        self.cfg = net.config
        # channels_last_3d: ~2x faster conv3d/BatchNorm training on the CPU here, and the tensor-core layout on GPUs.
        self.net = net.to(self.device, memory_format=torch.channels_last_3d)
        self.module = self.net
        if self.dist.enabled:
            self.net = nn.parallel.DistributedDataParallel(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        global_batch = opts.batch_size * self.dist.world_size
        self.base_lr = opts.lr if opts.lr is not None else scaled_lr(global_batch)
        # CUDA: the fused SGD kernel (one launch for all parameters) where this torch has it; the CPU keeps the default.
        fused = {"fused": True} if self.device.type == "cuda" and "fused" in inspect.signature(torch.optim.SGD).parameters else {}
        self.optimizer = torch.optim.SGD(_param_groups(self.module, opts.weight_decay), lr=self.base_lr, momentum=opts.momentum, **fused)
        self.loader = self._make_loader(train_videos)
        self.steps_per_epoch = len(self.loader)
        self.total_steps = self.steps_per_epoch * opts.epochs
        self.warmup_steps = int(round(opts.warmup_epochs * self.steps_per_epoch))
        kept = self._resumed_amp(state)
        self.amp = kept or choose_policy(opts.amp, self.device, self.module, self._probe_inputs())
        self.memory_format = torch.channels_last_3d
        self.gpu_policy: dict | None = None
        if self.device.type == "cuda":
            saved = json.loads(state.get("gpu_policy", "null")) if state is not None else None
            self._choose_gpu_settings(saved, keep_precision=kept is not None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp.use_scaler)
        self.loss_fn = nn.BCEWithLogitsLoss() if self.cfg.multilabel else nn.CrossEntropyLoss()
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.acc = _fresh_accumulators()
        self.seen: list[int] = []  # video indices this rank read in the current epoch (written to data_log.jsonl)
        self.best = {"metric": None, "value": -math.inf, "step": None}
        self.last_good: Path | None = latest
        self.tb = _tensorboard(self.out / "tensorboard") if self.dist.is_main else None
        if state is not None:
            self._restore(state)

    # ----- set-up helpers (detection overrides the loader, inputs and validation: training/detect.py) -----
    def _make_loader(self, train_videos: list[Video]) -> ClipLoader:
        return ClipLoader(
            self._plan,
            self.cfg,
            "train",
            self.opts.batch_size,
            device=self.opts.device,
            threads=self.threads.dali,
            skip_bad=self.opts.skip_bad,
            videos=train_videos,
        )

    def _step_inputs(self, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        """(model inputs, loss target, clips in the batch) of one training batch."""
        clips = {p: batch[p].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format) for p in self.cfg.pathways}
        target = batch["label"].to(self.device)
        return clips, target, len(target)

    def _plan(self, epoch: int):
        plans = train_plan(self.train_videos, self.cfg, epoch, self.opts.seed, self.dist.rank, self.dist.world_size)
        if self.dist.enabled:  # equal steps on every rank: pad the shorter shards by repeating their first clips
            longest = math.ceil(len(self.train_videos) / self.dist.world_size)
            plans = plans + plans[: longest - len(plans)]
        return plans

    def _resumed_amp(self, state: dict | None) -> AmpPolicy | None:
        """On --resume of an `--amp auto` run: the precision the run started with (stored in its checkpoints).

        A new measurement on another machine or torch could choose another precision: fp16 -> bf16 would drop the
        loss scaler's state, bf16 -> fp16 would need a scaler state that was never saved."""
        saved = (state or {}).get("amp")
        if self.opts.amp != "auto" or saved is None:
            return None
        if saved == "fp16" and self.device.type != "cuda":
            raise SlowFastError("--resume: this run trains in fp16 (chosen by --amp auto on a GPU); resume it on a CUDA device")
        p = choose_policy(saved, self.device)
        return replace(p, reason=f"{p.reason}; kept from the interrupted run (--amp auto chose {saved})")

    def _choose_gpu_settings(self, saved: dict | None = None, keep_precision: bool = False) -> None:
        """Precision (for --amp auto), memory format and cuDNN autotuning by timing training steps (`engines.gpu_policy`), cached per machine.

        `saved`: the interrupted run's decision (--resume), used as it is; `keep_precision`: measure only the
        resumed run's precision."""
        precision = "auto" if self.opts.amp == "auto" and not keep_precision else self.amp.name
        inputs = self._probe_inputs()
        shapes = tuple(tuple(x.shape) for x in inputs.values())
        key = gpu_policy.cache_key(self.cfg.name, "train", precision, self.opts.batch_size, shapes)

        def step(s: gpu_policy.Setting):
            net = (
                copy.deepcopy(self.module).train().to(memory_format=torch.channels_last_3d if s.channels_last else torch.contiguous_format)
            )
            torch.backends.cudnn.benchmark = s.cudnn_benchmark
            xs = gpu_policy.prepare_inputs(list(inputs.values()), s)

            def run() -> None:
                with torch.autocast("cuda", dtype=gpu_policy.HALF.get(s.precision, torch.float32), enabled=s.precision != "fp32"):
                    loss = net(**dict(zip(inputs, xs))).float().square().mean()
                loss.backward()

            return run

        def measure() -> gpu_policy.Decision:
            regression = gpu_policy.conv3d_regression(self.module) if precision != "fp32" else None
            return gpu_policy.choose(gpu_policy.measure_training(step, gpu_policy.candidates(precision, "train")), regression)

        if saved is not None:
            decision, cached = gpu_policy.Decision.from_dict(saved), bool(saved.get("cached"))
        else:
            decision, cached = gpu_policy.decide(key, measure)
        if self.dist.enabled:  # every rank runs rank 0's choice: one precision and loss scaling across the all-reduce
            decision = gpu_policy.Decision.from_dict(dist_util.all_gather_object(decision.to_dict(), self.dist)[0])
        if decision.regression and self.dist.is_main:
            print(decision.regression, file=sys.stderr)
        s = decision.setting
        torch.backends.cudnn.benchmark = s.cudnn_benchmark
        self.memory_format = torch.channels_last_3d if s.channels_last else torch.contiguous_format
        self.module.to(memory_format=self.memory_format)
        if self.opts.amp == "auto":
            dtype = gpu_policy.HALF.get(s.precision)
            self.amp = AmpPolicy("cuda", dtype, dtype == torch.float16, f"CUDA: {decision.reason}")
        self.gpu_policy = decision.to_dict() | {"cached": cached} | ({"resumed": True} if saved is not None else {})

    def _probe_inputs(self) -> dict[str, torch.Tensor]:
        return random_inputs(self.cfg, size=self.cfg.crop_size, batch=self.opts.batch_size, device=self.device)

    def _adapt_init(self, net: nn.Module, cfg: SlowFastConfig) -> nn.Module:
        """Fine-tuning: the requested network filled with --init's weights (a fresh classifier when the class
        count differs); weights of another architecture are a one-line error naming the keys and shapes."""
        state = net.state_dict()
        if net.config.num_classes != cfg.num_classes or net.config.multilabel != cfg.multilabel:
            fresh_head = {k: v for k, v in model_build(cfg).state_dict().items() if k.startswith("head.")}
            state = {k: v for k, v in state.items() if not k.startswith("head.")} | fresh_head
        return build_with_state(cfg, state, f"--init {self.opts.init}")

    def _check_resume(self, state: dict) -> None:
        """--resume continues the same run: the same data (path and content) and every option that changes results."""
        saved = state.get("options", {})
        if saved.get("batch_size") != self.opts.batch_size or state.get("world_size", 1) != self.dist.world_size:
            raise SlowFastError("--resume needs the same --batch-size and number of processes as the interrupted run")
        for k in RESULT_OPTIONS:
            if k in saved and saved[k] != getattr(self.opts, k):
                raise SlowFastError(
                    f"--resume: {k} was {saved[k]!r} in the interrupted run and is {getattr(self.opts, k)!r} now; "
                    "resume with the same options, or start a new run in another --out"
                )
        saved_data = json.loads(state["data"]) if "data" in state else self.opts.data  # (older checkpoints did not record it)
        for which in sorted(set(saved_data) | set(self.opts.data)):
            have, want = saved_data.get(which) or {}, self.opts.data.get(which) or {}
            for k in ("path", "sha256"):
                if have.get(k) != want.get(k):
                    what = "content" if k == "sha256" else "path"
                    raise SlowFastError(
                        f"--resume: the {which} manifest's {what} differs from the interrupted run's "
                        f"({have.get('path')} then, {want.get('path')} now); resume with the same data, "
                        "or start a new run in another --out"
                    )

    def _restore(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        match_param_layout(self.optimizer)
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.history = json.loads(state["history"])
        self.seen = json.loads(state.get("seen", "[]"))
        self.acc = json.loads(state.get("epoch_sums", "null")) or _fresh_accumulators()
        self.best = json.loads(state["best"])
        _set_rng_state(state["rng"])

    def _state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "rng": _rng_state(),
            "history": json.dumps(self.history),
            "seen": json.dumps(self.seen),
            "epoch_sums": json.dumps(self.acc),
            "best": json.dumps(self.best),
            "options": {k: v for k, v in asdict(self.opts).items() if isinstance(v, (int, float, str, bool, type(None)))},
            "world_size": self.dist.world_size,
            "data": json.dumps(self.opts.data, sort_keys=True),
            "amp": self.amp.name,  # what --amp auto chose; --resume keeps it (`_resumed_amp`)
            "gpu_policy": json.dumps(self.gpu_policy),
        }

    # ----- the loop -----
    def _save(self, best: bool = False) -> None:
        if self.dist.is_main:
            self.last_good = self.ckpts.save(self.module, self._state(), self.global_step, best=best)
        dist_util.barrier(self.dist)

    def _then(self) -> str:
        return "--resume" if self.last_good else "run the same command with --overwrite (no checkpoint to resume from yet)"

    def _write_text(self, name: str, text: str) -> None:
        try:
            atomic_write_text(self.out / name, text)
        except OSError as e:
            raise EnvironmentFault(f"could not write {self.out / name} ({e.strerror or e}); free disk space, then {self._then()}") from None

    def _write_metrics(self) -> None:
        if not self.dist.is_main or not self.history:
            return
        keys = sorted({k for row in self.history for k in row}, key=lambda k: (k not in ("epoch", "step"), k))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.history)
        self._write_text("metrics.csv", buf.getvalue())

    def _log_data(self) -> None:
        """Append which videos each rank read this epoch to data_log.jsonl (audits shuffling and sharding)."""
        per_rank = dist_util.all_gather_object(self.seen, self.dist)
        self.seen = []
        if self.dist.is_main:
            try:
                with open(self.out / "data_log.jsonl", "a") as f:  # on a replayed epoch (resume), the last line counts
                    f.write(json.dumps({"epoch": self.epoch + 1, "videos_per_rank": per_rank}) + "\n")
            except OSError as e:
                raise EnvironmentFault(
                    f"could not write {self.out / 'data_log.jsonl'} ({e.strerror or e}); free disk space, then {self._then()}"
                ) from None

    def _validate(self) -> dict:
        was_training = self.module.training
        engine = TorchEngine(self.module, device=str(self.device), precision="fp32", channels_last=False)
        res = evaluate_engine(
            engine,
            self.val_videos,
            num_clips=self.opts.val_clips,
            num_crops=self.opts.val_crops,
            batch_size=self.opts.batch_size,
            device=self.opts.device,
            threads=self.threads.dali,
            skip_bad=self.opts.skip_bad,
            progress=False,
        )
        self.module.train(was_training)
        return res

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            self._write_text(
                "config.json",
                json.dumps(
                    {
                        "model": self.cfg.to_dict(),
                        "options": asdict(self.opts),
                        "amp": self.amp.reason,
                        "base_lr": self.base_lr,
                        "gpu_policy": self.gpu_policy,
                        "thread_split": self.threads.as_dict(),
                    },
                    indent=2,
                    default=str,
                )
                + "\n",
            )
        stop = False
        while self.epoch < self.opts.epochs and not stop:
            stop = self._run_epoch()
        self._write_metrics()
        if self.tb is not None:
            self.tb.close()
        dist_util.shutdown(self.dist)
        return {"history": self.history, "best": self.best, "last_checkpoint": str(self.last_good) if self.last_good else None}

    def _run_epoch(self) -> bool:
        self.loader.set_epoch(self.epoch)
        skip = self.step_in_epoch
        if skip:
            self.loader.plans = self.loader.plans[skip * self.opts.batch_size :]
        self.module.train()
        bar = progress_bar(
            total=self.steps_per_epoch,
            initial=skip,
            desc=f"epoch {self.epoch + 1}/{self.opts.epochs}",
            unit="step",
            enabled=self.opts.progress and self.dist.is_main,
        )
        acc, t0 = self.acc, time.perf_counter() - self.acc["seconds"]  # sums over the epoch survive a resume
        stop = False
        batches = iter(self.loader)
        while True:
            # data_wait: the time this process is blocked on the loader, as a share of the step (wait + compute);
            # the step's end is the loss read-back below, which waits for the device.
            t_wait = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            acc["data_wait_s"] = acc.get("data_wait_s", 0.0) + time.perf_counter() - t_wait
            lr = lr_at(self.global_step, self.total_steps, self.base_lr, self.warmup_steps, self.opts.warmup_start_lr)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            clips, target, n_clips = self._step_inputs(batch)
            with self.amp.autocast():
                logits = self.net(**clips)
            loss = self.loss_fn(logits.float(), target.float() if self.cfg.multilabel else target)
            if not torch.isfinite(loss):
                raise SlowFastError(
                    f"loss is {loss.item()} at step {self.global_step} (epoch {self.epoch + 1}); "
                    f"last good checkpoint: {self.last_good or 'none yet'}; lower --lr or use --amp fp32, then --resume"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.global_step += 1
            self.step_in_epoch += 1
            self.seen += batch["video"].tolist()
            acc["clips"] += n_clips
            acc["loss_sum"] += float(loss.detach())
            acc["n_loss"] += 1
            acc["seconds"] = time.perf_counter() - t0
            rate = acc["clips"] * self.dist.world_size / max(acc["seconds"], 1e-9)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4g}", clips_s=f"{rate:.1f}", data_wait=f"{data_wait_share(acc):.0%}")
            if self.tb is not None:
                self.tb.add_scalar("train/loss", float(loss.detach()), self.global_step)
                self.tb.add_scalar("train/lr", lr, self.global_step)
            bar.update(1)
            stop = bool(self.opts.max_steps and self.global_step >= self.opts.max_steps)
            if self.step_in_epoch < self.steps_per_epoch and (
                stop or (self.opts.save_every and self.global_step % self.opts.save_every == 0)
            ):
                self._save()
            if stop:
                break
        bar.close()
        if stop and self.step_in_epoch < self.steps_per_epoch:
            return True  # stopped by max_steps mid-epoch (checkpoint written above)
        # Otherwise the epoch is over, even when skipped bad videos made it shorter than planned.
        row = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "lr": lr_at(self.global_step - 1, self.total_steps, self.base_lr, self.warmup_steps, self.opts.warmup_start_lr),
            "train_loss": dist_util.all_reduce_mean(torch.tensor(acc["loss_sum"] / max(acc["n_loss"], 1)), self.dist).item(),
            "train_clips_per_s": acc["clips"] * self.dist.world_size / max(acc["seconds"], 1e-9),
            "data_wait": data_wait_share(acc),
        }
        is_best = False
        if self.val_videos and ((self.epoch + 1) % self.opts.val_every == 0 or self.epoch + 1 == self.opts.epochs):
            res = self._validate()
            for setting, metrics in res["results"].items():
                for k, v in metrics.items():
                    row[f"val_{setting}_{k}"] = v
            metric = "mAP" if self.cfg.multilabel else "top1"
            widest = list(res["results"])[-1]  # the KxN setting, which contains the others
            value = res["results"][widest][metric]
            if value > self.best["value"]:
                self.best = {"metric": f"val_{widest}_{metric}", "value": value, "step": self.global_step}
                is_best = True
        self.history.append(row)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    self.tb.add_scalar(f"epoch/{k}", v, self.global_step)
            self.tb.flush()
        self._log_data()
        self.epoch += 1
        self.step_in_epoch = 0
        self.acc = _fresh_accumulators()
        self._save(best=is_best)
        self._write_metrics()
        return stop
