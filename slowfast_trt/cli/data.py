"""`slowfast data prepare|merge|synth|check|preview`: video collections in, manifests and checked files out."""

from __future__ import annotations

import sys

import click

from slowfast_trt.cli.interrupt import resume_hint
from slowfast_trt.cli.options import device_option, finite_float
from slowfast_trt.common.shards import parse_shard
from slowfast_trt.common.text import shown
from slowfast_trt.dali_pipelines.nvdec import table_refusal
from slowfast_trt.dali_pipelines.preview import preview
from slowfast_trt.data.check import check
from slowfast_trt.data.merge import merge_prepared
from slowfast_trt.data.prepare import prepare
from slowfast_trt.data.synth import synth
from slowfast_trt.data.synth_ava import synth_detection


@click.group("data")
def data() -> None:
    """Prepare, generate, check and preview video data sets (manifest.csv + classes.txt)."""


@data.command("prepare")
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--short-side", default=256, show_default=True, type=int, help="Resize so the shorter side is this (even; 0 keeps the size).")
@click.option(
    "--codec", default="vp9", show_default=True, help="vp9 (DALI on the CPU or GPU), h264 (NVDEC on a GPU) or mjpeg (intra-only)."
)
@click.option("--fps", type=finite_float(0, min_open=True), help="Resample to this frame rate (default: keep each video's own).")
@click.option("--workers", type=int, help="Parallel worker processes (default: min(4, CPU cores)).")
@click.option("--root", type=click.Path(file_okay=False), help="Folder that list/CSV paths resolve against (default: the list's folder).")
@click.option("--gop", default=32, show_default=True, type=int, help="Keyframe interval in frames (seeking cost).")
@click.option("--quality", type=int, help="crf for vp9/h264, qscale for mjpeg (default: the codec's preset).")
@click.option("--shard", help="Prepare only shard I of N of the sources (0-based, e.g. $SLURM_ARRAY_TASK_ID/16); join with `data merge`.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@resume_hint("finished files are kept; run the same command again to resume ({out})")
def prepare_cmd(
    src: str,
    out: str,
    short_side: int,
    codec: str,
    fps: float | None,
    workers: int | None,
    root: str | None,
    gop: int,
    quality: int | None,
    shard: str | None,
    quiet: bool,
) -> None:
    """Transcode SRC (class folders, a Kinetics CSV, a PySlowFast list or a manifest) into OUT with a manifest.

    Resumable: re-running the same command skips finished files. Unreadable files are listed in
    OUT/rejects.csv and skipped; the command fails only when no file could be prepared.
    """
    r = prepare(
        src,
        out,
        short_side=short_side,
        codec=codec,
        fps=fps,
        workers=workers,
        root=root,
        gop=gop,
        quality=quality,
        progress=not quiet,
        shard=parse_shard(shard) if shard is not None else None,
    )
    for path, reason in r.rejects:
        click.echo(f"rejected {shown(path)}: {shown(reason)}", err=True)
    click.echo(
        f"{r.done} videos in {r.manifest} ({r.transcoded} transcoded, {r.skipped} already done), "
        f"{len(r.rejects)} rejected (see {r.out / 'rejects.csv'}), {r.seconds:.1f} s"
    )


@data.command("merge")
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("shards", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
def merge_cmd(out: str, shards: tuple[str, ...]) -> None:
    """Join the folders of `data prepare SRC DIR --shard I/N` (all N, each once) into OUT, as one unsharded run."""
    r = merge_prepared(out, list(shards))
    click.echo(f"{r.videos} videos from {r.shards} shards in {r.manifest}, {r.rejects} rejected (see {r.out / 'rejects.csv'})")


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--videos", default=480, show_default=True, type=int, help="Number of videos (balanced over the 8 classes).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--codec", default="vp9", show_default=True, help="vp9 or h264.")
@click.option("--size", default="64x80", show_default=True, help="Frame size HxW (even numbers).")
@click.option("--frames", default=96, show_default=True, type=int, help="Frames per video (a 4x16 clip spans 64).")
@click.option("--fps", default=30, show_default=True, type=int)
@click.option("--val-fraction", default=0.2, show_default=True, type=finite_float(0, 1), help="Share of each class in val.csv.")
@click.option("--workers", type=int, help="Parallel worker processes (default: min(4, CPU cores)).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--detection",
    is_flag=True,
    help="AVA-style detection set instead: 2-3 actors per video with boxes, actions, "
    "proposals (defaults: 160 videos, 64x96, 128 frames, val fraction 0.25).",
)
@resume_hint("the set is incomplete; run the same command again")
def synth_cmd(
    out: str,
    videos: int,
    seed: int,
    codec: str,
    size: str,
    frames: int,
    fps: int,
    val_fraction: float,
    workers: int | None,
    quiet: bool,
    detection: bool,
) -> None:
    """Generate a synthetic motion data set in OUT whose classes need the Fast pathway (see OUT/README.md)."""
    if detection:
        ctx = click.get_current_context()
        given = {"videos": videos, "size": size, "frames": frames, "val_fraction": val_fraction}
        defaults = {"videos": 160, "size": "64x96", "frames": 128, "val_fraction": 0.25}  # the detection set's own
        chosen = {k: v if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT else defaults[k] for k, v in given.items()}
        r = synth_detection(out, seed=seed, codec=codec, fps=fps, workers=workers, progress=not quiet, **chosen)
        click.echo(
            f"{r['videos']} videos ({r['train']} train, {r['val']} val; {r['train_boxes']} + {r['val_boxes']} labelled "
            f"person-actions, {len(r['classes'])} actions) in {r['out']}, {r['seconds']:.1f} s"
        )
        return
    r = synth(
        out,
        videos=videos,
        seed=seed,
        codec=codec,
        size=size,
        frames=frames,
        fps=fps,
        val_fraction=val_fraction,
        workers=workers,
        progress=not quiet,
    )
    click.echo(f"{r.videos} videos ({r.train} train, {r.val} val, {len(r.classes)} classes) in {r.out}, {r.seconds:.1f} s")


@data.command("check")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--write-clean", type=click.Path(dir_okay=False), help="Write a manifest of the good files only (columns filled in).")
@click.option("--workers", type=int, help="Parallel worker processes (default: min(4, CPU cores)).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@resume_hint("nothing was written")
def check_cmd(manifest: str, write_clean: str | None, workers: int | None, quiet: bool) -> None:
    """Decode every file of MANIFEST and compare frame count, fps, size and codec; exit 1 if any file is bad."""
    r = check(manifest, write_clean=write_clean, workers=workers, progress=not quiet)
    for path, reason in r.bad:
        click.echo(f"{shown(path)}: {shown(reason)}")
    for line in gpu_notes(r.gpu_only):
        click.echo(line, err=True)
    click.echo(f"{r.good} of {r.total} files good, {len(r.bad)} bad", err=True)
    if r.clean_manifest:
        click.echo(f"wrote {r.clean_manifest} ({r.good} rows)", err=True)
    if r.bad:
        sys.exit(1)


def gpu_notes(gpu_only: list[tuple[str, str, str | None]]) -> list[str]:
    """`data check`'s notes on good files DALI's CPU decoder cannot read: those NVDEC decodes need a GPU; the others
    (10-bit H.264, for one: NVDEC decodes 10-bit HEVC/VP9/AV1, not H.264) no DALI decoder reads."""
    on_gpu, refused = [], []
    for _, codec, pix_fmt in gpu_only:
        why = table_refusal(codec, pix_fmt)
        if why is None:
            on_gpu.append(codec)
        else:
            refused.append(why)
    notes = []
    if on_gpu:
        notes.append(
            f"note: {len(on_gpu)} good files ({', '.join(sorted(set(on_gpu)))}) need a GPU for DALI; "
            "`slowfast data prepare --codec vp9` makes them CPU-decodable"
        )
    if refused:
        notes.append(
            f"note: {len(refused)} good files cannot be decoded by DALI on the CPU or on a GPU ({'; '.join(sorted(set(refused)))}; "
            "Blackwell's NVDEC excepted for H.264); `slowfast data prepare --codec vp9` re-encodes them to 8-bit VP9"
        )
    return notes


@data.command("preview")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the PNG sheets and NPZ arrays.")
@click.option("--mode", default="train", show_default=True, type=click.Choice(["train", "test"]))
@click.option("--n", "n", default=4, show_default=True, type=int, help="Number of samples (videos).")
@click.option(
    "--preset",
    default="slowfast_tiny_4x16",
    show_default=True,
    help="Model preset whose input settings (T, tau, alpha, crops, mean/std, sampling) to use.",
)
@click.option("--frames-T", "num_frames", type=int, help="Override T (Slow frames).")
@click.option("--tau", type=int, help="Override tau (Slow stride).")
@click.option("--alpha", type=int, help="Override alpha (Fast/Slow frame ratio).")
@click.option("--crop-size", type=int, help="Override the training crop (multiple of 32).")
@click.option("--test-crop-size", type=int, help="Override the test crop (multiple of 32).")
@click.option("--sampling", type=click.Choice(["pyslowfast", "strided"]), help="Override the frame-index convention.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--backend",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "dali", "pyav"]),
    help="auto: DALI where it can decode the files here, else the PyAV reference.",
)
@device_option()
def preview_cmd(
    manifest: str,
    out: str,
    mode: str,
    n: int,
    preset: str,
    num_frames: int | None,
    tau: int | None,
    alpha: int | None,
    crop_size: int | None,
    test_crop_size: int | None,
    sampling: str | None,
    seed: int,
    backend: str,
    device: str,
) -> None:
    """Write contact sheets (PNG) and arrays (NPZ) of N clips of MANIFEST as the model sees them."""
    r = preview(
        manifest,
        out,
        mode=mode,
        n=n,
        preset=preset,
        seed=seed,
        backend=backend,
        device=device,
        num_frames=num_frames,
        tau=tau,
        alpha=alpha,
        crop_size=crop_size,
        test_crop_size=test_crop_size,
        sampling=sampling,
    )
    if r.note:
        click.echo(f"note: {r.note}", err=True)
    for png, npz in r.samples:
        click.echo(f"{png}  {npz.name}")
    click.echo(f"{len(r.samples)} samples through {r.backend} in {r.out}", err=True)
