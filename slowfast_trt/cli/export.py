"""`slowfast export onnx|int8|engine|compare|check|info`: build-time artifacts, each with a JSON sidecar."""

from __future__ import annotations

import json

import click

from slowfast_trt.benchmarks.compare import compare, to_markdown
from slowfast_trt.cli.options import batch_size_option, clips_option, crops_option, dali_threads_option, device_option, finite_float
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.engines.sidecar import read_sidecar
from slowfast_trt.export.calibration import DEFAULT_CALIB_CROPS
from slowfast_trt.export.onnx import export_onnx
from slowfast_trt.export.qdq import DEFAULT_PLACEMENT, qdq_summary
from slowfast_trt.export.quantize import DEFAULT_BIAS_CORRECTION, DEFAULT_METHOD, quantize_from_manifest
from slowfast_trt.export.tensorrt import build_engine
from slowfast_trt.export.trt_check import DEFAULT_TRT_CHECK, TRT_CHECKS, check_tensorrt_support, errors_of, trt_majors


def _batch(value: str) -> str | int:
    if value == "dynamic":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter("must be 'dynamic' or a positive integer") from None


def trt_check_option(f):
    return click.option(
        "--trt-check",
        type=click.Choice(TRT_CHECKS),
        default=DEFAULT_TRT_CHECK,
        show_default=True,
        help="Check the written model against TensorRT's documented ONNX support (every major, one, or off); "
        "a node TensorRT refuses is a one-line error and the file is kept for `slowfast export check`.",
    )(f)


def _echo_check(side: dict) -> None:
    record = side.get("tensorrt_check")
    if record:
        majors = ", ".join(f"{m}.x" for m in record["majors"])
        click.echo(f"TensorRT {majors} check: passed, {record['counts']['warnings']} warning(s)")
        for w in record["warnings"]:
            click.echo(f"  warning: {w}")


@click.group("export")
def export() -> None:
    """Export a checkpoint to ONNX and TensorRT plans."""


@export.command("onnx")
@click.argument("ckpt", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="Output .onnx (default: beside the checkpoint).")
@click.option("--opset", default=17, show_default=True, type=click.IntRange(13, 23))
@batch_size_option("batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--size", type=click.IntRange(32, 1024), help="Crop size of the graph's inputs (default: the config's test crop).")
@click.option(
    "--outputs",
    type=click.Choice(["logits", "probs"]),
    default="logits",
    show_default=True,
    help="Graph output: logits, or per-view probabilities.",
)
@click.option("--no-verify", is_flag=True, help="Skip the ONNX Runtime vs PyTorch comparison.")
@trt_check_option
def onnx_cmd(ckpt: str, out: str | None, opset: int, batch: str, size: int | None, outputs: str, no_verify: bool, trt_check: str) -> None:
    """Export CKPT to a two-input (slow, fast) ONNX graph, check it and compare it with PyTorch."""
    r = export_onnx(ckpt, out, opset=opset, batch=_batch(batch), size=size, outputs=outputs, verify=not no_verify, trt_check=trt_check)
    click.echo(f"wrote {r.path} and {r.sidecar_path}")
    if "parity" in r.sidecar:
        p = r.sidecar["parity"]
        click.echo(
            f"ONNX Runtime vs PyTorch: max abs diff {p['max_abs_diff']:.3g}, top-1 agreement {100 * p['top1_agreement']:.1f}% (batches {p['batches']})"
        )
    _echo_check(r.sidecar)


@export.command("int8")
@click.argument("onnx_path", metavar="ONNX", type=click.Path(dir_okay=False))
@click.option("--calib", "manifest", required=True, type=click.Path(dir_okay=False), help="Manifest of calibration videos.")
@click.option("--clips", default=32, show_default=True, type=click.IntRange(1), help="Calibration clips (one per video).")
@click.option(
    "--method",
    type=click.Choice(["auto", "minmax", "entropy", "percentile", "mse"]),
    default=None,
    help="Activation range calibration: auto (build percentile 99.99/99.9/99.999 and minmax with a moving average, "
    "keep the one whose outputs on the calibration clips are closest to FP32's), ONNX Runtime's calibrators, "
    "or mse (the range with the least squared int8 error per tensor).  [default: auto]",
)
@click.option(
    "--moving-average/--no-moving-average",
    default=True,
    show_default=True,
    help="With minmax: average the per-batch ranges instead of taking the extremes over all clips.",
)
@click.option(
    "--percentile",
    type=finite_float(50, 100, min_open=True),
    default=99.99,
    show_default=True,
    help="With --method percentile: the percentile of |activation| that sets each scale.",
)
@click.option(
    "--placement",
    type=click.Choice(["inputs", "inputs+outputs"]),
    default=None,
    help="Which tensors carry Q/DQ: the inputs of every Conv/Gemm/MatMul (TensorRT's recipe), or their outputs too "
    "(ONNX Runtime's QDQ default).  [default: export.quantize.DEFAULT_PLACEMENT]",
)
@click.option(
    "--bias-correction/--no-bias-correction",
    default=None,
    help="Fold each Conv's mean int8 rounding error into its bias (empirical bias correction).  [default: on]",
)
@click.option(
    "--calib-crops",
    type=click.Choice(["1", "3"]),
    default=None,
    help="Views per calibration clip: the centre crop, or the three test crops.  [default: export.quantize.DEFAULT_CALIB_CROPS]",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Which videos are drawn.")
@click.option("--out", type=click.Path(dir_okay=False), help="Output .onnx (default: NAME.int8.onnx beside ONNX).")
@device_option(help="Where DALI decodes.")
@dali_threads_option()
@click.option("--quiet", is_flag=True, help="No progress bar.")
@trt_check_option
def int8_cmd(
    onnx_path: str,
    manifest: str,
    clips: int,
    method: str,
    moving_average: bool,
    percentile: float,
    placement: str | None,
    bias_correction: bool | None,
    calib_crops: str | None,
    seed: int,
    out: str | None,
    device: str,
    threads: int,
    quiet: bool,
    trt_check: str,
) -> None:
    """Quantize an FP32 ONNX export to a symmetric int8 Q/DQ model calibrated on DALI clips."""
    placement, method = placement or DEFAULT_PLACEMENT, method or DEFAULT_METHOD
    feed = FeedSpec(device=device, threads=threads, num_crops=int(calib_crops or DEFAULT_CALIB_CROPS), skip_bad=None, progress=not quiet)
    path = quantize_from_manifest(
        onnx_path,
        manifest,
        feed,
        clips=clips,
        method=method,
        percentile=percentile,
        moving_average=moving_average,
        placement=placement,
        bias_correction=DEFAULT_BIAS_CORRECTION if bias_correction is None else bias_correction,
        seed=seed,
        out=out,
        trt_check=trt_check,
    )
    s = qdq_summary(path)
    side = read_sidecar(path)
    cal = side["calibration"]
    how = (
        method
        if "chosen" not in cal
        else f"auto: {cal['chosen']}, KL from FP32 " + ", ".join(f"{k} {v:.4f}" for k, v in cal["candidates_kl"].items())
    )
    click.echo(
        f"wrote {path}: {s['quantized_convs']}/{s['convs']} Conv quantized, symmetric={s['symmetric']}, "
        f"{clips} calibration clips ({how}; seed {seed}), Q/DQ on {placement}" + (", bias-corrected" if cal["bias_correction"] else "")
    )
    _echo_check(side)


@export.command("engine")
@click.argument("onnx_path", metavar="ONNX", type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Output plan (default: beside the ONNX model).")
@click.option("--min-batch", default=1, show_default=True, type=click.IntRange(1))
@click.option("--opt-batch", default=8, show_default=True, type=click.IntRange(1))
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(1))
@click.option("--workspace", "workspace_mb", default=4096, show_default=True, type=click.IntRange(64), help="Builder workspace in MB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="Timing cache file to reuse and update.")
def engine_cmd(
    onnx_path: str,
    precision: str,
    out: str | None,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    workspace_mb: int,
    timing_cache: str | None,
) -> None:
    """Build a TensorRT plan from an exported ONNX model (needs TensorRT and an NVIDIA GPU)."""
    path = build_engine(
        onnx_path,
        out,
        precision=precision,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        workspace_mb=workspace_mb,
        timing_cache=timing_cache,
    )
    click.echo(f"wrote {path}")


@export.command("compare")
@click.argument("fp32", type=click.Path(dir_okay=False))
@click.argument("int8", type=click.Path(dir_okay=False))
@click.argument("extra", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--data", "manifest", required=True, type=click.Path(dir_okay=False), help="Manifest of the test videos.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Write result.json and result.md here.")
@clips_option(10, help="K clips per video.")
@crops_option(3)
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1))
@device_option("cpu")
@dali_threads_option("DALI threads.")
@click.option("--engine-threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (default: its own).")
@click.option("--repeats", default=10, show_default=True, type=click.IntRange(1), help="Interleaved speed calls per engine.")
@click.option(
    "--qdq",
    type=click.Choice(["auto", "kernels", "emulate"]),
    default="auto",
    show_default=True,
    help="How ONNX Runtime runs the INT8 model: its int8 kernels, or the Q/DQ semantics TensorRT implements "
    "(auto: emulate on CPUs without VNNI, whose int8 kernels saturate).",
)
@click.option("--with-kernels", is_flag=True, help="With Q/DQ emulation, also evaluate the INT8 file through ONNX Runtime's int8 kernels.")
@click.option("--quiet", is_flag=True)
def compare_cmd(
    fp32, int8, extra, manifest, out_dir, clips, crops, batch_size, device, threads, engine_threads, repeats, qdq, with_kernels, quiet
) -> None:
    """FP32 vs INT8 (and any EXTRA artifacts) in one run over one decode: accuracy per view, top-1 agreement, clips/s."""
    feed = FeedSpec(device=device, batch_size=batch_size, threads=threads, num_clips=clips, num_crops=crops, progress=not quiet)
    r = compare(
        fp32, int8, manifest, out_dir, feed, extra=extra, engine_threads=engine_threads, repeats=repeats, qdq=qdq, with_kernels=with_kernels
    )
    click.echo(to_markdown(r))


@export.command("check")
@click.argument("onnx_path", metavar="ONNX", type=click.Path(exists=True, dir_okay=False))
@click.option("--trt", "trt", type=click.Choice(TRT_CHECKS[:-1]), default="all", show_default=True, help="TensorRT major(s) to check for.")
def check_cmd(onnx_path: str, trt: str) -> None:
    """Check an ONNX model against TensorRT's documented ONNX support: every finding, with node and rule."""
    majors = trt_majors(trt)
    findings = check_tensorrt_support(onnx_path, majors)
    for f in findings:
        click.echo(f"{f.severity}: {f}")
    errors = errors_of(findings)
    versions = ", ".join(f"{m}.x" for m in majors)
    if errors:
        raise SlowFastError(f"{onnx_path}: {len(errors)} node(s) or tensor(s) TensorRT {versions} would refuse (listed above)")
    click.echo(f"{onnx_path}: TensorRT {versions} takes every node ({len(findings)} warning(s))")


@export.command("info")
@click.argument("artifact", type=click.Path(dir_okay=False))
def info_cmd(artifact: str) -> None:
    """Print an artifact's sidecar."""
    click.echo(json.dumps(read_sidecar(artifact), indent=2))
