"""mypy over the packages mypy.ini lists (common, model, engines, dali_pipelines): no type errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean_on_the_checked_packages():
    pytest.importorskip("mypy", reason="mypy comes with the [test] extra (pip install -e .[test])")
    p = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
