"""Issue 29 ("Faults 3"), classes 2 and 6: every size that comes from outside (labels, checkpoint configs, options)
is bounded by the data and by the memory the process may have before anything is allocated, and numeric options are
finite and in range. Each refusal is one line naming the value, where it came from and the limit."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.data.manifest import read_manifest, write_manifest
from slowfast_trt.data.synth import synth
from tests.helpers import rewrite_config

pytest.importorskip("av")

PRESET = "slowfast_tiny_4x16"
HUGE = 10**12  # more than any machine's memory in any unit this project allocates


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 tiny videos (one per class), all in train.csv."""
    out = tmp_path_factory.mktemp("synth")
    synth(out, videos=8, seed=5, frames=72, val_fraction=0.0, workers=1, progress=False)
    return out


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def _one_error_line(code: int, output: str) -> str:
    lines = [ln for ln in re.split(r"[\r\n]+", output) if ln.strip() and not ln.startswith(("warning:", "note:")) and "%|" not in ln]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in output, (code, output)
    return lines[0]


def _no_classes_copy(data: Path, tmp: Path, label: int) -> Path:
    """train.csv's rows (absolute paths) in a folder without classes.txt, the first row's label replaced by `label`."""
    m = read_manifest(data / "train.csv")
    entries = [e.__class__(m.resolve(e), label if i == 0 else e.label) for i, e in enumerate(m.entries)]
    out = tmp / "nocls" / "train.csv"
    out.parent.mkdir()
    write_manifest(out, entries)
    return out


def test_bound_names_value_source_and_limit_without_allocating():
    """The one bound: a size whose allocation would not fit the process's memory is refused in one line."""
    from slowfast_trt.common.bounds import check_fits, memory_limit

    limit = memory_limit()
    assert 2**26 < limit < 2**60
    assert check_fits("x", 10, "the test", lambda n: n * 8) == 10
    with pytest.raises(SlowFastError) as e:
        check_fits("--batch-size", HUGE, "the command line", lambda n: n * 2**20)
    msg = str(e.value)
    assert "\n" not in msg and f"--batch-size={HUGE}" in msg and "the command line" in msg, msg
    assert f"limit {limit // 2**20}" in msg, msg


def test_label_ids_far_beyond_the_data_without_classes_txt_are_one_line(data, tmp_path):
    """Class 2: label 10**12 with no classes.txt in `data check`, `train` and `data prepare` of a PySlowFast list."""
    manifest = _no_classes_copy(data, tmp_path, HUGE)
    for args in (
        ["data", "check", manifest, "--quiet"],
        ["train", "--preset", PRESET, "--train", manifest, "--out", tmp_path / "run", "--device", "cpu", "--quiet"],
    ):
        msg = _one_error_line(*_cli(*args))
        assert f"label={HUGE}" in msg and str(manifest) in msg and "classes.txt" in msg and "limit" in msg, msg
    listing = tmp_path / "list" / "videos.txt"
    listing.parent.mkdir()
    m = read_manifest(data / "train.csv")
    first = m.resolve(m.entries[0])
    listing.write_text(f"{first} {HUGE}\n")
    msg = _one_error_line(*_cli("data", "prepare", listing, tmp_path / "prep", "--short-side", "32", "--quiet"))
    assert f"label={HUGE}" in msg and str(listing) in msg and "limit" in msg, msg


def test_checkpoint_config_sizes_are_bounded_before_allocation(data, tmp_path):
    """Class 2: frame counts and crop sizes inside a checkpoint's config (the weights fit any of them)."""
    ckpt = tmp_path / "m.safetensors"
    model.save(model.build(PRESET, num_classes=8), ckpt)
    for field, value in (("num_frames", HUGE), ("test_crop_size", 32 * 10**7), ("crop_size", 32 * 10**7)):
        bad = rewrite_config(ckpt, tmp_path / f"{field}.safetensors", **{field: value})
        msg = _one_error_line(
            *_cli("eval", "--ckpt", bad, "--data", data / "train.csv", "--device", "cpu", "--clips", "1", "--crops", "1", "--quiet")
        )
        assert f"{field}={value}" in msg and str(bad) in msg and "limit" in msg, msg


@pytest.mark.parametrize(
    "option,value", [("--batch-size", HUGE), ("--crop", 32 * 10**7), ("--num-classes", HUGE)], ids=["batch", "crop", "classes"]
)
def test_absurd_train_sizes_are_one_line_before_training(data, tmp_path, option, value):
    """Class 2: `train --batch-size/--crop/--num-classes` at absurd values."""
    msg = _one_error_line(
        *_cli(
            "train",
            "--preset",
            PRESET,
            "--train",
            data / "train.csv",
            "--out",
            tmp_path / "run",
            "--device",
            "cpu",
            "--quiet",
            option,
            value,
        )
    )
    assert str(value) in msg and option in msg and "limit" in msg, msg
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_eval_batch_beyond_the_videos_is_cut_to_the_data(data, tmp_path):
    """Class 2: `eval --batch-size` far beyond the clips to score allocates for the clips there are, not for the option."""
    ckpt = tmp_path / "m.safetensors"
    model.save(model.build(PRESET, num_classes=8), ckpt)
    code, out = _cli("eval", "--ckpt", ckpt, "--data", data / "train.csv", "--device", "cpu", "--clips", "1", "--crops", "1",
                     "--batch-size", HUGE, "--quiet", "--out", tmp_path / "ev")  # fmt: skip
    assert code == 0, out
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["batch_size"] == 8


def test_prepare_frame_size_and_worker_count_are_bounded(data, tmp_path):
    """Class 2: `data prepare --short-side` sizes every frame, `--workers` the processes spawned; both are options."""
    from slowfast_trt.data import parallel

    msg = _one_error_line(*_cli("data", "prepare", data / "train.csv", tmp_path / "prep", "--short-side", 2 * 10**6, "--quiet"))
    assert f"--short-side={2 * 10**6}" in msg and "limit" in msg, msg
    assert not (tmp_path / "prep" / "rejects.csv").exists() or "videos" not in (tmp_path / "prep" / "rejects.csv").read_text()
    with pytest.raises(SlowFastError, match=r"--workers=1000000 .* limit \d+"):
        list(parallel.run_parallel(abs, list(range(10**6)), workers=10**6))


def test_eval_clips_are_bounded_by_the_plans_they_make(data, tmp_path):
    """Class 2: `eval --clips K` makes K plans per video before decoding anything."""
    ckpt = tmp_path / "m.safetensors"
    model.save(model.build(PRESET, num_classes=8), ckpt)
    msg = _one_error_line(*_cli("eval", "--ckpt", ckpt, "--data", data / "train.csv", "--device", "cpu", "--clips", HUGE, "--quiet"))
    assert f"--clips={HUGE}" in msg and "8 videos" in msg and "limit" in msg, msg


# ----- class 6: numeric options -----


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_float_options_are_refused_naming_the_option(data, tmp_path, value):
    """Class 6: `train --lr nan|inf` used to exit 0 with NaN weights; `--warmup-epochs nan` gave a traceback."""
    base = ["train", "--preset", PRESET, "--train", data / "train.csv", "--out", tmp_path / "run", "--device", "cpu", "--quiet"]
    for option in ("--lr", "--warmup-epochs", "--dropout"):
        code, out = _cli(*base, option, value)
        assert code == 2 and f"Invalid value for '{option}'" in out and "finite" in out and "Traceback" not in out, out
    assert not (tmp_path / "run").exists()
    code, out = _cli("data", "prepare", data / "train.csv", tmp_path / "prep", "--fps", value)
    assert code == 2 and "Invalid value for '--fps'" in out and "finite" in out, out


def test_train_options_refuse_non_finite_numbers_from_python_too():
    """Class 6: the Python entry point (`training.run.train(**options)`) checks what the CLI's types check."""
    from slowfast_trt.training.run_state import TrainOptions

    for name in ("lr", "warmup_epochs", "momentum", "weight_decay"):
        for value in (float("nan"), float("inf")):
            with pytest.raises(SlowFastError, match=f"--{name.replace('_', '-')} must be a finite number"):
                TrainOptions(out_dir="x", **{name: value})
    with pytest.raises(SlowFastError, match="--lr must be > 0"):
        TrainOptions(out_dir="x", lr=0.0)
    assert TrainOptions(out_dir="x", lr=0.1).lr == 0.1


def test_export_refuses_sizes_training_refuses_and_eval_samples_at_the_artifacts_size(data, tmp_path):
    """Class 6: `export onnx --size 33` was accepted (train refuses crops that are not multiples of 32); an export at
    another size than the checkpoint's test crop is evaluated at its own size instead of being refused."""
    pytest.importorskip("onnxruntime")
    ckpt = tmp_path / "m.safetensors"
    model.save(model.build(PRESET, num_classes=8), ckpt)
    code, out = _cli("export", "onnx", ckpt, "--size", "33", "--no-verify", "--trt-check", "off")
    assert code == 2 and "--size" in out and "multiple of 32" in out, out
    code, out = _cli("train", "--preset", PRESET, "--train", data / "train.csv", "--out", tmp_path / "r", "--crop", "33", "--quiet")
    assert code == 2 and "multiple of 32" in out, out
    onnx = tmp_path / "m96.onnx"
    code, out = _cli("export", "onnx", ckpt, "--out", onnx, "--size", "96", "--no-verify", "--trt-check", "off")
    assert code == 0, out
    code, out = _cli("eval", "--engine", onnx, "--data", data / "train.csv", "--device", "cpu", "--clips", "1", "--crops", "1", "--quiet")
    assert code == 0 and "| 1x1 |" in out, out
    shutil.rmtree(tmp_path / "r", ignore_errors=True)
