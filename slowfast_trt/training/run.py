"""Entry points behind `slowfast train` and `slowfast eval`: manifests in, a run folder or an evaluation out."""

from __future__ import annotations

from pathlib import Path

from slowfast_trt import engines
from slowfast_trt.common.device import resolve_device, use_threads
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import probe_writable
from slowfast_trt.dali_pipelines.ava import load_ava, looks_like_ava_csv
from slowfast_trt.data.manifest import load_manifest_videos
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.detection import detection_config
from slowfast_trt.model.zoo import get_config
from slowfast_trt.training.detect import DetectionTrainer, evaluate_detection, write_detection_eval
from slowfast_trt.training.evaluate import evaluate_engine, write_eval
from slowfast_trt.training.run_folder import claim_run_folder, fingerprint
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
    preset's detection variant (training/detect.py).
    """
    detection = bool(train_manifest and Path(train_manifest).is_file() and looks_like_ava_csv(train_manifest))
    if not detection:  # (detection label CSVs are read and validated in _train_detection)
        train_m, train_videos = load_manifest_videos(train_manifest, "training")
        _, val_videos = load_manifest_videos(val_manifest, "validation")
        cfg = resolve_config(preset, train_m, model_overrides or {})
    data = {k: fingerprint(v) for k, v in (("train", train_manifest), ("val", val_manifest)) if v is not None}
    with claim_run_folder(out_dir, resume, overwrite):
        if detection:
            return _train_detection(preset, train_manifest, out_dir, val_manifest, resume, model_overrides or {}, {**options, "data": data})
        opts = TrainOptions(out_dir=out_dir, model_overrides=model_overrides or {}, data=data, **options)
        return Trainer(cfg, opts, train_videos, val_videos, resume=resume).run()


def evaluate(
    artifact: str,
    manifest: str,
    *,
    num_clips: int = 10,
    num_crops: int = 3,
    batch_size: int = 4,
    device: str = "auto",
    threads: int | None = None,
    skip_bad: bool = False,
    out_dir: str | None = None,
    progress: bool = True,
    qdq: str = "auto",
) -> dict:
    """Multi-view accuracy of a checkpoint, ONNX model or TensorRT plan on `manifest`; writes eval.json/.md to `out_dir`.

    `qdq`: how ONNX Runtime runs an INT8 Q/DQ model (`engines.ort_engine`)."""
    if Path(manifest).is_file() and looks_like_ava_csv(manifest):
        return _evaluate_detection(
            artifact,
            manifest,
            batch_size=batch_size,
            device=device,
            threads=threads,
            skip_bad=skip_bad,
            out_dir=out_dir,
            progress=progress,
            qdq=qdq,
        )
    if out_dir:
        probe_writable(out_dir)  # a read-only or full --out fails now, not after the whole evaluation
    _, videos = load_manifest_videos(manifest, "evaluation")
    split = use_threads(threads, model_on_cpu=resolve_device(device).type == "cpu")
    engine = engines.load(artifact, device=device, qdq=qdq, threads=split.engine)
    result = evaluate_engine(
        engine,
        videos,
        num_clips=num_clips,
        num_crops=num_crops,
        batch_size=batch_size,
        device=device,
        threads=split.dali,
        skip_bad=skip_bad,
        progress=progress,
    )
    result["thread_split"] = split.as_dict()
    if out_dir:
        result["files"] = {k: str(v) for k, v in write_eval(result, out_dir).items()}
    return result


# ----- action detection (AVA-format label CSVs; see dali_pipelines/ava.py) -----
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
    opts = TrainOptions(out_dir=out_dir, model_overrides=overrides, **options)
    return DetectionTrainer(cfg, opts, train_set, val_set, resume=resume).run()


def _evaluate_detection(
    artifact: str,
    labels_csv: str,
    *,
    batch_size: int,
    device: str,
    threads: int,
    skip_bad: bool,
    out_dir: str | None,
    progress: bool,
    qdq: str = "auto",
) -> dict:
    """Frame mAP of a detection checkpoint / ONNX model / plan on a label CSV and its proposals."""
    if out_dir:
        probe_writable(out_dir)
    data = load_ava(labels_csv, use_proposals=True)
    engine = engines.load(artifact, device=device, qdq=qdq)
    result = evaluate_detection(engine, data, batch_size=batch_size, device=device, threads=threads, skip_bad=skip_bad, progress=progress)
    if out_dir:
        result["files"] = {k: str(v) for k, v in write_detection_eval(result, out_dir).items()}
    return result
