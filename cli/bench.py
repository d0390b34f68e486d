"""`slowfast bench ...`: the benchmark command group (flops here; pipeline, model, e2e, accuracy join it)."""
from __future__ import annotations

import click

from cli.flops import flops


@click.group("bench")
def bench() -> None:
    """Benchmarks: every one writes result.json and a Markdown table."""


bench.add_command(flops)


@bench.command("pipeline")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--preset", default="slowfast_r50_4x16", show_default=True, help="Model preset whose clip geometry (T, tau, alpha, crops) is sampled.")
@click.option("--crop", type=click.IntRange(32, 1024), help="Override the training crop (the test crop scales with it).")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1))
@click.option("--clips", default=64, show_default=True, type=click.IntRange(1), help="Clips timed per loader.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write result.json and pipeline.md here.")
def pipeline_cmd(manifest, preset, crop, batch, threads, clips, device, as_json, out_dir):
    """Clips/s of the DALI pipelines against PyAV loaders on MANIFEST's videos."""
    import json

    from benchmarks.pipeline import bench_pipeline, to_markdown, write_results
    from dali_pipelines.manifest import read_manifest, to_videos
    from model.zoo import get_config

    overrides = {"crop_size": crop, "test_crop_size": crop * 8 // 7 // 32 * 32 or 32} if crop else {}
    cfg = get_config(preset, **overrides)
    videos = to_videos(read_manifest(manifest))
    result = bench_pipeline(videos, cfg, batch=batch, threads=threads, clips=clips, device=device,
                            progress=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(result, indent=2) if as_json else to_markdown(result))
    if out_dir:
        paths = write_results(result, out_dir)
        click.echo(f"wrote {paths['json']} and {paths['markdown']}", err=True)
