#!/usr/bin/env bash
# INT8 accuracy proof in one command: FP32 ONNX export of CKPT, INT8 Q/DQ calibrated on CALIB (DALI clips),
# then both evaluated with ONNX Runtime on the CPU with all K x 3 views of VAL, in one run (result.json + result.md).
#   scripts/int8_proof.sh CKPT CALIB_MANIFEST VAL_MANIFEST OUT_DIR [CLIPS] [METHOD] [more `export int8` options]
# METHOD empty or absent: export int8's default calibration (--method auto; docs/int8.md).
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 CKPT CALIB_MANIFEST VAL_MANIFEST OUT_DIR [CALIB_CLIPS=32] [METHOD (default: export int8's)] [export int8 options, e.g. --percentile 99.9]" >&2
    exit 2
fi
ckpt=$1 calib=$2 val=$3 out=$4 clips=${5:-32} method=${6:-}
shift $(( $# < 6 ? $# : 6 ))
py=${PYTHON:-python}
mkdir -p "$out"
"$py" -m slowfast_trt export onnx "$ckpt" --out "$out/fp32.onnx"
"$py" -m slowfast_trt export int8 "$out/fp32.onnx" --calib "$calib" --clips "$clips" ${method:+--method "$method"} --device cpu --out "$out/int8.onnx" "$@"
"$py" -m slowfast_trt export compare "$out/fp32.onnx" "$out/int8.onnx" --data "$val" --out "$out/compare" --clips 10 --crops 3 --device cpu --with-kernels
