"""`slowfast convert SRC DST`: official PySlowFast / PyTorchVideo / Caffe2 / mmaction2 weights to a project checkpoint."""

from __future__ import annotations

import click

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.convert import summary


@click.command("convert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option(
    "--from",
    "fmt",
    type=click.Choice(["auto", "pyslowfast", "pytorchvideo", "caffe2", "mmaction2"]),
    default="auto",
    show_default=True,
    help="Layout of SRC (auto detects it from the key names).",
)
@click.option("--preset", help="Preset giving what the weights cannot show (T, tau, alpha); every shape is checked against it.")
@click.option("--num-classes", type=click.IntRange(1), help="Expected classes (overrides the preset's; must match the classifier).")
@click.option(
    "--head-act",
    type=click.Choice(["none", "softmax", "sigmoid"]),
    help="Eval activation per head position (default: the origin's: softmax for PySlowFast/Caffe2, none for PyTorchVideo).",
)
@click.option("--ignore-config", is_flag=True, help="Do not read the config SRC carries (PySlowFast cfg, mmaction2 meta).")
def convert(src: str, dst: str, fmt: str, preset: str | None, num_classes: int | None, head_act: str | None, ignore_config: bool) -> None:
    """Convert SRC (.pyth, .pt, .pth, .pkl, state-dict .safetensors) into the project checkpoint DST (.safetensors)."""
    if not dst.endswith(".safetensors"):
        raise SlowFastError(f"DST {dst!r} must end with .safetensors (the project checkpoint format)")
    net = model.convert(src, fmt=fmt, preset=preset, num_classes=num_classes, head_act=head_act, ignore_config=ignore_config)
    model.save(net, dst)
    for line in summary(net):
        click.echo(line)
    click.echo(f"wrote {dst}")
