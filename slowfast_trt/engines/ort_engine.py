"""ONNX Runtime (CPU or CUDA provider) behind the Engine interface, for FP32 and INT8 Q/DQ models.

An INT8 Q/DQ model runs in one of two ways (`qdq`): "kernels" lets ONNX Runtime fuse the Q/DQ pairs into its
int8 kernels; "emulate" keeps them as QuantizeLinear/DequantizeLinear around float operators (session option
`session.disable_quant_qdq`), which is exactly the ONNX Q/DQ semantics that TensorRT's explicit quantization
implements (int8 products summed exactly). "auto" emulates on x86 CPUs without VNNI: there ONNX Runtime's int8
convolutions use 8-bit multiply instructions whose 16-bit intermediate sums saturate, which measured 18-26 points
of top-1 below the same graph's Q/DQ semantics on the synthetic set (README, Export) and says nothing about the
graph TensorRT will run. The engine's name and info say which was used.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from slowfast_trt.common.device import cpuinfo, resolve_device
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines.base import Engine
from slowfast_trt.engines.sidecar import check_graph_inputs

QDQ_MODES = ("auto", "kernels", "emulate")


def cpu_has_vnni() -> bool | None:
    """Whether this x86 CPU has VNNI int8 dot products (avx512_vnni / avx_vnni); None when it cannot be told."""
    flags = cpuinfo("flags")
    if not flags:
        return None
    return any(f in flags.split() for f in ("avx512_vnni", "avx_vnni"))


def resolve_qdq(qdq: str, precision: str, device_type: str) -> str:
    """The Q/DQ execution for a model: "none" for float models, else "kernels" or "emulate" (see the module doc)."""
    if qdq not in QDQ_MODES:
        raise SlowFastError(f"--qdq must be one of {', '.join(QDQ_MODES)}, got {qdq!r}")
    if precision != "int8":
        return "none"
    if qdq != "auto":
        return qdq
    return "emulate" if device_type == "cpu" and cpu_has_vnni() is False else "kernels"


class OrtEngine(Engine):
    """An InferenceSession over an exported model; inputs and outputs are torch tensors."""

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, info: dict, *, device: str = "auto", threads: int | None = None, qdq: str = "auto"):
        import onnxruntime as ort  # lazy: onnxruntime, optional (extra [export])

        self.info = dict(info, path=str(path))
        self.precision = info["precision"]
        self.device = resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise SlowFastError("ONNX Runtime here has no CUDA provider; `pip install onnxruntime-gpu` or use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.qdq = resolve_qdq(qdq, self.precision, self.device.type)
        if self.qdq == "emulate":
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        self.info["qdq_execution"] = self.qdq
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise SlowFastError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]}); re-export it") from None
        graph = {i.name: [d if isinstance(d, int) else str(d) for d in i.shape] for i in self.session.get_inputs()}
        check_graph_inputs(graph, info, str(path))
        self.output_name = self.session.get_outputs()[0].name

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}" + ("-qdq-emulated" if self.qdq == "emulate" else "")

    def _run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        feed = {n: np.ascontiguousarray(x.detach().float().cpu().numpy()) for n, x in zip(self.input_names, inputs)}
        out = self.session.run([self.output_name], feed)[0]
        return torch.from_numpy(out).to(self.device)
