"""The temporary folder of one command: every temporary file, the project's and third-party libraries', lives in it.

`scratch_folder()` makes `slowfast-pidN-*` in the system temporary folder ($TMPDIR, else /tmp) and points
`tempfile` and $TMPDIR (for libraries in C and for subprocesses) at it, so ONNX Runtime's calibration folder and
the like are created inside. It is deleted when the command ends, by error, Ctrl-C or SIGTERM alike; a folder left
by a SIGKILLed command is deleted by the next command. A temporary folder that cannot be used is an
`EnvironmentFault` naming $TMPDIR, never "the output folder".
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from slowfast_trt.common.errors import EnvironmentFault
from slowfast_trt.common.io import process_alive

_NAME = re.compile(r"^slowfast-pid(\d+)-")
LOW_SPACE = 64 << 20  # bytes: a temporary folder with less free space counts as full


def temp_folder_fault(e: OSError, folder: str | os.PathLike) -> EnvironmentFault:
    """A one-line fault for the temporary folder, with its own fix (TMPDIR), apart from output-folder faults."""
    reason = e.strerror or str(e) or type(e).__name__
    fix = (
        "free space there or set TMPDIR to a folder with space"
        if e.errno in (errno.ENOSPC, errno.EDQUOT)
        else "set TMPDIR to a writable folder"
    )
    return EnvironmentFault(f"cannot use the temporary folder {folder}: {reason} (errno {e.errno}); {fix}, then run the same command again")


def clean_stale_scratch(root: str | os.PathLike) -> list[Path]:
    """Delete the scratch folders under `root` of commands that no longer run (SIGKILLed ones); returns them."""
    removed = []
    with contextlib.suppress(OSError):
        for p in Path(root).iterdir():
            m = _NAME.match(p.name)
            if m and int(m.group(1)) != os.getpid() and not process_alive(int(m.group(1))) and p.is_dir() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    if p.stat().st_uid == os.getuid():
                        shutil.rmtree(p)
                        removed.append(p)
    return removed


def _usable(folder: str) -> OSError | None:
    """Why `folder` cannot hold temporary files (None when it can)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".slowfast-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e
    return None


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """This command's temporary folder, made current for `tempfile` and $TMPDIR within the block, deleted after it."""
    asked = os.environ.get("TMPDIR")
    if asked:  # tempfile would fall back to /tmp in silence; a TMPDIR the user set must work
        err = _usable(asked)
        if err is not None:
            raise temp_folder_fault(err, f"{asked} ($TMPDIR)")
    root = asked or tempfile.gettempdir()
    clean_stale_scratch(root)
    try:
        path = Path(tempfile.mkdtemp(prefix=f"slowfast-pid{os.getpid()}-", dir=root))
    except OSError as e:
        raise temp_folder_fault(e, root) from None
    saved = tempfile.tempdir
    tempfile.tempdir = str(path)
    os.environ["TMPDIR"] = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = saved
        if asked is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = asked
        shutil.rmtree(path, ignore_errors=True)


def current_scratch() -> Path | None:
    """The scratch folder of the running command (None outside `scratch_folder`)."""
    here = tempfile.tempdir
    return Path(here) if here and _NAME.match(Path(here).name) else None


def temp_fault_for(e: OSError) -> EnvironmentFault | None:
    """The temporary-folder fault `e` is, or None when it concerns another path (an output folder, an input).

    A failure names the temporary folder when its file lies in this command's scratch folder, or, for a full disk
    reported without a file name (a library writing through its own handle), when that folder's file system is
    the full one.
    """
    scratch = current_scratch()
    if scratch is None:
        return None
    if e.filename:
        try:
            inside = Path(os.path.realpath(e.filename)).is_relative_to(os.path.realpath(scratch))
        except (OSError, ValueError, TypeError):
            inside = False
        return temp_folder_fault(e, scratch.parent) if inside else None
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            st = os.statvfs(scratch)
        except OSError:
            return None
        if st.f_bavail * st.f_frsize < LOW_SPACE:
            return temp_folder_fault(e, scratch.parent)
    return None
