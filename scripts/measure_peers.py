"""DALI against its peers (decord, torchcodec) and PyAV at R50 4x16 geometry: one `bench pipeline` run per source.

    .venv/bin/python scripts/measure_peers.py --out benchmarks/results/cpu-epyc-2core/peers
    /tmp/tcvenv/bin/python scripts/measure_peers.py --out ...   # an environment with torchcodec as well

For each codec (vp9, h264) and source size (240x320, 256x340) it synthesises `--videos` videos and runs
`slowfast bench pipeline` with every row in one process, so each ratio is taken within one run; DALI's CPU
decoder reads VP9 only, so the H.264 runs have the PyAV and peer rows alone (on a GPU, NVDEC reads H.264).
Peers that are not installed are listed as skipped with how to install them. Writes one folder per source
(result.json, pipeline.md) and summary.md with DALI train over the best peer and over PyAV.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SLOWFAST = [sys.executable, "-m", "slowfast_trt"]
PEER_ROWS = "pyav_dataloader,decord_dataloader,torchcodec_cpu_dataloader,torchcodec_cuda"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--frames", type=int, default=96, help="Frames per video (a 4x16 clip spans 64).")
    ap.add_argument("--clips", type=int, default=64, help="bench pipeline --clips.")
    ap.add_argument("--budget", type=float, default=20.0, help="bench pipeline --budget: seconds per row at most.")
    ap.add_argument("--threads", type=int, help="bench pipeline --threads [default: the affinity mask].")
    ap.add_argument("--codecs", default="vp9,h264")
    ap.add_argument("--sizes", default="240x320,256x340")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = [
        "| source | DALI train clips/s | best peer | best peer clips/s | DALI train / best peer | DALI train / PyAV DataLoader | load avg (1 min) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for codec in args.codecs.split(","):
            for size in args.sizes.split(","):
                name = f"{codec}-{size}"
                data = Path(tmp) / name
                subprocess.run(
                    SLOWFAST
                    + ["data", "synth", str(data), "--videos", str(args.videos), "--size", size, "--frames", str(args.frames)]
                    + ["--codec", codec, "--val-fraction", "0.5", "--quiet"],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                # Both halves of the synthetic set, as one manifest.
                rows = (data / "train.csv").read_text().splitlines()
                rows += (data / "val.csv").read_text().splitlines()[1:]
                (data / "all.csv").write_text("\n".join(rows) + "\n")
                loaders = ("dali_train,dali_test,dali_decode_only," if codec == "vp9" else "") + PEER_ROWS
                cmd = SLOWFAST + [
                    "bench", "pipeline", str(data / "all.csv"), "--preset", "slowfast_r50_4x16", "--clips", str(args.clips),
                    "--budget", str(args.budget), "--loaders", loaders, "--device", "cpu", "--out", str(out / name), "--quiet",
                ] + (["--threads", str(args.threads)] if args.threads else [])  # fmt: skip
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                r = json.loads((out / name / "result.json").read_text())
                dali = r["rows"].get("dali_train", {}).get("clips_per_s")
                best = r.get("best_peer")
                best_rate = r["rows"][best]["clips_per_s"] if best else None
                ratio = r["ratios"].get("dali_train_vs_best_peer")
                vs_pyav = r["ratios"].get("dali_train_vs_pyav_dataloader")

                def f(x, unit=""):
                    return "n/a" if x is None else f"{x:.2f}{unit}"

                summary.append(
                    f"| {name} | {f(dali)} | {best or 'n/a'} | {f(best_rate)} | {f(ratio, 'x')} | {f(vs_pyav, 'x')} | {r['loadavg'][0]:.2f} |"
                )
                skipped.update(r.get("skipped", {}))
    note = ["", "n/a: no DALI rows on H.264 here; DALI's CPU decoder reads VP9 only (NVDEC reads H.264 on a GPU)."]
    text = "\n".join(summary + note + [""] + [f"Skipped {row}: {why}" for row, why in skipped.items()]) + "\n"
    (out / "summary.md").write_text(text)
    print(text)
    print(f"load average now: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
