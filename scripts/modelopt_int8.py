"""INT8 Q/DQ with NVIDIA ModelOpt's ONNX quantizer on the same DALI calibration clips as `slowfast export int8`.

Kept for the ModelOpt-vs-ONNX-Runtime comparison recorded in docs/int8.md; not part of the package, because
`nvidia-modelopt[onnx]` replaces the CPU onnxruntime with onnxruntime-gpu and cupy. Run it in a throwaway venv
that sees the project's packages, with ModelOpt and its ONNX dependencies except onnxruntime-gpu/cupy:

    python3 -m venv /tmp/mo
    echo "$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')" \
        > "$(/tmp/mo/bin/python -c 'import site; print(site.getsitepackages()[0])')/project.pth"
    /tmp/mo/bin/pip install nvidia-modelopt==0.47.0 cppimport lief ml_dtypes onnx-graphsurgeon onnxscript onnxslim polygraphy
    PYTHONPATH=$PWD /tmp/mo/bin/python scripts/modelopt_int8.py FP32.onnx MANIFEST --clips 32 --out FP32.modelopt.int8.onnx

The output has the project's sidecar, so `slowfast eval --engine` and `slowfast export compare` take it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from slowfast_trt.engines.sidecar import file_sha256, read_sidecar, write_sidecar
from slowfast_trt.export.calibration import calibration_feed
from slowfast_trt.export.qdq import qdq_summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx")
    ap.add_argument("manifest")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", choices=["max", "entropy"], default="max")
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--all-convs",
        action="store_true",
        help="Also quantize the small-channel / non-square-kernel Convs that ModelOpt leaves in float for TensorRT speed",
    )
    args = ap.parse_args()

    from modelopt.onnx.quantization import int8 as mo_int8
    from modelopt.onnx.quantization import quantize

    if args.all_convs:  # ModelOpt's rule (graph_utils.find_nodes_from_convs_to_exclude) keeps IC/OC < 16 Convs in float
        mo_int8.find_nodes_from_convs_to_exclude = lambda graph, quantize_mode="int8": []

    src, out = Path(args.onnx), Path(args.out)
    feed, info = calibration_feed(src, args.manifest, clips=args.clips, seed=args.seed, device="cpu", progress=False)
    batches = list(feed)
    data = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        tmp = Path(work) / "int8.onnx"
        quantize(
            str(src),
            quantize_mode="int8",
            calibration_data=data,
            calibration_method=args.method,
            calibration_eps=["cpu"],
            high_precision_dtype="fp32",
            output_path=str(tmp),
            log_level="WARNING",
        )
        os.replace(tmp, out)
    seconds = time.perf_counter() - t0
    import modelopt

    side = read_sidecar(src)
    side.update(
        kind="onnx-int8",
        precision="int8",
        source_onnx=str(src),
        source_onnx_sha256=file_sha256(src),
        calibration={
            "method": args.method,
            "batches": 1,
            "library": f"nvidia-modelopt {modelopt.__version__} (modelopt.onnx.quantization.quantize, int8, high_precision_dtype=fp32)",
            "all_convs": args.all_convs,
            **info,
        },
    )
    side.pop("parity", None)
    write_sidecar(out, side)
    s = qdq_summary(out)
    print(f"wrote {out} in {seconds:.1f} s: {s['quantized_convs']}/{s['convs']} Conv quantized, symmetric={s['symmetric']}")


if __name__ == "__main__":
    main()
