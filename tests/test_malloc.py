"""common/malloc.py: glibc's mmap threshold held fixed, so a freed multi-MB buffer does not move the next one into the heap."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# Allocates 6 MiB, frees it, allocates 6 MiB again: is the second block mmap'd (mallinfo2's hblks)?
PROBE = """
import ctypes, sys
class MI(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = MI; libc.malloc.restype = ctypes.c_void_p
{setup}
before = libc.mallinfo2().hblks
libc.free(ctypes.c_void_p(libc.malloc(6 << 20)))
p = libc.malloc(6 << 20)
print(libc.mallinfo2().hblks - before)
"""


def _second_block_mmapped(setup: str, env: dict | None = None) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.strip())


def test_glibc_moves_a_freed_blocks_size_into_the_heap_unless_pinned():
    assert _second_block_mmapped("") == 0  # the dynamic threshold: the second 6 MiB block comes from the heap
    pinned = "from slowfast_trt.common.malloc import pin_mmap_threshold; assert pin_mmap_threshold() == 4 << 20"
    assert _second_block_mmapped(pinned) == 1


def test_the_environment_threshold_wins(monkeypatch):
    from slowfast_trt.common import malloc

    monkeypatch.setattr(malloc, "_pinned", None)
    monkeypatch.setattr(malloc, "_unsupported", False)
    monkeypatch.setenv(malloc.ENV, "1048576")
    assert malloc.pin_mmap_threshold() == 1048576


def test_cpu_loaders_pin_it(monkeypatch):
    from slowfast_trt import model
    from slowfast_trt.dali_pipelines import loader
    from slowfast_trt.dali_pipelines.spec import FeedSpec

    calls = []
    monkeypatch.setattr(loader, "pin_mmap_threshold", lambda: calls.append(1))
    loader.ClipLoader([], model.get_config("slowfast_r50_4x16"), "train", FeedSpec(device="cpu"))
    assert calls == [1]
