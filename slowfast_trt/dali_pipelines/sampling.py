"""The clip-index math, defined once: which raw frames a clip spans and which of them feed Slow and Fast.

Pure functions on frame numbers, shared by the DALI plans, the PyAV reference decoder, `data preview` and
the tests. Two conventions: "pyslowfast" reproduces the reference code (a truncated linspace over the
clip for Fast, and a truncated linspace over the Fast frames for Slow; needed to match the zoo weights);
"strided" is the textbook reading (Fast every tau/alpha frames, Slow every tau frames).
"""

from __future__ import annotations

import numpy as np

from slowfast_trt.common.errors import SlowFastError

CONVENTIONS = ("pyslowfast", "strided")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise SlowFastError(f"unknown sampling convention {convention!r}; use one of {CONVENTIONS}")


def clip_span(num_frames_T: int, tau: int, fps: float = 30, target_fps: float = 30) -> int:
    """Raw frames one clip spans: T * tau at `target_fps` (30, as the reference), scaled to the video's `fps`."""
    if num_frames_T < 1 or tau < 1:
        raise SlowFastError(f"a clip needs T >= 1 and tau >= 1, got T={num_frames_T}, tau={tau}")
    if not fps or fps <= 0 or target_fps <= 0:
        raise SlowFastError(f"frame rates must be positive, got fps={fps}, target_fps={target_fps}; fix the manifest's fps column")
    return max(1, int(round(num_frames_T * tau * float(fps) / float(target_fps))))


def train_start(num_video_frames: int, span: int, rng: np.random.Generator) -> int:
    """A training clip's first frame, uniform in [0, max(0, n - span)] (0 when the video is shorter than the clip)."""
    return int(rng.integers(0, max(0, num_video_frames - span) + 1))


def test_start(num_video_frames: int, span: int, k: int, K: int) -> int:
    """First frame of test clip k of K: (n - span) * k / K rounded down; the centre, (n - span) / 2, when K == 1."""
    if K < 1 or not 0 <= k < K:
        raise SlowFastError(f"test clip index must satisfy 0 <= k < K, got k={k}, K={K}")
    delta = max(0, num_video_frames - span)
    start = delta / 2 if K == 1 else delta * k / K
    return max(0, int(np.floor(start)))


def fast_indices(start: int, span: int, alpha_T: int, n: int, convention: str = "pyslowfast") -> np.ndarray:
    """The alpha*T frame numbers of the Fast pathway for a clip starting at `start`, clamped to [0, n - 1].

    pyslowfast: floor(linspace(start, start + span - 1, alpha*T)); strided: start + i * span / (alpha*T)
    rounded down, i.e. every tau/alpha frames at the reference frame rate.
    """
    _check_convention(convention)
    if alpha_T < 1 or n < 1:
        raise SlowFastError(f"need alpha*T >= 1 and a video with frames, got alpha*T={alpha_T}, n={n}")
    if convention == "pyslowfast":
        idx = np.floor(np.linspace(start, start + span - 1, alpha_T))
    else:
        idx = start + (np.arange(alpha_T) * span) // alpha_T
    return np.clip(idx, 0, n - 1).astype(np.int64)


def slow_indices(fast_idx: np.ndarray, T: int, convention: str = "pyslowfast") -> np.ndarray:
    """The T frame numbers of the Slow pathway, always a subset of the Fast frames.

    pyslowfast: fast[floor(linspace(0, alpha*T - 1, T))] (for 4x16: Fast positions 0, 10, 20, 31);
    strided: every alpha-th Fast frame (positions 0, 8, 16, 24), i.e. start + j * tau.
    """
    _check_convention(convention)
    fast_idx = np.asarray(fast_idx, dtype=np.int64)
    m = len(fast_idx)
    if T < 1 or m < T:
        raise SlowFastError(f"the Slow pathway needs 1 <= T <= alpha*T, got T={T} with {m} Fast frames")
    if convention == "pyslowfast":
        pos = np.floor(np.linspace(0, m - 1, T)).astype(np.int64)
    else:
        pos = np.arange(T, dtype=np.int64) * (m // T)
    return fast_idx[pos]
