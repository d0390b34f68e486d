"""`data synth --detection`: a deterministic AVA-style set: several moving actors per video, boxes, actions, proposals.

Each video shows 2 or 3 actors, one per vertical strip of the frame, on a shared background (colour, noise,
static distractor boxes). An actor is an object (square or disc, own colour and size) that moves by one of the
eight motion classes of `data synth` (`data.synth.trajectory`, run inside its strip, wrapping
horizontally there). Its box at a keyframe is the object's extent then (clipped to its strip). Actions
(AVA ids start at 1; `classes.txt` line i names id i + 1):

| ids  | action         | who has it                                               | Slow-only (4x16) |
|------|----------------|----------------------------------------------------------|------------------|
| 1-8  | the motion class (flicker_fast ... drift_right)          | every actor, one of them                   | cannot split 1/2, 3/4, 5/6 |
| 9    | moves          | the actor's position changes (jitter, dash, drift)       | can              |
| 10   | changes_fast   | its state changes every 1-2 frames (flicker_fast, jitter_fast, dash_*) | cannot for flicker/jitter |

So every actor has 1 to 3 labels that depend on its motion, and, as in the classification set, the pairs
1/2, 3/4, 5/6 and the `changes_fast` label of flicker and jitter actors need the Fast pathway's frames.

Keyframes are at every whole second t >= 1 whose frame round(t * fps) lies in the video (1 Hz, as AVA); the
last ones sit near the end, so their clips repeat the last frame. Proposals (`<split>_proposals.csv`) imitate a
person detector: per actor a box with Gaussian corner noise (sigma 6% of its size) and a score in [0.82, 0.99];
8% of actors are missed; 15% of keyframes get a low-score false box (dropped by the 0.8 threshold) and 5% a
high-score one (kept: a false positive for evaluation). Same seed and arguments: identical CSVs and frames.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.data.manifest import Entry, write_manifest
from slowfast_trt.data.synth import CLASSES as MOTIONS
from slowfast_trt.data.synth import (
    MARKER,
    SYNTH_CODECS,
    EncodeJob,
    contrasting_colour,
    encode,
    encode_missing,
    parse_size,
    synth_folder,
    trajectory,
)
from slowfast_trt.data.video_io import codec_spec

ACTIONS = (*MOTIONS, "moves", "changes_fast")
MOVES, CHANGES_FAST = len(MOTIONS), len(MOTIONS) + 1
_MOVERS = {"jitter_fast", "jitter_slow", "dash_left", "dash_right", "drift_left", "drift_right"}
_FAST_CHANGERS = {"flicker_fast", "jitter_fast", "dash_left", "dash_right"}
ACTOR_SIZES = (8, 10, 12)


def actions_of(motion: int) -> list[int]:
    """The 0-based action indices of an actor with motion class `motion`."""
    name = MOTIONS[motion]
    return [motion] + ([MOVES] if name in _MOVERS else []) + ([CHANGES_FAST] if name in _FAST_CHANGERS else [])


@dataclass
class Actor:
    motion: int
    strip: tuple[int, int]  # x0, x1 of its strip
    size: int
    disc: bool
    colour: np.ndarray
    cx: np.ndarray  # per frame, strip coordinates
    cy: np.ndarray
    visible: np.ndarray


def scene(seed: int, index: int, frames: int, height: int, width: int) -> tuple[np.ndarray, list[Actor]]:
    """Background (H, W, 3 uint8) and actors of video `index`: a pure function of its arguments."""
    rng = np.random.default_rng([seed, index, 0xDE7])
    bg_colour = rng.integers(20, 236, 3)
    bg = np.broadcast_to(bg_colour.astype(np.float32), (height, width, 3)).copy()
    bg += rng.normal(0, rng.uniform(0, 12), (height, width, 1)).astype(np.float32)
    for _ in range(int(rng.integers(0, 3))):
        h, w = (int(v) for v in rng.integers(2, 5, 2) * 2)
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        bg[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    n = int(rng.integers(2, 4))
    edges = np.linspace(0, width, n + 1).astype(int)
    actors = []
    for a in range(n):
        x0, x1 = int(edges[a]), int(edges[a + 1])
        size = int(rng.choice(ACTOR_SIZES))
        motion = int(rng.integers(0, len(MOTIONS)))
        cx, cy, vis = trajectory(motion, rng, frames, height, x1 - x0, size)
        actors.append(Actor(motion, (x0, x1), size, bool(rng.integers(0, 2)), contrasting_colour(rng, bg_colour), cx, cy, vis))
    return np.clip(bg, 0, 255).astype(np.uint8), actors


def actor_box(actor: Actor, frame: int, height: int) -> tuple[float, float, float, float]:
    """The actor's box (x1, y1, x2, y2) in pixels at `frame`, clipped to its strip and the frame."""
    x0, x1 = actor.strip
    half = actor.size // 2
    cx, cy = x0 + int(actor.cx[frame]), int(actor.cy[frame])
    return (float(max(x0, cx - half)), float(max(0, cy - half)), float(min(x1, cx + half)), float(min(height, cy + half)))


def render_scene(seed: int, index: int, frames: int, height: int, width: int) -> np.ndarray:
    """The frames (F, H, W, 3 uint8) of video `index`: each actor drawn on the torus of its own strip."""
    bg, actors = scene(seed, index, frames, height, width)
    video = np.broadcast_to(bg, (frames, height, width, 3)).copy()
    ys = np.arange(height)
    for a in actors:
        x0, x1 = a.strip
        sw = x1 - x0
        xs = np.arange(sw)
        dx = (xs[None, :] - a.cx[:, None] + sw // 2) % sw - sw // 2
        dy = (ys[None, :] - a.cy[:, None] + height // 2) % height - height // 2
        half = a.size // 2
        if a.disc:
            mask = (dy[:, :, None] + 0.5) ** 2 + (dx[:, None, :] + 0.5) ** 2 <= half * half
        else:
            mask = ((dy >= -half) & (dy < half))[:, :, None] & ((dx >= -half) & (dx < half))[:, None, :]
        mask &= a.visible[:, None, None]
        strip = video[:, :, x0:x1]
        strip[mask] = a.colour.astype(np.uint8)
    return video


def make_detection_video(job: EncodeJob) -> dict:
    """Worker: render and encode one video."""
    return encode(render_scene(job.seed, job.index, job.frames, job.height, job.width), job)


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def annotations(seed: int, index: int, video_id: str, frames: int, height: int, width: int, fps: int) -> tuple[list, list]:
    """(label rows, proposal rows) of one video as AVA CSV fields, normalised boxes."""
    _, actors = scene(seed, index, frames, height, width)
    rng = np.random.default_rng([seed, index, 0x960])
    labels, proposals = [], []
    norm = np.array([width, height, width, height], dtype=np.float64)
    for t in range(1, int((frames - 1) / fps) + 1):
        f = int(round(t * fps))
        if f >= frames:
            break
        for person, a in enumerate(actors):
            box = np.array(actor_box(a, f, height)) / norm
            for act in actions_of(a.motion):
                labels.append([video_id, t, *map(_fmt, box), act + 1, person])
            if rng.random() >= 0.08:
                noisy = np.array(actor_box(a, f, height)) + rng.normal(0, 0.06 * a.size, 4)
                noisy = np.clip(noisy / norm, 0, 1)
                if noisy[2] > noisy[0] and noisy[3] > noisy[1]:
                    proposals.append([video_id, t, *map(_fmt, noisy), "", _fmt(rng.uniform(0.82, 0.99))])
        for p_false, lo, hi in ((0.15, 0.2, 0.75), (0.05, 0.8, 0.9)):
            if rng.random() < p_false:
                s = ACTOR_SIZES[1]
                x, y = rng.uniform(0, width - s), rng.uniform(0, height - s)
                fake = np.array([x, y, x + s, y + s]) / norm
                proposals.append([video_id, t, *map(_fmt, fake), "", _fmt(rng.uniform(lo, hi))])
    return labels, proposals


def _csv(rows: list[list]) -> str:
    return "".join(",".join(str(v) for v in r) + "\n" for r in rows)


def synth_detection(
    out: str | os.PathLike,
    videos: int = 160,
    seed: int = 0,
    codec: str = "vp9",
    size: str | tuple[int, int] = "64x96",
    frames: int = 128,
    fps: int = 30,
    val_fraction: float = 0.25,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write the detection set to OUT: videos/, videos.csv, classes.txt, train/val label and proposal CSVs, README.md."""
    codec_spec(codec, SYNTH_CODECS)
    height, width = parse_size(size) if isinstance(size, str) else size
    if width < 48:
        raise SlowFastError(f"--size {height}x{width}: detection sets need a width of at least 48 (2-3 actors side by side)")
    if videos < 2:
        raise SlowFastError(f"--videos must be at least 2 (one train, one val), got {videos}")
    if frames < 2 * fps:
        raise SlowFastError(f"--frames must cover at least 2 s ({2 * fps} frames at {fps} fps) for 1 Hz keyframes, got {frames}")
    if not 0 < val_fraction < 1:
        raise SlowFastError(f"--val-fraction must be in (0, 1) for a detection set, got {val_fraction}")
    t0 = time.perf_counter()
    out = Path(out)
    params = {
        "detection": True,
        "videos": videos,
        "seed": seed,
        "codec": codec,
        "size": [height, width],
        "frames": frames,
        "fps": fps,
        "val_fraction": val_fraction,
    }
    with synth_folder(out, params, "slowfast data synth --detection"):
        return _synth_detection(out, params, workers, progress, t0)


def _synth_detection(out: Path, params: dict, workers: int | None, progress: bool, t0: float) -> dict:
    videos, seed, codec, frames, fps = params["videos"], params["seed"], params["codec"], params["frames"], params["fps"]
    (height, width), val_fraction = params["size"], params["val_fraction"]
    spec = codec_spec(codec)
    jobs = [
        EncodeJob(
            i,
            seed,
            height,
            width,
            frames,
            fps,
            codec,
            str(out / f"videos/vid{i:05d}{spec.extension}"),
            str(out / ".tmp" / f"vid{i:05d}{spec.extension}"),
        )
        for i in range(videos)
    ]
    encode_missing(jobs, make_detection_video, out, workers, progress)
    is_val = np.zeros(videos, dtype=bool)
    is_val[np.random.default_rng([seed, 0x5B117]).permutation(videos)[: max(1, int(round(val_fraction * videos)))]] = True
    entries, rows = [], {"train": ([], []), "val": ([], [])}
    for j in jobs:
        vid = Path(j.path).stem
        labels, proposals = annotations(seed, j.index, vid, frames, height, width, fps)
        acts = tuple(sorted({int(r[6]) - 1 for r in labels}))
        entries.append(Entry(os.path.relpath(j.path, out), acts, frames, float(fps), width, height, codec))
        split = "val" if is_val[j.index] else "train"
        rows[split][0].extend(labels)
        rows[split][1].extend(proposals)
    write_manifest(out / "videos.csv", entries, list(ACTIONS))
    for split, (labels, proposals) in rows.items():
        atomic_write_text(out / f"{split}.csv", _csv(labels))
        atomic_write_text(out / f"{split}_proposals.csv", _csv(proposals))
    doc = __doc__.split("\n\n", 1)[1]
    atomic_write_text(
        out / "README.md",
        f"# Synthetic AVA-style detection set\n\n`slowfast data synth --detection --videos {videos} "
        f"--seed {seed} --codec {codec} --size {height}x{width} --frames {frames} --fps {fps}`\n\n{doc}",
    )
    atomic_write_text(out / MARKER, json.dumps(params, sort_keys=True) + "\n")
    n_val = int(is_val.sum())
    return {
        "out": out,
        "videos": videos,
        "train": videos - n_val,
        "val": n_val,
        "classes": list(ACTIONS),
        "train_boxes": len(rows["train"][0]),
        "val_boxes": len(rows["val"][0]),
        "seconds": time.perf_counter() - t0,
    }
