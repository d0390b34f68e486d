"""Time the training start-up path on a large manifest, for two source trees, interleaved (issue 29, class 8).

Builds ROWS distinct manifest rows with every column filled in (what `data prepare` writes), pointing at symlinks to
a handful of real 70-frame VP9 files (a manifest drops repeated paths), then, per repeat and per tree in turn, runs in
a fresh process: `load_manifest_videos` + building the CPU training `ClipLoader` (its preflight). Reports the seconds
of that path (imports excluded) and how many files PyAV opened. Writes startup.json and startup.md into --out.

    python scripts/startup_bench.py --before /tmp/before-video --after . --out benchmarks/results/cpu-epyc-2core/startup
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

CHILD = r"""
import json, sys, time
import av
from slowfast_trt import model
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import train_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import load_manifest_videos

opened = [0]
real = av.open
def counting(*a, **k):
    opened[0] += 1
    return real(*a, **k)
av.open = counting
cfg = model.get_config("slowfast_tiny_4x16")
t0 = time.perf_counter()
_, videos = load_manifest_videos(sys.argv[1], "training")
t1 = time.perf_counter()
ClipLoader(lambda e: train_plan(videos, cfg, e, seed=0), cfg, "train", FeedSpec(batch_size=8, device="cpu"), videos=videos)
t2 = time.perf_counter()
print(json.dumps({"rows": len(videos), "read_s": t1 - t0, "loader_s": t2 - t1, "total_s": t2 - t0, "files_opened": opened[0]}))
"""


def build(folder: Path, rows: int, real_files: int) -> Path:
    """ROWS complete manifest rows over `real_files` real videos (symlinked, 1000 per folder)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np

    from slowfast_trt.data.manifest import Entry, write_manifest
    from slowfast_trt.data.video_io import CODECS, VideoWriter

    for k in range(real_files):
        with VideoWriter(str(folder / f"real{k}.webm"), CODECS["vp9"], 80, 64, Fraction(30)) as w:
            for i in range(70):
                w.write(np.full((64, 80, 3), (i * 3 + k * 40) % 256, np.uint8))
    entries = []
    for i in range(rows):
        rel = f"v/{i // 1000:04d}/{i:06d}.webm"
        link = folder / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(folder / f"real{i % real_files}.webm")
        entries.append(Entry(rel, i % 2, 70, 30.0, 80, 64, "vp9"))
    return write_manifest(folder / "manifest.csv", entries, ["a", "b"])


def run(tree: Path, manifest: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
    # cwd: `python -c` puts the working folder first on sys.path, which would shadow PYTHONPATH's tree
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(manifest)], env=env, cwd=manifest.parent, capture_output=True, text=True, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, type=Path, help="source tree of the old code")
    ap.add_argument("--after", required=True, type=Path, help="source tree of the new code")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--real-files", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--from-json", type=Path, help="rewrite the summary of a recorded startup.json instead of measuring")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.from_json:
        recorded = json.loads(a.from_json.read_text())
        write_results(a.out, {k: recorded[k] for k in ("rows", "real_files", "build_manifest_s", "runs")})
        return
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        t = time.perf_counter()
        manifest = build(Path(tmp), a.rows, a.real_files)
        build_s = time.perf_counter() - t
        runs = []
        for rep in range(a.repeats):  # interleaved: before, after, before, after
            for name, tree in (("before", a.before), ("after", a.after)):
                r = run(tree, manifest) | {"tree": name, "repeat": rep}
                print(json.dumps(r), flush=True)
                runs.append(r)
    write_results(a.out, {"rows": a.rows, "real_files": a.real_files, "build_manifest_s": build_s, "runs": runs})


def write_results(out: Path, result: dict) -> None:
    """startup.json and startup.md in `out`: every run, and the ratio of the medians (before / after)."""
    runs = result["runs"]
    med = {n: statistics.median(r["total_s"] for r in runs if r["tree"] == n) for n in ("before", "after")}
    result = result | {
        "machine": f"{platform.node()}, {os.cpu_count()} cores, loaded by another engineer's jobs",
        "median_total_s": med,
        "ratio_before_over_after": med["before"] / med["after"],
    }
    (out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Training start-up on a {result['rows']}-row manifest",
        "",
        "`load_manifest_videos` + building the CPU training `ClipLoader` (preflight), fresh process per run, imports excluded;",
        "runs interleaved before/after on a loaded 2-core machine.",
        "",
        "| run | tree | read manifest s | loader s | total s | files opened |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['repeat']} | {r['tree']} | {r['read_s']:.2f} | {r['loader_s']:.2f} | {r['total_s']:.2f} | {r['files_opened']} |"
        for r in runs
    ]
    lines += [
        "",
        f"median total: before {med['before']:.2f} s, after {med['after']:.2f} s, ratio {result['ratio_before_over_after']:.1f}x",
        "",
    ]
    (out / "startup.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
