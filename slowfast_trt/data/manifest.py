"""The manifest: one CSV row per video, `path,label[,num_frames,fps,width,height,codec]`, plus `classes.txt`.

Labels are integer ids into `classes.txt` (one class name per line, line i is id i), which sits beside the
manifest; a multi-label row lists its ids separated by ';'. Relative paths are relative to the manifest's
folder, so a prepared data set can be moved or copied as a whole. The optional columns are what the DALI
pipelines need without opening the file (frames counted from packets; WebM containers do not declare them).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from slowfast_trt.common.bounds import check_at_most, short
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.data.video_io import VideoError, probe

COLUMNS = ("path", "label", "num_frames", "fps", "width", "height", "codec")
CLASSES_FILE = "classes.txt"
# Without classes.txt the ids are the names, 0..the largest label: more classes than any public set (ImageNet-21k has
# 21841) is a typo in a label, and would allocate a name for every id up to it.
MAX_IMPLIED_CLASSES = 100_000


@dataclass(frozen=True)
class Video:
    """What the plans need to know of one manifest row."""

    index: int
    path: str
    label: int | list[int]
    frame_count: int  # video frames in the file (the manifest's `num_frames` column), not the clip's T
    fps: float
    width: int
    height: int
    codec: str | None = None  # the manifest's codec column (or the probe's), so start-up need not open the file


@dataclass(frozen=True)
class Entry:
    """One manifest row. `path` is as written (relative to the manifest's folder, or absolute)."""

    path: str
    label: int | tuple[int, ...]
    num_frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None

    @property
    def complete(self) -> bool:
        """True when every optional column is filled (what the pipelines need without probing)."""
        return None not in (self.num_frames, self.fps, self.width, self.height, self.codec)


@dataclass
class Manifest:
    """Rows, class names and the folder that relative paths resolve against."""

    entries: list[Entry]
    classes: list[str]
    root: Path

    def resolve(self, entry: Entry) -> str:
        """The absolute path of an entry's file."""
        p = Path(entry.path)
        return str(p if p.is_absolute() else (self.root / p))

    def __len__(self) -> int:
        return len(self.entries)


def _label_text(label: int | tuple[int, ...]) -> str:
    return ";".join(str(i) for i in label) if isinstance(label, tuple) else str(label)


def _fps_text(fps: float) -> str:
    return f"{fps:.6f}".rstrip("0").rstrip(".")


def format_entries(entries: list[Entry]) -> str:
    """The CSV text of `entries` (header, then rows; optional columns left empty where unknown)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for e in entries:
        w.writerow(
            [
                e.path,
                _label_text(e.label),
                "" if e.num_frames is None else e.num_frames,
                "" if e.fps is None else _fps_text(e.fps),
                "" if e.width is None else e.width,
                "" if e.height is None else e.height,
                e.codec or "",
            ]
        )
    return buf.getvalue()


def write_manifest(path: str | os.PathLike, entries: list[Entry], classes: list[str] | None = None) -> Path:
    """Write the manifest CSV atomically, and `classes.txt` beside it when `classes` is given."""
    path = Path(path)
    for e in entries:
        for lab in e.label if isinstance(e.label, tuple) else (e.label,):
            if classes is not None and not 0 <= lab < len(classes):
                raise SlowFastError(f"label {lab} of {e.path} is not a class id (0..{len(classes) - 1})")
    atomic_write_text(path, format_entries(entries))
    if classes is not None:
        write_classes(path.parent / CLASSES_FILE, classes)
    return path


def write_classes(path: str | os.PathLike, classes: list[str]) -> None:
    """One class name per line; line i names label id i."""
    for c in classes:
        if "\n" in c or not c.strip():
            raise SlowFastError(f"class name {c!r} cannot be written to {CLASSES_FILE} (empty or multi-line)")
    atomic_write_text(path, "".join(f"{c}\n" for c in classes))


def read_classes(path: str | os.PathLike) -> list[str]:
    """Class names from a `classes.txt` (blank lines ignored at the end only)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [ln.strip() for ln in lines]


def implied_classes(labels: list[int], source: str | os.PathLike) -> list[str]:
    """The class names of labels without a `classes.txt` (the ids 0..the largest), bounded by MAX_IMPLIED_CLASSES."""
    top = max(labels, default=-1)
    check_at_most(
        "label",
        top,
        f"{source}, which has no {CLASSES_FILE}",
        MAX_IMPLIED_CLASSES - 1,
        f"without {CLASSES_FILE} the classes are the ids 0..the largest label; fix the label, or list the classes in "
        f"{CLASSES_FILE} beside it",
    )
    return [str(i) for i in range(top + 1)]


def _parse_label(text: str, where: str) -> int | tuple[int, ...]:
    try:
        ids = tuple(int(t) for t in text.split(";"))
    except ValueError:
        raise SlowFastError(f"{where}: label {short(text)} is not an integer id (names go in {CLASSES_FILE})") from None
    if len(set(ids)) != len(ids):
        raise SlowFastError(f"{where}: label {short(text)} lists a class id twice; list each id once")
    return ids[0] if len(ids) == 1 else ids


def _opt(row: dict, key: str, kind, where: str):
    """The optional column `key` as `kind`, None when empty; a number must be finite and > 0 (an integer for int)."""
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise SlowFastError(f"{where}: column {key}={short(text)} is not a valid {kind.__name__}") from None
    if kind in (int, float) and not (math.isfinite(value) and value > 0):
        raise SlowFastError(
            f"{where}: column {key}={short(text)} must be a finite number > 0; fix it, or leave it empty "
            "and let `slowfast data check --write-clean` fill it in"
        )
    return value


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest CSV (and `classes.txt` beside it, if present); fails with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise SlowFastError(f"manifest not found: {path}; create one with `slowfast data prepare` or `slowfast data synth`")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (spreadsheet exports) is not part of the header
    except (OSError, UnicodeDecodeError) as e:
        raise SlowFastError(f"cannot read manifest {path}: {e}; it must be a UTF-8 CSV with a header path,label,...") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error as e:  # a field over the csv module's limit (128 KiB), a NUL byte
        raise SlowFastError(f"{path} is not a readable CSV ({e}); a manifest has short fields path,label,...") from None
    if [h.strip() for h in header[:2]] != ["path", "label"]:
        case = " (lower-case)" if [h.strip().lower() for h in header[:2]] == ["path", "label"] else ""
        raise SlowFastError(
            f"{path} is not a manifest: its header must start with path,label{case} (got {short(','.join(header[:7]))}); "
            "convert lists with `slowfast data prepare`"
        )
    unknown = [h for h in header if h.strip() not in COLUMNS]
    if unknown:
        raise SlowFastError(f"{path}: unknown manifest column(s) {short(unknown)}; known: {','.join(COLUMNS)}")
    entries, first_line, dropped = [], {}, []
    root = path.parent.resolve()
    for i, row in enumerate(rows, start=2):
        where = f"{path}:{i}"
        p = (row.get("path") or "").strip()
        if not p:
            raise SlowFastError(f"{where}: empty path")
        entry = Entry(
            p,
            _parse_label((row.get("label") or "").strip(), where),
            _opt(row, "num_frames", int, where),
            _opt(row, "fps", float, where),
            _opt(row, "width", int, where),
            _opt(row, "height", int, where),
            (row.get("codec") or "").strip() or None,
        )
        key = os.path.normpath(os.path.join(root, p))
        if key in first_line:  # the same video twice would count twice in every epoch and every metric
            j, label = first_line[key]
            if label != entry.label:
                raise SlowFastError(
                    f"{where}: {p} is listed again with label {_label_text(entry.label)} "
                    f"(line {j} says {_label_text(label)}); keep one row per video"
                )
            dropped.append(i)
            continue
        first_line[key] = (i, entry.label)
        entries.append(entry)
    if dropped:
        print(
            f"warning: {path}: dropped {len(dropped)} duplicate row(s) (line {', '.join(map(str, dropped[:5]))}"
            f"{', ...' if len(dropped) > 5 else ''}); each video is used once",
            file=sys.stderr,
        )
    classes_path = path.parent / CLASSES_FILE
    if classes_path.is_file():
        classes = read_classes(classes_path)
    else:
        classes = implied_classes([lab for e in entries for lab in (e.label if isinstance(e.label, tuple) else (e.label,))], path)
    for e in entries:
        for lab in e.label if isinstance(e.label, tuple) else (e.label,):
            if not 0 <= lab < len(classes):
                raise SlowFastError(
                    f"{path}: label {lab} of {e.path} is outside {CLASSES_FILE}'s {len(classes)} classes; fix the label or {classes_path}"
                )
    return Manifest(entries, classes, root)


def with_info(entry: Entry, info) -> Entry:
    """The entry with its optional columns filled from a `video_io.VideoInfo`."""
    return replace(entry, num_frames=info.num_frames, fps=round(info.fps, 6), width=info.width, height=info.height, codec=info.codec)


def to_videos(manifest: Manifest, probe_missing: bool = True) -> list:
    """The manifest as `Video` records (index = row number), probing files with missing columns.

    A row with every column is trusted and its file not opened (`data check` is the full pass; the loaders check each
    file's packets when they first use it), so a 200k-row manifest starts in seconds."""
    videos = []
    for i, e in enumerate(manifest.entries):
        path = manifest.resolve(e)
        if not e.complete and probe_missing:
            try:
                e = with_info(e, probe(path))
            except VideoError as err:
                raise SlowFastError(f"{path}: {err}; run `slowfast data check` on the manifest") from None
        label = list(e.label) if isinstance(e.label, tuple) else e.label
        videos.append(Video(i, path, label, e.num_frames or 0, e.fps or 30.0, e.width or 0, e.height or 0, e.codec))
    return videos


def load_manifest_videos(path: str | os.PathLike | None, what: str) -> tuple[Manifest | None, list[Video] | None]:
    """The manifest at `path` and its `Video` records, or (None, None) without a path; `what` names it in errors."""
    if path is None:
        return None, None
    if not Path(path).exists():
        raise SlowFastError(f"{what} manifest {path} not found; create one with `slowfast data synth` or `slowfast data prepare`")
    m = read_manifest(path)
    if len(m) == 0:
        raise SlowFastError(f"{what} manifest {path} has no videos")
    return m, to_videos(m)
