"""Who may write a run folder, and what a run writes into one: one owner at a time, one run per folder.

A training run holds an exclusive lock on its `--out` (common.lock) for its whole life. A fresh run refuses a
folder that already holds files, so checkpoints, metrics and `best.safetensors` of two runs never mix;
`--resume` continues the run that is there, `--overwrite` deletes it first. The manifests a run reads are
fingerprinted (path and content hash) so that `--resume` can refuse other data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import clean_stale_temps
from slowfast_trt.common.lock import LOCK_FILE, own_folder


def is_main_process() -> bool:
    """False in the non-zero ranks of a torchrun job, which read the folder but leave owning it to rank 0."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def claim_run_folder(out_dir: str | os.PathLike, resume: bool, overwrite: bool, command: str = "slowfast train") -> Iterator[Path]:
    """Own `out_dir` for one run: locked, and empty unless `resume` (continue it) or `overwrite` (cleared first)."""
    if resume and overwrite:
        raise SlowFastError("--resume continues the run in --out and --overwrite deletes it: give one of them")
    if not is_main_process():
        yield Path(out_dir)
        return
    with own_folder(out_dir, command) as folder:
        contents = sorted(p for p in folder.iterdir() if p.name != LOCK_FILE)
        if contents and not resume:
            if not overwrite:
                names = ", ".join(p.name for p in contents[:4]) + (", ..." if len(contents) > 4 else "")
                raise SlowFastError(
                    f"{folder} already holds files ({names}); pass --resume to continue that run, "
                    "--overwrite to delete it and start afresh, or choose another --out"
                )
            for p in contents:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        clean_stale_temps(folder / "checkpoints")  # half-written checkpoints of a SIGKILLed run
        yield folder


def fingerprint(path: str | os.PathLike | None) -> dict | None:
    """{"path", "sha256"} of a manifest (the CSV, plus classes.txt beside it when there is one), or None."""
    if path is None:
        return None
    path = Path(path).resolve()
    h = hashlib.sha256(path.read_bytes())
    classes = path.parent / "classes.txt"
    if classes.is_file():
        h.update(b"\0classes.txt\0" + classes.read_bytes())
    return {"path": str(path), "sha256": h.hexdigest()}
