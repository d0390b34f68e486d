"""Scaling on one machine: training steps/s with 1 process, 2 processes on one node and 2 torchrun "nodes" (c10d on
localhost, gloo), and the time from SIGKILLing a worker under `torchrun --max-restarts` to its resumed step.

All runs in one invocation, one after the other, so their ratios are comparable; absolute numbers depend on
the machine's load. Writes scaling.json and scaling.md into OUT.

    python scripts/bench_scaling.py OUT [--videos 24] [--epochs 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slowfast_trt.common.environment import environment  # noqa: E402
from slowfast_trt.data.synth import synth  # noqa: E402
from tests import scaling_helpers as sh  # noqa: E402

PRESET = "slowfast_tiny_4x16"
BATCH = 2  # clips per process
PROCS = {"1 process": 1, "2 processes, 1 node": 2, "2 nodes x 1 process": 2}


def train_args(data: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "--preset", PRESET, "--train", str(data / "train.csv"), "--out", str(out), "--epochs", str(epochs),
            "--batch-size", str(BATCH), "--lr", "0.05", "--amp", "fp32", "--device", "cpu", "--threads", "1",
            "--save-every", "1", "--quiet"]  # fmt: skip


def steps_per_s(out: Path, procs: int) -> float:
    """Steps/s over the epochs after the first (warm-up excluded), from the trainer's own clips/s per epoch."""
    rows = list(csv.DictReader(open(out / "metrics.csv")))[1:]
    return statistics.mean(float(r["train_clips_per_s"]) for r in rows) / (BATCH * procs)


def run(cmds: list[list[str]], timeout: float = 900) -> None:
    for rc, err in sh.finish([sh.launch(c) for c in cmds], timeout):
        if rc != 0:
            raise SystemExit(f"a launch failed ({rc}):\n{err}")


def kill_to_resume(data: Path, out: Path, epochs: int) -> dict:
    """SIGKILL rank 0 right after checkpoint 2; seconds until checkpoint 3 (restart, start-up, resume, one step)."""
    p = sh.launch(sh.torchrun_single(2, *train_args(data, out, epochs), max_restarts=2))
    ckpt = out / "checkpoints"
    if not sh.wait_for(ckpt / "step_00000002.safetensors", [p], 600):
        raise SystemExit("the run did not reach step 2")
    os.kill(sh.worker_pid(p.pid, 0), signal.SIGKILL)
    t_kill = time.perf_counter()
    sh.wait_for(ckpt / "step_00000003.safetensors", [p], 600)
    resumed_s = time.perf_counter() - t_kill
    [(rc, err)] = sh.finish([p], 900)
    if rc != 0:
        raise SystemExit(f"the restarted run failed:\n{err}")
    return {"kill_to_next_checkpoint_s": resumed_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth(tmp / "data", videos=a.videos, seed=5, frames=72, val_fraction=0.25, workers=2, progress=False)
        data, e = tmp / "data", a.epochs
        train_videos = len(list(csv.DictReader(open(data / "train.csv"))))
        run([[sys.executable, "-m", "slowfast_trt", *train_args(data, tmp / "p1", e)]])
        run([sh.torchrun_single(2, *train_args(data, tmp / "p2", e))])
        port, rid = sh.free_port(), uuid.uuid4().hex[:8]
        run([sh.torchrun_node(i, 2, port, rid, *train_args(data, tmp / "n2", e)) for i in range(2)])
        rates = {"1 process": steps_per_s(tmp / "p1", 1), "2 processes, 1 node": steps_per_s(tmp / "p2", 2)}
        rates["2 nodes x 1 process"] = steps_per_s(tmp / "n2", 2)
        step_s = 1 / rates["2 processes, 1 node"]
        restart = kill_to_resume(data, tmp / "k", e)
    base = rates["1 process"]
    result = {
        "benchmark": "scaling",
        **environment(),
        "preset": PRESET,
        "batch_per_process": BATCH,
        "train_videos": train_videos,
        "steps_per_s": rates,
        "ratio_to_1_process": {k: v / base for k, v in rates.items()},
        "clips_per_s_ratio_to_1_process": {k: v * PROCS[k] / base for k, v in rates.items()},
        **restart,
        "step_s_2_processes": step_s,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Scaling on one machine: {result['device']}",
        "",
        f"{PRESET}, {BATCH} clips per process, fp32, one thread per process, gloo. Ratios are what this run measured.",
        "",
        "| launch | steps/s ratio to 1 process | clips/s ratio to 1 process |",
        "|---|---:|---:|",
        *(f"| {k} | {result['ratio_to_1_process'][k]:.2f} | {result['clips_per_s_ratio_to_1_process'][k]:.2f} |" for k in rates),
        "",
        f"SIGKILL of rank 0 to the next step checkpoint of the restarted group: {restart['kill_to_next_checkpoint_s']:.1f} s "
        f"(one step takes {step_s:.2f} s at 2 processes).",
        "",
    ]
    (a.out / "scaling.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
