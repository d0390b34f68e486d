"""The PyAV reference loader: the same plans as the DALI pipelines, decoded with PyAV and cropped with torch.

Two roles. Ground truth: `decode_frames(..., exact=True)` converts YUV to RGB as DALI does, so tests can
compare frames. Baseline: `PyAVClips` is a PySlowFast-style loader (PyAV decode of the clip's span,
swscale RGB, frame selection, short-side resize, crop, flip, normalise in torch), run serially or in a
torch DataLoader with workers, for the throughput comparison in `slowfast bench pipeline`. The peer loaders
(`peer_loaders`) subclass it and replace only `decode`, so every loader does the same plans and the same work.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.colour import frame_to_rgb
from slowfast_trt.dali_pipelines.plan import ClipPlan, short_side_size
from slowfast_trt.dali_pipelines.spatial import crop_anchor
from slowfast_trt.dali_pipelines.spec import crop_positions
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import make_fast_input, normalize


def decode_frames(path: str, indices, exact: bool = False) -> np.ndarray:
    """Frames `indices` (any order, repeats allowed) of `path` as uint8 F,H,W,3, decoding up to the last one.

    exact=True converts like DALI (BT.601, bilinear chroma; within 1 grey level); otherwise FFmpeg's swscale.
    """
    import av  # lazy: PyAV, optional (extra [data])

    indices = np.asarray(indices, dtype=np.int64)
    wanted = set(indices.tolist())
    last = int(indices.max())
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(c.decode(stream)):
                if i in wanted:
                    got[i] = frame_to_rgb(frame) if exact else frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except (av.error.FFmpegError, OSError, IndexError) as e:
        raise SlowFastError(f"{path}: cannot decode ({e}); run `slowfast data check`") from None
    missing = sorted(wanted - set(got))
    if missing:
        raise SlowFastError(
            f"{path}: has no frame {missing[0]} (decoded {len(got)} of the {len(wanted)} needed); the manifest's frame count is wrong or the file is truncated"
        )
    return np.stack([got[int(i)] for i in indices])


def _normalise(frames: torch.Tensor, cfg: SlowFastConfig) -> torch.Tensor:
    """F,H,W,C pixels (0..255) -> float C,F,H,W normalised (model.inputs.normalize; never in place)."""
    return normalize(frames, cfg).permute(3, 0, 1, 2)


def _pixels(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """F,H,W,3 uint8 frames (numpy, or a torch tensor on any device) -> float F,C,H,W."""
    return torch.as_tensor(frames).permute(0, 3, 1, 2).float()


def train_clip(frames: np.ndarray | torch.Tensor, plan: ClipPlan, cfg: SlowFastConfig) -> torch.Tensor:
    """The training crop of a plan in torch: the plan's source window resized to crop x crop, flipped if asked."""
    if plan.roi is None:
        raise SlowFastError("a training crop needs a train plan (dali_pipelines.plan.train_plan gives each an roi)")
    y0, xa, y1, xb = plan.roi
    x0, x1 = min(xa, xb), max(xa, xb)
    t = _pixels(frames)
    # Sample the window's pixel centres bilinearly (the same geometry as DALI's ROI resize).
    size = cfg.crop_size
    ys = y0 + (torch.arange(size) + 0.5) * (y1 - y0) / size - 0.5
    xs = x0 + (torch.arange(size) + 0.5) * (x1 - x0) / size - 0.5
    h, w = t.shape[-2:]
    grid_y = (ys + 0.5) / h * 2 - 1
    grid_x = (xs + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(grid_y, grid_x, indexing="ij")[::-1], dim=-1).to(t.device).unsqueeze(0).expand(t.shape[0], -1, -1, -1)
    out = F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if plan.flip:
        out = out.flip(-1)
    return _normalise(out.permute(0, 2, 3, 1).clamp(0, 255), cfg)


def test_crops(frames: np.ndarray | torch.Tensor, cfg: SlowFastConfig, num_crops: int = 3) -> list[torch.Tensor]:
    """Short side resized to the test crop size, then left/centre/right (top/centre/bottom) square crops."""
    t = _pixels(frames)
    h, w = t.shape[-2:]
    size = cfg.test_crop_size
    nh, nw = short_side_size(h, w, size, at_least=size)
    t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False)
    out = []
    for pos in crop_positions(num_crops):
        y, x = crop_anchor(nh, size, pos), crop_anchor(nw, size, pos)
        out.append(_normalise(t[:, :, y : y + size, x : x + size].permute(0, 2, 3, 1), cfg))
    return out


class PyAVClips(torch.utils.data.Dataset):
    """A PySlowFast-style dataset over clip plans: PyAV decode, torch augmentation, one clip (or 3 views) per item.

    `decode(path, indices)` is the only decoder-specific step; a subclass that overrides it gets the same
    plans, crops, flips and normalisation."""

    def __init__(self, plans: list[ClipPlan], cfg: SlowFastConfig, mode: str, num_crops: int = 3):
        if mode not in ("train", "test"):
            raise SlowFastError(f"mode must be train or test, got {mode!r}")
        self.plans, self.cfg, self.mode, self.num_crops = plans, cfg, mode, num_crops

    def __len__(self) -> int:
        return len(self.plans)

    def decode(self, path: str, indices: np.ndarray) -> np.ndarray | torch.Tensor:
        """Frames `indices` of `path` as uint8 F,H,W,3 (FFmpeg's swscale RGB, as PySlowFast's loader)."""
        return decode_frames(path, indices)

    def __getitem__(self, i: int) -> dict:
        p = self.plans[i]
        frames = self.decode(p.path, p.fast_idx)
        pos = torch.tensor(p.slow_pos, dtype=torch.long, device=frames.device if torch.is_tensor(frames) else None)
        label = torch.tensor(p.label if not isinstance(p.label, (list, tuple)) else p.label[0])
        if self.mode == "train":
            fast = train_clip(frames, p, self.cfg)
            return {
                "slow": fast.index_select(1, pos),
                "fast": make_fast_input(fast[None], self.cfg)[0],
                "label": label,
                "video": p.video,
                "clip": p.clip,
            }
        fast = torch.stack(test_crops(frames, self.cfg, self.num_crops))
        return {
            "slow": fast.index_select(2, pos),
            "fast": make_fast_input(fast, self.cfg),
            "label": label,
            "video": p.video,
            "clip": p.clip,
        }
