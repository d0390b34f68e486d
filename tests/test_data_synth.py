"""`data synth`: determinism, balance, real decodable videos, and the known answer (Slow frames cannot split 3 pairs)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

av = pytest.importorskip("av")

from slowfast_trt.common.errors import SlowFastError  # noqa: E402
from slowfast_trt.dali_pipelines import sampling  # noqa: E402
from slowfast_trt.data.manifest import read_manifest  # noqa: E402
from slowfast_trt.data.synth import CLASSES, SLOW_AMBIGUOUS_PAIRS, render, synth, trajectory  # noqa: E402


def _decode_all(path: str) -> np.ndarray:
    """RGB frames converted as DALI converts them (BT.601, bilinear chroma)."""
    from slowfast_trt.dali_pipelines.colour import frame_to_rgb

    with av.open(path) as c:
        return np.stack([frame_to_rgb(f) for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "a"
    report = synth(out, videos=16, seed=7, frames=48, workers=2, progress=False)
    return out, report


def test_same_seed_same_bytes_and_frames_other_seed_differs(small_set, tmp_path):
    a, report = small_set
    assert (report.videos, report.train, report.val) == (16, 8, 8)  # 2 per class, 1 of each class to val
    b = tmp_path / "b"
    synth(b, videos=16, seed=7, frames=48, workers=1, progress=False)  # another worker count: same result
    for name in ("manifest.csv", "train.csv", "val.csv", "classes.txt", "README.md"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    m = read_manifest(a / "manifest.csv")
    same_bytes = 0
    for e in m.entries:
        fa, fb = a / e.path, b / e.path
        assert np.array_equal(_decode_all(str(fa)), _decode_all(str(fb))), e.path
        same_bytes += hashlib.sha256(fa.read_bytes()).digest() == hashlib.sha256(fb.read_bytes()).digest()
    assert same_bytes == len(m.entries)  # one encoder thread + bitexact muxing: byte-identical files too
    c = tmp_path / "c"
    synth(c, videos=16, seed=8, frames=48, workers=2, progress=False)
    mc = read_manifest(c / "manifest.csv")
    assert [e.label for e in mc.entries] != [e.label for e in m.entries]
    assert not np.array_equal(_decode_all(str(a / m.entries[0].path)), _decode_all(str(c / mc.entries[0].path)))


def test_manifest_columns_balance_and_split(small_set):
    out, _ = small_set
    m = read_manifest(out / "manifest.csv")
    assert m.classes == list(CLASSES)
    assert np.bincount([e.label for e in m.entries], minlength=8).tolist() == [2] * 8
    for e in m.entries:
        assert (e.num_frames, e.fps, e.width, e.height, e.codec) == (48, 30.0, 80, 64, "vp9")
        assert e.path.startswith(f"videos/{CLASSES[e.label]}/")
        with av.open(str(out / e.path)) as c:
            assert sum(1 for p in c.demux(video=0) if p.size) == 48
    train, val = read_manifest(out / "train.csv"), read_manifest(out / "val.csv")
    assert sorted(e.path for e in train.entries + val.entries) == sorted(e.path for e in m.entries)
    assert sorted(e.label for e in val.entries) == list(range(8))
    assert "why slow-only sampling cannot separate" in (out / "README.md").read_text().lower()


def test_decoded_video_matches_render(small_set):
    out, _ = small_set
    e = read_manifest(out / "manifest.csv").entries[3]
    index = int(e.path.rsplit("/", 1)[1].split(".")[0])
    want = render(e.label, 7, index, 48, 64, 80).astype(int)
    got = _decode_all(str(out / e.path)).astype(int)
    assert got.shape == want.shape and np.abs(got - want).mean() < 4  # lossy, but the picture is the picture


def test_dali_decodes_synth_videos_on_cpu(small_set):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
    from nvidia.dali import fn, pipeline_def

    out, _ = small_set
    files = [str(out / e.path) for e in read_manifest(out / "manifest.csv").entries[:2]]

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        enc, _ = fn.readers.file(files=files)
        return fn.decoders.video(enc, device="cpu")

    p = pipe()
    p.build()
    (video,) = p.run()
    for i, f in enumerate(files):
        assert np.asarray(video[i]).shape == (48, 64, 80, 3)
        assert np.abs(np.asarray(video[i]).astype(int) - _decode_all(f).astype(int)).max() <= 1  # the same frames, rounding aside


def _states(label: int, videos: int, frames: int = 96, h: int = 64, w: int = 80):
    out = []
    for v in range(videos):
        rng = np.random.default_rng([123, label, v])
        x, y, vis = trajectory(label, rng, frames, h, w, size=int(rng.choice([8, 12])))
        out.append((x, y, vis, rng))
    return out


def _pair_stats(states, picks, w: int = 80) -> np.ndarray:
    """Statistics of the picked frames a classifier could use: P(consecutive picks show the same state), mean
    signed and absolute wrapped x-displacement between consecutive picks, mean x, mean visibility."""
    same, dxs, xs, vis_all = [], [], [], []
    for (x, y, vis, _), idx in zip(states, picks):
        a, b = idx[:-1], idx[1:]
        same.append(np.mean((x[a] == x[b]) & (y[a] == y[b]) & (vis[a] == vis[b])))
        dx = (x[b] - x[a] + w // 2) % w - w // 2
        dxs.append(np.where(dx == -(w // 2), 0, dx))  # half-way round the torus has no direction
        xs.append(x[idx])
        vis_all.append(vis[idx])
    dx = np.concatenate(dxs)
    return np.array([np.mean(same), dx.mean(), np.abs(dx).mean(), np.concatenate(xs).mean(), np.concatenate(vis_all).mean()])


@pytest.mark.parametrize("T,tau,alpha", [(4, 16, 8), (8, 8, 4)])
@pytest.mark.parametrize("convention", ["pyslowfast", "strided"])
def test_slow_frames_cannot_separate_the_pairs_but_fast_frames_can(T, tau, alpha, convention):
    span = sampling.clip_span(T, tau)
    n = 600
    for a, b in SLOW_AMBIGUOUS_PAIRS:
        stats = {}
        for label in (a, b):
            states = _states(label, n)
            fast_picks, slow_picks = [], []
            for _, _, _, rng in states:
                start = sampling.train_start(96, span, rng)
                fast = sampling.fast_indices(start, span, alpha * T, 96, convention)
                fast_picks.append(fast)
                slow_picks.append(sampling.slow_indices(fast, T, convention))
            stats[label] = (_pair_stats(states, slow_picks), _pair_stats(states, fast_picks))
        slow_gap = np.abs(stats[a][0] - stats[b][0])
        fast_gap = np.abs(stats[a][1] - stats[b][1])
        # Slow: the same statistics up to sampling noise; Fast: at least one differs by a wide margin.
        assert slow_gap[0] < 0.05 and slow_gap[1] < 1.0 and slow_gap[2] < 1.5, (CLASSES[a], CLASSES[b], stats)
        assert slow_gap[3] < 1.5 and slow_gap[4] < 0.05, (CLASSES[a], CLASSES[b], stats)  # same single-frame distribution
        assert fast_gap[0] > 0.25 or fast_gap[1] > 2.0, (CLASSES[a], CLASSES[b], stats)


def test_slow_frames_do_separate_the_drift_pair():
    span = sampling.clip_span(4, 16)
    means = []
    for label in (CLASSES.index("drift_left"), CLASSES.index("drift_right")):
        states = _states(label, 100)
        picks = [sampling.slow_indices(sampling.fast_indices(sampling.train_start(96, span, s[3]), span, 32, 96), 4) for s in states]
        means.append(_pair_stats(states, picks)[1])
    assert means[0] < -5 and means[1] > 5  # 16-20 frames at 0.5-0.75 px/frame: 8-15 px per Slow step


def test_bad_arguments(tmp_path):
    with pytest.raises(SlowFastError, match="at least 8"):
        synth(tmp_path / "x", videos=3, progress=False)
    with pytest.raises(SlowFastError, match="unknown codec 'mjpeg'"):
        synth(tmp_path / "x", codec="mjpeg", progress=False)
    with pytest.raises(SlowFastError, match="--frames must be at least"):
        synth(tmp_path / "x", frames=10, progress=False)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "precious.txt").write_text("mine")
    with pytest.raises(SlowFastError, match="not empty and was not made by `data synth`"):
        synth(tmp_path / "used", videos=8, progress=False)
