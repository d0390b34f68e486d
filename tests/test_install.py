"""`pip install .` puts one top-level package (and its .dist-info) into site-packages, and the command works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not sysconfig.get_config_var("LIBDIR"), reason="needs a CPython with venv support")
def test_pip_install_puts_one_top_level_package(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "setup.py", src)
    shutil.copytree(ROOT / "slowfast_trt", src / "slowfast_trt", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    before = set(os.listdir(site))
    # Build the wheel with this environment's setuptools (no download), then install it as a user would.
    offline = {**os.environ, "PIP_NO_INDEX": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        timeout=300,
        env=offline,
    )
    wheel = next((tmp_path / "dist").glob("slowfast_trt-*.whl"))
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=300,
        env=offline,
    )
    added = sorted(set(os.listdir(site)) - before)
    assert len(added) == 2, added
    assert added[0] == "slowfast_trt" and added[1].startswith("slowfast_trt-") and added[1].endswith(".dist-info"), added
    top = site / added[1] / "top_level.txt"
    if top.exists():
        assert top.read_text().split() == ["slowfast_trt"]
    # The installed command and `python -m` run from the installed copy, not from the checkout; the dependencies
    # (torch, click, ...) come from this environment through a .pth file placed after the count above.
    (site / "zz-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(venv / "bin" / "slowfast"), "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert out.returncode == 0 and "SlowFast" in out.stdout, out.stderr
    where = subprocess.run(
        [str(py), "-c", "import slowfast_trt; print(slowfast_trt.__file__)"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(site)), where
