"""`slowfast serve`: the bundled tritonserver on a generated repository, with the environment fixes it needs.

Runs from any interpreter (stdlib only here): the server binary, its Python backend and stub come from Triton's
venv (`serving.env`). The server listens on 127.0.0.1 only, loads the models of the repository that its backends
can run (`serving.repository.servable`: the Python-backend models and the CPU ensemble here), and `start()` returns
once every one of them is READY. A busy port is refused before anything starts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.serving.env import ensure_env
from slowfast_trt.serving.repository import read_manifest, servable

HOST = "127.0.0.1"


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int = 3) -> list[int]:
    """`n` distinct ports free on 127.0.0.1 right now (for tests and `--http-port 0`)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


class TritonServer:
    """One tritonserver process on `repo` (a context manager: start on enter, stop on exit)."""

    def __init__(
        self,
        repo: str | Path,
        *,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        models: list[str] | None = None,
        log_path: str | Path | None = None,
        env=None,
        echo=None,
    ):
        self.repo = Path(repo).resolve()
        manifest = read_manifest(self.repo)
        loadable, self.skipped = servable(manifest)
        if models:
            unknown = [m for m in models if m not in manifest["models"]]
            if unknown:
                raise SlowFastError(f"model {unknown[0]} is not in {self.repo} (it has {', '.join(manifest['models'])})")
            blocked = [m for m in models if m not in loadable]
            if blocked:
                raise SlowFastError(f"model {blocked[0]} cannot be served by the bundled tritonserver: {self.skipped[blocked[0]]}")
            loadable = list(models)
        if not loadable:
            raise SlowFastError(f"{self.repo}: no model the bundled tritonserver can load")
        self.models = loadable
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"tritonserver-{os.getpid()}-{http_port}.log"
        self._env = env
        self.echo = echo or (lambda s: None)
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.ports['metrics']}/metrics"

    def check_ports(self) -> None:
        if len(set(self.ports.values())) != 3:
            raise SlowFastError(f"the HTTP, gRPC and metrics ports must differ, got {self.ports}")
        for kind, port in self.ports.items():
            if not port_free(port):
                raise SlowFastError(f"port {port} ({kind}) on {HOST} is busy; stop what uses it or pass --{kind}-port with a free port")

    def command(self) -> list[str]:
        env = self._env
        cmd = [
            str(env.tritonserver),
            "--model-repository",
            str(self.repo),
            "--backend-directory",
            str(env.backends),
            "--http-address",
            HOST,
            "--http-port",
            str(self.ports["http"]),
            "--grpc-address",
            HOST,
            "--grpc-port",
            str(self.ports["grpc"]),
            "--metrics-address",
            HOST,
            "--metrics-port",
            str(self.ports["metrics"]),
            "--allow-metrics",
            "true",
            "--model-control-mode",
            "explicit",
            "--strict-readiness",
            "true",
            "--exit-timeout-secs",
            "30",
            "--log-verbose",
            "0",
            "--backend-config",
            "python,shm-default-byte-size=16777216",
        ]
        for m in self.models:
            cmd += ["--load-model", m]
        return cmd

    def start(self, timeout: float = 180.0) -> TritonServer:
        self.check_ports()
        if self._env is None:
            self._env = ensure_env(self.echo)
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self._env.server_env(), cwd=str(self.repo), start_new_session=True
            )
        finally:
            log.close()
        self.started = time.perf_counter()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self, n: int = 400) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
        except OSError:
            return []

    def failure(self) -> str:
        """The most telling error line of the server log."""
        lines = self._log_tail()
        for key in ("failed to load", "error:", "Error", "E1", "E0"):
            hits = [ln for ln in lines if key in ln]
            if hits:
                return hits[-1].strip()[:400]
        return lines[-1].strip()[:400] if lines else "no log output"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        pending = list(self.models)
        while True:
            if self.proc.poll() is not None:
                raise SlowFastError(
                    f"tritonserver exited with status {self.proc.returncode} while loading: {self.failure()} (log: {self.log_path})"
                )
            pending = [m for m in pending if http_get(f"{self.http_url}/v2/models/{m}/ready", 1.0)[0] != 200]
            if not pending and http_get(f"{self.http_url}/v2/health/ready", 1.0)[0] == 200:
                self.ready_s = time.perf_counter() - self.started
                return
            if time.perf_counter() > deadline:
                raise SlowFastError(
                    f"tritonserver did not get {pending} ready within {timeout:.0f} s: {self.failure()} (log: {self.log_path})"
                )
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 45.0) -> int | None:
        """Stop the server (SIGINT, as Ctrl-C would; SIGKILL after `timeout`); returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)  # its own session: the stub processes go with it
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        """Kill the server at once (SIGKILL to its process group), as a crash would."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def model_index(self) -> list[dict]:
        req = urllib.request.Request(f"{self.http_url}/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def __enter__(self) -> TritonServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
