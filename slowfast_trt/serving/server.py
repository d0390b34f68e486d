"""`slowfast serve`: the bundled tritonserver on a generated repository, with the environment fixes it needs.

Runs from any interpreter (stdlib only here): the server binary, its Python backend and stub come from Triton's
venv (`serving.env`). The server listens on 127.0.0.1 only, loads the models of the repository that its backends
can run (`serving.repository.servable`: the Python-backend models and the CPU ensemble here), and `start()` returns
once every one of them is READY. A busy port is refused before anything starts.

Secure by default (docs/serving.md has the threat model): without a control token the server runs with
`--model-control-mode none` on a view of the repository holding only the models to serve (symbolic links), so no
client can load, replace or unload a model; with one (`--model-control explicit`) the model-repository API answers
only requests carrying the token's header. The shared-memory, trace and logging APIs always need the token (a
random one nobody is told, without model control). The server dies with the process that started it
(PR_SET_PDEATHSIG), so not even a SIGKILL leaves it holding the ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.scratch import current_scratch
from slowfast_trt.serving.env import ensure_env
from slowfast_trt.serving.repository import read_manifest, servable

HOST = "127.0.0.1"
CONTROL_HEADER = "slowfast-control-token"  # lower case: gRPC metadata keys are
GRPC_PREFIX = "triton-grpc-protocol-"  # Triton expects the gRPC restricted-protocol key under this prefix
RESTRICTED = "model-repository,shared-memory,trace,logging"  # the APIs that change what the server runs or writes
PR_SET_PDEATHSIG = 1
MAX_RESTARTS = 5  # crashes `slowfast serve` recovers from before it gives up


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies, however it dies (Linux; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def signal_name(returncode: int | None) -> str | None:
    """'SIGSEGV' for a process killed by a signal (a negative return code), else None."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def control_headers(token: str, protocol: str) -> dict[str, str]:
    """The header (HTTP) or metadata (gRPC) that carries the control token."""
    return {(GRPC_PREFIX if protocol == "grpc" else "") + CONTROL_HEADER: token}


def read_token(path: str | os.PathLike) -> str:
    """The control token in `path` (written by `slowfast serve --model-control explicit`), one line."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise SlowFastError(f"cannot read the control token {path}: {e.strerror or e}; pass the file `slowfast serve` named") from None
    if not token or len(token) > 256 or not token.isascii() or any(c.isspace() for c in token):
        raise SlowFastError(f"{path} does not hold a control token (one line, no spaces); pass the file `slowfast serve` named")
    return token


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
        control_token: str | None = None,
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
        # The default log outlives the command (it is where a failure is explained): beside its scratch folder, not in it.
        logs = current_scratch().parent if current_scratch() else Path(tempfile.gettempdir())
        self.log_path = Path(log_path) if log_path else logs / f"tritonserver-{os.getpid()}-{http_port}.log"
        self._env = env
        self.echo = echo or (lambda s: None)
        self.proc: subprocess.Popen | None = None
        self.control = control_token is not None
        self.token = control_token or secrets.token_urlsafe(32)  # without model control: a token nobody is told
        self._view: Path | None = None
        self.starts = 0

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

    @property
    def control_headers(self) -> dict[str, str]:
        """The HTTP header the restricted APIs (model loading among them) need."""
        return control_headers(self.token, "http")

    def _repository_view(self) -> Path:
        """A folder of links to the models to serve: with model control off Triton loads every model it sees."""
        if self._view is None:
            self._view = Path(tempfile.mkdtemp(prefix="slowfast-serve-view-"))
            for m in self.models:
                (self._view / m).symlink_to(self.repo / m, target_is_directory=True)
        return self._view

    def command(self) -> list[str]:
        env = self._env
        restricted = f"{RESTRICTED}:{CONTROL_HEADER}={self.token}"
        cmd = [
            str(env.tritonserver),
            "--model-repository",
            str(self.repo if self.control else self._repository_view()),
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
            "--http-restricted-api",
            restricted,
            "--grpc-restricted-protocol",
            restricted,
            "--model-control-mode",
            "explicit" if self.control else "none",
            "--strict-readiness",
            "true",
            "--exit-timeout-secs",
            "30",
            "--log-verbose",
            "0",
            "--backend-config",
            "python,shm-default-byte-size=16777216",
        ]
        if self.control:
            for m in self.models:
                cmd += ["--load-model", m]
        return cmd

    def start(self, timeout: float = 180.0, *, check_ports: bool = True) -> TritonServer:
        if check_ports:
            self.check_ports()
        if self._env is None:
            self._env = ensure_env(self.echo)
        log = open(self.log_path, "ab" if self.starts else "wb")  # a restart keeps the crash's log above
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env.server_env(),
                cwd=str(self.repo),
                start_new_session=True,  # its own process group: stop() reaches the backend stubs too
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.starts += 1
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
        """Why the server stopped: the signal that killed it, else the most telling error line of its log (never the
        NVML warning every CPU-only start prints)."""
        sig = signal_name(self.proc.returncode if self.proc else None)
        if sig:
            return f"tritonserver was killed by {sig}" + (
                " (a crash inside Triton)" if sig in ("SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL", "SIGFPE") else ""
            )
        lines = [ln for ln in self._log_tail() if ln.strip() and "NVML" not in ln]
        for key in ("failed to load", "unrecognized option", "error:", "Error", "E1", "E0"):
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

    def restart(self, timeout: float = 180.0) -> TritonServer:
        """Start again after the server died (a crash): what is left of its process group goes first. The ports are
        not probed: the dead server's connections may still linger in TIME_WAIT, which Triton's own bind allows."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its backend stubs
        return self.start(timeout, check_ports=False)

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
        if self._view is not None:
            shutil.rmtree(self._view, ignore_errors=True)
            self._view = None
        return self.proc.returncode

    def kill(self) -> None:
        """Kill the server at once (SIGKILL to its process group), as a crash would."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def model_index(self) -> list[dict]:
        req = urllib.request.Request(f"{self.http_url}/v2/repository/index", data=b"{}", method="POST", headers=self.control_headers)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def __enter__(self) -> TritonServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def write_token(path: str | os.PathLike, token: str) -> Path:
    """Write the control token to `path`, readable by this user only (0600, created so, never widened)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return path


def supervise(server: TritonServer, timeout: float, echo, max_restarts: int = MAX_RESTARTS) -> None:
    """Keep `server` serving until Ctrl-C: a server killed by a signal (a crash, e.g. Triton 2.51's SIGSEGV on a
    form-encoded request) is reported with that reason and started again, at most `max_restarts` times; one that
    exits by itself ends the command with its reason."""
    restarts = 0
    while True:
        while server.alive():
            time.sleep(0.5)
        reason = server.failure()
        if signal_name(server.proc.returncode) is None:
            raise SlowFastError(f"tritonserver exited with status {server.proc.returncode}: {reason} (log: {server.log_path})")
        if restarts >= max_restarts:
            raise SlowFastError(f"{reason}, {restarts + 1} times; not restarting again (log: {server.log_path})")
        restarts += 1
        echo(f"{reason}; restarting it ({restarts} of at most {max_restarts}; log: {server.log_path})")
        server.restart(timeout)
        echo(f"serving again after {server.ready_s:.1f} s")
