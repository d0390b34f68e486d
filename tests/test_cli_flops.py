"""`slowfast flops` / `slowfast bench flops`: the table, --json keys, result files."""

from __future__ import annotations

import json

from click.testing import CliRunner

from slowfast_trt.cli.main import main


def test_flops_json_keys_and_values():
    r = CliRunner().invoke(main, ["flops", "slowfast_r50_4x16", "fast_r50_4x16", "slow_r50_8x8", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [x["preset"] for x in rows] == ["slowfast_r50_4x16", "fast_r50_4x16", "slow_r50_8x8"]
    for x in rows:
        assert {"preset", "size", "params", "gflops", "paper_gflops", "note", "fast_share"} <= set(x)
    assert rows[0]["size"] == 256 and abs(rows[0]["gflops"] - 36.1) < 0.05 and rows[0]["note"] is None
    assert rows[1]["paper_gflops"] == 6.4 and rows[1]["note"]
    assert rows[2]["paper_gflops"] is None and rows[2]["diff_pct"] is None


def test_flops_table_and_files(tmp_path):
    r = CliRunner().invoke(main, ["bench", "flops", "slowfast_r50_4x16_tsample", "--size", "224", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "multiply-adds x 1e9" in r.output and "224x224" in r.output and "slow 4x224^2, fast 32x224^2" in r.output
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["benchmark"] == "flops" and result["device"] and result["versions"]["torch"]
    assert result["rows"][0]["paper_gflops"] is None  # the paper's number is for 256, not compared at 224
    assert (tmp_path / "flops.md").read_text().startswith("GFLOPs = multiply-adds")


def test_flops_list():
    r = CliRunner().invoke(main, ["flops", "--list"])
    assert r.exit_code == 0 and "slowfast_r101_16x8_nl\tTable 2" in r.output
