"""`data preview`: look at K clips exactly as the model will see them, and keep the numbers behind each.

For K videos of a manifest (chosen with the seed) it builds the same per-sample plans as training
(`mode="train"`: random clip, scale jitter, crop, flip) or testing (`mode="test"`: the centre clip, three
crops), runs them through the DALI pipeline, and writes per sample:

- `NNN_<name>.png`: a contact sheet, one block per view: the Slow frames on top, the Fast frames below
  (de-normalised; gray/time-difference Fast inputs shown as gray), each tile labelled with its frame number;
- `NNN_<name>.npz`: `video` (the file path), `label`, `fast_indices`, `slow_indices` (the frame numbers
  used), `frames` (those decoded Fast frames, uint8 F,H,W,C, before any resize or crop), `slow` and `fast`
  (the model inputs, N,C,T,H,W float with N = 1 view for train and 3 crops for test), `slow_positions`
  (where the Slow frames sit among the Fast ones), `backend`.

The backend is DALI whenever it can decode the files on this machine (all codecs on a GPU; VP8/VP9/MJPEG
on the CPU); otherwise (say H.264 without a GPU) the PyAV reference decoder, which applies the same steps,
is used and the report says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import probe_writable
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import multiview_plan, train_plan
from slowfast_trt.dali_pipelines.pyav_loader import decode_frames, test_crops, train_clip
from slowfast_trt.dali_pipelines.spec import FeedSpec, dali_device
from slowfast_trt.data.contact_sheet import contact_sheet
from slowfast_trt.data.manifest import read_manifest, to_videos
from slowfast_trt.data.video_io import DALI_CPU_CODECS, VideoError, probe
from slowfast_trt.model.inputs import make_fast_input

DEFAULT_PRESET = "slowfast_tiny_4x16"  # 4x16 clips, 64-pixel crops: the synthetic set as the demo model sees it
BACKENDS = ("auto", "dali", "pyav")


@dataclass
class PreviewReport:
    """The files written and the backend that produced the clips."""

    out: Path
    backend: str
    samples: list[tuple[Path, Path]] = field(default_factory=list)  # (png, npz) per sample
    note: str | None = None


def _config(preset: str, overrides: dict):
    return model.get_config(preset, **{k: v for k, v in overrides.items() if v is not None})


def choose(num_videos: int, n: int, seed: int) -> list[int]:
    """Which manifest rows to preview: `n` distinct rows chosen with `seed`, in manifest order."""
    if n < 1:
        raise SlowFastError(f"--n must be >= 1, got {n}")
    k = min(n, num_videos)
    return sorted(np.random.default_rng([seed, 0x9E]).choice(num_videos, size=k, replace=False).tolist())


def plans_for(videos: list, cfg, mode: str, seed: int) -> list:
    """The clip plans the training or test pipeline would make for these videos (one clip each), by video."""
    if mode == "train":
        plans = train_plan(videos, cfg, epoch=0, seed=seed)
    elif mode == "test":
        plans = multiview_plan(videos, cfg, num_clips=1)
    else:
        raise SlowFastError(f"--mode must be train or test, got {mode!r}")
    return sorted(plans, key=lambda p: p.video)


def pick_backend(backend: str, codecs: list[str], device: str) -> tuple[str, str, str | None]:
    """(backend, DALI device, note): DALI when it can decode every codec here, else the PyAV reference."""
    if backend not in BACKENDS:
        raise SlowFastError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "pyav":
        return "pyav", "cpu", None
    try:
        dev = dali_device(device)
    except SlowFastError:
        if backend == "dali":
            raise
        return "pyav", "cpu", "NVIDIA DALI is not usable here; showing the PyAV reference decoder's clips (same plans and steps)"
    blocked = sorted({c for c in codecs if c not in DALI_CPU_CODECS}) if dev == "cpu" else []
    if blocked and backend == "auto":
        return (
            "pyav",
            "cpu",
            (
                f"DALI cannot decode {', '.join(blocked)} on the CPU; showing the PyAV reference decoder's clips "
                "(same plans and steps); transcode with `slowfast data prepare --codec vp9` to preview through DALI"
            ),
        )
    return "dali", dev, None


def _dali_samples(plans: list, cfg, mode: str, device: str, videos: list):
    """(frames, slow, fast) per plan from the DALI pipeline: raw decoded Fast frames, then the model inputs."""
    feed = FeedSpec(device=device, batch_size=1, num_crops=3, skip_bad=None)  # test mode: the three test crops
    decode = ClipLoader(plans, cfg, "decode", feed, videos=videos)  # checks files and codecs first
    raw = [b["fast"][0].cpu().numpy() for b in decode]
    views = [
        (b["slow"].cpu().numpy() if "slow" in b else None, b["fast"].cpu().numpy() if "fast" in b else None)
        for b in ClipLoader(plans, cfg, mode, feed)
    ]
    if len(raw) != len(plans) or len(views) != len(plans):
        raise SlowFastError(f"DALI returned {len(views)} clips for {len(plans)} plans; run `slowfast data check` on the manifest")
    return [(r, s, f) for r, (s, f) in zip(raw, views)]


def _pyav_samples(plans: list, cfg, mode: str):
    """The same (frames, slow, fast) from the PyAV reference loader (DALI's colour conversion and geometry)."""
    out = []
    for p in plans:
        frames = decode_frames(p.path, p.fast_idx, exact=True)
        fast = train_clip(frames, p, cfg)[None] if mode == "train" else torch.stack(test_crops(frames, cfg))
        slow = fast.index_select(2, torch.tensor(p.slow_pos, dtype=torch.long))  # a copy: the plan's arrays are read-only
        out.append((frames, slow.numpy() if cfg.has_slow else None, make_fast_input(fast, cfg).numpy() if cfg.has_fast else None))
    return out


def preview(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    mode: str = "train",
    n: int = 4,
    preset: str = DEFAULT_PRESET,
    seed: int = 0,
    backend: str = "auto",
    device: str = "auto",
    **overrides,
) -> PreviewReport:
    """Write a contact sheet (PNG) and the arrays (NPZ) of `n` clips of MANIFEST as the model sees them.

    `overrides` are model config fields (num_frames, tau, alpha, crop_size, test_crop_size, sampling, ...)
    applied to the preset; None values are ignored.
    """
    cfg = _config(preset, overrides)
    if mode not in ("train", "test"):
        raise SlowFastError(f"--mode must be train or test, got {mode!r}")
    m = read_manifest(manifest)
    if not m.entries:
        raise SlowFastError(f"{manifest} has no rows")
    rows = choose(len(m.entries), n, seed)
    sub = type(m)([m.entries[i] for i in rows], m.classes, m.root)
    videos = to_videos(sub)
    codecs = [e.codec or _codec(sub.resolve(e)) for e in sub.entries]
    name, dali_dev, note = pick_backend(backend, codecs, device)
    plans = plans_for(videos, cfg, mode, seed)
    out = probe_writable(out)  # a read-only or full --out is one line, before any clip is decoded
    samples = _dali_samples(plans, cfg, mode, dali_dev, videos) if name == "dali" else _pyav_samples(plans, cfg, mode)
    report = PreviewReport(out, name, note=note)

    for k, (p, (frames, slow, fast)) in enumerate(zip(plans, samples)):
        stem = f"{k:03d}_{Path(p.path).stem}"
        label = p.label if isinstance(p.label, int) else list(p.label)
        label_name = m.classes[label] if isinstance(label, int) else ",".join(m.classes[i] for i in label)
        arrays = {
            "video": np.array(p.path),
            "label": np.array(label),
            "fast_indices": p.fast_idx.astype(np.int64),
            "slow_indices": p.slow_idx.astype(np.int64),
            "slow_positions": p.slow_pos.astype(np.int64),
            "frames": np.asarray(frames, dtype=np.uint8),
            "mode": np.array(mode),
            "backend": np.array(name),
        }
        if slow is not None:
            arrays["slow"] = slow.astype(np.float32)
        if fast is not None:
            arrays["fast"] = fast.astype(np.float32)
        if p.roi is not None:
            arrays["roi"] = np.asarray(p.roi, dtype=np.float64)
        npz = out / f"{stem}.npz"
        np.savez_compressed(npz, **arrays)
        title = (
            f"{Path(p.path).name}  label {label} ({label_name})  {mode}  {cfg.name} {cfg.num_frames}x{cfg.tau} alpha={cfg.alpha}  [{name}]"
        )
        png = contact_sheet(out / f"{stem}.png", title, cfg, slow, fast, p.slow_idx, p.fast_idx)
        report.samples.append((png, npz))
    return report


def _codec(path: str) -> str:
    try:
        return probe(path).codec
    except VideoError as e:
        raise SlowFastError(f"{path}: {e}; run `slowfast data check` on the manifest") from None
