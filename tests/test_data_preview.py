"""`data preview` (what the model sees, through DALI or the PyAV reference) and `data check` on a synthetic set."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from slowfast_trt.common.errors import SlowFastError  # noqa: E402
from slowfast_trt.dali_pipelines import sampling  # noqa: E402
from slowfast_trt.dali_pipelines.colour import frame_to_rgb  # noqa: E402
from slowfast_trt.dali_pipelines.preview import preview  # noqa: E402
from slowfast_trt.data.check import check  # noqa: E402
from slowfast_trt.data.manifest import Entry, read_manifest, write_manifest  # noqa: E402
from slowfast_trt.data.synth import synth  # noqa: E402

SMALL = dict(crop_size=64, test_crop_size=64)  # the synthetic videos are 64x80: no resize in test mode
R50 = "slowfast_r50_4x16"  # explicit, so these tests do not depend on the demo preset's settings


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("set")
    synth(out, videos=8, seed=3, frames=72, workers=2, progress=False)
    return out


def _pyav_frames(path: str, indices) -> np.ndarray:
    with av.open(path) as c:
        frames = [frame_to_rgb(f) for f in c.decode(video=0)]
    return np.stack([frames[i] for i in indices])


def _denorm(x: np.ndarray) -> np.ndarray:
    return x * 0.225 * 255 + 0.45 * 255


def test_test_mode_shows_the_exact_frames_and_crops_through_dali(dataset, tmp_path):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
    r = preview(dataset / "manifest.csv", tmp_path, preset=R50, mode="test", n=2, device="cpu", **SMALL)
    assert r.backend == "dali" and r.note is None and len(r.samples) == 2
    for png, npz in r.samples:
        from PIL import Image

        assert Image.open(png).size[0] > 0
        d = np.load(npz)
        # The centre clip of a 72-frame video, 4x16 in the PySlowFast convention.
        start = sampling.test_start(72, 64, 0, 1)
        fast_idx = sampling.fast_indices(start, 64, 32, 72, "pyslowfast")
        assert d["fast_indices"].tolist() == fast_idx.tolist()
        assert d["slow_indices"].tolist() == sampling.slow_indices(fast_idx, 4, "pyslowfast").tolist()
        assert d["fast_indices"][d["slow_positions"]].tolist() == d["slow_indices"].tolist()
        frames = d["frames"]
        assert frames.dtype == np.uint8 and frames.shape == (32, 64, 80, 3)
        assert np.abs(frames.astype(int) - _pyav_frames(str(d["video"]), fast_idx).astype(int)).max() <= 1
        assert d["slow"].shape == (3, 3, 4, 64, 64) and d["fast"].shape == (3, 3, 32, 64, 64)
        # Short side 64 = test crop: crops at x = 0, 8, 16 of the untouched frames, normalised.
        for view, x in enumerate((0, 8, 16)):
            want = frames[:, :, x : x + 64].transpose(3, 0, 1, 2).astype(np.float32)
            assert np.abs(_denorm(d["fast"][view]) - want).max() < 0.01
            assert np.array_equal(d["slow"][view], d["fast"][view][:, d["slow_positions"]])
        assert str(d["backend"]) == "dali" and str(d["mode"]) == "test"


def test_train_mode_dali_and_pyav_reference_agree(dataset, tmp_path):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
    a = preview(dataset / "manifest.csv", tmp_path / "dali", preset=R50, mode="train", n=3, seed=5, backend="dali", device="cpu", **SMALL)
    b = preview(dataset / "manifest.csv", tmp_path / "pyav", preset=R50, mode="train", n=3, seed=5, backend="pyav", **SMALL)
    assert a.backend == "dali" and b.backend == "pyav"
    for (_, na), (_, nb) in zip(a.samples, b.samples):
        da, db = np.load(na), np.load(nb)
        assert str(da["video"]) == str(db["video"]) and np.array_equal(da["fast_indices"], db["fast_indices"])
        assert np.array_equal(da["roi"], db["roi"])  # the same random window (scale, crop, flip)
        start = int(da["fast_indices"][0])
        assert 0 <= start <= 72 - 64 and da["fast_indices"].tolist() == sampling.fast_indices(start, 64, 32, 72).tolist()
        assert np.abs(da["frames"].astype(int) - db["frames"].astype(int)).max() <= 1
        assert da["slow"].shape == (1, 3, 4, 64, 64) and da["fast"].shape == (1, 3, 32, 64, 64)
        diff = np.abs(_denorm(da["fast"]) - _denorm(db["fast"]))
        assert diff.mean() < 1.0 and diff.max() < 12  # grey levels: bilinear resampling, rounded differently


def test_h264_falls_back_to_pyav_on_cpu_and_other_fast_inputs(dataset, tmp_path):
    h264 = tmp_path / "h264"
    synth(h264, videos=8, seed=1, frames=72, codec="h264", workers=1, progress=False)
    r = preview(h264 / "manifest.csv", tmp_path / "p", mode="train", n=1, preset="slowfast_r50_4x16_gray", device="cpu", **SMALL)
    assert r.backend == "pyav" and "cannot decode h264 on the CPU" in r.note
    d = np.load(r.samples[0][1])
    assert d["fast"].shape == (1, 1, 32, 64, 64) and d["slow"].shape == (1, 3, 4, 64, 64)
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
    with pytest.raises(SlowFastError, match="codec h264 cannot be decoded by DALI on the CPU"):
        preview(h264 / "manifest.csv", tmp_path / "q", preset=R50, n=1, backend="dali", device="cpu", **SMALL)
    r = preview(
        dataset / "manifest.csv",
        tmp_path / "s",
        preset=R50,
        mode="test",
        n=1,
        sampling="strided",
        num_frames=8,
        tau=8,
        alpha=4,
        device="cpu",
        **SMALL,
    )
    d = np.load(r.samples[0][1])
    assert (d["slow_indices"] - d["slow_indices"][0]).tolist() == list(range(0, 64, 8))


def test_check_finds_a_corrupted_file_and_a_lying_row(dataset, tmp_path):
    m = read_manifest(dataset / "manifest.csv")
    assert check(dataset / "manifest.csv", progress=False).bad == []
    broken = tmp_path / "broken.webm"
    data = (dataset / m.entries[0].path).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    e1 = m.entries[1]
    rows = [Entry(str(broken), 0, 72, 30.0, 80, 64, "vp9"), Entry(str(dataset / e1.path), e1.label, 50, 30.0, 80, 64, "vp9")]
    rows += [Entry(str(dataset / e.path), e.label, e.num_frames, e.fps, e.width, e.height, e.codec) for e in m.entries[2:4]]
    write_manifest(tmp_path / "m.csv", rows, m.classes)
    r = check(tmp_path / "m.csv", write_clean=tmp_path / "clean" / "m.csv", progress=False)
    reasons = dict(r.bad)
    assert set(reasons) == {str(broken), str(dataset / e1.path)}
    assert "truncated" in reasons[str(broken)] or "decode" in reasons[str(broken)]
    assert reasons[str(dataset / e1.path)] == "frame count: manifest says 50, the file decodes 72"
    clean = read_manifest(tmp_path / "clean" / "m.csv")
    assert [e.path for e in clean.entries] == [r.path for r in rows[2:]] and clean.classes == m.classes
