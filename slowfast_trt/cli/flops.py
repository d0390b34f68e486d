"""`slowfast flops` (also `slowfast bench flops`): the GFLOPs/params table against the paper."""

from __future__ import annotations

import json

import click

from slowfast_trt.benchmarks.flops import flops_table, to_markdown, write_results
from slowfast_trt.model.zoo import get_preset, presets


@click.command("flops")
@click.argument("preset_names", metavar="[PRESET]...", nargs=-1)
@click.option(
    "--size",
    default=256,
    show_default=True,
    type=click.IntRange(32, 4096),
    help="Square crop size of the one view counted (the paper uses 256).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows instead of the table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Also write result.json and flops.md into this folder.")
@click.option("--list", "list_only", is_flag=True, help="List the preset names and exit.")
def flops(preset_names: tuple[str, ...], size: int, as_json: bool, out_dir: str | None, list_only: bool) -> None:
    """Params and GFLOPs of PRESETs (all when none given) next to the paper's numbers."""
    if list_only:
        for name in presets():
            click.echo(f"{name}\t{get_preset(name).source}")
        return
    for name in preset_names:
        get_preset(name)  # fail fast, with suggestions, before counting anything
    rows = flops_table(list(preset_names), size=size)
    click.echo(json.dumps(rows, indent=2) if as_json else to_markdown(rows))
    if out_dir:
        paths = write_results(rows, out_dir)
        click.echo(f"wrote {paths['json']} and {paths['markdown']}", err=True)
