"""Training beyond one process group on the CPU: two torchrun "nodes" on localhost (c10d rendezvous, gloo), and
elastic recovery: a SIGKILLed worker, or a whole node launch killed and started again, resumes by itself.

Every run is compared with one uninterrupted single-node two-process run of the same configuration."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.data.manifest import read_manifest
from slowfast_trt.data.synth import synth
from tests import scaling_helpers as sh

PRESET = "slowfast_tiny_4x16"
TIMING = ("train_clips_per_s", "data_wait")  # metrics.csv columns that measure time, not results


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth(out, videos=12, seed=5, frames=72, val_fraction=0.34, workers=2, progress=False)
    return out


def train_args(data: Path, out: Path) -> list[str]:
    """2 epochs of 2 steps (8 training videos, 2 ranks x 2 clips), a checkpoint every step, fp32 on one CPU thread."""
    return ["train", "--preset", PRESET, "--train", str(data / "train.csv"), "--out", str(out), "--epochs", "2",
            "--batch-size", "2", "--lr", "0.05", "--amp", "fp32", "--device", "cpu", "--threads", "1", "--save-every", "1",
            "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted single-node run with two processes."""
    out = tmp_path_factory.mktemp("ref") / "run"
    r = subprocess.run(sh.torchrun_single(2, *train_args(data, out)), cwd=sh.ROOT, env=sh.ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    return model.load(out / "checkpoints" / latest["file"]).state_dict()


def assert_same_run(ref: Path, out: Path) -> None:
    """Final weights and every result column of metrics.csv within 1e-5 of the reference run."""
    a, b = final_weights(ref), final_weights(out)
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst < 1e-5, f"final weights differ from the single-node run by {worst}"
    rows = [list(csv.DictReader(open(p / "metrics.csv"))) for p in (ref, out)]
    assert len(rows[0]) == len(rows[1]) == 2
    for x, y in zip(*rows, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if k not in TIMING:
                assert abs(float(x[k]) - float(y[k])) < 1e-5, (k, x[k], y[k])


def test_two_nodes_on_localhost_match_one_node_with_two_processes(data, reference, tmp_path):
    out, port, rid = tmp_path / "run", sh.free_port(), uuid.uuid4().hex[:8]
    cwds = [tmp_path / "node0", tmp_path / "node1"]
    for c in cwds:
        c.mkdir()
    nodes = [sh.launch(sh.torchrun_node(i, 2, port, rid, *train_args(data, out)), cwd=cwds[i]) for i in range(2)]
    for rc, err in sh.finish(nodes, 300):
        assert rc == 0, err
    # The rendezvous formed one job of two ranks that read disjoint shards covering the training set.
    n = len(read_manifest(data / "train.csv"))
    log = [json.loads(line) for line in (out / "data_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2], "rank 0 alone appends one line per epoch"
    for entry in log:
        shards = [set(v) for v in entry["videos_per_rank"]]
        assert len(shards) == 2 and not shards[0] & shards[1] and shards[0] | shards[1] == set(range(n)), entry
    assert json.loads((out / "elastic.json").read_text()) == {"run_id": rid}
    assert all(not any(c.iterdir()) for c in cwds), "no launch wrote anything outside --out"
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.suffix == ".safetensors") == [
        f"step_{s:08d}.safetensors" for s in (2, 3, 4)
    ], "one writer: exactly the last --keep-last checkpoints, no temporaries"
    assert_same_run(reference, out)


def test_sigkill_of_one_worker_restarts_the_group_and_resumes_by_itself(data, reference, tmp_path):
    out = tmp_path / "run"
    p = sh.launch(sh.torchrun_single(2, *train_args(data, out), max_restarts=2))
    assert sh.wait_for(out / "checkpoints" / "step_00000001.safetensors", [p], 240), p.stderr.read() if p.poll() is not None else ""
    victim = sh.worker_pid(p.pid, rank=0)  # rank 0: the process that writes checkpoints
    assert victim is not None
    os.kill(victim, signal.SIGKILL)  # mid-epoch 1 (step 1 of 2 done)
    [(rc, err)] = sh.finish([p], 300)
    assert rc == 0, err  # without auto-resume the restarted rank 0 refuses the non-empty --out and torchrun gives up
    assert_same_run(reference, out)


def test_a_killed_node_started_again_resumes_the_job(data, reference, tmp_path):
    out, port, rid = tmp_path / "run", sh.free_port(), uuid.uuid4().hex[:8]
    cmds = [sh.torchrun_node(i, 2, port, rid, *train_args(data, out), max_restarts=2) for i in range(2)]
    nodes = [sh.launch(c) for c in cmds]
    assert sh.wait_for(out / "checkpoints" / "step_00000001.safetensors", nodes, 240), "the job did not start"
    sh.kill_node(nodes[1])  # node 1: its torchrun agent and its worker (node 0 hosts the rendezvous store)
    time.sleep(4)  # the rendezvous drops the dead node after two missed keep-alives (scaling_helpers.torchrun_node)
    again = sh.launch(cmds[1])  # the same command line, as a scheduler would requeue the node
    for rc, err in sh.finish([nodes[0], again], 300):
        assert rc == 0, err
    assert_same_run(reference, out)


def test_sync_bn_is_refused_on_the_cpu_in_one_line(data, tmp_path):
    r = CliRunner().invoke(main, [*train_args(data, tmp_path / "run"), "--sync-bn"])
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: --sync-bn needs CUDA"), r.output
    assert not (tmp_path / "run").exists(), "refused before the run folder is claimed"


@pytest.mark.gpu
def test_sync_bn_trains_under_torchrun_on_cuda(data, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    nproc = min(2, torch.cuda.device_count())  # NCCL takes one GPU per rank; with one GPU there is nothing to synchronise
    out = tmp_path / "run"
    args = [a if a != "cpu" else "cuda" for a in train_args(data, out)] + ["--sync-bn", "--max-steps", "2"]
    r = subprocess.run(sh.torchrun_single(nproc, *args), cwd=sh.ROOT, env=sh.ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["options"]["sync_bn"] is True
    net = model.load(out / "checkpoints" / "step_00000002.safetensors")  # SyncBatchNorm weights load into the plain network
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in net.modules())
