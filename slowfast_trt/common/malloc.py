"""glibc's mmap threshold held fixed for long CPU runs, so that freed buffers of a few MB go back to the system.

glibc raises its mmap threshold to the size of each mmap'd block that is freed (up to 32 MiB); blocks of that size
then come from the heap, where blocks of varying sizes leave holes that the resident size keeps, and a CPU loader's
RSS wanders by tens of MB from epoch to epoch (measured in `docs/failure-behaviour.md`). A MALLOC_MMAP_THRESHOLD_ in
the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
THRESHOLD = 4 << 20  # bytes: the CPU pipelines' frame batches and crops are larger, the decoders' small buffers smaller
ENV = "MALLOC_MMAP_THRESHOLD_"

_pinned: int | None = None


def pin_mmap_threshold(nbytes: int = THRESHOLD) -> int | None:
    """Fix glibc's mmap threshold at `nbytes` (once per process); the threshold in force, or None where this C
    library is not glibc. The environment's MALLOC_MMAP_THRESHOLD_, which glibc read at start-up, is kept."""
    global _pinned
    if _pinned is not None:
        return _pinned
    if platform.libc_ver()[0] != "glibc":
        return None
    env = os.environ.get(ENV, "").strip()
    if env.isdigit():
        _pinned = int(env)
        return _pinned
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(nbytes)) != 1:
        return None
    _pinned = nbytes
    return _pinned
