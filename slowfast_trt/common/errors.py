"""The exception types for errors a user can cause; the CLI prints their message without a traceback.

`SlowFastError` is the base. `EnvironmentFault` marks a failure of the machine rather than of the input (a full
disk, a read-only or missing output folder, a folder another process owns): the input was fine, so it is never
counted as a rejected file, and the fix is on the machine, not in the data.
"""

from __future__ import annotations

import errno
import os

# errno values that say the output side failed (the disk, its permissions), never the input file.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
# errno values that mean "the environment" only when they concern a path being written.
OUTPUT_ERRNOS = ENVIRONMENT_ERRNOS | {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


class SlowFastError(Exception):
    """A user-facing error whose message is one line saying what is wrong and what to do."""


class EnvironmentFault(SlowFastError):
    """The machine, not the input, failed: full disk, read-only or missing output folder, a folder in use."""


def is_environment_oserror(e: BaseException) -> bool:
    """True for an OSError that no input file can cause (full disk, quota, read-only file system)."""
    return isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS


def environment_fault(e: OSError, path: str | os.PathLike | None = None, doing: str = "write") -> EnvironmentFault:
    """A one-line EnvironmentFault for an OSError met while writing `path`, with the usual fix."""
    where = path if path is not None else (e.filename or "the output folder")
    reason = e.strerror or str(e) or type(e).__name__
    fix = {
        errno.ENOSPC: "free disk space",
        errno.EDQUOT: "free disk space (quota exceeded)",
        errno.EFBIG: "write to a file system that allows larger files",
        errno.EROFS: "choose a writable output folder",
        errno.EACCES: "choose an output folder you may write to",
        errno.EPERM: "choose an output folder you may write to",
        errno.ENOENT: "check that the path exists",
    }.get(e.errno or 0, "check the output folder")
    return EnvironmentFault(f"cannot {doing} {where}: {reason} (errno {e.errno}); {fix}, then run the same command again")
