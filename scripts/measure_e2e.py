"""`bench e2e` (DALI vs PyAV feeding ONNX Runtime) at the demo's settings and at R50 4x16 geometry, one run each.

    .venv/bin/python scripts/measure_e2e.py --out benchmarks/results/cpu-epyc-2core/e2e-threads

For each setting it synthesises a VP9 set, saves a randomly initialised checkpoint of the preset (throughput
does not depend on the weights), exports it to ONNX and runs `slowfast bench e2e` with both loaders in one
process (so the DALI/PyAV ratio is taken within one run) under the one thread budget. Writes a folder per
setting (result.json, e2e.md) and summary.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from slowfast_trt import model

SLOWFAST = [sys.executable, "-m", "slowfast_trt"]
# name -> (preset, source HxW, videos, batch, clips): the demo's `bench e2e` row and R50 4x16 at Kinetics-like sizes.
SETTINGS = {
    "demo": ("slowfast_tiny_4x16_timediff", "64x80", 16, 4, 32),
    "r50-4x16": ("slowfast_r50_4x16", "256x340", 16, 1, 8),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"Comma-separated: {', '.join(SETTINGS)}.")
    ap.add_argument("--budget", type=float, default=20.0, help="bench e2e --budget: seconds per pass at most.")
    ap.add_argument("--threads", type=int, help="bench e2e --threads [default: the affinity mask].")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = [
        "| setting | DALI e2e clips/s | PyAV e2e clips/s | DALI / PyAV | bound (DALI) | load avg (1 min) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.settings.split(","):
            preset, size, videos, batch, clips = SETTINGS[name]
            work = Path(tmp) / name
            data = work / "data"
            subprocess.run(
                SLOWFAST + ["data", "synth", str(data), "--videos", str(videos), "--size", size, "--frames", "96"]
                + ["--val-fraction", "0.5", "--quiet"],
                check=True,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            torch.manual_seed(0)
            ckpt = model.save(model.build(preset), work / f"{preset}.safetensors")
            onnx = work / f"{preset}.onnx"
            subprocess.run(
                SLOWFAST + ["export", "onnx", str(ckpt), "--out", str(onnx), "--no-verify", "--trt-check", "off"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            cmd = SLOWFAST + [
                "bench", "e2e", str(data / "val.csv"), str(onnx), "--batch-size", str(batch), "--clips", str(clips),
                "--budget", str(args.budget), "--device", "cpu", "--out", str(out / name), "--quiet",
            ] + (["--threads", str(args.threads)] if args.threads else [])  # fmt: skip
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            r = json.loads((out / name / "result.json").read_text())
            rows = {row["pipeline"]: row for row in r["rows"]}
            dali, pyav = rows["dali"]["e2e_clips_per_s"], rows["pyav"]["e2e_clips_per_s"]
            summary.append(
                f"| {name} ({preset}, {size}) | {dali:.2f} | {pyav:.2f} | {r['ratios']['dali_vs_pyav_e2e']:.2f}x | {rows['dali']['bound']} | "
                f"{r['loadavg'][0]:.2f} |"
            )
    text = "\n".join(summary) + "\n"
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
