"""`slowfast doctor [MANIFEST]`: what runs where on this machine (see benchmarks/doctor.py)."""

from __future__ import annotations

import json

import click

from slowfast_trt.benchmarks.doctor import run_doctor, to_text, write_record


@click.command("doctor")
@click.argument("manifest", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable record instead of the text report.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Also write doctor.json and doctor.txt into this folder.")
def doctor(manifest: str | None, as_json: bool, out_dir: str | None) -> None:
    """Python, torch, GPUs, NVDEC, DALI, PyAV, ONNX Runtime, TensorRT and Triton on this machine, one line each, every
    missing part with its fix; with MANIFEST, how many files each decoder path takes or refuses, and why. Exits 0
    whatever is missing (2 only for a bad MANIFEST)."""
    record = run_doctor(manifest)
    click.echo(json.dumps(record, indent=2, default=str) if as_json else to_text(record), nl=as_json)
    if out_dir:
        js, txt = write_record(record, out_dir)
        click.echo(f"wrote {js} and {txt}", err=True)
