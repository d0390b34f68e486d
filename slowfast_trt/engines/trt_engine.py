"""TensorRT plans behind the Engine interface: torch-allocated device buffers, execute_async_v3 on the engine's own stream.

DALI's CUDA tensors (and any CUDA torch tensor) pass straight through without copies. The plan runs on a dedicated
CUDA stream ordered after the caller's work and before its next: on the legacy default stream (torch's, unless the
caller picked another) TensorRT adds synchronisations and warns about them, which would make latencies pessimistic. The plan's sidecar
is checked against the running TensorRT version and GPU before deserialising, because a plan built
elsewhere either fails to load or, worse, runs with wrong assumptions.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines.base import Engine

INSTALL_HINT = (
    "TensorRT is not installed: on a machine with an NVIDIA GPU run `pip install tensorrt` "
    "(its libraries come from NVIDIA's package index, which this environment cannot reach)"
)


def import_tensorrt():
    """The `tensorrt` module, or a SlowFastError that says how to install it."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - optional, heavy, GPU-only
    except ImportError:
        raise SlowFastError(INSTALL_HINT) from None
    return trt


def gpu_identity() -> dict:
    """The GPU a plan is built for or run on (plans are specific to both)."""
    if not torch.cuda.is_available():
        raise SlowFastError("TensorRT plans need an NVIDIA GPU and none is visible to torch; build and run them on the target GPU")
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}


class TrtEngine(Engine):
    """Runs a serialized TensorRT plan on the current CUDA device."""

    backend = "tensorrt"

    def __init__(self, path: str | os.PathLike, info: dict):
        trt = import_tensorrt()
        self.info = dict(info, path=str(path))
        self.precision = info["precision"]
        built = info.get("tensorrt", {})
        here = gpu_identity()
        if not built:
            raise SlowFastError(
                f"{path}: its sidecar is not a TensorRT plan's (kind {info.get('kind')!r}); build plans with `slowfast export engine`"
            )
        if built.get("version") != trt.__version__:
            raise SlowFastError(
                f"{path} was built with TensorRT {built.get('version')}, this is {trt.__version__}; rebuild it with `slowfast export engine`"
            )
        if built.get("gpu") != here["gpu"]:
            raise SlowFastError(f"{path} was built for {built.get('gpu')}, this GPU is {here['gpu']}; rebuild it on this GPU")
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.max_batch = built.get("profile", {}).get("max")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        try:
            self.engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        except Exception:  # some releases raise instead of returning None
            self.engine = None
        if self.engine is None:
            raise SlowFastError(f"{path}: TensorRT could not deserialize the plan (corrupt or truncated); rebuild it")
        self.context = self.engine.create_execution_context()
        # Name-based I/O (TensorRT 10+; the binding API is gone): the plan's tensors must be the sidecar's.
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if sorted(ins) != sorted(info["input_names"]) or len(outs) != 1:
            raise SlowFastError(
                f"{path}: the plan's inputs {ins} / outputs {outs} do not match its sidecar {info['input_names']}; rebuild it"
            )
        self.output_name = outs[0]
        self._stream = torch.cuda.Stream(self.device)
        self._dtypes = {n: _TORCH_DTYPES[self.engine.get_tensor_dtype(n).name] for n in names}

    def _run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        xs = [x.to(self.device, dtype=self._dtypes[n]).contiguous() for n, x in zip(self.input_names, inputs)]
        for name, x in zip(self.input_names, xs):
            if not self.context.set_input_shape(name, tuple(x.shape)):
                raise SlowFastError(
                    f"{self.info['path']}: input '{name}' shape {tuple(x.shape)} is outside the plan's optimization profile"
                )
            self.context.set_tensor_address(name, x.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self._dtypes[self.output_name], device=self.device)
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        caller = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(caller)  # the inputs (DALI's or torch's work on the caller's stream) are ready first
        ok = self.context.execute_async_v3(self._stream.cuda_stream)
        caller.wait_stream(self._stream)  # the caller's next work (and the reuse of these buffers) comes after
        if not ok:
            raise SlowFastError(f"{self.info['path']}: TensorRT execution failed")
        return out.float()


# TensorRT DataType names -> torch dtypes (the plan's I/O types; FP16/INT8 plans keep float32 I/O here).
_TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "INT8": torch.int8,
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
}
