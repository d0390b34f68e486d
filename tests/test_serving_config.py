"""Triton configs as `export triton` writes them, read as text (no Triton server or venv needed)."""

from __future__ import annotations

import json

import pytest

from slowfast_trt import model
from slowfast_trt.engines.sidecar import sidecar_path
from slowfast_trt.export.onnx import export_onnx
from slowfast_trt.serving.repository import build_repository

pytest.importorskip("onnxruntime")
pytest.importorskip("nvidia.dali")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("triton_config")
    onnx = export_onnx(model.build("slowfast_tiny_4x16", num_classes=4), d / "tiny.onnx").path
    side = json.loads(sidecar_path(onnx).read_text())
    side |= {"kind": "tensorrt", "precision": "fp16", "tensorrt": {"profile": {"min": 1, "opt": 2, "max": 4}}}
    plan = d / "tiny.fp16.plan"
    plan.write_bytes(b"a stand-in: only the sidecar is read")
    sidecar_path(plan).write_text(json.dumps(side))
    return d, onnx, plan


def test_a_tensorrt_plan_is_always_a_gpu_instance(artifacts):
    """Triton's TensorRT backend refuses KIND_CPU ("supports only GPU device"): without --gpus the plan still gets KIND_GPU."""
    d, onnx, plan = artifacts
    build_repository(plan, d / "plan_repo", clips=2, validate=False)
    text = (d / "plan_repo" / "tiny_fp16" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in text and "instance_group [ { count: 1 kind: KIND_GPU } ]" in text
    build_repository(plan, d / "plan_gpus", clips=2, gpus=[1], instances=2, validate=False)
    assert "count: 2 kind: KIND_GPU gpus: [ 1 ]" in (d / "plan_gpus" / "tiny_fp16" / "config.pbtxt").read_text()
    build_repository(onnx, d / "onnx_repo", clips=2, validate=False)  # ONNX Runtime runs anywhere: the CPU unless --gpus
    assert "kind: KIND_CPU" in (d / "onnx_repo" / "tiny" / "config.pbtxt").read_text()
