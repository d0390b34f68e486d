"""INT8 explicit quantization: a Q/DQ ONNX model that TensorRT's explicit-quantization path accepts.

ONNX Runtime's static quantizer places QuantizeLinear/DequantizeLinear pairs (QDQ format) with symmetric
int8 scales: per-channel for weights, per-tensor for activations, calibrated on real clips. We chose it
over NVIDIA ModelOpt's ONNX quantizer because ModelOpt's `[onnx]` extra replaces the CPU onnxruntime with
onnxruntime-gpu and cupy here (see INFERENCE-NOTES); the graph form is the same Q/DQ that TensorRT fuses.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from common.errors import SlowFastError
from export.sidecar import file_sha256, read_sidecar, write_sidecar

METHODS = ("minmax", "entropy", "percentile")


class _Reader:
    """ONNX Runtime CalibrationDataReader over an iterator of {input name: float32 array} batches."""

    def __init__(self, batches: Iterator[dict[str, np.ndarray]], names: list[str]):
        self._it = iter(batches)
        self._names = names
        self.count = 0

    def get_next(self):
        batch = next(self._it, None)
        if batch is None:
            return None
        missing = [n for n in self._names if n not in batch]
        if missing:
            raise SlowFastError(f"calibration batch lacks inputs {missing}; the model takes {self._names}")
        self.count += 1
        return {n: np.ascontiguousarray(batch[n], dtype=np.float32) for n in self._names}

    def rewind(self):  # entropy/percentile calibrators may ask; we feed each batch once
        return None


def quantize_int8(
    onnx_path: str | os.PathLike,
    calibration: Iterable[dict[str, np.ndarray]],
    out: str | os.PathLike | None = None,
    *,
    method: str = "minmax",
    calibration_info: dict | None = None,
) -> Path:
    """Calibrate on `calibration` batches and write a symmetric int8 Q/DQ model plus its sidecar.

    Every Conv (both pathways and the laterals) and the classifier get quantized inputs and weights.
    Nothing is left under the output name if anything fails.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = Path(onnx_path)
    if not src.exists():
        raise SlowFastError(f"ONNX model {src} not found")
    side = read_sidecar(src)
    if side["kind"] != "onnx":
        raise SlowFastError(f"{src} is a {side['kind']} artifact; quantize the FP32 ONNX export instead")
    if method not in METHODS:
        raise SlowFastError(f"--method must be one of {METHODS}, got {method!r}")
    out = Path(out) if out else src.with_name(src.stem + ".int8.onnx")
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise SlowFastError("no calibration batches were given; pass --clips N with N >= 1")
    reader = _Reader(itertools.chain([first], batches), side["input_names"])
    calib_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[method]

    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        tmp = Path(work) / "int8.onnx"
        quantize_static(
            str(pre), str(tmp), reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calib_method,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        os.replace(tmp, out)
    side.update(
        kind="onnx-int8",
        precision="int8",
        source_onnx=str(src),
        source_onnx_sha256=file_sha256(src),
        calibration={"method": method, "batches": reader.count, "library": "onnxruntime.quantization (QDQ, symmetric, per-channel weights)", **(calibration_info or {})},
    )
    side.pop("parity", None)
    write_sidecar(out, side)
    return out


def qdq_summary(onnx_path: str | os.PathLike) -> dict:
    """Count Conv nodes whose input and weight both come from DequantizeLinear, and check zero points are 0."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    producers = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name: i for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if all(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in c.input[:2])]
    zero_points = []
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            zero_points.append(numpy_helper.to_array(inits[n.input[2]]))
    symmetric = all(np.all(z == 0) for z in zero_points)
    return {"convs": len(convs), "quantized_convs": len(quantized), "unquantized": [c.name for c in convs if c not in quantized],
            "symmetric": symmetric, "qdq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)}
