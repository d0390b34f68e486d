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

from slowfast_trt.dali_pipelines.nvdec import decoder_mode
from slowfast_trt.dali_pipelines.plan import ClipPlan
from slowfast_trt.dali_pipelines.spec import FeedSpec, GraphSpec, crop_positions
from slowfast_trt.data.video_io import loader_facts
from slowfast_trt.model.config import SlowFastConfig


def graph_spec(mode: str, feed: FeedSpec, plans: list[ClipPlan], on_cpu: frozenset[str], multilabel: bool) -> GraphSpec:
    """The graph for `mode` over `plans`: the decoder routing of exactly these files (`nvdec.decoder_mode`)."""
    paths = {p.path for p in plans}
    return GraphSpec(mode, feed, decoder_mode(len(paths & on_cpu), len(paths)), multilabel)


class PlanSource:
    """The external-source callable: serves the plans in order, a batch per call, StopIteration at the end.

    Each call serves the fields of `graph.fields`, by name, in that order (the graph reads the same list). The first
    time a file is used its packets are counted (demux only, milliseconds, `video_io.loader_facts`); a file cut short
    of what its container declares, with a header size DALI cannot open, or with fewer frames than a clip needs is
    left out of the batch and recorded in `bad`, alone, before DALI sees it: DALI's decoder returns black frames past
    the end of a truncated file instead of failing, and fails a whole batch on a header it cannot open.
    """

    def __init__(
        self,
        plans: list[ClipPlan],
        graph: GraphSpec,
        cfg: SlowFastConfig,
        bad: dict[str, str] | None = None,
        on_cpu: frozenset[str] = frozenset(),
    ):
        self.plans, self.graph, self.cfg = plans, graph, cfg
        self.batch_size = graph.feed.batch_size
        # Files NVDEC cannot take (`nvdec.route`); with decoder "split" each sample's flag sends it to DALI's CPU decoder.
        self.on_cpu = frozenset(on_cpu)
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
            self._frames[plan.path], why = loader_facts(plan.path)
            if why is not None:
                self.bad[plan.path] = why
                return False
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

    def value(self, name: str, p: ClipPlan):
        """One sample's value of the field `name` (`spec.GraphSpec.fields`)."""
        if name == "encoded":
            return self._encoded(p.path)
        if name == "frames":
            return p.fast_idx
        if name == "slow_pos":
            return p.slow_pos
        if name == "meta":
            return (p.video, p.clip)
        if name == "label":
            return self._label(p)
        if name in ("roi_start", "roi_end") and p.roi is not None:  # train plans carry an roi
            return p.roi[:2] if name == "roi_start" else p.roi[2:]
        if name == "on_cpu":
            return p.path in self.on_cpu
        raise KeyError(f"{type(self).__name__} has no field {name!r}")

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
        return tuple([np.asarray(self.value(f.name, p), dtype=f.dtype) for p in plans] for f in self.graph.fields)


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


def external_inputs(source: Callable, graph: GraphSpec, fn, types) -> dict:
    """The graph's end of the contract: the source's outputs by field name, typed as `graph.fields` says."""
    dali = {"uint8": types.UINT8, "int32": types.INT32, "int64": types.INT64, "float32": types.FLOAT, "bool": types.BOOL}
    fields = graph.fields
    outs = fn.external_source(
        source=source, num_outputs=len(fields), batch=True, batch_info=True, dtype=[dali[f.dtype] for f in fields], cycle=None
    )
    return dict(zip((f.name for f in fields), outs))


def decode_fast(inputs: dict, graph: GraphSpec, fn):
    """The Fast frames: NVDEC ('mixed') on a GPU, DALI's CPU decoder otherwise and for the files NVDEC refuses.

    With decoder "split" each sample goes down one branch of a DALI conditional; on the CPU both branches use the
    CPU decoder (the same graph as on a GPU, which the CPU tests exercise)."""
    enc, frames = inputs["encoded"], inputs["frames"]
    main = "mixed" if graph.gpu else "cpu"

    def on_cpu_decoder():
        video = fn.decoders.video(enc, device="cpu", frames=frames)
        return video.gpu() if graph.gpu else video

    if graph.decoder == "split":
        if inputs["on_cpu"]:
            video = on_cpu_decoder()
        else:
            video = fn.decoders.video(enc, device=main, frames=frames)
        return video
    if graph.decoder == "cpu":
        return on_cpu_decoder()
    return fn.decoders.video(enc, device=main, frames=frames)


def pipeline_args(graph: GraphSpec, seed: int = 0) -> dict:
    """`pipeline_def` arguments of a graph: batch, threads and prefetch from the feed, the torchrun rank's own GPU."""
    return dict(
        batch_size=graph.feed.batch_size,
        num_threads=graph.feed.dali_threads,
        device_id=torch.cuda.current_device() if graph.gpu else None,  # each torchrun rank decodes on its own GPU
        exec_dynamic=True,
        prefetch_queue_depth=graph.feed.prefetch,
        seed=seed,
        enable_conditionals=graph.decoder == "split",
    )


def build_pipeline(source: Callable, cfg: SlowFastConfig, graph: GraphSpec, seed: int = 0):
    """A DALI pipeline for `graph` (mode, feed, decoder routing), reading `graph.fields` from `source`.

    Modes: "train" (scale jitter, crop, flip), "test" (short side, 3 crops), "decode" (the decoded Fast
    frames and their Slow subset as uint8 F,H,W,C, untouched: the frame-exactness checks and the
    decode-only throughput ceiling use it). Where `graph.frames_only` (torch does the spatial ops) the graph
    returns the decoded Fast frames alone (uint8 F,H,W,C, one size per video) with labels and meta.
    """
    import nvidia.dali.fn as fn  # lazy: nvidia-dali, optional (extra [data]) and heavy
    import nvidia.dali.types as types  # lazy: nvidia-dali, optional (extra [data]) and heavy
    from nvidia.dali import pipeline_def  # lazy: nvidia-dali, optional (extra [data]) and heavy

    @pipeline_def(**pipeline_args(graph, seed))
    def dali_graph():
        inputs = external_inputs(source, graph, fn, types)
        video, labels, meta = decode_fast(inputs, graph, fn), inputs["label"], inputs["meta"]
        if graph.frames_only:
            return video, labels, meta
        if graph.mode == "decode":
            return fn.sequence_rearrange(video, new_order=inputs["slow_pos"]), video, labels, meta
        if graph.mode == "train":
            clip = fn.resize(video, roi_start=inputs["roi_start"], roi_end=inputs["roi_end"], size=[cfg.crop_size] * 2, antialias=False)
            slow = fn.sequence_rearrange(clip, new_order=inputs["slow_pos"])
            return normalize_frames(slow, cfg, fn, types), normalize_frames(clip, cfg, fn, types), labels, meta
        return (*crop_views(video, inputs["slow_pos"], cfg, graph.num_crops, fn, types), labels, meta)

    return dali_graph()


def crop_views(video, slow_pos, cfg: SlowFastConfig, num_crops: int, fn, types) -> list:
    """Short side to the test crop size, then `num_crops` square crops: (slow0, fast0, slow1, fast1, ...), normalised."""
    size = cfg.test_crop_size
    # subpixel_scale=False: each axis maps onto its rounded output size, as F.interpolate(size=...) does (the CPU
    # pipelines' torch ops and PySlowFast); DALI's default samples a 170.67-column image into 171 columns.
    short = fn.resize(video, resize_shorter=size, antialias=False, subpixel_scale=False)
    slow_short = fn.sequence_rearrange(short, new_order=slow_pos)
    outs = []
    for pos in crop_positions(num_crops):
        crop = dict(crop=(size, size), crop_pos_x=pos, crop_pos_y=pos)
        outs += [normalize_frames(slow_short, cfg, fn, types, **crop), normalize_frames(short, cfg, fn, types, **crop)]
    return outs
