"""One batch ahead: a generator of batches run in a background thread, so that its work overlaps the consumer's.

On the CPU, torch does the spatial ops of a DALI batch (`dali_pipelines.spatial`) in the process that runs the
model; done inline, a batch's crops wait for the previous batch's inference and the loader is idle while the
model computes. torch's ops and DALI's runs release the GIL, so a thread that prepares the next batch runs
beside inference, as a DataLoader's worker processes do for PyAV. Errors in the thread reach the consumer at the
batch where they happened; a consumer that stops early stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def one_ahead(batches: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield `batches`' items, producing up to `depth` of them ahead in a daemon thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for b in batches:
                if not put((b, None)):
                    return
            put((_DONE, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((_DONE, e))
        finally:
            close = getattr(batches, "close", None)
            if close is not None and stop.is_set():
                close()

    worker = threading.Thread(target=produce, name="slowfast-batch-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()
