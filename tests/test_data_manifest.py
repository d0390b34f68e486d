"""Manifest format and the source layouts (class folders, PySlowFast lists, Kinetics CSVs, manifests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.data.layouts import read_collection
from slowfast_trt.data.manifest import Entry, read_manifest, to_videos, write_manifest


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_manifest_round_trip_relative_paths_and_classes(tmp_path):
    entries = [
        Entry("videos/a/1.webm", 0, 96, 30.0, 80, 64, "vp9"),
        Entry("/abs/b.mp4", 1),
        Entry("c, with comma.webm", (0, 1), 10, 29.97003),
    ]
    path = write_manifest(tmp_path / "set" / "manifest.csv", entries, ["walk", "run"])
    text = path.read_text().splitlines()
    assert text[0] == "path,label,num_frames,fps,width,height,codec"
    assert text[1] == "videos/a/1.webm,0,96,30,80,64,vp9" and text[2] == "/abs/b.mp4,1,,,,,"
    assert (tmp_path / "set" / "classes.txt").read_text() == "walk\nrun\n"
    m = read_manifest(path)
    assert m.entries == entries and m.classes == ["walk", "run"] and len(m) == 3
    assert m.resolve(entries[0]) == str(tmp_path / "set" / "videos/a/1.webm") and m.resolve(entries[1]) == "/abs/b.mp4"
    assert not entries[1].complete and entries[0].complete


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(SlowFastError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "a.csv").write_text("path,label\nx.webm,cat\n")
    with pytest.raises(SlowFastError, match=r"a.csv:2: label 'cat' is not an integer id"):
        read_manifest(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("path,label,frames\nx.webm,1,3\n")
    with pytest.raises(SlowFastError, match="unknown manifest column"):
        read_manifest(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("path,label,num_frames\nx.webm,1,many\n")
    with pytest.raises(SlowFastError, match="num_frames='many' is not a valid int"):
        read_manifest(tmp_path / "c.csv")
    d = tmp_path / "d"
    d.mkdir()
    (d / "m.csv").write_text("path,label\nx.webm,2\n")
    (d / "classes.txt").write_text("a\nb\n")
    with pytest.raises(SlowFastError, match="label 2 of x.webm is outside classes.txt's 2 classes"):
        read_manifest(d / "m.csv")
    with pytest.raises(SlowFastError, match="not a class id"):
        write_manifest(tmp_path / "e.csv", [Entry("x", 3)], ["a"])


def test_without_classes_txt_names_are_the_ids(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.webm,0\nb.webm,3\n")
    assert read_manifest(tmp_path / "m.csv").classes == ["0", "1", "2", "3"]


def test_class_folders_nested_files_unique_names_and_loose_files(tmp_path):
    src = tmp_path / "kinetics" / "train"
    _touch(src / "abseiling" / "x1.mp4")
    _touch(src / "abseiling" / "part2" / "x2.mkv")
    _touch(src / "air drumming" / "y.mp4")
    _touch(src / "air drumming" / "y.avi")  # same stem: outputs must not collide
    _touch(src / "air drumming" / "notes.txt")  # not a video extension: ignored
    _touch(src / "empty class" / "readme.md")  # no videos: not a class
    _touch(src / "loose.mp4")
    c = read_collection(src)
    assert c.layout == "folders" and c.classes == ["abseiling", "air drumming"]
    assert [(Path(i.path).name, i.label, i.name) for i in c.items] == [
        ("x1.mp4", 0, "abseiling/x1"),
        ("x2.mkv", 0, "abseiling/part2/x2"),
        ("y.avi", 1, "air drumming/y"),
        ("y.mp4", 1, "air drumming/y_1"),
    ]
    assert len(c.rejects) == 1 and c.rejects[0][0].endswith("loose.mp4") and "class folder" in c.rejects[0][1]


def test_flat_folder_is_one_class(tmp_path):
    _touch(tmp_path / "clips" / "a.mp4")
    _touch(tmp_path / "clips" / "b.webm")
    c = read_collection(tmp_path / "clips")
    assert c.layout == "flat" and c.classes == ["clips"] and [i.name for i in c.items] == ["a", "b"] and {i.label for i in c.items} == {0}


def test_pyslowfast_list_with_spaces_missing_files_and_classes(tmp_path):
    _touch(tmp_path / "vids" / "a b.mp4")
    _touch(tmp_path / "vids" / "c.mp4")
    (tmp_path / "train.csv").write_text("vids/a b.mp4 2\nvids/c.mp4 0\nvids/gone.mp4 1\n\n")
    c = read_collection(tmp_path / "train.csv")
    assert c.layout == "pyslowfast" and c.classes == ["0", "1", "2"]
    assert [(Path(i.path).name, i.label, i.name) for i in c.items] == [("a b.mp4", 2, "2/a b"), ("c.mp4", 0, "0/c")]
    assert c.rejects == [(str(tmp_path / "vids" / "gone.mp4"), "file not found")]
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    assert read_collection(tmp_path / "train.csv").items[0].name == "z/a b"
    (tmp_path / "bad.txt").write_text("vids/c.mp4 walking\n")
    with pytest.raises(SlowFastError, match="not an integer id"):
        read_collection(tmp_path / "bad.txt")


def test_kinetics_csv_resolved_against_a_folder(tmp_path):
    root = tmp_path / "downloads"
    _touch(root / "train" / "abseiling" / "abc123_000010_000020.mp4")
    _touch(root / "xyz789.webm")
    (tmp_path / "k.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,abc123,10,20,train\n"
        '"air drumming",xyz789,5,15,train\n'
        "zumba,missing1,0,10,train\n"
    )
    c = read_collection(tmp_path / "k.csv", root=root)
    assert c.layout == "kinetics" and c.classes == ["abseiling", "air drumming", "zumba"]  # sorted names = ids
    assert [(Path(i.path).name, i.label, i.name) for i in c.items] == [
        ("abc123_000010_000020.mp4", 0, "abseiling/abc123_000010_000020"),
        ("xyz789.webm", 1, "air drumming/xyz789_000005_000015"),
    ]
    assert len(c.rejects) == 1 and "not downloaded: no missing1_000000_000010.*" in c.rejects[0][1]
    with pytest.raises(SlowFastError, match="video folder not found"):
        read_collection(tmp_path / "k.csv", root=tmp_path / "nowhere")


def test_manifest_as_source_and_source_errors(tmp_path):
    _touch(tmp_path / "set" / "videos" / "a.webm")
    write_manifest(tmp_path / "set" / "manifest.csv", [Entry("videos/a.webm", 1), Entry("videos/gone.webm", 0)], ["sit", "stand"])
    c = read_collection(tmp_path / "set" / "manifest.csv")
    assert c.layout == "manifest" and c.classes == ["sit", "stand"] and [(i.label, i.name) for i in c.items] == [(1, "stand/a")]
    assert c.rejects[0][1] == "file not found"
    with pytest.raises(SlowFastError, match="source not found"):
        read_collection(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlowFastError, match="no videos found"):
        read_collection(tmp_path / "empty")


def test_to_videos_probes_missing_columns(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    from slowfast_trt.data.video_io import CODECS, VideoWriter

    with VideoWriter(tmp_path / "v.webm", CODECS["vp9"], 64, 48, 25) as w:
        for i in range(20):
            w.write(np.full((48, 64, 3), i * 10, np.uint8))
    assert av is not None
    (tmp_path / "w.webm").write_bytes((tmp_path / "v.webm").read_bytes())  # one video per row (duplicates are dropped)
    write_manifest(tmp_path / "m.csv", [Entry("v.webm", 0), Entry("w.webm", 0, 20, 30.0, 64, 48, "vp9")], ["only"])
    probed, given = to_videos(read_manifest(tmp_path / "m.csv"))
    assert (probed.frame_count, probed.fps, probed.width, probed.height) == (20, 25.0, 64, 48)
    assert (given.index, given.frame_count, given.fps) == (1, 20, 30.0) and given.path == str(tmp_path / "w.webm")
    write_manifest(tmp_path / "bad.csv", [Entry("missing.webm", 0)], ["only"])
    with pytest.raises(SlowFastError, match="missing.webm: file not found"):
        to_videos(read_manifest(tmp_path / "bad.csv"))
