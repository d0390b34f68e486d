"""Entry point of the `slowfast` command. Subcommand groups live in their own modules and register here."""
from __future__ import annotations

import sys

import click

from common.errors import SlowFastError


class _Group(click.Group):
    """A click group that prints project errors as one line (no traceback) and exits with status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SlowFastError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """SlowFast networks for video recognition: data, models, training, export, engines, benchmarks."""


def _register() -> None:
    from cli import bench as _bench
    from cli import flops as _flops

    main.add_command(_flops.flops)
    main.add_command(_bench.bench)
    main.add_command(_bench.report_cmd)
    from cli import demo as _demo

    main.add_command(_demo.demo)
    from cli import export as _export

    main.add_command(_export.export)
    from cli import train as _train

    main.add_command(_train.train)
    main.add_command(_train.eval_cmd)
    from cli import data as _data

    main.add_command(_data.data)
    from cli import convert as _convert

    main.add_command(_convert.convert)
    from cli import serve as _serve

    _export.export.add_command(_serve.triton_cmd)
    _bench.bench.add_command(_serve.bench_serve_cmd)
    main.add_command(_serve.serve)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
