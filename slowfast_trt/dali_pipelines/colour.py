"""YUV 4:2:0 -> RGB exactly as DALI's video decoder converts it, so the PyAV reference can match DALI's frames.

Measured on VP9: DALI converts with BT.601 limited-range coefficients and bilinear (centre-sited) chroma
upsampling. FFmpeg's swscale (PyAV's `to_ndarray(format="rgb24")`) differs by up to 34 grey levels on
saturated colour ramps; this conversion agrees with DALI to within 1 level (rounding) on ~99.8% of pixels.
"""

from __future__ import annotations

import numpy as np

KR, KB = 0.299, 0.114  # BT.601
KG = 1.0 - KR - KB


def _upsample2(plane: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling with centre-sited samples (the half-pixel convention), edge-clamped."""
    p = plane.astype(np.float64)
    h, w = p.shape
    out = np.empty((2 * h, 2 * w))
    for axis, n in ((0, h), (1, w)):
        idx = np.arange(2 * n)
        src = (idx + 0.5) / 2 - 0.5
        lo = np.clip(np.floor(src).astype(int), 0, n - 1)
        hi = np.clip(lo + 1, 0, n - 1)
        frac = np.clip(src - np.floor(src), 0, 1)
        frac = np.where(src < 0, 0.0, frac)
        if axis == 0:
            p = p[lo] * (1 - frac)[:, None] + p[hi] * frac[:, None]
        else:
            p = p[:, lo] * (1 - frac)[None, :] + p[:, hi] * frac[None, :]
    out[:] = p
    return out


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """H,W,3 uint8 RGB from full-size Y and half-size U, V planes (limited range, BT.601)."""
    h, w = y.shape
    uu = _upsample2(u)[:h, :w]
    vv = _upsample2(v)[:h, :w]
    yy = (y.astype(np.float64) - 16.0) * 255.0 / 219.0
    cb = (uu - 128.0) * 255.0 / 224.0
    cr = (vv - 128.0) * 255.0 / 224.0
    r = yy + 2 * (1 - KR) * cr
    b = yy + 2 * (1 - KB) * cb
    g = (yy - KR * r - KB * b) / KG
    return np.clip(np.round(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def frame_to_rgb(frame) -> np.ndarray:
    """RGB of a PyAV VideoFrame, converted as DALI converts (yuv420p input; other formats via swscale)."""
    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        return frame.to_ndarray(format="rgb24")
    planes = frame.to_ndarray()
    h, w = frame.height, frame.width
    y = planes[:h]
    u = planes[h : h + h // 4].reshape(h // 2, w // 2)
    v = planes[h + h // 4 :].reshape(h // 2, w // 2)
    return yuv420_to_rgb(y, u, v)
