"""`slowfast bench ...`: the benchmark command group (flops here; pipeline, model, e2e, accuracy join it)."""
from __future__ import annotations

import click

from cli.flops import flops


@click.group("bench")
def bench() -> None:
    """Benchmarks: every one writes result.json and a Markdown table."""


bench.add_command(flops)
