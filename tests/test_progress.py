"""Progress output: a bar only on a terminal; on a pipe or file, plain lines at most every N seconds and at the end."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from tqdm import tqdm

from slowfast_trt.common.progress import LineProgress, progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_bar_and_a_pipe_gets_lines():
    assert isinstance(progress(total=3, file=_Tty()), tqdm)
    assert isinstance(progress(total=3, file=io.StringIO()), LineProgress)


def test_lines_are_throttled_and_the_last_one_is_always_written():
    out = io.StringIO()
    with progress(total=1000, desc="synth", unit="video", file=out, interval=3600) as bar:
        for _ in range(1000):
            bar.update(1)
        bar.set_postfix(bad=2)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 1 and lines[0].startswith("synth: 1000/1000 video (100.0%)") and lines[0].endswith("bad=2")
    every = io.StringIO()
    for _ in progress(range(3), desc="eval", unit="batch", file=every, interval=0):
        pass
    assert [line.split(" (")[0] for line in every.getvalue().splitlines()] == [
        "eval: 1/3 batch",
        "eval: 2/3 batch",
        "eval: 3/3 batch",
        "eval: 3/3 batch",
    ]


def test_disabled_progress_writes_nothing():
    out = io.StringIO()
    with progress(total=5, file=out, enabled=False, interval=0) as bar:
        bar.update(5)
    assert out.getvalue() == ""


def test_synth_into_a_log_file_has_no_carriage_returns(tmp_path):
    quiet = False
    pytest.importorskip("av")
    log = tmp_path / "log.txt"
    cmd = [
        sys.executable,
        "-m",
        "slowfast_trt",
        "data",
        "synth",
        str(tmp_path / "d"),
        "--videos",
        "8",
        "--frames",
        "24",
        "--workers",
        "1",
        *(["--quiet"] if quiet else []),
    ]
    with open(log, "w") as f:
        subprocess.run(cmd, stderr=f, stdout=subprocess.DEVNULL, check=True, timeout=300)
    text = log.read_text()
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("synth:")]
    assert lines == [] if quiet else (len(lines) >= 1 and lines[-1].startswith("synth: 8/8 video"))
