"""`data synth`: a deterministic, labelled set of real encoded videos whose classes need motion to tell apart.

Eight classes, in four pairs. Each video shows one object (square or disc, random size and colour) on a
random background (colour, static noise texture, a few static distractor boxes), placed in the frame's
central square (what the centre and training crops keep); what the object does over time is the class:

| id | class        | what moves                                                         | Slow-only can tell it from |
|----|--------------|--------------------------------------------------------------------|----------------------------|
| 0  | flicker_fast | object shown or hidden at random, redrawn every 2 frames           | every class but 1          |
| 1  | flicker_slow | the same, redrawn every 8 frames                                   | every class but 0          |
| 2  | jitter_fast  | object jumps around its home (+-6 px), new offset every 2 frames   | every class but 3          |
| 3  | jitter_slow  | the same, new offset every 8 frames                                | every class but 2          |
| 4  | dash_left    | 8-frame strokes leftwards (2 or 4 px/frame), each at a new place   | every class but 5          |
| 5  | dash_right   | the same, rightwards (the same positions, visited in reverse)      | every class but 4          |
| 6  | drift_left   | steady slow motion leftwards (0.5 or 0.75 px/frame), wrapping      | all                        |
| 7  | drift_right  | the same, rightwards                                               | all                        |

Why Slow-only sampling cannot separate the pairs 0/1, 2/3 and 4/5: inside each pair the two classes are
random processes with the same single-frame distribution (object shown half the time; offset uniform over
the same set; position uniform over the frame) that forget their past after at most 8 frames (every
redraw and every stroke starts afresh, at a random phase). Frames 8 or more apart are therefore
independent draws from that same distribution in both classes: the Slow pathway's frames (tau = 16
apart for 4x16; at least 16 apart in the PySlowFast convention too, whose 4x16 offsets are 0, 20, 40, 63;
8 apart for 8x8) carry no information about which class of the pair they came from, whatever the clip's
start. The Fast pathway's frames, 2 apart, see whether the state changes every frame or every fourth
frame, and the direction of each stroke. So a Slow-only model tops out at 5/8 = 62.5% top-1 on a balanced
set (chance inside three pairs), while the Fast pathway can reach 100%; the drift pair checks that the
motion the Slow pathway can see is learnt too. The claim holds for clips whose Slow frames are at least 8
frames apart (all 4x16 and 8x8 presets, both sampling conventions).

Same seed, same arguments: byte-identical manifests and identical decoded frames (libvpx/x264 with one
thread and FFmpeg's bitexact muxing make the files byte-identical too, on the same library versions).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.common.lock import LOCK_FILE, own_folder
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.data import parallel
from slowfast_trt.data.manifest import Entry, write_manifest
from slowfast_trt.data.video_io import GOP, VideoWriter, codec_spec, count_frames

CLASSES = ("flicker_fast", "flicker_slow", "jitter_fast", "jitter_slow", "dash_left", "dash_right", "drift_left", "drift_right")
SLOW_AMBIGUOUS_PAIRS = ((0, 1), (2, 3), (4, 5))
OBJECT_SIZES = (8, 10, 12, 14)  # object side or diameter in pixels, drawn per video
MEMORY = 8  # frames after which every ambiguous class forgets its past (the longest hold / stroke)
FAST_HOLD, SLOW_HOLD = 2, 8
JITTER_OFFSETS = np.arange(-6, 7, 2)
DASH_SPEEDS = (2, 4)
DRIFT_SPEEDS = (0.5, 0.75)
SYNTH_CODECS = ("vp9", "h264")
SYNTH_QUALITY = 20  # crf: clean edges for small frames, still tiny files
MARKER = "synth.json"  # the arguments of a finished set
SETTINGS = ".synth-settings.json"  # the arguments of the run writing (or last killed in) the folder


@dataclass(frozen=True)
class EncodeJob:
    """Everything one worker needs to render and encode video `index` (deterministic in these fields)."""

    index: int
    seed: int
    height: int
    width: int
    frames: int
    fps: int
    codec: str
    path: str
    tmp: str


@dataclass(frozen=True)
class SynthJob(EncodeJob):
    """An EncodeJob for one video of the classification set: its class too."""

    label: int = 0


@dataclass
class SynthReport:
    """Where the set went and how long it took."""

    out: Path
    videos: int
    train: int
    val: int
    seconds: float
    classes: list[str] = field(default_factory=lambda: list(CLASSES))


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W); both even and at least 32 (yuv420p and the object sizes need it)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m:
        raise SlowFastError(f"--size must look like HxW, e.g. 64x80; got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 32 or w < 32 or h % 2 or w % 2 or h > 2160 or w > 3840:
        raise SlowFastError(f"--size {h}x{w}: height and width must be even numbers between 32 and 3840")
    return h, w


def _hold(rng: np.random.Generator, frames: int, hold: int, draw) -> np.ndarray:
    """A value redrawn every `hold` frames, with the first switch at a random phase (a stationary process)."""
    phase = int(rng.integers(0, hold))
    blocks = (np.arange(frames) + phase) // hold
    values = draw(int(blocks[-1]) + 1)
    return values[blocks]


def _home(rng: np.random.Generator, height: int, width: int, margin: int, n: int | None = None):
    """Even (x, y) uniform in the frame's central square (what centre and training crops keep), `margin` from its edges."""
    side = min(height, width)
    lo_x, lo_y = (width - side) // 2 + margin, (height - side) // 2 + margin
    span = max(1, (side - 2 * margin) // 2)
    x = lo_x + rng.integers(0, span, n) * 2
    y = lo_y + rng.integers(0, span, n) * 2
    return (x - x % 2, y - y % 2) if n is not None else (int(x - x % 2), int(y - y % 2))


def trajectory(
    label: int, rng: np.random.Generator, frames: int, height: int, width: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object centre (x, y) per frame (even pixel coordinates, on a torus) and its visibility, for class `label`.

    Inside each Slow-ambiguous pair both classes draw from the same distributions and differ only in how
    the draws are ordered in time (see the module docstring).
    """
    name = CLASSES[label]
    even = lambda v: (np.round(np.asarray(v) / 2) * 2).astype(np.int64)  # noqa: E731
    x0, y0 = _home(rng, height, width, size // 2 + int(JITTER_OFFSETS.max()))
    x = np.full(frames, x0)
    y = np.full(frames, y0)
    visible = np.ones(frames, dtype=bool)
    if name.startswith("flicker"):
        hold = FAST_HOLD if name.endswith("fast") else SLOW_HOLD
        visible = _hold(rng, frames, hold, lambda n: rng.integers(0, 2, n).astype(bool))
    elif name.startswith("jitter"):
        hold = FAST_HOLD if name.endswith("fast") else SLOW_HOLD
        x = x0 + _hold(rng, frames, hold, lambda n: rng.choice(JITTER_OFFSETS, n))
        y = y0 + _hold(rng, frames, hold, lambda n: rng.choice(JITTER_OFFSETS, n))
    elif name.startswith("dash"):
        # Strokes of MEMORY frames centred on a random point: left and right visit the same positions, in
        # opposite orders, so a single frame (or frames a stroke apart) cannot tell the direction.
        sign = -1 if name.endswith("left") else 1
        speed = int(rng.choice(DASH_SPEEDS))
        phase = int(rng.integers(0, MEMORY))
        stroke = (np.arange(frames) + phase) // MEMORY
        step = (np.arange(frames) + phase) % MEMORY
        mx, my = _home(rng, height, width, size // 2, int(stroke[-1]) + 1)
        x = even(mx[stroke] + sign * speed * (step - (MEMORY - 1) / 2))
        y = my[stroke]
    else:  # drift: steady motion that wraps around the frame
        sign = -1 if name.endswith("left") else 1
        speed = float(rng.choice(DRIFT_SPEEDS))
        x = even(x0 + sign * speed * np.arange(frames))
    return np.mod(x, width), np.mod(y, height), visible


def contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> np.ndarray:
    luma = np.array([0.299, 0.587, 0.114])
    for _ in range(100):
        c = rng.integers(0, 256, 3)
        if abs(float(luma @ c) - float(luma @ against)) >= 80:
            return c
    return np.where(luma @ against > 127, 0, 255) * np.ones(3, dtype=np.int64)


def render(label: int, seed: int, index: int, frames: int, height: int, width: int) -> np.ndarray:
    """The frames of video `index` of class `label`: uint8 F,H,W,3 RGB, a pure function of its arguments."""
    rng = np.random.default_rng([seed, index, label, 0x5F])
    bg_colour = rng.integers(20, 236, 3)
    bg = np.broadcast_to(bg_colour.astype(np.float32), (height, width, 3)).copy()
    bg += rng.normal(0, rng.uniform(0, 12), (height, width, 1)).astype(np.float32)
    for _ in range(int(rng.integers(0, 3))):  # static distractor boxes, the same in every frame
        h, w = (int(v) for v in rng.integers(3, 8, 2) * 2)
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        bg[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    colour = contrasting_colour(rng, bg_colour).astype(np.uint8)
    size = int(rng.choice(OBJECT_SIZES))
    disc = bool(rng.integers(0, 2))
    cx, cy, visible = trajectory(label, rng, frames, height, width, size)
    xs, ys = np.arange(width), np.arange(height)
    dx = (xs[None, :] - cx[:, None] + width // 2) % width - width // 2  # F,W signed distance on the torus
    dy = (ys[None, :] - cy[:, None] + height // 2) % height - height // 2  # F,H
    half = size // 2
    if disc:
        r2 = (dy[:, :, None] + 0.5) ** 2 + (dx[:, None, :] + 0.5) ** 2
        mask = r2 <= half * half
    else:
        mask = ((dy >= -half) & (dy < half))[:, :, None] & ((dx >= -half) & (dx < half))[:, None, :]
    mask &= visible[:, None, None]
    return np.where(mask[..., None], colour, bg[None])


def make_video(job: SynthJob) -> dict:
    """Worker: render video `job.index`, encode it to a temporary file, count its packets, rename into place."""
    return encode(render(job.label, job.seed, job.index, job.frames, job.height, job.width), job)


def encode(frames: np.ndarray, job) -> dict:
    """Encode rendered frames to `job.tmp` (deterministic settings), check the packet count, rename to `job.path`."""
    spec = codec_spec(job.codec, SYNTH_CODECS)
    parallel.set_partial_output(job.tmp)
    Path(job.tmp).parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(job.tmp, spec, job.width, job.height, job.fps, gop=GOP, threads=1, bitexact=True, quality=SYNTH_QUALITY) as w:
        for f in frames:
            w.write(f)
    n = count_frames(job.tmp)
    if n != job.frames:
        raise RuntimeError(f"encoded {job.frames} frames but the file has {n} packets")
    Path(job.path).parent.mkdir(parents=True, exist_ok=True)
    os.replace(job.tmp, job.path)
    return {"num_frames": n}


def assign_labels(n: int, seed: int) -> np.ndarray:
    """Balanced labels (video i has label labels[i]), shuffled deterministically with the seed."""
    return np.random.default_rng([seed, 0xC1A55]).permutation(np.arange(n) % len(CLASSES))


def split(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation videos: `val_fraction` of each class (at least one), chosen with the seed."""
    rng = np.random.default_rng([seed, 0x5B117])
    val = np.zeros(len(labels), dtype=bool)
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(labels == c)
        k = int(round(val_fraction * len(idx)))
        if val_fraction > 0 and len(idx) >= 2:
            k = max(1, k)  # every class is validated, even in tiny sets
        val[rng.permutation(idx)[:k]] = True
    return val


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def synth_folder(out: Path, params: dict, command: str = "slowfast data synth") -> Iterator[Path]:
    """Own OUT for one `data synth` run (locked; dead runs' temporary files deleted).

    OUT must be new, empty, or made by `data synth`: with the same arguments (a finished or a killed run) its
    videos are kept and only the missing ones are made, so a re-run resumes; with other arguments the videos
    are made afresh. The arguments are recorded first, so a killed run is recognised too.
    """
    if out.exists() and not out.is_dir():
        raise SlowFastError(f"{out} exists and is not a folder; pick another OUT")
    with own_folder(out, command):
        have = _read_json(out / SETTINGS) or _read_json(out / MARKER)
        if have is None and any(p.name != LOCK_FILE for p in out.iterdir()):
            raise SlowFastError(f"{out} is not empty and was not made by `data synth`; pick an empty or new folder")
        if have is not None and have != params:
            (out / MARKER).unlink(missing_ok=True)
            shutil.rmtree(out / "videos", ignore_errors=True)  # other arguments: no stale videos of the earlier set
        shutil.rmtree(out / ".tmp", ignore_errors=True)  # partial files of a killed run
        atomic_write_text(out / SETTINGS, json.dumps(params, sort_keys=True) + "\n")
        yield out


def missing(jobs: list) -> list:
    """The jobs whose video is not in place yet (a video is renamed into place only once complete)."""
    return [j for j in jobs if not Path(j.path).is_file()]


def synth(
    out: str | os.PathLike,
    videos: int = 480,
    seed: int = 0,
    codec: str = "vp9",
    size: str | tuple[int, int] = "64x80",
    frames: int = 96,
    fps: int = 30,
    val_fraction: float = 0.2,
    workers: int | None = None,
    progress: bool = True,
) -> SynthReport:
    """Generate the synthetic set in OUT: videos/<class>/<index>, manifest.csv, train.csv, val.csv, classes.txt, README.md."""
    codec_spec(codec, SYNTH_CODECS)
    height, width = parse_size(size) if isinstance(size, str) else size
    if videos < len(CLASSES):
        raise SlowFastError(f"--videos must be at least {len(CLASSES)} (one per class), got {videos}")
    if frames < 2 * MEMORY:
        raise SlowFastError(f"--frames must be at least {2 * MEMORY}, got {frames}; a 4x16 clip needs 64")
    if not 1 <= fps <= 240:
        raise SlowFastError(f"--fps must be between 1 and 240, got {fps}")
    if not 0 <= val_fraction < 1:
        raise SlowFastError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    t0 = time.perf_counter()
    out = Path(out)
    params = {
        "videos": videos,
        "seed": seed,
        "codec": codec,
        "size": [height, width],
        "frames": frames,
        "fps": fps,
        "val_fraction": val_fraction,
    }
    with synth_folder(out, params):
        return _synth(out, params, workers, progress, t0)


def encode_missing(jobs: list, make: Callable, out: Path, workers: int | None, progress: bool) -> None:
    """Encode the jobs whose videos are not there yet (a killed run resumes), in parallel, then drop OUT/.tmp."""
    todo = missing(jobs)
    bar = progress_bar(total=len(jobs), initial=len(jobs) - len(todo), unit="video", desc="synth", enabled=progress)
    try:
        for i, _result, reason in parallel.run_parallel(make, todo, workers):
            if reason is not None:
                raise SlowFastError(f"could not write synthetic video {todo[i].path}: {reason}")
            bar.update(1)
    finally:
        bar.close()
    shutil.rmtree(out / ".tmp", ignore_errors=True)


def _synth(out: Path, params: dict, workers: int | None, progress: bool, t0: float) -> SynthReport:
    videos, seed, codec, frames, fps = params["videos"], params["seed"], params["codec"], params["frames"], params["fps"]
    height, width = params["size"]
    spec = codec_spec(codec)
    labels = assign_labels(videos, seed)
    jobs = []
    for i, lab in enumerate(labels.tolist()):
        rel = f"videos/{CLASSES[lab]}/{i:05d}{spec.extension}"
        jobs.append(
            SynthJob(i, seed, height, width, frames, fps, codec, str(out / rel), str(out / ".tmp" / f"{i:05d}{spec.extension}"), label=lab)
        )
    encode_missing(jobs, make_video, out, workers, progress)
    entries = [Entry(os.path.relpath(j.path, out), j.label, frames, float(fps), width, height, codec) for j in jobs]
    val = split(labels, params["val_fraction"], seed)
    write_manifest(out / "manifest.csv", entries, list(CLASSES))
    write_manifest(out / "train.csv", [e for e, v in zip(entries, val) if not v])
    write_manifest(out / "val.csv", [e for e, v in zip(entries, val) if v])
    atomic_write_text(out / "README.md", readme(videos, seed, codec, height, width, frames, fps))
    atomic_write_text(out / MARKER, json.dumps(params, sort_keys=True) + "\n")
    return SynthReport(out, videos, int((~val).sum()), int(val.sum()), time.perf_counter() - t0)


def readme(videos: int, seed: int, codec: str, height: int, width: int, frames: int, fps: int) -> str:
    """The README written beside the set: how it was made and the class table with the Slow-only argument."""
    doc = __doc__.split("\n\n", 1)[1]
    return (
        f"# Synthetic motion set\n\n`slowfast data synth --videos {videos} --seed {seed} --codec {codec} "
        f"--size {height}x{width} --frames {frames} --fps {fps}`\n\n{doc}"
    )
