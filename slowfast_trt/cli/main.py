"""Entry point of the `slowfast` command. Subcommand groups live in their own modules and register here."""

from __future__ import annotations

import sys

import click

from slowfast_trt.cli import bench as _bench
from slowfast_trt.cli import convert as _convert
from slowfast_trt.cli import data as _data
from slowfast_trt.cli import demo as _demo
from slowfast_trt.cli import doctor as _doctor
from slowfast_trt.cli import export as _export
from slowfast_trt.cli import flops as _flops
from slowfast_trt.cli import serve as _serve
from slowfast_trt.cli import train as _train
from slowfast_trt.cli.interrupt import hint_for
from slowfast_trt.common.errors import OUTPUT_ERRNOS, SlowFastError, environment_fault
from slowfast_trt.common.interrupt import exit_status, sigterm_raises
from slowfast_trt.common.scratch import scratch_folder, temp_fault_for


class _Group(click.Group):
    """A click group that runs every command in its own temporary folder (`common.scratch`), with SIGTERM raised like
    Ctrl-C; prints project errors, and file-system failures no command caught (full disk, read-only folder, telling
    the temporary folder from the output folder), as one line (no traceback) with exit status 2; and an interrupt
    as `interrupted: ...` with the command's resume hint (`cli.interrupt`), exit 130 (Ctrl-C) or 143 (SIGTERM)."""

    def invoke(self, ctx: click.Context):
        try:
            with sigterm_raises(), scratch_folder():
                try:
                    return super().invoke(ctx)
                except OSError as e:  # told apart while the scratch folder is still known
                    fault = temp_fault_for(e)
                    if fault is None:
                        raise
                    raise fault from None
        except SlowFastError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as e:
            click.echo(f"\ninterrupted: {hint_for(e, ctx)}", err=True)
            sys.exit(exit_status(e))
        except OSError as e:
            if e.errno not in OUTPUT_ERRNOS:
                raise
            click.echo(f"error: {environment_fault(e, doing='use')}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """SlowFast networks for video recognition: data, models, training, export, engines, benchmarks."""


def _register() -> None:
    main.add_command(_flops.flops)
    main.add_command(_bench.bench)
    main.add_command(_bench.report_cmd)

    main.add_command(_demo.demo)
    main.add_command(_doctor.doctor)

    main.add_command(_export.export)

    main.add_command(_train.train)
    main.add_command(_train.eval_cmd)

    main.add_command(_data.data)

    main.add_command(_convert.convert)

    _export.export.add_command(_serve.triton_cmd)
    _bench.bench.add_command(_serve.bench_serve_cmd)
    main.add_command(_serve.serve)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
