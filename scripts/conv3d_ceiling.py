"""Measured ceiling of a preset's own conv3d layers (slowfast_trt.benchmarks.conv_ceiling); runs on a GPU, and on the CPU as a smoke test.

Example (GPU): .venv/bin/python scripts/conv3d_ceiling.py --preset slowfast_r50_4x16 --size 256 --batch-size 64 --precision fp16 --out benchmarks/results/<gpu>/conv3d
"""

from __future__ import annotations

import argparse
import json
import sys

from slowfast_trt.benchmarks.conv_ceiling import conv_ceiling, to_markdown, write_results
from slowfast_trt.common.errors import SlowFastError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="slowfast_r50_4x16")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", "--batch", dest="batch", type=int, default=8)
    ap.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp16")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--contiguous", action="store_true", help="NCDHW instead of channels_last_3d")
    ap.add_argument("--no-benchmark", action="store_true", help="cudnn.benchmark off")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", help="write result.json and conv_ceiling.md here")
    a = ap.parse_args(argv)
    try:
        r = conv_ceiling(
            a.preset,
            size=a.size,
            batch=a.batch,
            precision=a.precision,
            device=a.device,
            channels_last=not a.contiguous,
            cudnn_benchmark=not a.no_benchmark,
            warmup=a.warmup,
            iters=a.iters,
            progress=lambda s: print(s, file=sys.stderr),
        )
    except SlowFastError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r, indent=2) if a.json else to_markdown(r))
    if a.out:
        write_results(r, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
