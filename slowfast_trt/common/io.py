"""Atomic file writes and the file-mode policy every writer follows.

A write goes to a temporary file in the target folder (named after the writing process, so a later run can
tell a dead run's leftovers from a live one's), is fsynced, then renamed: a crash never leaves half a file.
Every file is created with the permissions `open()` would give it (0666 minus the umask), whatever wrote it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from slowfast_trt.common.errors import environment_fault

_TEMP_NAME = re.compile(r"^\..+\.pid(\d+)\.[^./]+\.tmp$")


def file_mode() -> int:
    """The mode a new file gets under the current umask (what open() would give it)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def temp_file(path: str | os.PathLike) -> tuple[int, str]:
    """An open fd and the name of a new temporary file beside `path`, with the umask's file mode.

    The name carries this process's id, so `clean_stale_temps` can delete it once this process is gone; the
    temporary files of dead processes for the same target are deleted here.
    """
    path = Path(path)
    clean_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, file_mode())  # mkstemp creates 0600
    return fd, tmp


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Delete temporary files in `folder` (for `target` only, if given) left by processes that no longer run
    (a SIGKILLed run); returns them."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(f".{glob.escape(target)}.pid*.tmp") if target else folder.iterdir():
        m = _TEMP_NAME.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not process_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def probe_writable(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and write, fsync and delete a small file in it; an EnvironmentFault if that fails.

    Run before long work so that a read-only, full or missing output folder is one line at the start, not a
    traceback at the end.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(folder / ".write-probe")
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except OSError as e:
        raise environment_fault(e, folder) from None
    return folder


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose content replaces `path` only if the block finishes without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
