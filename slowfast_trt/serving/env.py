"""Triton's own virtual environment: the bundled tritonserver, tritonclient and the Python backend's packages.

PyTriton 0.7.0 ships a real `tritonserver` (2.51, Python backend only) and tritonclient 2.51 comes with it; both
need numpy < 2, and with numpy 2 a Python-backend model loads READY and then returns empty outputs. The project
itself runs on numpy 2, so the server, the Python backend and every client live in a second venv
(`.venv-triton` in the project root, or $SLOWFAST_TRITON_VENV), created on first use and reused, stamped like
scripts/env.sh so a re-run is a no-op. In a checkout that is not writable (a read-only mount, another user's
install) the venv, its lock and the backend directory live in the user's cache folder instead
($XDG_CACHE_HOME/slowfast-trt, else ~/.cache/slowfast-trt). The project is installed into it (`pip install --no-deps -e`), so the
generated `model.py` files import `engines`, `dali_pipelines` and `serving` from this checkout.

The Python-backend stub links `libpython3.X.so.1.0`; with a pyenv interpreter the loader would find Debian's
libpython instead and the stub dies (`'_thread.RLock' object has no attribute '_recursion_count'` on 3.11.7), so
`server_env()` puts the interpreter's LIBDIR first on LD_LIBRARY_PATH and the venv's bin/ first on PATH.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy

from slowfast_trt.common.errors import SlowFastError

ROOT = Path(__file__).resolve().parents[2]  # the checkout: setup.py and the slowfast_trt package
PYTRITON = "nvidia-pytriton==0.7.0"
TRITONCLIENT = "tritonclient[grpc,http]==2.51.0"  # [all] also wants cuda-python, which has no use on a CPU
TORCH = "torch==2.13.0"
REQUIREMENTS = [
    "numpy<2",
    PYTRITON,
    TRITONCLIENT,
    TORCH,
    "onnxruntime>=1.17",
    "onnx>=1.15",
    "nvidia-dali-cuda120>=1.40",
    "safetensors>=0.4",
    "av>=12",
    "click>=8.0",
    "tqdm>=4.60",
    "pillow>=9",
]
STAMP = ".slowfast-triton-stamp"


def user_cache() -> Path:
    """The user's cache folder for what the checkout cannot hold ($XDG_CACHE_HOME/slowfast-trt, else ~/.cache/slowfast-trt)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slowfast-trt"


def writable(folder: Path) -> bool:
    """Whether files can be created in `folder` (tried, not guessed from mode bits: root ignores those, a read-only
    mount does not)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".slowfast-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def venv_path() -> Path:
    """$SLOWFAST_TRITON_VENV, else `.venv-triton` in the checkout (when it is ready there or the checkout is
    writable), else the user's cache folder."""
    if os.environ.get("SLOWFAST_TRITON_VENV"):
        return Path(os.environ["SLOWFAST_TRITON_VENV"])
    local = ROOT / ".venv-triton"
    if _stamped(local) is not None or writable(ROOT):
        return local
    return user_cache() / "venv-triton"


def lock_path(venv: Path) -> Path:
    """The lock that lets one process build `venv` while others wait: beside it, or in the user's cache folder
    when that folder is not writable (a ready venv in a read-only checkout)."""
    name = f".{venv.name.lstrip('.')}.lock"
    return venv.parent / name if writable(venv.parent) else user_cache() / name


@dataclass(frozen=True)
class TritonEnv:
    """Paths of a ready Triton venv (or of this interpreter, when it has numpy<2 and the packages itself)."""

    venv: Path
    libdir: str  # the interpreter's LIBDIR (its libpython3.X.so.1.0), for the Python-backend stub
    purelib: str  # its site-packages
    version: str  # "3.11"
    cache: Path | None = None  # where the backend directory goes when `venv` is not ours to write into

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def site(self) -> Path:
        return Path(self.purelib)

    @property
    def tritonserver(self) -> Path:
        return self.site / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        """A backend directory with the Python backend and the stub for this interpreter's version."""
        return (self.cache or self.venv) / "triton-backends"

    def server_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment tritonserver (and through it the Python-backend stub) must run with."""
        env = dict(os.environ if base is None else base)
        libs = [self.libdir, str(self.site / "nvidia_pytriton.libs")]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(libs)
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env.pop("PYTHONHOME", None)
        env["PYTHONNOUSERSITE"] = "1"
        # The generated model.py files import serving.backend from the checkout that started the server.
        env["PYTHONPATH"] = str(ROOT) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    @property
    def perf_libs(self) -> Path:
        """Links under the sonames perf_analyzer asks for (libb64.so.0d, libcudart.so.12) to PyTriton's renamed copies."""
        return (self.cache or self.venv) / "perf-analyzer-libs"

    def client_env(self) -> dict[str, str]:
        """The environment for client tools run from the venv (perf_analyzer needs libb64 and libcudart from PyTriton)."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(
            p for p in (str(self.perf_libs), str(self.site / "nvidia_pytriton.libs"), env.get("LD_LIBRARY_PATH")) if p
        )
        env["PYTHONNOUSERSITE"] = "1"
        return env


def _want() -> str:
    h = hashlib.sha256()
    h.update("\n".join(REQUIREMENTS).encode())
    h.update(Path(__file__).read_bytes())
    h.update((ROOT / "setup.py").read_bytes())
    return h.hexdigest()


def _stamped(venv: Path) -> dict | None:
    try:
        info = json.loads((venv / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if info.get("want") == _want() and (venv / "bin" / "python").exists() else None


def has_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def _pip(python: Path, args: list[str], echo: Callable[[str], None]) -> None:
    cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        tail = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip() and "is ignored" not in ln][-3:]
        raise SlowFastError(f"pip install {' '.join(args)} failed in the Triton venv: {' / '.join(tail)[:400]}")


def current_env() -> TritonEnv | None:
    """This interpreter as the Triton environment, when it can be one: numpy<2 with PyTriton, tritonclient, torch and DALI
    importable (then no second venv is needed); None otherwise (the project's own venv has numpy 2)."""
    if int(numpy.__version__.split(".")[0]) >= 2:
        return None
    if any(importlib.util.find_spec(m) is None for m in ("pytriton", "tritonclient", "torch", "nvidia.dali", "onnxruntime")):
        return None
    cache = user_cache() / f"py{sys.version_info[0]}.{sys.version_info[1]}"
    return TritonEnv(
        Path(sys.prefix),
        sysconfig.get_config_var("LIBDIR"),
        sysconfig.get_paths()["purelib"],
        f"{sys.version_info[0]}.{sys.version_info[1]}",
        cache=cache,
    )


def ensure_env(echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> TritonEnv:
    """The Triton environment: this interpreter if it qualifies (`current_env`), else the Triton venv, created or refreshed
    when its stamp does not match (first use: a few minutes, ~1 GB)."""
    here = current_env()
    if here is not None and not os.environ.get("SLOWFAST_TRITON_VENV"):
        here.backends.parent.mkdir(parents=True, exist_ok=True)
        _prepare_backends(here)
        _prepare_perf_libs(here)
        return here
    venv = venv_path()
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(venv)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)  # parallel test workers / commands wait for one builder
        info = _stamped(venv)
        if info is None:
            info = _build(venv, echo)
        cache = None if writable(venv) else user_cache() / f"py{info['version']}"  # the backend directory goes there
        env = TritonEnv(venv, info["libdir"], info["purelib"], info["version"], cache=cache)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
        _prepare_backends(env)
        _prepare_perf_libs(env)
        return env


def _build(venv: Path, echo: Callable[[str], None]) -> dict:
    base = getattr(sys, "_base_executable", None) or sys.executable
    if not (venv / "bin" / "python").exists():
        echo(f"[serve] creating Triton's venv {venv} (numpy<2, {PYTRITON}, tritonclient 2.51, CPU torch; once)")
        r = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
        if r.returncode:
            raise SlowFastError(f"cannot create {venv}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    py = venv / "bin" / "python"
    echo(f"[serve] installing Triton's packages into {venv}")
    if subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode:
        # As scripts/env.sh: without a GPU the CPU build of torch (a local wheel first), never the multi-GB CUDA build.
        if has_gpu():
            _pip(py, [TORCH], echo)
        else:
            for args in (["--no-index", "--no-deps", TORCH], ["--no-deps", TORCH, "--index-url", "https://download.pytorch.org/whl/cpu"]):
                with contextlib.suppress(SlowFastError):
                    _pip(py, args, echo)
                    break
            else:
                raise SlowFastError(
                    "no CPU build of torch 2.13.0 found (local wheels or download.pytorch.org/whl/cpu); "
                    "install one into the Triton venv by hand or set SLOWFAST_TRITON_VENV to a ready venv"
                )
    _pip(py, REQUIREMENTS, echo)
    _pip(py, ["--no-deps", "-e", str(ROOT)], echo)
    probe = (
        "import json, sysconfig, numpy, tritonclient.grpc, tritonclient.http, pytriton; "
        "print(json.dumps({'libdir': sysconfig.get_config_var('LIBDIR'), 'purelib': sysconfig.get_paths()['purelib'], "
        "'numpy': numpy.__version__, 'version': '%d.%d' % __import__('sys').version_info[:2]}))"
    )
    r = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    if r.returncode:
        raise SlowFastError(f"the Triton venv {venv} does not import its packages: {(r.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    info = json.loads(r.stdout) | {"want": _want()}
    if int(info["numpy"].split(".")[0]) >= 2:
        raise SlowFastError(f"the Triton venv got numpy {info['numpy']}; the Python backend needs numpy<2")
    (venv / STAMP).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    echo(f"[serve] Triton venv ready: {venv}")
    return info


def _prepare_backends(env: TritonEnv) -> None:
    """backends/python = PyTriton's Python backend + the stub built for this interpreter's version (as PyTriton does)."""
    dst = env.backends / "python"
    stub = dst / "triton_python_backend_stub"
    if stub.exists():
        return
    src = env.site / "pytriton" / "tritonserver"
    version = env.version
    src_stub = src / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not src_stub.exists():
        raise SlowFastError(f"PyTriton has no Python-backend stub for Python {version} (3.8-3.13 are bundled)")
    tmp = env.backends / "python.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src / "backends" / "python", tmp, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(src_stub, tmp / "triton_python_backend_stub")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def _prepare_perf_libs(env: TritonEnv) -> None:
    """PyTriton's wheel carries libb64 and libcudart under auditwheel's hashed names; perf_analyzer (from the
    tritonclient wheel) links the plain sonames, so give it links with those names."""
    libs = env.site / "nvidia_pytriton.libs"
    env.perf_libs.mkdir(parents=True, exist_ok=True)
    for soname, pattern in (("libb64.so.0d", "libb64-*.so.0d"), ("libcudart.so.12", "libcudart-*.so.12*")):
        link = env.perf_libs / soname
        found = sorted(libs.glob(pattern))
        if found and not link.exists():
            link.symlink_to(found[0])


def client_available() -> bool:
    """Whether this interpreter can run the clients itself (tritonclient imports with numpy<2)."""
    try:
        import tritonclient.grpc  # noqa: F401
        import tritonclient.http  # noqa: F401
    except Exception:
        return False
    return int(numpy.__version__.split(".")[0]) < 2


def run_module(
    module: str, args: list[str], *, env: TritonEnv | None = None, timeout: float | None = None, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run `python -m module args` in the Triton venv (argument list, no shell)."""
    env = env or ensure_env()
    e = env.client_env()
    e["PYTHONPATH"] = str(ROOT) + (":" + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return subprocess.run(
        [str(env.python), "-m", module, *args], env=e, timeout=timeout, capture_output=capture, text=capture, cwd=str(ROOT)
    )
