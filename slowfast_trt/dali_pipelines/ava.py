"""AVA-format detection clips through DALI: centred keyframe clips, per-video resize and padding, the keyframe loader.

The data format (label and proposal CSVs, `AvaSet`) is `data.ava`. Each keyframe's clip is
alpha*T frames every tau/alpha frames centred on it (`range(k - span/2, k + span/2, tau/alpha)`, PySlowFast's
`get_sequence`); indices before the first or past the last frame repeat the edge frame. The Slow frames are a
subset of these by the config's sampling convention.

Geometry: no random crop; every frame is resized (aspect kept) to short side `test_crop_size` and placed at the
top-left of one canvas for the whole set (zero padding after normalisation right/bottom when aspect ratios
differ), so a normalised box maps to pixels as (x * W_v, y * H_v) with W_v, H_v the video's resized size.
Training uses the same geometry (no scale jitter or flip, a simplification of the reference recipe).
A labelled keyframe without proposals is not run: its ground truth counts as missed (reported as
`keyframes_without_proposals`).
"""

from __future__ import annotations

import numpy as np
import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines import sampling
from slowfast_trt.dali_pipelines.loader import ClipLoader, ncthw_view
from slowfast_trt.dali_pipelines.pipelines import PlanSource, decode_fast, external_inputs, graph_spec, normalize_frames, pipeline_args
from slowfast_trt.dali_pipelines.plan import ClipPlan, epoch_order, shard, short_side_size, slow_positions
from slowfast_trt.dali_pipelines.spec import FeedSpec, GraphSpec
from slowfast_trt.data.ava import Keyframe
from slowfast_trt.data.manifest import Video
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import make_fast_input


def clip_indices(cfg: SlowFastConfig, video: Video, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Fast frame numbers of the clip centred on `frame` (edge frames repeated) and the Slow positions among them."""
    span = sampling.clip_span(cfg.num_frames, cfg.tau, video.fps)
    fast = sampling.fast_indices(frame - span // 2, span, cfg.fast_frames, video.frame_count, "strided")
    slow = sampling.slow_indices(fast, cfg.num_frames, cfg.sampling)
    return fast.astype(np.int32), slow_positions(fast, slow)


def resized_size(video: Video, short: int) -> tuple[int, int]:
    """(H, W) of a video's frames resized to short side `short`, aspect kept (rounded to whole pixels)."""
    return short_side_size(video.height, video.width, short, at_least=1)


def canvas_size(videos: list[Video], short: int) -> tuple[int, int]:
    """The (H, W) every clip is padded to: the largest resized height and width of the set."""
    sizes = [resized_size(v, short) for v in videos]
    return max(h for h, _ in sizes), max(w for _, w in sizes)


def keyframe_plans(keyframes: list[Keyframe], cfg: SlowFastConfig) -> list[ClipPlan]:
    """One plan per keyframe, in order; `clip` carries the keyframe's index for the boxes lookup."""
    plans = []
    for k in keyframes:
        fast, slow_pos = clip_indices(cfg, k.video, k.frame)
        plans.append(ClipPlan(k.video.index, k.video.path, [], fast, slow_pos, k.index))
    return plans


def train_keyframe_plans(
    keyframes: list[Keyframe], cfg: SlowFastConfig, epoch: int, seed: int = 0, shard_id: int = 0, num_shards: int = 1
) -> list[ClipPlan]:
    """The labelled keyframes of this shard in the epoch's shuffled order (the same permutation as classification)."""
    usable = [k for k in keyframes if k.gt_boxes]
    if not usable:
        raise SlowFastError("the training labels have no boxes")
    order = shard(epoch_order(len(usable), epoch, seed), shard_id, num_shards)
    return keyframe_plans([usable[int(i)] for i in order], cfg)


class KeyframeSource(PlanSource):
    """PlanSource plus each sample's resized (H, W) (the `size` field), so DALI resizes every video to its own size before padding."""

    def __init__(self, plans, graph: GraphSpec, cfg, sizes: dict[int, tuple[int, int]], bad=None, on_cpu: frozenset[str] = frozenset()):
        super().__init__(plans, graph, cfg, bad=bad, on_cpu=on_cpu)
        self.sizes = sizes

    def value(self, name: str, p: ClipPlan):
        return self.sizes[p.video] if name == "size" else super().value(name, p)


def build_keyframe_pipeline(source, cfg: SlowFastConfig, canvas: tuple[int, int], graph: GraphSpec):
    """DALI graph: decode the Fast frames, resize to each video's size, normalise, pad to the canvas."""
    import nvidia.dali.fn as fn  # lazy: nvidia-dali, optional (extra [data]) and heavy
    import nvidia.dali.types as types  # lazy: nvidia-dali, optional (extra [data]) and heavy
    from nvidia.dali import pipeline_def  # lazy: nvidia-dali, optional (extra [data]) and heavy

    @pipeline_def(**pipeline_args(graph))
    def dali_graph():
        inputs = external_inputs(source, graph, fn, types)
        video = fn.resize(decode_fast(inputs, graph, fn), size=inputs["size"], antialias=False)
        clip = fn.pad(normalize_frames(video, cfg, fn, types), axis_names="HW", shape=list(canvas), fill_value=0.0)
        return (
            clip,
            inputs["meta"],
            inputs["label"],
            inputs["slow_pos"],
        )  # the Slow frames are picked from the clip in torch (exact, no copy in DALI)

    return dali_graph()


class KeyframeLoader(ClipLoader):
    """Keyframe clips through DALI with their boxes: yields `slow`/`fast`, `boxes` (K, 5) in canvas pixels,
    `box_keyframe` (K,) keyframe indices, `box_index` (K,) the box's position in its keyframe's list, and
    `targets` (K, classes) multi-hot for ground-truth boxes (training). `feed` is the run's `FeedSpec` (its crops
    are not used: one view per keyframe)."""

    def __init__(
        self,
        keyframes: list[Keyframe],
        cfg: SlowFastConfig,
        feed: FeedSpec,
        *,
        boxes: str = "gt",
        plans=None,
        videos: list[Video] | None = None,
    ):
        if boxes not in ("gt", "proposals"):
            raise SlowFastError(f"boxes must be 'gt' or 'proposals', got {boxes!r}")
        self.keyframes = {k.index: k for k in keyframes}
        self.box_source = boxes
        self.sizes = {k.video.index: resized_size(k.video, cfg.test_crop_size) for k in keyframes}
        self.canvas = canvas_size([k.video for k in keyframes], cfg.test_crop_size) if keyframes else (cfg.test_crop_size,) * 2
        super().__init__(plans if plans is not None else keyframe_plans(keyframes, cfg), cfg, "test", feed.but(num_crops=1), videos=videos)

    def graph(self, plans: list[ClipPlan]) -> GraphSpec:
        return graph_spec("keyframe", self.feed, plans, self.on_cpu, self.cfg.multilabel)

    def _iterator(self, plans: list[ClipPlan]):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy  # lazy: nvidia-dali, optional (extra [data]) and heavy

        graph = self.graph(plans)
        source = KeyframeSource(plans, graph, self.cfg, self.sizes, bad=self.bad, on_cpu=self.on_cpu)
        pipe = build_keyframe_pipeline(source, self.cfg, self.canvas, graph)
        it = DALIGenericIterator(
            pipe, graph.output_names, last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False, prepare_first_batch=False
        )
        return source, it

    def _boxes(self, k: Keyframe) -> list[tuple[float, float, float, float]]:
        return k.gt_boxes if self.box_source == "gt" else k.proposals

    def _to_batch(self, out: dict[str, torch.Tensor], plans: list[ClipPlan]) -> dict[str, torch.Tensor]:
        fast = ncthw_view(out["fast"])  # N, C, F, H, W (normalised, padded; channels_last_3d memory)
        pos = out["slow_pos"].long().to(fast.device)
        slow = torch.stack([fast[i, :, pos[i]] for i in range(fast.shape[0])])
        meta = out["meta"].long()
        rows, owners, index, targets = [], [], [], []
        for i, kid in enumerate(meta[:, 1].tolist()):
            k = self.keyframes[kid]
            h, w = self.sizes[k.video.index]
            for j, (x1, y1, x2, y2) in enumerate(self._boxes(k)):
                rows.append([float(i), x1 * w, y1 * h, x2 * w, y2 * h])
                owners.append(kid)
                index.append(j)
                if self.box_source == "gt":
                    hot = [0.0] * self.cfg.num_classes
                    for c in k.gt_labels[j]:
                        hot[c] = 1.0
                    targets.append(hot)
        batch = {p: t for p, t in (("slow", slow), ("fast", fast)) if p in self.cfg.pathways}
        if "fast" in batch:
            batch["fast"] = make_fast_input(fast, self.cfg)
        batch["boxes"] = torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)
        batch["box_keyframe"] = torch.tensor(owners, dtype=torch.long)
        batch["box_index"] = torch.tensor(index, dtype=torch.long)
        batch["keyframe"] = meta[:, 1]
        batch["video"] = meta[:, 0]
        if self.box_source == "gt":
            batch["targets"] = torch.tensor(targets, dtype=torch.float32).reshape(-1, self.cfg.num_classes)
        return batch
