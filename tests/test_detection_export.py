"""Detection export: ONNX with slow, fast and boxes inputs (dynamic box count and clip size) matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slowfast_trt import model
from slowfast_trt.export.onnx import export_onnx
from slowfast_trt.model.detection import detection_config
from slowfast_trt.model.inputs import random_boxes


@pytest.mark.parametrize("preset", ["slowfast_tiny_4x16", "slow_tiny_4x16"])
def test_onnx_detection_graph_matches_torch(tmp_path, preset):
    import onnxruntime as ort

    torch.manual_seed(0)
    net = model.build(detection_config(model.get_config(preset), num_classes=6)).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so the comparison is not of near-constant outputs
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    r = export_onnx(net, tmp_path / "det.onnx")
    side = r.sidecar
    assert side["input_names"] == [*net.config.pathways, "boxes"]
    assert side["inputs"]["boxes"]["shape"] == ["boxes", 5]
    assert side["parity"]["max_abs_diff"] < 1e-4
    sess = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    for batch, k, (h, w) in ((1, 1, (64, 64)), (3, 7, (64, 96)), (2, 13, (32, 64))):
        x = {"slow": torch.randn(batch, 3, 4, h, w, generator=gen), "fast": torch.randn(batch, 3, 32, h, w, generator=gen)}
        x = {p: x[p] for p in net.config.pathways}
        # boxes partly outside the clip: the kernel's zero/clamp paths are in the graph too
        boxes = random_boxes(k, batch, max(h, w), generator=gen) * torch.tensor([1.0, 1.1, 1.1, 1.1, 1.1]) - torch.tensor(
            [0, 4.0, 4.0, 0, 0]
        )
        with torch.no_grad():
            ref = net(**x, boxes=boxes).numpy()
        got = sess.run(None, {**{n: v.numpy() for n, v in x.items()}, "boxes": boxes.numpy()})[0]
        assert got.shape == (k, 6)
        assert np.abs(got - ref).max() < 1e-4


def test_onnx_engine_runs_boxes_through_the_engine_interface(tmp_path):
    from slowfast_trt import engines

    net = model.build(detection_config(model.get_config("slow_tiny_4x16"), num_classes=4)).eval()
    model.save(net, tmp_path / "det.safetensors")
    r = export_onnx(tmp_path / "det.safetensors", tmp_path / "det.onnx", verify=False)
    engine = engines.load(str(r.path), device="cpu")
    slow = torch.randn(2, 3, 4, 32, 64)
    boxes = torch.tensor([[0, 1.0, 2.0, 20.0, 30.0], [1, 30.0, 0.0, 63.0, 31.0], [1, 0.0, 0.0, 64.0, 32.0]])
    with torch.no_grad():
        ref = net(slow=slow, boxes=boxes)
    got = engine(slow=slow, boxes=boxes)
    assert got.shape == (3, 4) and torch.allclose(got, ref, atol=1e-4)
    torch_engine = engines.load(str(tmp_path / "det.safetensors"), device="cpu")
    assert torch.allclose(torch_engine(slow=slow, boxes=boxes), ref, atol=1e-5)
