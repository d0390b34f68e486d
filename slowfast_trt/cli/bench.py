"""`slowfast bench flops|pipeline|model|e2e|accuracy` and `slowfast report`: thin commands over benchmarks/*; each writes result.json and a Markdown table."""

from __future__ import annotations

import json

import click

from slowfast_trt.benchmarks import accuracy, e2e, pipeline, soak, throughput
from slowfast_trt.benchmarks.report import write_report
from slowfast_trt.cli.flops import flops
from slowfast_trt.cli.options import (
    batch_size_option,
    clips_option,
    crops_option,
    dali_threads_option,
    device_option,
    finite_float,
    int_list,
    threads_option,
)
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import load_manifest_videos
from slowfast_trt.model.zoo import get_config


@click.group("bench")
def bench() -> None:
    """Benchmarks: every one writes result.json and a Markdown table."""


bench.add_command(flops)


@bench.command("pipeline")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option(
    "--preset", default="slowfast_r50_4x16", show_default=True, help="Model preset whose clip geometry (T, tau, alpha, crops) is sampled."
)
@click.option("--crop", type=click.IntRange(32, 1024), help="Override the training crop (the test crop scales with it).")
@batch_size_option("batch", default=8, show_default=True, type=click.IntRange(1), help="Clips per batch.")
@threads_option(help="CPU threads: DALI's, and each DataLoader's worker processes [default: the CPUs this process may use].")
@clips_option(64, help="Clips timed per loader (at most).")
@click.option("--budget", default=8.0, show_default=True, type=finite_float(0.1), help="Seconds timed per loader (at most).")
@click.option("--loaders", help=f"Comma-separated rows to measure [default: all]: {', '.join(pipeline.LOADERS)} (hyphens allowed).")
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write result.json and pipeline.md here.")
@click.option("--quiet", is_flag=True, help="Only warnings and the result: no per-row progress lines.")
def pipeline_cmd(manifest, preset, crop, batch, threads, clips, budget, loaders, device, as_json, out_dir, quiet):
    """Clips/s of the DALI pipelines against PyAV loaders on MANIFEST's videos."""
    overrides = {"crop_size": crop, "test_crop_size": crop * 8 // 7 // 32 * 32 or 32} if crop else {}
    cfg = get_config(preset, **overrides)
    videos = load_manifest_videos(manifest, "benchmark")[1]
    result = pipeline.bench_pipeline(
        videos,
        cfg,
        FeedSpec(device=device, batch_size=batch, threads=threads),
        clips=clips,
        budget=budget,
        loaders=pipeline.parse_loaders(loaders),
        progress=_progress(quiet),
    )
    click.echo(json.dumps(result, indent=2) if as_json else pipeline.to_markdown(result))
    if out_dir:
        paths = pipeline.write_results(result, out_dir)
        click.echo(f"wrote {paths['json']} and {paths['markdown']}", err=True)


@bench.command("soak")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--preset", default="slowfast_r50_4x16", show_default=True, help="Model preset whose clip geometry is sampled.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(4), help="Epochs per loader.")
@batch_size_option("batch", default=8, show_default=True, type=click.IntRange(1), help="Clips per batch.")
@threads_option(help="CPU threads: DALI's, and each DataLoader's worker processes [default: the CPUs this process may use].")
@click.option(
    "--loaders",
    default="dali_train,dali_test",
    show_default=True,
    help=f"Comma-separated loaders to soak: {', '.join(soak.LOADERS)} (hyphens allowed).",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write result.json and soak.md here.")
@click.option("--quiet", is_flag=True, help="Only warnings and the result: no per-epoch progress lines.")
def soak_cmd(manifest, preset, epochs, batch, threads, loaders, device, as_json, out_dir, quiet):
    """Resident memory, open file descriptors and clips/s per epoch of each loader over many epochs of MANIFEST."""
    result = soak.soak(
        load_manifest_videos(manifest, "benchmark")[1],
        get_config(preset),
        FeedSpec(device=device, batch_size=batch, threads=threads),
        loaders=tuple(t.strip().replace("-", "_") for t in loaders.split(",") if t.strip()),
        epochs=epochs,
        progress=_progress(quiet),
    )
    _emit(result, soak.to_markdown(result), as_json, out_dir, soak.write_results)


def _emit(result: dict, markdown: str, as_json: bool, out_dir: str | None, write) -> None:
    click.echo(json.dumps(result, indent=2) if as_json else markdown)
    if out_dir:
        paths = write(result, out_dir)
        click.echo(f"wrote {paths['json']} and {paths['markdown']}", err=True)


def _progress(quiet: bool):
    """Where a benchmark's progress lines go: stderr, or with --quiet only its warnings and skips."""

    def echo(line: str) -> None:
        if not quiet or line.startswith(("warning", "skipped")):
            click.echo(line, err=True)

    return echo


@bench.command("model")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@batch_size_option("batches", callback=int_list, help="Comma-separated batch sizes [default: 1,8,32 on a GPU, 1,4 on the CPU].")
@click.option("--warmup", type=click.IntRange(0), help="Untimed calls per batch size [default: 10 GPU, 2 CPU].")
@click.option("--iters", type=click.IntRange(1), help="Timed calls per batch size [default: 50 GPU, 5 CPU].")
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(["fp32", "bf16", "fp16"]),
    help="Torch precisions for checkpoints (repeatable) [default: all the device supports].",
)
@click.option(
    "--compile",
    "compile_",
    is_flag=True,
    help="Also time torch.compile'd checkpoints (reported as skipped if it fails); compile time shown apart.",
)
@click.option(
    "--tune/--no-tune",
    default=True,
    show_default=True,
    help="On a GPU, also time checkpoints with settings chosen by measurement (memory format, cuDNN autotuning, half weights, CUDA graphs).",
)
@device_option()
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="Intra-op threads for torch and ONNX Runtime (default: their own choice). On a shared CPU, 1 avoids OpenMP spin-waits.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write result.json and model.md here.")
@click.option("--quiet", is_flag=True, help="Only warnings and the result: no per-row progress lines.")
def model_cmd(artifacts, batches, warmup, iters, precisions, compile_, tune, device, threads, as_json, out_dir, quiet):
    """Clips/s and latency p50/p95/p99 of each ARTIFACT per backend, precision and batch size."""
    result = throughput.bench_model(
        list(artifacts),
        batches=batches,
        warmup=warmup,
        iters=iters,
        precisions=list(precisions) or None,
        compile=compile_,
        device=device,
        threads=threads,
        tune=tune,
        progress=_progress(quiet),
    )
    _emit(result, throughput.to_markdown(result), as_json, out_dir, throughput.write_results)


@bench.command("e2e")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("artifact", type=click.Path(dir_okay=False))
@batch_size_option("batch", default=4, show_default=True, type=click.IntRange(1), help="Clips per batch.")
@clips_option(32, help="Clips timed per pass.")
@crops_option(1, help="Test crops per clip.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="Torch precision (checkpoints only).",
)
@threads_option()
@click.option("--budget", default=6.0, show_default=True, type=finite_float(0.1), help="Seconds timed per pass (at most).")
@click.option("--loaders", help="Comma-separated pipelines to measure: dali, pyav [default: both].")
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write result.json and e2e.md here.")
@click.option("--quiet", is_flag=True, help="Only warnings and the result: no per-row progress lines.")
def e2e_cmd(manifest, artifact, batch, clips, crops, precision, threads, budget, loaders, device, as_json, out_dir, quiet):
    """Encoded video to scores: DALI feeding ARTIFACT vs the PyAV loader, clips/s and time per stage."""
    result = e2e.bench_e2e(
        load_manifest_videos(manifest, "benchmark")[1],
        artifact,
        FeedSpec(device=device, batch_size=batch, threads=threads, num_crops=crops),
        clips=clips,
        precision=precision,
        manifest=manifest,
        loaders=e2e.parse_loaders(loaders),
        budget=budget,
        progress=_progress(quiet),
    )
    _emit(result, e2e.to_markdown(result), as_json, out_dir, e2e.write_results)


@bench.command("accuracy")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@clips_option(10, help="K: clips per video (the paper: 10).")
@crops_option(3)
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(["fp32", "bf16", "fp16"]),
    help="Torch precisions for checkpoints (repeatable) [default: fp32].",
)
@batch_size_option("batch", default=4, show_default=True, type=click.IntRange(1), help="Clips per batch.")
@dali_threads_option("DALI threads.")
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write result.json and accuracy.md here.")
@click.option("--quiet", is_flag=True, help="Only warnings and the result: no per-row progress lines.")
def accuracy_cmd(manifest, artifacts, clips, crops, precisions, batch, threads, device, as_json, out_dir, quiet):
    """Top-1/top-5 (mAP) of each ARTIFACT per view setting (1x1, 1x3, Kx1, Kx3) and precision, with GFLOPs x views."""
    result = accuracy.bench_accuracy(
        load_manifest_videos(manifest, "benchmark")[1],
        list(artifacts),
        FeedSpec(device=device, batch_size=batch, threads=threads, num_clips=clips, num_crops=crops, progress=True),
        precisions=list(precisions) or None,
        manifest=manifest,
        progress=_progress(quiet),
    )
    _emit(result, accuracy.to_markdown(result), as_json, out_dir, accuracy.write_results)


@click.command("report")
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for report.md and plots/ [default: the first DIR].")
def report_cmd(dirs, out_dir):
    """Merge the result.json files in DIRs (and below them) into one report.md with PNG plots."""
    path = write_report(list(dirs), out_dir or dirs[0])
    click.echo(f"report: {path}")
