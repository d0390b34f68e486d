"""GFLOPs and parameters as the paper counts them, with PyTorch's own flop counter on the meta device.

"GFLOPs" = multiply-adds x 1e9 of convolutions and linear layers (plus the non-local blocks' matmuls),
batch 1, one view of size x size (256 by default, the paper's test crop). BatchNorm, ReLU, pooling, add
and concat are not counted. torch's FlopCounterMode counts 2 FLOPs per multiply-add; we halve it.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.utils.flop_counter import FlopCounterMode

from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import input_shapes
from slowfast_trt.model.slowfast import SlowFast
from slowfast_trt.model.zoo import get_config

PARTS = ("slow", "fast", "lateral", "head")


def _part_of(name: str) -> str | None:
    """Map a module path such as 'res2.slow.blocks.0.conv_a' to its part of the network."""
    head, _, rest = name.partition(".")
    if head.startswith("fuse"):
        return "lateral"
    if head == "head":
        return "head"
    sub = rest.partition(".")[0]
    return sub if sub in ("slow", "fast") else None


def _part_roots(net: SlowFast) -> set[str]:
    """Module paths whose totals make up the parts: each pathway of stem/res2..res5, each lateral, the head."""
    roots = {"head"} | {n for n, m in net.named_children() if n.startswith("fuse") and m is not None}
    for stage in ("stem", "res2", "res3", "res4", "res5"):
        roots |= {f"{stage}.{p}" for p in net.config.pathways}
    return roots


def count(preset_or_config: str | SlowFastConfig, size: int = 256, **overrides) -> dict:
    """Params and GFLOPs (multiply-adds x 1e9) of one `size`x`size` view, total and per part.

    Returns {"preset", "size", "input": {pathway: shape}, "params", "gflops", "parts": {part: {"gflops", "params"}},
    "fast_share", "ops_gflops"} and builds on the meta device, so no weights are allocated.
    """
    cfg = get_config(preset_or_config, **overrides)
    with torch.device("meta"):
        net = SlowFast(cfg).eval()
    shapes = input_shapes(cfg, size=size, batch=1)
    inputs = {k: torch.empty(v, device="meta") for k, v in shapes.items()}

    mode = FlopCounterMode(display=False)
    with mode, torch.no_grad():
        net(**inputs)
    # FlopCounterMode reports inclusive totals per module path; the part roots (stem.slow, res2.fast, fuse1,
    # head, ...) do not nest, so their totals add up. Ops outside them would show as "other".
    prefix = type(net).__name__ + "."
    part_flops: dict[str, float] = defaultdict(float)
    for name, ops in mode.get_flop_counts().items():
        short = name[len(prefix) :] if name.startswith(prefix) else ""
        if short in _part_roots(net):
            part_flops[_part_of(short) or "other"] += sum(ops.values()) / 2
    total = mode.get_total_flops() / 2
    by_op: dict[str, float] = defaultdict(float)
    for op, n in mode.get_flop_counts()["Global"].items():
        kind = {"convolution": "conv", "addmm": "linear", "mm": "linear", "bmm": "matmul"}.get(str(op).split(".")[1], str(op))
        by_op[kind] += n / 2 / 1e9
    other = total - sum(part_flops.values())
    if abs(other) > 1e-6 * max(total, 1):
        part_flops["other"] += other

    part_params: dict[str, int] = defaultdict(int)
    for name, p in net.named_parameters():
        part_params[_part_of(name) or "other"] += p.numel()
    params = sum(part_params.values())
    gflops = sum(part_flops.values()) / 1e9
    parts = {p: {"gflops": part_flops.get(p, 0.0) / 1e9, "params": part_params.get(p, 0)} for p in PARTS}
    return {
        "preset": cfg.name,
        "size": size,
        "input": {k: list(v) for k, v in shapes.items()},
        "params": params,
        "gflops": gflops,
        "parts": parts,
        "fast_share": parts["fast"]["gflops"] / gflops if gflops else 0.0,
        "ops_gflops": dict(by_op),  # conv / linear / matmul (the non-local attention)
    }
