"""One owner per output folder: an exclusive lock held for as long as a long command writes into the folder.

The lock is `fcntl.flock` on `<folder>/.lock`, so it is released by the kernel when its process dies (a
SIGKILLed run never leaves the folder locked). The file names its holder (command, process id, host, start
time), and the error a second writer gets quotes it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from slowfast_trt.common.errors import EnvironmentFault, environment_fault
from slowfast_trt.common.io import clean_stale_temps, file_mode, probe_writable

LOCK_FILE = ".lock"


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text(encoding="utf-8") or "null")
        return f"`{h['command']}` (pid {h['pid']} on {h['host']}, since {h['started']})"
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"


@contextlib.contextmanager
def own_folder(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold `folder` (created if needed) for `command`: probe that it is writable, lock it, clean dead runs' temp files.

    A second `own_folder` on the same folder, from any process, fails at once with an EnvironmentFault naming
    the holder.
    """
    folder = probe_writable(folder)
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
    except OSError as e:
        raise environment_fault(e, path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EnvironmentFault(
                f"{folder} is in use by {_holder(path)}; wait for it to finish or choose another output folder"
            ) from None
        holder = {
            "command": command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        clean_stale_temps(folder)
        yield folder
    finally:
        os.close(fd)  # releases the lock; the file stays (deleting it would race with the next owner)
