"""Sharded data preparation: N `data prepare --shard I/N` jobs in any order, one killed and run again, then
`data merge`, give the manifest and files of one unsharded run; a missing or repeated shard is refused in one line."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from slowfast_trt.cli.main import main
from slowfast_trt.common.shards import Shard
from slowfast_trt.data.merge import merge_prepared
from slowfast_trt.data.prepare import prepare
from slowfast_trt.data.synth import synth
from slowfast_trt.data.video_io import iter_frames

ROOT = Path(__file__).resolve().parents[1]
OPTS = dict(short_side=48, workers=1, progress=False)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    out = tmp_path_factory.mktemp("src")
    synth(out, videos=8, seed=2, frames=40, workers=2, progress=False)
    return out / "videos"  # class folders


def _content(p: Path) -> str:
    """A hash of a text file's bytes, or of a video's decoded frames (WebM files carry a random segment id)."""
    h = hashlib.sha256()
    if p.suffix == ".webm":
        for frame in iter_frames(p):
            h.update(frame.to_ndarray(format="rgb24").tobytes())
    else:
        h.update(p.read_bytes())
    return h.hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    """Every file a prepared folder shows a user (not the .prepare state or the lock), with its content hash."""
    return {
        str(p.relative_to(folder)): _content(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".prepare" not in p.parts and p.name not in (".lock", "shard.json")
    }


def test_shards_in_any_order_one_killed_and_rerun_merge_into_the_unsharded_run(src, tmp_path):
    prepare(src, tmp_path / "one", **OPTS)
    dirs = [tmp_path / f"shard{i}" for i in range(3)]
    prepare(src, dirs[2], shard=Shard(2, 3), **OPTS)
    cmd = [sys.executable, "-m", "slowfast_trt", "data", "prepare", str(src), str(dirs[1]), "--short-side", "48", "--workers", "1",
           "--shard", "1/3", "--quiet"]  # fmt: skip
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    log = dirs[1] / ".prepare" / "done.jsonl"
    deadline = time.time() + 60
    while not (log.is_file() and log.read_text().strip()) and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (dirs[1] / "manifest.csv").exists(), "the shard finished before it could be killed"
    prepare(src, dirs[0], shard=Shard(0, 3), **OPTS)
    prepare(src, dirs[1], shard=Shard(1, 3), **OPTS)  # the killed shard, run again: resumes
    r = merge_prepared(tmp_path / "merged", [dirs[1], dirs[0], dirs[2]])
    assert (r.shards, r.videos) == (3, 8)
    one, merged = _tree(tmp_path / "one"), _tree(tmp_path / "merged")
    assert one.keys() == merged.keys() and "manifest.csv" in one
    assert merged["manifest.csv"] == one["manifest.csv"] and merged["classes.txt"] == one["classes.txt"]
    assert merged == one, "the same videos, frame for frame"

    def one_line_error(*args) -> str:
        res = CliRunner().invoke(main, ["data", "merge", str(tmp_path / "m2"), *map(str, args)])
        lines = [ln for ln in res.output.strip().splitlines() if ln]
        assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.output
        return lines[0]

    assert "shard 1/3 missing" in one_line_error(dirs[0], dirs[2])
    assert "shard 2/3 is given twice" in one_line_error(*dirs, dirs[2])
    assert "not a finished prepare shard" in one_line_error(dirs[0], dirs[1], tmp_path / "one")
    assert not (tmp_path / "m2" / "manifest.csv").exists()
