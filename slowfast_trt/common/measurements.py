"""A per-machine cache of measurements that choose settings (CPU bf16, GPU policy): JSON objects under string keys."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from slowfast_trt.common.io import atomic_write_text


def cache_path(name: str) -> Path:
    """`<name>.json` in $SLOWFAST_CACHE_DIR, else in `slowfast-trt` under $XDG_CACHE_HOME or `~/.cache`.

    $SLOWFAST_CACHE_DIR moves only these measurements (the test suite points it at an empty folder per test, so no
    choice is read from a machine's earlier runs); XDG_CACHE_HOME moves every program's cache.
    """
    own = os.environ.get("SLOWFAST_CACHE_DIR")
    if own:
        return Path(own) / f"{name}.json"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slowfast-trt" / f"{name}.json"


def cached(path: Path, key: str, measure: Callable[[], dict], valid: Callable[[dict], bool] = lambda d: True) -> tuple[dict, bool]:
    """The entry stored under `key` in `path`, or `measure()` stored there; also whether it came from the cache.

    A damaged file or an entry that is not `valid` (written by another version) is measured again; a read-only home
    only loses the cache, not the result.
    """
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and valid(entry):
        return entry, True
    known[key] = entry = measure()
    try:
        atomic_write_text(path, json.dumps(known, indent=2))
    except OSError:
        pass
    return entry, False
