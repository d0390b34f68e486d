"""Ctrl-C and SIGTERM as one kind of event: both raise a KeyboardInterrupt, so every cleanup path runs for both.

SIGTERM (what `kill`, systemd and batch schedulers send) raises `Terminated`, a KeyboardInterrupt, instead of
ending the process at once; the CLI then exits 143 where Ctrl-C exits 130 (128 + the signal number, as a shell
reports a process killed by that signal).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise KeyboardInterrupt."""


def exit_status(e: KeyboardInterrupt) -> int:
    """130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` (main thread only; elsewhere signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
