"""ONNX Runtime (CPU or CUDA provider) behind the Engine interface, for FP32 and INT8 Q/DQ models."""
from __future__ import annotations

import os

import numpy as np
import torch

from common.device import resolve_device
from common.errors import SlowFastError
from engines.base import Engine
from export.sidecar import check_graph_inputs


class OrtEngine(Engine):
    """An InferenceSession over an exported model; inputs and outputs are torch tensors."""

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, info: dict, *, device: str = "auto", threads: int | None = None):
        import onnxruntime as ort

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
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise SlowFastError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]}); re-export it") from None
        graph = {i.name: [d if isinstance(d, int) else str(d) for d in i.shape] for i in self.session.get_inputs()}
        check_graph_inputs(graph, info, str(path))
        self.output_name = self.session.get_outputs()[0].name

    def _run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        feed = {n: np.ascontiguousarray(x.detach().float().cpu().numpy()) for n, x in zip(self.input_names, inputs)}
        out = self.session.run([self.output_name], feed)[0]
        return torch.from_numpy(out).to(self.device)
