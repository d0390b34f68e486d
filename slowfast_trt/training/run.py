"""Entry points behind `slowfast train` and `slowfast eval`: manifests in, a run folder or an evaluation out."""

from __future__ import annotations

from pathlib import Path

from slowfast_trt import engines
from slowfast_trt.common.bounds import check_fits
from slowfast_trt.common.device import apply_threads, resolve_device
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import probe_writable
from slowfast_trt.common.shards import parse_shard
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.ava import load_ava, looks_like_ava_csv
from slowfast_trt.data.manifest import load_manifest_videos
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.detection import detection_config
from slowfast_trt.model.footprint import check_model_fits, clip_bytes
from slowfast_trt.model.zoo import get_config
from slowfast_trt.training import distributed as dist_util
from slowfast_trt.training import elastic, eval_shards
from slowfast_trt.training.detect import DetectionTrainer, evaluate_detection, write_detection_eval
from slowfast_trt.training.evaluate import evaluate_engine, write_eval
from slowfast_trt.training.run_folder import claim_run_folder, fingerprint
from slowfast_trt.training.run_state import Checkpoints
from slowfast_trt.training.task import Classification
from slowfast_trt.training.trainer import Trainer, TrainOptions


def resolve_config(preset: str, manifest, overrides: dict) -> SlowFastConfig:
    """The preset, with the class count taken from the manifest unless given.

    Multi-label mode comes from the preset or `multilabel=True` (`--multilabel`), never from the data: a
    manifest with a multi-label row for a single-label model is an error naming the row.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if manifest is not None:
        overrides.setdefault("num_classes", len(manifest.classes))
    cfg = get_config(preset, **overrides)
    if manifest is not None and not cfg.multilabel:
        row = next((e for e in manifest.entries if isinstance(e.label, tuple)), None)
        if row is not None:
            raise SlowFastError(
                f"{row.path} has several labels ({';'.join(map(str, row.label))}) but {cfg.name} is single-label; "
                "pass --multilabel to train a multi-label model, or give the row one label"
            )
    return cfg


# The options of `slowfast train` that set model config fields, named in the bound's message (`check_model_fits`).
OVERRIDE_OPTIONS = {"num_classes": "--num-classes", "crop_size": "--crop", "test_crop_size": "--crop", "batch": "--batch-size"}


def _sources(overrides: dict) -> dict[str, str]:
    """Where each size of the training config came from: the option that set it, else the preset (or the classes)."""
    given = {k: f"from {OVERRIDE_OPTIONS[k]}" for k, v in overrides.items() if v is not None and k in OVERRIDE_OPTIONS}
    return {"num_classes": "the manifest's classes", "batch": "from --batch-size", **given}


def train(
    preset: str,
    train_manifest: str,
    out_dir: str,
    *,
    val_manifest: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    model_overrides: dict | None = None,
    **options,
) -> dict:
    """Train `preset` on `train_manifest` into `out_dir` (checkpoints, metrics.csv, config.json); returns the summary.

    The run owns `out_dir` (training/run_folder.py): a folder holding another run is refused unless `resume`
    continues it or `overwrite` deletes it first. An AVA-format label CSV instead of a manifest trains the
    preset's detection variant (training/detect.py). Under torchrun, a restarted worker group continues the run
    without `resume` (training/elastic.py).
    """
    detection = bool(train_manifest and Path(train_manifest).is_file() and looks_like_ava_csv(train_manifest))
    if not detection:  # (detection label CSVs are read and validated in _train_detection)
        train_m, train_videos = load_manifest_videos(train_manifest, "training")
        _, val_videos = load_manifest_videos(val_manifest, "validation")
        cfg = resolve_config(preset, train_m, model_overrides or {})
        check_model_fits(
            cfg, f"preset {preset}", batch=options.get("batch_size", 1), training=True, sources=_sources(model_overrides or {})
        )
    data = {k: fingerprint(v) for k, v in (("train", train_manifest), ("val", val_manifest)) if v is not None}
    device = resolve_device(options.get("device", "auto"))
    dist_util.check_sync_bn(options.get("sync_bn", False), device)
    info = dist_util.init(device)
    has_checkpoint = Checkpoints(Path(out_dir), 1).latest() is not None
    resume, overwrite = elastic.continue_run(out_dir, resume, overwrite, has_checkpoint, info)
    with claim_run_folder(out_dir, resume, overwrite):
        if info.is_main:
            elastic.mark(out_dir)
        if detection:
            return _train_detection(preset, train_manifest, out_dir, val_manifest, resume, model_overrides or {}, {**options, "data": data})
        opts = TrainOptions(out_dir=out_dir, model_overrides=model_overrides or {}, data=data, **options)
        return Trainer(cfg, opts, Classification(train_videos, val_videos), resume=resume).run()


def evaluate(
    artifact: str, manifest: str, feed: FeedSpec, *, out_dir: str | None = None, qdq: str = "auto", shard: str | None = None
) -> dict | None:
    """Multi-view accuracy of a checkpoint, ONNX model or TensorRT plan on `manifest` with `feed`'s views; writes
    eval.json/.md to `out_dir`. An AVA label CSV gives frame mAP instead (training/detect.py).

    `qdq`: how ONNX Runtime runs an INT8 Q/DQ model (`engines.ort_engine`). `shard` ("I/N"): score only that 1/N
    of the videos into `out_dir` for `slowfast eval merge`. Under torchrun the ranks split the videos and rank 0
    returns (and writes) the joined result; the other ranks return None (training/eval_shards.py)."""
    parsed = parse_shard(shard) if shard is not None else None
    sharded = shard is not None or dist_util.world_size() > 1
    if shard is not None and dist_util.world_size() > 1:
        raise SlowFastError("--shard is for independent jobs; under torchrun the ranks split the videos already: drop --shard")
    if shard is not None and not out_dir:
        raise SlowFastError("--shard needs --out DIR: the shard's scores go there for `slowfast eval merge`")
    detection = Path(manifest).is_file() and looks_like_ava_csv(manifest)
    if detection and sharded:
        raise SlowFastError("sharded evaluation (--shard or torchrun) covers classification manifests; run detection mAP in one process")
    if out_dir:
        probe_writable(out_dir)  # a read-only or full --out fails now, not after the whole evaluation
    # One CPU budget for the loader and the engine (a TensorRT plan runs on the GPU).
    feed = feed.but(model_on_cpu=Path(artifact).suffix.lower() not in engines.PLAN_SUFFIXES and resolve_device(feed.device).type == "cpu")
    apply_threads(feed.split)
    if detection:
        data = load_ava(manifest, use_proposals=True)
        result = evaluate_detection(engines.load(artifact, device=feed.device, qdq=qdq, threads=feed.split.engine), data, feed)
        if out_dir:
            result["files"] = {k: str(v) for k, v in write_detection_eval(result, out_dir).items()}
        return result
    _, videos = load_manifest_videos(manifest, "evaluation")
    if dist_util.world_size() > 1:
        dist_util.init(resolve_device(feed.device))  # before loading, so each rank's engine lands on its own GPU
    engine = engines.load(artifact, device=feed.device, qdq=qdq, threads=feed.split.engine)
    feed = _feed_for(feed, len(videos), engine.config)
    scores = None
    if parsed is not None:
        return eval_shards.score_shard_into(engine, videos, parsed, out_dir, feed)
    if sharded:
        joined = eval_shards.evaluate_ranks(engine, videos, feed)
        if joined is None:
            return None
        result, scores = joined
    else:
        result = evaluate_engine(engine, videos, feed)
    result["thread_split"] = feed.split.as_dict()
    if out_dir:
        result["files"] = {k: str(v) for k, v in write_eval(result, out_dir).items()}
        if scores is not None:
            result["files"]["scores"] = str(eval_shards.write_scores(scores, out_dir))
    return result


def merge_evaluation(folders: list[str], out_dir: str | None = None) -> dict:
    """The evaluation joined from `evaluate(..., shard="I/N")` folders; eval.json/.md and scores.npz into `out_dir`."""
    if out_dir:
        probe_writable(out_dir)
    result, scores = eval_shards.merge_folders(folders)
    if out_dir:
        result["files"] = {k: str(v) for k, v in write_eval(result, out_dir).items()}
        result["files"]["scores"] = str(eval_shards.write_scores(scores, out_dir))
    return result


def _feed_for(feed: FeedSpec, videos: int, cfg: SlowFastConfig) -> FeedSpec:
    """`feed` with its batch cut to the clips there are to score (buffers are sized by the batch), and that batch
    checked against memory: `--batch-size` far beyond the data allocates for the data, not for the option."""
    batch = min(feed.batch_size, videos * feed.num_clips)
    check_fits("--batch-size", batch, "from the command line, cut to the clips to score", lambda b: feed.num_crops * clip_bytes(cfg, b))
    return feed.but(batch_size=batch)


# ----- action detection (AVA-format label CSVs; see data/ava.py) -----
def _train_detection(preset: str, labels_csv: str, out_dir: str, val_csv: str | None, resume: bool, overrides: dict, options: dict) -> dict:
    """Train the detection variant of `preset` on ground-truth boxes; validate with frame mAP on the val proposals."""
    train_set = load_ava(labels_csv)
    val_set = None
    if val_csv:
        if not looks_like_ava_csv(val_csv):
            raise SlowFastError(f"--train is an AVA label CSV, so --val must be one too; {val_csv} is not")
        val_set = load_ava(val_csv, use_proposals=True)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = detection_config(
        get_config(preset, **{k: v for k, v in overrides.items() if k != "num_classes"}),
        num_classes=overrides.get("num_classes", train_set.num_classes),
    )
    check_model_fits(cfg, f"preset {preset}", batch=options.get("batch_size", 1), training=True, sources=_sources(overrides))
    opts = TrainOptions(out_dir=out_dir, model_overrides=overrides, **options)
    return DetectionTrainer(cfg, opts, train_set, val_set, resume=resume).run()
