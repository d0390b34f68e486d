"""`--shard I/N`: a deterministic 1/N of a list for independent scheduler jobs (SLURM arrays, indexed Jobs).

Shard I of N takes items I, I+N, I+2N, ... of the list in its given order, so the N shards are disjoint, cover
the list, differ in size by at most one, and do not depend on which job runs first or how often one is re-run.
Data preparation and evaluation share this rule; `check_cover` refuses a merge with a missing or repeated shard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from slowfast_trt.common.errors import SlowFastError

T = TypeVar("T")
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True, order=True)
class Shard:
    """Shard `index` (0-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def indices(self, n: int) -> range:
        """The positions of this shard in a list of `n` items."""
        return range(self.index, n, self.count)

    def pick(self, items: Sequence[T]) -> list[T]:
        """This shard's items of `items`, in their order."""
        return [items[i] for i in self.indices(len(items))]


def parse_shard(text: str) -> Shard:
    """`"I/N"` (0 <= I < N) as a Shard; anything else is a one-line error."""
    m = _SPEC.fullmatch(str(text))
    if not m:
        raise SlowFastError(f"--shard {text!r}: write it as I/N, e.g. 0/4 for the first of four shards")
    shard = Shard(int(m.group(1)), int(m.group(2)))
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        raise SlowFastError(
            f"--shard {text}: I must be in 0..N-1 (0-based, as SLURM_ARRAY_TASK_ID with --array=0-{max(shard.count, 1) - 1})"
        )
    return shard


def check_cover(shards: Iterable[tuple[Shard, str]]) -> int:
    """The shard count N when `shards` (each with where it came from) are 0/N .. N-1/N exactly once; else a one-line error."""
    found = list(shards)
    if not found:
        raise SlowFastError("nothing to merge: give the folders the shard jobs wrote")
    counts = sorted({s.count for s, _ in found})
    if len(counts) > 1:
        raise SlowFastError(
            f"the shards come from runs with different N ({', '.join(f'{s} in {w}' for s, w in found)}); merge one run's shards"
        )
    n = counts[0]
    seen: dict[int, str] = {}
    for s, where in found:
        if s.index in seen:
            raise SlowFastError(f"shard {s} is given twice ({seen[s.index]} and {where}); give each shard's folder once")
        seen[s.index] = where
    missing = [i for i in range(n) if i not in seen]
    if missing:
        names = ", ".join(f"{i}/{n}" for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise SlowFastError(f"shard {names} missing ({len(seen)} of {n} given); run the missing shard job(s), then merge again")
    return n
