"""Run time: one interface over PyTorch, ONNX Runtime and TensorRT.

from slowfast_trt import engines
engine = engines.load("model.onnx")        # or a checkpoint, or a .plan
scores = engine(slow, fast)                  # N, num_classes; engine.info is the sidecar
"""

from __future__ import annotations

import os
from pathlib import Path

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines.base import Engine
from slowfast_trt.engines.ort_engine import OrtEngine
from slowfast_trt.engines.sidecar import read_sidecar
from slowfast_trt.engines.torch_engine import TorchEngine
from slowfast_trt.engines.trt_engine import TrtEngine

PLAN_SUFFIXES = (".plan", ".engine", ".trt")  # a TensorRT plan: runs on the GPU whatever --device says


def load(
    path: str | os.PathLike,
    *,
    device: str = "auto",
    precision: str = "fp32",
    compile: bool = False,
    threads: int | None = None,
    qdq: str = "auto",
    tune: bool = False,
) -> Engine:
    """Open an artifact by its kind: a checkpoint (torch), `.onnx` (ONNX Runtime) or `.plan`/`.engine` (TensorRT).

    `qdq` picks how ONNX Runtime runs an INT8 Q/DQ model ("auto", "kernels", "emulate"; `engines.ort_engine`).
    `tune`: a checkpoint on a GPU picks its settings by measurement (`engines.gpu_policy`).
    """
    p = Path(path)
    if not p.exists():
        raise SlowFastError(f"artifact {p} not found")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return OrtEngine(p, read_sidecar(p), device=device, threads=threads, qdq=qdq)
    if suffix in PLAN_SUFFIXES:
        return TrtEngine(p, read_sidecar(p))
    if suffix in (".safetensors", ".pyth", ".pt", ".pth", ".pkl"):
        net = model.load(p) if suffix == ".safetensors" else model.convert(p)
        return TorchEngine(net, device=device, precision=precision, compile=compile, source=str(p), tune=tune)
    raise SlowFastError(f"{p}: unknown artifact type {suffix!r}; expected a checkpoint (.safetensors), .onnx or a TensorRT .plan")


__all__ = ["Engine", "load"]
