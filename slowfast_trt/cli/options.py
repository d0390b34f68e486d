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
