"""Sharded evaluation: torchrun ranks, and `--shard I/N` jobs joined by `slowfast eval merge`, give the result of one
process; a missing or repeated shard is refused in one line."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.shards import Shard, check_cover, parse_shard
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.synth import synth
from slowfast_trt.training.run import evaluate, merge_evaluation
from tests import scaling_helpers as sh
from tests.helpers import randomize_

PRESET = "slowfast_tiny_4x16"
FEED = FeedSpec(num_clips=2, num_crops=1, batch_size=2, device="cpu", threads=1, progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalshards")
    synth(root / "data", videos=8, seed=3, frames=72, val_fraction=0.3, workers=2, progress=False)
    ckpt = root / "net.safetensors"
    model.save(randomize_(model.build(PRESET, num_classes=8), seed=1), ckpt)  # varied predictions, not a constant net
    manifest = str(root / "data" / "manifest.csv")
    single = evaluate(str(ckpt), manifest, FEED, out_dir=str(root / "single"))
    return {"root": root, "ckpt": str(ckpt), "manifest": manifest, "single": single}


def _same(a: dict, b: dict) -> None:
    assert a["video_paths"] == b["video_paths"] and a["videos"] == b["videos"] == 8
    assert a["predictions"] == b["predictions"]
    for setting in a["results"]:
        for k, v in a["results"][setting].items():
            assert b["results"][setting][k] == pytest.approx(v, abs=1e-9), (setting, k)


def test_shard_rule_is_disjoint_covering_and_refuses_bad_specs():
    parts = [Shard(i, 3).pick(list(range(10))) for i in range(3)]
    assert sorted(x for p in parts for x in p) == list(range(10)) and [len(p) for p in parts] == [4, 3, 3]
    assert parse_shard("2/5") == Shard(2, 5)
    for bad in ("5/5", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(SlowFastError, match="--shard"):
            parse_shard(bad)
    assert check_cover([(Shard(1, 2), "b"), (Shard(0, 2), "a")]) == 2
    with pytest.raises(SlowFastError, match="different N"):
        check_cover([(Shard(0, 2), "a"), (Shard(1, 3), "b")])


def test_shard_jobs_merged_in_any_order_equal_one_process(setup, tmp_path):
    dirs = [tmp_path / f"s{i}" for i in range(3)]
    for i in (2, 0, 1):  # any order
        r = evaluate(setup["ckpt"], setup["manifest"], FEED, out_dir=str(dirs[i]), shard=f"{i}/3")
        assert r["shard"] == f"{i}/3" and r["videos"] == len(range(i, 8, 3))
    merged = merge_evaluation([str(d) for d in reversed(dirs)], str(tmp_path / "merged"))
    _same(setup["single"], merged)
    whole = tmp_path / "whole"
    evaluate(setup["ckpt"], setup["manifest"], FEED, out_dir=str(whole), shard="0/1")
    with np.load(whole / "scores.npz") as a, np.load(tmp_path / "merged" / "scores.npz") as b:
        assert sorted(a.files) == sorted(b.files) == ["1x1", "2x1"]
        for k in a.files:  # per-video scores, not only the metrics
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6)
    assert json.loads((tmp_path / "merged" / "eval.json").read_text())["results"] == merged["results"]

    def one_line_error(*args) -> str:
        r = CliRunner().invoke(main, ["eval", "merge", *map(str, args)])
        lines = [ln for ln in r.output.strip().splitlines() if ln]
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.output
        return lines[0]

    assert "shard 1/3 missing" in one_line_error(dirs[0], dirs[2])
    assert "shard 0/3 is given twice" in one_line_error(dirs[0], dirs[1], dirs[2], dirs[0])
    assert "no finished evaluation shard" in one_line_error(dirs[0], dirs[1], tmp_path)
    r = CliRunner().invoke(main, ["eval", "--ckpt", setup["ckpt"], "--data", setup["manifest"], "--shard", "0/3", "--device", "cpu"])
    assert r.exit_code == 2 and "--shard needs --out" in r.output


def test_torchrun_ranks_split_the_videos_and_rank0_reports_one_process_result(setup, tmp_path):
    out = tmp_path / "ddp"
    args = ["eval", "--ckpt", setup["ckpt"], "--data", setup["manifest"], "--clips", "2", "--crops", "1", "--batch-size", "2",
            "--device", "cpu", "--threads", "1", "--out", str(out), "--quiet"]  # fmt: skip
    r = subprocess.run(sh.torchrun_single(2, *args), cwd=sh.ROOT, env=sh.ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("| views |") == 1, "rank 0 alone prints the table"
    result = json.loads((out / "eval.json").read_text())
    _same(setup["single"], result)
    assert [s["shard"] for s in result["shards"]] == ["0/2", "1/2"] and [s["videos"] for s in result["shards"]] == [4, 4]
    whole = tmp_path / "whole"
    evaluate(setup["ckpt"], setup["manifest"], FEED, out_dir=str(whole), shard="0/1")
    with np.load(whole / "scores.npz") as a, np.load(out / "scores.npz") as b:
        for k in a.files:  # the gathered per-video scores, not only the metrics
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6)
