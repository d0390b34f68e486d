"""`data check`: open every file of a manifest, decode it fully, and compare it with what the manifest says.

A file is bad when it is missing or special (a FIFO, a device), unreadable, has no video stream, stops decoding
early (truncated), declares a frame size in its header that the decoder refuses, or its frame count, fps, size or
codec differ from its manifest row. Files DALI cannot decode on the CPU
(H.264 and friends need NVDEC) are counted separately: they are fine on a GPU, unless NVDEC does not decode
their format either (10-bit H.264, say), which the command's note says. `--write-clean` writes a
manifest of the good files only, with every optional column filled in from the files themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import probe_writable
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.data import parallel
from slowfast_trt.data.manifest import Entry, read_manifest, with_info, write_manifest
from slowfast_trt.data.video_io import DALI_CPU_CODECS, VideoError, VideoInfo, header_problem, verify

FPS_TOLERANCE = 0.01  # relative: 29.97 and 30000/1001 agree


@dataclass(frozen=True)
class CheckJob:
    """One manifest row to verify: the resolved path and the row as written."""

    path: str
    entry: Entry


@dataclass
class CheckReport:
    """Bad files with reasons, the number of good ones, and good files DALI can only decode on a GPU."""

    total: int
    good: int
    bad: list[tuple[str, str]] = field(default_factory=list)
    gpu_only: list[tuple[str, str, str | None]] = field(default_factory=list)  # (path, codec, pix_fmt)
    clean_manifest: Path | None = None


def mismatches(entry: Entry, info, decoded: int) -> list[str]:
    """How a decoded file differs from its manifest row (empty when it matches)."""
    problems = []
    if decoded != info.num_frames:
        problems.append(f"{info.num_frames} packets but {decoded} decodable frames")
    if entry.num_frames is not None and entry.num_frames != decoded:
        problems.append(f"frame count: manifest says {entry.num_frames}, the file decodes {decoded}")
    if entry.fps is not None and abs(entry.fps - info.fps) > FPS_TOLERANCE * max(entry.fps, 1e-6):
        problems.append(f"fps: manifest says {entry.fps:g}, the file has {info.fps:.4g}")
    if entry.width is not None and entry.height is not None and (entry.width, entry.height) != (info.width, info.height):
        problems.append(f"size: manifest says {entry.width}x{entry.height}, the file is {info.width}x{info.height}")
    if entry.codec and entry.codec != info.codec:
        problems.append(f"codec: manifest says {entry.codec}, the file is {info.codec}")
    return problems


def check_one(job: CheckJob) -> dict:
    """Worker: decode the whole file; its facts, or VideoError with every problem found.

    The header's own frame size is checked too: PyAV reports the decoded size, DALI opens its decoder with the header's."""
    info, decoded = verify(job.path)
    problems = mismatches(job.entry, info, decoded)
    if (why := header_problem(job.path)) is not None:
        problems.append(why)
    if problems:
        raise VideoError("; ".join(problems))
    return {
        "num_frames": info.num_frames,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
        "pix_fmt": info.pix_fmt,
    }


def check(
    manifest: str | os.PathLike, write_clean: str | os.PathLike | None = None, workers: int | None = None, progress: bool = True
) -> CheckReport:
    """Verify every file of MANIFEST; optionally write the good rows to `write_clean` (with classes.txt beside it)."""
    m = read_manifest(manifest)
    if not m.entries:
        raise SlowFastError(f"{manifest} has no rows")
    if write_clean is not None:
        probe_writable(Path(write_clean).parent)  # before decoding everything, not after
    jobs = [CheckJob(m.resolve(e), e) for e in m.entries]
    report = CheckReport(total=len(jobs), good=0)
    good: dict[int, dict] = {}

    bar = progress_bar(total=len(jobs), unit="video", desc="check", enabled=progress)
    try:
        for i, facts, reason in parallel.run_parallel(check_one, jobs, workers):
            if reason is None:
                good[i] = facts
            else:
                report.bad.append((jobs[i].path, reason))
            bar.update(1)
            bar.set_postfix(bad=len(report.bad), refresh=False)
    finally:
        bar.close()
    report.good = len(good)
    report.bad.sort()
    report.gpu_only = sorted((jobs[i].path, f["codec"], f["pix_fmt"]) for i, f in good.items() if f["codec"] not in DALI_CPU_CODECS)
    if write_clean is not None:
        report.clean_manifest = _write_clean(Path(write_clean), m, jobs, good)
    return report


def _write_clean(path: Path, m, jobs: list[CheckJob], good: dict[int, dict]) -> Path:
    entries = []
    for i in sorted(good):
        f = good[i]
        e = jobs[i].entry
        if Path(e.path).is_absolute() or path.parent.resolve() == m.root:
            rel = e.path  # as written: absolute stays absolute, relative stays relative to the same folder
        else:
            rel = os.path.relpath(jobs[i].path, path.parent.resolve())
        info = VideoInfo(f["codec"], f["width"], f["height"], f["fps"], f["num_frames"], None, 0)
        entries.append(with_info(Entry(rel, e.label), info))
    if not entries:
        raise SlowFastError(f"no file of the manifest is good, so {path} was not written; see the reasons above")
    return write_manifest(path, entries, m.classes)
