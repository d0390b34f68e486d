"""The one map between precision names and torch dtypes, and the memory formats a 5-D clip can take.

Every layer spells precision the same way ("fp32", "fp16", "bf16"): `--amp`, `--precision`, the GPU policy's
settings, the torch engine and the conv3d ceiling all read these names, so a name means one dtype everywhere.
"""

from __future__ import annotations

import torch

from slowfast_trt.common.errors import SlowFastError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HALF = ("fp16", "bf16")  # the precisions that run under autocast or with cast weights
NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}


def dtype_of(name: str, what: str = "precision") -> torch.dtype:
    """The torch dtype of a precision name; an unknown name is a user error naming the choices."""
    if name not in DTYPES:
        raise SlowFastError(f"{what} must be one of {tuple(DTYPES)}, got {name!r}")
    return DTYPES[name]


def name_of(dtype: torch.dtype | None) -> str:
    """The precision name of a dtype; None (no autocast) is fp32."""
    return NAMES[dtype or torch.float32]


def memory_format(channels_last: bool) -> torch.memory_format:
    """channels_last_3d (N,C,T,H,W stored channel-last: the layout DALI hands over and tensor cores want) or contiguous."""
    return torch.channels_last_3d if channels_last else torch.contiguous_format
