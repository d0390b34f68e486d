"""torchrun restarts: a worker group that torchrun (or a relaunched node) starts again continues its run by itself.

Under `torchrun --max-restarts N` a dead worker makes torchrun stop the group and start it again with the same
command line, so `--resume` cannot be added by hand. A start counts as a restart when any rank sees
`TORCHELASTIC_RESTART_COUNT > 0` (torchrun restarted this node's workers), or when the run folder's
`elastic.json` names this job's rendezvous id (a node launch killed and started again joins with count 0, and
its peers may not have counted a failure). A restart continues from the newest step checkpoint, or starts
afresh when the failed attempt had written none; every rank takes rank 0's decision.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.training import distributed as dist_util

MARKER = "elastic.json"


def restart_count() -> int:
    """How often torchrun restarted this node's workers (0 outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def run_id() -> str | None:
    """The rendezvous id (`--rdzv-id`) torchrun gives its workers; None outside torchrun or with the default "none"."""
    rid = os.environ.get("TORCHELASTIC_RUN_ID")
    return rid if rid and rid != "none" else None


def _marked(out_dir: Path) -> bool:
    rid = run_id()
    if rid is None:
        return False
    try:
        return json.loads((out_dir / MARKER).read_text()).get("run_id") == rid
    except (OSError, ValueError, AttributeError):
        return False


def is_restart(out_dir: str | os.PathLike, info: dist_util.DistInfo) -> bool:
    """True on every rank when any rank of the job sees a restart (see the module docstring)."""
    mine = restart_count() > 0 or _marked(Path(out_dir))
    return any(dist_util.all_gather_object(mine, info))


def continue_run(
    out_dir: str | os.PathLike, resume: bool, overwrite: bool, has_checkpoint: bool, info: dist_util.DistInfo
) -> tuple[bool, bool]:
    """(resume, overwrite) for this start: as given on a first start; on a restart, resume from the last checkpoint
    (even with --overwrite, which meant the folder before the job began) or, with none yet, start again."""
    if not is_restart(out_dir, info):
        return resume, overwrite
    has = dist_util.all_gather_object(has_checkpoint, info)[0]  # rank 0 owns the folder: its view decides
    return (True, False) if has else (False, True)


def mark(out_dir: str | os.PathLike) -> None:
    """Record this job's rendezvous id in the run folder (rank 0, once it owns the folder), so a relaunch resumes."""
    rid = run_id()
    if rid is not None:
        atomic_write_text(Path(out_dir) / MARKER, json.dumps({"run_id": rid}) + "\n")
