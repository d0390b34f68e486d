"""A per-machine cache of measurements that choose settings (CPU bf16, GPU policy): JSON objects under string keys."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from slowfast_trt.common.io import atomic_write_text


def cache_path(name: str) -> Path:
    """`~/.cache/slowfast-trt/<name>.json` (or under $XDG_CACHE_HOME)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "slowfast-trt" / f"{name}.json"


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
