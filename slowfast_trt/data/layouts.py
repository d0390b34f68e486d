"""Readers for the ways users keep labelled videos, all turned into one list of (source file, label, output name).

Layouts, chosen by what SRC is:
- a folder with one sub-folder per class (Kinetics after download; files may sit deeper inside a class);
  a folder with videos and no class folders is one class named after the folder;
- a Kinetics-style CSV (`label,youtube_id,time_start,time_end,split`), resolved against a folder of
  downloads named `<youtube_id>_<start:06d>_<end:06d>.<ext>` (or `<youtube_id>.<ext>`) anywhere below it;
- a PySlowFast list: one `path label` per line (integer ids; paths relative to the list's folder or --root);
- one of our manifests (`path,label,...` header), e.g. to transcode a prepared set again.
Rows that point at nothing become rejects with a reason; they never stop the run.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from slowfast_trt.common.bounds import short
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.data.manifest import CLASSES_FILE, implied_classes, read_classes, read_manifest
from slowfast_trt.data.video_io import VIDEO_EXTENSIONS, file_problem

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class SourceItem:
    """One input video: its absolute path, label id(s), and a unique output name (relative, no extension)."""

    path: str
    label: int | tuple[int, ...]
    name: str


@dataclass
class Collection:
    """The videos found in SRC, the class names (index = label id), and rows rejected before decoding."""

    items: list[SourceItem]
    classes: list[str]
    layout: str
    rejects: list[tuple[str, str]] = field(default_factory=list)


def _is_video_name(p: Path) -> bool:
    return not p.name.startswith(".") and p.suffix.lower() in VIDEO_EXTENSIONS


def _videos_below(folder: Path, rejects: list[tuple[str, str]] | None = None) -> list[Path]:
    """Video files below `folder`; video-named entries that are no regular file (FIFOs, sockets, links to devices or
    to nothing) go to `rejects` with their reason instead of vanishing."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for p in (Path(dirpath) / f for f in sorted(filenames)):
            if not _is_video_name(p):
                continue
            why = file_problem(p)
            if why is None:
                found.append(p)
            elif rejects is not None:
                rejects.append((str(p), why))
    return found


def printable(name: str) -> str:
    """`name` as valid UTF-8 text: bytes of a non-UTF-8 file name (surrogate escapes) become \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _safe(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_").strip() or "_"


def unique_names(names: list[str]) -> list[str]:
    """Make output names unique (a.mp4 and a.avi in one folder would both become a.webm) deterministically.

    A name keeps its own spelling when it is the first with that spelling; later ones get the lowest `_<n>`
    suffix that no source name and no earlier output uses (so `x.webm`, `x.mkv`, `x_1.webm` give x, x_2, x_1,
    case-insensitively, whatever order they come in).
    """
    taken = {n.lower() for n in names}
    used: set[str] = set()
    out = []
    for n in names:
        if n.lower() in used:
            k = 1
            while f"{n}_{k}".lower() in taken or f"{n}_{k}".lower() in used:
                k += 1
            n = f"{n}_{k}"
        used.add(n.lower())
        out.append(n)
    return out


def _collection(
    rows: list[tuple[str, int | tuple[int, ...], str]], classes: list[str], layout: str, rejects: list[tuple[str, str]]
) -> Collection:
    # Output names and class names are written into UTF-8 files: bytes of non-UTF-8 file names become \xNN escapes.
    names = unique_names([printable(n) for _, _, n in rows])
    classes = [printable(c) for c in classes]
    items = [SourceItem(p, lab, n) for (p, lab, _), n in zip(rows, names)]
    return Collection(items, classes, layout, rejects)


def scan_class_folders(folder: str | os.PathLike) -> Collection:
    """One class per sub-folder (sorted names = ids 0..C-1); a folder without class folders is a single class."""
    folder = Path(folder)
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    special: list[tuple[str, str]] = []  # video-named entries that are no regular file, with their reason
    loose = []
    for p in sorted(folder.iterdir()):
        if _is_video_name(p):
            why = file_problem(p)
            if why is None:
                loose.append(p)
            else:
                special.append((str(p), why))
    by_class = [(d.name, _videos_below(d, special)) for d in subdirs]
    by_class = [(c, vids) for c, vids in by_class if vids]
    if not by_class:
        rows = [(str(p.resolve()), 0, p.stem) for p in loose]
        return _collection(rows, [folder.resolve().name or "videos"], "flat", special)
    classes = [c for c, _ in by_class]
    rows = []
    for label, (c, vids) in enumerate(by_class):
        for p in vids:
            rel = p.relative_to(folder / c).with_suffix("")
            rows.append((str(p.resolve()), label, f"{_safe(c)}/{rel.as_posix()}"))
    rejects = [(str(p.resolve()), f"not inside a class folder (put it in one of {folder}/<class>/)") for p in loose]
    return _collection(rows, classes, "folders", special + rejects)


def read_kinetics_csv(csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Collection:
    """Kinetics annotations resolved against downloaded files below `root` (default: the CSV's folder).

    Class ids are the sorted class names, the convention of the Kinetics label lists. Rows whose file is
    missing are rejected with the file name that was looked for.
    """
    csv_path = Path(csv_path)
    root = Path(root) if root else csv_path.parent
    if not root.is_dir():
        raise SlowFastError(f"video folder not found: {root}; pass --root DIR where the Kinetics downloads are")
    try:
        rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    except (csv.Error, UnicodeDecodeError) as e:  # a field over the csv module's limit (128 KiB), a NUL byte, not UTF-8
        raise SlowFastError(f"{csv_path} is not a readable CSV ({e}); a Kinetics list has short fields") from None
    if not rows:
        raise SlowFastError(f"{csv_path} has no rows")
    missing = [c for c in KINETICS_COLUMNS if c not in rows[0]]
    if missing:
        raise SlowFastError(f"{csv_path}: Kinetics CSV lacks column(s) {missing}; expected label,youtube_id,time_start,time_end[,split]")
    by_stem: dict[str, Path] = {}
    for p in _videos_below(root):
        by_stem.setdefault(p.stem, p)
    classes = sorted({r["label"].strip() for r in rows})
    ids = {c: i for i, c in enumerate(classes)}
    found, rejects = [], []
    for r in rows:
        yid, label = r["youtube_id"].strip(), r["label"].strip()
        try:
            stem = f"{yid}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
        except ValueError:
            rejects.append((f"{csv_path}:{yid}", f"time_start/time_end {r['time_start']!r}/{r['time_end']!r} are not numbers"))
            continue
        p = by_stem.get(stem) or by_stem.get(yid)
        if p is None:
            rejects.append((str(root / stem), f"not downloaded: no {stem}.* or {yid}.* below {root}"))
            continue
        found.append((str(p.resolve()), ids[label], f"{_safe(label)}/{stem}"))
    return _collection(found, classes, "kinetics", rejects)


def read_pyslowfast_list(list_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Collection:
    """PySlowFast's `path label` lines (label = integer id; the path may contain spaces, the label may not).

    Class names come from a `classes.txt` beside the list when there is one, else they are the ids.
    """
    list_path = Path(list_path)
    root = Path(root) if root else list_path.parent
    rows, rejects = [], []
    for n, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise SlowFastError(f"{list_path}:{n}: expected 'path label', got {short(line)}")
        try:
            label = int(parts[1])
        except ValueError:
            raise SlowFastError(f"{list_path}:{n}: label {short(parts[1])} is not an integer id (PySlowFast lists use ids)") from None
        p = Path(parts[0])
        p = p if p.is_absolute() else root / p
        if (why := file_problem(p)) is not None:
            rejects.append((str(p), why))
            continue
        rows.append((str(p.resolve()), label, None, p))
    classes_file = list_path.parent / CLASSES_FILE
    top = max((lab for _, lab, _, _ in rows), default=-1)
    classes = read_classes(classes_file) if classes_file.is_file() else implied_classes([lab for _, lab, _, _ in rows], list_path)
    if top >= len(classes):
        raise SlowFastError(f"{list_path}: label {top} but {classes_file} names only {len(classes)} classes")
    named = [(path, lab, f"{_safe(classes[lab])}/{p.stem}") for path, lab, _, p in rows]
    return _collection(named, classes, "pyslowfast", rejects)


def read_manifest_collection(path: str | os.PathLike) -> Collection:
    """One of our manifests as a source (labels and classes kept)."""
    m = read_manifest(path)
    rows, rejects = [], []
    for e in m.entries:
        p = Path(m.resolve(e))
        if (why := file_problem(p)) is not None:
            rejects.append((str(p), why))
            continue
        first = e.label[0] if isinstance(e.label, tuple) else e.label
        rows.append((str(p.resolve()), e.label, f"{_safe(m.classes[first])}/{p.stem}"))
    return _collection(rows, m.classes, "manifest", rejects)


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.readline().strip()


def read_collection(src: str | os.PathLike, root: str | os.PathLike | None = None) -> Collection:
    """Find the videos and labels in SRC, whichever layout it uses (see the module docstring)."""
    src = Path(src)
    if not src.exists():
        raise SlowFastError(f"source not found: {src}; pass a folder of class folders, a Kinetics CSV, a PySlowFast list or a manifest")
    if src.is_dir():
        col = scan_class_folders(src)
    else:
        head = [h.strip() for h in _first_line(src).split(",")]
        if "youtube_id" in head:
            col = read_kinetics_csv(src, root)
        elif head[:2] == ["path", "label"]:
            col = read_manifest_collection(src)
        else:
            col = read_pyslowfast_list(src, root)
    if not col.items:
        extra = f" ({len(col.rejects)} listed but unusable, e.g. {col.rejects[0][0]}: {col.rejects[0][1]})" if col.rejects else ""
        raise SlowFastError(f"no videos found in {src}{extra}; expected files ending in {', '.join(VIDEO_EXTENSIONS[:5])}, ...")
    return col
