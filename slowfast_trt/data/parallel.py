"""Run one function over many files in worker processes, surviving bad files, crashes and interruption.

Built on `concurrent.futures.ProcessPoolExecutor` (spawned workers, so they inherit no locks or threads).
A file that raises gives a reason instead of a result; a worker that dies (a crash inside FFmpeg, the
out-of-memory killer) is attributed to the file it was working on, which is retried once alone and then
rejected, while the other files carry on. On Ctrl-C the workers stop at once and delete their partial
output; when the parent process is killed outright, the workers notice within a fraction of a second and
exit too, so nothing keeps writing after a SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from slowfast_trt.common.bounds import check_fits
from slowfast_trt.common.errors import ENVIRONMENT_ERRNOS, EnvironmentFault
from slowfast_trt.data.video_io import VideoError

CRASH_REASON = "the worker process died while reading it (a crash inside FFmpeg, or out of memory)"

_current_tmp: list[str] = []  # partial output the worker is writing now (deleted if it must stop)


def set_partial_output(path: str | None) -> None:
    """Called by a job in a worker: `path` is being written now and must be deleted if the worker stops."""
    _current_tmp.clear()
    if path:
        _current_tmp.append(path)


def _remove_partial() -> None:
    for p in _current_tmp:
        try:
            os.unlink(p)
        except OSError:
            pass


def _watch(parent: int, stop) -> None:
    while not stop.wait(0.2):
        if os.getppid() != parent:
            break
    _remove_partial()
    os._exit(130)


def _init_worker(parent: int, stop, started) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sets `stop`
    global _started
    _started = started
    threading.Thread(target=_watch, args=(parent, stop), daemon=True).start()


_started = None


def _call(fn: Callable[[Any], Any], index: int, job: Any) -> tuple[Any, str | None, bool]:
    """(result, None, False), or (None, reason, False) for a bad file, or (None, reason, True) when the machine
    failed (full disk, read-only folder): that is no fault of the file, and the run must stop."""
    _started.put((os.getpid(), index))
    try:
        return fn(job), None, False
    except Exception as e:  # noqa: BLE001 - one odd file must never stop the whole run
        if getattr(e, "errno", None) in ENVIRONMENT_ERRNOS:  # OSError, or PyAV's error for the same errno
            where = getattr(e, "filename", None) or "the output folder"
            return None, f"cannot write {where}: {getattr(e, 'strerror', None) or e} (errno {e.errno})", True
        if isinstance(e, VideoError):
            return None, str(e), False
        return None, f"unexpected {type(e).__name__}: {e}", False
    finally:
        set_partial_output(None)


# Memory of one spawned worker at least: 236 MiB was the peak RSS of a process that imports data.prepare (PyAV,
# numpy, torch) on a 2-core AMD EPYC machine (2026-12-03); a worker decoding a video needs more.
WORKER_BYTES = 200 * 2**20


def default_workers() -> int:
    """min(4, CPU cores): encoding and decoding use about one core per worker."""
    return max(1, min(4, os.cpu_count() or 1))


class _Interrupts:
    """Remembers a Ctrl-C, so one whose KeyboardInterrupt was swallowed (raised inside a finaliser or a callback
    that Python only reports) still stops the run at the next completed job."""

    def __init__(self):
        self.seen = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def run_parallel(fn: Callable[[Any], Any], jobs: list[Any], workers: int | None = None) -> Iterator[tuple[int, Any, str | None]]:
    """Yield `(index, result, None)` or `(index, None, reason)` for every job, in completion order.

    `fn` must be a module-level function (it runs in spawned processes) and signal bad input by raising
    `VideoError`. KeyboardInterrupt in the caller (or closing this generator) stops the workers at once; so does
    a full disk or read-only output folder in any worker, raised here as an EnvironmentFault (never a reject).
    """
    with _Interrupts() as interrupts:
        yield from _run_parallel(fn, jobs, workers, interrupts)


def _run_parallel(fn, jobs, workers, interrupts: _Interrupts):
    workers = max(1, min(workers or default_workers(), len(jobs) or 1))
    check_fits("--workers", workers, "the command line, cut to the files", lambda n: n * WORKER_BYTES, "memory for the worker processes")
    ctx = multiprocessing.get_context("spawn")
    pending = list(range(len(jobs)))
    suspects: list[int] = []  # in flight when a worker died: retried alone, then rejected
    breaks: dict[int, int] = {}  # how often a job was left unfinished by a broken pool
    while pending or suspects:
        if suspects:
            batch, n_workers, alone = [suspects.pop(0)], 1, True
        else:
            batch, pending, n_workers, alone = pending, [], workers, False
        stop, started = ctx.Event(), ctx.SimpleQueue()
        last_start: dict[int, int] = {}  # worker pid -> the job it started last
        done: set[int] = set()
        ex = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(), stop, started))
        try:
            futures = {ex.submit(_call, fn, i, jobs[i]): i for i in batch}
            remaining, broken = set(futures), False
            while remaining and not broken:
                finished, remaining = wait(remaining, timeout=1.0, return_when=FIRST_COMPLETED)
                interrupts.check()
                _drain(started, last_start)
                for fut in finished:
                    try:
                        result, reason, environment = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    if environment:
                        raise EnvironmentFault(
                            f"{reason}; free disk space or choose a writable output folder, then run the same command again"
                        )
                    done.add(futures[fut])
                    yield futures[fut], result, reason
            if broken:
                ex.shutdown(wait=True, cancel_futures=True)
                _drain(started, last_start)
                left = [i for i in batch if i not in done]
                if alone:
                    yield left[0], None, CRASH_REASON
                    continue
                in_flight = set(last_start.values()) - done
                for i in left:
                    breaks[i] = breaks.get(i, 0) + 1
                alone_next = [i for i in left if i in in_flight or breaks[i] >= 3]
                suspects += alone_next
                pending = [i for i in left if i not in alone_next] + pending
        except BaseException:
            stop.set()
            raise
        finally:
            ex.shutdown(wait=True, cancel_futures=True)


def _drain(started, last_start: dict[int, int]) -> None:
    """Read the workers' start notices (so the pipe never fills) and remember each worker's current job."""
    while not started.empty():
        pid, i = started.get()
        last_start[pid] = i
