"""glibc's mmap threshold held fixed for long CPU runs, so that freed buffers of a few MB go back to the system.

glibc raises its mmap threshold to the size of each mmap'd block that is freed (up to 32 MiB); blocks of that size
then come from the heap, where blocks of varying sizes leave holes that the resident size keeps, and a CPU loader's
RSS wanders by tens of MB from epoch to epoch (measured in `docs/failure-behaviour.md`). A MALLOC_MMAP_THRESHOLD_ in
the environment wins.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
THRESHOLD = 4 << 20  # bytes: the CPU pipelines' frame batches and crops are larger, the decoders' small buffers smaller
ENV = "MALLOC_MMAP_THRESHOLD_"

_pinned: int | None = None  # the threshold in force once pinned
_unsupported = False  # not glibc, or mallopt refused: asked once


def _is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


def pin_mmap_threshold(nbytes: int = THRESHOLD) -> int | None:
    """Fix glibc's mmap threshold at `nbytes` (once per process); the threshold in force, or None where this C
    library is not glibc. The environment's MALLOC_MMAP_THRESHOLD_, which glibc read at start-up, is kept."""
    global _pinned, _unsupported
    if _pinned is not None or _unsupported:
        return _pinned
    env = os.environ.get(ENV, "").strip()
    if env.isdigit():
        _pinned = int(env)
    elif _is_glibc() and ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, ctypes.c_int(nbytes)) == 1:
        _pinned = nbytes
    else:
        _unsupported = True
    return _pinned


def pinned_threshold() -> int | None:
    """The threshold `pin_mmap_threshold` set in this process, or None where nothing pinned it (for reports)."""
    return _pinned
