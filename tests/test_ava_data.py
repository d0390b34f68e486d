"""AVA-format data: CSV readers and their bad-input messages, keyframe clips with edge padding, the synthetic set,
and the DALI keyframe loader's boxes and frames."""

from __future__ import annotations

import numpy as np
import pytest

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.ava import canvas_size, clip_indices, resized_size
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.ava import AvaRow, keyframe_frame, load_ava, looks_like_ava_csv, read_ava_csv
from slowfast_trt.data.manifest import Entry, Video, write_manifest
from slowfast_trt.data.synth_ava import ACTIONS, actions_of, actor_box, render_scene, scene, synth_detection
from slowfast_trt.model.detection import detection_config

TINY = model.get_config("slowfast_tiny_4x16")


def _write(path, text):
    path.write_text(text)
    return path


def _set(tmp_path, labels: str, proposals: str | None = None, frames: int = 96):
    """A detection-set folder whose videos.csv names two (absent) videos; only the CSV logic is exercised."""
    write_manifest(
        tmp_path / "videos.csv",
        [Entry("videos/a.webm", (0,), frames, 30.0, 64, 32, "vp9"), Entry("videos/b.webm", (1,), frames, 30.0, 64, 32, "vp9")],
        ["run", "jump", "sit"],
    )
    _write(tmp_path / "val.csv", labels)
    if proposals is not None:
        _write(tmp_path / "val_proposals.csv", proposals)
    return tmp_path / "val.csv"


def test_reads_labels_grouping_actions_per_person_and_thresholds_proposals(tmp_path):
    labels = _set(
        tmp_path,
        "a,1,0.1,0.2,0.5,0.9,1,0\na,1,0.1,0.2,0.5,0.9,3,0\na,1,0.6,0.2,0.9,0.8,2,1\nb,2,0,0,1,1,2,0\n",
        "a,1,0.1,0.2,0.5,0.88,,0.95\na,1,0.5,0.5,0.6,0.6,,0.5\nb,3,0.2,0.2,0.4,0.4,,0.81\n",
    )
    s = load_ava(labels, use_proposals=True)
    assert [k.key for k in s.keyframes] == [("a", 1), ("b", 2), ("b", 3)]
    a1 = s.keyframes[0]
    assert a1.frame == 30 and a1.gt_boxes == [(0.1, 0.2, 0.5, 0.9), (0.6, 0.2, 0.9, 0.8)]
    assert a1.gt_labels == [{0, 2}, {1}]
    assert a1.proposals == [(0.1, 0.2, 0.5, 0.88)] and a1.proposal_scores == [0.95]  # 0.5 < 0.8 dropped
    assert s.keyframes[1].proposals == []  # labelled keyframe without proposals: documented as all missed
    assert s.unlabelled_proposal_keyframes == 1  # b@3 has proposals but no labels: its detections are false positives
    assert looks_like_ava_csv(labels) and not looks_like_ava_csv(tmp_path / "videos.csv")
    assert read_ava_csv(tmp_path / "val_proposals.csv", "proposals", threshold=0.0)[1] == AvaRow(
        "a", 1, (0.5, 0.5, 0.6, 0.6), None, None, 0.5
    )


@pytest.mark.parametrize(
    "row, message",
    [
        ("a,1,0.1,0.2,1.5,0.9,1,0", r"val.csv:1: box .* outside \[0, 1\]"),
        ("a,1,-0.2,0.2,0.5,0.9,1,0", r"outside \[0, 1\]"),
        ("a,1,0.5,0.2,0.1,0.9,1,0", "empty"),
        ("a,1,0.1,0.2,0.5,0.9,9,0", r"action id 9 is outside 1..3"),
        ("a,1,0.1,0.2,0.5", "expected 8 fields"),
        ("a,x,0.1,0.2,0.5,0.9,1,0", "must be numbers"),
        ("a,1.5,0.1,0.2,0.5,0.9,1,0", "whole number of seconds"),
        ("zz,1,0.1,0.2,0.5,0.9,1,0", "video id 'zz'.* is not in"),
        ("a,9,0.1,0.2,0.5,0.9,1,0", "frame 270, outside the video's 96 frames"),
    ],
)
def test_bad_label_rows_fail_before_any_decoding_with_file_and_line(tmp_path, row, message):
    with pytest.raises(SlowFastError, match=message):
        load_ava(_set(tmp_path, row + "\n"))


def test_boxes_just_outside_the_frame_are_clipped_and_unknown_proposal_videos_fail(tmp_path):
    s = load_ava(_set(tmp_path, "a,1,-0.005,0.2,1.004,0.9,1,0\n"))
    assert s.keyframes[0].gt_boxes == [(0.0, 0.2, 1.0, 0.9)]
    with pytest.raises(SlowFastError, match="video id 'nope'"):
        load_ava(_set(tmp_path, "a,1,0.1,0.2,0.5,0.9,1,0\n", "nope,1,0.1,0.2,0.5,0.9,,0.9\n"), use_proposals=True)
    with pytest.raises(SlowFastError, match="not found"):
        load_ava(_set(tmp_path, "a,1,0.1,0.2,0.5,0.9,1,0\n"), tmp_path / "missing.csv", use_proposals=True)


def test_clips_are_centred_on_the_keyframe_and_repeat_edge_frames():
    v = Video(0, "x.webm", 0, 96, 30.0, 64, 32)
    fast, slow_pos = clip_indices(TINY, v, 48)  # 4x16: 32 Fast frames, 2 apart, centred: 16..78
    assert fast.tolist() == list(range(16, 80, 2))
    assert fast[slow_pos].tolist() == [fast[i] for i in (0, 10, 20, 31)]  # PySlowFast's Slow subset
    start, _ = clip_indices(TINY, v, keyframe_frame(0, 30.0))  # keyframe at 0 s: first half repeats frame 0
    assert start.tolist()[:17] == [0] * 17 and start.tolist()[17:] == list(range(2, 32, 2))
    end, _ = clip_indices(TINY, v, 90)  # near the end: frames past 95 repeat frame 95
    assert end.tolist()[-4:] == [95] * 4 and end.min() == 58


def test_canvas_keeps_aspect_ratios_and_pads_to_the_largest():
    wide, tall = Video(0, "w", 0, 9, 30.0, 128, 64), Video(1, "t", 0, 9, 30.0, 48, 64)
    assert resized_size(wide, 32) == (32, 64) and resized_size(tall, 32) == (43, 32)
    assert canvas_size([wide, tall], 32) == (43, 64)


def test_synthetic_actors_have_motion_dependent_labels_and_boxes_on_them():
    assert len(ACTIONS) == 10
    assert actions_of(0) == [0, 9] and actions_of(1) == [1] and actions_of(4) == [4, 8, 9] and actions_of(7) == [7, 8]
    bg, actors = scene(0, 3, 64, 32, 64)
    assert 2 <= len(actors) <= 3
    frames = render_scene(0, 3, 64, 32, 64)
    assert frames.shape == (64, 32, 64, 3)
    for a in actors:  # the actor's pixels at a frame where it is visible lie in its box
        f = int(np.flatnonzero(a.visible)[0])
        x1, y1, x2, y2 = (int(v) for v in actor_box(a, f, 32))
        box_pixels = frames[f, y1:y2, x1:x2]
        assert (box_pixels == a.colour.astype(np.uint8)).all(axis=-1).any()
        assert a.strip[0] <= x1 < x2 <= a.strip[1]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("ava")
    r = synth_detection(out, videos=4, size="32x64", frames=96, val_fraction=0.5, workers=1, progress=False)
    return r


def test_synth_writes_an_ava_style_set(small_set):
    out = small_set["out"]
    assert small_set["train"] == 2 and small_set["val"] == 2
    for name in ("videos.csv", "classes.txt", "train.csv", "val.csv", "train_proposals.csv", "val_proposals.csv", "README.md"):
        assert (out / name).is_file(), name
    s = load_ava(out / "val.csv", use_proposals=True)
    assert s.classes == list(ACTIONS)
    assert {k.timestamp for k in s.keyframes} == {1, 2, 3}  # 1 Hz, frames 30, 60, 90 of 96
    assert all(k.gt_boxes for k in s.keyframes)
    assert sum(len(k.proposals) for k in s.keyframes) > 0


def test_keyframe_loader_yields_clips_and_boxes_in_canvas_pixels(small_set):
    import torch

    from slowfast_trt.dali_pipelines.ava import KeyframeLoader

    s = load_ava(small_set["out"] / "val.csv", use_proposals=True)
    cfg = detection_config(TINY.replace(crop_size=32, test_crop_size=32), s.num_classes)
    loader = KeyframeLoader(s.keyframes, cfg, FeedSpec(batch_size=4, device="cpu"), boxes="gt", videos=s.videos)
    batch = next(iter(loader))
    assert batch["slow"].shape == (4, 3, 4, 32, 64) and batch["fast"].shape == (4, 3, 32, 32, 64)
    k = s.keyframes[int(batch["keyframe"][0])]
    first = batch["boxes"][batch["box_keyframe"] == k.index][0]
    x1, y1, x2, y2 = k.gt_boxes[0]
    assert torch.allclose(first, torch.tensor([0.0, x1 * 64, y1 * 32, x2 * 64, y2 * 32]))
    assert batch["targets"].shape == (len(batch["boxes"]), 10)
    assert batch["targets"][0].nonzero().flatten().tolist() == sorted(k.gt_labels[0])
    # The Slow frames are the clip's frames at the Slow positions (pixels identical to the Fast input's frames)
    _, slow_pos = clip_indices(cfg, k.video, k.frame)
    assert torch.equal(batch["slow"][0], batch["fast"][0][:, torch.as_tensor(slow_pos).long()])


def test_keyframe_loader_takes_the_nvdec_routing(small_set, monkeypatch):
    """Files a GPU loader routes to DALI's CPU decoder (`nvdec.route`) take it in the keyframe graph too: a split source
    and a conditional graph. On the CPU both branches use the CPU decoder, so the batches equal the plain graph's."""
    import torch

    from slowfast_trt.dali_pipelines import ava

    s = load_ava(small_set["out"] / "val.csv", use_proposals=True)
    cfg = detection_config(TINY.replace(crop_size=32, test_crop_size=32), s.num_classes)
    built = []
    real = ava.build_keyframe_pipeline
    monkeypatch.setattr(
        ava, "build_keyframe_pipeline", lambda source, *a, **kw: built.append(source.graph.decoder) or real(source, *a, **kw)
    )
    plain = ava.KeyframeLoader(s.keyframes, cfg, FeedSpec(batch_size=2, device="cpu"), boxes="gt", videos=s.videos)
    split = ava.KeyframeLoader(s.keyframes, cfg, FeedSpec(batch_size=2, device="cpu"), boxes="gt", videos=s.videos)
    split.on_cpu = frozenset({s.keyframes[0].video.path})  # what a GPU loader gets for a video below NVDEC's minimum
    n = 0
    for a, b in zip(plain, split, strict=True):
        assert torch.equal(a["fast"], b["fast"]) and torch.equal(a["boxes"], b["boxes"])
        n += 1
    assert n == len(plain) and built == ["nvdec", "split"]
