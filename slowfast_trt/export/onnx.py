"""torch -> ONNX: a two-input graph (`slow`, `fast`) with a dynamic batch axis, checked and compared with PyTorch."""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import clean_stale_temps, probe_writable, temp_file
from slowfast_trt.engines.sidecar import file_sha256, make_sidecar, write_sidecar
from slowfast_trt.export.trt_check import DEFAULT_TRT_CHECK, check_artifact, trt_majors
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.footprint import check_model_fits
from slowfast_trt.model.inputs import random_inputs
from slowfast_trt.model.slowfast import SlowFast

OUTPUTS = ("logits", "probs")


def input_names(cfg) -> list[str]:
    """Graph inputs in order: the pathways (`slow`, `fast`), then `boxes` for detection models."""
    return cfg.input_names


DEFAULT_OPSET = 17


class ScoresHead(nn.Module):
    """Wraps a SlowFast net so the exported graph's output is explicit: logits, or probabilities per view."""

    def __init__(self, net: SlowFast, outputs: str):
        super().__init__()
        if outputs not in OUTPUTS:
            raise SlowFastError(f"--outputs must be one of {OUTPUTS}, got {outputs!r}")
        self.net = net
        self.outputs = outputs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(input_names(self.net.config), inputs))
        head = self.net.head
        if self.net.config.head_act != "none":  # a converted reference head: choose what the graph returns
            act, head.act = head.act, ("none" if self.outputs == "logits" else head.act)
            try:
                return self.net(**kwargs)
            finally:
                head.act = act
        logits = self.net(**kwargs)
        return logits if self.outputs == "logits" else self.net.activation(logits)


@dataclass
class OnnxExport:
    """What `export_onnx` produced: the model file, its sidecar, and the parity check against PyTorch."""

    path: Path
    sidecar_path: Path
    sidecar: dict


def _load_net(src: str | os.PathLike | nn.Module) -> tuple[SlowFast, str | None, str | None]:
    if isinstance(src, nn.Module):
        return src, None, None
    path = Path(src)
    if not path.exists():
        raise SlowFastError(f"checkpoint {path} not found")

    return model.load(path), str(path), file_sha256(path)


def compare_with_torch(
    onnx_path: str | os.PathLike, net: SlowFast, outputs: str, size: int, batches: tuple[int, ...], seed: int = 0
) -> dict:
    """Run ONNX Runtime (CPU) and PyTorch on the same random inputs; max abs difference and top-1 agreement."""
    import onnxruntime as ort  # lazy: onnxruntime, optional (extra [export])

    wrapped = ScoresHead(net, outputs).eval()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    report = {"batches": list(batches), "max_abs_diff": 0.0, "top1_agreement": 1.0, "per_batch": []}
    agree = total = 0
    for b in batches:
        x = random_inputs(net.config, size=size, batch=b, generator=gen)
        with torch.no_grad():
            ref = wrapped(*x.values()).numpy()
        got = sess.run(None, {k: v.numpy() for k, v in x.items()})[0]
        diff = float(np.abs(got - ref).max())
        same = int((got.argmax(1) == ref.argmax(1)).sum())
        agree, total = agree + same, total + len(ref)  # clips, or boxes for detection models
        report["per_batch"].append({"batch": b, "max_abs_diff": diff, "scale": float(np.abs(ref).max())})
        report["max_abs_diff"] = max(report["max_abs_diff"], diff)
    report["top1_agreement"] = agree / total
    return report


def _check_size(cfg: SlowFastConfig, size: int, batch: int | str) -> None:
    """`--size` obeys the rule training and evaluation apply to crops (`SlowFastConfig.validate`), and the example
    batch fits in memory: an export that `eval --engine` could not sample for is refused before tracing."""
    try:
        sized = cfg.replace(test_crop_size=size).validate()
    except SlowFastError as e:
        raise SlowFastError(f"--size {size} is a crop that train and eval refuse ({e}); pick another --size") from None
    check_model_fits(sized, "the checkpoint", batch=1 if batch == "dynamic" else batch, sources={"test_crop_size": "from --size"})


def export_onnx(
    src: str | os.PathLike | nn.Module,
    out: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    batch: str | int = "dynamic",
    size: int | None = None,
    outputs: str = "logits",
    verify: bool = True,
    trt_check: str = DEFAULT_TRT_CHECK,
) -> OnnxExport:
    """Export a checkpoint (or a built net) to ONNX, check it, compare it with PyTorch and write the sidecar.

    The file is written under a temporary name and renamed only after `onnx.checker` passed, so a failed
    export leaves nothing behind. `batch` is "dynamic" or a fixed batch size; `size` defaults to the config's
    test crop; `outputs` picks logits or per-view probabilities (softmax, or sigmoid for multi-label models).
    `trt_check` ("all", "10", "11", "off") checks the written graph against TensorRT's ONNX support
    (`trt_check.check_artifact`): the result goes into the sidecar, and a refused node raises with the files kept.
    """
    import onnx  # lazy: onnx, optional (extra [export])

    trt_majors(trt_check)
    net, source, source_sha = _load_net(src)
    net = net.eval().float().cpu()
    cfg = net.config
    size = size or cfg.test_crop_size
    if batch != "dynamic" and (not isinstance(batch, int) or batch < 1):
        raise SlowFastError(f"--batch-size must be 'dynamic' or a positive integer, got {batch!r}")
    _check_size(cfg, size, batch)
    if out is None:
        if source is None:
            raise SlowFastError("export_onnx needs an output path when given a module")
        out = Path(source).with_suffix(".onnx")
    out = Path(out)
    probe_writable(out.parent)  # a read-only or full folder is one line before the trace, not after it
    wrapped = ScoresHead(net, outputs).eval()
    example = random_inputs(cfg, size=size, batch=1 if batch == "dynamic" else batch)
    names = list(example)
    dynamic = {n: {0: "batch"} for n in [*names, "scores"]} if batch == "dynamic" else None
    if cfg.detection:  # a third input, boxes (K, 5); one row of scores per box; K is dynamic at any batch setting
        dynamic = {**(dynamic or {}), "boxes": {0: "boxes"}, "scores": {0: "boxes"}}
        for p in cfg.pathways:  # detection clips keep their aspect ratio (dali_pipelines/ava.py): free H, W
            dynamic[p] = {**dynamic.get(p, {}), 3: "height", 4: "width"}

    clean_stale_temps(out.parent)
    fd, tmp = temp_file(out)  # the umask's mode, like every other writer (mkstemp alone gives 0600)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                tuple(example.values()),
                tmp,
                input_names=names,
                output_names=["scores"],
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
            )
        onnx.checker.check_model(tmp)
        sidecar = make_sidecar(
            cfg,
            kind="onnx",
            precision="fp32",
            size=size,
            batch=batch,
            outputs=outputs,
            source=source,
            source_sha256=source_sha,
            extra={"opset": opset},
        )
        if verify:
            batches = (1, 4) if batch == "dynamic" else (batch,)
            sidecar["parity"] = compare_with_torch(tmp, net, outputs, size, batches)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    side = write_sidecar(out, sidecar)
    if trt_majors(trt_check):
        sidecar["tensorrt_check"] = check_artifact(out, trt_check)
    return OnnxExport(out, side, sidecar)
