"""Training alone and beside busy-loop processes: per-epoch clips/s, the whole command's time, and their ratios.

    .venv/bin/python scripts/measure_contention.py --out benchmarks/results/cpu-epyc-2core/contention

Makes a synthetic set (`slowfast data synth`), then runs the same `slowfast train` twice, once alone and once
beside `--busy` processes that spin on a core each, and writes result.json and contention.md to --out. A fair
share of the cores predicts contended/alone = cores / (cores + busy) for a command that uses every core (0.5 with
2 cores and 2 busy loops). The load average before each run is recorded, so a run on a busy machine shows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SLOWFAST = [sys.executable, "-m", "slowfast_trt"]


def train_once(data: Path, out: Path, args) -> dict:
    cmd = SLOWFAST + [
        "train", "--preset", args.preset, "--train", str(data / "train.csv"), "--out", str(out), "--overwrite",
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--device", "cpu", "--amp", "fp32",
        "--no-flip", "--quiet",
    ] + (["--threads", str(args.threads)] if args.threads else [])  # fmt: skip
    load = os.getloadavg()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(out / "metrics.csv", encoding="utf-8") as f:
        rates = [float(r["train_clips_per_s"]) for r in csv.DictReader(f)]
    split = json.loads((out / "config.json").read_text()).get("thread_split")
    return {"wall_s": wall, "epoch_clips_per_s": rates, "loadavg_before": list(load), "thread_split": split}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="slowfast_tiny_4x16")
    ap.add_argument("--videos", type=int, default=80, help="Videos synthesised; 80%% train (64 at the default).")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--busy", type=int, default=2, help="Busy-loop processes beside the contended run.")
    ap.add_argument("--threads", type=int, help="--threads for slowfast train [default: its own, the affinity mask].")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        subprocess.run(
            SLOWFAST + ["data", "synth", str(data), "--videos", str(args.videos), "--quiet"], check=True, stdout=subprocess.DEVNULL
        )
        alone = train_once(data, Path(tmp) / "alone", args)
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
        try:
            contended = train_once(data, Path(tmp) / "contended", args)
        finally:
            for p in busy:
                p.kill()
                p.wait()
    per_epoch = [c / a if a else 0.0 for a, c in zip(alone["epoch_clips_per_s"], contended["epoch_clips_per_s"])]
    cores = len(os.sched_getaffinity(0))
    result = {
        "benchmark": "contention",
        "cpu_count": cores,
        "settings": vars(args),
        "alone": alone,
        "contended": contended,
        "per_epoch_ratio": per_epoch,
        "wall_ratio": alone["wall_s"] / contended["wall_s"],
        "fair_share": cores / (cores + args.busy),
        "loadavg_after": list(os.getloadavg()),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Training {args.preset}, {args.epochs} epochs, batch {args.batch_size}, {cores} CPUs, alone vs beside {args.busy} busy loops "
        f"(fair share {result['fair_share']:.2f}); thread split {alone['thread_split']}.",
        "",
        "| epoch | alone clips/s | contended clips/s | contended/alone |",
        "|---:|---:|---:|---:|",
    ]
    for i, (a, c, r) in enumerate(zip(alone["epoch_clips_per_s"], contended["epoch_clips_per_s"], per_epoch)):
        lines.append(f"| {i + 1} | {a:.1f} | {c:.1f} | {r:.2f} |")
    lines += [
        f"| whole command (wall) | {alone['wall_s']:.1f} s | {contended['wall_s']:.1f} s | {result['wall_ratio']:.2f} |",
        "",
        f"Load average before the runs: alone {alone['loadavg_before'][0]:.2f}, contended {contended['loadavg_before'][0]:.2f} (1 min).",
    ]
    (out / "contention.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
