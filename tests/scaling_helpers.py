"""torchrun launches on localhost for the scaling tests and the scaling benchmark: one node with N processes, or
several "nodes" (separate torchrun launches joined by a c10d rendezvous), and finding a launch's workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# fp32 and one thread: the same arithmetic in every process, so runs can be compared to float tolerance.
# TORCH_DISABLE_SHARE_RDZV_TCP_STORE: each rendezvous round builds its workers' store afresh; with the shared store
# (torch's default) a surviving agent keeps the address of a killed node's store and the next round never forms.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_single(nproc: int, *args: str, max_restarts: int = 0) -> list[str]:
    """One node with `nproc` workers running `python -m slowfast_trt ARGS`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "--max-restarts", str(max_restarts), "--monitor-interval", "0.5", "-m", "slowfast_trt", *args]  # fmt: skip


def torchrun_node(node: int, nnodes: int, port: int, run_id: str, *args: str, max_restarts: int = 0) -> list[str]:
    """Node `node` of `nnodes` one-worker nodes meeting at 127.0.0.1:`port`; node 0 hosts the rendezvous store.

    Keep-alives every second, two missed ones mark a node dead: a killed node leaves the rendezvous in ~2 s, not 15."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", run_id,
            "--rdzv-conf", f"is_host={int(node == 0)},keep_alive_interval=1,keep_alive_max_attempt=2", "--max-restarts", str(max_restarts), "--monitor-interval", "0.5",
            "-m", "slowfast_trt", *args]  # fmt: skip


def launch(cmd: list[str], cwd: Path | None = None) -> subprocess.Popen:
    """Start a launch in its own process group (so a whole "node" can be killed), stderr captured."""
    return subprocess.Popen(
        cmd, cwd=cwd or ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    """Wait for every launch; (return code, stderr tail) each, killing what is still running at the deadline."""
    deadline, out = time.time() + timeout, []
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate()
        out.append((p.returncode, (err or "")[-3000:]))
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return kids


def worker_pid(agent: int, rank: int) -> int | None:
    """The process id of the worker with global `rank` that the torchrun agent `agent` started, if it runs now."""
    for kid in _children(agent):
        try:
            env = dict(x.split("=", 1) for x in (Path("/proc") / str(kid) / "environ").read_text().split("\0") if "=" in x)
        except OSError:
            continue
        if env.get("RANK") == str(rank) and "TORCHELASTIC_RUN_ID" in env:
            return kid
    return None


def kill_node(p: subprocess.Popen) -> None:
    """SIGKILL a whole launch, as a node failure would: its agent's process group and each worker, which torchrun
    starts in a session of its own (killing the agent alone leaves the workers training)."""
    workers = _children(p.pid)
    os.killpg(p.pid, signal.SIGKILL)
    for w in workers:
        try:
            os.killpg(w, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()


def wait_for(path: Path, procs: list[subprocess.Popen], timeout: float) -> bool:
    """Poll until `path` exists; False when a launch ended or the time ran out first."""
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            return False
        time.sleep(0.05)
    return True
