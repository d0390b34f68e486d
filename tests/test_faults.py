"""Fault campaign: what each command does when it is killed, run twice at once, pointed at a read-only or full
folder, or fed hostile input. Real faults where the machine allows them: SIGKILLed processes, concurrent
processes, a read-only bind mount and a tiny tmpfs (both need `mount`, i.e. root in a sandbox that permits it;
without it, or with SLOWFAST_FAULTS_SIMULATE=1, those cases are simulated by raising errno 30 / 28 from `os.open` and
`os.mkdir` under the folder).
Issue items are named in each test's docstring."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.common.errors import EnvironmentFault, SlowFastError
from slowfast_trt.common.io import clean_stale_temps
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data import parallel
from slowfast_trt.data.manifest import read_manifest, write_manifest
from slowfast_trt.data.synth import synth
from slowfast_trt.engines.sidecar import read_sidecar
from slowfast_trt.model.checkpoint import read_info
from slowfast_trt.training.run import resolve_config, train
from tests.helpers import train_cmd

av = pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[1]
PRESET = "slowfast_tiny_4x16"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
FAST = dict(epochs=1, batch_size=4, max_steps=1, amp="fp32", device="cpu", threads=1, progress=False)


# ----- fixtures and helpers -----


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 tiny videos (one per class), all in train.csv."""
    out = tmp_path_factory.mktemp("synth")
    synth(out, videos=8, seed=3, frames=72, val_fraction=0.0, workers=2, progress=False)
    return out


def _cli(*args: str) -> tuple[int, str]:
    """Run `slowfast ARGS` in this process; (exit code, stdout + stderr)."""
    r = CliRunner().invoke(main, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def _one_error_line(code: int, output: str) -> str:
    lines = [ln for ln in re.split(r"[\r\n]+", output) if ln.strip() and not ln.startswith("warning:") and "%|" not in ln]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in output, (code, output)
    return lines[0]


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def _faulty_folder(path: Path, kind: str, monkeypatch):
    """`path` made read-only ("readonly") or full ("full"): a real mount where permitted, else os.open raising the errno."""
    path.mkdir(parents=True, exist_ok=True)
    real = False
    if os.geteuid() == 0 and shutil.which("mount") and os.environ.get("SLOWFAST_FAULTS_SIMULATE") != "1":
        if kind == "readonly":
            real = _mount("--bind", str(path), str(path)) and (_mount("-o", "remount,bind,ro", str(path)) or not _mount_off(path))
        else:
            real = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path))
            if real:  # fill it: not even a probe's 4 KiB fits
                with contextlib.suppress(OSError), open(path / "filler", "wb") as f:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
    if not real:
        code = errno.EROFS if kind == "readonly" else errno.ENOSPC
        real_open, real_mkdir = os.open, os.mkdir

        def refuse(p, *a, **k):
            if str(os.fspath(p)).startswith(str(path)):
                raise OSError(code, os.strerror(code), os.fspath(p))
            return (real_open if refuse.kind == "open" else real_mkdir)(p, *a, **k)

        opener = lambda p, *a, **k: (setattr(refuse, "kind", "open"), refuse(p, *a, **k))[1]  # noqa: E731
        mkdir = lambda p, *a, **k: (setattr(refuse, "kind", "mkdir"), refuse(p, *a, **k))[1]  # noqa: E731
        monkeypatch.setattr(os, "open", opener)
        monkeypatch.setattr(os, "mkdir", mkdir)
    try:
        yield real
    finally:
        monkeypatch.undo()
        if real:
            _mount_off(path)


def _mount_off(path: Path) -> bool:
    return subprocess.run(["umount", str(path)], capture_output=True).returncode == 0


def _subset(data: Path, tmp: Path, rows: list[int], name: str = "sub.csv", **changes) -> Path:
    """A manifest in `tmp` with rows `rows` of train.csv (absolute paths), optionally with fields replaced."""
    m = read_manifest(data / "train.csv")
    entries = [dataclasses.replace(m.entries[i], path=m.resolve(m.entries[i]), **changes) for i in rows]
    out = tmp / name
    write_manifest(out, entries, m.classes)
    return out


# ----- item 1: run folders have one owner -----


def test_concurrent_train_is_refused_naming_the_holder_and_a_sigkill_frees_the_folder(data, tmp_path):
    """Items 1 and 9: a second run into a busy --out is refused with the holder's pid; after SIGKILL the lock is
    gone, the dead run's temporary files are deleted, and --resume continues."""
    out = tmp_path / "run"
    opts = dict(epochs=2, batch_size=4, lr=0.05, amp="fp32", device="cpu", threads=1, progress=False)
    train(PRESET, str(data / "train.csv"), str(out), max_steps=1, **opts)
    cmd = train_cmd(PRESET, data, out, "--resume")
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 120
        while f'"pid": {p.pid},' not in (out / ".lock").read_text() and p.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        for extra in ([], ["--resume"], ["--overwrite"]):
            msg = _one_error_line(*_cli(*cmd[3:-1], *extra))
            assert f"is in use by `slowfast train` (pid {p.pid}" in msg, msg
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    stale = out / "checkpoints" / f".step_00000009.safetensors.pid{p.pid}.x1y2.tmp"  # as a kill mid-write leaves it
    stale.write_bytes(b"\0" * 1000)
    mine = out / f".metrics.csv.pid{os.getpid()}.a1b2.tmp"  # a live process's temporary file is not touched
    mine.write_bytes(b"")
    r = train(PRESET, str(data / "train.csv"), str(out), resume=True, max_steps=2, **opts)
    assert r["last_checkpoint"].endswith("step_00000002.safetensors")
    assert not stale.exists() and mine.exists()


def test_a_used_run_folder_is_refused_overwrite_clears_it_and_resume_checks_data_and_options(data, tmp_path):
    """Item 1 (and item 8: the resume message names the differing field, not the preset twice)."""
    out = tmp_path / "run"
    first = train(PRESET, str(data / "train.csv"), str(out), lr=0.05, **FAST)
    old_id = read_info(first["last_checkpoint"])["checkpoint_id"]
    shutil.copy(first["last_checkpoint"], out / "best.safetensors")  # a file only the old run had
    with pytest.raises(SlowFastError, match=r"already holds files .*--resume .*--overwrite"):
        train(PRESET, str(data / "train.csv"), str(out), lr=0.05, **FAST)
    assert read_info(first["last_checkpoint"])["checkpoint_id"] == old_id  # nothing was touched

    other = _subset(data, tmp_path, [7, 6, 5, 4, 3, 2, 1, 0], "reordered.csv")
    with pytest.raises(SlowFastError, match=r"--resume: the train manifest's path differs"):
        train(PRESET, str(other), str(out), resume=True, lr=0.05, **{**FAST, "max_steps": 2})
    original = (data / "train.csv").read_bytes()
    try:
        (data / "train.csv").write_bytes(original.replace(b"\n", b"\r\n"))
        with pytest.raises(SlowFastError, match=r"--resume: the train manifest's content differs"):
            train(PRESET, str(data / "train.csv"), str(out), resume=True, lr=0.05, **{**FAST, "max_steps": 2})
    finally:
        (data / "train.csv").write_bytes(original)
    with pytest.raises(SlowFastError, match=r"--resume: lr was 0.05 in the interrupted run and is 0.1 now"):
        train(PRESET, str(data / "train.csv"), str(out), resume=True, lr=0.1, **{**FAST, "max_steps": 2})
    with pytest.raises(SlowFastError, match=r"differs from the requested slowfast_tiny_4x16 in crop_size \(") as e:
        train(
            PRESET,
            str(data / "train.csv"),
            str(out),
            resume=True,
            lr=0.05,
            model_overrides={"crop_size": 96, "test_crop_size": 96},
            **{**FAST, "max_steps": 2},
        )
    assert str(e.value).count(PRESET) == 1

    pointer = out / "checkpoints" / "latest.json"
    saved = pointer.read_text()
    pointer.write_text(json.dumps({"file": "../../elsewhere/step_00000001.safetensors", "step": 1}))
    with pytest.raises(SlowFastError, match="is not a step checkpoint in"):
        train(PRESET, str(data / "train.csv"), str(out), resume=True, lr=0.05, **{**FAST, "max_steps": 2})
    pointer.write_text(saved)

    again = train(PRESET, str(data / "train.csv"), str(out), overwrite=True, lr=0.05, seed=1, **FAST)
    assert read_info(again["last_checkpoint"])["checkpoint_id"] != old_id
    assert not (out / "best.safetensors").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest.json", "step_00000001.safetensors"]
    with pytest.raises(SlowFastError, match="give one of them"):
        train(PRESET, str(data / "train.csv"), str(out), resume=True, overwrite=True, lr=0.05, **FAST)


# ----- item 2: --skip-bad never ends training silently -----


def test_skip_bad_epoch_shortened_by_a_batch_still_checkpoints(data, tmp_path):
    """Item 2: 4 good videos and a truncated one at batch 4 plan 2 steps; the epoch has 1 and must still end properly."""
    m = read_manifest(data / "train.csv")
    trunc = tmp_path / "trunc.webm"
    good = Path(m.resolve(m.entries[0]))
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    entries = [dataclasses.replace(e, path=m.resolve(e)) for e in m.entries[:4]]
    entries.append(dataclasses.replace(m.entries[4], path=str(trunc)))
    write_manifest(tmp_path / "bad.csv", entries, m.classes)
    out = tmp_path / "run"
    r = train(PRESET, str(tmp_path / "bad.csv"), str(out), skip_bad=True, **{**FAST, "max_steps": None})
    assert r["last_checkpoint"] and Path(r["last_checkpoint"]).exists(), sorted(p.name for p in out.iterdir())
    assert len(r["history"]) == 1 and (out / "metrics.csv").exists()


# ----- item 3: prepare never loses a source -----


def test_unique_output_names():
    """Item 3: names that collide after renaming keep one output each, whatever their order."""
    from slowfast_trt.data.layouts import unique_names

    assert unique_names(["a/x", "a/x", "a/x_1"]) == ["a/x", "a/x_2", "a/x_1"]
    assert unique_names(["a/x_1", "a/x", "a/X"]) == ["a/x_1", "a/x", "a/X_2"]


def test_prepare_keeps_all_three_sources_whose_names_collide(data, tmp_path):
    """Item 3, end to end: x.webm, x.mkv and x_1.webm in one class give three outputs, stable across re-runs."""
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    vids = sorted((data / "videos").rglob("*.webm"))
    for name, v in zip(("x.webm", "x.mkv", "x_1.webm"), vids):
        shutil.copy(v, src / name)
    out = tmp_path / "out"
    code, text = _cli("data", "prepare", str(src.parent), str(out), "--short-side", "32", "--workers", "1", "--quiet")
    assert code == 0, text
    m = read_manifest(out / "manifest.csv")
    assert sorted(e.path for e in m.entries) == ["videos/a/x.webm", "videos/a/x_1.webm", "videos/a/x_2.webm"]
    done = {json.loads(ln)["out"]: json.loads(ln)["src"] for ln in (out / ".prepare" / "done.jsonl").read_text().splitlines()}
    assert len(set(done.values())) == 3
    code, text = _cli("data", "prepare", str(src.parent), str(out), "--short-side", "32", "--workers", "1", "--quiet")
    assert code == 0 and "(0 transcoded, 3 already done)" in text, text


# ----- item 4: environment failures are not the inputs' fault -----


def _env_fail(job: str) -> str:
    """A pool job: 'full' fails as a full disk would; the others succeed."""
    if job == "full":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/videos/x.webm")
    return job


def test_a_full_disk_in_a_worker_stops_the_run_instead_of_rejecting_the_file():
    """Item 4 (pool level): ENOSPC in a worker is an EnvironmentFault, never a reject reason."""
    with pytest.raises(EnvironmentFault, match="No space left on device"):
        list(parallel.run_parallel(_env_fail, ["a", "full", "b"], workers=1))


def test_prepare_bad_encoder_option_and_full_disk_are_one_line_and_reject_nothing(data, tmp_path, monkeypatch):
    """Item 4: --quality -5 and a full OUT fail at the start (exit 2, one line) with no source marked rejected."""
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    for v in sorted((data / "videos").rglob("*.webm"))[:2]:
        shutil.copy(v, src / v.name)
    msg = _one_error_line(*_cli("data", "prepare", str(src.parent), str(tmp_path / "o1"), "--quality", "-5", "--quiet"))
    assert "--quality for vp9 must be between 0 and 63" in msg
    assert not (tmp_path / "o1" / "rejects.csv").exists()
    full = tmp_path / "full"
    with _faulty_folder(full, "full", monkeypatch) as real:
        msg = _one_error_line(*_cli("data", "prepare", str(src.parent), str(full / "out"), "--short-side", "32", "--quiet"))
        assert "No space left on device" in msg, (real, msg)
        assert not (full / "out" / "rejects.csv").exists()


def test_disk_filling_up_during_prepare_stops_it_and_the_rerun_finishes(data, tmp_path):
    """Item 4 on a real file system: a 40 KiB tmpfs fills up mid-run; the run stops with one line, rejects nothing,
    and after the space is grown (remount) the same command finishes every source."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount") or not _mount("-t", "tmpfs", "-o", "size=40k", "tmpfs", str(mnt)):
        pytest.skip("mounting a tmpfs is not permitted here (the pool-level test covers the logic)")
    try:
        src = tmp_path / "src" / "a"
        src.mkdir(parents=True)
        for v in sorted((data / "videos").rglob("*.webm"))[:5]:
            shutil.copy(v, src / v.name)
        args = ["data", "prepare", str(src.parent), str(mnt / "out"), "--short-side", "64", "--workers", "2", "--quiet"]
        msg = _one_error_line(*_cli(*args))
        assert "No space left on device" in msg, msg
        assert not (mnt / "out" / "rejects.csv").exists() and not (mnt / "out" / "manifest.csv").exists()
        assert _mount("-o", "remount,size=2m", str(mnt))
        code, text = _cli(*args)
        assert code == 0 and "5 videos in" in text and "0 rejected" in text, text
    finally:
        _mount_off(mnt)


# ----- item 5: one line instead of a traceback -----


@pytest.mark.parametrize("kind", ["readonly", "full"])
def test_every_writer_fails_in_one_line_on_a_read_only_or_full_folder(data, tmp_path, monkeypatch, kind):
    """Item 5: train, synth, prepare, eval --out, check --write-clean, export onnx, convert and preview."""
    ckpt = tmp_path / "m.safetensors"
    model.save(model.build(PRESET, num_classes=8), ckpt)
    one = _subset(data, tmp_path, [0])
    bad = tmp_path / "bad"
    reason = "Read-only file system" if kind == "readonly" else "No space left on device"
    commands = {
        "train": ["train", "--preset", PRESET, "--train", str(one), "--out", str(bad / "run"), "--device", "cpu", "--quiet"],
        "synth": ["data", "synth", str(bad / "s"), "--videos", "8", "--quiet"],
        "prepare": ["data", "prepare", str(data / "videos"), str(bad / "p"), "--quiet"],
        "eval": [
            "eval",
            "--ckpt",
            str(ckpt),
            "--data",
            str(one),
            "--out",
            str(bad / "e"),
            "--device",
            "cpu",
            "--clips",
            "1",
            "--crops",
            "1",
        ],
        "check": ["data", "check", str(one), "--write-clean", str(bad / "clean" / "c.csv"), "--quiet"],
        "convert": ["convert", str(ckpt), str(bad / "c.safetensors")],
        "preview": ["data", "preview", str(one), "--out", str(bad / "pv"), "--n", "1", "--device", "cpu"],
    }
    if _has("onnx"):
        commands["export"] = ["export", "onnx", str(ckpt), "--out", str(bad / "m.onnx"), "--no-verify"]
    work = _record_work(monkeypatch)
    with _faulty_folder(bad, kind, monkeypatch) as real:
        for name, args in commands.items():
            work.clear()
            msg = _one_error_line(*_cli(*args))
            assert reason in msg, (name, real, msg)
            assert not work, f"{name} worked before failing: {work}"


def _record_work(monkeypatch) -> list[str]:
    """A list that names each piece of real work started in this process: a model forward pass, a clip loader's
    iteration, a pool of decode/encode workers (the rule that a failing writer stops first, not a time bound)."""
    from slowfast_trt.dali_pipelines.loader import ClipLoader

    started: list[str] = []
    forward, iterate, pool = torch.nn.Module.__call__, ClipLoader.__iter__, parallel.run_parallel

    def recorded(what, real):
        def wrapper(*a, **k):
            started.append(what(*a))
            return real(*a, **k)

        return wrapper

    monkeypatch.setattr(torch.nn.Module, "__call__", recorded(lambda m, *_: f"{type(m).__name__} forward", forward))
    monkeypatch.setattr(ClipLoader, "__iter__", recorded(lambda _l: "clip loader", iterate))
    monkeypatch.setattr(parallel, "run_parallel", recorded(lambda fn, *_: f"workers running {fn.__name__}", pool))
    return started


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize(("column", "value"), [("fps", "nan"), ("fps", "inf"), ("width", "0"), ("height", "-4"), ("num_frames", "0")])
def test_manifest_numbers_are_validated_where_read_and_data_check_agrees(data, tmp_path, column, value):
    """Item 5: nan/inf/zero numbers are a one-line error naming the row, in train and eval and in `data check` too."""
    src = _subset(data, tmp_path, [0, 1])
    lines = src.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[2].split(",")
    row[header.index(column)] = value
    lines[2] = ",".join(row)
    src.write_text("\n".join(lines) + "\n")
    for args in (
        ["data", "check", str(src), "--quiet"],
        ["train", "--preset", PRESET, "--train", str(src), "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"],
        ["data", "preview", str(src), "--out", str(tmp_path / "pv"), "--device", "cpu"],
    ):
        msg = _one_error_line(*_cli(*args))
        assert f"sub.csv:3: column {column}={value!r} must be a finite number > 0" in msg, msg


def test_non_utf8_file_name_is_prepared_and_sidecar_null_is_one_line(data, tmp_path):
    """Item 5: a source file name that is not UTF-8 gets an escaped output name (and re-runs work); a `null` sidecar."""
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    v = sorted((data / "videos").rglob("*.webm"))[0]
    shutil.copy(v, os.path.join(os.fsencode(src), b"clip\xff.webm"))
    out = tmp_path / "out"
    for _ in range(2):
        code, text = _cli("data", "prepare", str(src.parent), str(out), "--short-side", "32", "--quiet")
        assert code == 0, text
    assert [e.path for e in read_manifest(out / "manifest.csv").entries] == ["videos/a/clip\\xff.webm"]
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "m.onnx.json").write_text("null")
    with pytest.raises(SlowFastError, match="sidecar is JSON NoneType, not an object"):
        read_sidecar(tmp_path / "m.onnx")


# ----- item 6: no wrong answers without a word -----


def test_eval_refuses_labels_outside_the_models_classes_and_nan_weights(data, tmp_path):
    """Item 6: a 4-class model on 8-class data, and a checkpoint with NaN weights."""
    four = tmp_path / "four.safetensors"
    model.save(model.build(PRESET, num_classes=4), four)
    msg = _one_error_line(*_cli("eval", "--ckpt", str(four), "--data", str(data / "train.csv"), "--device", "cpu"))
    assert "but the model knows 4 classes (0..3)" in msg, msg
    net = model.build(PRESET, num_classes=8)
    with torch.no_grad():
        net.head.projection.weight.fill_(float("nan"))
    nan = tmp_path / "nan.safetensors"
    model.save(net, nan)
    msg = _one_error_line(
        *_cli(
            "eval",
            "--ckpt",
            str(nan),
            "--data",
            str(_subset(data, tmp_path, [0])),
            "--device",
            "cpu",
            "--clips",
            "1",
            "--crops",
            "1",
            "--batch-size",
            "1",
        )
    )
    assert "non-finite scores" in msg, msg


def test_duplicate_rows_are_dropped_with_a_count_and_labels_are_explicit(data, tmp_path, capsys):
    """Item 6: duplicate rows counted once (with a warning), `3;3` refused, one multi-label row does not make a run
    multi-label (it is an error unless --multilabel)."""
    m = read_manifest(data / "train.csv")
    dup = tmp_path / "dup.csv"
    write_manifest(dup, [*m.entries, m.entries[2], m.entries[2]], m.classes)
    shutil.copytree(data / "videos", tmp_path / "videos")
    got = read_manifest(dup)
    assert len(got) == len(m) and "dropped 2 duplicate row(s)" in capsys.readouterr().err
    conflicting = tmp_path / "conflict.csv"
    write_manifest(conflicting, [*m.entries, dataclasses.replace(m.entries[2], label=(m.entries[2].label + 1) % 8)], m.classes)
    with pytest.raises(SlowFastError, match="is listed again with label"):
        read_manifest(conflicting)
    twice = tmp_path / "twice.csv"
    twice.write_text(f"path,label\n{m.resolve(m.entries[0])},3;3\n")
    with pytest.raises(SlowFastError, match="lists a class id twice"):
        read_manifest(twice)
    multi = tmp_path / "multi.csv"
    write_manifest(multi, [*m.entries[:3], dataclasses.replace(m.entries[3], label=(1, 2))], m.classes)
    mm = read_manifest(multi)
    with pytest.raises(SlowFastError, match=r"has several labels \(1;2\) .* pass --multilabel"):
        resolve_config(PRESET, mm, {})
    assert resolve_config(PRESET, mm, {"multilabel": True}).multilabel
    assert not resolve_config(PRESET, read_manifest(data / "train.csv"), {}).multilabel


# ----- item 7: data synth resumes and has one owner -----


def test_synth_killed_resumes_to_the_same_set_and_a_concurrent_synth_is_refused(tmp_path):
    """Item 7: SIGKILL mid-run, a second `data synth` (another seed) refused while it runs, then the same command
    finishes the set, byte-identical to an uninterrupted run."""
    out, ref = tmp_path / "s", tmp_path / "ref"
    args = ["--videos", "24", "--seed", "4", "--frames", "32", "--size", "32x32", "--workers", "1", "--quiet"]
    p = subprocess.Popen(
        [sys.executable, "-m", "slowfast_trt", "data", "synth", str(out), *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while len(list(out.glob("videos/*/*.webm"))) < 2 and p.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        msg = _one_error_line(*_cli("data", "synth", str(out), "--videos", "24", "--seed", "5", "--quiet"))
        assert f"in use by `slowfast data synth` (pid {p.pid}" in msg, msg
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    kept = {v: v.stat().st_mtime_ns for v in out.glob("videos/*/*.webm")}
    assert 2 <= len(kept) < 24 and not (out / "manifest.csv").exists()
    code, text = _cli("data", "synth", str(out), *args)
    assert code == 0, text
    assert all(v.stat().st_mtime_ns == t for v, t in kept.items())  # finished videos were not made again
    synth(ref, videos=24, seed=4, frames=32, size="32x32", workers=2, progress=False)
    files = sorted(str(f.relative_to(ref)) for f in ref.rglob("*") if f.is_file() and f.name != ".lock")
    assert files == sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file() and f.name != ".lock")
    for f in files:
        assert (ref / f).read_bytes() == (out / f).read_bytes(), f


# ----- item 8: messages say what is true -----


def test_messages_name_the_real_problem(data, tmp_path, monkeypatch):
    """Item 8: a BOM header is a manifest (not an AVA CSV), `Path,Label` is named, prepare tells folders and FIFOs from
    missing files, a failed best.safetensors is named, and a failure before the first checkpoint does not say --resume."""
    m = read_manifest(data / "train.csv")
    bom = tmp_path / "bom.csv"
    write_manifest(bom, [dataclasses.replace(e, path=m.resolve(e)) for e in m.entries], m.classes)
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
    assert len(read_manifest(bom)) == len(m)
    from slowfast_trt.data.ava import looks_like_ava_csv

    assert not looks_like_ava_csv(bom)
    upper = tmp_path / "upper.csv"
    upper.write_text("Path,Label\n" + "".join(f"{m.resolve(e)},{e.label}\n" for e in m.entries))
    msg = _one_error_line(*_cli("train", "--preset", PRESET, "--train", str(upper), "--out", str(tmp_path / "r0"), "--quiet"))
    assert "header must start with path,label (lower-case)" in msg and "videos.csv" not in msg, msg

    src = tmp_path / "list.csv"
    (tmp_path / "adir.webm").mkdir()
    os.mkfifo(tmp_path / "fifo.webm")
    src.write_text(f"path,label\n{tmp_path / 'adir.webm'},0\n{tmp_path / 'fifo.webm'},0\n{m.resolve(m.entries[0])},0\n")
    code, text = _cli("data", "prepare", str(src), str(tmp_path / "p"), "--short-side", "32", "--quiet")
    assert code == 0, text
    assert "adir.webm: a folder, not a video file" in text and "fifo.webm: a FIFO (named pipe), not a video file" in text, text

    from slowfast_trt.model import checkpoint

    real_save = checkpoint.save

    def save(net, path, *a, **k):
        if Path(path).name == "best.safetensors" or "step_" in Path(path).name and refuse_steps:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(net, path, *a, **k)

    monkeypatch.setattr(model, "save", save)
    refuse_steps = False
    with pytest.raises(EnvironmentFault, match=r"could not write .*best\.safetensors .*checkpoint .*step_00000002\.safetensors was saved"):
        train(
            PRESET,
            str(data / "train.csv"),
            str(tmp_path / "r1"),
            val_manifest=str(_subset(data, tmp_path, [0])),
            val_clips=1,
            **{**FAST, "max_steps": None},
        )
    refuse_steps = True
    with pytest.raises(
        EnvironmentFault, match=r"previous checkpoint \(none\) is intact; free disk space, then run the same command with --overwrite"
    ) as e:
        train(PRESET, str(data / "train.csv"), str(tmp_path / "r2"), **{**FAST, "max_steps": 1})
    assert "--resume" not in str(e.value)
    assert "already holds files" in _one_error_line(
        *_cli("train", "--preset", PRESET, "--train", str(data / "train.csv"), "--out", str(tmp_path / "r2"), "--quiet")
    )  # hence --overwrite


def test_loader_without_skip_bad_option_does_not_suggest_it(data, tmp_path):
    """Item 8: `export int8` and `data preview` have no --skip-bad, so their bad-file message must not offer it."""
    from slowfast_trt.dali_pipelines.loader import ClipLoader
    from slowfast_trt.dali_pipelines.plan import multiview_plan
    from slowfast_trt.data.manifest import Video

    pytest.importorskip("nvidia.dali")
    m = read_manifest(data / "train.csv")
    good = Path(m.resolve(m.entries[0]))
    trunc = tmp_path / "trunc.webm"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    cfg = model.get_config(PRESET, num_classes=8)
    vids = [Video(0, str(trunc), 0, 72, 30.0, 80, 64)]
    for skip_bad, offered in ((None, False), (False, True)):
        with pytest.raises(SlowFastError, match="trunc.webm") as e:
            list(
                ClipLoader(multiview_plan(vids, cfg, 1), cfg, "test", FeedSpec(batch_size=1, device="cpu", num_crops=1, skip_bad=skip_bad))
            )
        assert ("--skip-bad" in str(e.value)) == offered


# ----- item 9: leftovers -----


def test_stale_temporary_files_of_dead_processes_are_cleaned(tmp_path):
    """Item 9: a dead pid's temporary file goes, a live one's stays, other files stay."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".x.safetensors.pid{dead.pid}.abc.tmp").write_bytes(b"1")
    (tmp_path / f".x.safetensors.pid{os.getpid()}.abc.tmp").write_bytes(b"1")
    (tmp_path / "keep.tmp").write_bytes(b"1")
    assert [p.name for p in clean_stale_temps(tmp_path)] == [f".x.safetensors.pid{dead.pid}.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".x.safetensors.pid{os.getpid()}.abc.tmp", "keep.tmp"])


def test_onnx_export_follows_the_umask(tmp_path):
    """Item 9: the ONNX file gets 0666 minus the umask, like every other writer (it was 0600)."""
    pytest.importorskip("onnx")
    from slowfast_trt.export.onnx import export_onnx

    net = model.build(PRESET, num_classes=8)
    old = os.umask(0o022)
    try:
        r = export_onnx(net, tmp_path / "m.onnx", verify=False)
    finally:
        os.umask(old)
    assert (r.path.stat().st_mode & 0o777) == 0o644
    assert (r.sidecar_path.stat().st_mode & 0o777) == 0o644


def test_tiny_pkl_claiming_gigabytes_is_refused_without_allocating_them(tmp_path):
    """Item 9: an 80-byte .pkl whose BINBYTES length says 1.8 GB, or whose array shape does, allocates next to nothing."""
    claim = b"\x80\x02" + b"B" + struct.pack("<I", 1_800_000_000) + b"\0" * 72
    big_array = (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01J\x00\x00\x00\x70\x85q\x02C\x01bq\x03\x87q\x04Rq\x05."
    )
    for i, payload in enumerate((claim, big_array)):
        path = tmp_path / f"evil{i}.pkl"
        path.write_bytes(payload)
        tracemalloc.start()
        try:
            code, text = _cli("convert", str(path), str(tmp_path / "out.safetensors"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert code == 2 and "error:" in text, text
        assert peak < 100 * 2**20, f"payload {i}: {peak / 2**20:.0f} MiB allocated"
