"""INT8 explicit quantization: a Q/DQ ONNX model that TensorRT's explicit-quantization path accepts.

ONNX Runtime's static quantizer places QuantizeLinear/DequantizeLinear pairs (QDQ format) with symmetric
int8 scales: per-channel for weights, per-tensor for activations, calibrated on real clips from the DALI
calibration feed (`quantize_from_manifest`).

Why ONNX Runtime's quantizer and not NVIDIA ModelOpt's (`modelopt.onnx.quantization.quantize`, 0.47.0), both
tried on the same model, the same 32 calibration clips (seed 0) and the same views (2026-11-25, 2-core AMD EPYC,
ONNX Runtime 1.32 CPU, `slowfast export compare` over one decode, slowfast_tiny_4x16 trained with the CLI recipe,
best of 5 epochs; 48 val videos, 6 per class, 10 clips x 3 crops):

    quantizer                        Convs quantized   10x3 top-1 (FP32 22.92)   top-1 agreement   CPU clips/s (FP32 33.3)
    ONNX Runtime, minmax             38/38             22.92 (+0.00)             97.9%             7.9 (0.24x)
    ModelOpt, defaults (max)         31/38             20.83 (-2.08)             95.8%             34.2 (1.03x)
    ModelOpt, every Conv forced      38/38             22.92 (+0.00)             97.9%             33.5 (1.00x)

- ModelOpt leaves Convs with fewer than 16 input or output channels in float unless they meet its TensorRT
  kernel rules (both stems, the first lateral, the Fast pathway's res2/res3 conv_a/conv_b here); the issue asks
  for every Conv3d of both pathways and the laterals, which only a patch of its internals gives
  (`scripts/modelopt_int8.py --all-convs`). Forced to quantize everything, it is exactly as accurate as ONNX
  Runtime here; with its defaults it lost one video more.
- ModelOpt keeps float weights behind Q->DQ pairs (3.4 MB file vs 0.98 MB with int8 weights from ONNX Runtime),
  so ONNX Runtime on the CPU runs it as float convolutions at FP32 speed; ONNX Runtime's own int8 kernels are
  slower than FP32 on this CPU (no VNNI). CPU INT8 speed is not the goal: the Q/DQ graph is for TensorRT.
- `nvidia-modelopt[onnx]` replaces the CPU onnxruntime with onnxruntime-gpu 1.24 and cupy (INFERENCE-NOTES);
  it ran here only in a separate venv without its `[onnx]` extra (its ONNX dependencies installed by hand).
So ONNX Runtime's quantizer is the default: it meets the every-Conv requirement without patching, installs
with the project, and was at least as accurate (that comparison was on a weak 22.9% model).

Defaults (2026-11-28, three `slowfast_tiny_4x16_timediff` models trained with the README recipe, seeds 1-3; INT8
Q/DQ calibrated on 128 clips of train.csv; ONNX Runtime on the CPU; README "INT8 accuracy on trained models" has
the tables and `scripts/int8_sweep.py` reproduces the sweeps):
- Q/DQ on the inputs of Conv/Gemm/MatMul only (PLACEMENTS, `--placement inputs`). ONNX Runtime's own QDQ placement
  also quantizes every Conv output before its ReLU/residual Add, a second rounding per layer; with the old default
  calibration it lost 31 points on one model.
- Per-tensor sensitivity under Q/DQ semantics (one activation tensor left in float at a time) found one tensor
  behind the loss: the Fast stem's pooled output (4 channels fed by the time difference, read by the first lateral
  and Fast res2). Left in float it took the KL divergence from FP32 from 0.84 to 0.06; no other tensor lowered it
  by more than 0.08. Its error is not noise but a shift: its range does not matter monotonically (fixed ranges
  26/12/8/6 gave KL 0.25/0.10/0.33/0.37 on one model, 3.43/0.006/0.036/0.13 on another), as a near-constant
  value (still background) lands above or below an int8 level. Empirical bias correction (`_bias_correct`)
  removes that mean shift; with percentile 99.99 ranges it was within one video of FP32 on all three models at 128
  clips (1x3 KL 0.019/0.006/0.008), while no calibrator without it was on all three (KL on the worst model: minmax
  with moving average 0.84, percentile 99.99 0.25, 99.999 0.21, entropy 0.48, MSE-optimal 0.36).
- No single calibrator was safe everywhere even with bias correction: on all 384 training clips percentile 99.99
  drew model 1 to KL 0.44 (-8 points at 1x3), percentile 99.999 did the same to model 3 at 128 clips. So the default
  `--method auto` (DEFAULT_METHOD) builds AUTO_CANDIDATES and keeps the one whose softmax on the calibration clips
  is closest to FP32's (mean KL divergence; no evaluation data is used). In the six cases measured (3 models x 128
  and 384 clips) that choice was also the lowest-KL candidate on the 96 val videos. An exact-rounding MSE refinement
  of each range (shrinking it to where its int8 grid rounds the calibration data best) was tried and made model 1
  worse (1x3 KL 0.019 -> 0.19); not kept.
- Proof with the defaults (`--method auto`, 128 clips of train.csv, seed 0; `export compare`, ONNX Runtime CPU;
  benchmarks/results/cpu-epyc-2core/int8-proof-auto/): FP32 vs INT8 top-1 at 10x3 on the 96 val videos
  93.75/93.75, 95.83/96.88, 96.88/96.88 (agreement 95.8/99.0/100%); at 2x3 on 480 held-out videos (`data synth
  --seed 1`) 92.71/93.33, 95.62/96.04, 96.67/96.25; INT8 at 0.92-0.97x FP32 clips/s. Still not robust to every
  calibration set: `--clips 384` gave 88.54 (-5.21) at 10x3 on model 1 (percentile 99.9 chosen). Reproduce:
  README, Export and engines, "INT8 accuracy on trained models".
"""
from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from slowfast_trt import engines
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import calibration_plan
from slowfast_trt.data.manifest import read_manifest, to_videos
from slowfast_trt.engines.sidecar import check_graph_inputs, file_sha256, graph_inputs, read_sidecar, sidecar_config, write_sidecar

METHODS = ("auto", "minmax", "entropy", "percentile", "mse")
# "auto" builds AUTO_CANDIDATES and keeps the one whose outputs on the calibration clips diverge least from FP32's.
# Measured on three trained demo models x 128/384 calibration clips (module docstring; README, Export): no single
# calibrator was close to FP32 in all six cases (percentile 99.99 with bias correction lost 9 points on one model
# calibrated on 384 clips), while the candidate with the lowest divergence on the calibration clips was also the
# best on the 96 held-out videos in all six.
DEFAULT_METHOD, DEFAULT_PERCENTILE, DEFAULT_MOVING_AVERAGE = "auto", 99.99, True
AUTO_CANDIDATES = {
    "percentile-99.99": {"method": "percentile", "percentile": 99.99},
    "percentile-99.9": {"method": "percentile", "percentile": 99.9},
    "percentile-99.999": {"method": "percentile", "percentile": 99.999},
    "minmax-moving-average": {"method": "minmax", "moving_average": True},
}
DEFAULT_BIAS_CORRECTION = True
# Where Q/DQ pairs go. "inputs": on the inputs (activation and weight) of every Conv, Gemm and MatMul only, which is
# TensorRT's explicit-quantization recipe (NVIDIA's ModelOpt places them the same way); the outputs of those ops, the
# ReLUs and the residual Adds stay in float. "inputs+outputs": ONNX Runtime's QDQ default, which also quantizes every
# Conv/Gemm/MatMul output (before its ReLU or residual Add), a second rounding per layer.
PLACEMENTS = ("inputs", "inputs+outputs")
DEFAULT_PLACEMENT = "inputs"
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
DEFAULT_CALIB_CROPS = 1  # views per calibration clip (1: centre crop; 3: the three test crops)


class _Reader:
    """ONNX Runtime CalibrationDataReader over an iterator of {input name: float32 array} batches.

    With `split`, each batch is fed one clip at a time: ONNX Runtime's histogram calibrators (percentile,
    entropy) stack per-call outputs and fail on a shorter last batch, and histograms do not depend on the
    grouping. Minmax gets the batches as they are (its moving average is over batches).
    """

    def __init__(self, batches: Iterator[dict[str, np.ndarray]], names: list[str], split: bool = False):
        self._it = iter(batches)
        self._names = names
        self._split = split
        self._pending: list[dict[str, np.ndarray]] = []
        self.count = 0  # batches received

    def get_next(self):
        if not self._pending:
            batch = next(self._it, None)
            if batch is None:
                return None
            missing = [n for n in self._names if n not in batch]
            if missing:
                raise SlowFastError(f"calibration batch lacks inputs {missing}; the model takes {self._names}")
            self.count += 1
            arrays = {n: np.ascontiguousarray(batch[n], dtype=np.float32) for n in self._names}
            n = len(arrays[self._names[0]])
            self._pending = [{k: v[i:i + 1] for k, v in arrays.items()} for i in range(n)] if self._split else [arrays]
        return self._pending.pop(0)

    def rewind(self):  # entropy/percentile calibrators may ask; we feed each batch once
        return None


def _fp32_source(onnx_path: str | os.PathLike) -> tuple[Path, dict]:
    """The FP32 ONNX export to quantize and its sidecar; anything else is a one-line error."""
    src = Path(onnx_path)
    if not src.exists():
        raise SlowFastError(f"ONNX model {src} not found")
    side = read_sidecar(src)
    if side["kind"] != "onnx":
        raise SlowFastError(f"{src} is a {side['kind']} artifact; quantize the FP32 ONNX export instead")
    return src, side


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
) -> Path:
    """Calibrate on `calibration` batches and write a symmetric int8 Q/DQ model plus its sidecar.

    Every Conv (both pathways and the laterals) and the classifier get quantized inputs and weights.
    `placement` says which tensors carry Q/DQ (PLACEMENTS). `exclude` names nodes to leave in float: a diagnostic
    for per-layer sensitivity only (the issue wants every Conv quantized); the sidecar records it.
    Nothing is left under the output name if anything fails.
    """
    from onnxruntime.quantization import (  # lazy: onnxruntime, optional (extra [export])
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: onnxruntime, optional (extra [export])

    src, side = _fp32_source(onnx_path)
    if method not in METHODS:
        raise SlowFastError(f"--method must be one of {METHODS}, got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise SlowFastError(f"--percentile must be in (50, 100], got {percentile}")
    if placement not in PLACEMENTS:
        raise SlowFastError(f"--placement must be one of {PLACEMENTS}, got {placement!r}")
    exclude = list(exclude)
    check_graph_inputs(graph_inputs(src), side, str(src))
    out = Path(out) if out else src.with_name(src.stem + ".int8.onnx")
    if out.resolve() == src.resolve():
        raise SlowFastError(f"--out {out} is the FP32 model itself; pick another output name")
    if method == "auto":
        return _quantize_auto(src, calibration, out, placement=placement, exclude=exclude, ranges=ranges,
                              bias_correction=bias_correction, calibration_info=calibration_info)
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise SlowFastError("no calibration batches were given; pass --clips N with N >= 1")
    histogram = method in ("percentile", "entropy")
    if method == "mse" or bias_correction:  # the batches are read more than once
        cached = [first, *batches]
        batches = iter(cached[1:])
    split = histogram and not isinstance(side.get("batch"), int)
    reader = _Reader(itertools.chain([first], batches), side["input_names"], split=split)
    calib_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
                    "mse": CalibrationMethod.MinMax}[method]
    overrides = {"TensorQuantOverrides": {t: [{"rmin": np.array(-v, np.float32), "rmax": np.array(v, np.float32)}]
                                          for t, v in (ranges or {}).items()}} if ranges else {}

    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if method == "mse":
            thresholds = mse_thresholds(pre, cached, side["input_names"], _activation_tensors(pre, placement, exclude))
            overrides = {"TensorQuantOverrides": {t: [{"rmin": np.array(-v, np.float32), "rmax": np.array(v, np.float32)}]
                                                  for t, v in thresholds.items()}}
        tmp = Path(work) / "int8.onnx"
        def run_quantizer(model: Path, rd, extra: dict) -> None:
            quantize_static(
                str(model), str(tmp), rd,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                nodes_to_exclude=exclude,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=calib_method,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                               **({"CalibPercentile": percentile} if method == "percentile" else {}),
                               **({"CalibMovingAverage": True} if method == "minmax" and moving_average else {}),
                               **({"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)} if placement == "inputs" else {}),
                               **extra},
            )

        run_quantizer(pre, reader, overrides)
        if bias_correction:
            corrected, pinned = _bias_correct(pre, tmp, cached, side["input_names"], Path(work) / "corrected.onnx")
            run_quantizer(corrected, _Reader(iter(cached), side["input_names"], split=split),
                          {"TensorQuantOverrides": pinned})
        os.replace(tmp, out)
    side.update(
        kind="onnx-int8",
        precision="int8",
        source_onnx=str(src),
        source_onnx_sha256=file_sha256(src),
        calibration={"method": method, **({"percentile": percentile} if method == "percentile" else {}),
                     **({"moving_average": moving_average} if method == "minmax" else {}), "batches": reader.count, "placement": placement, "bias_correction": bias_correction,
                     **({"excluded_nodes": exclude} if exclude else {}), "library": "onnxruntime.quantization (QDQ, symmetric, per-channel weights)", **(calibration_info or {})},
    )
    side.pop("parity", None)
    try:
        write_sidecar(out, side)
    except BaseException:
        out.unlink(missing_ok=True)  # a model without its sidecar is unusable; leave neither
        raise
    return out


def _probabilities(model: Path, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Per-clip class probabilities of an exported model over the batches: `engines.load` on the CPU, Q/DQ emulated."""
    engine = engines.load(model, device="cpu", threads=2, qdq="emulate")  # the Q/DQ semantics, not fused int8 kernels
    given_probs = engine.info["output"]["kind"] == "probs"
    out = []
    for b in batches:
        scores = engine(**{n: torch.from_numpy(np.ascontiguousarray(b[n], dtype=np.float32)) for n in engine.input_names}).double()
        out.append((scores if given_probs else torch.softmax(scores, dim=-1)).numpy())
    return np.concatenate(out)


def mean_kl(ref: np.ndarray, p: np.ndarray) -> float:
    """Mean KL divergence KL(ref || p) of per-view probability rows (the last axis sums to 1)."""
    return float(np.sum(ref * (np.log(ref + 1e-12) - np.log(p + 1e-12)), axis=-1).mean())


def _quantize_auto(src: Path, calibration: Iterable[dict[str, np.ndarray]], out: Path, *, placement: str,
                   exclude: list[str], ranges: dict[str, float] | None, bias_correction: bool, calibration_info: dict | None) -> Path:
    """`--method auto`: every AUTO_CANDIDATES calibration, keeping the one closest to FP32 on the calibration clips.

    Closeness is the mean KL divergence of the INT8 model's softmax from the FP32 model's over the calibration clips
    (no evaluation data is used). The sidecar records every candidate's divergence and the choice.
    """
    cached = list(calibration)
    if not cached:
        raise SlowFastError("no calibration batches were given; pass --clips N with N >= 1")
    ref = _probabilities(src, cached)
    scores: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        for name, kw in AUTO_CANDIDATES.items():
            path = quantize_int8(src, iter(cached), Path(work) / f"{name}.onnx", placement=placement, exclude=exclude, ranges=ranges,
                                 bias_correction=bias_correction, calibration_info=calibration_info, **kw)
            scores[name] = mean_kl(ref, _probabilities(path, cached))
        best = min(scores, key=scores.get)
        side = read_sidecar(Path(work) / f"{best}.onnx")
        side["calibration"].update(selected_by="auto: lowest mean KL divergence from FP32 on the calibration clips",
                                   candidates_kl=scores, chosen=best)
        os.replace(Path(work) / f"{best}.onnx", out)
    try:
        write_sidecar(out, side)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def _activation_tensors(model_path: Path, placement: str, exclude: list[str]) -> list[str]:
    """The activation tensors that get Q/DQ: data inputs of Conv/Gemm/MatMul (and their outputs with inputs+outputs)."""
    import onnx  # lazy: onnx, optional (extra [export])

    m = onnx.load(str(model_path))
    inits = {i.name for i in m.graph.initializer}
    names = []
    for n in m.graph.node:
        if n.op_type in QUANTIZED_OPS and n.name not in exclude:
            for t in [*n.input[:2 if n.op_type == "MatMul" else 1], *(n.output[:1] if placement == "inputs+outputs" else [])]:
                if t and t not in inits and t not in names:
                    names.append(t)
    return names


MSE_BINS = 4096


def _probe_session(model_path: Path, tensors: list[str]):
    """An ONNX Runtime CPU session over the float model at `model_path` with `tensors` added as outputs."""
    import onnx  # lazy: onnx, optional (extra [export])
    import onnxruntime as ort  # lazy: onnxruntime, optional (extra [export])

    m = onnx.load(str(model_path))
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _bias_correct(pre: Path, int8: Path, batches: list[dict[str, np.ndarray]], input_names: list[str], out: Path) -> tuple[Path, dict]:
    """Empirical bias correction (Nagel et al. 2019, "Data-free quantization"): fold each Conv's mean quantization error into its bias.

    From the first quantization pass (`int8`) take every quantized Conv's activation scale and int8 weights; over the
    calibration batches take the per-channel mean of the Conv's float input x and of its quantized value DQ(Q(x)) in
    the FP32 graph; then bias -= sum_k (Wq * mean(DQ(Q(x))) - W * mean(x)), the mean output shift that rounding
    causes (exact away from the borders for a spatially constant shift). A per-tensor scale that rounds a
    near-constant activation (the Fast stem's pooled output on still background) to a level above or below it
    otherwise shifts every later layer. Returns the corrected FP32 model and the activation scales to pin, so the
    second pass quantizes the same tensors on the same grid.
    """
    import onnx  # lazy: onnx, optional (extra [export])
    from onnx import numpy_helper  # lazy: onnx, optional (extra [export])

    q = onnx.load(str(int8))
    qinits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    qprod = {o: n for n in q.graph.node for o in n.output}
    m = onnx.load(str(pre))
    inits = {i.name: i for i in m.graph.initializer}
    convs = {}
    pinned = {}
    for n in q.graph.node:
        if n.op_type != "Conv" or qprod.get(n.input[0]) is None or qprod[n.input[0]].op_type != "DequantizeLinear":
            continue
        xdq, wdq = qprod[n.input[0]], qprod[n.input[1]]
        x_name = qprod[xdq.input[0]].input[0]  # Conv <- DQ <- Q <- float tensor
        scale = float(qinits[xdq.input[1]])
        wq = qinits[wdq.input[0]].astype(np.float64) * qinits[wdq.input[1]].reshape(-1, *[1] * (qinits[wdq.input[0]].ndim - 1))
        convs[n.name] = (x_name, scale, wq)
        pinned[x_name] = [{"scale": np.array(scale, np.float32), "zero_point": np.array(0, np.int8)}]
    for n in q.graph.node:  # pin every other activation Q/DQ (Conv/MatMul outputs, the classifier input) as well
        if n.op_type == "QuantizeLinear" and n.input[0] not in qinits and n.input[0] not in pinned:
            pinned[n.input[0]] = [{"scale": np.array(float(qinits[n.input[1]]), np.float32), "zero_point": np.array(0, np.int8)}]
    nodes = {n.name: n for n in m.graph.node if n.op_type == "Conv" and n.name in convs}
    tensors = sorted({convs[k][0] for k in nodes})
    sess = _probe_session(pre, tensors)
    scale_of = {convs[k][0]: convs[k][1] for k in nodes}
    sums = {t: [0.0, 0.0, 0] for t in tensors}
    for b in batches:
        outs = sess.run(tensors, {n: np.ascontiguousarray(b[n], dtype=np.float32) for n in input_names})
        for t, x in zip(tensors, outs):
            axes = tuple(i for i in range(x.ndim) if i != 1)
            xq = np.clip(np.round(x / scale_of[t]), -128, 127) * scale_of[t]
            sums[t][0] = sums[t][0] + x.sum(axis=axes, dtype=np.float64)
            sums[t][1] = sums[t][1] + xq.sum(axis=axes, dtype=np.float64)
            sums[t][2] += x.size // x.shape[1]
    for name, node in nodes.items():
        x_name, _, wq = convs[name]
        if len(node.input) < 3 or node.input[2] not in inits or any(a.name == "group" and a.i != 1 for a in node.attribute):
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        mean_x, mean_xq = sums[x_name][0] / sums[x_name][2], sums[x_name][1] / sums[x_name][2]
        shape = (1, -1, *[1] * (w.ndim - 2))
        shift = (wq * mean_xq.reshape(shape)).sum(axis=tuple(range(1, w.ndim))) - (w * mean_x.reshape(shape)).sum(axis=tuple(range(1, w.ndim)))
        bias = numpy_helper.to_array(inits[node.input[2]])
        inits[node.input[2]].CopyFrom(numpy_helper.from_array((bias - shift).astype(bias.dtype), node.input[2]))
    onnx.save(m, str(out))
    return out, pinned


def mse_thresholds(model_path: Path, batches: list[dict[str, np.ndarray]], input_names: list[str], tensors: list[str]) -> dict[str, float]:
    """Per tensor, the symmetric int8 range T that minimises the mean squared quantization error over the batches.

    Two passes of the FP32 model with `tensors` as extra outputs: the largest |x|, then a histogram of |x| over
    MSE_BINS bins. For a candidate T (step s = T/127) a value |x| > T costs (|x| - T)^2 (clipped), one below s/2
    costs x^2 (rounded to 0), any other s^2/12 (rounding). Exact zeros (ReLU) cost nothing and are left out.
    """
    sess = _probe_session(model_path, tensors)

    def outputs():
        for b in batches:
            feed = {n: np.ascontiguousarray(b[n], dtype=np.float32) for n in input_names}
            yield dict(zip(tensors, sess.run(tensors, feed)))

    top = dict.fromkeys(tensors, 0.0)
    for o in outputs():
        for t in tensors:
            top[t] = max(top[t], float(np.abs(o[t]).max()))
    hist = {t: np.zeros(MSE_BINS) for t in tensors}
    for o in outputs():
        for t in tensors:
            a = np.abs(o[t]).ravel()
            hist[t] += np.histogram(a[a > 0], bins=MSE_BINS, range=(0.0, top[t] or 1.0))[0]
    out = {}
    for t in tensors:
        if top[t] == 0.0:
            out[t] = 1.0
            continue
        n = hist[t]
        edges = np.linspace(0.0, top[t], MSE_BINS + 1)
        c = (edges[:-1] + edges[1:]) / 2
        cum_n, cum_nc, cum_nc2 = np.cumsum(n), np.cumsum(n * c), np.cumsum(n * c * c)
        tot_n, tot_nc, tot_nc2 = cum_n[-1], cum_nc[-1], cum_nc2[-1]
        cand = edges[1:]  # T at every bin's upper edge
        k = np.arange(MSE_BINS)  # bins 0..k lie below T
        half = np.searchsorted(c, cand / 254.0, side="left")  # bins below s/2 round to zero
        below_half_nc2 = np.where(half > 0, cum_nc2[np.maximum(half - 1, 0)], 0.0)
        below_half_n = np.where(half > 0, cum_n[np.maximum(half - 1, 0)], 0.0)
        inside_n = cum_n[k] - below_half_n
        over_n, over_nc, over_nc2 = tot_n - cum_n[k], tot_nc - cum_nc[k], tot_nc2 - cum_nc2[k]
        err = below_half_nc2 + inside_n * (cand / 127.0) ** 2 / 12.0 + over_nc2 - 2 * cand * over_nc + cand * cand * over_n
        out[t] = float(cand[int(np.argmin(err))])
    return out


CALIB_BATCH = 4  # clips per calibration batch for a dynamic-batch graph


def calibration_feed(
    onnx_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    *,
    clips: int = 32,
    seed: int = 0,
    crops: int = 1,
    device: str = "auto",
    threads: int = 2,
    progress: bool = True,
) -> tuple[Iterator[dict[str, np.ndarray]], dict]:
    """Calibration batches for an FP32 export from the DALI calibration feed, and the settings that describe them.

    The clips are the centre crop of the centre clip of `clips` videos drawn without replacement with `seed`
    (`dali_pipelines.plan.calibration_plan`), decoded by the DALI test pipeline exactly as at evaluation with
    the artifact's own config (sampling convention, crop); with `crops=3`, the three test crops of that clip
    (left/centre/right, the views `--crops 3` evaluates), so `clips` videos give 3 x `clips` calibration views. Everything that can be checked is checked before
    any clip is decoded: the model and its sidecar, the manifest, and that it has `clips` videos.
    """
    src, side = _fp32_source(onnx_path)
    check_graph_inputs(graph_inputs(src), side, str(src))
    manifest_path = Path(manifest_path)
    if not manifest_path.exists():
        raise SlowFastError(f"calibration manifest {manifest_path} not found")
    cfg = sidecar_config(side)
    if side["crop_size"] != cfg.test_crop_size:  # exported at another size than the config's test crop

        cfg = replace(cfg, test_crop_size=side["crop_size"])
    videos = to_videos(read_manifest(manifest_path))
    plans = calibration_plan(videos, cfg, clips, seed=seed)  # too few videos for `clips`: a one-line error
    batch = side["batch"] if isinstance(side["batch"], int) else CALIB_BATCH
    if isinstance(side["batch"], int) and clips % batch:
        raise SlowFastError(f"{src} has a fixed batch of {batch}; pass --clips as a multiple of {batch}")
    chosen = {p.video for p in plans}
    if crops not in (1, 3):
        raise SlowFastError(f"--calib-crops must be 1 or 3, got {crops}")
    if isinstance(side["batch"], int) and crops != 1:
        raise SlowFastError(f"{src} has a fixed batch of {batch}; calibrate it with --calib-crops 1")
    loader = ClipLoader(plans, cfg, "test", batch, device=device, threads=threads, num_crops=crops, skip_bad=None,
                        videos=[v for v in videos if v.index in chosen])

    def feed() -> Iterator[dict[str, np.ndarray]]:
        with tqdm(total=clips * crops, desc="calibrate", unit="clip", disable=not progress, leave=False) as bar:
            for b in loader:
                yield {p: b[p].float().cpu().numpy() for p in cfg.pathways}
                bar.update(int(b["video"].shape[0]))

    info = {
        "source": "DALI test pipeline (centre clip, " + ("centre crop)" if crops == 1 else "3 crops)"),
        "manifest": str(manifest_path.resolve()),
        "manifest_sha256": file_sha256(manifest_path),
        "clips": clips,
        "seed": seed,
        "crops": crops,
        "videos": sorted(v.path for v in videos if v.index in chosen),
    }
    return feed(), info


def quantize_from_manifest(
    onnx_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    *,
    clips: int = 32,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    moving_average: bool = DEFAULT_MOVING_AVERAGE,
    placement: str = DEFAULT_PLACEMENT,
    bias_correction: bool = DEFAULT_BIAS_CORRECTION,
    crops: int = DEFAULT_CALIB_CROPS,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    threads: int = 2,
    progress: bool = True,
) -> Path:
    """Quantize an FP32 export to int8 Q/DQ, calibrated on `clips` clips of `manifest_path` from the DALI feed.

    See `calibration_feed` for which clips; the calibration settings (manifest and its hash, clips, seed,
    method, the videos drawn) go into the INT8 sidecar. Nothing is left under `out` if anything fails.
    """
    if method not in METHODS:
        raise SlowFastError(f"--method must be one of {METHODS}, got {method!r}")
    if placement not in PLACEMENTS:
        raise SlowFastError(f"--placement must be one of {PLACEMENTS}, got {placement!r}")
    feed, info = calibration_feed(onnx_path, manifest_path, clips=clips, seed=seed, crops=crops, device=device, threads=threads, progress=progress)
    return quantize_int8(onnx_path, feed, out, method=method, percentile=percentile, moving_average=moving_average,
                         placement=placement, bias_correction=bias_correction, calibration_info=info)


def qdq_summary(onnx_path: str | os.PathLike) -> dict:
    """What a Q/DQ model quantizes and how.

    convs / quantized_convs: Conv nodes, and those whose input and weight both come from DequantizeLinear;
    symmetric: every zero point is 0; per_channel_weights: every quantized Conv weight has one scale per output
    channel (axis 0); per_tensor_activations: every activation (non-initializer) Q/DQ has a single scale;
    qdq_consumers: op types that read a DequantizeLinear output; quantized_outputs: op types whose output feeds a
    QuantizeLinear (graph inputs count as "input").
    """
    import onnx  # lazy: onnx, optional (extra [export])
    from onnx import numpy_helper  # lazy: onnx, optional (extra [export])

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

    def scale(dq) -> np.ndarray:
        return numpy_helper.to_array(inits[dq.input[1]])

    per_channel = True
    for c in quantized:
        wdq = producers[c.input[1]]
        w = wdq.input[0] if wdq.input[0] in inits else producers[wdq.input[0]].input[0]  # int8 initializer, or Q of a float one
        out_ch = numpy_helper.to_array(inits[w]).shape[0] if w in inits else None
        axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1)
        per_channel &= scale(wdq).shape == (out_ch,) and axis == 0
    activation_dq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                     and n.input[0] not in inits and (n.input[0] not in producers or producers[n.input[0]].op_type != "QuantizeLinear"
                                                      or producers[n.input[0]].input[0] not in inits)]
    per_tensor = all(scale(n).size == 1 for n in activation_dq)
    consumers = sorted({n.op_type for n in m.graph.node for i in n.input
                        if i in producers and producers[i].op_type == "DequantizeLinear"})
    q_out = sorted({(producers[n.input[0]].op_type if n.input[0] in producers else "input") for n in m.graph.node
                    if n.op_type == "QuantizeLinear" and n.input[0] not in inits})
    return {"convs": len(convs), "quantized_convs": len(quantized), "unquantized": [c.name for c in convs if c not in quantized],
            "quantized_names": [c.name for c in quantized],
            "symmetric": symmetric, "per_channel_weights": per_channel and bool(quantized), "per_tensor_activations": per_tensor,
            "qdq_consumers": consumers, "quantized_outputs": q_out,
            "qdq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)}
