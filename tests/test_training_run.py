"""Training runs end to end on the CPU: exact resume after SIGKILL, torchrun with two gloo ranks, and the
errors a user can cause (bad labels, missing or empty manifests, weights of another preset, NaN loss, a full disk)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.data.manifest import read_manifest, write_manifest
from slowfast_trt.data.synth import synth
from slowfast_trt.training.run import train
from tests.helpers import train_cmd

ROOT = Path(__file__).resolve().parents[1]
PRESET = "slowfast_tiny_4x16"
# fp32 and one thread: the same arithmetic in every process, so runs can be compared to float tolerance.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth(out, videos=16, seed=5, frames=72, val_fraction=0.25, workers=2, progress=False)
    return out


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    return model.load(out / "checkpoints" / latest["file"]).state_dict()


def _history(out: Path) -> list[dict]:
    import csv

    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(data, tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(train_cmd(PRESET, data, ref), cwd=ROOT, env=ENV, check=True, capture_output=True, timeout=300)

    p = subprocess.Popen(
        train_cmd(PRESET, data, cut), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    target = cut / "checkpoints" / "step_00000002.safetensors"  # 3 steps per epoch: step 2 is mid-epoch 1
    deadline = time.time() + 240
    while not target.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert target.exists(), p.stderr.read().decode()[-2000:]
    done = json.loads((cut / "checkpoints" / "latest.json").read_text())["step"]
    assert done < 6, "the run finished before it could be killed"
    # No half-written file: every checkpoint left behind loads, and no temporary file remains.
    for f in (cut / "checkpoints").iterdir():
        assert f.suffix in (".safetensors", ".json"), f"stray file {f.name}"
        if f.suffix == ".safetensors":
            model.load(f)

    subprocess.run(train_cmd(PRESET, data, cut, "--resume"), cwd=ROOT, env=ENV, check=True, capture_output=True, timeout=300)
    a, b = _final_weights(ref), _final_weights(cut)
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst < 1e-5, f"resumed weights differ from the uninterrupted run by {worst}"
    for x, y in zip(_history(ref), _history(cut), strict=True):
        assert x["step"] == y["step"] and abs(float(x["train_loss"]) - float(y["train_loss"])) < 1e-5


def test_torchrun_two_gloo_ranks_read_disjoint_shards(data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "slowfast_trt",
        "train",
        "--preset",
        PRESET,
        "--train",
        str(data / "train.csv"),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--amp",
        "fp32",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--quiet",
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    n = len(read_manifest(data / "train.csv"))
    log = [json.loads(line) for line in (out / "data_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]
    orders = []
    for entry in log:
        r0, r1 = (set(v) for v in entry["videos_per_rank"])
        assert not r0 & r1, f"epoch {entry['epoch']}: both ranks read videos {sorted(r0 & r1)}"
        assert r0 | r1 == set(range(n)), "the two shards together must cover the data set"
        orders.append(entry["videos_per_rank"])
    assert orders[0] != orders[1], "each epoch draws a new permutation"
    ckpts = sorted((out / "checkpoints").glob("step_*.safetensors"))
    assert ckpts, "rank 0 writes checkpoints"
    assert len(_history(out)) == 2


def _write_bad_labels(data: Path, tmp_path: Path) -> Path:
    m = read_manifest(data / "train.csv")
    entries = [dataclasses.replace(e, label=9 if i == 1 else e.label, path=str(data / e.path)) for i, e in enumerate(m.entries)]
    bad = tmp_path / "bad.csv"
    write_manifest(bad, entries)  # no class list: write_manifest itself would refuse label 9
    (tmp_path / "classes.txt").write_text("".join(c + "\n" for c in m.classes))
    return bad


def _cli(*args: str):
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code != 0
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    return lines[0]


def test_bad_labels_manifests_and_foreign_weights(data, tmp_path):
    common = [
        "--preset",
        PRESET,
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--amp",
        "fp32",
        "--device",
        "cpu",
        "--quiet",
    ]
    msg = _cli("train", "--train", str(_write_bad_labels(data, tmp_path)), *common)
    assert "label 9 of" in msg and "outside classes.txt's 8 classes" in msg, msg
    msg = _cli("train", "--train", str(data / "train.csv"), *common, "--num-classes", "4")
    assert "outside [0, 3]" in msg and "--num-classes" in msg, msg
    msg = _cli("train", "--train", str(tmp_path / "nope.csv"), *common)
    assert "not found" in msg
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    msg = _cli("train", "--train", str(empty), *common)
    assert "no videos" in msg

    other = tmp_path / "slow.safetensors"
    model.save(model.build("slow_tiny_4x16", num_classes=8), other)
    msg = _cli("train", "--train", str(data / "train.csv"), *common, "--init", str(other))
    assert "does not fit a slowfast_tiny_4x16 network" in msg and "missing key" in msg

    # Same architecture, other class count: the backbone is kept and the classifier is fresh.
    same = tmp_path / "sf3.safetensors"
    src = model.build(PRESET, num_classes=3)
    model.save(src, same)
    r = train(
        PRESET,
        str(data / "train.csv"),
        str(tmp_path / "ft"),
        init=str(same),
        epochs=1,
        batch_size=8,
        max_steps=1,
        amp="fp32",
        device="cpu",
        progress=False,
    )
    tuned = model.load(r["last_checkpoint"])
    assert tuned.config.num_classes == 8 and tuned.config.name == PRESET
    assert not torch.equal(tuned.state_dict()["stem.slow.conv.weight"], torch.zeros(1))  # real weights came through


def test_resume_with_another_preset_is_refused(data, tmp_path):
    out = tmp_path / "run"
    train(PRESET, str(data / "train.csv"), str(out), epochs=1, batch_size=8, max_steps=1, amp="fp32", device="cpu", progress=False)
    with pytest.raises(SlowFastError, match="differs from the requested"):
        train(
            "slow_tiny_4x16",
            str(data / "train.csv"),
            str(out),
            resume=True,
            epochs=1,
            batch_size=8,
            amp="fp32",
            device="cpu",
            progress=False,
        )
    with pytest.raises(SlowFastError, match="no checkpoint"):
        train(
            PRESET,
            str(data / "train.csv"),
            str(tmp_path / "fresh"),
            resume=True,
            epochs=1,
            batch_size=8,
            amp="fp32",
            device="cpu",
            progress=False,
        )


def test_nan_loss_names_the_step_and_the_last_good_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SlowFastError, match=r"loss is (nan|inf) at step \d+ .*last good checkpoint: .*step_00000001\.safetensors"):
        train(
            PRESET,
            str(data / "train.csv"),
            str(out),
            epochs=3,
            batch_size=4,
            lr=1e30,
            save_every=1,
            amp="fp32",
            device="cpu",
            progress=False,
        )


def test_full_disk_while_saving_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    r = train(PRESET, str(data / "train.csv"), str(out), epochs=2, batch_size=8, max_steps=1, amp="fp32", device="cpu", progress=False)
    first = Path(r["last_checkpoint"])
    before = first.read_bytes()

    real_fsync = os.fsync

    def full_disk(fd):  # the disk fills up while the next checkpoint is flushed
        if "step_" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(
        SlowFastError, match=r"could not write checkpoint .*step_00000002.*previous checkpoint .*step_00000001\.safetensors is intact"
    ):
        train(
            PRESET,
            str(data / "train.csv"),
            str(out),
            resume=True,
            epochs=2,
            batch_size=8,
            max_steps=2,
            amp="fp32",
            device="cpu",
            progress=False,
        )
    monkeypatch.undo()
    assert first.read_bytes() == before
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest.json", first.name]
    model.load(first)


def test_data_wait_share_measures_time_blocked_on_the_loader(data, tmp_path):
    """metrics.csv's data_wait is the share of step time spent waiting for batches: a loader slowed by 1 s a batch shows all of it."""
    from slowfast_trt.data.manifest import to_videos
    from slowfast_trt.training.run import resolve_config
    from slowfast_trt.training.task import Classification
    from slowfast_trt.training.trainer import Trainer, TrainOptions, data_wait_share

    m = read_manifest(data / "train.csv")
    cfg = resolve_config(PRESET, m, {})
    t = Trainer(
        cfg,
        TrainOptions(out_dir=str(tmp_path / "run"), epochs=1, batch_size=4, amp="fp32", device="cpu", threads=1, progress=False),
        Classification(to_videos(m)),
    )
    inner = t.loader

    class Slow:
        """The trainer's loader, 1 s slower per batch."""

        def __getattr__(self, name):
            return getattr(inner, name)

        def __len__(self):
            return len(inner)

        def __iter__(self):
            for b in inner:
                time.sleep(1.0)
                yield b

    t.loader = Slow()
    t.run()
    row = _history(tmp_path / "run")[0]
    seconds = len(m) / float(row["train_clips_per_s"])  # the epoch's wall time, from the same row
    waited = float(row["data_wait"]) * seconds
    steps = int(row["step"])
    assert steps >= 2 and 1.0 * steps <= waited < seconds, (waited, seconds)  # every injected second is counted, and compute is not
    assert data_wait_share({"data_wait_s": 1.0, "seconds": 4.0}) == 0.25 and data_wait_share({"seconds": 2.0}) == 0.0
