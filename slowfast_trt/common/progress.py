"""Progress for long work: a live bar on a terminal, and on a pipe or file one plain line every `interval` seconds.

A bar's carriage-return frames are noise in a log (`slowfast data synth ... 2>log`), so off a terminal the same calls
write a line like `synth: 12/64 video (18.8%) 4.1 video/s` at most every 30 s and once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sized
from typing import IO

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


class LineProgress:
    """The part of tqdm's interface the project uses (update, set_postfix, close, iteration, context manager), as plain lines."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        initial: int = 0,
        desc: str = "",
        unit: str = "it",
        file: IO | None = None,
        interval: float = LOG_INTERVAL_S,
    ):
        self.iterable, self.total, self.n, self.desc, self.unit = iterable, total, initial, desc, unit
        if total is None and isinstance(iterable, Sized):
            self.total = len(iterable)
        self.file = file or sys.stderr
        self.interval = interval
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._initial = initial
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n > self._initial or self.total == 0:
                self._write()

    def _write(self) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100.0 * self.n / self.total:.1f}%)" if self.total else ""
        rate = f" {(self.n - self._initial) / elapsed:.1f} {self.unit}/s"
        tail = f" {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}{pct}{rate}{tail}", file=self.file, flush=True)


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    initial: int = 0,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
    file: IO | None = None,
    interval: float = LOG_INTERVAL_S,
):
    """A progress object for `iterable` or `total` units: a tqdm bar on a terminal, plain lines elsewhere, nothing when disabled."""
    stream = file or sys.stderr
    if not enabled:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, leave=leave, file=stream, dynamic_ncols=True)
    return LineProgress(iterable, total=total, initial=initial, desc=desc, unit=unit, file=stream, interval=interval)
