"""Peer loaders: decord and torchcodec decoding the same clip plans as the DALI pipelines, for `bench pipeline`.

Each peer is the PyAV reference dataset (`pyav_loader.PyAVClips`) with its decoder swapped: the same frame
indices, the same scale/crop/flip in torch and the same normalisation, so a row's rate differs from the others
by the decoder alone. They run as their users run them, in a torch DataLoader with worker processes; the CUDA
peer decodes in the main process (CUDA cannot start in forked workers), on the GPU, as torchcodec's GPU
decoding is meant to be used. Both read frames through FFmpeg (decord: its bundled libraries; torchcodec: the
system's), converting YUV to RGB with swscale, so frames agree with PyAV's swscale frames up to chroma
upsampling and rounding (tests/test_peer_loaders.py states the tolerance).
"""

from __future__ import annotations

import numpy as np
import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.plan import ClipPlan
from slowfast_trt.dali_pipelines.pyav_loader import PyAVClips
from slowfast_trt.model.config import SlowFastConfig

# Row name -> (package, how to install it). The install line is what a skipped row prints.
PEERS = {
    "decord_dataloader": ("decord", "pip install decord (or pip install -e .[peers])"),
    "torchcodec_cpu_dataloader": (
        "torchcodec",
        "pip install torchcodec with a torch build it was compiled for, plus FFmpeg's libraries (apt-get install ffmpeg)",
    ),
    "torchcodec_cuda": (
        "torchcodec",
        "pip install torchcodec with a CUDA torch build, plus FFmpeg's libraries (apt-get install ffmpeg), on a machine with a GPU",
    ),
}


def _unique(indices) -> tuple[list[int], np.ndarray]:
    """Sorted distinct frame numbers and, for each wanted index, its position among them (decoders take each once)."""
    idx = np.asarray(indices, dtype=np.int64)
    uniq, inverse = np.unique(idx, return_inverse=True)
    return uniq.tolist(), inverse


def decord_frames(path: str, indices) -> np.ndarray:
    """Frames `indices` (any order, repeats allowed) of `path` as uint8 F,H,W,3, decoded by decord (one thread)."""
    import decord  # lazy: decord, optional (extra [peers])

    uniq, inverse = _unique(indices)
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        frames = vr.get_batch(uniq).asnumpy()
    except decord.DECORDError as e:
        raise SlowFastError(f"{path}: decord cannot decode it ({e}); run `slowfast data check`") from None
    return frames[inverse]


def torchcodec_frames(path: str, indices, device: str = "cpu") -> torch.Tensor:
    """Frames `indices` of `path` as a uint8 F,H,W,3 tensor on `device`, decoded by torchcodec (exact seeks, one thread)."""
    from torchcodec.decoders import VideoDecoder  # lazy: torchcodec, optional (needs a matching torch build and FFmpeg)

    uniq, inverse = _unique(indices)
    try:
        dec = VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=1, device=device, seek_mode="exact")
        frames = dec.get_frames_at(indices=uniq).data
    except (RuntimeError, ValueError, IndexError) as e:
        raise SlowFastError(f"{path}: torchcodec cannot decode it ({e}); run `slowfast data check`") from None
    return frames[torch.as_tensor(inverse, device=frames.device)]


class DecordClips(PyAVClips):
    """The PyAV reference dataset with decord as the decoder."""

    def decode(self, path: str, indices: np.ndarray) -> np.ndarray:
        return decord_frames(path, indices)


class TorchCodecClips(PyAVClips):
    """The PyAV reference dataset with torchcodec as the decoder, on the CPU or (device="cuda") on NVDEC."""

    def __init__(self, plans: list[ClipPlan], cfg: SlowFastConfig, mode: str, num_crops: int = 3, device: str = "cpu"):
        super().__init__(plans, cfg, mode, num_crops)
        self.device = device

    def decode(self, path: str, indices: np.ndarray) -> torch.Tensor:
        return torchcodec_frames(path, indices, self.device)


def missing(row: str) -> str | None:
    """Why peer `row` cannot run here, as one line naming how to install it; None when it can."""
    package, how = PEERS[row]
    try:
        if package == "decord":
            import decord  # noqa: F401  # lazy: decord, optional (extra [peers])
        else:
            from torchcodec.decoders import VideoDecoder  # noqa: F401  # lazy: torchcodec, optional
    except Exception as e:  # noqa: BLE001 - a wheel whose shared libraries do not load raises RuntimeError/OSError, not ImportError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"{package} is not usable here ({first[:160]}): {how}"
    if row == "torchcodec_cuda" and not torch.cuda.is_available():
        return f"no CUDA device visible to torch: {how}"
    return None


def peer_dataset(row: str, plans: list[ClipPlan], cfg: SlowFastConfig, mode: str = "train", num_crops: int = 3) -> PyAVClips:
    """The dataset of peer `row` over `plans`."""
    if row == "decord_dataloader":
        return DecordClips(plans, cfg, mode, num_crops)
    if row in ("torchcodec_cpu_dataloader", "torchcodec_cuda"):
        return TorchCodecClips(plans, cfg, mode, num_crops, device="cuda" if row == "torchcodec_cuda" else "cpu")
    raise SlowFastError(f"unknown peer loader {row!r}; choose from {', '.join(PEERS)}")


def peer_loader(row: str, plans: list[ClipPlan], cfg: SlowFastConfig, batch: int, workers: int) -> torch.utils.data.DataLoader:
    """Peer `row` as its users run it: a DataLoader with `workers` worker processes (the CUDA peer: in-process)."""
    on_gpu = row == "torchcodec_cuda"
    return torch.utils.data.DataLoader(
        peer_dataset(row, plans, cfg), batch_size=batch, num_workers=0 if on_gpu else workers, persistent_workers=False
    )
