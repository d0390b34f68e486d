"""scripts/env.sh and the pins it installs: constraints.txt by default, newest in range on request, the [tensorrt]
extra on a GPU machine; run with a fake `nvidia-smi` and a fake venv, so nothing is downloaded or installed."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9/whl/cpu"  # the discard port: refused at once, no network needed


def setup_kwargs() -> dict:
    """The literal keyword arguments of setup.py's `setup(...)` call."""
    call = next(
        n for n in ast.walk(ast.parse((ROOT / "setup.py").read_text())) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"
    )
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if isinstance(k.value, (ast.List, ast.Dict, ast.Constant))}


def locked() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert name and version and "+" not in version, f"not an exact public pin: {line!r}"
            pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def test_every_tested_requirement_is_pinned_inside_its_range():
    kw, pins = setup_kwargs(), locked()
    tested = kw["install_requires"] + [r for extra in ("data", "export", "test") for r in kw["extras_require"][extra]]
    for line in tested:
        req = Requirement(line)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} is not in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt pins {name}=={pins[name]} outside {line!r}"
    assert "slowfast-trt" not in pins and "tensorrt" not in pins  # the project itself and the untested GPU extra


def test_tensorrt_extras_cover_10_and_11_only():
    extras = setup_kwargs()["extras_require"]
    for extra, package in (("tensorrt", "tensorrt"), ("tensorrt-cu12", "tensorrt-cu12")):
        (req,) = [Requirement(r) for r in extras[extra]]
        assert req.name == package
        assert all(req.specifier.contains(v) for v in ("10.0.1", "10.13.0.35", "11.1.0", "11.4.0.106"))
        assert not any(req.specifier.contains(v) for v in ("8.6.1", "9.3.0", "12.0.0"))


def _script_tree(tmp_path: Path) -> Path:
    """A copy of the files env.sh reads, so its stamp can be written without touching the checkout's .venv."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    for name in ("setup.py", "constraints.txt", "scripts/env.sh"):
        shutil.copy(ROOT / name, root / name)
    return root


def _fake_bin(tmp_path: Path, gpu: bool) -> Path:
    """A PATH entry whose `nvidia-smi -L` lists one GPU, or fails as on a machine without a driver."""
    bin_dir = tmp_path / ("gpu-bin" if gpu else "cpu-bin")
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H200 (UUID: GPU-0)"\n' if gpu else "#!/bin/sh\nexit 9\n")
    smi.chmod(0o755)
    return bin_dir


def _fake_venv(tmp_path: Path, torch_cuda: str) -> tuple[Path, Path]:
    """A venv whose python logs each call and answers the CUDA-major question with `torch_cuda`."""
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then echo {torch_cuda}; exit 0; fi\necho "$*" >> {log}\n')
    py.chmod(0o755)
    return venv, log


def _env_sh(root: Path, bin_dir: Path, venv: Path, **env: str) -> subprocess.CompletedProcess:
    full = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLOWFAST_VENV": str(venv),
        "SLOWFAST_TORCH_INDEX": UNREACHABLE,
        **env,
    }
    for k in ("SLOWFAST_DEPS", "SLOWFAST_ENV_DRY_RUN"):
        if k not in env:
            full.pop(k, None)
    return subprocess.run(["bash", str(root / "scripts" / "env.sh")], env=full, capture_output=True, text=True, timeout=120)


def _pip_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if " -m pip install " in ln]


@pytest.mark.parametrize(("torch_cuda", "extra"), [("13", "tensorrt"), ("12", "tensorrt-cu12")])
def test_gpu_branch_adds_the_tensorrt_extra_for_torchs_cuda(tmp_path, torch_cuda, extra):
    venv, _ = _fake_venv(tmp_path, torch_cuda)
    r = _env_sh(ROOT, _fake_bin(tmp_path, gpu=True), venv, SLOWFAST_ENV_DRY_RUN="1")
    assert r.returncode == 0, r.stderr
    first, second = _pip_lines(r.stdout)
    assert f"-c {ROOT / 'constraints.txt'}" in first and first.endswith("-e .[data,export,test,peers]")
    assert second.endswith(f"-e .[data,export,test,peers,{extra}]") and "--extra-index-url" not in r.stdout
    assert "GPU found" in r.stderr and not (venv / ".slowfast-stamp").exists()


def test_cpu_branch_without_the_cpu_index_holds_torch_and_adds_no_tensorrt(tmp_path):
    venv = tmp_path / "none"
    r = _env_sh(ROOT, _fake_bin(tmp_path, gpu=False), venv, SLOWFAST_ENV_DRY_RUN="1")
    assert r.returncode == 0, r.stderr
    (line,) = _pip_lines(r.stdout)
    torch_pin = f"torch=={locked()['torch']}"
    assert f"-c {ROOT / 'constraints.txt'} {torch_pin} -e .[data,export,test,peers]" in line and "tensorrt" not in line
    assert f"{UNREACHABLE} does not answer" in r.stderr and not venv.exists()  # a dry run creates nothing
    latest = _pip_lines(_env_sh(ROOT, _fake_bin(tmp_path, gpu=False), venv, SLOWFAST_ENV_DRY_RUN="1", SLOWFAST_DEPS="latest").stdout)
    assert len(latest) == 1 and "constraints.txt" not in latest[0] and torch_pin in latest[0]


def test_unknown_deps_mode_is_one_line_and_exit_2(tmp_path):
    r = _env_sh(ROOT, _fake_bin(tmp_path, gpu=False), tmp_path / "none", SLOWFAST_DEPS="newest")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: SLOWFAST_DEPS must be") and len(r.stderr.splitlines()) == 1


def test_stamp_skips_an_unchanged_install_and_follows_the_lock_file(tmp_path):
    root = _script_tree(tmp_path)
    venv, log = _fake_venv(tmp_path, "cpu")
    cpu = _fake_bin(tmp_path, gpu=False)

    def installs() -> int:
        r = _env_sh(root, cpu, venv)
        assert r.returncode == 0, r.stderr
        return len(log.read_text().splitlines()) if log.exists() else 0

    assert installs() == 1 and installs() == 1  # installed once, then skipped
    (root / "constraints.txt").write_text((root / "constraints.txt").read_text() + "# refreshed\n")
    assert installs() == 2  # a new lock file is installed
    assert _env_sh(root, cpu, venv, SLOWFAST_DEPS="latest").returncode == 0 and len(log.read_text().splitlines()) == 3
