"""INT8 explicit quantization: a symmetric Q/DQ ONNX model that TensorRT's explicit-quantization path accepts.

ONNX Runtime's static quantizer places the Q/DQ pairs (per-channel weights, per-tensor activations) on the inputs of
every Conv/Gemm/MatMul (`qdq`), calibrated on clips from the DALI feed (`calibration`); `--method auto` picks among
calibrators (`int8_selection`), `mse` ranges come from `int8_ranges`, and `bias_correction` removes the mean shift that
rounding leaves. docs/int8.md has the measurements behind every default.
"""

from __future__ import annotations

import copy
import itertools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.engines.sidecar import check_graph_inputs, file_sha256, graph_inputs, write_sidecar
from slowfast_trt.export.bias_correction import bias_correct
from slowfast_trt.export.calibration import CalibrationReader, calibration_feed, fp32_source
from slowfast_trt.export.int8_ranges import mse_thresholds
from slowfast_trt.export.int8_selection import quantize_auto
from slowfast_trt.export.qdq import DEFAULT_PLACEMENT, PLACEMENTS, QUANTIZED_OPS, activation_tensors
from slowfast_trt.export.trt_check import DEFAULT_TRT_CHECK, check_artifact, trt_majors

METHODS = ("auto", "minmax", "entropy", "percentile", "mse")
DEFAULT_METHOD, DEFAULT_PERCENTILE, DEFAULT_MOVING_AVERAGE = "auto", 99.99, True
DEFAULT_BIAS_CORRECTION = True


def quantize_int8(
    onnx_path: str | os.PathLike,
    calibration: Iterable[dict[str, np.ndarray]],
    out: str | os.PathLike | None = None,
    *,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    moving_average: bool = DEFAULT_MOVING_AVERAGE,
    placement: str = DEFAULT_PLACEMENT,
    exclude: Iterable[str] = (),
    ranges: dict[str, float] | None = None,
    bias_correction: bool = DEFAULT_BIAS_CORRECTION,
    calibration_info: dict | None = None,
    trt_check: str = DEFAULT_TRT_CHECK,
) -> Path:
    """Calibrate on `calibration` batches and write a symmetric int8 Q/DQ model plus its sidecar.

    Every Conv (both pathways and the laterals) and the classifier get quantized inputs and weights.
    `placement` says which tensors carry Q/DQ (PLACEMENTS). `exclude` names nodes to leave in float: a diagnostic
    for per-layer sensitivity only (an engine meant for use quantizes every Conv, as docs/int8.md measures it);
    the sidecar records it. `method="auto"` calibrates each of `int8_selection.AUTO_CANDIDATES` with the other
    settings given here and keeps the closest to FP32 (`trt_check` then checks the kept model once). Nothing is left
    under the output name if anything fails, except a model TensorRT would refuse (`trt_check`, as in `export_onnx`):
    it stays for inspection, with the check in its sidecar.
    """
    src, side = fp32_source(onnx_path)
    if method not in METHODS:
        raise SlowFastError(f"--method must be one of {METHODS}, got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise SlowFastError(f"--percentile must be in (50, 100], got {percentile}")
    if placement not in PLACEMENTS:
        raise SlowFastError(f"--placement must be one of {PLACEMENTS}, got {placement!r}")
    trt_majors(trt_check)
    check_graph_inputs(graph_inputs(src), side, str(src))
    out = Path(out) if out else src.with_name(src.stem + ".int8.onnx")
    if out.resolve() == src.resolve():
        raise SlowFastError(f"--out {out} is the FP32 model itself; pick another output name")
    recipe = dict(placement=placement, exclude=list(exclude), ranges=ranges, bias_correction=bias_correction, info=calibration_info)
    if method != "auto":
        path = _calibrate(src, side, calibration, out, method=method, percentile=percentile, moving_average=moving_average, **recipe)
        check_artifact(path, trt_check)
        return path

    def candidate(src: Path, batches: Iterable[dict[str, np.ndarray]], path: Path, **kw) -> Path:
        """One AUTO_CANDIDATES calibration: its method and knobs, the rest of this call's recipe."""
        knobs = {"percentile": DEFAULT_PERCENTILE, "moving_average": DEFAULT_MOVING_AVERAGE} | kw
        return _calibrate(src, copy.deepcopy(side), batches, path, **knobs, **recipe)

    path = quantize_auto(src, calibration, out, candidate)
    check_artifact(path, trt_check)
    return path


def _calibration_reader(calibration: Iterable[dict[str, np.ndarray]], side: dict, method: str, bias_correction: bool):
    """The calibration batches as ONNX Runtime's reader, a list of them where they are read more than once (else None),
    and whether the reader feeds one clip at a time (histogram calibrators on a dynamic batch)."""
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise SlowFastError("no calibration batches were given; pass --clips N with N >= 1")
    cached = None
    if method == "mse" or bias_correction:  # the batches are read more than once
        cached = [first, *batches]
        batches = iter(cached[1:])
    split = method in ("percentile", "entropy") and not isinstance(side.get("batch"), int)
    return CalibrationReader(itertools.chain([first], batches), side["input_names"], split=split), cached, split


def _range_overrides(ranges: dict[str, float]) -> dict:
    """Fixed symmetric ranges per activation tensor, in ONNX Runtime's `TensorQuantOverrides` form."""
    if not ranges:
        return {}
    return {"TensorQuantOverrides": {t: [{"rmin": np.array(-v, np.float32), "rmax": np.array(v, np.float32)}] for t, v in ranges.items()}}


def _static_quantizer(tmp: Path, method: str, percentile: float, moving_average: bool, placement: str, exclude: list[str]):
    """`quantize(model, reader, extra_options)`: ONNX Runtime's static Q/DQ quantizer with this recipe, writing `tmp`."""
    from onnxruntime.quantization import (  # lazy: onnxruntime, optional (extra [export])
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    calib_method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "mse": CalibrationMethod.MinMax,
    }[method]

    def quantize(model: Path, rd, extra: dict) -> None:
        quantize_static(
            str(model),
            str(tmp),
            rd,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=exclude,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calib_method,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,  # float biases: TensorRT's DequantizeLinear takes no INT32 (ORT's bias type)
                **({"CalibPercentile": percentile} if method == "percentile" else {}),
                **({"CalibMovingAverage": True} if method == "minmax" and moving_average else {}),
                **({"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)} if placement == "inputs" else {}),
                **extra,
            },
        )

    return quantize


def _calibrate(
    src: Path,
    side: dict,
    calibration: Iterable[dict[str, np.ndarray]],
    out: Path,
    *,
    method: str,
    percentile: float,
    moving_average: bool,
    placement: str,
    exclude: list[str],
    ranges: dict[str, float] | None,
    bias_correction: bool,
    info: dict | None,
) -> Path:
    """One calibration method: pre-process, calibrate and quantize (then correct the bias), write the model and its sidecar."""
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: onnxruntime, optional (extra [export])

    reader, cached, split = _calibration_reader(calibration, side, method, bias_correction)
    overrides = _range_overrides(ranges or {})
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if method == "mse":
            overrides = _range_overrides(mse_thresholds(pre, cached, side["input_names"], activation_tensors(pre, placement, exclude)))
        tmp = Path(work) / "int8.onnx"
        quantize = _static_quantizer(tmp, method, percentile, moving_average, placement, exclude)
        quantize(pre, reader, overrides)
        if bias_correction:
            corrected, pinned = bias_correct(pre, tmp, cached, side["input_names"], Path(work) / "corrected.onnx")
            quantize(corrected, CalibrationReader(iter(cached), side["input_names"], split=split), {"TensorQuantOverrides": pinned})
        os.replace(tmp, out)
    side.update(
        kind="onnx-int8",
        precision="int8",
        source_onnx=str(src),
        source_onnx_sha256=file_sha256(src),
        calibration={
            "method": method,
            **({"percentile": percentile} if method == "percentile" else {}),
            **({"moving_average": moving_average} if method == "minmax" else {}),
            "batches": reader.count,
            "placement": placement,
            "bias_correction": bias_correction,
            **({"excluded_nodes": exclude} if exclude else {}),
            "library": "onnxruntime.quantization (QDQ, symmetric, per-channel weights)",
            **(info or {}),
        },
    )
    side.pop("parity", None)
    side.pop("tensorrt_check", None)  # the FP32 model's; this file gets its own
    try:
        write_sidecar(out, side)
    except BaseException:
        out.unlink(missing_ok=True)  # a model without its sidecar is unusable; leave neither
        raise
    return out


def quantize_from_manifest(
    onnx_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    feed: FeedSpec,
    *,
    clips: int = 32,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    moving_average: bool = DEFAULT_MOVING_AVERAGE,
    placement: str = DEFAULT_PLACEMENT,
    bias_correction: bool = DEFAULT_BIAS_CORRECTION,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    trt_check: str = DEFAULT_TRT_CHECK,
) -> Path:
    """Quantize an FP32 export to int8 Q/DQ, calibrated on `clips` clips of `manifest_path` from the DALI feed
    (`feed`: device, threads, calibration crops per clip, progress bar).

    See `calibration_feed` for which clips; the calibration settings (manifest and its hash, clips, seed,
    method, the videos drawn) go into the INT8 sidecar. Nothing is left under `out` if anything fails.
    """
    if method not in METHODS:
        raise SlowFastError(f"--method must be one of {METHODS}, got {method!r}")
    if placement not in PLACEMENTS:
        raise SlowFastError(f"--placement must be one of {PLACEMENTS}, got {placement!r}")
    batches, info = calibration_feed(onnx_path, manifest_path, feed, clips=clips, seed=seed)
    return quantize_int8(
        onnx_path,
        batches,
        out,
        method=method,
        percentile=percentile,
        moving_average=moving_average,
        placement=placement,
        bias_correction=bias_correction,
        calibration_info=info,
        trt_check=trt_check,
    )
