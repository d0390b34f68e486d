"""Empirical bias correction: fold each quantized Conv's mean output shift, measured on calibration clips, into its bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slowfast_trt.export.int8_ranges import probe_session


def bias_correct(pre: Path, int8: Path, batches: list[dict[str, np.ndarray]], input_names: list[str], out: Path) -> tuple[Path, dict]:
    """Empirical bias correction (Nagel et al. 2019, "Data-free quantization"): fold each Conv's mean quantization error into its bias.

    From the first quantization pass (`int8`) take every quantized Conv's activation scale and int8 weights; over the
    calibration batches take the per-channel mean of the Conv's float input x and of its quantized value DQ(Q(x)) in
    the FP32 graph; then bias -= sum_k (Wq * mean(DQ(Q(x))) - W * mean(x)), the mean output shift that rounding
    causes (exact away from the borders for a spatially constant shift). A per-tensor scale that rounds a
    near-constant activation (the Fast stem's pooled output on still background) to a level above or below it
    otherwise shifts every later layer. Returns the corrected FP32 model and the activation scales to pin, so the
    second pass quantizes the same tensors on the same grid.
    """
    import onnx  # lazy: onnx, optional (extra [export])
    from onnx import numpy_helper  # lazy: onnx, optional (extra [export])

    q = onnx.load(str(int8))
    qinits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    qprod = {o: n for n in q.graph.node for o in n.output}
    m = onnx.load(str(pre))
    inits = {i.name: i for i in m.graph.initializer}
    convs = {}
    pinned = {}
    for n in q.graph.node:
        if n.op_type != "Conv" or qprod.get(n.input[0]) is None or qprod[n.input[0]].op_type != "DequantizeLinear":
            continue
        xdq, wdq = qprod[n.input[0]], qprod[n.input[1]]
        x_name = qprod[xdq.input[0]].input[0]  # Conv <- DQ <- Q <- float tensor
        scale = float(qinits[xdq.input[1]])
        wq = qinits[wdq.input[0]].astype(np.float64) * qinits[wdq.input[1]].reshape(-1, *[1] * (qinits[wdq.input[0]].ndim - 1))
        convs[n.name] = (x_name, scale, wq)
        pinned[x_name] = [{"scale": np.array(scale, np.float32), "zero_point": np.array(0, np.int8)}]
    for n in q.graph.node:  # pin every other activation Q/DQ (Conv/MatMul outputs, the classifier input) as well
        if n.op_type == "QuantizeLinear" and n.input[0] not in qinits and n.input[0] not in pinned:
            pinned[n.input[0]] = [{"scale": np.array(float(qinits[n.input[1]]), np.float32), "zero_point": np.array(0, np.int8)}]
    nodes = {n.name: n for n in m.graph.node if n.op_type == "Conv" and n.name in convs}
    tensors = sorted({convs[k][0] for k in nodes})
    sess = probe_session(pre, tensors)
    scale_of = {convs[k][0]: convs[k][1] for k in nodes}
    sums = {t: [0.0, 0.0, 0] for t in tensors}
    for b in batches:
        outs = sess.run(tensors, {n: np.ascontiguousarray(b[n], dtype=np.float32) for n in input_names})
        for t, x in zip(tensors, outs):
            axes = tuple(i for i in range(x.ndim) if i != 1)
            xq = np.clip(np.round(x / scale_of[t]), -128, 127) * scale_of[t]
            sums[t][0] = sums[t][0] + x.sum(axis=axes, dtype=np.float64)
            sums[t][1] = sums[t][1] + xq.sum(axis=axes, dtype=np.float64)
            sums[t][2] += x.size // x.shape[1]
    for name, node in nodes.items():
        x_name, _, wq = convs[name]
        if len(node.input) < 3 or node.input[2] not in inits or any(a.name == "group" and a.i != 1 for a in node.attribute):
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        mean_x, mean_xq = sums[x_name][0] / sums[x_name][2], sums[x_name][1] / sums[x_name][2]
        shape = (1, -1, *[1] * (w.ndim - 2))
        shift = (wq * mean_xq.reshape(shape)).sum(axis=tuple(range(1, w.ndim))) - (w * mean_x.reshape(shape)).sum(
            axis=tuple(range(1, w.ndim))
        )
        bias = numpy_helper.to_array(inits[node.input[2]])
        inits[node.input[2]].CopyFrom(numpy_helper.from_array((bias - shift).astype(bias.dtype), node.input[2]))
    onnx.save(m, str(out))
    return out, pinned
