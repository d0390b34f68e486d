"""What a model config makes a process allocate at least, and the bound on each size in it (`common.bounds`).

A config comes from a preset and options, a checkpoint or a sidecar; its class count sets the classifier's weights,
its frame counts and crops the clip tensors. `check_model_fits` checks each of them against the memory the process
may have before a network or a batch is built, naming the field, where it came from and the largest value that fits.
"""

from __future__ import annotations

import functools
import math

import torch

from slowfast_trt.common.bounds import check_fits
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.inputs import input_shapes
from slowfast_trt.model.slowfast import SlowFast

FLOAT_BYTES = 4  # float32 weights and clips
TRAIN_COPIES = 3  # training holds weights, their gradients and SGD's momentum
# The sizes of one clip's tensors, with their smallest values: each is checked with those after it at their smallest,
# so the line names the field that is too large, not the first of several that multiply.
INPUT_FIELDS = {"num_frames": 1, "alpha": 1, "crop_size": 32, "test_crop_size": 32}


@functools.lru_cache(maxsize=16)
def _one_class(cfg: SlowFastConfig) -> tuple[int, int]:
    """Parameters of `cfg`'s network with one class, and those each further class adds (the classifier's inputs and
    bias), counted on the meta device (no memory, no initialisation); cached, as a big network takes a second."""
    with torch.device("meta"):
        net = SlowFast(cfg.replace(num_classes=1))
    return sum(p.numel() for p in net.parameters()), net.head.projection.in_features + 1


def param_count(cfg: SlowFastConfig) -> int:
    """Parameters of the network `cfg` builds, without building it at its class count."""
    base, per_class = _one_class(cfg.replace(num_classes=1))
    return base + (cfg.num_classes - 1) * per_class


def clip_bytes(cfg: SlowFastConfig, batch: int = 1) -> int:
    """float32 bytes of `batch` clips' input tensors at the larger of the training and test crops."""
    size = max(cfg.crop_size, cfg.test_crop_size)
    return FLOAT_BYTES * sum(math.prod(s) for s in input_shapes(cfg, size=size, batch=batch).values())


def check_model_fits(
    cfg: SlowFastConfig, source: str, *, batch: int = 1, training: bool = False, sources: dict[str, str] | None = None
) -> SlowFastConfig:
    """`cfg`, or one line naming the first size that cannot fit this process's memory: the class count (weights),
    the frame counts and crops (one clip), then `batch` clips. `source` says where the config came from; `sources`
    overrides it per field (an option such as `--num-classes`, or `--batch-size` under the key "batch")."""
    named = sources or {}
    copies = TRAIN_COPIES if training else 1

    def weights(n: int) -> int:
        return copies * FLOAT_BYTES * param_count(cfg.replace(num_classes=max(n, 1)))

    check_fits("num_classes", cfg.num_classes, named.get("num_classes", source), weights)
    fixed = weights(cfg.num_classes)
    checked = cfg.replace(**INPUT_FIELDS)
    for name in INPUT_FIELDS:
        value = getattr(cfg, name)

        def one_clip(v: int, n: str = name, c: SlowFastConfig = checked) -> int:
            return fixed + clip_bytes(c.replace(**{n: v}))

        check_fits(name, value, named.get(name, source), one_clip)
        checked = checked.replace(**{name: value})
    check_fits("--batch-size", batch, named.get("batch", "the command line"), lambda b: fixed + clip_bytes(cfg, b))
    return cfg
