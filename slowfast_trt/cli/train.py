"""`slowfast train` and `slowfast eval`: parse options, delegate to training.run."""

from __future__ import annotations

import json

import click

from slowfast_trt.cli.interrupt import resume_hint
from slowfast_trt.cli.options import clips_option, crops_option, device_option, finite_float, skip_bad_option, threads_option
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.training.detect import detection_markdown
from slowfast_trt.training.evaluate import to_markdown
from slowfast_trt.training.run import evaluate, merge_evaluation
from slowfast_trt.training.run import train as run_train


@click.command("train")
@click.option("--preset", required=True, help="Model preset (see `slowfast flops --list`).")
@click.option(
    "--train",
    "train_manifest",
    required=True,
    type=click.Path(dir_okay=False),
    help="Training manifest (CSV), or an AVA label CSV to train the preset's detection variant.",
)
@click.option("--val", "val_manifest", type=click.Path(dir_okay=False), help="Validation manifest; enables best-checkpoint selection.")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run folder: checkpoints/, metrics.csv, config.json."
)
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Clips per process (the paper: 8 per GPU).")
@click.option("--lr", type=finite_float(0, min_open=True), help="Base learning rate (default: 1.6 x global batch / 1024).")
@click.option("--warmup-epochs", default=1.0, show_default=True, type=finite_float(0))
@click.option("--amp", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True)
@device_option()
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--save-every", default=0, show_default=True, type=click.IntRange(0), help="Also checkpoint every N steps.")
@click.option("--keep-last", default=3, show_default=True, type=click.IntRange(1))
@click.option("--val-clips", default=3, show_default=True, type=click.IntRange(1))
@click.option("--val-crops", default=1, show_default=True, type=click.Choice(["1", "3"]))
@click.option(
    "--init", type=click.Path(dir_okay=False), help="Start from these weights (fine-tuning; any format `slowfast convert` reads)."
)
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped (same data and options).")
@click.option("--overwrite", is_flag=True, help="Delete the run already in --out, then start afresh (default: refuse a non-empty --out).")
@click.option("--multilabel", is_flag=True, default=None, help="Train a multi-label model (sigmoid + BCE; rows may list ids as 3;7).")
@threads_option()
@skip_bad_option()
@click.option("--num-classes", type=click.IntRange(1), help="Override the class count (default: classes.txt).")
@click.option("--crop", type=click.IntRange(32), help="Override the training crop (the test crop follows: crop * 8/7).")
@click.option(
    "--fast-input", type=click.Choice(["rgb", "gray", "time_diff", "half_res"]), help="Override the preset's Fast-pathway input (Table 5c)."
)
@click.option(
    "--dropout", type=finite_float(0, 1, max_open=True), help="Override the preset's dropout before the classifier (the paper: 0.5)."
)
@click.option("--no-flip", is_flag=True, help="No random horizontal flip (for classes that depend on left/right, as in `data synth`).")
@click.option("--max-steps", type=click.IntRange(1), help="Stop after this many steps (smoke runs).")
@click.option(
    "--sync-bn", is_flag=True, help="BatchNorm statistics over all torchrun ranks' clips (SyncBatchNorm; CUDA only, refused on the CPU)."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@resume_hint("checkpoints already in {out_dir} are kept; run the same command with --resume to continue")
def train(
    preset,
    train_manifest,
    val_manifest,
    out_dir,
    epochs,
    batch_size,
    lr,
    warmup_epochs,
    amp,
    device,
    seed,
    save_every,
    keep_last,
    val_clips,
    val_crops,
    init,
    resume,
    overwrite,
    multilabel,
    threads,
    skip_bad,
    num_classes,
    crop,
    fast_input,
    dropout,
    no_flip,
    max_steps,
    sync_bn,
    quiet,
):
    """Train PRESET with the paper's recipe (SGD, warm-up + cosine, AMP) on DALI clips."""
    overrides = {
        "num_classes": num_classes,
        "train_flip": False if no_flip else None,
        "fast_input": fast_input,
        "dropout": dropout,
        "multilabel": multilabel or None,
    }
    if crop:
        overrides.update(crop_size=crop, test_crop_size=max(32, round(crop * 8 / 7 / 32) * 32))
    summary = run_train(
        preset,
        train_manifest,
        out_dir,
        val_manifest=val_manifest,
        resume=resume,
        overwrite=overwrite,
        model_overrides=overrides,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup_epochs=warmup_epochs,
        amp=amp,
        device=device,
        seed=seed,
        save_every=save_every,
        keep_last=keep_last,
        val_clips=val_clips,
        val_crops=int(val_crops),
        init=init,
        threads=threads,
        skip_bad=skip_bad,
        max_steps=max_steps,
        sync_bn=sync_bn,
        progress=not quiet,
    )
    last = summary["history"][-1] if summary["history"] else {}
    click.echo(json.dumps({"last": last, "best": summary["best"], "checkpoint": summary["last_checkpoint"]}, indent=2))


@click.group("eval", invoke_without_command=True, subcommand_metavar="[merge DIR...]")
@click.option("--ckpt", type=click.Path(dir_okay=False), help="A checkpoint (or converted reference weights).")
@click.option("--engine", "engine_path", type=click.Path(dir_okay=False), help="An exported ONNX model or TensorRT plan instead of --ckpt.")
@click.option(
    "--data",
    "manifest",
    type=click.Path(dir_okay=False),
    help="Manifest of the test videos, or an AVA label CSV (frame mAP on its <stem>_proposals.csv).",
)
@clips_option(10)
@crops_option(3)
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1), help="Clips per batch (each gives --crops views).")
@device_option()
@threads_option()
@skip_bad_option()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write eval.json and eval.md here.")
@click.option(
    "--qdq",
    type=click.Choice(["auto", "kernels", "emulate"]),
    default="auto",
    show_default=True,
    help="INT8 ONNX only: ONNX Runtime's int8 kernels, or the Q/DQ semantics TensorRT implements (auto: emulate on CPUs without VNNI).",
)
@click.option(
    "--shard",
    help="Score only shard I of N (0-based, e.g. $SLURM_ARRAY_TASK_ID/8) into --out; join the shards with `slowfast eval merge`.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def eval_cmd(ctx, ckpt, engine_path, manifest, clips, crops, batch_size, device, threads, skip_bad, out_dir, qdq, shard, quiet):
    """Top-1/top-5 (mAP for multi-label) for 1x1, 1x3, Kx1 and Kx3 views in one pass.

    Under torchrun the ranks split the videos and rank 0 prints and writes the joined result."""
    if ctx.invoked_subcommand is not None:
        return
    if not manifest:
        raise click.UsageError("Missing option '--data'.")
    if bool(ckpt) == bool(engine_path):
        raise click.UsageError("give exactly one of --ckpt or --engine")
    feed = FeedSpec(
        device=device, batch_size=batch_size, threads=threads, num_clips=clips, num_crops=crops, skip_bad=skip_bad, progress=not quiet
    )
    result = evaluate(engine_path or ckpt, manifest, feed, out_dir=out_dir, qdq=qdq, shard=shard)
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return
    if shard:
        click.echo(
            f"shard {result['shard']}: {result['videos']} videos scored into {result['out']}; join all shards with `slowfast eval merge`"
        )
        return
    click.echo(detection_markdown(result) if result.get("per_class_ap") is not None else to_markdown(result))


@eval_cmd.command("merge")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write the joined eval.json, eval.md and scores.npz here.")
def eval_merge_cmd(folders, out_dir):
    """Join the shard folders of `slowfast eval --shard I/N --out DIR` (all N, each once) into one evaluation."""
    click.echo(to_markdown(merge_evaluation(list(folders), out_dir)))
