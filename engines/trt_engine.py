"""TensorRT plans behind the Engine interface: torch-allocated device buffers, execute_async_v3 on the current stream.

DALI's CUDA tensors (and any CUDA torch tensor) pass straight through without copies. The plan's sidecar
is checked against the running TensorRT version and GPU before deserialising, because a plan built
elsewhere either fails to load or, worse, runs with wrong assumptions.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from common.errors import SlowFastError
from engines.base import Engine
from export.tensorrt import gpu_identity, import_tensorrt


class TrtEngine(Engine):
    """Runs a serialized TensorRT plan on the current CUDA device."""

    backend = "tensorrt"

    def __init__(self, path: str | os.PathLike, info: dict):
        trt = import_tensorrt()
        self.info = dict(info, path=str(path))
        self.precision = info["precision"]
        built = info.get("tensorrt", {})
        here = gpu_identity()
        if built.get("version") != trt.__version__:
            raise SlowFastError(f"{path} was built with TensorRT {built.get('version')}, this is {trt.__version__}; rebuild it with `slowfast export engine`")
        if built.get("gpu") != here["gpu"]:
            raise SlowFastError(f"{path} was built for {built.get('gpu')}, this GPU is {here['gpu']}; rebuild it on this GPU")
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.max_batch = built.get("profile", {}).get("max")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise SlowFastError(f"{path}: TensorRT could not deserialize the plan (corrupt or truncated); rebuild it")
        self.context = self.engine.create_execution_context()
        self.output_name = "scores"

    def _run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        xs = [x.to(self.device, dtype=torch.float32).contiguous() for x in inputs]
        for name, x in zip(self.input_names, xs):
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, x.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32, device=self.device)
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise SlowFastError(f"{self.info['path']}: TensorRT execution failed")
        return out
