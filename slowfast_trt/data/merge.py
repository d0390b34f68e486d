"""`data merge`: join the folders of `data prepare SRC DIR --shard I/N` into one prepared folder, as one unsharded
`data prepare SRC OUT` would have written it (videos/, manifest.csv, classes.txt, rejects.csv).

Videos are hard-linked into OUT/videos/ (copied when OUT is on another file system), so merging costs no
transcoding and little disk. Every shard 0/N .. N-1/N must be given once, prepared from the same sources with the
same settings; anything else is a one-line error before OUT is touched.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.lock import own_folder
from slowfast_trt.common.shards import Shard, check_cover
from slowfast_trt.data.manifest import Entry, read_classes, read_manifest, write_manifest
from slowfast_trt.data.prepare import SHARD_FILE, STATE_DIR, write_rejects


@dataclass
class MergeReport:
    out: Path
    manifest: Path
    shards: int
    videos: int
    rejects: int


def _read_shard(folder: Path) -> dict:
    try:
        meta = json.loads((folder / SHARD_FILE).read_text())
        meta["settings"] = json.loads((folder / STATE_DIR / "settings.json").read_text())
        meta["manifest"] = read_manifest(folder / "manifest.csv")
        meta["classes"] = read_classes(folder / "classes.txt")
        with open(folder / "rejects.csv", newline="", encoding="utf-8") as f:
            meta["rejects"] = [tuple(row) for row in csv.reader(f)][1:]
    except (OSError, ValueError, KeyError, SlowFastError) as e:
        raise SlowFastError(
            f"{folder} is not a finished prepare shard ({e}); run `slowfast data prepare SRC {folder} --shard I/N` to the end"
        ) from None
    return meta


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        if dst.samefile(src) or dst.stat().st_size == src.stat().st_size:
            return  # a merge run again, or a re-prepared shard with the same output
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)


def merge_prepared(out: str | os.PathLike, folders: list[str | os.PathLike]) -> MergeReport:
    """Join prepare shard folders into OUT; returns what was merged."""
    paths = [Path(f) for f in folders]
    shards = [_read_shard(p) for p in paths]
    n = check_cover((Shard(*m["shard"]), str(p)) for m, p in zip(shards, paths, strict=True))
    first = shards[0]
    for m, p in zip(shards, paths, strict=True):
        for key, what in (("sources_sha256", "sources"), ("settings", "settings"), ("classes", "class list")):
            if m[key] != first[key]:
                raise SlowFastError(f"{p} was prepared from other {what} than {paths[0]}; merge the shards of one `data prepare` run")
    out = Path(out)
    entries: list[Entry] = []
    with own_folder(out, "slowfast data merge"):
        for m in shards:
            for e in m["manifest"].entries:
                _link(Path(m["manifest"].resolve(e)), out / e.path)
                entries.append(e)
        entries.sort(key=lambda e: e.path)
        if not entries:
            raise SlowFastError(f"no shard holds a prepared video; see the reasons in each shard's {paths[0].name}/rejects.csv")
        rejects = sorted({row for m in shards for row in m["rejects"]})  # rejected while listing SRC: in every shard
        write_rejects(out / "rejects.csv", rejects)
        manifest = write_manifest(out / "manifest.csv", entries, first["classes"])
    return MergeReport(out, manifest, n, len(entries), len(rejects))
