"""Ctrl-C and SIGTERM in every command (exit 130 / 143 with the resume hint), the per-command temporary folder that
third-party libraries write into, and temporary-folder faults told apart from output-folder ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from slowfast_trt.cli.main import main
from slowfast_trt.common.interrupt import Terminated
from slowfast_trt.common.scratch import clean_stale_scratch, scratch_folder

ROOT = Path(__file__).resolve().parents[1]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("exc,status", [(KeyboardInterrupt, 130), (Terminated, 143)])
@pytest.mark.parametrize(
    "target,args,hint",
    [
        (
            "slowfast_trt.cli.train.run_train",
            ["train", "--preset", "slowfast_tiny_4x16", "--train", "m.csv", "--out", "runs/x"],
            "--resume to continue",
        ),
        ("slowfast_trt.cli.train.evaluate", ["eval", "--ckpt", "c.safetensors", "--data", "m.csv"], "nothing was written"),
        ("slowfast_trt.cli.export.quantize_from_manifest", ["export", "int8", "m.onnx", "--calib", "m.csv"], "run the same command again"),
        ("slowfast_trt.cli.bench.load_manifest_videos", ["bench", "e2e", "m.csv", "c.safetensors"], "run the same command again"),
        ("slowfast_trt.cli.data.check", ["data", "check", "m.csv"], "nothing was written"),
    ],
)
def test_an_interrupt_exits_130_or_143_with_the_resume_hint_in_every_command(monkeypatch, tmp_path, target, args, hint, exc, status):
    """Issue 29, class 7: Ctrl-C gave 'Aborted!' and exit 1 outside the `data` commands; SIGTERM was not handled."""
    monkeypatch.chdir(tmp_path)
    for name in ("m.csv", "m.onnx", "c.safetensors"):
        (tmp_path / name).write_text("x")

    def interrupted(*a, **k):
        raise exc

    monkeypatch.setattr(target, interrupted)
    r = _invoke(*args)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == status, r.output
    assert lines[-1].startswith("interrupted: ") and hint in lines[-1] and "Aborted" not in r.output, r.output


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


def test_sigterm_during_export_int8_exits_143_and_leaves_no_temporary_files(tmp_path):
    """Issue 29, class 7: SIGTERM during calibration left ONNX Runtime's `ort.quant.*` folder in the temp folder."""
    from slowfast_trt import model
    from slowfast_trt.data.synth import synth
    from slowfast_trt.export.onnx import export_onnx

    synth(tmp_path / "data", videos=8, seed=5, frames=72, workers=1, progress=False)
    onnx_path = export_onnx(
        model.save(model.build("slowfast_tiny_4x16", num_classes=8), tmp_path / "tiny.safetensors"), tmp_path / "tiny.onnx"
    ).path
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "slowfast_trt", "export", "int8", str(onnx_path), "--calib", str(tmp_path / "data" / "manifest.csv")]
    p = subprocess.Popen(
        [*cmd, "--clips", "8", "--device", "cpu", "--out", str(tmp_path / "q.onnx"), "--quiet"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 150
        while time.time() < deadline and p.poll() is None and not any(f.name.startswith("ort.quant") for f in _files_under(tmp)):
            time.sleep(0.02)
        assert p.poll() is None, p.stderr.read()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: "), err[-2000:]
    assert _files_under(tmp) == []


def test_a_scratch_folder_of_a_killed_command_is_deleted_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / f"slowfast-pid{dead}-abc").mkdir()
    (tmp_path / f"slowfast-pid{dead}-abc" / "ort.quant.x").mkdir()
    (tmp_path / f"slowfast-pid{os.getppid()}-def").mkdir()  # alive
    (tmp_path / "other").mkdir()
    assert [p.name for p in clean_stale_scratch(tmp_path)] == [f"slowfast-pid{dead}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"slowfast-pid{os.getppid()}-def", "other"])


def test_libraries_write_into_the_commands_scratch_folder_which_is_removed_after(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with scratch_folder() as scratch:
        assert scratch.parent == tmp_path and os.environ["TMPDIR"] == str(scratch)
        with tempfile.TemporaryDirectory(prefix="ort.quant.") as lib:  # what ONNX Runtime's quantizer does
            assert Path(lib).parent == scratch
        (scratch / "left.bin").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == [] and os.environ["TMPDIR"] == str(tmp_path)


def test_an_unusable_temporary_folder_is_named_as_such_not_as_the_output_folder(tmp_path, monkeypatch):
    """Issue 29, class 7: a full or missing temp folder was reported as 'cannot use the output folder'."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    r = _invoke("data", "check", tmp_path / "m.csv")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"error: cannot use the temporary folder {tmp_path / 'missing'} ($TMPDIR): No such file or directory (errno 2); "
        "set TMPDIR to a writable folder, then run the same command again"
    ]


def test_a_full_disk_inside_the_scratch_folder_names_the_temporary_folder(tmp_path, monkeypatch):
    import errno

    monkeypatch.setenv("TMPDIR", str(tmp_path))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(tempfile.gettempdir(), "ort.quant.x", "augmented_model.onnx"))

    monkeypatch.setattr("slowfast_trt.cli.data.check", full)
    r = _invoke("data", "check", tmp_path / "m.csv")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"error: cannot use the temporary folder {tmp_path}: No space left on device (errno 28); "
        "free space there or set TMPDIR to a folder with space, then run the same command again"
    ]


def test_a_read_only_checkout_keeps_the_triton_venv_and_its_lock_in_the_user_cache(read_only_checkout, tmp_path):
    """Issue 29, class 7: `export triton` failed on the Triton-venv lock in a read-only checkout."""
    from slowfast_trt.serving import env

    venv = env.venv_path()
    assert venv == tmp_path / "cache" / "slowfast-trt" / "venv-triton"
    assert env.lock_path(venv) == tmp_path / "cache" / "slowfast-trt" / ".venv-triton.lock"
    assert env.lock_path(read_only_checkout / ".venv-triton") == tmp_path / "cache" / "slowfast-trt" / ".venv-triton.lock"
