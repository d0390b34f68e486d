"""The spatial ops of the CPU pipelines (scale jitter, crop, flip, test crops, normalisation) in torch's uint8 kernels.

On the CPU, DALI's bilinear resize costs about 3.5 ns per output value here (2-core EPYC, DALI 2.4), as much as
decoding the clip; torch's vectorised uint8 bilinear interpolation (`F.interpolate` on channels-last uint8) does
the same resize at about 0.4 ns per value. So CPU pipelines let DALI decode and select the frames, hand the uint8
frames to torch zero-copy, and finish here; GPU pipelines keep every op inside DALI. The geometry is the one
`dali_pipelines.plan` decides (and DALI's ROI resize reproduces): resize the whole frame to `rh x rw`, take the
`crop x crop` window at `(y, x)`, mirror it if asked; testing resizes the short side and cuts crops at
`spec.crop_positions`.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.plan import ClipPlan, short_side_size
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import normalize


def crop_anchor(extent: int, size: int, pos: float) -> int:
    """Start of a `size` crop at relative position `pos` (0 first, 0.5 centre, 1 last) along `extent` pixels.

    Rounds half up, as DALI's crop anchors do."""
    return int((extent - size) * pos + 0.5)


class BufferPool:
    """Float32 output buffers recycled once nothing references them any more.

    A fresh 150 MB batch buffer is mmap'd by malloc and page-faulted in on every batch (about a third of the CPU
    time of the torch ops here). Buffers are numpy arrays shared with torch (`torch.from_numpy`); the tensor
    storage holds one reference to its array while any tensor or view of it lives, so an array whose only
    reference is this pool is free to be written again. Callers may keep batches as long as they like.
    """

    def __init__(self, limit: int = 4):
        self.limit = limit
        self._arrays: list[np.ndarray] = []
        self._scratch: dict[str, torch.Tensor] = {}

    def scratch(self, key: str, shape: tuple[int, ...], memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """A uint8 tensor of `shape` for one clip's intermediate `key`, valid until the next call with that key.

        Training windows differ in size from clip to clip, so fresh tensors would be allocated (and page-faulted
        in) at sizes that never repeat; one buffer per key grows to the largest window and is then reused."""
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = torch.empty(0, dtype=torch.uint8)
        return buf.resize_(shape, memory_format=memory_format)

    def take(self, shape: tuple[int, ...], n: int) -> torch.Tensor:
        """A float32 tensor of `shape` with its first dimension cut to `n` (uninitialised, no other user)."""
        shape = tuple(shape)
        for i in range(len(self._arrays)):
            # References: the list's and getrefcount's argument; a live tensor's storage would add one.
            if self._arrays[i].shape == shape and sys.getrefcount(self._arrays[i]) == 2:
                return torch.from_numpy(self._arrays[i])[:n]
        array = np.empty(shape, dtype=np.float32)
        if len(self._arrays) >= self.limit:  # all in use: forget the oldest (it is freed when its user lets go)
            self._arrays.pop(0)
        self._arrays.append(array)
        return torch.from_numpy(array)[:n]


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 F,H,W,C frames -> bilinear uint8 F,C,h,w in channels-last memory (torch's AVX2 uint8 path; no copy in).

    Each axis maps its whole input onto its whole output (PySlowFast's `F.interpolate(size=...)`; DALI's resize
    with `subpixel_scale=False`)."""
    x = frames.permute(0, 3, 1, 2)  # F,C,H,W view of F,H,W,C memory: channels_last, which the uint8 kernel wants
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def train_crop(frames: torch.Tensor, plan: ClipPlan, crop: int, pool: BufferPool | None = None) -> torch.Tensor:
    """A plan's training window of uint8 F,H,W,C frames: resized, cropped and flipped, as a uint8 F,crop,crop,C view.

    Only the rows and columns up to the window's far edges are resized (explicit scales rh/H, rw/W keep the
    geometry of resizing the whole frame; measured bit-identical and about 2x faster than the whole frame). With
    `pool`, the intermediates live in its scratch buffers and the result is valid until the next call with it."""
    pool = pool or BufferPool()
    if plan.window is None:
        raise SlowFastError(f"training plan for {plan.path} has no resize/crop window; build it with plan.train_plan")
    rh, rw, y, x = plan.window
    if y + crop > rh or x + crop > rw:
        raise SlowFastError(f"training window {plan.window} does not hold a {crop} crop ({plan.path})")
    h, w = frames.shape[1], frames.shape[2]
    sy, sx = rh / h, rw / w
    # Bilinear output pixel i reads input pixels floor((i + 0.5) / s - 0.5) and the next one; keep a margin of one.
    b = min(h, math.floor((y + crop - 0.5) / sy - 0.5) + 3)
    c = min(w, math.floor((x + crop - 0.5) / sx - 0.5) + 3)
    if (b == y + crop and rh != h) or (c == x + crop and rw != w):
        # The uint8 kernel copies an axis whose input and output sizes agree, whatever the scale: resize it all.
        out = _resize(frames, (rh, rw))[:, :, y : y + crop, x : x + crop]
    else:
        part = frames.permute(0, 3, 1, 2)[:, :, :b, :c]  # F,C,H,W view (channels_last memory, as the uint8 kernel wants)
        size = [y + crop, x + crop]
        out = pool.scratch("resized", (part.shape[0], part.shape[1], *size), torch.channels_last)
        out = torch.ops.aten.upsample_bilinear2d.out(part, size, False, sy, sx, out=out)[:, :, y:, x:]
    if plan.flip:
        out = torch.ops.aten.flip.out(out, [-1], out=pool.scratch("flipped", tuple(out.shape), torch.channels_last))
    return out.permute(0, 2, 3, 1)


def test_crops(frames: torch.Tensor, size: int, positions: tuple[float, ...]) -> list[torch.Tensor]:
    """uint8 F,H,W,C frames -> short side resized to `size`, one uint8 F,size,size,C view per crop position."""
    nh, nw = short_side_size(frames.shape[1], frames.shape[2], size, at_least=size)
    short = _resize(frames, (nh, nw)).permute(0, 2, 3, 1)
    out = []
    for pos in positions:
        y, x = crop_anchor(nh, size, pos), crop_anchor(nw, size, pos)
        out.append(short[:, y : y + size, x : x + size])
    return out


def _output(pool: BufferPool | None, shape: tuple[int, ...], n: int) -> torch.Tensor:
    return torch.empty((n, *shape[1:]), dtype=torch.float32) if pool is None else pool.take(shape, n)


def _normalize_clip(
    clip: torch.Tensor, slow_pos, cfg: SlowFastConfig, fast: torch.Tensor, slow: torch.Tensor, pool: BufferPool | None = None
) -> None:
    """Normalise a uint8 F,H,W,C clip into `fast`, and its Slow frames (a gather of uint8 frames) into `slow`."""
    normalize(clip, cfg, out=fast)
    gathered = (pool or BufferPool()).scratch("slow", (len(slow_pos), *clip.shape[1:]))
    torch.index_select(clip, 0, torch.tensor(slow_pos, dtype=torch.long), out=gathered)
    normalize(gathered, cfg, out=slow)


def train_batch(
    frames: list[torch.Tensor], plans: list[ClipPlan], cfg: SlowFastConfig, pool: BufferPool | None = None, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded uint8 Fast frames (one F,H,W,C tensor per plan) -> normalised float (slow, fast), N,T,H,W,C and N,F,H,W,C.

    `pool` recycles the output buffers (sized for `batch_size` clips, so a short last batch reuses them too)."""
    size, n, full = cfg.crop_size, len(frames), max(len(frames), batch_size or 0)
    fast = _output(pool, (full, frames[0].shape[0], size, size, 3), n)
    slow = _output(pool, (full, len(plans[0].slow_pos), size, size, 3), n)
    for i, (f, p) in enumerate(zip(frames, plans)):
        _normalize_clip(train_crop(f, p, size, pool), p.slow_pos, cfg, fast[i], slow[i], pool)
    return slow, fast


def test_batch(
    frames: list[torch.Tensor],
    plans: list[ClipPlan],
    cfg: SlowFastConfig,
    positions: tuple[float, ...],
    pool: BufferPool | None = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded uint8 Fast frames -> every crop of every clip, normalised: (slow, fast) with crop c of clip i at c*N + i."""
    size, n, full = cfg.test_crop_size, len(frames), len(positions) * max(len(frames), batch_size or 0)
    fast = _output(pool, (full, frames[0].shape[0], size, size, 3), len(positions) * n)
    slow = _output(pool, (full, len(plans[0].slow_pos), size, size, 3), len(positions) * n)
    for i, (f, p) in enumerate(zip(frames, plans)):
        for c, view in enumerate(test_crops(f, size, positions)):
            _normalize_clip(view, p.slow_pos, cfg, fast[c * n + i], slow[c * n + i], pool)
    return slow, fast
