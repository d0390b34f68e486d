"""The linter and the formatter pass on the package, the tests and the scripts (settings in ruff.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    exe = Path(sys.executable).with_name("ruff")
    found = str(exe) if exe.exists() else shutil.which("ruff")
    if not found:
        pytest.fail("ruff is not installed; `bash scripts/env.sh` installs it with the [test] extra")
    return found


def test_ruff_check_is_clean():
    out = subprocess.run(
        [_ruff(), "check", "--no-cache", "slowfast_trt", "tests", "scripts"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_format_is_clean():
    out = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", "slowfast_trt", "tests", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, "run `ruff format slowfast_trt tests scripts`:\n" + out.stdout[-4000:] + out.stderr[-2000:]
