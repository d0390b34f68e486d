"""Input facts in one place: tensor shapes per pathway, and the Fast-pathway input variants of Table 5c."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.config import SlowFastConfig

# ITU-R BT.601 luma weights; they sum to 1, so gray of normalised RGB equals normalised gray (mean/std equal per channel).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
BOXES_PER_CLIP = 2  # boxes per clip in example/random detection inputs (the real count is dynamic)


def input_shapes(cfg: SlowFastConfig, size: int | None = None, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """`{"slow": (N, 3, T, S, S), "fast": (N, C_f, alpha*T, S_f, S_f)}` for the pathways the model has."""
    s = cfg.test_crop_size if size is None else size
    shapes: dict[str, tuple[int, ...]] = {}
    if cfg.has_slow:
        shapes["slow"] = (batch, 3, cfg.num_frames, s, s)
    if cfg.has_fast:
        sf = s // cfg.fast_spatial_ratio
        shapes["fast"] = (batch, cfg.fast_channels_in, cfg.fast_frames, sf, sf)
    if cfg.detection:  # K x [batch_index, x1, y1, x2, y2] in input pixels; K is free (BOXES_PER_CLIP per clip here)
        shapes["boxes"] = (batch * BOXES_PER_CLIP, 5)
    return shapes


def random_boxes(num_boxes: int, batch: int, size: int, device="cpu", generator=None) -> torch.Tensor:
    """`num_boxes` valid boxes [batch_index, x1, y1, x2, y2] inside a `size` x `size` input, spread over the batch."""
    corners = torch.rand(num_boxes, 2, 2, generator=generator).to(device) * size
    lo, hi = corners.min(dim=1).values, corners.max(dim=1).values + 1.0
    index = (torch.arange(num_boxes, device=device) % batch).float().unsqueeze(1)
    return torch.cat([index, lo, hi.clamp(max=float(size))], dim=1)


def random_inputs(cfg: SlowFastConfig, size: int | None = None, batch: int = 1, device="cpu", generator=None) -> dict[str, torch.Tensor]:
    """Random normal inputs of the right shapes (tests, export, benchmarks); valid random boxes for detection models."""
    out = {}
    for k, v in input_shapes(cfg, size, batch).items():
        if k == "boxes":
            out[k] = random_boxes(v[0], batch, cfg.test_crop_size if size is None else size, device, generator)
        else:
            out[k] = torch.randn(v, device=device, generator=generator)
    return out


def normalize(frames: torch.Tensor, cfg: SlowFastConfig, out: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels 0..255 (uint8 or float), channels last `..., 3` -> float32 `(x / 255 - mean) / std`, same shape.

    The torch side of the input normalisation (CPU pipelines' spatial ops, PyAV reference loader, tests), written
    into `out` (contiguous float32) when given; the GPU DALI graphs apply the same `cfg.mean`/`cfg.std` in
    `crop_mirror_normalize`. A type-converting copy, then one multiply-add over rows of W x C values with the
    per-channel constants tiled along the row: the inner loop is a whole row, not 3 channels, and mixed
    uint8/float arithmetic is avoided (1.2 ms instead of 7.4 ms for a 32x224x224x3 clip on one EPYC core).
    """
    c = len(cfg.mean)
    if frames.dim() < 2 or frames.shape[-1] != c:
        raise SlowFastError(f"frames to normalise must be channels-last with {c} channels; got shape {tuple(frames.shape)}")
    if out is None:
        out = torch.empty(frames.shape, dtype=torch.float32, device=frames.device)
    elif out.shape != frames.shape or out.dtype != torch.float32 or not out.is_contiguous():
        raise SlowFastError(
            f"normalize needs a contiguous float32 output of shape {tuple(frames.shape)}; got {out.dtype} {tuple(out.shape)}"
        )
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=frames.device)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=frames.device)
    width = frames.shape[-2]
    rows = out.copy_(frames).view(-1, width * c)
    torch.addcmul((-mean / std).repeat(width), rows, (1.0 / (255.0 * std)).repeat(width), out=rows)
    return out


def make_fast_input(frames: torch.Tensor, cfg: SlowFastConfig) -> torch.Tensor:
    """Turn normalised RGB Fast frames `N, 3, alpha*T, H, W` into the model's Fast input for `cfg.fast_input`.

    gray: luma; time_diff: luma of frame t minus luma of frame t-1 (frame 0 minus itself, i.e. zero, so the
    frame count is kept); half_res: 2x2 average pooling (half the spatial resolution).
    """
    kind = cfg.fast_input
    if frames.dim() != 5 or frames.shape[1] != 3:
        raise SlowFastError(f"Fast frames must be N, 3, T, H, W RGB; got shape {tuple(frames.shape)}")
    if kind == "rgb":
        return frames
    if kind == "half_res":
        return F.avg_pool3d(frames, (1, 2, 2), stride=(1, 2, 2))
    w = torch.tensor(GRAY_WEIGHTS, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1, 1)
    gray = (frames * w).sum(dim=1, keepdim=True)
    if kind == "gray":
        return gray
    if kind == "time_diff":
        prev = torch.cat([gray[:, :, :1], gray[:, :, :-1]], dim=2)
        return gray - prev
    raise SlowFastError(
        f"fast_input={kind!r} needs precomputed optical flow, which the pipelines do not produce; use rgb, gray, time_diff or half_res"
    )
