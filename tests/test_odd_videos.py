"""Odd video files (issue 29, class 5): cut short, a header with a huge size, special files, control characters in
names, and the note about 10-bit H.264. Each test builds tiny files (80x64, 70 frames) in seconds.

The huge-size files are crafted, not mocked: a VP9 IVF whose header's 16-bit width/height are patched to
60000x60000, and an MJPEG AVI whose stream header (strf, BITMAPINFOHEADER) says 40000x40000. FFmpeg's own probing
replaces the header's size by the decoded one (PyAV reports 80x64), while DALI opens its decoder with the header's
size and fails mid-run ("Picture size 60000x60000 is invalid").
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.loader import ClipLoader, preflight
from slowfast_trt.dali_pipelines.plan import train_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.check import check
from slowfast_trt.data.manifest import Entry, read_manifest, to_videos, write_manifest
from slowfast_trt.data.prepare import prepare
from slowfast_trt.data.video_io import CODECS, VideoWriter, probe

FRAMES = 70  # a 4x16 clip spans 64


def _write(path: Path, codec: str = "vp9", container: str | None = None, pix_fmt: str | None = None) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    if container is None and pix_fmt is None:
        with VideoWriter(str(path), CODECS[codec], 80, 64, Fraction(30)) as w:
            for i in range(FRAMES):
                w.write(np.full((64, 80, 3), (i * 3) % 256, np.uint8))
        return path
    encoder = {"vp9": "libvpx-vp9", "h264": "libx264", "hevc": "libx265"}[codec]
    with av.open(str(path), "w", format=container) as c:
        s = c.add_stream(encoder, rate=30)
        s.width, s.height, s.pix_fmt = 80, 64, pix_fmt or "yuv420p"
        for i in range(FRAMES):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((64, 80, 3), (i * 3) % 256, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("odd")
    good = _write(d / "good.webm")
    data = good.read_bytes()
    (d / "trunc.webm").write_bytes(data[: len(data) // 2])  # cut to half its bytes
    ivf = bytearray(_write(d / "small.ivf", container="ivf").read_bytes())
    ivf[12:16] = struct.pack("<HH", 60000, 60000)  # IVF header: width, height (16-bit, little-endian)
    (d / "huge.ivf").write_bytes(ivf)
    avi = bytearray(_write(d / "small.avi", codec="mjpeg").read_bytes())
    at = avi.find(b"strf") + 12  # chunk id, chunk size, biSize, then biWidth, biHeight
    avi[at : at + 8] = struct.pack("<ii", 40000, 40000)
    (d / "huge.avi").write_bytes(avi)
    return {"good": good, "trunc": d / "trunc.webm", "huge_ivf": d / "huge.ivf", "huge_avi": d / "huge.avi", "dir": d}


def _manifest(folder: Path, paths: list[Path], full: bool) -> Path:
    entries = []
    for i, p in enumerate(paths):
        e = Entry(str(p), i % 2)
        if full:
            info = probe(p)
            e = Entry(str(p), i % 2, info.num_frames, info.fps, info.width, info.height, info.codec)
        entries.append(e)
    folder.mkdir(parents=True, exist_ok=True)
    return write_manifest(folder / "m.csv", entries, ["a", "b"])


def _loader(manifest: Path, skip_bad: bool) -> ClipLoader:
    cfg = model.get_config("slowfast_tiny_4x16")
    videos = to_videos(read_manifest(manifest))
    return ClipLoader(
        lambda e: train_plan(videos, cfg, e, seed=0), cfg, "train", FeedSpec(batch_size=2, device="cpu", skip_bad=skip_bad), videos=videos
    )


@pytest.mark.parametrize("full", [False, True], ids=["path-label", "all-columns"])
def test_truncated_file_is_named_and_skipped_whatever_the_columns(files, tmp_path, full):
    """A WebM cut to half its bytes (its container still declares 2.33 s) stops training naming it, or is skipped
    with --skip-bad, whether the manifest has only path,label (frames then counted from the cut file) or every column."""
    m = _manifest(tmp_path, [files["good"], files["trunc"]], full)
    with pytest.raises(SlowFastError, match=r"trunc\.webm: truncated") as e:
        list(_loader(m, skip_bad=False))
    assert "good.webm" not in str(e.value)
    loader = _loader(m, skip_bad=True)
    videos = [int(v) for b in loader for v in b["video"]]
    assert list(loader.bad) == [str(files["trunc"])] and "truncated" in loader.bad[str(files["trunc"])]
    assert videos == [0]


@pytest.mark.parametrize("key", ["huge_ivf", "huge_avi"])
def test_huge_header_size_is_reported_by_data_check(files, tmp_path, key):
    """`data check` decodes these files fine with PyAV, so it passed them; DALI sizes its decoder from the header."""
    r = check(_manifest(tmp_path, [files["good"], files[key]], full=False), progress=False, workers=1)
    assert r.good == 1 and len(r.bad) == 1
    path, reason = r.bad[0]
    assert path == str(files[key]) and "header" in reason and ("60000x60000" in reason or "40000x40000" in reason), reason


@pytest.mark.parametrize("key", ["huge_ivf", "huge_avi"])
def test_huge_header_size_is_refused_alone_and_skipped(files, tmp_path, key):
    """Refused before DALI sees it, naming that file only (not the good file of its batch); --skip-bad skips it."""
    m = _manifest(tmp_path, [files["good"], files[key]], full=False)
    with pytest.raises(SlowFastError) as e:
        list(_loader(m, skip_bad=False))
    assert str(files[key]) in str(e.value) and "good.webm" not in str(e.value) and "header" in str(e.value)
    loader = _loader(m, skip_bad=True)
    assert [int(v) for b in loader for v in b["video"]] == [0] and list(loader.bad) == [str(files[key])]


def test_manifest_sizes_beyond_the_decoder_are_refused_before_the_run(files):
    """A manifest row whose width/height columns exceed the decoder's limit is refused at start, opening nothing."""
    from slowfast_trt.data.manifest import Video

    cfg = model.get_config("slowfast_tiny_4x16")
    videos = [Video(0, str(files["good"]), 0, FRAMES, 30.0, 80, 64), Video(1, str(files["huge_ivf"]), 1, FRAMES, 30.0, 60000, 60000)]
    with pytest.raises(SlowFastError, match=r"huge\.ivf: .*60000x60000"):
        preflight(videos, cfg, "cpu")


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def test_fifo_in_a_manifest_gets_its_own_reason_in_every_command(files, tmp_path):
    fifo = _fifo(tmp_path / "pipe.webm")
    m = write_manifest(tmp_path / "m" / "m.csv", [Entry(str(files["good"]), 0), Entry(str(fifo), 1)], ["a", "b"])
    with pytest.raises(SlowFastError, match="FIFO") as e:
        to_videos(read_manifest(m))
    assert "not found" not in str(e.value)
    from slowfast_trt.data.manifest import Video

    cfg = model.get_config("slowfast_tiny_4x16")
    with pytest.raises(SlowFastError, match="FIFO") as e:
        preflight([Video(0, str(files["good"]), 0, FRAMES, 30.0, 80, 64), Video(1, str(fifo), 1, FRAMES, 30.0, 80, 64)], cfg, "cpu")
    assert "not found" not in str(e.value)
    r = check(m, progress=False, workers=1)
    assert [(p, "FIFO" in why) for p, why in r.bad] == [(str(fifo), True)]


def test_data_prepare_rejects_fifos_and_device_links_with_a_reason(files, tmp_path):
    src = tmp_path / "src"
    (src / "walk").mkdir(parents=True)
    os.link(files["good"], src / "walk" / "ok.webm")
    _fifo(src / "walk" / "pipe.webm")
    (src / "walk" / "dev.mp4").symlink_to("/dev/null")
    r = prepare(src, tmp_path / "out", short_side=0, workers=1, progress=False)
    reasons = dict(r.rejects)
    assert r.done == 1
    assert "FIFO" in reasons[str(src / "walk" / "pipe.webm")], reasons
    assert "device" in reasons[str(src / "walk" / "dev.mp4")], reasons


def test_control_characters_in_names_are_escaped_in_reports(files, tmp_path):
    """A newline in a file name must not forge a line of the `data check` report (nor of `data prepare`'s rejects)."""
    evil = tmp_path / "a\nevil.webm: fine"
    evil.write_bytes(b"")  # empty: a bad file
    m = write_manifest(tmp_path / "m.csv", [Entry(str(files["good"]), 0), Entry(str(evil), 1)], ["a", "b"])
    r = CliRunner().invoke(main, ["data", "check", str(m), "--quiet", "--workers", "1"])
    assert r.exit_code == 1, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(tmp_path) + "/a\\nevil.webm: fine: empty file"), lines
    src = tmp_path / "src" / "walk"
    src.mkdir(parents=True)
    os.link(files["good"], src / "ok.webm")
    (src / "b\rx.webm").write_bytes(b"")
    r = CliRunner().invoke(
        main, ["data", "prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--quiet", "--workers", "1", "--short-side", "0"]
    )
    assert r.exit_code == 0, r.output
    assert "b\\rx.webm" in r.stderr and "\r" not in r.stderr


def test_10bit_h264_note_says_no_dali_decoder_reads_it(tmp_path):
    """NVDEC decodes no 10-bit H.264 (it does 10-bit HEVC/VP9/AV1), so "needs a GPU" would be wrong for it."""
    h10 = _write(tmp_path / "h10.mp4", codec="h264", container="mp4", pix_fmt="yuv420p10le")
    h8 = _write(tmp_path / "h8.mp4", codec="h264", container="mp4")
    m = write_manifest(tmp_path / "m.csv", [Entry(str(h10), 0), Entry(str(h8), 1)], ["a", "b"])
    r = CliRunner().invoke(main, ["data", "check", str(m), "--quiet", "--workers", "1"])
    assert r.exit_code == 0, r.output
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 2, r.stderr
    assert "1 good files (h264) need a GPU" in notes[0] or "1 good files (h264) need a GPU" in notes[1], notes
    ten = next(n for n in notes if "10-bit" in n)
    assert "NVDEC does not decode 10-bit H.264" in ten and "need a GPU" not in ten, ten
    assert "1 good files" in ten, ten


def test_loader_facts_reads_no_stream_after_its_container_closes(files, monkeypatch):
    """Closing a PyAV container frees the streams it points into; a stream read after that returns whatever another
    thread's allocation left there (seen: "frames cover -15708364.87 s" for a good file in a soak)."""
    from slowfast_trt.data import video_io

    class Closed(Exception):
        pass

    class Stream:
        def __init__(self, real, box):
            self._real, self._box = real, box

        def __getattr__(self, name):
            if self._box.closed:
                raise Closed(f"stream.{name} read after its container closed")
            return getattr(self._real, name)

    class Container:
        def __init__(self, real):
            self._real, self.closed = real, False
            self.streams = type("S", (), {"video": [Stream(real.streams.video[0], self)]})()

        def __getattr__(self, name):
            return getattr(self._real, name)

        def demux(self, stream):
            return self._real.demux(stream._real)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.closed = True
            self._real.close()

    real_open = video_io._open
    monkeypatch.setattr(video_io, "_open", lambda path: Container(real_open(path)))
    n, why = video_io.loader_facts(str(files["good"]))
    assert (n, why) == (FRAMES, None)
