"""The clip loader: plans -> DALI pipeline -> PyTorch batches, with epoch length, device choice and bad-file handling.

Yields dicts of torch tensors (on the GPU when DALI runs there): `slow` N,3,T,H,W; `fast` N,C_f,alpha*T,H_f,W_f
(already in the config's Fast-input form); `label` (ids, or multi-hot for multi-label models); `video`,
`clip`, `crop` indices for aggregating test views. On the CPU, DALI decodes and torch does the spatial ops
(`dali_pipelines.spatial`); `spatial="dali"` keeps every op in the DALI graph, as on a GPU. A file that fails
to decode is found by probing the samples of the failing batch, reported by name, and (with `skip_bad=True`)
dropped with a count.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.malloc import pin_mmap_threshold
from slowfast_trt.common.text import shown
from slowfast_trt.common.threads import available_cpus
from slowfast_trt.dali_pipelines import nvdec, sampling
from slowfast_trt.dali_pipelines import spatial as spatial_ops
from slowfast_trt.dali_pipelines.overlap import one_ahead
from slowfast_trt.dali_pipelines.pipelines import PlanSource, build_pipeline, graph_spec
from slowfast_trt.dali_pipelines.plan import ClipPlan
from slowfast_trt.dali_pipelines.spec import FeedSpec, GraphSpec, crop_positions
from slowfast_trt.data.manifest import Video
from slowfast_trt.data.video_io import DALI_CPU_CODECS, file_problem, size_problem
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import make_fast_input


def preflight(videos: list[Video], cfg: SlowFastConfig, device: str, codecs: dict[str, str] | None = None) -> None:
    """Fail before any pipeline starts: missing or special files, sizes beyond the decoder, codecs the CPU decoder
    cannot read, clips longer than every video.

    Nothing is opened where the manifest gives the codec (`Video.codec`); a file without one is probed once per
    process (`probed_codec`). Each file's packets and header are checked when a loader first uses it."""
    if not videos:
        raise SlowFastError("the manifest has no videos; check its path, or run `slowfast data prepare`")
    problems = [(v.path, why) for v in videos if (why := file_problem(v.path)) is not None]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        path, why = problems[0]
        raise SlowFastError(f"{shown(path)}: {why}{more}; fix the manifest paths or run `slowfast data check`")
    for v in videos:
        if (why := size_problem(v.width, v.height)) is not None:
            raise SlowFastError(f"{shown(v.path)}: the manifest's size {why}; re-encode it (`slowfast data prepare`)")
    if device == "cpu":
        for v in videos:
            codec = (codecs or {}).get(v.path) or v.codec or probed_codec(v.path)
            if codec not in DALI_CPU_CODECS:
                raise SlowFastError(
                    f"{shown(v.path)}: codec {codec} cannot be decoded by DALI on the CPU (VP8/VP9/MJPEG only); "
                    "transcode with `slowfast data prepare --codec vp9` or run on a GPU"
                )

    spans = [sampling.clip_span(cfg.num_frames, cfg.tau, v.fps) for v in videos]
    if all(s > v.frame_count for s, v in zip(spans, videos)):
        raise SlowFastError(
            f"every video is shorter than one clip ({cfg.num_frames}x{cfg.tau} = {spans[0]} frames at 30 fps, "
            f"longest video {max(v.frame_count for v in videos)} frames); use a preset with a shorter clip or longer videos"
        )


_ANNOUNCED: set[str] = set()


def announce(line: str) -> None:
    """Print a pipeline decision to stderr once per process (a training run builds several loaders)."""
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        print(line, file=sys.stderr)


@functools.cache
def probed_codec(path: str) -> str:
    """The codec of `path`'s first video stream (header only), cached: a run's loaders probe a file once."""
    import av  # lazy: PyAV, optional (extra [data])

    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise SlowFastError(f"{path}: no video stream; run `slowfast data check` on the manifest")
            return c.streams.video[0].codec_context.name
    except (av.error.FFmpegError, OSError) as e:
        raise SlowFastError(f"{path}: unreadable video ({e}); run `slowfast data check` on the manifest") from None


def probe_plan(plan: ClipPlan) -> str | None:
    """Decode a plan's frames with PyAV; the reason it fails, or None when the file is fine."""
    import av  # lazy: PyAV, optional (extra [data])

    need = int(plan.fast_idx.max())
    try:
        with av.open(plan.path) as c:
            n = -1
            for n, _ in enumerate(c.decode(video=0)):
                if n >= need:
                    return None
            return f"only {n + 1} decodable frames, clip needs frame {need}"
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
        return f"decode error: {e}"


def ncthw_view(x: torch.Tensor) -> torch.Tensor:
    """N,T,H,W,C frames from DALI as N,C,T,H,W without a copy (torch's channels_last_3d memory layout)."""
    return x.permute(0, 4, 1, 2, 3)


class ClipLoader:
    """Iterates one epoch of clip plans through DALI; `len()` is the number of batches in the epoch.

    `feed` is the run's `FeedSpec` (device, batch, threads, crops, bad-file policy, spatial backend); the loader adds
    only what depends on its mode and files: NVDEC routing (on a GPU) and, per pass, the graph's `GraphSpec`."""

    def __init__(
        self,
        plans: list[ClipPlan] | Callable[[int], list[ClipPlan]],
        cfg: SlowFastConfig,
        mode: str,
        feed: FeedSpec,
        videos: list[Video] | None = None,
    ):
        if mode not in ("train", "test", "decode"):
            raise SlowFastError(f"mode must be train, test or decode, got {mode!r}")
        self.cfg, self.mode, self.feed = cfg, mode, feed
        self.batch_size, self.device, self.skip_bad = feed.batch_size, feed.dali_device, feed.skip_bad
        self.num_crops = GraphSpec(mode, feed).num_crops
        self._plan_fn = plans if callable(plans) else (lambda _epoch, _p=plans: _p)
        self.epoch = 0
        self.plans = self._plan_fn(0)
        self.bad: dict[str, str] = {}  # path -> reason, for files skipped so far
        self._pool = spatial_ops.BufferPool()  # output buffers of the CPU spatial ops, recycled once released
        if self.device == "cpu":
            pin_mmap_threshold()  # decoded frames and crops of varying sizes would otherwise fragment the heap
        if videos is not None:
            preflight(videos, cfg, self.device)
        self.on_cpu: frozenset[str] = frozenset()  # files a GPU graph sends to DALI's CPU decoder (NVDEC's limits)
        if self.device == "gpu":
            routing = (
                nvdec.route_videos(videos)
                if videos is not None
                else nvdec.route([nvdec.probe_format(p) for p in sorted({q.path for q in self.plans})])
            )
            self.on_cpu = routing.on_cpu
            announce(routing.summary())

    @property
    def spatial_in_torch(self) -> bool:
        """Whether this loader's graphs stop at the decoded frames and torch does the spatial ops."""
        return GraphSpec(self.mode, self.feed).frames_only

    def set_epoch(self, epoch: int) -> None:
        """Switch to `epoch`'s plan (a new permutation and new random clips for training)."""
        self.epoch = epoch
        self.plans = self._plan_fn(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.plans) / self.batch_size)

    @property
    def views_per_sample(self) -> int:
        return self.num_crops

    def graph(self, plans: list[ClipPlan]) -> GraphSpec:
        """The graph of one pass over `plans` (its decoder routing depends on which files they hold)."""
        return graph_spec(self.mode, self.feed, plans, self.on_cpu, self.cfg.multilabel)

    def _iterator(self, plans: list[ClipPlan]):
        from nvidia.dali.plugin.pytorch import (  # lazy: nvidia-dali, optional (extra [data]) and heavy
            DALIGenericIterator,
            DALIRaggedIterator,
            LastBatchPolicy,
        )

        graph = self.graph(plans)
        source = PlanSource(plans, graph, self.cfg, bad=self.bad, on_cpu=self.on_cpu)
        pipe = build_pipeline(source, self.cfg, graph)
        names = graph.output_names
        if graph.frames_only:  # uint8 frames, one size per video: a list of zero-copy tensors
            kinds = [DALIRaggedIterator.SPARSE_LIST_TAG] + [DALIRaggedIterator.DENSE_TAG] * (len(names) - 1)
            it: Any = DALIRaggedIterator(
                pipe, names, output_types=kinds, last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False, prepare_first_batch=False
            )
        else:
            it = DALIGenericIterator(pipe, names, last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False, prepare_first_batch=False)
        return source, it

    def _spatial(self, frames: list[torch.Tensor], plans: list[ClipPlan]) -> tuple[torch.Tensor, torch.Tensor]:
        """The CPU graphs' decoded frames through `dali_pipelines.spatial`: normalised (slow, fast), N,F,H,W,C.

        torch gets the cores DALI's threads leave (at least one) while it does so: with 2 cores, 2 DALI threads
        and torch's 2 threads on top, the training pipeline ran at 54 instead of 72 clips/s (`bench pipeline`).
        Run one batch ahead in a thread (`__iter__`), the thread count is left as the command's split set it: torch's
        pool size is global, and changing it there would change the consumer's model too."""
        inline = threading.current_thread() is threading.main_thread()
        before = torch.get_num_threads()
        if inline:
            torch.set_num_threads(max(1, min(before, available_cpus() - self.feed.dali_threads)))
        try:
            if self.mode == "train":
                return spatial_ops.train_batch(frames, plans, self.cfg, self._pool, self.batch_size)
            return spatial_ops.test_batch(frames, plans, self.cfg, crop_positions(self.num_crops), self._pool, self.batch_size)
        finally:
            if inline:
                torch.set_num_threads(before)

    def _to_batch(self, out: dict[str, Any], plans: list[ClipPlan]) -> dict[str, torch.Tensor]:
        """One DALI batch as the model's inputs (`out["frames"]` is a list of per-video tensors where torch does the spatial ops)."""
        meta = out["meta"].long()
        label = out["label"] if self.cfg.multilabel else out["label"].view(-1).long()
        if self.mode == "decode":  # raw uint8 frames, N,F,H,W,C; no Fast-input transform
            return {"slow": out["slow"], "fast": out["fast"], "label": label, "video": meta[:, 0], "clip": meta[:, 1]}
        n = self.num_crops
        if "frames" in out:
            slow, fast = self._spatial(out["frames"], plans)
        elif self.mode == "train":
            slow, fast = out["slow"], out["fast"]
        else:
            slow, fast = torch.cat([out[f"slow{c}"] for c in range(n)]), torch.cat([out[f"fast{c}"] for c in range(n)])
        slow, fast = ncthw_view(slow), ncthw_view(fast)
        if self.mode == "train":
            crop = torch.zeros_like(meta[:, 0])
            video, clip = meta[:, 0], meta[:, 1]
        else:
            video, clip = meta[:, 0].repeat(n), meta[:, 1].repeat(n)
            crop = torch.arange(n, device=meta.device).repeat_interleave(meta.shape[0])
            label = label.repeat(n, *([1] * (label.dim() - 1)))
        clips = {"slow": slow, "fast": make_fast_input(fast, self.cfg) if self.cfg.has_fast else fast}
        return {p: clips[p] for p in self.cfg.pathways} | {"label": label, "video": video, "clip": clip, "crop": crop}

    def _report(self, known: int) -> None:
        """Warn about (or, without skip_bad, stop on) files found bad since `known` were known."""
        for path, reason in list(self.bad.items())[known:]:
            if not self.skip_bad:
                also = "" if self.skip_bad is None else " or pass --skip-bad"  # None: the command has no --skip-bad
                raise SlowFastError(f"{shown(path)}: {reason}; remove it (`slowfast data check --write-clean`){also}")
            print(f"warning: skipping {shown(path)}: {reason} ({len(self.bad)} skipped so far)", file=sys.stderr)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """The epoch's batches. Where torch does the spatial ops (the CPU graphs), the next batch is decoded and cropped
        in a thread while the consumer works on this one (`overlap.one_ahead`)."""
        return one_ahead(self._batches()) if self.spatial_in_torch else self._batches()

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        remaining = list(self.plans)
        while remaining:
            known = len(self.bad)
            source, it = self._iterator(remaining)
            done = 0  # batches yielded from this iterator
            try:
                for out in it:
                    self._report(known)
                    known = len(self.bad)
                    plans = [source.plans[i] for i in source.served[done]]
                    done += 1
                    yield self._to_batch(out[0], plans)
                self._report(known)
                return
            except RuntimeError as err:
                self._report(known)
                unyielded = [i for batch in source.served[done:] for i in batch]
                found = {source.plans[i].path: r for i in unyielded if (r := probe_plan(source.plans[i])) is not None}
                if not found:
                    names = sorted({shown(source.plans[i].path) for i in unyielded})
                    why = " ".join(str(err).split())[:300]  # DALI's first line is only "Critical error in pipeline:"
                    raise SlowFastError(f"DALI failed on a batch of {names} (one of them, or DALI itself): {why}") from None
                known = len(self.bad)
                self.bad.update(found)
                self._report(known)
                start = unyielded[0] if unyielded else len(source.plans)
                remaining = [p for p in source.plans[start:] if p.path not in self.bad]
