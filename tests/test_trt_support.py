"""The static TensorRT check: every model the exporters write passes for 10.x and 11.x, and each planted violation
is reported with its node and rule (tiny presets and hand-built graphs, so the file runs in well under a minute)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from slowfast_trt import model  # noqa: E402
from slowfast_trt.cli.main import main  # noqa: E402
from slowfast_trt.common.errors import SlowFastError  # noqa: E402
from slowfast_trt.engines.sidecar import read_sidecar  # noqa: E402
from slowfast_trt.export.onnx import export_onnx  # noqa: E402
from slowfast_trt.export.quantize import quantize_int8  # noqa: E402
from slowfast_trt.export.trt_check import TensorRTSupportError, check_tensorrt_support, require_tensorrt_support  # noqa: E402
from slowfast_trt.model.detection import detection_config  # noqa: E402
from slowfast_trt.model.inputs import random_boxes, random_inputs  # noqa: E402

TINY = model.get_config("slowfast_tiny_4x16")
VARIANTS = {
    "slowfast-tconv": (TINY, {}),
    "slow-only": (model.get_config("slow_tiny_4x16"), {}),
    "fast-only": (TINY.replace(arch="fast", lateral=None), {}),
    "lateral-tsample": (TINY.replace(lateral="tsample"), {}),
    "lateral-ttoc-sum": (TINY.replace(lateral="ttoc_sum", beta_inv=8), {}),
    "fast-gray": (TINY.replace(fast_input="gray"), {}),
    "fast-time-diff": (TINY.replace(fast_input="time_diff"), {}),
    "fast-half-res": (TINY.replace(fast_input="half_res"), {}),
    "nonlocal": (TINY.replace(nonlocal_location=(((), ()), ((), ()), ((0,), ()), ((), ()))), {}),
    "reference-head-probs": (TINY.replace(head_pool="reference", head_act="softmax"), {"outputs": "probs"}),
    "multilabel-probs": (TINY.replace(multilabel=True), {"outputs": "probs"}),
    "fixed-batch-opset13": (TINY, {"batch": 2, "opset": 13}),
    "opset20": (TINY, {"opset": 20}),  # Reduce* axes become inputs from opset 18: they must stay constants
    "detection-slowfast": (detection_config(TINY, num_classes=5), {}),
    "detection-slow": (detection_config(model.get_config("slow_tiny_4x16"), num_classes=5), {}),
}


def _net(cfg):
    torch.manual_seed(0)
    return model.build(cfg).eval()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_exported_variant_passes_for_tensorrt_10_and_11(name, tmp_path):
    """export_onnx checks what it wrote; the sidecar says both majors passed and a fresh check finds nothing."""
    cfg, kw = VARIANTS[name]
    r = export_onnx(_net(cfg), tmp_path / "m.onnx", verify=False, **kw)
    record = read_sidecar(r.path)["tensorrt_check"]
    assert record["passed"] == {"10": True, "11": True} and record["counts"] == {"errors": 0, "warnings": 0}, record
    assert r.sidecar["tensorrt_check"] == record
    assert check_tensorrt_support(r.path) == []


def _calibration(cfg, n=2):
    gen = torch.Generator().manual_seed(0)
    for _ in range(n):
        x = random_inputs(cfg, 64, 1, generator=gen)
        if cfg.detection:
            x["boxes"] = random_boxes(2, 1, 64, generator=gen)
        yield {k: v.numpy() for k, v in x.items()}


@pytest.mark.parametrize(
    "name, placement",
    [("slowfast-tconv", "inputs"), ("slowfast-tconv", "inputs+outputs"), ("nonlocal", "inputs"), ("detection-slow", "inputs")],
)
def test_every_int8_qdq_variant_passes(name, placement, tmp_path):
    """Q/DQ models from both placements (non-local MatMuls, the RoIAlign matmuls) pass; biases stay in float.

    Before the biases were kept in float, every Conv bias was an INT32 DequantizeLinear, which TensorRT refuses.
    """
    cfg, _ = VARIANTS[name]
    fp32 = export_onnx(_net(cfg), tmp_path / "m.onnx", verify=False).path
    out = quantize_int8(fp32, _calibration(cfg), tmp_path / "m.int8.onnx", method="minmax", placement=placement, bias_correction=False)
    record = read_sidecar(out)["tensorrt_check"]
    assert record["passed"] == {"10": True, "11": True} and record["errors"] == [], record
    m = onnx.load(str(out))
    inits = {i.name: i for i in m.graph.initializer}
    dq_inputs = [inits[n.input[0]].data_type for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert dq_inputs and set(dq_inputs) == {TensorProto.INT8}  # weights only, no INT32 biases
    assert check_tensorrt_support(out) == []


# ----- planted violations, on hand-built graphs -----


def _model(nodes, inputs, outputs, inits=(), opset=17, ir=8):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def _x(name="x", shape=(1, 4, 8, 8), t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, list(shape))


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _found(m, rule, node, majors=(10, 11), severity="error"):
    """The findings of `rule` at `node`; asserts there is one, with the severity and majors given."""
    hits = [f for f in check_tensorrt_support(m) if f.rule == rule and f.node == node]
    assert hits, (rule, node, [str(f) for f in check_tensorrt_support(m)])
    assert hits[0].severity == severity and hits[0].majors == majors, hits[0]
    return hits[0]


def _qdq_conv(w_axis=0, zero_point=0, per_channel_scales=4, act_scale_node=None):
    """x -> Q -> DQ -> Conv <- DQ(int8 weights, per-channel along `w_axis`): the shape `export int8` writes."""
    w = np.ones((4, 4, 3, 3), np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w", axis=w_axis),
        helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    inits = [
        _init("z", np.int8(zero_point)),
        _init("w", w),
        _init("ws", np.full(per_channel_scales, 0.1, np.float32)),
        _init("wz", np.zeros(per_channel_scales, np.int8)),
    ]
    if act_scale_node is None:
        inits.append(_init("s", np.float32(0.05)))
    else:
        nodes.insert(0, act_scale_node)
    return _model(nodes, [_x()], [_x("y")], inits)


def test_a_clean_qdq_conv_has_no_findings():
    assert check_tensorrt_support(_qdq_conv()) == []


def test_asymmetric_zero_point_is_named_on_both_nodes():
    m = _qdq_conv(zero_point=3)
    for node, op in (("q_x", "QuantizeLinear"), ("dq_x", "DequantizeLinear")):
        f = _found(m, "qdq.zero-point", node)
        assert f.op_type == op and "symmetric" in f.message and "[3]" in f.message


def test_per_channel_weights_on_the_wrong_axis():
    """Scales along axis 1 (input channels) of a Conv's K,C,kh,kw weights: TensorRT folds only axis-0 scales."""
    f = _found(_qdq_conv(w_axis=1), "qdq.weight-axis", "dq_w")
    assert "'conv' (Conv)" in f.message and "axis 0" in f.message
    assert not [f for f in check_tensorrt_support(_qdq_conv(w_axis=0)) if f.rule == "qdq.weight-axis"]


def test_scale_that_is_not_a_constant():
    scale = helper.make_node("ReduceMax", ["x"], ["s"], name="scale_from_data", keepdims=0)
    m = _qdq_conv(act_scale_node=scale)
    f = _found(m, "qdq.scale-constant", "q_x")
    assert "'s'" in f.message and "initializers" in f.message


def test_per_channel_scale_on_an_activation():
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_act", axis=1),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["y"], name="dq_act", axis=1),
    ]
    m = _model(nodes, [_x()], [_x("y")], [_init("s", np.full(4, 0.1, np.float32)), _init("z", np.zeros(4, np.int8))])
    _found(m, "qdq.per-channel-activation", "q_act")
    _found(m, "qdq.per-channel-activation", "dq_act")


def test_quantize_without_a_pair_and_uint8_or_int32_types():
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zu"], ["xq"], name="q_uint8"),
        helper.make_node("Cast", ["xq"], ["y"], name="cast_back", to=TensorProto.FLOAT),
        helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], name="bias_dq"),  # what ONNX Runtime writes for biases
        helper.make_node("Add", ["y", "bd"], ["out"], name="add"),
    ]
    inits = [
        _init("s", np.float32(0.1)),
        _init("zu", np.uint8(0)),
        _init("b", np.zeros(4, np.int32)),
        _init("bs", np.float32(0.01)),
        _init("bz", np.int32(0)),
    ]
    m = _model(nodes, [_x()], [_x("out")], inits)
    assert "UINT8" in _found(m, "qdq.type", "q_uint8").message
    assert "'cast_back' (Cast)" in _found(m, "qdq.pairing", "q_uint8").message
    assert "INT32" in _found(m, "qdq.type", "bias_dq").message


def test_a_float64_tensor():
    nodes = [
        helper.make_node("Cast", ["x"], ["x64"], name="to_double", to=TensorProto.DOUBLE),
        helper.make_node("Add", ["x64", "one"], ["y64"], name="add_double"),
        helper.make_node("Cast", ["y64"], ["y"], name="to_float", to=TensorProto.FLOAT),
    ]
    m = _model(nodes, [_x()], [_x("y")], [_init("one", np.float64(1.0))])
    assert "FP32" in _found(m, "dtype.double", "to_double").message
    assert _found(m, "dtype.double", "one").op_type == "initializer"
    assert "casts to DOUBLE" in _found(m, "op.types", "to_double").message


def test_unsupported_op_and_custom_domain():
    nodes = [
        helper.make_node("Unique", ["x"], ["u"], name="unique"),
        helper.make_node("FusedConv", ["x"], ["y"], name="ort_fused", domain="com.microsoft"),
    ]
    m = _model(nodes, [_x()], [_x("u"), _x("y")])
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert "support matrix" in _found(m, "op.unsupported", "unique").message
    assert "com.microsoft" in _found(m, "op.domain", "ort_fused").message


@pytest.mark.parametrize(
    "node, why",
    [
        (helper.make_node("Resize", ["x", "", "sc"], ["y"], name="r", mode="cubic"), "mode='cubic'"),
        (helper.make_node("Resize", ["x", "", "sc"], ["y"], name="r", coordinate_transformation_mode="tf_crop_and_resize"), "tf_crop"),
        (helper.make_node("MaxPool", ["x"], ["y"], name="r", kernel_shape=[2, 2], dilations=[2, 2]), "dilations"),
        (helper.make_node("TopK", ["x", "k"], ["y", "i"], name="r", sorted=0), "sorted=0"),
    ],
)
def test_attribute_values_tensorrt_refuses(node, why):
    inits = [_init("sc", np.array([1, 1, 2, 2], np.float32)), _init("k", np.array([2], np.int64))]
    m = _model([node], [_x()], [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in node.output], inits)
    assert why in _found(m, "op.attribute", "r").message


def test_roialign_needs_sampling_ratio_and_four_column_rois():
    """ONNX RoiAlign: TensorRT's importer reads a missing sampling_ratio as 1 where ONNX means adaptive (0)."""

    def roi(rois_shape, **attrs):
        node = helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], name="roi", output_height=7, output_width=7, **attrs)
        ins = [_x(), _x("rois", rois_shape), _x("idx", (3,), TensorProto.INT64)]
        return _model([node], ins, [_x("y", (3, 4, 7, 7))], opset=16)

    assert "sampling_ratio is not set" in _found(roi((3, 4)), "op.attribute", "roi").message
    assert "(K, 4)" in _found(roi((3, 5), sampling_ratio=2), "op.rank", "roi").message
    plain = roi((3, 4), sampling_ratio=2)
    assert [f.rule for f in check_tensorrt_support(plain)] == ["op.plugin"]  # the plugin-library reminder only
    assert _found(plain, "op.plugin", "roi", severity="warning")
    assert "mode='bilinear'" in _found(roi((3, 4), sampling_ratio=2, mode="bilinear"), "op.attribute", "roi").message


def test_axes_computed_in_the_graph():
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"], name="shape"),
        helper.make_node("Slice", ["sh", "zero", "one"], ["axes"], name="axes_from_shape"),
        helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean"),
    ]
    inits = [_init("zero", np.array([0], np.int64)), _init("one", np.array([1], np.int64))]
    m = _model(nodes, [_x()], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits, opset=18)
    assert "axes" in _found(m, "op.constant-input", "mean").message


def test_opset_and_ir_version_bounds():
    identity = [helper.make_node("Identity", ["x"], ["y"], name="id")]
    m21 = _model(identity, [_x()], [_x("y")], opset=21)
    f = _found(m21, "model.opset", "", majors=(10,))  # 10.x parses up to 20, 11.x up to 24
    assert "--opset 20" in f.message and f.op_type == "model"
    assert check_tensorrt_support(m21, trt_major=11) == []
    _found(_model(identity, [_x()], [_x("y")], opset=8), "model.opset", "")
    newer = _model(identity, [_x()], [_x("y")], ir=14)  # past ONNX 1.20's IR 13: a warning per major, each naming its bound
    assert "(IR 10)" in _found(newer, "model.ir-version", "", majors=(10,), severity="warning").message
    assert "(IR 13)" in [f.message for f in check_tensorrt_support(newer, 11)][0]
    _found(_model(identity, [_x()], [_x("y")], ir=2), "model.ir-version", "")


def test_raising_wrapper_names_node_and_rule():
    with pytest.raises(TensorRTSupportError, match=r"node 'dq_w' \(DequantizeLinear\): qdq.weight-axis") as e:
        require_tensorrt_support(_qdq_conv(w_axis=1), name="m.onnx")
    assert "\n" not in str(e.value) and isinstance(e.value, SlowFastError)
    assert require_tensorrt_support(_qdq_conv()) == []
    with pytest.raises(SlowFastError, match="no TensorRT support table for major"):
        check_tensorrt_support(_qdq_conv(), trt_major=9)


def test_planted_violation_in_a_real_int8_export(tmp_path):
    """A zero point edited on the exported Q/DQ model is found on that node, by the library and the CLI."""
    fp32 = export_onnx(_net(TINY), tmp_path / "m.onnx", verify=False).path
    out = quantize_int8(fp32, _calibration(TINY), tmp_path / "m.int8.onnx", method="minmax", bias_correction=False, trt_check="off")
    assert "tensorrt_check" not in read_sidecar(out)  # off: no record, and not the FP32 model's either
    m = onnx.load(str(out))
    inits = {i.name: i for i in m.graph.initializer}
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in inits)
    zp = inits[dq.input[2]]
    zp.CopyFrom(numpy_helper.from_array(np.int8(5), zp.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(m, str(broken))
    assert _found(str(broken), "qdq.zero-point", dq.name)
    r = CliRunner().invoke(main, ["export", "check", str(broken), "--trt", "10"])
    assert r.exit_code == 2, r.output
    assert f"error: node '{dq.name}' (DequantizeLinear): qdq.zero-point" in r.output
    assert r.output.strip().splitlines()[-1].startswith(f"error: {broken}: ")
    ok = CliRunner().invoke(main, ["export", "check", str(fp32)])
    assert ok.exit_code == 0 and "takes every node" in ok.output, ok.output


def test_cli_export_onnx_refused_is_one_line_exit_2_and_keeps_the_file(tmp_path):
    """Opset 21 is past 10.x's range: one `error:` line naming the rule, exit 2, the model and its record kept;
    checking for 11.x only passes."""
    ckpt = model.save(_net(TINY), tmp_path / "tiny.safetensors")
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "onnx", str(ckpt), "--out", str(out), "--opset", "21", "--no-verify"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: TensorRT would refuse it: model: model.opset:"), r.output
    assert "Traceback" not in r.output and "--opset 20" in lines[0] and "[TensorRT 10.x]" in lines[0]
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert out.exists() and side["tensorrt_check"]["passed"] == {"10": False, "11": True}
    r = CliRunner().invoke(main, ["export", "onnx", str(ckpt), "--out", str(out), "--opset", "21", "--no-verify", "--trt-check", "11"])
    assert r.exit_code == 0 and "TensorRT 11.x check: passed" in r.output, r.output
    r = CliRunner().invoke(main, ["export", "onnx", str(ckpt), "--out", str(out), "--opset", "21", "--no-verify", "--trt-check", "off"])
    assert r.exit_code == 0 and "tensorrt_check" not in read_sidecar(out), r.output
