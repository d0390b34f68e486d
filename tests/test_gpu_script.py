"""scripts/gpu/run.sh checked without a GPU: its plan (SLOWFAST_GPU_DRY_RUN=1: steps, budgets, data sets, files),
its refusals, and one real run of its doctor step, which must leave only the planned files in $OUT."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu" / "run.sh"
STEPS = ("doctor", "tests", "model", "conv", "pipeline", "train", "e2e", "compile", "demo")
OUT_FILES = {"log.txt", "pytest.txt", "junit.xml", "doctor.json", "results.tgz"}
COMMAND_LIMIT = 540  # seconds: one device command


def _run(*steps: str, tmp: Path, dry: bool = True, **env: str) -> subprocess.CompletedProcess:
    e = {**os.environ, "OUT": str(tmp / "out"), "SLOWFAST_GPU_TMP": str(tmp / "scratch"), **env}
    if dry:
        e["SLOWFAST_GPU_DRY_RUN"] = "1"
    return subprocess.run(["bash", str(SCRIPT), *steps], cwd=ROOT, env=e, capture_output=True, text=True, timeout=180)


def _plan(text: str) -> dict:
    plan = {"budgets": {}}
    for line in text.splitlines():
        if m := re.fullmatch(r"plan budget (\S+) (\d+)", line):
            plan["budgets"][m[1]] = int(m[2])
        elif m := re.fullmatch(r"plan (steps|synth|files): ?(.*)", line):
            plan[m[1]] = [] if m[2] == "none" else m[2].split()
        elif m := re.fullmatch(r"plan total: (\d+) of (\d+) s", line):
            plan["total"], plan["limit"] = int(m[1]), int(m[2])
    return plan


def plan_of(*steps: str, tmp: Path) -> dict:
    r = _run(*steps, tmp=tmp)
    assert r.returncode == 0, r.stderr
    assert not (tmp / "out").exists()  # a dry run writes nothing
    return _plan(r.stdout)


def test_default_steps_fit_one_command_and_synthesize_nothing(tmp_path):
    p = plan_of(tmp=tmp_path)
    assert p["steps"] == ["doctor", "tests"]
    assert p["total"] == sum(p["budgets"].values()) <= COMMAND_LIMIT == p["limit"]
    assert set(p["budgets"]) == {"setup", "doctor", "tests", "pack"}
    assert p["synth"] == []  # the GPU tests make their own small data
    assert set(p["files"]) == OUT_FILES and len(p["files"]) <= 8


@pytest.mark.parametrize(
    "step, data",
    [
        ("doctor", []),
        ("tests", []),
        ("model", ["r50"]),
        ("conv", []),
        ("pipeline", ["h264-256", "small-vp9"]),
        ("train", ["h264-256"]),
        ("e2e", ["h264-256", "r50"]),
        ("compile", ["r50"]),
        ("soak", ["h264-256"]),
        ("demo", []),
    ],
)
def test_each_step_alone_fits_and_synthesizes_only_what_it_reads(step, data, tmp_path):
    p = plan_of(step, tmp=tmp_path)
    assert p["steps"] == [step] and p["synth"] == data
    assert {f"synth-{d}" for d in data} | {"setup", step, "pack"} == set(p["budgets"])
    assert p["total"] == sum(p["budgets"].values()) <= COMMAND_LIMIT
    assert {"log.txt", "results.tgz"} <= set(p["files"]) <= OUT_FILES
    assert ("pytest.txt" in p["files"]) == (step == "tests") and ("doctor.json" in p["files"]) == (step == "doctor")


def test_steps_run_in_one_order_and_data_is_made_once(tmp_path):
    p = plan_of("e2e", "doctor", "pipeline", "e2e", tmp=tmp_path)
    assert p["steps"] == ["doctor", "pipeline", "e2e"] and p["synth"] == ["h264-256", "small-vp9", "r50"]
    assert [s for s in STEPS if s in p["steps"]] == p["steps"]


def test_unknown_steps_and_selections_over_the_limit_are_refused(tmp_path):
    r = _run("tests", "benchmarks", tmp=tmp_path)
    assert r.returncode == 2 and "unknown step 'benchmarks'" in r.stderr and all(s in r.stderr for s in STEPS)
    r = _run("model", "compile", tmp=tmp_path)
    assert r.returncode == 2 and f"over one command's {COMMAND_LIMIT} s" in r.stderr
    assert _plan(r.stderr)["total"] > COMMAND_LIMIT
    wide = _run("model", "compile", tmp=tmp_path, SLOWFAST_GPU_BUDGET="2000")
    assert wide.returncode == 0 and _plan(wide.stdout)["limit"] == 2000
    assert not (tmp_path / "out").exists()


def test_the_script_writes_only_the_planned_names_into_out():
    names = set(re.findall(r"\$OUT/([\w.]+)", SCRIPT.read_text()))
    assert names == OUT_FILES


def test_a_real_doctor_run_leaves_only_planned_files(tmp_path):
    """The bash machinery (budgeted steps, the streamed log, the results tarball) on this CPU: the wheels count as
    installed (an empty site folder), the step's GPU lines report what is missing here."""
    (tmp_path / "scratch" / "site" / "nvidia" / "dali").mkdir(parents=True)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # python3: this environment's
    r = _run("doctor", tmp=tmp_path, dry=False, PATH=path)
    out = tmp_path / "out"
    files = set(os.listdir(out))
    planned = set(_plan(r.stdout)["files"])
    assert {"log.txt", "results.tgz"} <= files <= planned and len(files) <= 8, (files, r.stdout[-2000:])
    log = (out / "log.txt").read_text()
    assert re.search(r"=== \[\d+s\] setup: exit 0 after \d+ s", log), log[-2000:]
    assert re.search(r"=== \[\d+s\] doctor: exit 0 after \d+ s", log), log[-2000:]
    assert "nvdec vp9 driver: None" in log  # no GPU here: the driver cannot be asked
    assert ("doctor.json" in files) or "has no `slowfast doctor`" in log
    with tarfile.open(out / "results.tgz") as t:
        assert "r" in t.getnames()
    assert r.returncode == 0, r.stdout[-2000:]
