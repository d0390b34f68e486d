"""What an interrupted command tells its user: the one line after Ctrl-C (exit 130) or SIGTERM (exit 143).

`_Group` in cli/main.py turns every KeyboardInterrupt (SIGTERM raises one, `common.interrupt`) into
`interrupted: HINT` and the exit status. A command says what survives and how to go on with `@resume_hint`
(formatted with its own arguments); without one, the hint of its top-level group below is used.
"""

from __future__ import annotations

import functools

import click

DEFAULT_HINTS = {
    "train": "the last checkpoint in --out is kept; run the same command with --resume to continue",
    "eval": "nothing was written; run the same command again",
    "export": "no partial file is left under the output name; run the same command again",
    "bench": "no result was written; run the same command again",
    "convert": "no partial file is left under the output name; run the same command again",
    "data": "run the same command again",
}
FALLBACK = "run the same command again"


def resume_hint(text: str):
    """Decorate a click callback: an interrupt in it carries `text`, formatted with the command's arguments."""

    def wrap(f):
        @functools.wraps(f)
        def run(*args, **kwargs):
            try:
                return f(*args, **kwargs)
            except KeyboardInterrupt as e:
                if not getattr(e, "hint", None):
                    e.hint = text.format(**kwargs)
                raise

        return run

    return wrap


def hint_for(e: KeyboardInterrupt, ctx: click.Context) -> str:
    """The hint `e` carries, else that of the top-level command being run."""
    return getattr(e, "hint", None) or DEFAULT_HINTS.get(ctx.invoked_subcommand or "", FALLBACK)
