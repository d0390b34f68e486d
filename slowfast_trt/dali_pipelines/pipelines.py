"""DALI graphs for training and multi-view testing, fed per-sample plans, handed to PyTorch zero-copy.

Every graph decodes exactly the Fast frames of each clip (`fn.decoders.video(frames=...)`, 'mixed' NVDEC on
a GPU, 'cpu' for VP8/VP9/MJPEG otherwise). On a GPU the graph does the rest too: the Slow frames are a subset
of the decoded Fast frames (`fn.sequence_rearrange`, never a strided slice: DALI ignores the step on large CPU
tensors), training scales, crops and flips in one `fn.resize` over a per-sample window, testing resizes the
short side and cuts three crops at positions 0, 0.5 and 1 (left/centre/right, or top/centre/bottom for
portrait video), and `crop_mirror_normalize` writes float. On the CPU the train and test graphs stop after
decoding and hand the uint8 frames to `dali_pipelines.spatial`, which does the same ops in torch's uint8
kernels (DALI's CPU resize measured 8x slower than torch's; see that module).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.plan import ClipPlan
from slowfast_trt.data.video_io import count_packets
from slowfast_trt.model.config import SlowFastConfig

CROP_POSITIONS = (0.0, 0.5, 1.0)


def crop_positions(num_crops: int) -> tuple[float, ...]:
    """Test crop positions: the paper's three (left/centre/right), or the centre one alone."""
    if num_crops == 3:
        return CROP_POSITIONS
    if num_crops == 1:
        return (0.5,)
    raise SlowFastError(f"--crops must be 1 or 3, got {num_crops}")


class PlanSource:
    """The external-source callable: serves the plans in order, a batch per call, StopIteration at the end.

    The first time a file is used its packets are counted (demux only, milliseconds); a file with fewer
    frames than a clip needs is left out of the batch and recorded in `bad`, because DALI's decoder returns
    black frames past the end of a truncated file instead of failing.
    """

    def __init__(
        self,
        plans: list[ClipPlan],
        batch_size: int,
        cfg: SlowFastConfig,
        mode: str,
        bad: dict[str, str] | None = None,
        frames_only: bool = False,
        on_cpu: frozenset[str] | None = None,
    ):
        self.plans, self.batch_size, self.cfg, self.mode = plans, batch_size, cfg, mode
        self.frames_only = frames_only  # serve (encoded, frames, meta, labels): the graph stops at the decoded frames
        # Files NVDEC cannot take (`nvdec.route`): with some but not all plans among them, a per-sample flag is
        # served last and the graph sends those samples to DALI's CPU decoder ("split").
        self.on_cpu = frozenset(on_cpu or ())
        paths = {p.path for p in plans}
        routed = paths & self.on_cpu
        self.decoder = "nvdec" if not routed else ("cpu" if routed == paths else "split")
        self.bad: dict[str, str] = {} if bad is None else bad
        self.served: list[list[int]] = []  # plan positions of each batch handed to DALI, in order
        self._cursor = 0
        self._bytes: dict[str, np.ndarray] = {}
        self._frames: dict[str, int] = {}

    def rewind(self) -> None:
        """Serve the plans again from the first (the packet counts and cached bytes stay)."""
        self._cursor, self.served = 0, []

    def _encoded(self, path: str) -> np.ndarray:
        data = self._bytes.get(path)
        if data is None:
            data = np.fromfile(path, dtype=np.uint8)
            if len(self._bytes) < 256:  # small data sets stay in memory; large ones are read per sample
                self._bytes[path] = data
        return data

    def _usable(self, plan: ClipPlan) -> bool:
        if plan.path in self.bad:
            return False
        if plan.path not in self._frames:
            self._frames[plan.path] = count_packets(plan.path)
        n = self._frames[plan.path]
        need = int(plan.fast_idx.max()) + 1
        if n < need:
            self.bad[plan.path] = (
                f"has {n} decodable frames but the manifest promised more (clip needs frame {need - 1}); truncated or changed since the manifest was written"
            )
            return False
        return True

    def _label(self, p: ClipPlan) -> np.ndarray:
        if self.cfg.multilabel:
            hot = np.zeros(self.cfg.num_classes, dtype=np.float32)
            hot[np.asarray(p.label if isinstance(p.label, (list, tuple)) else [p.label], dtype=np.int64)] = 1.0
            return hot
        return np.asarray([p.label], dtype=np.int64)

    def __call__(self, info) -> tuple:
        taken: list[int] = []
        while len(taken) < self.batch_size and self._cursor < len(self.plans):
            if self._usable(self.plans[self._cursor]):
                taken.append(self._cursor)
            self._cursor += 1
        if not taken:
            raise StopIteration
        self.served.append(taken)
        plans = [self.plans[i] for i in taken]
        enc = [self._encoded(p.path) for p in plans]
        frames = [p.fast_idx.astype(np.int32) for p in plans]
        slow = [p.slow_pos.astype(np.int32) for p in plans]
        meta = [np.asarray([p.video, p.clip], dtype=np.int64) for p in plans]
        labels = [self._label(p) for p in plans]
        flags = ([np.asarray(p.path in self.on_cpu) for p in plans],) if self.decoder == "split" else ()
        if self.frames_only:
            return enc, frames, meta, labels, *flags
        if self.mode == "train":
            r0 = [np.asarray(p.roi[:2], dtype=np.float32) for p in plans]
            r1 = [np.asarray(p.roi[2:], dtype=np.float32) for p in plans]
            return enc, frames, slow, meta, labels, r0, r1, *flags
        return enc, frames, slow, meta, labels, *flags


SPATIAL = ("auto", "torch", "dali")


def spatial_in_torch(mode: str, device: str, spatial: str = "auto") -> bool:
    """Whether the graph for `mode` on `device` stops at the decoded frames and torch does the spatial ops.

    spatial: "auto" (torch on the CPU, DALI on a GPU: see `dali_pipelines.spatial`), "dali" (every op in the graph),
    "torch" (CPU only)."""
    if spatial not in SPATIAL:
        raise SlowFastError(f"spatial must be one of {SPATIAL}, got {spatial!r}")
    if spatial == "torch" and device == "gpu":
        raise SlowFastError("spatial='torch' is for CPU pipelines; on a GPU DALI does the spatial ops (use auto or dali)")
    return spatial != "dali" and device != "gpu" and mode in ("train", "test")


def normalize_frames(video, cfg: SlowFastConfig, fn, types, **crop):
    # Frames stay channel-last (FHWC): no transposition in DALI; the loader views the batch as N,C,T,H,W in
    # torch's channels_last_3d layout, which the trainer and torch engine use anyway.
    return fn.crop_mirror_normalize(
        video,
        dtype=types.FLOAT,
        output_layout="FHWC",
        mean=[255.0 * m for m in cfg.mean],
        std=[255.0 * s for s in cfg.std],
        **crop,
    )


def decode(enc, frames, on_cpu, device: str, decoder: str):
    """The Fast frames inside a graph: NVDEC ('mixed') on a GPU, DALI's CPU decoder otherwise and for the files NVDEC
    refuses (`decoder` is the source's: 'nvdec', 'cpu', or 'split' with `on_cpu` the per-sample flag)."""
    import nvidia.dali.fn as fn  # lazy: nvidia-dali, optional (extra [data]) and heavy

    if device != "gpu":
        if decoder == "split":  # the same conditional graph as on a GPU, both branches on the CPU decoder
            if on_cpu:
                video = fn.decoders.video(enc, device="cpu", frames=frames)
            else:
                video = fn.decoders.video(enc, device="cpu", frames=frames)
            return video
        return fn.decoders.video(enc, device="cpu", frames=frames)
    if decoder == "cpu":
        return fn.decoders.video(enc, device="cpu", frames=frames).gpu()
    if decoder == "split":
        if on_cpu:
            video = fn.decoders.video(enc, device="cpu", frames=frames).gpu()
        else:
            video = fn.decoders.video(enc, device="mixed", frames=frames)
        return video
    return fn.decoders.video(enc, device="mixed", frames=frames)


def build_pipeline(
    source: Callable,
    cfg: SlowFastConfig,
    mode: str,
    batch_size: int,
    device: str,
    threads: int = 2,
    prefetch: int = 2,
    seed: int = 0,
    num_crops: int = 3,
):
    """A DALI pipeline for `mode` on `device` ("cpu" | "gpu"), reading from `source`.

    Modes: "train" (scale jitter, crop, flip), "test" (short side, 3 crops), "decode" (the decoded Fast
    frames and their Slow subset as uint8 F,H,W,C, untouched: the frame-exactness checks and the
    decode-only throughput ceiling use it). A source that serves frames only (`PlanSource.frames_only`, set where
    `spatial_in_torch`) gets a graph that returns the decoded Fast frames alone (uint8 F,H,W,C, one size per
    video) with labels and meta.
    """
    import nvidia.dali.fn as fn  # lazy: nvidia-dali, optional (extra [data]) and heavy
    import nvidia.dali.types as types  # lazy: nvidia-dali, optional (extra [data]) and heavy
    from nvidia.dali import pipeline_def  # lazy: nvidia-dali, optional (extra [data]) and heavy

    gpu = device == "gpu"

    device_id = torch.cuda.current_device() if gpu else None  # each torchrun rank decodes on its own GPU
    label_type = types.FLOAT if cfg.multilabel else types.INT64
    frames_only = getattr(source, "frames_only", False)
    if frames_only:
        dtypes = [types.UINT8, types.INT32, types.INT64, label_type]
    else:
        dtypes = [types.UINT8, types.INT32, types.INT32, types.INT64, label_type] + [types.FLOAT, types.FLOAT] * (mode == "train")
    decoder = getattr(source, "decoder", "nvdec")
    if decoder == "split":
        dtypes.append(types.BOOL)

    @pipeline_def(
        batch_size=batch_size,
        num_threads=threads,
        device_id=device_id,
        exec_dynamic=True,
        prefetch_queue_depth=prefetch,
        seed=seed,
        enable_conditionals=decoder == "split",
    )
    def graph():
        inputs = fn.external_source(source=source, num_outputs=len(dtypes), batch=True, batch_info=True, dtype=dtypes, cycle=None)
        enc, frames, slow_pos, meta, labels = (inputs[0], inputs[1], None, *inputs[2:4]) if frames_only else inputs[:5]
        video = decode(enc, frames, inputs[-1] if decoder == "split" else None, device, decoder)
        if frames_only:
            return video, labels, meta
        if mode == "decode":
            return fn.sequence_rearrange(video, new_order=slow_pos), video, labels, meta
        if mode == "train":
            r0, r1 = inputs[5], inputs[6]
            clip = fn.resize(video, roi_start=r0, roi_end=r1, size=[cfg.crop_size, cfg.crop_size], antialias=False)
            slow = fn.sequence_rearrange(clip, new_order=slow_pos)
            return normalize_frames(slow, cfg, fn, types), normalize_frames(clip, cfg, fn, types), labels, meta
        size = cfg.test_crop_size
        # subpixel_scale=False: each axis maps onto its rounded output size, as F.interpolate(size=...) does (the CPU
        # pipelines' torch ops and PySlowFast); DALI's default samples a 170.67-column image into 171 columns.
        short = fn.resize(video, resize_shorter=size, antialias=False, subpixel_scale=False)
        slow_short = fn.sequence_rearrange(short, new_order=slow_pos)
        outs = []
        for pos in crop_positions(num_crops):
            crop = dict(crop=(size, size), crop_pos_x=pos, crop_pos_y=pos)
            outs += [normalize_frames(slow_short, cfg, fn, types, **crop), normalize_frames(short, cfg, fn, types, **crop)]
        return (*outs, labels, meta)

    return graph()


def output_names(mode: str, num_crops: int = 3, frames_only: bool = False) -> list[str]:
    """Names of the pipeline outputs in order (the PyTorch iterator's keys)."""
    if frames_only:
        return ["frames", "label", "meta"]
    if mode in ("train", "decode"):
        return ["slow", "fast", "label", "meta"]
    return [f"{p}{c}" for c in range(num_crops) for p in ("slow", "fast")] + ["label", "meta"]
