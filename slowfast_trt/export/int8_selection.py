"""`--method auto`: build several calibrations and keep the one whose outputs on the calibration clips are closest to FP32's."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from slowfast_trt import engines
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines.sidecar import read_sidecar, write_sidecar

# Candidates of `--method auto`; docs/int8.md has the measurements behind this list (no single calibrator was close to
# FP32 on every model and calibration set measured, while the lowest-divergence candidate on the calibration clips was).
AUTO_CANDIDATES = {
    "percentile-99.99": {"method": "percentile", "percentile": 99.99},
    "percentile-99.9": {"method": "percentile", "percentile": 99.9},
    "percentile-99.999": {"method": "percentile", "percentile": 99.999},
    "minmax-moving-average": {"method": "minmax", "moving_average": True},
}


def probabilities(model: Path, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
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


def choose(scores: dict[str, float]) -> dict:
    """The rule of `--method auto`: keep the candidate of lowest divergence (the first listed on an exact tie).

    Also names the runner-up and the relative margin between the two, so the sidecar shows a near-tie as one: there
    the last bits of a CPU's arithmetic may pick the other candidate, and both are about as close to FP32.
    """
    ranked = sorted(scores, key=scores.get)  # a stable sort: listing order on exact ties
    picked = {"chosen": ranked[0], "candidates_kl": dict(scores)}
    if len(ranked) > 1:
        best, second = scores[ranked[0]], scores[ranked[1]]
        picked.update(runner_up=ranked[1], margin=(second - best) / second if second > 0 else 0.0)
    return picked


def quantize_auto(src: Path, calibration: Iterable[dict[str, np.ndarray]], out: Path, build: Callable[..., Path]) -> Path:
    """`--method auto`: every AUTO_CANDIDATES calibration, keeping the one closest to FP32 on the calibration clips.

    Closeness is the mean KL divergence of the INT8 model's softmax from the FP32 model's over the calibration clips
    (no evaluation data is used). `build(src, batches, out, **candidate)` writes one candidate (`quantize_int8` with the
    caller's other settings). The sidecar records every candidate's divergence, the choice, the runner-up and the
    margin between them (`choose`).
    """
    cached = list(calibration)
    if not cached:
        raise SlowFastError("no calibration batches were given; pass --clips N with N >= 1")
    ref = probabilities(src, cached)
    scores: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        for name, kw in AUTO_CANDIDATES.items():
            path = build(src, iter(cached), Path(work) / f"{name}.onnx", **kw)
            scores[name] = mean_kl(ref, probabilities(path, cached))
        picked = choose(scores)
        best = picked["chosen"]
        side = read_sidecar(Path(work) / f"{best}.onnx")
        side["calibration"].update(selected_by="auto: lowest mean KL divergence from FP32 on the calibration clips", **picked)
        os.replace(Path(work) / f"{best}.onnx", out)
    try:
        write_sidecar(out, side)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out
