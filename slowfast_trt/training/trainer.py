"""The training loop: the paper's recipe (SGD, momentum 0.9, wd 1e-4, warm-up + half cosine, dropout 0.5),
AMP, atomic checkpoints with full training state, exact resume, DDP through torchrun, validation per view.

`Trainer` assembles the parts, each in its own module: the run state and folder (`run_state`: save, restore,
resume checks), the optimisation step (`step`), the precision policy (`amp.choose_policy`), validation and the
best checkpoint (`validation`); what differs between classification and detection is a `task.Task`. The epoch
loop is here.

Every source of randomness is seeded and saved: the data plan is a pure function of (seed, epoch, video)
(see dali_pipelines.plan), and torch/numpy/python RNG states travel in each checkpoint, so a run killed
at any point and resumed reproduces the uninterrupted run's weights and metrics.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from slowfast_trt.common.device import apply_threads, resolve_device
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.dali_pipelines.plan import ClipPlan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.engines.gpu_policy import Decision
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import random_inputs
from slowfast_trt.training import distributed as dist_util
from slowfast_trt.training.amp import choose_policy
from slowfast_trt.training.run_state import (
    RunFolder,
    RunState,
    TrainOptions,
    check_resume,
    data_wait_share,
    initial_model,
    restore,
    resumed_model,
    resumed_precision,
    seed_everything,
    training_state,
)
from slowfast_trt.training.schedule import scaled_lr
from slowfast_trt.training.step import TrainStep, make_optimizer
from slowfast_trt.training.task import Task
from slowfast_trt.training.validation import Validation


def _tensorboard(log_dir: Path):
    """A TensorBoard writer when the `tensorboard` package is installed, else None (metrics.csv has everything)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: needs the optional `tensorboard` package
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


def feed_of(opts: TrainOptions, device: torch.device) -> FeedSpec:
    """The run's feed, decided once from its options: device, batch per process, the CPU thread budget (split
    between DALI and torch when the model trains on the CPU), bad-file policy."""
    return FeedSpec(
        device=opts.device, batch_size=opts.batch_size, threads=opts.threads, skip_bad=opts.skip_bad, model_on_cpu=device.type == "cpu"
    )


class Trainer:
    """Runs one training job of `task` (`task.Classification`, `detect.DetectionTask`); `run()` returns the final metrics."""

    def __init__(self, cfg: SlowFastConfig, opts: TrainOptions, task: Task, resume: bool = False):
        self.opts, self.out, self.task = opts, Path(opts.out_dir), task
        self.device = resolve_device(opts.device)
        self.dist = dist_util.init(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)  # init() made it the current device
        task.check(cfg)
        self.folder = RunFolder(self.out, opts.keep_last, self.dist, None)
        seed_everything(opts.seed)
        latest = self.folder.ckpts.latest() if resume else None
        if resume and latest is None:
            raise SlowFastError(f"--resume: no checkpoint in {self.folder.ckpts.dir}; start without --resume")
        state = None
        if latest is not None:
            net, state = resumed_model(latest, cfg)
            check_resume(state, opts, self.dist.world_size)
        else:
            net = initial_model(cfg, opts.init, lambda n, c: task.adapt_init(n, c, str(opts.init)))
        self.folder.last_good = latest
        self.cfg = net.config
        self.module = net.to(self.device, memory_format=torch.channels_last_3d)  # the layout DALI hands over; the policy may change it
        self.feed = feed_of(opts, self.device)
        apply_threads(self.feed.split)
        base_lr = opts.lr if opts.lr is not None else scaled_lr(opts.batch_size * self.dist.world_size)
        self.optimizer = make_optimizer(self.module, base_lr, opts.momentum, opts.weight_decay, self.device)
        self.loader = task.loader(self.cfg, self.feed, self._plans)
        self.steps_per_epoch = len(self.loader)
        self.amp = self._choose_precision(resumed_precision(state))
        self.amp.apply(self.module)
        # DDP (and SyncBatchNorm) after the precision probes, which run on each rank alone.
        self.net, self.module = dist_util.wrap(self.module, self.device, self.dist, sync_bn=opts.sync_bn)
        self.step = TrainStep(
            self.net,
            self.optimizer,
            self.amp,
            nn.BCEWithLogitsLoss() if self.cfg.multilabel else nn.CrossEntropyLoss(),
            base_lr=base_lr,
            total_steps=self.steps_per_epoch * opts.epochs,
            warmup_steps=int(round(opts.warmup_epochs * self.steps_per_epoch)),
            warmup_start_lr=opts.warmup_start_lr,
            multilabel=self.cfg.multilabel,
        )
        val_feed = self.feed.but(num_clips=opts.val_clips, num_crops=opts.val_crops)
        self.validation = Validation(task, val_feed, opts.val_every, opts.epochs, self.cfg.multilabel)
        self.state = (
            restore(state, self.optimizer, self.step.scaler, self.dist.rank, self.dist.world_size) if state is not None else RunState()
        )
        self.tb = _tensorboard(self.out / "tensorboard") if self.dist.is_main else None

    # ----- the parts, as the tests and callers see them -----
    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.step.scaler

    @property
    def base_lr(self) -> float:
        return self.step.base_lr

    @property
    def gpu_policy(self) -> dict | None:
        """The GPU measurement behind the precision policy (None on the CPU), as config.json records it."""
        return self.amp.gpu_decision

    @property
    def memory_format(self) -> torch.memory_format:
        return self.amp.memory_format

    @property
    def last_good(self) -> Path | None:
        return self.folder.last_good

    def _plans(self, epoch: int) -> list[ClipPlan]:
        return self.task.plans(self.cfg, epoch, self.opts.seed, self.dist.rank, self.dist.world_size)

    def _choose_precision(self, resumed: dict | None):
        """The run's precision policy (`amp.choose_policy`), timed on a probe batch; every rank takes rank 0's GPU choice;
        `resumed`: the interrupted run's decision, kept."""
        probe = random_inputs(self.cfg, size=self.cfg.crop_size, batch=self.opts.batch_size, device=self.device)

        def agree(decision: dict) -> dict:  # one precision and loss scaling across the all-reduce
            return Decision.from_dict(dist_util.all_gather_object(decision, self.dist)[0]).to_dict() if self.dist.enabled else decision

        def announce(line: str) -> None:
            if self.dist.is_main:
                print(line, file=sys.stderr)

        return choose_policy(self.opts.amp, self.device, self.module, probe, agree=agree, announce=announce, resumed=resumed)

    # ----- the loop -----
    def _save(self, best: bool = False) -> None:
        # Every rank's own sums and videos: rank 0 alone writes, but a resumed epoch must report all ranks' data.
        self.state.per_rank = dist_util.all_gather_object({"epoch_sums": self.state.sums, "seen": self.state.seen}, self.dist)
        state = training_state(
            self.state, self.optimizer, self.step.scaler, self.opts, self.dist.world_size, self.amp.name, self.gpu_policy
        )
        self.folder.save(self.module, state, self.state.global_step, best=best)

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            config = {
                "model": self.cfg.to_dict(),
                "options": asdict(self.opts),
                "amp": self.amp.reason,
                "base_lr": self.base_lr,
                "thread_split": self.feed.split.as_dict(),
            }
            self.folder.write_text("config.json", json.dumps(config | {"gpu_policy": self.gpu_policy}, indent=2, default=str) + "\n")
        stop = False
        while self.state.epoch < self.opts.epochs and not stop:
            stop = self.run_epoch()
        self.folder.write_metrics(self.state.history)
        if self.tb is not None:
            self.tb.close()
        dist_util.shutdown(self.dist)
        last = self.folder.last_good
        return {"history": self.state.history, "best": self.state.best, "last_checkpoint": str(last) if last else None}

    def run_epoch(self) -> bool:
        """Train the rest of the current epoch, then validate and checkpoint; True when --max-steps stopped the run."""
        stop = self._train_steps()
        if stop and self.state.step_in_epoch < self.steps_per_epoch:
            return True  # stopped by max_steps mid-epoch (checkpoint written in _train_steps)
        # Otherwise the epoch is over, even when skipped bad videos made it shorter than planned.
        self._end_epoch()
        return stop

    def _train_steps(self) -> bool:
        """The epoch's remaining steps (a resumed epoch skips the batches it already took); True when max_steps is reached."""
        st, opts = self.state, self.opts
        self.loader.set_epoch(st.epoch)
        skip = st.step_in_epoch
        if skip:
            self.loader.plans = self.loader.plans[skip * opts.batch_size :]
        self.module.train()
        bar = progress_bar(
            total=self.steps_per_epoch,
            initial=skip,
            desc=f"epoch {st.epoch + 1}/{opts.epochs}",
            unit="step",
            enabled=opts.progress and self.dist.is_main,
        )
        acc, t0 = st.sums, time.perf_counter() - st.sums["seconds"]  # sums over the epoch survive a resume
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
            inputs, target, n_clips = self.task.inputs(batch, self.cfg, self.device, self.amp.memory_format)
            lr = self.step.lr(st.global_step)
            loss = self.step.loss(st.global_step, inputs, target)
            if not torch.isfinite(loss):
                raise SlowFastError(
                    f"loss is {loss.item()} at step {st.global_step} (epoch {st.epoch + 1}); "
                    f"last good checkpoint: {self.last_good or 'none yet'}; lower --lr or use --amp fp32, then --resume"
                )
            self.step.update(loss)
            st.global_step += 1
            st.step_in_epoch += 1
            st.seen += batch["video"].tolist()
            acc["clips"] += n_clips
            acc["loss_sum"] += float(loss.detach())
            acc["n_loss"] += 1
            acc["seconds"] = time.perf_counter() - t0
            rate = acc["clips"] * self.dist.world_size / max(acc["seconds"], 1e-9)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4g}", clips_s=f"{rate:.1f}", data_wait=f"{data_wait_share(acc):.0%}")
            if self.tb is not None:
                self.tb.add_scalar("train/loss", float(loss.detach()), st.global_step)
                self.tb.add_scalar("train/lr", lr, st.global_step)
            bar.update(1)
            stop = bool(opts.max_steps and st.global_step >= opts.max_steps)
            if st.step_in_epoch < self.steps_per_epoch and (stop or (opts.save_every and st.global_step % opts.save_every == 0)):
                self._save()
            if stop:
                break
        bar.close()
        return stop

    def _end_epoch(self) -> None:
        """The epoch's metrics row (and validation), the data log, then the epoch-end checkpoint (best when it is)."""
        st, acc = self.state, self.state.sums
        row = {
            "epoch": st.epoch + 1,
            "step": st.global_step,
            "lr": self.step.lr(st.global_step - 1),
            "train_loss": dist_util.all_reduce_mean(torch.tensor(acc["loss_sum"] / max(acc["n_loss"], 1)), self.dist).item(),
            "train_clips_per_s": acc["clips"] * self.dist.world_size / max(acc["seconds"], 1e-9),
            "data_wait": data_wait_share(acc),
        }
        is_best = False
        if self.validation.due(st.epoch):
            val_row, is_best = self.validation.run(self.module, self.device, st)
            row |= val_row
        st.history.append(row)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    self.tb.add_scalar(f"epoch/{k}", v, st.global_step)
            self.tb.flush()
        self.folder.log_data(st.epoch, st.seen)
        st.seen = []
        st.next_epoch()
        self._save(best=is_best)
        self.folder.write_metrics(st.history)
