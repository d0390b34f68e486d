"""Options shared by several commands, spelled one way everywhere (docs/design.md, "Glossary")."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import click

from slowfast_trt.common.device import DEVICES


class FiniteFloat(click.FloatRange):
    """A float option that must be finite (click's FloatRange lets nan and inf through every bound) and in range."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)  # the float, before the range check
        if not math.isfinite(number):
            self.fail(f"{value!s} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def finite_float(min: float | None = None, max: float | None = None, *, min_open: bool = False, max_open: bool = False) -> FiniteFloat:
    """The type of every float option: finite, and within [min, max] (open ends where asked)."""
    return FiniteFloat(min, max, min_open=min_open, max_open=max_open)


def batch_size_option(dest: str = "batch_size", **kwargs) -> Callable:
    """`--batch-size` (clips per batch), with the old `--batch` still accepted and a deprecation note on stderr."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args, **params):
            old = params.pop("_batch_deprecated", None)
            if old is not None:
                click.echo("note: --batch is deprecated; use --batch-size", err=True)
                params[dest] = old
            return f(*args, **params)

        wrapper = click.option(
            "--batch",
            "_batch_deprecated",
            hidden=True,
            default=None,
            type=kwargs.get("type"),
            callback=kwargs.get("callback"),
            help="Deprecated spelling of --batch-size.",
        )(wrapper)
        return click.option("--batch-size", dest, **kwargs)(wrapper)

    return decorate


def int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """Callback for options such as `--batch-size 1,8,32` or `--concurrency 1,4,16`: positive integers, comma-separated."""
    if value is None:
        return None
    try:
        out = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("a comma-separated list of integers, e.g. 1,8,32") from None
    if not out or min(out) < 1:
        raise click.BadParameter("values must be >= 1")
    return out


def clips_option(default: int, help: str = "K uniformly spaced clips per video.") -> Callable:
    """`--clips K` (temporal clips per video, or clips timed per pass in the benchmarks)."""
    return click.option("--clips", default=default, show_default=True, type=click.IntRange(1), help=help)


def crops_option(default: int = 3, help: str = "Spatial crops per clip (1 centre, or 3).") -> Callable:
    """`--crops 1|3`, handed to the command as an int."""
    return click.option(
        "--crops", default=str(default), show_default=True, type=click.Choice(["1", "3"]), callback=lambda _c, _p, v: int(v), help=help
    )


def device_option(default: str = "auto", help: str | None = None) -> Callable:
    """`--device auto|cpu|cuda` (auto: CUDA when present)."""
    return click.option("--device", type=click.Choice(list(DEVICES)), default=default, show_default=True, help=help)


def dali_threads_option(help: str = "DALI threads.") -> Callable:
    """`--threads N` of a command whose loader runs alone (calibration, serving pipelines): DALI's thread count."""
    return click.option("--threads", default=2, show_default=True, type=click.IntRange(1), help=help)


def skip_bad_option() -> Callable:
    """`--skip-bad`: drop videos that fail to decode (counted and reported) instead of stopping (`FeedSpec.skip_bad`)."""
    return click.option("--skip-bad", is_flag=True, help="Skip videos that fail to decode (counted and reported) instead of stopping.")


def threads_option(**kwargs) -> Callable:
    """`--threads N`: the one CPU budget a command splits between DALI, torch and OpenMP (`FeedSpec.threads`, common/threads.py)."""
    kwargs.setdefault(
        "help",
        "CPU threads in all: split between DALI, torch's intra-op pool and ONNX Runtime so they never oversubscribe "
        "[default: the CPUs this process may use].",
    )
    return click.option("--threads", type=click.IntRange(1), default=None, **kwargs)
