"""`slowfast demo`: synthetic data to a benchmark report in one command (see benchmarks/demo.py)."""

from __future__ import annotations

import click

from slowfast_trt.benchmarks.demo import run_demo


@click.command("demo")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Output folder [default: demo-out, or demo-out-quick with --quick]."
)
@click.option("--quick", is_flag=True, help="Smaller data and training (about 3 minutes on 2 CPU cores instead of 15).")
@click.option("--quiet", is_flag=True, help="Stage lines only: no progress bars or benchmark rows.")
def demo(out_dir: str | None, quick: bool, quiet: bool) -> None:
    """Generate data, train SlowFast and Slow-only, evaluate, export ONNX/INT8/TensorRT, benchmark, write the report."""
    run_demo(out_dir, quick=quick, echo=lambda line: click.echo(line, err=True), progress=not quiet)
