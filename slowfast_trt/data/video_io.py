"""PyAV (FFmpeg) helpers shared by prepare, synth, check and preview: codec settings, writing, probing, verifying.

Frame counts come from demuxing packets (milliseconds; WebM containers report 0 frames), because DALI needs
them up front and no DALI operator reports them without decoding. Problems with one file raise `VideoError`,
whose message is the one-line reason that `rejects.csv` and `data check` print.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.data.container_size import declared_size

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".3gp", ".ts")
GOP = 32  # keyframe interval: seeking to any clip start decodes at most 31 extra frames (about 5% more bytes)


@dataclass(frozen=True)
class CodecSpec:
    """How `data prepare`/`data synth` encode one codec choice: encoder, container, pixel format, options."""

    name: str
    encoder: str
    container: str  # FFmpeg muxer name
    extension: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)
    qscale: int | None = None  # fixed quantiser (MJPEG)
    dali_cpu: bool = False  # DALI's CPU decoder reads it (VP8/VP9/MJPEG); others need NVDEC on a GPU


CODECS: dict[str, CodecSpec] = {
    # Constant quality (crf with b=0), realtime speed: fast on a few cores, about 5% larger than 'good'.
    "vp9": CodecSpec(
        "vp9",
        "libvpx-vp9",
        "webm",
        ".webm",
        "yuv420p",
        {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0", "row-mt": "1"},
        dali_cpu=True,
    ),
    # For GPU decoding (NVDEC); moov atom first so readers need not seek to the end.
    "h264": CodecSpec("h264", "libx264", "mp4", ".mp4", "yuv420p", {"preset": "veryfast", "crf": "23"}),
    # Intra-only: every frame is a keyframe (seeking is free), about 5-10x larger than VP9.
    "mjpeg": CodecSpec("mjpeg", "mjpeg", "avi", ".avi", "yuvj420p", {}, qscale=3, dali_cpu=True),
}
DALI_CPU_CODECS = ("vp8", "vp9", "mjpeg")
# FFmpeg's av_image_check_size, which DALI's decoders meet when they open a stream: (w + 128) * (h + 128) < INT_MAX / 8.
DECODER_MAX_AREA = (2**31 - 1) // 8


class VideoError(Exception):
    """One file cannot be used; the message is the reason, ready for `rejects.csv` or a `data check` report."""


def codec_spec(name: str, allowed: tuple[str, ...] | None = None) -> CodecSpec:
    """The settings for codec `name` ('vp9', 'h264', 'mjpeg'); an unknown name is a user error."""
    allowed = allowed or tuple(CODECS)
    if name not in allowed:
        raise SlowFastError(f"unknown codec {name!r}; use one of {', '.join(allowed)} (vp9 for DALI on the CPU, h264 for NVDEC on a GPU)")
    return CODECS[name]


def short_side_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side set to `short_side`, aspect kept, both even (yuv420p needs it)."""
    if short_side <= 0:
        return width - width % 2, height - height % 2
    scale = short_side / min(width, height)
    w, h = width * scale, height * scale
    even = lambda v: max(2, int(round(v / 2)) * 2)  # noqa: E731
    return (short_side, even(h)) if width <= height else (even(w), short_side)


class VideoWriter:
    """Encode RGB (or PyAV) frames into a file with a codec from `CODECS`, constant frame rate, audio-free.

    `bitexact` drops the muxer's random segment id and version strings, so the same frames and settings
    give byte-identical files (used by `data synth`). `threads=1` keeps libvpx deterministic too.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        spec: CodecSpec,
        width: int,
        height: int,
        fps: Fraction | float,
        gop: int = GOP,
        threads: int = 1,
        bitexact: bool = True,
        quality: int | None = None,
    ):
        import av  # lazy: PyAV, optional (extra [data])

        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        opts = {"fflags": "+bitexact"} if bitexact else {}
        if spec.container == "mp4":
            opts["movflags"] = "+faststart"
        self._c = av.open(str(path), "w", format=spec.container, container_options=opts)
        try:
            s = self._c.add_stream(spec.encoder, rate=rate)
            s.width, s.height, s.pix_fmt = width, height, spec.pix_fmt
            cc = s.codec_context
            cc.gop_size = gop
            cc.thread_count = threads
            if bitexact:
                cc.flags |= av.codec.context.Flags.bitexact
            options = dict(spec.options)
            if quality is not None and "crf" in options:
                options["crf"] = str(quality)
            if spec.qscale is not None:
                cc.flags |= av.codec.context.Flags.qscale
                cc.qscale = quality if quality is not None else spec.qscale
            s.options = options
        except BaseException:
            self._c.close()
            raise
        self._s = s
        self._time_base = 1 / rate
        self.frames = 0

    def write(self, frame) -> None:
        """Append one frame: an H,W,3 uint8 RGB array or an `av.VideoFrame` of the stream's size."""
        import av  # lazy: PyAV, optional (extra [data])

        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        frame.pts = self.frames
        frame.time_base = self._time_base
        for p in self._s.encode(frame):
            self._c.mux(p)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the container."""
        if self._c is None:
            return
        try:
            for p in self._s.encode():
                self._c.mux(p)
        finally:
            self._c.close()
            self._c = None

    def abort(self) -> None:
        """Close without caring about the content (the caller deletes the file)."""
        try:
            if self._c is not None:
                self._c.close()
        except Exception:  # noqa: BLE001 - the file is discarded anyway
            pass
        self._c = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass(frozen=True)
class VideoInfo:
    """What the manifest records about a file: codec, size, frame rate, and frames (counted from packets)."""

    codec: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float | None  # seconds, as the container or stream declares it (None if unknown)
    declared_frames: int  # frames the container declares (0 for WebM and many others)
    pix_fmt: str | None = None  # FFmpeg's pixel format ('yuv420p10le': 10-bit 4:2:0), None when unknown


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a video file to open (missing, a folder, a FIFO, a socket, a device, a link to one), or None.

    Stat only, never open: opening a FIFO blocks until something writes to it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a broken symlink (its target is missing)" if os.path.islink(path) else "file not found"
    except OSError as e:
        return f"cannot stat: {e.strerror or e}"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a video file"
    kind = next((name for test, name in _SPECIAL if test(st.st_mode)), "not a regular file")
    link = f"a symlink to {kind} ({os.path.realpath(path)})" if os.path.islink(path) else kind
    return f"{link}, not a video file; list the video file itself"


def size_problem(width: int, height: int) -> str | None:
    """Why a frame size is beyond what the decoders open (FFmpeg's limit, which DALI meets), or None."""
    if (width + 128) * (height + 128) >= DECODER_MAX_AREA:
        return f"{width}x{height} is beyond the decoder's limit ((w+128)*(h+128) < 2^31/8, FFmpeg's check that DALI meets)"
    return None


def header_problem(path: str | os.PathLike) -> str | None:
    """Why the frame size the container's header declares cannot be decoded by DALI (it opens its decoder with it)."""
    size = declared_size(path)
    why = size_problem(*size) if size else None
    return f"the header declares {why}; re-encode it (`slowfast data prepare`)" if why else None


def _sniff(path: str) -> str | None:
    """A clear reason for files FFmpeg would only call 'invalid data': empty, text, or a cut-off MP4."""
    size = os.path.getsize(path)
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(512)
        if head[4:8] == b"ftyp":
            offset = 0
            while offset + 8 <= size:
                f.seek(offset)
                box = f.read(16)
                n, kind = struct.unpack(">I4s", box[:8])
                if n == 1 and len(box) >= 16:
                    n = struct.unpack(">Q", box[8:16])[0]
                elif n == 0:
                    n = size - offset
                if n < 8:
                    return f"corrupt MP4: box at byte {offset} has an impossible size {n}"
                if offset + n > size:
                    name = kind.decode("latin-1")
                    return (
                        f"truncated MP4: box '{name}' at byte {offset} needs {n} bytes but the file ends after {size - offset}"
                        " (the download or copy stopped early)"
                    )
                offset += n
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if printable == len(head):
        return f"a text file, not a video (starts with {head[:40].decode('ascii', 'replace')!r})"
    return None


def _open(path: str):
    import av  # lazy: PyAV, optional (extra [data])

    reason = file_problem(path) or _sniff(path)
    if reason:
        raise VideoError(reason)
    try:
        c = av.open(path)
    except av.error.FFmpegError as e:
        raise VideoError(f"FFmpeg cannot read it: {_ffmpeg_message(e)}") from None
    except OSError as e:
        raise VideoError(f"cannot open: {e.strerror or e}") from None
    if not c.streams.video:
        kinds = sorted({s.type for s in c.streams}) or ["none"]
        c.close()
        raise VideoError(f"no video stream (streams: {', '.join(kinds)})")
    return c


def _ffmpeg_message(e: Exception) -> str:
    """FFmpeg's own words for an error, without the errno and file name PyAV wraps around them."""
    return str(getattr(e, "strerror", None) or e)


def _stream_facts(c) -> tuple[str, int, int, float, float | None, int, str | None]:
    s = c.streams.video[0]
    cc = s.codec_context
    rate = s.average_rate or s.guessed_rate or s.base_rate
    fps = float(rate) if rate else 0.0
    duration = None
    if s.duration is not None and s.time_base is not None:
        duration = float(s.duration * s.time_base)
    elif c.duration is not None:
        duration = c.duration / 1_000_000
    return cc.name, cc.width, cc.height, fps, duration, int(s.frames or 0), cc.format.name if cc.format is not None else None


def count_frames(path: str | os.PathLike) -> int:
    """Frames in the first video stream, counted by demuxing packets (no decoding)."""
    with _open(str(path)) as c:
        return sum(1 for pkt in c.demux(c.streams.video[0]) if pkt.size > 0)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Codec, size, fps and the packet-counted frames of a file; raises VideoError with the reason."""
    import av  # lazy: PyAV, optional (extra [data])

    with _open(str(path)) as c:
        codec, w, h, fps, duration, declared, pix_fmt = _stream_facts(c)
        try:
            n = sum(1 for pkt in c.demux(c.streams.video[0]) if pkt.size > 0)
        except av.error.FFmpegError as e:
            raise VideoError(f"demux error: {_ffmpeg_message(e)}") from None
    if not w or not h:
        raise VideoError("video stream has no frame size (corrupt header)")
    if n == 0:
        raise VideoError("video stream has no frames")
    return VideoInfo(codec, w, h, fps, n, duration, declared, pix_fmt)


def iter_frames(path: str | os.PathLike, threads: int = 1) -> Iterator:
    """Decode every frame of the first video stream (PyAV VideoFrames); decode errors raise VideoError."""
    import av  # lazy: PyAV, optional (extra [data])

    c = _open(str(path))
    with c:
        s = c.streams.video[0]
        s.thread_type = "AUTO" if threads > 1 else "SLICE"
        s.codec_context.thread_count = threads
        n = 0
        try:
            for frame in c.decode(s):
                yield frame
                n += 1
        except av.error.FFmpegError as e:
            raise VideoError(f"decode error after {n} frames: {_ffmpeg_message(e)}") from None


def check_complete(info: VideoInfo, decoded: int, decoded_seconds: float | None) -> None:
    """Raise VideoError when fewer frames decoded than the container promises (a truncated or damaged file)."""
    if decoded == 0:
        raise VideoError("no frame could be decoded")
    if info.declared_frames and decoded < info.declared_frames - 1:
        raise VideoError(f"truncated: decoded {decoded} of the {info.declared_frames} frames the container declares")
    if info.duration and decoded_seconds is not None and decoded_seconds < 0.9 * info.duration - 0.05:
        raise VideoError(f"truncated: frames cover {decoded_seconds:.2f} s of the {info.duration:.2f} s the container declares")


def verify(path: str | os.PathLike, threads: int = 1) -> tuple[VideoInfo, int]:
    """Probe, then decode every frame: (info, decoded frames). Raises VideoError if the file is unusable."""
    info = probe(path)
    n, first, last = 0, None, None
    for frame in iter_frames(path, threads):
        t = frame.time
        if t is not None:
            first = t if first is None else first
            last = t
        n += 1
    span = None if first is None else last - first + (1.0 / info.fps if info.fps else 0.0)
    check_complete(info, n, span)
    return info, n


def loader_facts(path: str) -> tuple[int, str | None]:
    """What a loader needs before handing a file to DALI, demuxing only: (packets, why it cannot be used, or None).

    Refused: a header size DALI cannot open (`header_problem`), and a file cut short: its packets end before the
    duration or frame count its container declares (`check_complete`'s rule, on packets). DALI returns black frames
    past the end of a truncated file instead of failing, so this is the only place such a file is caught in a run."""
    import av  # lazy: PyAV, optional (extra [data])

    n = 0
    try:
        if (why := file_problem(path) or header_problem(path)) is not None:
            return 0, why
        with _open(path) as c:
            codec, w, h, fps, duration, declared, pix_fmt = _stream_facts(c)
            s = c.streams.video[0]
            time_base = s.time_base  # read while the container is open: closing it frees the stream PyAV points into
            first = last = None
            for pkt in c.demux(s):
                if pkt.size > 0:
                    n += 1
                    if pkt.pts is not None:
                        first = pkt.pts if first is None else min(first, pkt.pts)
                        last = pkt.pts if last is None else max(last, pkt.pts)
        span = None if first is None or time_base is None else float((last - first) * time_base) + (1.0 / fps if fps else 0.0)
        check_complete(VideoInfo(codec, w, h, fps, n, duration, declared, pix_fmt), n, span)
    except VideoError as e:
        return n, str(e)
    except (av.error.FFmpegError, OSError) as e:
        return n, f"unreadable: {_ffmpeg_message(e)}"
    return n, None


def count_packets(path: str) -> int:
    """Frames in a file's first video stream, counted by demuxing packets (no decoding; 0 if unreadable)."""
    import av  # lazy: PyAV, optional (extra [data])

    try:
        with av.open(path) as c:
            stream = c.streams.video[0]
            return sum(1 for pkt in c.demux(stream) if pkt.size > 0)
    except (av.error.FFmpegError, OSError, IndexError):
        return 0


def keyframe_indices(path: str) -> list[int]:
    """Display-order indices of the keyframes in a file's first video stream (demux only; [] if unreadable).

    A decoder asked for frame i starts at the last keyframe at or before i, so these say how many frames a
    seek really decodes (the GOP overhead `bench pipeline` reports)."""
    import av  # lazy: PyAV, optional (extra [data])

    try:
        with av.open(path) as c:
            stream = c.streams.video[0]
            packets = [(p.pts if p.pts is not None else i, p.is_keyframe) for i, p in enumerate(p for p in c.demux(stream) if p.size > 0)]
    except (av.error.FFmpegError, OSError, IndexError):
        return []
    order = sorted(range(len(packets)), key=lambda i: packets[i][0])
    return [rank for rank, i in enumerate(order) if packets[i][1]]
