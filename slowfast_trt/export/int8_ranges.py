"""Activation ranges beyond ONNX Runtime's calibrators: the MSE-optimal symmetric int8 range per tensor, from FP32 activations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MSE_BINS = 4096


def probe_session(model_path: Path, tensors: list[str]):
    """An ONNX Runtime CPU session over the float model at `model_path` with `tensors` added as outputs."""
    import onnx  # lazy: onnx, optional (extra [export])
    import onnxruntime as ort  # lazy: onnxruntime, optional (extra [export])

    m = onnx.load(str(model_path))
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def mse_thresholds(model_path: Path, batches: list[dict[str, np.ndarray]], input_names: list[str], tensors: list[str]) -> dict[str, float]:
    """Per tensor, the symmetric int8 range T that minimises the mean squared quantization error over the batches.

    Two passes of the FP32 model with `tensors` as extra outputs: the largest |x|, then a histogram of |x| over
    MSE_BINS bins. For a candidate T (step s = T/127) a value |x| > T costs (|x| - T)^2 (clipped), one below s/2
    costs x^2 (rounded to 0), any other s^2/12 (rounding). Exact zeros (ReLU) cost nothing and are left out.
    """
    sess = probe_session(model_path, tensors)

    def outputs():
        for b in batches:
            feed = {n: np.ascontiguousarray(b[n], dtype=np.float32) for n in input_names}
            yield dict(zip(tensors, sess.run(tensors, feed)))

    top = dict.fromkeys(tensors, 0.0)
    for o in outputs():
        for t in tensors:
            top[t] = max(top[t], float(np.abs(o[t]).max()))
    hist = {t: np.zeros(MSE_BINS) for t in tensors}
    for o in outputs():
        for t in tensors:
            a = np.abs(o[t]).ravel()
            hist[t] += np.histogram(a[a > 0], bins=MSE_BINS, range=(0.0, top[t] or 1.0))[0]
    out = {}
    for t in tensors:
        if top[t] == 0.0:
            out[t] = 1.0
            continue
        n = hist[t]
        edges = np.linspace(0.0, top[t], MSE_BINS + 1)
        c = (edges[:-1] + edges[1:]) / 2
        cum_n, cum_nc, cum_nc2 = np.cumsum(n), np.cumsum(n * c), np.cumsum(n * c * c)
        tot_n, tot_nc, tot_nc2 = cum_n[-1], cum_nc[-1], cum_nc2[-1]
        cand = edges[1:]  # T at every bin's upper edge
        k = np.arange(MSE_BINS)  # bins 0..k lie below T
        half = np.searchsorted(c, cand / 254.0, side="left")  # bins below s/2 round to zero
        below_half_nc2 = np.where(half > 0, cum_nc2[np.maximum(half - 1, 0)], 0.0)
        below_half_n = np.where(half > 0, cum_n[np.maximum(half - 1, 0)], 0.0)
        inside_n = cum_n[k] - below_half_n
        over_n, over_nc, over_nc2 = tot_n - cum_n[k], tot_nc - cum_nc[k], tot_nc2 - cum_nc2[k]
        err = below_half_nc2 + inside_n * (cand / 127.0) ** 2 / 12.0 + over_nc2 - 2 * cand * over_nc + cand * cand * over_n
        out[t] = float(cand[int(np.argmin(err))])
    return out
