"""Detection through `slowfast train` / `slowfast eval`: AVA label CSVs in, checkpoints and frame mAP out."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from slowfast_trt.data.synth_ava import synth_detection


@pytest.fixture(scope="module")
def ava_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("ava_train")
    synth_detection(out, videos=4, size="32x64", frames=96, val_fraction=0.5, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(ava_set, tmp_path_factory):
    from slowfast_trt.training.run import train

    run = tmp_path_factory.mktemp("run")
    summary = train(
        "slow_tiny_4x16",
        str(ava_set / "train.csv"),
        str(run),
        val_manifest=str(ava_set / "val.csv"),
        model_overrides={"crop_size": 32, "test_crop_size": 32},
        epochs=1,
        batch_size=4,
        lr=0.05,
        device="cpu",
        progress=False,
    )
    return run, summary


def test_train_on_ava_csv_builds_the_detection_variant_and_validates_with_frame_map(trained):
    from slowfast_trt import model

    run, summary = trained
    row = summary["history"][-1]
    assert 0.0 <= row["val_frame_mAP"] <= 100.0
    assert summary["best"]["metric"] == "val_frame_mAP"
    net = model.load(summary["last_checkpoint"])
    assert net.config.detection and net.config.multilabel and net.config.num_classes == 10
    assert (run / "metrics.csv").is_file() and (run / "best.safetensors").is_file()


def test_eval_cli_reports_frame_map_and_survives_missing_and_extra_proposals(trained, ava_set, tmp_path):
    from slowfast_trt.cli.main import main as cli

    run, summary = trained
    # Drop every proposal of the first labelled keyframe, and add proposals on a keyframe without labels.
    lines = (ava_set / "val_proposals.csv").read_text().splitlines()
    first = lines[0].split(",")[:2]
    kept = [ln for ln in lines if ln.split(",")[:2] != first]
    kept.append(f"{first[0]},2,0.1,0.1,0.4,0.9,,0.95")
    labels = tmp_path / "val.csv"
    labels.write_text("".join(ln + "\n" for ln in (ava_set / "val.csv").read_text().splitlines() if ln.split(",")[1] != "2"))
    (tmp_path / "val_proposals.csv").write_text("\n".join(kept) + "\n")
    (tmp_path / "videos.csv").write_text((ava_set / "videos.csv").read_text().replace("videos/", f"{ava_set}/videos/"))
    (tmp_path / "classes.txt").write_text((ava_set / "classes.txt").read_text())
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        cli,
        ["eval", "--ckpt", summary["last_checkpoint"], "--data", str(labels), "--device", "cpu", "--batch-size", "2", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "frame mAP@0.5" in res.output
    result = json.loads((out / "eval.json").read_text())
    assert result["benchmark"] == "detection"
    assert result["keyframes_without_proposals"] >= 1
    assert result["proposal_keyframes_without_labels"] >= 1
    assert 0.0 <= result["results"]["frame"]["mAP"] <= 100.0
    assert set(result["per_class_ap"]) == set((ava_set / "classes.txt").read_text().split())


def test_eval_of_a_classification_checkpoint_on_ava_labels_says_what_to_do(ava_set, tmp_path):
    from slowfast_trt import model
    from slowfast_trt.cli.main import main as cli

    model.save(model.build("slow_tiny_4x16", num_classes=10), tmp_path / "cls.safetensors")
    res = CliRunner().invoke(
        cli, ["eval", "--ckpt", str(tmp_path / "cls.safetensors"), "--data", str(ava_set / "val.csv"), "--device", "cpu"]
    )
    assert res.exit_code != 0
    assert "classification model" in res.output and "Traceback" not in res.output


def test_init_from_classification_weights_keeps_the_backbone_and_adds_an_roi_head(ava_set, tmp_path):
    import torch

    from slowfast_trt import model
    from slowfast_trt.data.ava import load_ava
    from slowfast_trt.model.detection import detection_config
    from slowfast_trt.training.detect import DetectionTrainer
    from slowfast_trt.training.trainer import TrainOptions

    cls = model.build("slow_tiny_4x16", num_classes=400, crop_size=32, test_crop_size=32)
    model.save(cls, tmp_path / "k400.safetensors")
    cfg = detection_config(model.get_config("slow_tiny_4x16", crop_size=32, test_crop_size=32), num_classes=10)
    opts = TrainOptions(out_dir=str(tmp_path / "run"), init=str(tmp_path / "k400.safetensors"), device="cpu", amp="fp32", progress=False)
    trainer = DetectionTrainer(cfg, opts, load_ava(ava_set / "train.csv"))
    assert trainer.cfg.detection
    assert torch.equal(trainer.module.res4.slow.blocks[0].conv_a.weight, cls.res4.slow.blocks[0].conv_a.weight)
    assert trainer.module.head.projection.out_features == 10
