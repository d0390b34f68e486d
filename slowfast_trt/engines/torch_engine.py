"""PyTorch eager (optionally torch.compile) behind the Engine interface, fp32/fp16/bf16, channels-last-3d.

With `tune=True` on a GPU the engine measures, per input shape, how to run the asked precision fastest
(`engines.gpu_policy`: memory format, cuDNN autotuning, autocast or cast weights, CUDA graphs), caches the
decision per machine and records it with the measured alternatives in `info["gpu_policy"]`.
"""

from __future__ import annotations

import copy
import sys

import torch

from slowfast_trt.common.device import resolve_device
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.precision import DTYPES, dtype_of, memory_format
from slowfast_trt.engines import gpu_policy
from slowfast_trt.engines.base import Engine
from slowfast_trt.engines.sidecar import make_sidecar
from slowfast_trt.model.slowfast import SlowFast


class TorchEngine(Engine):
    """Runs a SlowFast module; on the GPU fp16/bf16 run under autocast, on the CPU fp32 (bf16 if asked)."""

    backend = "torch"

    def __init__(
        self,
        net: SlowFast,
        *,
        device: str = "auto",
        precision: str = "fp32",
        compile: bool = False,
        channels_last: bool | None = None,
        outputs: str = "logits",
        source: str | None = None,
        tune: bool = False,
    ):
        dtype_of(precision, "torch precision")  # an unknown name is a user error
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type == "cpu":
            raise SlowFastError("fp16 on the CPU is not supported by the torch engine; use fp32 (or bf16 where the CPU has it)")
        self.precision = precision
        self.outputs = outputs
        cfg = net.config
        if cfg.head_act != "none":  # the head itself averages per-position probabilities (PySlowFast's eval head)
            self.outputs = outputs = "probs"
        self.info = make_sidecar(
            cfg, kind="checkpoint", precision=precision, size=cfg.test_crop_size, batch="dynamic", outputs=outputs, source=source
        )
        for spec in self.info["inputs"].values():  # any spatial size runs through the fully convolutional net
            if len(spec["shape"]) == 5:  # clips (not detection boxes)
                spec["shape"][3:] = ["height", "width"]
        self.info["path"] = source or "torch module"
        net = net.eval().to(self.device)
        # channels_last_3d helps eager conv3d on the CPU (~1.3x measured here) and cuDNN on tensor-core GPUs.
        self.channels_last = True if channels_last is None else channels_last
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # torch documents Module.to(memory_format=...); its stubs omit it
        self.net = torch.compile(net) if compile else net
        self.compiled = compile
        self.tune = tune and self.device.type == "cuda" and not compile  # torch.compile does its own kernel choice
        self._eager = net
        self._tuned: dict[tuple, tuple] = {}  # input shapes -> (setting, runner)
        self._nets: dict[gpu_policy.Setting, torch.nn.Module] = {}

    @property
    def name(self) -> str:
        return f"torch{'-compile' if self.compiled else ''}{'-tuned' if self.tune else ''}-{self.precision}"

    def _tuned_runner(self, xs: list[torch.Tensor]) -> tuple:
        """The measured-fastest (setting, runner) for these input shapes (measured once per machine, then cached)."""
        shapes = tuple(tuple(x.shape) for x in xs)
        if shapes not in self._tuned:
            names = list(self.info["input_names"])
            key = gpu_policy.cache_key(self.config.name, "infer", self.precision, int(xs[0].shape[0]), shapes)

            def measure() -> gpu_policy.Decision:
                regression = gpu_policy.conv3d_regression(self._eager) if self.precision != "fp32" else None
                timings = gpu_policy.measure_inference(self._eager, names, xs, gpu_policy.candidates(self.precision, "infer"))
                return gpu_policy.choose(timings, regression)

            decision, cached = gpu_policy.decide(key, measure)
            if decision.regression:
                print(decision.regression, file=sys.stderr)
            s = decision.setting
            if s not in self._nets:  # a copy per setting: another shape may choose another layout or dtype
                self._nets[s] = gpu_policy.apply_setting(copy.deepcopy(self._eager), s)
            net = self._nets[s]
            fn = gpu_policy.forward_fn(net, s, names)
            runner = gpu_policy.GraphedCall(fn, gpu_policy.prepare_inputs(xs, s)) if s.cuda_graphs else fn
            self._tuned[shapes] = (s, runner)
            self.info.setdefault("gpu_policy", {})[f"batch {xs[0].shape[0]} {[list(x.shape[1:]) for x in xs]}"] = decision.to_dict() | {
                "cached": cached
            }
        return self._tuned[shapes]

    def _run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.tune:
            xs = [x.to(self.device, non_blocking=True) for x in inputs]
            s, runner = self._tuned_runner(xs)
            logits = runner(*gpu_policy.prepare_inputs(xs, s))
        else:
            fmt = memory_format(self.channels_last)
            xs = [
                x.to(self.device, non_blocking=True).contiguous(memory_format=fmt if x.dim() == 5 else torch.contiguous_format)
                for x in inputs
            ]
            kwargs = dict(zip(self.info["input_names"], xs))
            use_amp = self.precision != "fp32"
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=DTYPES[self.precision], enabled=use_amp):
                logits = self.net(**kwargs)
        scores = logits.float()
        if self.outputs == "logits" or self.config.head_act != "none":
            return scores
        return torch.sigmoid(scores) if self.config.multilabel else torch.softmax(scores, -1)
