"""NVDEC's limits: which files a GPU graph decodes on NVDEC, which on DALI's CPU decoder, which it refuses up front (CPU only)."""

from __future__ import annotations

import numpy as np
import pytest

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines import nvdec
from slowfast_trt.dali_pipelines.nvdec import Limits, StreamFormat, limits_for, pix_fmt_facts, route, violation
from slowfast_trt.dali_pipelines.spec import FeedSpec


def fmt(path: str, codec: str, w: int, h: int, chroma: str = "420", bits: int = 8) -> StreamFormat:
    return StreamFormat(path, codec, w, h, chroma, bits)


def table_only(codec, chroma, bits):
    return limits_for(codec, chroma, bits, ask_driver=lambda *_: None)


@pytest.mark.parametrize(
    "name, facts",
    [
        ("yuv420p", ("420", 8)),
        ("yuvj420p", ("420", 8)),
        ("yuv420p10le", ("420", 10)),
        ("yuv444p12le", ("444", 12)),
        ("yuv422p", ("422", 8)),
        ("gray", ("400", 8)),
        (None, ("420", 8)),
    ],
)
def test_pixel_formats_give_chroma_and_bit_depth(name, facts):
    assert pix_fmt_facts(name) == facts


def test_every_file_inside_the_limits_stays_on_nvdec():
    r = route([fmt("a.mp4", "h264", 320, 240), fmt("b.webm", "vp9", 160, 128), fmt("c.mp4", "h264", 64, 80)], table_only)
    assert r.mode == "nvdec" and not r.on_cpu
    assert r.summary() == "decoder: NVDEC for all 3 files"


def test_small_vp9_goes_to_the_cpu_decoder_with_one_summary_line():
    """The failure seen on an H200: 80x64 VP9 ('Video is too small ... supported: 128x128') must not reach NVDEC."""
    formats = [fmt("small.webm", "vp9", 80, 64), fmt("big.webm", "vp9", 320, 240), fmt("tiny.webm", "vp9", 64, 200)]
    r = route(formats, table_only)
    assert r.mode == "split" and r.on_cpu == {"small.webm", "tiny.webm"}
    assert r.reasons["small.webm"] == "VP9 below 128x128"
    line = r.summary()
    assert "\n" not in line and "2 of 3 files" in line and "2 VP9 below 128x128" in line and "--short-side" in line
    assert route(formats[:1], table_only).mode == "cpu"


def test_small_h264_is_refused_before_the_run_with_the_fix():
    """DALI's CPU decoder cannot read H.264: a file below NVDEC's minimum stops the run with one line (count, limit, fix)."""
    formats = [fmt("ok.mp4", "h264", 320, 240), fmt("x.mp4", "h264", 40, 40), fmt("y.mp4", "h264", 32, 96)]
    with pytest.raises(SlowFastError) as e:
        route(formats, table_only)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("2 of 3 files")
    assert "H264 below 48x16" in msg and "first: x.mp4" in msg and "--short-side 256" in msg and "--device cpu" in msg


def test_unsupported_format_is_refused_with_the_codec_fix():
    with pytest.raises(SlowFastError, match=r"1 of 1 files .*HEVC chroma 422 .*--codec h264"):
        route([fmt("p.mkv", "hevc", 1920, 1080, chroma="422", bits=10)], table_only)
    with pytest.raises(SlowFastError, match="not supported by NVDEC"):
        route([fmt("p.avi", "prores", 640, 480)], table_only)


def test_ten_bit_vp9_outside_the_limits_is_refused_not_sent_to_the_8_bit_cpu_path():
    with pytest.raises(SlowFastError, match="VP9 below 128x128"):
        route([fmt("hdr.webm", "vp9", 96, 96, bits=10)], table_only)


def test_the_drivers_own_caps_win_over_the_table():
    """cuvidGetDecoderCaps answers per codec/chroma/depth; a driver with other minimums routes by them."""
    asked = []

    def driver(codec, chroma, bits):
        asked.append((codec, chroma, bits))
        return (True, 64, 64, 4096, 4096) if codec == "vp9" else (False, 0, 0, 0, 0)

    lim = limits_for("vp9", "420", 8, ask_driver=driver)
    assert (lim.min_width, lim.max_width, lim.source) == (64, 4096, "driver (cuvidGetDecoderCaps)")
    assert violation(fmt("v.webm", "vp9", 80, 64), lim) is None  # this driver takes 80x64 VP9
    assert limits_for("h264", "420", 8, ask_driver=driver) is None  # the driver says unsupported: nothing from the table
    asked.clear()
    r = route([fmt("v.webm", "vp9", 80, 64), fmt("w.webm", "vp9", 96, 96)], lambda c, ch, b: limits_for(c, ch, b, ask_driver=driver))
    assert r.mode == "nvdec" and asked.count(("vp9", "420", 8)) == 1  # asked once per stream kind


def test_table_covers_the_codecs_dali_decodes_and_sizes_are_bounded():
    for codec in ("h264", "hevc", "vp8", "vp9", "av1", "mjpeg"):
        lim = nvdec.NVDEC_TABLE[codec]
        assert isinstance(lim, Limits) and 0 < lim.min_width < lim.max_width and 0 < lim.min_height < lim.max_height
        assert "420" in lim.chroma and 8 in lim.bit_depths and "Video Codec SDK" in lim.source
    assert violation(fmt("h.mp4", "h264", 4096, 2304), nvdec.NVDEC_TABLE["h264"]) is None
    assert violation(fmt("h.mp4", "h264", 8192, 4320), nvdec.NVDEC_TABLE["h264"]) == "H264 above 4096x4096"


def test_driver_caps_without_a_gpu_is_none():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible; the GPU tests check the driver's answer")
    assert nvdec.driver_caps("vp9", "420", 8) is None


def test_real_files_are_probed_and_routed(tmp_path):
    av = pytest.importorskip("av")
    from slowfast_trt.data.manifest import Video
    from tests.helpers import write_indexed_video

    write_indexed_video(tmp_path / "small.webm", 8, 80, 64)
    write_indexed_video(tmp_path / "big.webm", 8, 160, 128)
    assert av is not None
    videos = [Video(0, str(tmp_path / "small.webm"), 0, 8, 30.0, 80, 64), Video(1, str(tmp_path / "big.webm"), 0, 8, 30.0, 160, 128)]
    small = nvdec.probe_format(videos[0].path)
    assert (small.codec, small.width, small.height, small.chroma, small.bit_depth) == ("vp9", 80, 64, "420", 8)
    r = nvdec.route_videos(videos)
    assert r.mode == "split" and r.on_cpu == {videos[0].path}


def test_split_graph_serves_a_flag_and_decodes_like_the_plain_graph(tmp_path):
    """The per-sample routing (DALI conditionals) runs on the CPU too, both branches on the CPU decoder: same frames."""
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed")
    from slowfast_trt import model
    from slowfast_trt.dali_pipelines.loader import ClipLoader
    from slowfast_trt.dali_pipelines.pipelines import PlanSource, graph_spec
    from slowfast_trt.dali_pipelines.plan import multiview_plan
    from slowfast_trt.data.manifest import Video
    from tests.helpers import read_index, write_indexed_video

    videos = []
    for i, (w, h) in enumerate([(128, 64), (160, 128), (144, 96)]):  # wide enough for the burnt-in frame number
        p = tmp_path / f"v{i}.webm"
        write_indexed_video(p, 80, w, h)
        videos.append(Video(i, str(p), i, 80, 30.0, w, h))
    cfg = model.get_config("slowfast_r50_4x16")
    plans = multiview_plan(videos, cfg, num_clips=1)
    on_cpu = frozenset({videos[0].path, videos[2].path})
    feed = FeedSpec(device="cpu", batch_size=3)
    graph = graph_spec("decode", feed, plans, on_cpu, cfg.multilabel)
    assert graph.decoder == "split" and graph.fields[-1].name == "on_cpu"  # the flag is served last
    served = PlanSource(plans, graph, cfg, on_cpu=on_cpu)(None)
    assert [bool(f) for f in served[-1]] == [True, False, True]
    assert graph_spec("decode", feed, plans[:1], on_cpu, cfg.multilabel).decoder == "cpu"
    assert graph_spec("decode", feed, plans, frozenset(), cfg.multilabel).decoder == "nvdec"

    plain = ClipLoader(plans, cfg, "decode", FeedSpec(batch_size=1, device="cpu"))
    split = ClipLoader(plans, cfg, "decode", FeedSpec(batch_size=1, device="cpu"))
    split.on_cpu = on_cpu  # what a GPU loader gets from `nvdec.route`; on the CPU both branches use the CPU decoder
    n = 0
    for a, b in zip(plain, split, strict=True):
        assert np.array_equal(a["fast"][0].numpy(), b["fast"][0].numpy())
        assert [read_index(f) for f in b["fast"][0].numpy()] == plans[n].fast_idx.tolist()
        n += 1
    assert n == len(plans)


@pytest.mark.parametrize(
    "capability, decodes",
    [((7, 5), False), ((8, 0), False), ((8, 6), True), ((8, 9), True), ((9, 0), False), ((10, 0), True), ((12, 0), True), (None, False)],
)
def test_the_table_gives_av1_only_to_gpus_whose_nvdec_decodes_it(capability, decodes):
    """Turing, GA100 and Hopper (H100/H200) have no AV1 NVDEC: without the driver's answer, AV1 files there are refused
    before the run instead of failing in it."""
    lim = limits_for("av1", "420", 8, ask_driver=lambda *_: None, capability=lambda: capability)
    assert (lim is not None) == decodes
    assert limits_for("vp9", "420", 8, ask_driver=lambda *_: None, capability=lambda: capability) == nvdec.NVDEC_TABLE["vp9"]
    if not decodes:
        with pytest.raises(SlowFastError, match=r"1 of 1 files cannot be decoded on this GPU \(1 AV1 420 8-bit not supported by NVDEC"):
            route([fmt("a.mkv", "av1", 640, 360)], lambda c, ch, b: limits_for(c, ch, b, lambda *_: None, lambda: capability))


@pytest.mark.parametrize(
    "decoder, codec", [("libdav1d", "av1"), ("libaom-av1", "av1"), ("libvpx-vp9", "vp9"), ("h264_cuvid", "h264"), ("hevc", "hevc")]
)
def test_decoder_names_map_to_their_codec(decoder, codec):
    assert nvdec.codec_of_decoder(decoder) == codec


def test_an_av1_file_is_probed_as_av1_not_as_its_decoder(tmp_path):
    """PyAV names the decoder (libdav1d) where the limits are keyed by the codec (av1)."""
    av = pytest.importorskip("av")
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("this FFmpeg build has no AV1 encoder (libsvtav1)")
    from tests.helpers import write_indexed_video

    write_indexed_video(tmp_path / "a.mkv", 4, 128, 128, codec="libsvtav1")
    f = nvdec.probe_format(str(tmp_path / "a.mkv"))
    assert (f.codec, f.width, f.height, f.chroma, f.bit_depth) == ("av1", 128, 128, "420", 8)
