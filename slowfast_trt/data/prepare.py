"""`data prepare`: transcode a video collection so that DALI decodes it fast, and write its manifest.

Every video is resized to a short side of 256 (aspect kept, even sizes; the reference repos' recommendation),
re-encoded with a keyframe every 32 frames (cheap seeking to any clip) in the codec the decoding device
reads (VP9 for DALI on the CPU, H.264 for NVDEC, MJPEG when seeking must be free), optionally resampled to
a fixed frame rate, audio dropped. Work runs in parallel worker processes and is resumable:

- each output is written under `OUT/.prepare/tmp/`, verified (decodes, frame count as written), fsynced,
  then renamed to its final name in `OUT/videos/`, so a final name never holds a partial file;
- after the rename the parent appends one JSON line to `OUT/.prepare/done.jsonl`; a re-run skips a video
  whose record matches the source (path, size, mtime) and whose output still has the recorded size;
  a killed run loses at most the files in flight, which the next run redoes;
- the manifest, `classes.txt` and `rejects.csv` are rewritten atomically at the end of every run.

Files that cannot be used go to `OUT/rejects.csv` (path,reason) and never stop the run. The run succeeds
when at least one video is in the manifest; it fails (SlowFastError) when none is.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from slowfast_trt.common.bounds import check_fits
from slowfast_trt.common.errors import ENVIRONMENT_ERRNOS, EnvironmentFault, SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.common.lock import own_folder
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.common.shards import Shard
from slowfast_trt.common.text import shown
from slowfast_trt.data import parallel
from slowfast_trt.data.layouts import Collection, read_collection
from slowfast_trt.data.manifest import Entry, write_manifest
from slowfast_trt.data.video_io import GOP, VideoError, VideoWriter, check_complete, codec_spec, iter_frames, probe, short_side_size, verify

STATE_DIR = ".prepare"
SHARD_FILE = "shard.json"  # which shard of which sources a sharded OUT holds
VIDEOS_DIR = "videos"
QUALITY_RANGES = {"vp9": (0, 63), "h264": (0, 51), "mjpeg": (1, 31)}  # crf, crf, qscale


@dataclass(frozen=True)
class Settings:
    """What determines an output file; a folder is prepared with one set of settings only."""

    codec: str = "vp9"
    short_side: int = 256
    fps: float | None = None  # None keeps each source's frame rate
    gop: int = GOP
    quality: int | None = None  # crf (VP9/H.264) or qscale (MJPEG); None = the codec's default


@dataclass(frozen=True)
class Job:
    """One video to transcode: source, destination (final and temporary), settings."""

    src: str
    dst: str
    tmp: str
    settings: Settings


@dataclass
class PrepareReport:
    """What a run did: counts, where the manifest is, and every rejected file with its reason."""

    out: Path
    manifest: Path
    done: int = 0  # videos in the manifest
    transcoded: int = 0  # of those, transcoded by this run
    skipped: int = 0  # of those, already finished by an earlier run
    rejects: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def check_settings(settings: Settings) -> Settings:
    """Fail early, with a one-line fix, on options that cannot work."""
    codec_spec(settings.codec)
    if settings.short_side != 0 and (settings.short_side < 16 or settings.short_side % 2):
        raise SlowFastError(f"--short-side must be an even number >= 16 (or 0 to keep the size), got {settings.short_side}")
    check_fits("--short-side", settings.short_side, "the command line", lambda s: 3 * s * s, "memory for one RGB frame")
    if settings.fps is not None and not 1 <= settings.fps <= 240:
        raise SlowFastError(f"--fps must be between 1 and 240, got {settings.fps}")
    if settings.gop < 1:
        raise SlowFastError(f"--gop must be >= 1, got {settings.gop}")
    lo, hi = QUALITY_RANGES.get(settings.codec, (0, 63))
    if settings.quality is not None and not lo <= settings.quality <= hi:
        raise SlowFastError(f"--quality for {settings.codec} must be between {lo} and {hi} (lower is better), got {settings.quality}")
    return settings


def trial_encode(settings: Settings, folder: Path) -> None:
    """Encode two small frames with the run's settings into `folder`, then delete them: a bad encoder option or an
    unwritable (full, read-only) folder is one line before the first source is touched, and never a reject."""
    spec = codec_spec(settings.codec)
    path = folder / f"trial{spec.extension}"
    try:
        with VideoWriter(str(path), spec, 32, 32, Fraction(30), gop=settings.gop, quality=settings.quality, bitexact=False) as w:
            for v in (0, 255):
                w.write(np.full((32, 32, 3), v, np.uint8))
        verify(str(path))
    except Exception as e:  # noqa: BLE001 - classified below: the machine, or the options
        if getattr(e, "errno", None) in ENVIRONMENT_ERRNOS:
            raise EnvironmentFault(
                f"cannot write {folder}: {getattr(e, 'strerror', None) or e}; free disk space or choose a "
                "writable OUT, then run the same command again"
            ) from None
        raise SlowFastError(
            f"the {settings.codec} encoder refused these settings (quality={settings.quality}, gop={settings.gop}): "
            f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}; change the options"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def transcode(job: Job) -> dict:
    """Worker: decode `job.src`, resize, re-encode to `job.tmp`, verify, rename to `job.dst`; the manifest facts.

    Raises VideoError (the reject reason) when the source cannot be read or the output does not verify.
    """
    s = job.settings
    spec = codec_spec(s.codec)
    info = probe(job.src)
    width, height = short_side_size(info.width, info.height, s.short_side)
    rate_in = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(30)
    rate_out = Fraction(s.fps).limit_denominator(1001) if s.fps else rate_in
    interp = "AREA" if width * height < info.width * info.height else "BICUBIC"
    Path(job.tmp).parent.mkdir(parents=True, exist_ok=True)
    parallel.set_partial_output(job.tmp)
    decoded, first, last = 0, None, None
    try:
        with VideoWriter(job.tmp, spec, width, height, rate_out, gop=s.gop, quality=s.quality, bitexact=False) as w:
            pending = None  # (time, frame) waiting for its successor when resampling the frame rate
            for frame in iter_frames(job.src):
                t = frame.time if frame.time is not None else decoded / float(rate_in)
                first = t if first is None else first
                t -= first
                last = t
                decoded += 1
                out = frame.reformat(width=width, height=height, format=spec.pix_fmt, interpolation=interp)
                if not s.fps:
                    w.write(out)
                    continue
                # Nearest-in-time resampling: output frame k (at k / fps) shows the source frame closest to it.
                if pending is not None:
                    while w.frames / float(rate_out) < (pending[0] + t) / 2:
                        w.write(pending[1])
                pending = (t, out)
            if s.fps and pending is not None:
                while w.frames / float(rate_out) < pending[0] + 0.5 / float(rate_in):
                    w.write(pending[1])
            written = w.frames
        span = None if last is None else last + 1.0 / float(rate_in)
        check_complete(info, decoded, span)
        if written == 0:
            raise VideoError("no frame could be decoded")
        out_info, out_decoded = verify(job.tmp)
        if out_info.num_frames != written or out_decoded != written:
            raise VideoError(
                f"output failed verification: wrote {written} frames, the file has {out_info.num_frames} packets "
                f"and {out_decoded} decodable frames"
            )
        with open(job.tmp, "rb") as f:
            os.fsync(f.fileno())
        Path(job.dst).parent.mkdir(parents=True, exist_ok=True)
        os.replace(job.tmp, job.dst)
        _fsync_dir(Path(job.dst).parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(job.tmp)
        raise
    return {
        "num_frames": out_info.num_frames,
        "fps": round(float(rate_out), 6),
        "width": out_info.width,
        "height": out_info.height,
        "codec": out_info.codec,
        "size": os.path.getsize(job.dst),
        "source_frames": decoded,
    }


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _signature(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_done(log: Path) -> dict[str, dict]:
    """The done records by output name; a torn last line (killed mid-write) is ignored."""
    done: dict[str, dict] = {}
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                done[rec["out"]] = rec
            except (ValueError, KeyError, TypeError):
                continue
    return done


def _is_finished(rec: dict | None, src: str, dst: Path) -> bool:
    if rec is None or rec.get("src") != src:
        return False
    try:
        return rec.get("src_sig") == _signature(src) and dst.is_file() and dst.stat().st_size == rec["info"]["size"]
    except (OSError, KeyError, TypeError):
        return False


def _check_same_settings(state: Path, settings: Settings) -> None:
    path = state / "settings.json"
    want = asdict(settings)
    if path.is_file():
        try:
            have = json.loads(path.read_text())
        except ValueError:
            have = None
        if have is not None and have != want:
            diff = ", ".join(f"{k}={have.get(k)!r}" for k in want if have.get(k) != want[k])
            raise SlowFastError(f"{state.parent} was prepared with other settings ({diff}); use another OUT folder or delete it")
    atomic_write_text(path, json.dumps(want, sort_keys=True) + "\n")


def shard_sources_sha256(collection: Collection) -> str:
    """A fingerprint of the whole source list (names, paths, labels, order) that every shard of one SRC shares."""
    text = "\n".join(f"{i.name}\0{i.path}\0{i.label}" for i in collection.items) + "\0" + "\n".join(collection.classes)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()  # undecodable names stay bytes


def write_rejects(path: Path, rejects: list[tuple[str, str]]) -> None:
    """`path,reason` CSV of every file that could not be used."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "reason"])
    w.writerows(rejects)
    atomic_write_text(path, buf.getvalue())


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    short_side: int = 256,
    codec: str = "vp9",
    fps: float | None = None,
    workers: int | None = None,
    root: str | os.PathLike | None = None,
    gop: int = GOP,
    quality: int | None = None,
    progress: bool = True,
    shard: Shard | None = None,
) -> PrepareReport:
    """Transcode the collection SRC into OUT (videos/, manifest.csv, classes.txt, rejects.csv); resumable.

    `shard`: only that deterministic 1/N of the sources (common.shards), recorded in OUT/shard.json for
    `data merge` (data/merge.py); a shard may end up empty."""
    settings = check_settings(Settings(codec, short_side, fps, gop, quality))
    spec = codec_spec(codec)
    if workers is not None and workers < 1:
        raise SlowFastError(f"--workers must be >= 1, got {workers}")
    t0 = time.perf_counter()
    out = Path(out)
    if Path(src).is_dir() and out.resolve().is_relative_to(Path(src).resolve()):
        raise SlowFastError(f"OUT ({out}) is inside SRC ({src}); its outputs would be read as new videos: pick an OUT outside SRC")
    collection = read_collection(src, root)
    sources = shard_sources_sha256(collection)
    if shard is not None:
        collection = replace(collection, items=shard.pick(collection.items))
    state = out / STATE_DIR
    with own_folder(out, "slowfast data prepare"):
        _check_same_settings(state, settings)
        if shard is not None:
            atomic_write_text(out / SHARD_FILE, json.dumps({"shard": [shard.index, shard.count], "sources_sha256": sources}) + "\n")
        tmp_dir = state / "tmp"
        shutil.rmtree(tmp_dir, ignore_errors=True)  # partial outputs of a killed run: never counted, deleted here
        tmp_dir.mkdir(parents=True)
        trial_encode(settings, tmp_dir)
        log = state / "done.jsonl"
        done = _read_done(log)
        if log.is_file() and log.stat().st_size and not log.read_bytes().endswith(b"\n"):
            with open(log, "a", encoding="utf-8") as f:  # a killed run tore the last line: start a fresh one
                f.write("\n")
        jobs, todo, records = [], [], {}
        rels = [f"{VIDEOS_DIR}/{item.name}{spec.extension}" for item in collection.items]
        if len({r.lower() for r in rels}) != len(rels):  # layouts.read_collection promises unique names
            raise SlowFastError(f"two sources of {src} map to one output name; rename one of them")
        for n, item in enumerate(collection.items):
            rel = rels[n]
            dst = out / rel
            job = Job(item.path, str(dst), str(tmp_dir / f"{n:07d}{spec.extension}"), settings)
            jobs.append((item, rel))
            if _is_finished(done.get(rel), item.path, dst):
                records[rel] = done[rel]
            else:
                todo.append((rel, job))
        report = PrepareReport(out, out / "manifest.csv", skipped=len(records))
        rejects = list(collection.rejects)
        bar = _progress(len(jobs), len(records), progress)
        try:
            with (
                open(log, "a", encoding="utf-8") as f,
                contextlib.closing(parallel.run_parallel(transcode, [j for _, j in todo], workers)) as results,
            ):
                for i, info, reason in results:
                    rel, job = todo[i]
                    if reason is not None:
                        rejects.append((job.src, reason))
                    else:
                        rec = {"out": rel, "src": job.src, "src_sig": _signature(job.src), "info": info}
                        f.write(json.dumps(rec, sort_keys=True) + "\n")
                        f.flush()
                        os.fsync(f.fileno())
                        records[rel] = rec
                        report.transcoded += 1
                    bar.update(1)
                    bar.set_postfix(rejected=len(rejects) - len(collection.rejects), refresh=False)
        finally:
            bar.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        entries = []
        for item, rel in sorted(jobs, key=lambda j: j[1]):
            rec = records.get(rel)
            if rec is not None:
                i = rec["info"]
                entries.append(Entry(rel, item.label, i["num_frames"], i["fps"], i["width"], i["height"], i["codec"]))
        rejects = sorted((shown(p), r) for p, r in rejects)  # written to UTF-8 files and the terminal, one line each
        write_rejects(out / "rejects.csv", rejects)
        report.rejects = rejects
        report.done = len(entries)
        report.seconds = time.perf_counter() - t0
        if not entries and shard is None:
            raise SlowFastError(f"no video could be prepared from {src}; see the reasons in {out / 'rejects.csv'}")
        write_manifest(report.manifest, entries, collection.classes)
    return report


def _progress(total: int, initial: int, enabled: bool):
    return progress_bar(total=total, initial=initial, unit="video", desc="prepare", enabled=enabled)
