"""RoIAlign (He et al., Mask R-CNN) in plain torch ops, so the detection head exports to ONNX and TensorRT.

Same arithmetic as torchvision's / Detectron2's `roi_align` (`aligned=True` shifts box corners by half a
pixel; samples outside [-1, size] read zero; bilinear weights clamp at the last row/column), with a fixed
`sampling_ratio` >= 1. The adaptive mode of the reference ops (`sampling_ratio=0`: ceil(box / bin) samples per
bin) makes the number of samples depend on box sizes, which no fixed-shape graph can express, so it is not
offered. Bilinear sampling is separable: each box's samples form a (rows x columns) grid, so the result is
`Wy @ F @ Wx^T` with sparse interpolation matrices Wy (samples x H) and Wx (samples x W) built by comparisons
against `arange`. That is two batched matmuls per box set, no scatter, no loops, and a dynamic box count.
torchvision (which could not be installed beside this project's CPU torch 2.13 wheel) is not needed.
"""

from __future__ import annotations

import torch

from slowfast_trt.common.errors import SlowFastError


def _interp_matrix(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear weights `(K, S, size)` of sample coordinates `coords` `(K, S)` along an axis of `size` cells.

    Follows the reference kernel: samples beyond [-1, size] contribute nothing; others clamp at 0; a sample
    at or beyond the last cell reads that cell with weight 1.
    """
    cells = torch.arange(size, dtype=coords.dtype, device=coords.device)
    extent = cells[-1:] + 1.0  # the size as a tensor: stays a graph value when H, W are dynamic axes of an export
    valid = (coords >= -1.0) & (coords <= extent)
    c = coords.clamp(min=0.0)
    low = torch.floor(c)
    at_end = low >= extent - 1.0
    low = torch.where(at_end, extent - 1.0, low)
    c = torch.where(at_end, low, c)
    high = torch.where(at_end, low, low + 1)
    frac = c - low
    cells = cells.view(1, 1, -1)
    w = (1.0 - frac).unsqueeze(-1) * (cells == low.unsqueeze(-1)).to(coords.dtype)
    w = w + frac.unsqueeze(-1) * (cells == high.unsqueeze(-1)).to(coords.dtype)
    return w * valid.unsqueeze(-1).to(coords.dtype)


def _sample_coords(start: torch.Tensor, length: torch.Tensor, bins: int, ratio: int) -> torch.Tensor:
    """Sample positions `(K, bins * ratio)`: `ratio` evenly spaced points at the centres of each bin's sub-cells."""
    step = (torch.arange(bins * ratio, dtype=start.dtype, device=start.device) + 0.5) / ratio  # in bin units
    return start.unsqueeze(1) + step.unsqueeze(0) * (length / bins).unsqueeze(1)


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> torch.Tensor:
    """RoIAlign of `features` `(N, C, H, W)` over `boxes` `(K, 5)` = [batch_index, x1, y1, x2, y2] in input pixels.

    Returns `(K, C, out_h, out_w)`: each bin is the mean of `sampling_ratio`^2 bilinear samples. `spatial_scale`
    maps input pixels to feature cells (1/16 for res5 of the detection backbone).
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    out_h, out_w = output_size
    if sampling_ratio < 1:
        raise SlowFastError(f"roi_align needs sampling_ratio >= 1 (fixed-shape, exportable); got {sampling_ratio}")
    if features.dim() != 4 or boxes.dim() != 2 or boxes.shape[-1] != 5:
        raise SlowFastError(f"roi_align takes features N,C,H,W and boxes K,5; got {tuple(features.shape)} and {tuple(boxes.shape)}")
    _, channels, height, width = features.shape
    boxes = boxes.to(features.dtype)
    offset = 0.5 if aligned else 0.0
    x1 = boxes[:, 1] * spatial_scale - offset
    y1 = boxes[:, 2] * spatial_scale - offset
    box_w = boxes[:, 3] * spatial_scale - offset - x1
    box_h = boxes[:, 4] * spatial_scale - offset - y1
    if not aligned:  # the legacy op forces boxes to at least one cell
        box_w, box_h = box_w.clamp(min=1.0), box_h.clamp(min=1.0)
    wy = _interp_matrix(_sample_coords(y1, box_h, out_h, sampling_ratio), height)  # K, out_h*r, H
    wx = _interp_matrix(_sample_coords(x1, box_w, out_w, sampling_ratio), width)  # K, out_w*r, W
    per_box = features.index_select(0, boxes[:, 0].long())  # K, C, H, W
    sampled = torch.matmul(torch.matmul(wy.unsqueeze(1), per_box), wx.transpose(1, 2).unsqueeze(1))  # K, C, out_h*r, out_w*r
    r = sampling_ratio
    return sampled.reshape(-1, channels, out_h, r, out_w, r).mean(dim=(3, 5))
