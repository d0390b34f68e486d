"""Shared pieces of every benchmark's result: latency statistics, the GFLOPs convention, result files.

A result is a dict with a "benchmark" key (its kind, so `slowfast report` can merge folders), the
environment block (benchmarks.environment), "settings", "rows" and the raw samples. It is written as
result.json beside a Markdown table, both atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_text

GFLOPS_NOTE = (
    "GFLOPs are multiply-adds x 1e9 per clip (the paper's convention); achieved TFLOP/s counts "
    "2 FLOPs per multiply-add, as GPU peak figures do"
)


def latency_stats(samples_s: list[float], batch: int) -> dict:
    """clips/s (mean over the samples) and latency p50/p95/p99 in ms of one batch size's timed iterations."""
    a = np.asarray(samples_s, dtype=np.float64)
    if a.size == 0 or not np.all(a > 0):
        raise ValueError("latency samples must be positive and non-empty")
    p50, p95, p99 = np.percentile(a, [50, 95, 99]) * 1e3
    return {
        "clips_per_s": batch * a.size / a.sum(),
        "latency_ms_p50": float(p50),
        "latency_ms_p95": float(p95),
        "latency_ms_p99": float(p99),
        "latency_ms_mean": float(a.mean() * 1e3),
        "iters": int(a.size),
    }


def write_result(result: dict, out_dir: str | Path, markdown: str, md_name: str) -> dict[str, Path]:
    """Write `result.json` and the Markdown table `md_name` into `out_dir` (atomically)."""
    if "benchmark" not in result:
        raise ValueError("a result needs its 'benchmark' kind")
    out = Path(out_dir)
    paths = {"json": out / "result.json", "markdown": out / md_name}
    atomic_write_text(paths["json"], json.dumps(result, indent=2) + "\n")
    atomic_write_text(paths["markdown"], markdown)
    return paths


def read_result(path: str | Path) -> dict:
    """A result.json (or a folder holding one), checked for its benchmark kind."""
    p = Path(path)
    if p.is_dir():
        p = p / "result.json"
    if not p.is_file():
        raise SlowFastError(f"{p}: no result.json there; run a `slowfast bench ...` command with --out first")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SlowFastError(f"{p}: unreadable result ({e}); re-run the benchmark") from None
    if not isinstance(data, dict) or "benchmark" not in data:
        raise SlowFastError(f"{p}: not a benchmark result (no 'benchmark' key); re-run the benchmark with this version")
    data["_path"] = str(p)
    return data


def fmt(value, spec: str = ".2f", none: str = "-") -> str:
    """Format a number for a table cell; None becomes `none`."""
    return none if value is None else format(value, spec)
