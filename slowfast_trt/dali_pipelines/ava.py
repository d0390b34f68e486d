"""AVA-format detection data: label and proposal CSVs, keyframes at 1 Hz, centred clips, a DALI keyframe loader.

A detection set is a folder with
  `videos.csv` + `classes.txt`: an ordinary manifest of the videos (`path,label,...`; the label column holds the
      actions present in each video, `;`-joined); a video's id is its file name without extension;
  label CSVs (`train.csv`, `val.csv`), AVA's format without header:
      `video_id, timestamp, x1, y1, x2, y2, action_id, person_id`, boxes normalised to [0, 1], one row per
      (person, action); action ids start at 1 as in AVA (`classes.txt` line i names action i + 1);
  proposal CSVs (`<split>_proposals.csv`): `video_id, timestamp, x1, y1, x2, y2, , score` (PySlowFast's
      predicted-box files; the action column is empty), kept when score >= the threshold (0.8, as the paper).

Keyframe at `timestamp` seconds = frame round(timestamp * fps) of the video (AVA's movies start their labels
at 902 s: subtract 900 from real AVA timestamps, as PySlowFast's `(sec - 900) * 30`). Each keyframe's clip is
alpha*T frames every tau/alpha frames centred on it (`range(k - span/2, k + span/2, tau/alpha)`, PySlowFast's
`get_sequence`); indices before the first or past the last frame repeat the edge frame. The Slow frames are a
subset of these by the config's sampling convention.

Geometry: no random crop; every frame is resized (aspect kept) to short side `test_crop_size` and placed at the
top-left of one canvas for the whole set (zero padding after normalisation right/bottom when aspect ratios
differ), so a normalised box maps to pixels as (x * W_v, y * H_v) with W_v, H_v the video's resized size.
Training uses the same geometry (no scale jitter or flip, a simplification of the reference recipe).

Bad input: boxes more than 0.01 outside [0, 1] or with x2 <= x1 / y2 <= y1, unknown video ids, keyframes
outside their video, and malformed rows stop loading with `file:line` and what to do (before any decoding).
Boxes within 0.01 of the border are clipped to [0, 1]. A labelled keyframe without proposals is not run:
its ground truth counts as missed (reported as `keyframes_without_proposals`).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines import sampling
from slowfast_trt.dali_pipelines.loader import ClipLoader, ncthw_view
from slowfast_trt.dali_pipelines.pipelines import PlanSource, decode, normalize_frames
from slowfast_trt.dali_pipelines.plan import ClipPlan, epoch_order, shard, short_side_size, slow_positions
from slowfast_trt.data.manifest import Video, read_manifest, to_videos
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import make_fast_input

VIDEOS_FILE = "videos.csv"
PROPOSAL_THRESHOLD = 0.8
BOX_TOLERANCE = 0.01  # normalised coordinates this far outside [0, 1] are clipped; farther is an error
KEY_FPS = 1  # AVA labels one keyframe per second


@dataclass(frozen=True)
class AvaRow:
    """One CSV row: a box on a keyframe with an action (labels) or a score (proposals)."""

    video_id: str
    timestamp: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 normalised
    action: int | None  # 0-based class index (the file's action id - 1); None for proposals
    person: int | None = None
    score: float | None = None


@dataclass
class Keyframe:
    """One sample: a video, a timestamp, its ground-truth persons (box + action set) and its proposals."""

    index: int
    video: Video
    video_id: str
    timestamp: int
    frame: int
    gt_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    gt_labels: list[set[int]] = field(default_factory=list)
    proposals: list[tuple[float, float, float, float]] = field(default_factory=list)
    proposal_scores: list[float] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (self.video_id, self.timestamp)


def looks_like_ava_csv(path: str | Path) -> bool:
    """True when the file is an AVA label CSV (no `path,label` header; 7 or 8 fields), not a manifest."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            first = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError):
        return False
    # A manifest header in any case, or behind a UTF-8 byte-order mark, is still a manifest.
    return bool(first) and first[0].strip().lstrip("\ufeff").lower() != "path" and len(first) in (7, 8)


def _box(values: list[str], where: str) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    if any(v < -BOX_TOLERANCE or v > 1 + BOX_TOLERANCE for v in (x1, y1, x2, y2)):
        raise SlowFastError(
            f"{where}: box ({x1}, {y1}, {x2}, {y2}) is outside [0, 1]; AVA boxes are normalised "
            "by the frame's width and height: divide pixel coordinates by them"
        )
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    if x2 <= x1 or y2 <= y1:
        raise SlowFastError(f"{where}: box ({x1}, {y1}, {x2}, {y2}) is empty (needs x1 < x2 and y1 < y2; the order is x1, y1, x2, y2)")
    return x1, y1, x2, y2


def read_ava_csv(
    path: str | Path, kind: str = "labels", num_classes: int | None = None, threshold: float = PROPOSAL_THRESHOLD
) -> list[AvaRow]:
    """Rows of an AVA label CSV (`kind="labels"`) or proposal CSV (`kind="proposals"`, score >= `threshold`)."""
    path = Path(path)
    if not path.is_file():
        raise SlowFastError(f"{kind} file {path} not found")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, rec in enumerate(csv.reader(f), start=1):
            if not rec or not "".join(rec).strip():
                continue
            where = f"{path}:{n}"
            if len(rec) not in (7, 8):
                raise SlowFastError(
                    f"{where}: expected 8 fields (video_id, timestamp, x1, y1, x2, y2, action_id, "
                    f"{'score' if kind == 'proposals' else 'person_id'}), got {len(rec)}"
                )
            try:
                video_id, ts = rec[0].strip(), float(rec[1])
                box = _box(rec[2:6], where)
                if kind == "labels":
                    action = int(rec[6]) - 1
                    person = int(rec[7]) if len(rec) == 8 and rec[7].strip() else None
                    score = None
                else:
                    action, person = None, None
                    score = float(rec[7] if len(rec) == 8 else rec[6])
            except ValueError as e:
                raise SlowFastError(f"{where}: {e}; fields must be numbers after the video id") from None
            if ts != int(ts) or ts < 0:
                raise SlowFastError(f"{where}: timestamp {rec[1]} must be a whole number of seconds >= 0 (keyframes are at 1 Hz)")
            if action is not None and (action < 0 or (num_classes is not None and action >= num_classes)):
                raise SlowFastError(f"{where}: action id {action + 1} is outside 1..{num_classes}; fix the row or classes.txt")
            if kind == "proposals" and score < threshold:
                continue
            rows.append(AvaRow(video_id, int(ts), box, action, person, score))
    return rows


def proposals_path(labels_csv: str | Path) -> Path:
    """Where the proposals of a label CSV are by default: `<stem>_proposals.csv` beside it."""
    p = Path(labels_csv)
    return p.with_name(f"{p.stem}_proposals.csv")


def keyframe_frame(timestamp: int, fps: float) -> int:
    """The frame number of a keyframe (the video's time 0 is frame 0)."""
    return int(round(timestamp * fps))


@dataclass
class AvaSet:
    """A split of a detection set: its videos, class names and keyframes (ground truth and proposals)."""

    videos: list[Video]
    classes: list[str]
    keyframes: list[Keyframe]
    labels_csv: Path
    proposals_csv: Path | None
    unlabelled_proposal_keyframes: int = 0  # proposal keyframes without ground truth (evaluated: detections there are false positives)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_ava(
    labels_csv: str | Path, proposals_csv: str | Path | None = None, *, use_proposals: bool = False, threshold: float = PROPOSAL_THRESHOLD
) -> AvaSet:
    """Read a split (labels + videos.csv beside them, and proposals when `use_proposals`); check every reference."""
    labels_csv = Path(labels_csv)
    videos_csv = labels_csv.with_name(VIDEOS_FILE)
    if not videos_csv.is_file():
        raise SlowFastError(
            f"{videos_csv} not found: a detection set keeps its videos manifest beside the label CSV "
            "(see `slowfast data synth --detection`)"
        )
    manifest = read_manifest(videos_csv)
    videos = to_videos(manifest)
    by_id: dict[str, Video] = {}
    for v in videos:
        vid = Path(v.path).stem
        if vid in by_id:
            raise SlowFastError(f"{videos_csv}: two videos have the id {vid!r} (file name without extension); rename one")
        by_id[vid] = v
    classes = list(manifest.classes)
    gt_rows = read_ava_csv(labels_csv, "labels", num_classes=len(classes))
    prop_rows: list[AvaRow] = []
    if use_proposals:
        proposals_csv = Path(proposals_csv) if proposals_csv else proposals_path(labels_csv)
        prop_rows = read_ava_csv(proposals_csv, "proposals", threshold=threshold)
    else:
        proposals_csv = None
    for rows, src in ((gt_rows, labels_csv), (prop_rows, proposals_csv)):
        unknown = sorted({r.video_id for r in rows} - set(by_id))
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise SlowFastError(f"{src}: video id {unknown[0]!r}{more} is not in {videos_csv}; add the video or drop its rows")
    frames: dict[tuple[str, int], Keyframe] = {}

    def keyframe(vid: str, ts: int, src: Path) -> Keyframe:
        k = frames.get((vid, ts))
        if k is None:
            v = by_id[vid]
            f = keyframe_frame(ts, v.fps)
            if not 0 <= f < v.frame_count:
                raise SlowFastError(
                    f"{src}: keyframe {vid} at {ts} s is frame {f}, outside the video's {v.frame_count} frames "
                    f"at {v.fps:g} fps; timestamps count seconds from the video's start (real AVA: subtract 900)"
                )
            k = frames[(vid, ts)] = Keyframe(len(frames), v, vid, ts, f)
        return k

    persons: dict[tuple[str, int], dict] = defaultdict(dict)
    for r in gt_rows:
        k = keyframe(r.video_id, r.timestamp, labels_csv)
        ident = (r.person, r.box)  # one person = one id and box on a keyframe; rows list its actions
        if ident not in persons[k.key]:
            persons[k.key][ident] = (r.box, set())
        persons[k.key][ident][1].add(r.action)
    for key, people in persons.items():
        for box, labels in people.values():
            frames[key].gt_boxes.append(box)
            frames[key].gt_labels.append(labels)
    labelled = set(frames)
    for r in prop_rows:
        k = keyframe(r.video_id, r.timestamp, proposals_csv)
        k.proposals.append(r.box)
        k.proposal_scores.append(float(r.score))
    extra = len(set(frames) - labelled)
    keyframes = sorted(frames.values(), key=lambda k: (k.video.index, k.timestamp))
    for i, k in enumerate(keyframes):
        k.index = i
    return AvaSet(videos, classes, keyframes, labels_csv, proposals_csv, extra)


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
    """PlanSource plus each sample's resized (H, W), so DALI resizes every video to its own size before padding;
    `on_cpu` routes files as `PlanSource` does (the per-sample decoder flag is served last)."""

    def __init__(self, plans, batch_size, cfg, sizes: dict[int, tuple[int, int]], bad=None, on_cpu: frozenset[str] | None = None):
        super().__init__(plans, batch_size, cfg, "test", bad=bad, on_cpu=on_cpu)
        self.sizes = sizes

    def __call__(self, info) -> tuple:
        enc, frames, slow, meta, labels, *flags = super().__call__(info)
        size = [np.asarray(self.sizes[self.plans[i].video], dtype=np.float32) for i in self.served[-1]]
        return enc, frames, slow, meta, labels, size, *flags


def build_keyframe_pipeline(
    source, cfg: SlowFastConfig, canvas: tuple[int, int], batch_size: int, device: str, threads: int = 2, prefetch: int = 2
):
    """DALI graph: decode the Fast frames (NVDEC, or DALI's CPU decoder for the files the source routes there: `pipelines.decode`),
    resize to each video's size, normalise, pad to the canvas."""
    import nvidia.dali.fn as fn  # lazy: nvidia-dali, optional (extra [data]) and heavy
    import nvidia.dali.types as types  # lazy: nvidia-dali, optional (extra [data]) and heavy
    from nvidia.dali import pipeline_def  # lazy: nvidia-dali, optional (extra [data]) and heavy

    gpu = device == "gpu"
    dtypes = [types.UINT8, types.INT32, types.INT32, types.INT64, types.FLOAT, types.FLOAT]
    decoder = getattr(source, "decoder", "nvdec")
    if decoder == "split":
        dtypes.append(types.BOOL)

    @pipeline_def(
        batch_size=batch_size,
        num_threads=threads,
        device_id=torch.cuda.current_device() if gpu else None,
        exec_dynamic=True,
        prefetch_queue_depth=prefetch,
        enable_conditionals=decoder == "split",
    )
    def graph():
        inputs = fn.external_source(source=source, num_outputs=len(dtypes), batch=True, batch_info=True, dtype=dtypes, cycle=None)
        enc, frames, slow_pos, meta, labels, size = inputs[:6]
        video = decode(enc, frames, inputs[6] if decoder == "split" else None, device, decoder)
        video = fn.resize(video, size=size, antialias=False)
        clip = fn.pad(normalize_frames(video, cfg, fn, types), axis_names="HW", shape=list(canvas), fill_value=0.0)
        return clip, meta, labels, slow_pos  # the Slow frames are picked from the clip in torch (exact, no copy in DALI)

    return graph()


class KeyframeLoader(ClipLoader):
    """Keyframe clips through DALI with their boxes: yields `slow`/`fast`, `boxes` (K, 5) in canvas pixels,
    `box_keyframe` (K,) keyframe indices, `box_index` (K,) the box's position in its keyframe's list, and
    `targets` (K, classes) multi-hot for ground-truth boxes (training)."""

    def __init__(
        self,
        keyframes: list[Keyframe],
        cfg: SlowFastConfig,
        batch_size: int,
        *,
        boxes: str = "gt",
        plans=None,
        device: str = "auto",
        threads: int = 2,
        skip_bad: bool = False,
        prefetch: int = 2,
        videos: list[Video] | None = None,
    ):
        if boxes not in ("gt", "proposals"):
            raise SlowFastError(f"boxes must be 'gt' or 'proposals', got {boxes!r}")
        self.keyframes = {k.index: k for k in keyframes}
        self.box_source = boxes
        self.sizes = {k.video.index: resized_size(k.video, cfg.test_crop_size) for k in keyframes}
        self.canvas = canvas_size([k.video for k in keyframes], cfg.test_crop_size) if keyframes else (cfg.test_crop_size,) * 2
        super().__init__(
            plans if plans is not None else keyframe_plans(keyframes, cfg),
            cfg,
            "test",
            batch_size,
            device=device,
            threads=threads,
            skip_bad=skip_bad,
            prefetch=prefetch,
            videos=videos,
            num_crops=1,
        )

    def _iterator(self, plans: list[ClipPlan]):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy  # lazy: nvidia-dali, optional (extra [data]) and heavy

        source = KeyframeSource(plans, self.batch_size, self.cfg, self.sizes, bad=self.bad, on_cpu=self.on_cpu)
        pipe = build_keyframe_pipeline(source, self.cfg, self.canvas, self.batch_size, self.device, self.threads, self.prefetch)
        it = DALIGenericIterator(
            pipe,
            ["fast", "meta", "label", "slow_pos"],
            last_batch_policy=LastBatchPolicy.PARTIAL,
            auto_reset=False,
            prepare_first_batch=False,
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
