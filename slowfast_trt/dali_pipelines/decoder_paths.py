"""Which decoder path takes each file of a manifest, and why the others refuse it, by the loaders' own rules.

Three paths: DALI on the CPU (`--device cpu`: its CPU decoder, VP8/VP9/MJPEG, `video_io.DALI_CPU_CODECS`), DALI on a GPU
(`nvdec.route`: NVDEC inside its limits, DALI's CPU decoder in the same graph outside them, refused when neither
reads the file) and PyAV, the reference loader (whatever this FFmpeg decodes). `slowfast doctor MANIFEST` prints the
counts; nothing is decoded beyond one frame per file.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from functools import cache

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines import nvdec
from slowfast_trt.data.manifest import read_manifest
from slowfast_trt.data.video_io import DALI_CPU_CODECS, VideoError, iter_frames

LimitsFn = Callable[[str, str, int], "nvdec.Limits | None"]


def file_paths(path: str, limits: LimitsFn = nvdec.limits_for) -> dict:
    """One file through the three paths. `dali_cpu` and `pyav` are None when the path takes the file, else the reason;
    `gpu` is 'nvdec', 'cpu' (DALI's CPU decoder inside the GPU graph) or 'refused', with `gpu_reason`."""
    row: dict = {"path": path}
    try:
        next(iter_frames(path), None)
        row["pyav"] = None
    except VideoError as e:
        row["pyav"] = str(e)
    try:
        fmt = nvdec.probe_format(path)
    except SlowFastError:
        why = row["pyav"] or "unreadable"
        return row | {"dali_cpu": why, "gpu": "refused", "gpu_reason": why}
    row |= {"codec": fmt.codec, "width": fmt.width, "height": fmt.height, "chroma": fmt.chroma, "bit_depth": fmt.bit_depth}
    row["dali_cpu"] = None if fmt.codec in DALI_CPU_CODECS else f"codec {fmt.codec} (DALI's CPU decoder reads {'/'.join(DALI_CPU_CODECS)})"
    try:
        routing = nvdec.route([fmt], limits)
    except SlowFastError:
        return row | {"gpu": "refused", "gpu_reason": nvdec.violation(fmt, limits(fmt.codec, fmt.chroma, fmt.bit_depth))}
    return row | {"gpu": "cpu" if routing.on_cpu else "nvdec", "gpu_reason": routing.reasons.get(fmt.path)}


def _counts(reasons: list[str]) -> dict[str, int]:
    return dict(Counter(reasons).most_common())


def breakdown(manifest: str | os.PathLike, limits: LimitsFn = nvdec.limits_for) -> dict:
    """Per path, how many of the manifest's files it takes and, grouped by reason, how many it refuses; plus every file's row."""
    m = read_manifest(manifest)
    ask = cache(limits)  # the driver is asked once per stream kind, as nvdec.route does
    rows = [file_paths(p, ask) for p in dict.fromkeys(m.resolve(e) for e in m.entries)]
    return {
        "manifest": str(manifest),
        "files": len(rows),
        "paths": {
            "dali_cpu": {
                "takes": sum(r["dali_cpu"] is None for r in rows),
                "refuses": _counts([r["dali_cpu"] for r in rows if r["dali_cpu"]]),
            },
            "dali_gpu": {
                "nvdec": sum(r["gpu"] == "nvdec" for r in rows),
                "cpu_decoder": _counts([r["gpu_reason"] for r in rows if r["gpu"] == "cpu"]),
                "refuses": _counts([r["gpu_reason"] for r in rows if r["gpu"] == "refused"]),
            },
            "pyav": {"takes": sum(r["pyav"] is None for r in rows), "refuses": _counts([r["pyav"] for r in rows if r["pyav"]])},
        },
        "rows": rows,
    }


def _why(counts: dict[str, int]) -> str:
    return "; ".join(f"{n} {r}" for r, n in counts.items())


def breakdown_lines(b: dict, limits_from: str) -> list[str]:
    """The breakdown as text, one line per path; `limits_from` says where NVDEC's limits came from."""
    p, n = b["paths"], b["files"]
    cpu, gpu, pyav = p["dali_cpu"], p["dali_gpu"], p["pyav"]
    moved, refused = sum(gpu["cpu_decoder"].values()), sum(gpu["refuses"].values())
    return [
        f"manifest {b['manifest']}: {n} file(s)",
        f"  DALI on the CPU (--device cpu): takes {cpu['takes']} of {n}" + (f", refuses {_why(cpu['refuses'])}" if cpu["refuses"] else ""),
        f"  DALI on a GPU (NVDEC's limits: {limits_from}): NVDEC takes {gpu['nvdec']} of {n}"
        + (f", DALI's CPU decoder in the same graph takes {moved} ({_why(gpu['cpu_decoder'])})" if moved else "")
        + (f", refuses {refused} ({_why(gpu['refuses'])})" if refused else ""),
        f"  PyAV (the reference loader): takes {pyav['takes']} of {n}" + (f", refuses {_why(pyav['refuses'])}" if pyav["refuses"] else ""),
    ]
