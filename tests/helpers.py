"""Test helpers shared by several test files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn


def randomize_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics, and the classifier real weights.

    Freshly built nets have zero-initialised residual BNs and a tiny classifier, so their outputs are
    nearly constant; comparisons on them would prove little.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.4 + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 4 / m.in_features**0.5)
    return net


def assert_auto_choice(cal: dict) -> None:
    """`--method auto`'s rule, which holds on any CPU: every candidate's divergence is recorded and the lowest one is
    kept with its settings. Which candidate wins is not asserted: on random clips two can tie to the last bits."""
    import math

    from slowfast_trt.export.int8_selection import AUTO_CANDIDATES

    kl = cal["candidates_kl"]
    assert set(kl) == set(AUTO_CANDIDATES) and all(math.isfinite(v) and v >= 0 for v in kl.values()), kl
    assert cal["chosen"] == min(kl, key=kl.get), cal
    assert {k: cal.get(k) for k in AUTO_CANDIDATES[cal["chosen"]]} == AUTO_CANDIDATES[cal["chosen"]], cal
    assert cal["runner_up"] != cal["chosen"] and kl[cal["runner_up"]] == min(v for k, v in kl.items() if k != cal["chosen"])
    assert cal["selected_by"].startswith("auto: lowest mean KL")


BIT_BLOCK = 16  # pixels per bit of the burnt-in frame number


def write_indexed_video(path, num_frames: int, width: int, height: int, fps: int = 30, codec: str = "libvpx-vp9") -> None:
    """Write a video whose frame number is burnt into its top rows as 8 black/white blocks (LSB first).

    The rest of the frame is a horizontal colour ramp plus a per-frame grey level, so crops and flips are
    visible. Used to check which frames a decoder returned, at full size.
    """
    import av
    import numpy as np

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        if codec == "libvpx-vp9":
            s.options = {"deadline": "realtime", "cpu-used": "8", "crf": "4", "b": "0", "g": "32"}
        ramp = np.linspace(0, 255, width).astype(np.uint8)
        for i in range(num_frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[2 * BIT_BLOCK :, :, 0] = ramp[None, :]
            img[2 * BIT_BLOCK :, :, 1] = (i * 7) % 256
            for b in range(8):
                if (i >> b) & 1:
                    img[: 2 * BIT_BLOCK, b * BIT_BLOCK : (b + 1) * BIT_BLOCK] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def read_index(frame) -> int:
    """The frame number burnt in by `write_indexed_video`, from an H,W,C uint8 frame."""
    import numpy as np

    row = np.asarray(frame)[BIT_BLOCK, :, :].mean(axis=-1)
    return int(sum(1 << b for b in range(8) if row[b * BIT_BLOCK + BIT_BLOCK // 2] > 127))


def train_cmd(preset: str, data: Path, out: Path, *extra: str) -> list[str]:
    """`slowfast train` of `preset` on DATA/train.csv into OUT: 2 epochs, batch 4, fp32 on one CPU thread, a checkpoint every step."""
    return [sys.executable, "-m", "slowfast_trt", "train", "--preset", preset, "--train", str(data / "train.csv"), "--out", str(out),
            "--epochs", "2", "--batch-size", "4", "--lr", "0.05", "--amp", "fp32", "--device", "cpu", "--threads", "1",
            "--save-every", "1", "--quiet", *extra]  # fmt: skip


def rewrite_config(src: Path, dst: Path, **changes) -> Path:
    """A copy of checkpoint `src` whose stored config has `changes` (the weights untouched)."""
    with safetensors.safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["config"] = json.dumps({**json.loads(meta["config"]), **changes})
    dst.write_bytes(safetensors.torch.save(tensors, metadata=meta))
    return dst
