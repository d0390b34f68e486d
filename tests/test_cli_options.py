"""One spelling per option across commands: `--batch-size` everywhere, the old `--batch` accepted with a note."""

from __future__ import annotations

import click
from click.testing import CliRunner

from slowfast_trt.cli.main import main
from slowfast_trt.cli.options import batch_size_option


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_every_batch_option_is_spelled_batch_size():
    for name, cmd in _commands(main):
        visible = [o for p in cmd.params if isinstance(p, click.Option) and not p.hidden for o in p.opts]
        assert "--batch" not in visible, f"`slowfast {name}` shows --batch; use batch_size_option"
        assert "--num-clips" not in visible and "--num-crops" not in visible, name


def test_deprecated_batch_spelling_still_works_and_says_so():
    @click.command()
    @batch_size_option(default=4, type=click.IntRange(1))
    def cmd(batch_size):
        click.echo(f"batch={batch_size}")

    new = CliRunner().invoke(cmd, ["--batch-size", "3"])
    old = CliRunner().invoke(cmd, ["--batch", "5"])
    default = CliRunner().invoke(cmd, [])
    assert new.exit_code == 0 and new.stdout.strip() == "batch=3" and "deprecated" not in new.stderr
    assert old.exit_code == 0 and old.stdout.strip() == "batch=5" and "--batch is deprecated; use --batch-size" in old.stderr
    assert default.stdout.strip() == "batch=4"
    bad = CliRunner().invoke(cmd, ["--batch", "0"])
    assert bad.exit_code == 2
