"""ONNX -> TensorRT plan with the TensorRT Python API, for TensorRT 10.x and 11.x.

Both majors are driven the same way: a strongly typed network (required by 11.x, opted into on 10.x),
so precision lives in the ONNX graph: FP32 as exported, FP16 by converting the graph to float16 with
float32 inputs/outputs, INT8 from the Q/DQ model of `export int8`. An optimization profile covers the
batch range, a timing cache is reused across builds, and the plan is written atomically.
TensorRT is imported lazily; without it (or without a GPU) the build stops with a message saying how to
get it.
"""

from __future__ import annotations

import os
from pathlib import Path

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_bytes
from slowfast_trt.engines.sidecar import file_sha256, read_sidecar, write_sidecar
from slowfast_trt.engines.trt_engine import gpu_identity, import_tensorrt

PRECISIONS = ("fp32", "fp16", "int8")
OPT_BOXES_PER_CLIP, MAX_BOXES_PER_CLIP = 4, 32  # detection plans: boxes per clip at the opt / max profile point


def _fp16_onnx(src: Path, dst: Path) -> None:
    """Write a float16 copy of an FP32 ONNX model that keeps float32 inputs and outputs."""
    import onnx  # lazy: onnx, optional (extra [export])

    try:
        from onnxconverter_common import float16  # lazy: onnxconverter-common, optional (extra [export])
    except ImportError:
        raise SlowFastError("FP16 plans need `pip install onnxconverter-common` to convert the ONNX graph to float16") from None
    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def _check_request(src: Path, side: dict, precision: str, min_batch: int, opt_batch: int, max_batch: int) -> None:
    """Refuse a build that cannot give what was asked: a precision the model's kind does not fit, or a batch range a
    fixed-batch export cannot take."""
    if precision == "int8" and side["kind"] != "onnx-int8":
        raise SlowFastError(f"{src} has no Q/DQ nodes ({side['kind']}); run `slowfast export int8` first and build from its output")
    if precision != "int8" and side["kind"] == "onnx-int8":
        raise SlowFastError(f"{src} is an INT8 Q/DQ model; build it with --precision int8")
    if side["batch"] != "dynamic" and not (min_batch == opt_batch == max_batch == side["batch"]):
        raise SlowFastError(
            f"{src} was exported with a fixed batch of {side['batch']}; re-export with --batch-size dynamic for a batch range"
        )


def _parse_network(trt, builder, logger, src: Path, out: Path, precision: str):
    """The strongly typed network of `src` (an FP16 copy of the graph for fp16 plans, removed after parsing)."""
    flags = 0
    # 10.x: strong typing is an opt-in flag (BuilderFlag.FP16/INT8 would be the weakly typed route).
    # 11.x: the flag is deprecated and ignored, strong typing is always on, BuilderFlag.FP16/INT8 no longer exist.
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parse_from = src
    tmp_fp16 = None
    if precision == "fp16":
        tmp_fp16 = out.with_name(f".{out.name}.fp16.onnx")
        _fp16_onnx(src, tmp_fp16)
        parse_from = tmp_fp16
    try:
        if not parser.parse_from_file(str(parse_from)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise SlowFastError(f"TensorRT could not parse {src}: {errors}")
    finally:
        if tmp_fp16 is not None and tmp_fp16.exists():
            tmp_fp16.unlink()
    return network, parser  # the parser owns weights the network refers to: keep it alive until the build


def _profile(builder, network, side: dict, min_batch: int, opt_batch: int, max_batch: int):
    """The optimisation profile: the batch range on every input; detection's boxes and free clip sizes get their own."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        if tensor.name == "boxes":  # detection: K boxes over the batch, up to MAX_BOXES_PER_CLIP per clip
            profile.set_shape("boxes", (1, 5), (opt_batch * OPT_BOXES_PER_CLIP, 5), (max_batch * MAX_BOXES_PER_CLIP, 5))
            continue
        if any(d < 0 for d in rest):  # detection clips: free H, W from the crop up to twice it (wide frames)
            crop = int(side["crop_size"])
            lo, hi = tuple(crop if d < 0 else d for d in rest), tuple(2 * crop if d < 0 else d for d in rest)
            profile.set_shape(tensor.name, (min_batch, *lo), (opt_batch, *lo), (max_batch, *hi))
            continue
        profile.set_shape(tensor.name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
    return profile


def _use_timing_cache(config, cache_path: Path | None) -> None:
    """Load `cache_path` (or an empty cache) into the builder config; one from another TensorRT or GPU is refused."""
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.exists() else b""
    cache = config.create_timing_cache(cache_bytes)  # b"" gives an empty cache
    # ignore_mismatch=False: a cache from another TensorRT version or GPU is refused, not silently mixed in.
    if cache is None or not config.set_timing_cache(cache, False):
        raise SlowFastError(
            f"timing cache {cache_path} was written by another TensorRT version or GPU (or is corrupt); "
            "delete it or pass another --timing-cache"
        )


def build_engine(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    precision: str = "fp16",
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_mb: int = 4096,
    timing_cache: str | os.PathLike | None = None,
) -> Path:
    """Build a TensorRT plan for `precision` over batches [min_batch, max_batch] and write it with its sidecar."""
    src = Path(onnx_path)
    if precision not in PRECISIONS:
        raise SlowFastError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if not (1 <= min_batch <= opt_batch <= max_batch):
        raise SlowFastError(f"batch range must satisfy 1 <= min ({min_batch}) <= opt ({opt_batch}) <= max ({max_batch})")
    if not src.exists():
        raise SlowFastError(f"ONNX model {src} not found")
    side = read_sidecar(src)
    _check_request(src, side, precision, min_batch, opt_batch, max_batch)
    trt = import_tensorrt()
    gpu = gpu_identity()
    out = Path(out) if out else src.with_name(f"{src.name.split('.')[0]}.{precision}.plan")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse_network(trt, builder, logger, src, out, precision)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    config.add_optimization_profile(_profile(builder, network, side, min_batch, opt_batch, max_batch))
    cache_path = Path(timing_cache) if timing_cache else None
    _use_timing_cache(config, cache_path)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise SlowFastError(f"TensorRT failed to build a {precision} plan from {src}; see the TensorRT log above")
    atomic_write_bytes(out, bytes(plan))
    if cache_path:  # the config's cache holds the loaded entries plus this build's timings
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    side.update(
        kind="tensorrt",
        precision=precision,
        source_onnx=str(src),
        source_onnx_sha256=file_sha256(src),
        tensorrt={
            "version": trt.__version__,
            **gpu,
            "profile": {"min": min_batch, "opt": opt_batch, "max": max_batch},
            "workspace_mb": workspace_mb,
            "strongly_typed": True,
        },
    )
    side.pop("parity", None)
    try:
        write_sidecar(out, side)
    except BaseException:
        out.unlink(missing_ok=True)  # a plan without its sidecar cannot be checked; leave neither
        raise
    return out
