"""The one runtime interface: `engine(slow, fast) -> scores`, with `engine.info` (the sidecar)."""

from __future__ import annotations

from typing import Any

import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines.sidecar import check_inputs, check_sampling, sidecar_config
from slowfast_trt.model.config import SlowFastConfig


class Engine:
    """Base class of the torch, ONNX Runtime and TensorRT engines.

    Subclasses set `info` (the sidecar dict), `backend`, `precision`, `device` and implement `_run`, which
    takes the pathway tensors in the sidecar's input order and returns float32 scores `N, num_classes`.
    """

    backend = "abstract"
    info: dict[str, Any]
    precision: str
    device: torch.device
    max_batch: int | None = None

    @property
    def config(self) -> SlowFastConfig:
        return sidecar_config(self.info)

    @property
    def input_names(self) -> list[str]:
        return list(self.info["input_names"])

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"

    def __call__(
        self,
        slow: torch.Tensor | None = None,
        fast: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        *,
        sampling: str | None = None,
    ) -> torch.Tensor:
        """Scores `N, num_classes` for a batch of clips (detection models: one row per box of `boxes`, K x 5);
        `sampling` (the clips' frame-index convention), when given, is checked too."""
        given = {"slow": slow, "fast": fast, "boxes": boxes}
        inputs = {n: t for n in self.input_names if (t := given[n]) is not None}
        artifact = self.info.get("path", self.backend)
        check_inputs(self.info, {n: tuple(t.shape) for n, t in inputs.items()}, artifact=artifact)
        if sampling is not None:
            check_sampling(self.info, sampling, artifact=artifact)
        n = next(iter(inputs.values())).shape[0]
        if self.max_batch is not None and n > self.max_batch:
            raise SlowFastError(
                f"{self.info.get('path', self.backend)}: batch {n} exceeds the engine's profile (max {self.max_batch}); rebuild with a larger --max-batch or send smaller batches"
            )
        return self._run([inputs[k] for k in self.input_names])

    def _run(self, inputs: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
