"""Options shared by several commands, spelled one way everywhere (docs/design.md, "Glossary")."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click


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


def threads_option(**kwargs) -> Callable:
    """`--threads N`: the one CPU budget a command splits between DALI, torch and OpenMP (common/threads.py)."""
    kwargs.setdefault(
        "help",
        "CPU threads in all: split between DALI, torch's intra-op pool and ONNX Runtime so they never oversubscribe "
        "[default: the CPUs this process may use].",
    )
    return click.option("--threads", type=click.IntRange(1), default=None, **kwargs)
