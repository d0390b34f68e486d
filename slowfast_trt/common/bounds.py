"""One bound for every size that comes from outside (labels, file headers, configs, options), and short echoes.

A size read from a file or given as an option decides how much memory is allocated; an absurd one must end in one
line naming the value, where it came from and the limit, before the allocation, never in a MemoryError or an
allocator traceback. `check_fits` is that check against the memory this process may have; `check_at_most` against
a limit set by the data. `short` cuts every value an error echoes from a file to a readable prefix.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

from slowfast_trt.common.errors import SlowFastError

MAX_ECHO = 80  # characters of a value from a file that one error line repeats
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # cgroup v2, v1


def short(value: object, limit: int = MAX_ECHO) -> str:
    """`repr(value)` cut to `limit` characters, with the full length said: a file's content in one short line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:limit]}... ({size})"


def cut(text: str, limit: int = 2 * MAX_ECHO) -> str:
    """A message that quotes a file (an exception's text) cut to `limit` characters, with the full length said."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) reads as None


def memory_limit() -> int:
    """Bytes this process may allocate: the smallest of physical memory, its cgroup's limit and its address-space limit."""
    limits = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    limits += [v for p in CGROUP_LIMITS if (v := _read_int(p)) is not None and v > 0]
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    return min(limits)


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_at_most(name: str, value: int, source: str, limit: int, why: str) -> int:
    """`value`, or one line naming it, its `source` and `limit` (`why` says what sets the limit and the fix)."""
    if value > limit:
        raise SlowFastError(f"{name}={value} ({source}) is over the limit {limit}: {why}")
    return value


def check_fits(name: str, value: int, source: str, bytes_at: Callable[[int], int], what: str = "memory") -> int:
    """`value`, or one line when `bytes_at(value)` (what `value` makes this process allocate, monotone in it) is more
    than `memory_limit()`; the line names the value, its `source` and the largest value that fits."""
    have = memory_limit()
    need = bytes_at(value)
    if need <= have:
        return value
    lo, hi = 0, value  # bytes_at(lo) fits (0 allocates nothing), bytes_at(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if bytes_at(mid) <= have else (lo, mid)
    raise SlowFastError(
        f"{name}={value} ({source}) needs at least {_gib(need)} of {what}, more than the {_gib(have)} this process may use; limit {lo} here"
    )
