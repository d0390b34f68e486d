"""Detection variant: RoIAlign against a loop transcription of the reference kernel, the res5 change, the RoI head."""

from __future__ import annotations

import math

import pytest
import torch

from slowfast_trt import model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model.detection import detection_config
from slowfast_trt.model.roi_align import roi_align


def _bilinear(fmap: torch.Tensor, y: float, x: float) -> float:
    """Detectron2 / torchvision ROIAlign kernel's bilinear_interpolate, one sample, written as a plain loop body."""
    h, w = fmap.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * fmap[y_low, x_low] + hy * lx * fmap[y_low, x_high] + ly * hx * fmap[y_high, x_low] + ly * lx * fmap[y_high, x_high]
    ).item()


def roi_align_loop(feats: torch.Tensor, boxes: torch.Tensor, out: int, scale: float, ratio: int, aligned: bool) -> torch.Tensor:
    """The reference op, box by box, bin by bin, sample by sample (float64)."""
    feats = feats.double()
    k, c = boxes.shape[0], feats.shape[1]
    result = torch.zeros(k, c, out, out, dtype=torch.float64)
    offset = 0.5 if aligned else 0.0
    for i in range(k):
        b = int(boxes[i, 0])
        x1, y1, x2, y2 = (float(v) * scale - offset for v in boxes[i, 1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / out, rh / out
        for ch in range(c):
            for py in range(out):
                for px in range(out):
                    acc = 0.0
                    for iy in range(ratio):
                        yy = y1 + py * bh + (iy + 0.5) * bh / ratio
                        for ix in range(ratio):
                            xx = x1 + px * bw + (ix + 0.5) * bw / ratio
                            acc += _bilinear(feats[b, ch], yy, xx)
                    result[i, ch, py, px] = acc / (ratio * ratio)
    return result


def _random_boxes(gen, k, n, h, w, stride):
    """Boxes in input pixels, some reaching past the map's edges (the kernel's zeroing and clamping paths)."""
    xy = torch.rand(k, 4, generator=gen) * torch.tensor([w, h, w, h]) * stride * 1.4 - 0.2 * stride * torch.tensor([w, h, w, h])
    x1, x2 = torch.minimum(xy[:, 0], xy[:, 2]), torch.maximum(xy[:, 0], xy[:, 2])
    y1, y2 = torch.minimum(xy[:, 1], xy[:, 3]), torch.maximum(xy[:, 1], xy[:, 3])
    return torch.stack([torch.randint(0, n, (k,), generator=gen).float(), x1, y1, x2, y2], 1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_roi_align_matches_reference_loop(aligned, ratio):
    gen = torch.Generator().manual_seed(ratio)
    worst = 0.0
    for _ in range(3):
        n, c, h, w = 2, 3, int(torch.randint(2, 9, (1,), generator=gen)), int(torch.randint(2, 9, (1,), generator=gen))
        feats = torch.randn(n, c, h, w, generator=gen)
        boxes = _random_boxes(gen, 6, n, h, w, 16)
        got = roi_align(feats, boxes, 4, 1 / 16, ratio, aligned)
        ref = roi_align_loop(feats, boxes, 4, 1 / 16, ratio, aligned)
        worst = max(worst, float((got.double() - ref).abs().max()))
    assert worst < 1e-5


def test_roi_align_constant_map_and_rejects_adaptive_sampling():
    feats = torch.full((1, 2, 5, 5), 3.0)
    boxes = torch.tensor([[0.0, 8.0, 8.0, 56.0, 40.0]])  # inside the map: every sample reads 3
    assert torch.allclose(roi_align(feats, boxes, 7, 1 / 16), torch.full((1, 2, 7, 7), 3.0))
    with pytest.raises(SlowFastError, match="sampling_ratio"):
        roi_align(feats, boxes, 7, 1 / 16, sampling_ratio=0)


def test_detection_backbone_keeps_res4_resolution_with_dilated_res5():
    cfg = detection_config(model.get_config("slowfast_tiny_4x16"), num_classes=5)
    net = model.build(cfg).eval()
    conv_b = net.res5.slow.blocks[0].conv_b
    assert conv_b.stride == (1, 1, 1) and conv_b.dilation == (1, 2, 2)
    x = {"slow": torch.randn(1, 3, 4, 64, 96), "fast": torch.randn(1, 3, 32, 64, 96)}
    slow, fast = net.features(**x)
    assert slow.shape[-2:] == (4, 6) and fast.shape[-2:] == (4, 6)  # stride 16, not 32
    classifier = model.build("slowfast_tiny_4x16", num_classes=5).res5.slow.blocks[0].conv_b
    assert classifier.stride == (1, 2, 2) and classifier.dilation == (1, 1, 1)


def test_detection_config_needs_sigmoid_classes():
    with pytest.raises(SlowFastError, match="multilabel"):
        model.get_config("slowfast_tiny_4x16", detection=True)


def test_roi_head_is_box_replicated_along_time_then_max_pooled():
    """The head equals: per frame RoIAlign of the same 2D box, mean over time, max over the bins, concat, linear."""
    torch.manual_seed(0)
    cfg = detection_config(model.get_config("slowfast_tiny_4x16"), num_classes=4)
    net = model.build(cfg).eval()
    x = {"slow": torch.randn(2, 3, 4, 64, 64), "fast": torch.randn(2, 3, 32, 64, 64)}
    boxes = torch.tensor([[0, 4.0, 6.0, 40.0, 60.0], [1, 20.0, 10.0, 63.0, 30.0], [1, 0.0, 0.0, 64.0, 64.0]])
    with torch.no_grad():
        got = net(**x, boxes=boxes)
        feats = net.features(**x)
        parts = []
        for f in feats:
            per_frame = torch.stack([roi_align(f[:, :, t], boxes, 7, 1 / 16, 2) for t in range(f.shape[2])], dim=2)
            parts.append(per_frame.mean(dim=2).amax(dim=(2, 3)))
        want = net.head.projection(torch.cat(parts, dim=1))
    assert got.shape == (3, 4)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(SlowFastError, match="boxes"):
        net(**x)


def test_slow_only_detection_and_checkpoint_round_trip(tmp_path):
    cfg = detection_config(model.get_config("slow_tiny_4x16"), num_classes=3)
    net = model.build(cfg).eval()
    slow = torch.randn(1, 3, 4, 64, 64)
    boxes = torch.tensor([[0, 1.0, 2.0, 30.0, 50.0]])
    model.save(net, tmp_path / "det.safetensors")
    back = model.load(tmp_path / "det.safetensors")
    assert back.config.detection and back.config.roi_resolution == 7
    with torch.no_grad():
        assert torch.equal(back(slow=slow, boxes=boxes), net(slow=slow, boxes=boxes))
        assert not math.isnan(float(net(slow=slow, boxes=boxes).sum()))
