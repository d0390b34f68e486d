"""Static TensorRT check of an ONNX model: every node, element type and Q/DQ pair against `trt_support`'s facts.

A user's engine build should never be the first to meet a node TensorRT refuses, so `export onnx` and `export int8`
run this on what they wrote, record the result in the sidecar, and stop with one line naming the node and the rule
(the file stays for inspection: `slowfast export check`). Findings are "error" (the parser or builder refuses it, or
computes something other than the graph says) or "warning" (accepted, but not as fast or as portable as it looks).
Bodies of If/Loop/Scan are not descended into (the exporters write no control flow).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines.sidecar import read_sidecar, write_sidecar
from slowfast_trt.export.trt_support import RELEASES, TRT_MAJORS, WEIGHTED_OPS, Attr, OpRule, Release

TRT_CHECKS = ("all", *(str(m) for m in TRT_MAJORS), "off")
DEFAULT_TRT_CHECK = "all"
ONNX_DOMAINS = ("", "ai.onnx")
QDQ = ("QuantizeLinear", "DequantizeLinear")
BLOCK_TYPES = frozenset({"INT4", "FLOAT8E4M3FN", "FLOAT4E2M1"})  # block-wise Q/DQ scales: 4-bit and FP8 only
QUANTIZED_NAMES = "INT8, FP8 (E4M3) or INT4"
MAX_RECORDED = 20  # findings kept in the sidecar, per severity


class TensorRTSupportError(SlowFastError):
    """An exported model has a node TensorRT refuses; the message names the node and the rule."""


@dataclass(frozen=True)
class Finding:
    """One broken rule: which node (or tensor, or the model), which rule, why, and for which TensorRT majors."""

    rule: str
    severity: str  # "error" | "warning"
    node: str
    op_type: str
    message: str
    majors: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.op_type == "model":
            where = "model"
        elif self.op_type in ("input", "initializer"):
            where = f"{self.op_type} '{self.node}'"
        else:
            where = f"node '{self.node}' ({self.op_type})"
        return f"{where}: {self.rule}: {self.message} [TensorRT {', '.join(f'{m}.x' for m in self.majors)}]"


def trt_majors(trt_check: str) -> tuple[int, ...]:
    """The TensorRT majors a `--trt-check` value asks for: "all", one major, or "off" (none)."""
    if trt_check not in TRT_CHECKS:
        raise SlowFastError(f"--trt-check must be one of {', '.join(TRT_CHECKS)}, got {trt_check!r}")
    return TRT_MAJORS if trt_check == "all" else () if trt_check == "off" else (int(trt_check),)


class _Graph:
    """The facts about a model the rules need: producers, consumers, constants, element types and ranks."""

    def __init__(self, model):
        import onnx  # lazy: onnx, optional (extra [export])
        from onnx import numpy_helper, shape_inference  # lazy: onnx, optional (extra [export])

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.model = model
        try:  # element types and ranks of the intermediate tensors; a model shape inference cannot read keeps its own
            inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
        except Exception:  # onnx raises InferenceError and plain exceptions alike
            inferred = model
        g = inferred.graph
        self.nodes = list(model.graph.node)
        self.inits = {i.name: i for i in model.graph.initializer}
        self.inputs = [i.name for i in model.graph.input if i.name not in self.inits]
        self.outputs = {o.name for o in model.graph.output}
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.types: dict[str, str] = {}
        self.ranks: dict[str, int] = {}
        self.dims: dict[str, list] = {}
        for v in [*g.input, *g.value_info, *g.output]:
            t = v.type.tensor_type
            if t.elem_type:
                self.types[v.name] = onnx.TensorProto.DataType.Name(t.elem_type)
            if t.HasField("shape"):
                self.ranks[v.name] = len(t.shape.dim)
                self.dims[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        for i in model.graph.initializer:
            self.types[i.name] = onnx.TensorProto.DataType.Name(i.data_type)
            self.ranks[i.name], self.dims[i.name] = len(i.dims), list(i.dims)
        for n in self.nodes:
            if n.op_type == "Constant" and n.output:
                a = next((a for a in n.attribute if a.name == "value"), None)
                if a is not None:
                    self.types[n.output[0]] = onnx.TensorProto.DataType.Name(a.t.data_type)
                    self.ranks[n.output[0]], self.dims[n.output[0]] = len(a.t.dims), list(a.t.dims)

    def attr(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                v = self.onnx.helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def is_constant(self, name: str) -> bool:
        """Known when the engine is built: an initializer, a Constant's output, or an Identity of either."""
        if name in self.inits:
            return True
        p = self.producer.get(name)
        return p is not None and (p.op_type == "Constant" or (p.op_type == "Identity" and self.is_constant(p.input[0])))

    def value(self, name: str) -> np.ndarray | None:
        """The value of a build-time constant (None when it is not one)."""
        if name in self.inits:
            return self.numpy_helper.to_array(self.inits[name])
        p = self.producer.get(name)
        if p is None:
            return None
        if p.op_type == "Identity":
            return self.value(p.input[0])
        if p.op_type == "Constant":
            for a in p.attribute:
                v = self.onnx.helper.get_attribute_value(a)
                return self.numpy_helper.to_array(v) if a.name == "value" else np.asarray(v)
        return None


def _model_rules(g: _Graph, rel: Release) -> Iterable[Finding]:
    m = g.model
    opset = next((o.version for o in m.opset_import if o.domain in ONNX_DOMAINS), None)
    lo, hi = rel.opsets
    if opset is None or opset < lo:
        why = f"opset {opset} is older than opset {lo}, the oldest TensorRT parses"
        yield Finding("model.opset", "error", "", "model", f"default-domain {why}; re-export with --opset 17")
    elif opset > hi:
        why = f"opset {opset} is newer than opset {hi}, the newest TensorRT {rel.major}.x parses"
        yield Finding("model.opset", "error", "", "model", f"default-domain {why}; re-export with --opset {hi}")
    if m.ir_version < 3:
        yield Finding(
            "model.ir-version", "error", "", "model", f"IR version {m.ir_version} predates opset imports (IR 3); re-export the model"
        )
    elif m.ir_version > rel.max_ir:
        yield Finding(
            "model.ir-version",
            "warning",
            "",
            "model",
            f"IR version {m.ir_version} is newer than ONNX {rel.onnx} (IR {rel.max_ir}) that TensorRT {rel.major}.x's parser is built with; "
            "fields added since are ignored",
        )


def _dtype_rules(g: _Graph, rel: Release) -> Iterable[Finding]:
    for name, t in g.types.items():
        p = g.producer.get(name)
        if p is not None:
            node, op = p.name, p.op_type
        else:
            node, op = name, ("initializer" if name in g.inits else "input")
        if p is None and name not in g.inits and name not in g.inputs and name not in g.outputs:
            continue  # value_info of a tensor the graph does not have
        if t == "DOUBLE":
            yield Finding(
                "dtype.double",
                "error",
                node,
                op,
                f"tensor '{name}' is DOUBLE; TensorRT has no FP64 and computes it in FP32 (clamped to +-FLT_MAX), "
                "so the engine would not compute this graph: export in float32",
            )
        elif t not in rel.dtypes:
            yield Finding("dtype.unsupported", "error", node, op, f"tensor '{name}' is {t}, which TensorRT has no type for")
        elif t == "UINT8" and name not in g.inputs and name not in g.outputs:
            yield Finding(
                "dtype.uint8", "error", node, op, f"tensor '{name}' is UINT8, which TensorRT takes only as a network input or output"
            )
        elif t in rel.quantized and (p is None or p.op_type != "QuantizeLinear"):
            # A quantized constant may only be dequantized, or be the zero point of a Q/DQ.
            readers = {c.op_type for c in g.consumers.get(name, []) if not _reads_quantized(c, name)}
            if name in g.inputs or name in g.outputs or not g.is_constant(name) or readers:
                yield Finding(
                    "dtype.quantized",
                    "error",
                    node,
                    op,
                    f"tensor '{name}' is {t}; TensorRT has {t} only between QuantizeLinear and DequantizeLinear "
                    f"(read here by {sorted(readers) or 'the graph input/output'})",
                )


def _reads_quantized(consumer, name: str) -> bool:
    """Whether `consumer` takes the quantized tensor `name` where TensorRT allows one: DQ data, or a Q/DQ zero point."""
    return (consumer.op_type == "DequantizeLinear" and consumer.input[0] == name) or (
        consumer.op_type in QDQ and len(consumer.input) > 2 and consumer.input[2] == name
    )


def _attr_findings(g: _Graph, n, rule_attr: Attr) -> Iterable[str]:
    present = any(a.name == rule_attr.name for a in n.attribute)
    if rule_attr.required and not present:
        yield f"attribute {rule_attr.name} is not set: {rule_attr.why}"
        return
    v = g.attr(n, rule_attr.name, rule_attr.default)
    if v is None:
        return
    ok = True
    if rule_attr.allowed is not None:
        ok = v in rule_attr.allowed
    elif rule_attr.check is not None:
        ok = PREDICATES[rule_attr.check](v)
    if not ok:
        allowed = ", ".join(sorted(map(str, rule_attr.allowed))) if rule_attr.allowed is not None else rule_attr.check.replace("_", " ")
        yield f"{rule_attr.name}={v!r} is not accepted (TensorRT takes {allowed})" + (f": {rule_attr.why}" if rule_attr.why else "")


PREDICATES = {
    "all_ones": lambda v: all(int(x) == 1 for x in v),
    "positive": lambda v: v > 0,
    "non_negative": lambda v: v >= 0,
}


def _type_findings(g: _Graph, n, rule: OpRule, rel: Release) -> Iterable[tuple[str, str]]:
    typed = rule.typed if rule.typed is not None else [i for i in range(len(n.input)) if i not in rule.index]
    for i, name in enumerate(n.input):
        if not name or name not in g.types:
            continue
        t = g.types[name]
        if t == "DOUBLE" or t not in rel.dtypes or (t in rel.quantized and n.op_type not in QDQ):
            continue  # reported once, by the dtype rules, where the tensor is made
        want = rule.index.get(i, rule.types if i in typed else None)
        if want is not None and t not in want:
            yield "op.types", f"input {i} ('{name}') is {t}; TensorRT's {n.op_type} takes {', '.join(sorted(want))} there"
    if n.op_type == "Cast":
        to = g.onnx.TensorProto.DataType.Name(g.attr(n, "to", 0))
        if to not in rule.types:
            yield "op.types", f"casts to {to}; TensorRT's Cast takes {', '.join(sorted(rule.types))}"


def _special_findings(g: _Graph, n) -> Iterable[tuple[str, str]]:
    """Limits that depend on shapes or constant values, not on one attribute."""
    if n.op_type == "RoiAlign" and len(n.input) > 1:
        dims = g.dims.get(n.input[1])
        if dims is not None and (len(dims) != 2 or dims[1] not in (None, 4)):
            yield "op.rank", f"rois '{n.input[1]}' has shape {dims}; TensorRT's ROIAlign plugin takes (K, 4)"
    if n.op_type == "Resize":
        mode = g.attr(n, "mode", "nearest")
        scales = g.value(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if mode == "linear" and scales is not None and scales.size > 3 and np.any(scales.ravel()[:-3] != 1):
            yield (
                "op.attribute",
                f"linear Resize scales {scales.ravel().tolist()}; TensorRT interpolates linearly over the last 3 axes only",
            )
        axes = g.attr(n, "axes")
        if axes is not None and scales is None and list(axes) != list(range(g.ranks.get(n.input[0], len(axes)))):
            yield "op.attribute", f"axes={list(axes)} with scales computed in the graph; TensorRT needs axes to be every axis in order then"
    if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2]:
        v = g.value(n.input[2])
        if v is not None and bool(np.any(v)):
            yield "op.attribute", "training_mode is true; TensorRT runs Dropout only in inference mode"


def _op_rules(g: _Graph, rel: Release) -> Iterable[Finding]:
    for n in g.nodes:
        if n.domain not in ONNX_DOMAINS:
            yield Finding(
                "op.domain",
                "error",
                n.name,
                n.op_type,
                f"op from domain '{n.domain}'; TensorRT parses only ONNX operators (anything else needs a plugin of that name)",
            )
            continue
        if n.op_type not in rel.supported:
            yield Finding("op.unsupported", "error", n.name, n.op_type, f"{n.op_type} is not in TensorRT's ONNX operator support matrix")
            continue
        rule = rel.ops.get(n.op_type)
        if rule is None:
            continue
        found: list[tuple[str, str]] = list(_type_findings(g, n, rule, rel))
        for i, what in rule.constants.items():
            if i < len(n.input) and n.input[i] and not g.is_constant(n.input[i]):
                found.append(
                    (
                        "op.constant-input",
                        f"input {i} ({what}, '{n.input[i]}') is computed in the graph; TensorRT needs it to be an initializer or a Constant",
                    )
                )
        found += [("op.attribute", msg) for a in rule.attrs for msg in _attr_findings(g, n, a)]
        found += [
            ("op.attribute", f"attribute {a} is set; TensorRT's {n.op_type} does not support it")
            for a in rule.forbidden
            if any(x.name == a for x in n.attribute)
        ]
        rank = g.ranks.get(n.input[0]) if n.input else None
        if rule.ranks is not None and rank is not None and rank not in rule.ranks:
            found.append(("op.rank", f"input 0 has rank {rank}; TensorRT's {n.op_type} takes rank {' or '.join(map(str, rule.ranks))}"))
        outputs = sum(1 for o in n.output if o)
        if rule.outputs is not None and outputs > rule.outputs:
            found.append(("op.outputs", f"{outputs} outputs; TensorRT produces only the first {rule.outputs}"))
        found += list(_special_findings(g, n))
        for rule_id, msg in found:
            yield Finding(rule_id, "error", n.name, n.op_type, msg)
        if n.op_type == "RoiAlign":
            yield Finding(
                "op.plugin",
                "warning",
                n.name,
                n.op_type,
                "imported as TensorRT's ROIAlign_TRT plugin: the builder needs the standard plugins registered "
                "(tensorrt.init_libnvinfer_plugins) and the engine needs libnvinfer_plugin at run time",
            )


def _weight_root(g: _Graph, n) -> bool:
    """Whether a Q/DQ node's data is weights: a constant, or (for DQ) the output of a Q of a constant."""
    src = n.input[0]
    if g.is_constant(src):
        return True
    p = g.producer.get(src)
    return n.op_type == "DequantizeLinear" and p is not None and p.op_type == "QuantizeLinear" and g.is_constant(p.input[0])


def _output_channel_axis(g: _Graph, consumer, index: int, rank: int) -> int | None:
    """The output-channel axis of input `index` of a weighted op (where per-channel weight scales must run)."""
    op = consumer.op_type
    if op == "Conv" and index == 1:
        return 0
    if op == "ConvTranspose" and index == 1:
        return 1
    if op == "MatMul" and index in (0, 1):
        return rank - 1 if index == 1 else rank - 2
    if op == "Gemm" and index in (0, 1):
        trans = g.attr(consumer, "transB" if index == 1 else "transA", 0)
        return (0 if trans else 1) if index == 1 else (1 if trans else 0)
    return None


def _weight_consumers(g: _Graph, n) -> list[tuple[object, int]]:
    """(weighted op, input position) pairs that read this Q/DQ's weights (through the DQ when `n` is a Q)."""
    dqs = [n] if n.op_type == "DequantizeLinear" else [c for c in g.consumers.get(n.output[0], []) if c.op_type == "DequantizeLinear"]
    return [
        (c, i)
        for dq in dqs
        for c in g.consumers.get(dq.output[0], [])
        for i, x in enumerate(c.input)
        if x == dq.output[0] and c.op_type in WEIGHTED_OPS
    ]


def _qdq_node_findings(g: _Graph, n, rel: Release) -> Iterable[tuple[str, str]]:
    name_of = "y" if n.op_type == "QuantizeLinear" else "x"
    zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
    out_dtype = g.attr(n, "output_dtype")
    if n.op_type == "DequantizeLinear":
        qtype = g.types.get(n.input[0])
    elif out_dtype:
        qtype = g.onnx.TensorProto.DataType.Name(out_dtype)
    else:
        qtype = g.types.get(zp) if zp else None
        if zp is None:
            yield (
                "qdq.zero-point",
                "no y_zero_point: ONNX quantizes to UINT8 (negatives clip to 0) where TensorRT uses INT8; give an INT8 zero point of 0",
            )
    if qtype is not None and qtype not in rel.quantized:
        yield "qdq.type", f"quantizes to {qtype}; TensorRT's Q/DQ take {QUANTIZED_NAMES} (and FP4 from 11.x), never {qtype}"
    scale = g.value(n.input[1]) if len(n.input) > 1 else None
    if scale is None:
        yield (
            "qdq.scale-constant",
            f"{name_of}_scale '{n.input[1]}' is computed in the graph; TensorRT needs Q/DQ scales as initializers or Constants",
        )
    elif not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        yield (
            "qdq.scale-positive",
            f"{name_of}_scale has values <= 0 or not finite (min {float(np.min(scale)):.3g}); TensorRT needs every scale > 0",
        )
    if zp is not None:
        z = g.value(zp)
        if z is None:
            yield "qdq.zero-point", f"{name_of}_zero_point '{zp}' is computed in the graph; TensorRT needs a constant of zeros"
        elif np.any(z != 0):
            yield (
                "qdq.zero-point",
                f"{name_of}_zero_point is {np.unique(z)[:4].tolist()}, not 0: TensorRT takes only symmetric quantization",
            )
        elif scale is not None and z.size != scale.size:
            yield "qdq.scale-shape", f"zero point has {z.size} values and the scale {scale.size}; TensorRT needs the same size"
    if scale is None:
        return
    src = g.producer.get(n.input[0])
    dims = g.dims.get(n.input[0]) or (g.dims.get(src.input[0]) if src is not None and src.op_type == "QuantizeLinear" else None)
    rank = len(dims) if dims is not None else None
    if scale.ndim > 1 and (rank is None or scale.ndim != rank or qtype not in BLOCK_TYPES):
        yield (
            "qdq.scale-shape",
            f"scale of shape {list(scale.shape)}; TensorRT takes a scalar, a 1-D per-channel scale, or block scales for INT4/FP8/FP4 only",
        )
        return
    if scale.ndim != 1 or scale.size == 1:
        return  # per tensor (or block-wise)
    if not _weight_root(g, n):
        yield (
            "qdq.per-channel-activation",
            f"{scale.size} scales on an activation; TensorRT scales activations per tensor (one scale), per channel only weights",
        )
        return
    if rank is None:
        return
    axis = g.attr(n, "axis", 1)
    axis = axis + rank if axis < 0 else axis
    if axis < rank and dims[axis] not in (None, scale.size):
        yield "qdq.scale-shape", f"{scale.size} scales along axis {axis} of a {dims} tensor; TensorRT needs one per element of that axis"
    for consumer, index in _weight_consumers(g, n):
        want = _output_channel_axis(g, consumer, index, rank)
        if want is not None and axis != want:
            yield (
                "qdq.weight-axis",
                f"per-channel weight scales along axis {axis}, but '{consumer.name}' ({consumer.op_type}) has its output channels on axis "
                f"{want}; TensorRT folds only output-channel scales into an int8 kernel",
            )


def _qdq_rules(g: _Graph, rel: Release) -> Iterable[Finding]:
    for n in g.nodes:
        if n.op_type not in QDQ or n.domain not in ONNX_DOMAINS:
            continue
        found = list(_qdq_node_findings(g, n, rel))
        if n.op_type == "QuantizeLinear":
            readers = [c for c in g.consumers.get(n.output[0], []) if c.op_type != "DequantizeLinear"]
            if readers or n.output[0] in g.outputs:
                who = f"'{readers[0].name}' ({readers[0].op_type})" if readers else "the graph output"
                found.append(
                    (
                        "qdq.pairing",
                        f"its quantized output is read by {who}; TensorRT needs every QuantizeLinear followed by DequantizeLinear",
                    )
                )
        else:
            p = g.producer.get(n.input[0])
            if p is not None and p.op_type not in ("QuantizeLinear", "Constant", "Identity"):
                found.append(
                    (
                        "qdq.pairing",
                        f"dequantizes the output of '{p.name}' ({p.op_type}); TensorRT needs a QuantizeLinear or constant weights there",
                    )
                )
        for rule_id, msg in found:
            yield Finding(rule_id, "error", n.name, n.op_type, msg)
    for n in g.nodes:  # Q/DQ placement: a weighted op with one quantized input and one float input runs in float
        if n.op_type not in WEIGHTED_OPS or len(n.input) < 2:
            continue
        quantized = [g.producer.get(x) is not None and g.producer[x].op_type == "DequantizeLinear" for x in n.input[:2]]
        if any(quantized) and not all(quantized):
            plain = n.input[quantized.index(False)]
            yield Finding(
                "qdq.placement",
                "warning",
                n.name,
                n.op_type,
                f"one input is quantized but '{plain}' is not; TensorRT runs a {n.op_type} in INT8 only when its data and weights both come from DequantizeLinear",
            )


def _load(model):
    import onnx  # lazy: onnx, optional (extra [export])

    if isinstance(model, (str, os.PathLike)):
        try:
            return onnx.load(str(model))
        except Exception as e:  # protobuf's DecodeError and friends for a file that is not an ONNX model
            raise SlowFastError(f"{model}: not a readable ONNX model ({str(e).splitlines()[0][:200] or type(e).__name__})") from None
    return model


def check_tensorrt_support(model, trt_major: int | Iterable[int] | None = None) -> list[Finding]:
    """Every rule `model` (a ModelProto or a path) breaks for TensorRT `trt_major` (10, 11, several, or None: all).

    A finding that holds for several majors is reported once, listing them. Errors come first.
    """
    majors = TRT_MAJORS if trt_major is None else (trt_major,) if isinstance(trt_major, int) else tuple(trt_major)
    unknown = [m for m in majors if m not in RELEASES]
    if unknown:
        raise SlowFastError(f"no TensorRT support table for major {unknown}; known: {', '.join(map(str, TRT_MAJORS))}")
    g = _Graph(_load(model))
    merged: dict[tuple, list[int]] = {}
    for m in majors:
        rel = RELEASES[m]
        for f in [*_model_rules(g, rel), *_dtype_rules(g, rel), *_op_rules(g, rel), *_qdq_rules(g, rel)]:
            merged.setdefault((f.rule, f.severity, f.node, f.op_type, f.message), []).append(m)
    findings = [Finding(*key, majors=tuple(ms)) for key, ms in merged.items()]
    return sorted(findings, key=lambda f: f.severity != "error")


def errors_of(findings: list[Finding]) -> list[Finding]:
    """The findings TensorRT refuses (or would compute differently)."""
    return [f for f in findings if f.severity == "error"]


def _refusal(name: str, errors: list[Finding]) -> str:
    more = f"; {len(errors) - 1} more error(s)" if len(errors) > 1 else ""
    return f"{name}: TensorRT would refuse it: {errors[0]}{more}"


def require_tensorrt_support(model, trt_major: int | Iterable[int] | None = None, name: str = "model") -> list[Finding]:
    """`check_tensorrt_support`, raising TensorRTSupportError (one line, the first error and the count) on any error."""
    findings = check_tensorrt_support(model, trt_major)
    errors = errors_of(findings)
    if errors:
        raise TensorRTSupportError(_refusal(name, errors))
    return findings


def check_report(findings: list[Finding], majors: tuple[int, ...]) -> dict:
    """The sidecar record of a check: majors, sources, pass/fail per major, and the findings (first MAX_RECORDED each)."""
    errors, warnings = errors_of(findings), [f for f in findings if f.severity == "warning"]
    return {
        "majors": list(majors),
        "passed": {str(m): not any(m in f.majors for f in errors) for m in majors},
        "sources": {str(m): RELEASES[m].source for m in majors},
        "errors": [str(f) for f in errors[:MAX_RECORDED]],
        "warnings": [str(f) for f in warnings[:MAX_RECORDED]],
        "counts": {"errors": len(errors), "warnings": len(warnings)},
    }


def check_artifact(path: str | os.PathLike, trt_check: str = DEFAULT_TRT_CHECK) -> dict | None:
    """Check an exported model for the majors `trt_check` names, record it in its sidecar, and raise on any error.

    The model and its sidecar stay either way, so a refused model can be inspected (`slowfast export check`).
    Returns the sidecar record, or None when `trt_check` is "off".
    """
    majors = trt_majors(trt_check)
    if not majors:
        return None
    path = Path(path)
    findings = check_tensorrt_support(path, majors)
    record = check_report(findings, majors)
    side = read_sidecar(path)
    side["tensorrt_check"] = record
    write_sidecar(path, side)
    errors = errors_of(findings)
    if errors:
        raise TensorRTSupportError(
            _refusal(str(path), errors) + f"; the file is kept: `slowfast export check {path}` lists all "
            "(--trt-check picks the TensorRT major you deploy on, or off)"
        )
    return record
