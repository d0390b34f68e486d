"""What a run decides once about feeding clips (`FeedSpec`), and the named schema a plan source and its graph share.

A command builds one `FeedSpec` from its options (the DALI device resolved there, once) and hands it to every
loader, evaluation and benchmark it runs; nothing below re-derives these choices from keyword arguments. A
loader turns it, for one mode and the files of one pass, into a `GraphSpec`: which decoder each file gets
(`nvdec.decoder_mode`), whether torch does the spatial ops, and the `fields` the plan source serves, by name,
dtype and layout, in the order the graph's external source reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.threads import ThreadSplit, split

MODES = ("train", "test", "decode", "keyframe")
SPATIAL = ("auto", "torch", "dali")
DEVICES = ("auto", "cpu", "cuda", "gpu")
CROP_POSITIONS = (0.0, 0.5, 1.0)


def crop_positions(num_crops: int) -> tuple[float, ...]:
    """Test crop positions: the paper's three (left/centre/right), or the centre one alone."""
    if num_crops == 3:
        return CROP_POSITIONS
    if num_crops == 1:
        return (0.5,)
    raise SlowFastError(f"--crops must be 1 or 3, got {num_crops}")


def dali_device(device: str = "auto") -> str:
    """'gpu' when asked for (or auto with a CUDA device visible to DALI), else 'cpu'."""
    if device not in DEVICES:
        raise SlowFastError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    try:
        from nvidia.dali.backend import GetCUDADeviceCount  # type: ignore[attr-defined]  # lazy: nvidia-dali, optional (extra [data]) and heavy; a C module without stubs

        n = GetCUDADeviceCount()
    except ImportError:
        raise SlowFastError("NVIDIA DALI is not installed: pip install nvidia-dali-cuda120") from None
    if n > 0 and torch.cuda.is_available():
        return "gpu"
    if device in ("cuda", "gpu"):
        raise SlowFastError("a GPU pipeline was asked for but no CUDA device is visible; use --device cpu")
    return "cpu"


def spatial_in_torch(mode: str, device: str, spatial: str = "auto") -> bool:
    """Whether the graph for `mode` on `device` stops at the decoded frames and torch does the spatial ops.

    spatial: "auto" (torch on the CPU, DALI on a GPU: see `dali_pipelines.spatial`), "dali" (every op in the graph),
    "torch" (CPU only)."""
    if spatial not in SPATIAL:
        raise SlowFastError(f"spatial must be one of {SPATIAL}, got {spatial!r}")
    if spatial == "torch" and device == "gpu":
        raise SlowFastError("spatial='torch' is for CPU pipelines; on a GPU DALI does the spatial ops (use auto or dali)")
    return spatial != "dali" and device != "gpu" and mode in ("train", "test")


@dataclass(frozen=True)
class FeedSpec:
    """How one command feeds clips: device, batch, threads, views, bad-file policy, spatial backend, progress bars.

    Built once per command; DALI's device is resolved on construction (`dali_device`: "auto"/"cuda" -> "gpu" or
    "cpu"), so every loader of the run decodes where the first one did, while `device` stays the user's choice for
    the engines (`engines.load`). `threads` is the command's one CPU budget (`--threads`); its split between the
    loader and a model on the CPU (`common.threads.split`) is derived on construction too: loaders take
    `dali_threads`, ONNX Runtime `split.engine`, and `common.device.apply_threads(feed.split)` sizes torch's pools.
    """

    device: str = "auto"  # the command's --device: auto | cpu | cuda (where engines run; "auto" lets each choose)
    batch_size: int = 8  # clips per batch (each gives num_crops views in testing)
    threads: int | None = 2  # the CPU thread budget per process (None: every CPU this process may use)
    num_clips: int = 1  # K: temporal clips per video (testing)
    num_crops: int = 1  # C: spatial crops per clip (testing), 1 or 3
    skip_bad: bool | None = False  # drop files that fail to decode (None: the command has no --skip-bad)
    spatial: str = "auto"  # who does resize/crop/flip on the CPU: auto | torch | dali
    prefetch: int = 2  # DALI prefetch queue depth
    progress: bool = False  # progress bars
    model_on_cpu: bool = False  # a model runs on the CPU beside the loader: they split `threads` (else DALI takes it all)
    split: ThreadSplit = field(init=False)  # `threads` shared between the loader and the model (common.threads.split)
    dali_device: str = field(init=False)  # "cpu" | "gpu": where DALI decodes, resolved once from `device`

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SlowFastError(f"batch size must be >= 1, got {self.batch_size}")
        if self.num_clips < 1:
            raise SlowFastError(f"--clips must be >= 1, got {self.num_clips}")
        crop_positions(self.num_crops)  # 1 or 3
        if self.spatial not in SPATIAL:
            raise SlowFastError(f"spatial must be one of {SPATIAL}, got {self.spatial!r}")
        object.__setattr__(self, "split", split(self.threads, model_on_cpu=self.model_on_cpu))
        object.__setattr__(self, "dali_device", dali_device(self.device))

    @property
    def dali_threads(self) -> int:
        """DALI's worker threads (and a peer DataLoader's workers): the loader's share of the budget."""
        return self.split.dali

    @property
    def views(self) -> str:
        """The widest view setting, `KxC` (docs/design.md, "Glossary")."""
        return f"{self.num_clips}x{self.num_crops}"

    def but(self, **changes) -> FeedSpec:
        """This spec with some fields changed (a validation pass with its own views, a calibration without bars)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Field:
    """One per-sample input of the graph's external source: name, numpy dtype and what one sample holds."""

    name: str
    dtype: str
    layout: str


def _fields(mode: str, frames_only: bool, decoder: str, multilabel: bool) -> tuple[Field, ...]:
    label = Field("label", "float32", "[classes] multi-hot") if multilabel else Field("label", "int64", "[1] class id")
    out = [Field("encoded", "uint8", "bytes of the file"), Field("frames", "int32", "[alpha*T] Fast frame numbers")]
    if not frames_only:
        out.append(Field("slow_pos", "int32", "[T] positions of the Slow frames among the Fast frames"))
    out += [Field("meta", "int64", "[video, clip]"), label]
    if mode == "train" and not frames_only:
        out += [Field("roi_start", "float32", "[y0, x0] source pixels"), Field("roi_end", "float32", "[y1, x1] source pixels")]
    if mode == "keyframe":
        out.append(Field("size", "float32", "[H, W] the video's resized size"))
    if decoder == "split":
        out.append(Field("on_cpu", "bool", "scalar: decode on DALI's CPU decoder"))
    return tuple(out)


@dataclass(frozen=True)
class GraphSpec:
    """One DALI graph: a mode, the run's feed, the decoder routing of the pass's files and the model's label kind."""

    mode: str  # train | test | decode | keyframe
    feed: FeedSpec
    decoder: str = "nvdec"  # nvdec | cpu | split (`nvdec.decoder_mode`)
    multilabel: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SlowFastError(f"mode must be train, test or decode, got {self.mode!r}")
        if self.decoder not in ("nvdec", "cpu", "split"):
            raise SlowFastError(f"decoder must be nvdec, cpu or split, got {self.decoder!r}")

    @property
    def gpu(self) -> bool:
        return self.feed.dali_device == "gpu"

    @property
    def frames_only(self) -> bool:
        """The graph stops at the decoded frames (uint8, one size per video) and `dali_pipelines.spatial` does the rest."""
        return spatial_in_torch(self.mode, self.feed.dali_device, self.feed.spatial)

    @property
    def num_crops(self) -> int:
        return self.feed.num_crops if self.mode == "test" else 1

    @property
    def fields(self) -> tuple[Field, ...]:
        """The source/graph contract: what the plan source serves per sample, in the order the graph reads it."""
        return _fields(self.mode, self.frames_only, self.decoder, self.multilabel)

    @property
    def output_names(self) -> list[str]:
        """Names of the graph's outputs in order (the PyTorch iterator's keys)."""
        if self.frames_only:
            return ["frames", "label", "meta"]
        if self.mode in ("train", "decode"):
            return ["slow", "fast", "label", "meta"]
        if self.mode == "keyframe":
            return ["fast", "meta", "label", "slow_pos"]
        return [f"{p}{c}" for c in range(self.num_crops) for p in ("slow", "fast")] + ["label", "meta"]
