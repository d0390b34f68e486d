"""A training run's state and its folder: counters, history and best metric; atomic checkpoints; save, restore, resume checks.

Everything that must survive a kill travels in each checkpoint (`training_state`): optimizer and scaler, the epoch's
running sums, the videos seen, the best metric so far and the torch/numpy/python RNG states, so a resumed run
reproduces the uninterrupted one. `--resume` refuses a run whose data or result-changing options differ.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slowfast_trt import model
from slowfast_trt.common.errors import EnvironmentFault, SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.model.build import build as model_build
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.training import distributed as dist_util


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
    sync_bn: bool = False  # SyncBatchNorm across DDP ranks (CUDA only)
    max_steps: int | None = None  # stop after this many steps (tests, smoke runs); the schedule still spans all epochs
    model_overrides: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # {"train": {"path", "sha256"}, "val": ...}: what --resume must find again

    def __post_init__(self) -> None:
        """The numeric options must be finite (a NaN learning rate trains NaN weights and exits 0) and in range."""
        for name in FLOAT_OPTIONS:
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise SlowFastError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v!r}")
        if self.lr is not None and self.lr <= 0:
            raise SlowFastError(f"--lr must be > 0, got {self.lr!r}")


FLOAT_OPTIONS = ("lr", "warmup_epochs", "warmup_start_lr", "momentum", "weight_decay")


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
    "sync_bn",
)
STEP_FILE = re.compile(r"step_\d{8}\.safetensors")


def fresh_sums() -> dict:
    """Per-epoch sums behind the epoch's metrics row (kept in checkpoints so a resumed epoch reports the whole epoch)."""
    return {"loss_sum": 0.0, "n_loss": 0, "clips": 0, "seconds": 0.0, "data_wait_s": 0.0}


def data_wait_share(acc: dict) -> float:
    """Share of the epoch's step time spent blocked on the loader (0: never input-bound, 1: only waiting)."""
    return acc.get("data_wait_s", 0.0) / max(acc["seconds"], 1e-9)


@dataclass
class RunState:
    """Where the run is: epoch and step counters, the metrics rows so far, this epoch's sums and videos, the best metric."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # video indices this rank read in the current epoch (data_log.jsonl)
    sums: dict = field(default_factory=fresh_sums)
    best: dict = field(default_factory=lambda: {"metric": None, "value": -float("inf"), "step": None})
    per_rank: list[dict] | None = None  # every rank's `sums` and `seen` at the last checkpoint (DDP): rank 0 alone writes

    def next_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch = 0
        self.sums = fresh_sums()


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


def seed_everything(seed: int) -> None:
    """torch, numpy and python RNGs from one seed (a resumed run then restores the saved states)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


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


def training_state(
    run: RunState, optimizer, scaler, opts: TrainOptions, world_size: int, precision: str, gpu_decision: dict | None
) -> dict:
    """What a checkpoint carries besides the weights: everything `restore` needs to continue exactly, and the precision
    (and GPU setting) the run decided, which `--resume` keeps (`amp.choose_policy(resumed=...)`)."""
    return {
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": run.epoch,
        "step_in_epoch": run.step_in_epoch,
        "global_step": run.global_step,
        "rng": _rng_state(),
        "history": json.dumps(run.history),
        "seen": json.dumps(run.seen),
        "epoch_sums": json.dumps(run.sums),
        "per_rank": json.dumps(run.per_rank),
        "best": json.dumps(run.best),
        "options": {k: v for k, v in asdict(opts).items() if isinstance(v, (int, float, str, bool, type(None)))},
        "world_size": world_size,
        "data": json.dumps(opts.data, sort_keys=True),
        "amp": precision,
        "gpu_policy": json.dumps(gpu_decision),
    }


def restore(state: dict, optimizer, scaler, rank: int = 0, world_size: int = 1) -> RunState:
    """Load a checkpoint's optimizer, scaler and RNG states; the run state it was saved at, with rank `rank`'s own
    epoch sums and videos where the checkpoint has every rank's (a resumed epoch reports all ranks' data)."""
    optimizer.load_state_dict(state["optimizer"])
    match_param_layout(optimizer)
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    run = RunState(
        epoch=state["epoch"],
        step_in_epoch=state["step_in_epoch"],
        global_step=state["global_step"],
        history=json.loads(state["history"]),
        seen=json.loads(state.get("seen", "[]")),
        sums=json.loads(state.get("epoch_sums", "null")) or fresh_sums(),
        best=json.loads(state["best"]),
    )
    per_rank = json.loads(state.get("per_rank", "null"))
    if per_rank and len(per_rank) == world_size:
        run.sums, run.seen = per_rank[rank]["epoch_sums"], per_rank[rank]["seen"]
    return run


def resumed_precision(state: dict | None) -> dict | None:
    """The precision decision a checkpoint recorded (`training_state`): {"amp": name, "gpu_policy": dict or None}."""
    if state is None or "amp" not in state:
        return None
    return {"amp": state["amp"], "gpu_policy": json.loads(state.get("gpu_policy", "null"))}


def check_resume(state: dict, opts: TrainOptions, world_size: int) -> None:
    """--resume continues the same run: the same data (path and content) and every option that changes results."""
    saved = state.get("options", {})
    if saved.get("batch_size") != opts.batch_size or state.get("world_size", 1) != world_size:
        raise SlowFastError("--resume needs the same --batch-size and number of processes as the interrupted run")
    for k in RESULT_OPTIONS:
        if k in saved and saved[k] != getattr(opts, k):
            raise SlowFastError(
                f"--resume: {k} was {saved[k]!r} in the interrupted run and is {getattr(opts, k)!r} now; "
                "resume with the same options, or start a new run in another --out"
            )
    saved_data = json.loads(state["data"]) if "data" in state else opts.data  # (older checkpoints did not record it)
    for which in sorted(set(saved_data) | set(opts.data)):
        have, want = saved_data.get(which) or {}, opts.data.get(which) or {}
        for k in ("path", "sha256"):
            if have.get(k) != want.get(k):
                what = "content" if k == "sha256" else "path"
                raise SlowFastError(
                    f"--resume: the {which} manifest's {what} differs from the interrupted run's "
                    f"({have.get('path')} then, {want.get('path')} now); resume with the same data, "
                    "or start a new run in another --out"
                )


def resumed_model(latest: Path, cfg: SlowFastConfig) -> tuple[nn.Module, dict]:
    """The network and training state of the checkpoint `--resume` continues; refused when it holds another model."""
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
    return net, state


def initial_model(cfg: SlowFastConfig, init: str | None, adapt_init) -> nn.Module:
    """A new run's network: `init`'s weights fitted to `cfg` by `adapt_init(net, cfg)`, or freshly built."""
    if init:
        net = model.load(init) if str(init).endswith(".safetensors") else model.convert(init)
        return adapt_init(net, cfg)
    return model_build(cfg)


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


class RunFolder:
    """The run's files on the main rank: checkpoints, config.json, metrics.csv, data_log.jsonl; each write says how to go on."""

    def __init__(self, out: Path, keep_last: int, dist: dist_util.DistInfo, latest: Path | None):
        self.out, self.dist = out, dist
        self.ckpts = Checkpoints(out, keep_last)
        self.last_good: Path | None = latest

    def save(self, module: nn.Module, state: dict, step: int, best: bool = False) -> None:
        if self.dist.is_main:
            self.last_good = self.ckpts.save(module, state, step, best=best)
        dist_util.barrier(self.dist)

    def then(self) -> str:
        """How to continue after a failed write: from the last checkpoint, or afresh when there is none yet."""
        return "--resume" if self.last_good else "run the same command with --overwrite (no checkpoint to resume from yet)"

    def write_text(self, name: str, text: str) -> None:
        try:
            atomic_write_text(self.out / name, text)
        except OSError as e:
            raise EnvironmentFault(f"could not write {self.out / name} ({e.strerror or e}); free disk space, then {self.then()}") from None

    def write_metrics(self, history: list[dict]) -> None:
        if not self.dist.is_main or not history:
            return
        keys = sorted({k for row in history for k in row}, key=lambda k: (k not in ("epoch", "step"), k))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
        self.write_text("metrics.csv", buf.getvalue())

    def log_data(self, epoch: int, seen: list[int]) -> None:
        """Append which videos each rank read in `epoch` to data_log.jsonl (audits shuffling and sharding)."""
        per_rank = dist_util.all_gather_object(seen, self.dist)
        if self.dist.is_main:
            try:
                with open(self.out / "data_log.jsonl", "a") as f:  # on a replayed epoch (resume), the last line counts
                    f.write(json.dumps({"epoch": epoch + 1, "videos_per_rank": per_rank}) + "\n")
            except OSError as e:
                raise EnvironmentFault(
                    f"could not write {self.out / 'data_log.jsonl'} ({e.strerror or e}); free disk space, then {self.then()}"
                ) from None
