"""Dense peak TFLOP/s of common NVIDIA GPUs per math mode, to state achieved throughput as a fraction of peak.

Numbers are the vendors' datasheet figures without structured sparsity. A GPU not listed gets no
fraction (None) rather than a guess.
"""

from __future__ import annotations

from slowfast_trt.engines.gpu_policy import conv_tf32

# name substring (matched case-insensitively, first match wins) -> {math mode: dense peak TFLOP/s}
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "int8": 1978.9}),
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0, "int8": 1513.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "int8": 1978.9}),  # SXM
    ("A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0, "int8": 624.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "fp16": 362.1, "bf16": 362.1, "int8": 733.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0, "int8": 242.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0, "int8": 250.0}),
    ("V100", {"fp32": 15.7, "fp16": 125.0}),
    ("T4", {"fp32": 8.1, "fp16": 65.0, "int8": 130.0}),
]


def math_mode(precision: str) -> str:
    """The math mode an engine precision runs in: fp32 convolutions use TF32 tensor cores when torch allows it."""
    if precision == "fp32":
        return "tf32" if conv_tf32() else "fp32"
    return precision


def peak_tflops(gpu: str | None, precision: str) -> float | None:
    """Dense peak TFLOP/s of `gpu` for `precision`, or None (CPU, unknown GPU or mode)."""
    if not gpu:
        return None
    mode = math_mode(precision)
    for key, table in PEAK_TFLOPS:
        if key.lower() in gpu.lower():
            return table.get(mode)
    return None
