"""The frame size a container's header declares (IVF, AVI, Matroska/WebM), read from the bytes, not from FFmpeg.

FFmpeg's probing (`avformat_find_stream_info`, which PyAV always runs) replaces the header's size with the decoded
frames' size, so PyAV reports 80x64 for a file whose header says 60000x60000. DALI's decoder is opened with the
header's size and fails mid-run on it ("Picture size 60000x60000 is invalid"), so the header is read here directly.
Other containers give None (their decoders size themselves from the stream).
"""

from __future__ import annotations

import os
import struct

_HEAD = 1 << 16  # headers sit in the first 64 KiB; a Matroska Cluster (frames) ends the search earlier

# Matroska element ids: Segment, Tracks, TrackEntry, Video (masters to descend into), PixelWidth, PixelHeight, Cluster.
_SEGMENT, _TRACKS, _TRACK, _VIDEO = 0x18538067, 0x1654AE6B, 0xAE, 0xE0
_WIDTH, _HEIGHT, _CLUSTER = 0xB0, 0xBA, 0x1F43B675


def declared_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) as the header declares it, or None when the container is not one of these or has none."""
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    if head[:4] == b"DKIF" and len(head) >= 16:
        return struct.unpack("<HH", head[12:16])
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return _avi(head)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _matroska(head)
    return None


def _avi(head: bytes) -> tuple[int, int] | None:
    """The BITMAPINFOHEADER of the first video stream (`strh` type `vids`, then its `strf`)."""
    at = head.find(b"vids")
    at = head.find(b"strf", at) if at >= 0 else -1
    if at < 0 or len(head) < at + 20:
        return None
    width, height = struct.unpack("<ii", head[at + 12 : at + 20])
    return abs(width), abs(height)  # a negative height means top-down rows


def _vint(data: bytes, at: int, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `at`: (value, its length in bytes); ids keep their marker bit."""
    first = data[at]
    length = 9 - first.bit_length() if first else 9
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[at + 1 : at + length]:
        value = (value << 8) | b
    return value, length


def _matroska(head: bytes) -> tuple[int, int] | None:
    size: dict[int, int] = {}
    at = 0
    try:
        while at < len(head) - 2:
            eid, n = _vint(head, at, keep_marker=True)
            length, m = _vint(head, at + n, keep_marker=False)
            body = at + n + m
            if eid == _CLUSTER:
                break
            if eid in (_SEGMENT, _TRACKS, _TRACK, _VIDEO):
                at = body  # descend (an unknown-size Segment simply runs to the end of what was read)
                continue
            if eid in (_WIDTH, _HEIGHT) and eid not in size:
                size[eid] = int.from_bytes(head[body : body + length], "big")
                if len(size) == 2:
                    return size[_WIDTH], size[_HEIGHT]
            at = body + length
    except IndexError:
        return None
    return None
