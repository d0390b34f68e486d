"""NVDEC's limits, checked before a GPU pipeline starts: which files the GPU decodes, which DALI's CPU decoder takes.

NVDEC refuses streams outside per-codec limits (VP9 below 128x128, for instance) with a mid-run "Critical error
in pipeline". The limits come from the driver itself (`cuvidGetDecoderCaps` in libnvcuvid, the call NVIDIA's
Video Codec SDK documents for this) when it can be asked, else from the SDK's published table (`NVDEC_TABLE`,
the "NVDEC Video Decoder API Programming Guide", table "Hardware Video Decoder Capabilities", Turing and later;
AV1 only on the GPUs whose NVDEC decodes it, `av1_on_nvdec`).
Each file is then routed: inside the limits to NVDEC ('mixed'), outside them to DALI's CPU decoder in the same
graph when it reads the codec (VP8/VP9/MJPEG), else the run is refused before it starts with one line that
names the count, the limit and the fix.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.data.manifest import Video
from slowfast_trt.data.video_io import DALI_CPU_CODECS

TABLE_SOURCE = "NVIDIA Video Codec SDK, NVDEC Video Decoder API Programming Guide, 'Hardware Video Decoder Capabilities' (Turing and later)"


@dataclass(frozen=True)
class Limits:
    """What NVDEC decodes of one codec: frame size bounds, chroma subsamplings ('420', '422', '444', '400') and bit depths."""

    min_width: int
    min_height: int
    max_width: int
    max_height: int
    chroma: tuple[str, ...]
    bit_depths: tuple[int, ...]
    source: str = TABLE_SOURCE


# Per codec (FFmpeg's codec names), from TABLE_SOURCE. H.264 4:2:2 / 10-bit and HEVC 4:2:2 need Blackwell (the
# driver's own caps report them there); the table keeps what every NVDEC since Turing decodes, except AV1
# (`table_limits` asks `av1_on_nvdec` first).
NVDEC_TABLE: dict[str, Limits] = {
    "h264": Limits(48, 16, 4096, 4096, ("420",), (8,)),
    "hevc": Limits(144, 144, 8192, 8192, ("420", "444"), (8, 10, 12)),
    "vp8": Limits(48, 16, 4096, 4096, ("420",), (8,)),
    "vp9": Limits(128, 128, 8192, 8192, ("420",), (8, 10, 12)),
    "av1": Limits(128, 128, 8192, 8192, ("420", "400"), (8, 10)),
    "mpeg4": Limits(48, 16, 2032, 2032, ("420",), (8,)),
    "mjpeg": Limits(64, 64, 32768, 16384, ("420", "422", "444", "400"), (8,)),
}


def av1_on_nvdec(capability: tuple[int, int] | None) -> bool:
    """Whether the NVDEC of a GPU with this compute capability decodes AV1 (the SDK's capability table): Ampere GA10x
    (8.6, 8.7), Ada (8.9) and Blackwell (10.x-12.x) do; Turing (7.5), GA100 (8.0) and Hopper (9.0: H100, H200) do not."""
    if capability is None:
        return False
    major, minor = capability
    return (major == 8 and minor >= 6) or major >= 10


def table_limits(codec: str, capability: tuple[int, int] | None) -> Limits | None:
    """The SDK table's limits for `codec` on a GPU of this compute capability; None: its NVDEC does not decode it."""
    if codec == "av1" and not av1_on_nvdec(capability):
        return None
    return NVDEC_TABLE.get(codec)


def gpu_capability() -> tuple[int, int] | None:
    """The current CUDA device's compute capability, or None without one."""
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


# FFmpeg decoder names that differ from their codec's name (PyAV's codec_context.name is the decoder's).
DECODER_CODECS = {"libdav1d": "av1", "libaom-av1": "av1", "libvpx": "vp8", "libvpx-vp9": "vp9", "libopenh264": "h264"}
_HW_SUFFIXES = ("_cuvid", "_qsv", "_v4l2m2m", "_mediacodec", "_rkmpp")


def codec_of_decoder(decoder: str) -> str:
    """FFmpeg's codec name for a decoder's name ('libdav1d' -> 'av1', 'h264_cuvid' -> 'h264'): what the limits are keyed by."""
    if decoder in DECODER_CODECS:
        return DECODER_CODECS[decoder]
    for suffix in _HW_SUFFIXES:
        if decoder.endswith(suffix):
            return decoder[: -len(suffix)]
    return decoder


# cuviddec.h: cudaVideoCodec and cudaVideoChromaFormat values.
_CUVID_CODEC = {"mpeg4": 2, "h264": 4, "mjpeg": 5, "hevc": 8, "vp8": 9, "vp9": 10, "av1": 11}
_CUVID_CHROMA = {"400": 0, "420": 1, "422": 2, "444": 3}


@dataclass(frozen=True)
class StreamFormat:
    """The facts of one file's video stream that NVDEC's limits are about."""

    path: str
    codec: str
    width: int
    height: int
    chroma: str  # '420', '422', '444', '400'
    bit_depth: int


def pix_fmt_facts(pix_fmt: str | None) -> tuple[str, int]:
    """FFmpeg pixel format name -> (chroma subsampling, bit depth), e.g. 'yuv420p10le' -> ('420', 10); unknown -> ('420', 8)."""
    name = pix_fmt or "yuv420p"
    chroma = "400" if name.startswith("gray") else next((c for c in ("420", "422", "444", "440", "411") if c in name), "420")
    m = re.search(r"p(\d+)(le|be)?$", name)
    return chroma, int(m.group(1)) if m else 8


def table_refusal(codec: str, pix_fmt: str | None) -> str | None:
    """Why the SDK table's NVDEC (Turing and later) does not decode this format ('NVDEC does not decode 10-bit H.264'),
    or None when it does: what `data check` says of files DALI's CPU decoder cannot read either."""
    chroma, bits = pix_fmt_facts(pix_fmt)
    limits = NVDEC_TABLE.get(codec)
    if limits is not None and bits in limits.bit_depths and chroma in limits.chroma:
        return None
    name = {"h264": "H.264", "hevc": "HEVC"}.get(codec, codec.upper())
    sub = "" if chroma == "420" else f" {chroma[0]}:{chroma[1]}:{chroma[2]}"
    return f"NVDEC does not decode {bits}-bit{sub} {name}"


def probe_format(path: str) -> StreamFormat:
    """Codec, size, chroma and bit depth of `path`'s first video stream (header only, no decoding)."""
    import av  # lazy: PyAV, optional (extra [data])

    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise SlowFastError(f"{path}: no video stream; run `slowfast data check` on the manifest")
            cc = c.streams.video[0].codec_context
            chroma, bits = pix_fmt_facts(cc.format.name if cc.format is not None else None)
            codec = getattr(cc.codec, "canonical_name", None) or codec_of_decoder(cc.name)  # the codec, not the decoder
            return StreamFormat(path, codec, cc.width, cc.height, chroma, bits)
    except (av.error.FFmpegError, OSError) as e:
        raise SlowFastError(f"{path}: unreadable video ({e}); run `slowfast data check` on the manifest") from None


class _DecodeCaps(ctypes.Structure):
    # CUVIDDECODECAPS (cuviddec.h, Video Codec SDK 12): IN codec/chroma/bit depth, OUT support and limits.
    _fields_ = [
        ("eCodecType", ctypes.c_int),
        ("eChromaFormat", ctypes.c_int),
        ("nBitDepthMinus8", ctypes.c_uint),
        ("reserved1", ctypes.c_uint * 3),
        ("bIsSupported", ctypes.c_ubyte),
        ("nNumNVDECs", ctypes.c_ubyte),
        ("nOutputFormatMask", ctypes.c_ushort),
        ("nMaxWidth", ctypes.c_uint),
        ("nMaxHeight", ctypes.c_uint),
        ("nMaxMBCount", ctypes.c_uint),
        ("nMinWidth", ctypes.c_ushort),
        ("nMinHeight", ctypes.c_ushort),
        ("bIsHistogramSupported", ctypes.c_ubyte),
        ("nCounterBitDepth", ctypes.c_ubyte),
        ("nMaxHistogramBins", ctypes.c_ushort),
        ("reserved3", ctypes.c_uint * 10),
    ]


def driver_caps(codec: str, chroma: str, bit_depth: int) -> tuple[bool, int, int, int, int] | None:
    """The driver's answer for one stream kind: (supported, min_w, min_h, max_w, max_h), or None when it cannot be asked.

    Calls `cuvidGetDecoderCaps` from libnvcuvid.so.1 (the NVIDIA driver's decoder library) in the current CUDA
    context (torch's primary context, made current here). None without the library, a CUDA device, or a codec
    the call knows."""
    if codec not in _CUVID_CODEC or chroma not in _CUVID_CHROMA:
        return None
    if not torch.cuda.is_available():
        return None
    try:
        lib = ctypes.CDLL("libnvcuvid.so.1")
    except OSError:
        return None
    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the primary context becomes current on this thread
    caps = _DecodeCaps(eCodecType=_CUVID_CODEC[codec], eChromaFormat=_CUVID_CHROMA[chroma], nBitDepthMinus8=max(0, bit_depth - 8))
    if lib.cuvidGetDecoderCaps(ctypes.byref(caps)) != 0:
        return None
    return bool(caps.bIsSupported), int(caps.nMinWidth), int(caps.nMinHeight), int(caps.nMaxWidth), int(caps.nMaxHeight)


def limits_for(
    codec: str, chroma: str, bit_depth: int, ask_driver: Callable = driver_caps, capability: Callable = gpu_capability
) -> Limits | None:
    """NVDEC's limits for one stream kind: the driver's caps where it answers, else the SDK table for this GPU's
    compute capability; None: not decodable."""
    caps = ask_driver(codec, chroma, bit_depth)
    if caps is not None:
        ok, min_w, min_h, max_w, max_h = caps
        return Limits(min_w, min_h, max_w, max_h, (chroma,), (bit_depth,), "driver (cuvidGetDecoderCaps)") if ok else None
    return table_limits(codec, capability())


def violation(fmt: StreamFormat, limits: Limits | None) -> str | None:
    """Why NVDEC cannot decode `fmt` ('VP9 below 128x128', ...), or None when it can."""
    name = fmt.codec.upper() if len(fmt.codec) <= 4 else fmt.codec
    if limits is None:
        return f"{name} {fmt.chroma} {fmt.bit_depth}-bit not supported by NVDEC"
    if fmt.width < limits.min_width or fmt.height < limits.min_height:
        return f"{name} below {limits.min_width}x{limits.min_height}"
    if fmt.width > limits.max_width or fmt.height > limits.max_height:
        return f"{name} above {limits.max_width}x{limits.max_height}"
    if fmt.chroma not in limits.chroma:
        return f"{name} chroma {fmt.chroma} (NVDEC takes {'/'.join(limits.chroma)})"
    if fmt.bit_depth not in limits.bit_depths:
        return f"{name} {fmt.bit_depth}-bit (NVDEC takes {'/'.join(map(str, limits.bit_depths))}-bit)"
    return None


def decoder_mode(routed: int, total: int) -> str:
    """How a graph over `total` files decodes when `routed` of them need DALI's CPU decoder: 'nvdec' (none),
    'cpu' (all) or 'split' (per sample, through a DALI conditional). The one definition, for `Routing` and graphs."""
    if not routed:
        return "nvdec"
    return "cpu" if routed == total else "split"


@dataclass(frozen=True)
class Routing:
    """Which decoder each file gets in a GPU graph: `on_cpu` paths go to DALI's CPU decoder, the rest to NVDEC."""

    on_cpu: frozenset[str]
    reasons: dict[str, str]  # path -> the limit it breaks (CPU-routed files)
    total: int

    @property
    def mode(self) -> str:
        """`decoder_mode` of every routed file."""
        return decoder_mode(len(self.on_cpu), self.total)

    def summary(self) -> str:
        """The one line printed when a GPU pipeline starts."""
        if not self.on_cpu:
            return f"decoder: NVDEC for all {self.total} files"
        why = _count_reasons(self.reasons)
        return (
            f"decoder: {len(self.on_cpu)} of {self.total} files outside NVDEC's limits ({why}) decode on DALI's CPU decoder "
            "in the same graph, then move to the GPU; `slowfast data prepare --short-side 256` keeps them on NVDEC"
        )


def _count_reasons(reasons: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for r in reasons.values():
        counts[r] = counts.get(r, 0) + 1
    return ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def route(formats: list[StreamFormat], limits: Callable[[str, str, int], Limits | None] = limits_for) -> Routing:
    """Decide NVDEC or DALI's CPU decoder for every file; raise before the run when a file fits neither.

    The refusal is one line: how many files, which limit, and the fix (`data prepare --short-side N` for sizes,
    `--codec vp9` for formats the CPU decoder cannot read either)."""
    known: dict[tuple[str, str, int], Limits | None] = {}
    reasons: dict[str, str] = {}
    refused: dict[str, str] = {}
    for f in formats:
        key = (f.codec, f.chroma, f.bit_depth)
        if key not in known:
            known[key] = limits(*key)
        why = violation(f, known[key])
        if why is None:
            continue
        if f.codec in DALI_CPU_CODECS and f.bit_depth == 8:
            reasons[f.path] = why
        else:
            refused[f.path] = why
    if refused:
        first = next(iter(refused))
        small = any("below" in r for r in refused.values())
        fix = (
            "re-encode them larger: `slowfast data prepare MANIFEST OUT --short-side 256` (or `--codec vp9`, which DALI's CPU decoder reads)"
            if small
            else "re-encode them: `slowfast data prepare MANIFEST OUT --codec h264` (or `--codec vp9`)"
        )
        raise SlowFastError(
            f"{len(refused)} of {len(formats)} files cannot be decoded on this GPU ({_count_reasons(refused)}; first: {first}) "
            f"and DALI's CPU decoder cannot read their codec; {fix}, or run with --device cpu"
        )
    return Routing(frozenset(reasons), reasons, len(formats))


def route_videos(videos: list[Video], probe: Callable[[str], StreamFormat] = probe_format) -> Routing:
    """`route` over a manifest's videos, each probed once (header only)."""
    seen: dict[str, StreamFormat] = {}
    for v in videos:
        if v.path not in seen:
            seen[v.path] = probe(v.path)
    return route(list(seen.values()))
