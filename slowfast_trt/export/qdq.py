"""Where Q/DQ pairs go in the graph, and a summary of what a Q/DQ model quantizes (for tests and `export int8`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# Where Q/DQ pairs go. "inputs": on the inputs (activation and weight) of every Conv, Gemm and MatMul only, which is
# TensorRT's explicit-quantization recipe (NVIDIA's ModelOpt places them the same way); the outputs of those ops, the
# ReLUs and the residual Adds stay in float. "inputs+outputs": ONNX Runtime's QDQ default, which also quantizes every
# Conv/Gemm/MatMul output (before its ReLU or residual Add), a second rounding per layer.
PLACEMENTS = ("inputs", "inputs+outputs")
DEFAULT_PLACEMENT = "inputs"
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


def activation_tensors(model_path: Path, placement: str, exclude: list[str]) -> list[str]:
    """The activation tensors that get Q/DQ: data inputs of Conv/Gemm/MatMul (and their outputs with inputs+outputs)."""
    import onnx  # lazy: onnx, optional (extra [export])

    m = onnx.load(str(model_path))
    inits = {i.name for i in m.graph.initializer}
    names = []
    for n in m.graph.node:
        if n.op_type in QUANTIZED_OPS and n.name not in exclude:
            for t in [*n.input[: 2 if n.op_type == "MatMul" else 1], *(n.output[:1] if placement == "inputs+outputs" else [])]:
                if t and t not in inits and t not in names:
                    names.append(t)
    return names


def qdq_summary(onnx_path: str | os.PathLike) -> dict:
    """What a Q/DQ model quantizes and how.

    convs / quantized_convs: Conv nodes, and those whose input and weight both come from DequantizeLinear;
    symmetric: every zero point is 0; per_channel_weights: every quantized Conv weight has one scale per output
    channel (axis 0); per_tensor_activations: every activation (non-initializer) Q/DQ has a single scale;
    qdq_consumers: op types that read a DequantizeLinear output; quantized_outputs: op types whose output feeds a
    QuantizeLinear (graph inputs count as "input").
    """
    import onnx  # lazy: onnx, optional (extra [export])
    from onnx import numpy_helper  # lazy: onnx, optional (extra [export])

    m = onnx.load(str(onnx_path))
    producers = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name: i for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if all(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in c.input[:2])]
    zero_points = []
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            zero_points.append(numpy_helper.to_array(inits[n.input[2]]))
    symmetric = all(np.all(z == 0) for z in zero_points)

    def scale(dq) -> np.ndarray:
        return numpy_helper.to_array(inits[dq.input[1]])

    per_channel = True
    for c in quantized:
        wdq = producers[c.input[1]]
        w = wdq.input[0] if wdq.input[0] in inits else producers[wdq.input[0]].input[0]  # int8 initializer, or Q of a float one
        out_ch = numpy_helper.to_array(inits[w]).shape[0] if w in inits else None
        axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1)
        per_channel &= scale(wdq).shape == (out_ch,) and axis == 0
    activation_dq = [
        n
        for n in m.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear")
        and n.input[0] not in inits
        and (
            n.input[0] not in producers or producers[n.input[0]].op_type != "QuantizeLinear" or producers[n.input[0]].input[0] not in inits
        )
    ]
    per_tensor = all(scale(n).size == 1 for n in activation_dq)
    consumers = sorted({n.op_type for n in m.graph.node for i in n.input if i in producers and producers[i].op_type == "DequantizeLinear"})
    q_out = sorted(
        {
            (producers[n.input[0]].op_type if n.input[0] in producers else "input")
            for n in m.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits
        }
    )
    return {
        "convs": len(convs),
        "quantized_convs": len(quantized),
        "unquantized": [c.name for c in convs if c not in quantized],
        "quantized_names": [c.name for c in quantized],
        "symmetric": symmetric,
        "per_channel_weights": per_channel and bool(quantized),
        "per_tensor_activations": per_tensor,
        "qdq_consumers": consumers,
        "quantized_outputs": q_out,
        "qdq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node),
    }
