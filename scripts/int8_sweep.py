"""INT8 quantization sweep: several Q/DQ variants of one FP32 export, all evaluated over one decode.

    python scripts/int8_sweep.py FP32.onnx CALIB_MANIFEST EVAL_MANIFEST OUT_DIR --variant NAME:KEY=VALUE,... [...]
        [--clips 10 --crops 3] [--calib-clips 128] [--sensitivity]

Each variant is `quantize_int8` with the given keyword settings (method, moving_average, percentile, placement,
clips, calib_crops) on calibration clips from `calibration_feed` (decoded once per clip count), then FP32 and every
variant run with ONNX Runtime on the CPU (Q/DQ emulated: the ONNX semantics TensorRT implements) on the same views.
Per variant: top-1 at 1x1 and KxC, top-1 agreement with FP32, and the mean KL divergence of the per-view
probabilities from FP32's (a smoother error measure than top-1 on a small set).
`--sensitivity` adds, for the first variant's settings, one variant per quantized activation tensor left in float (with the nodes that read it) (a diagnostic only:
the shipped model quantizes every Conv) and ranks the layers by how much KL they remove.
Writes OUT_DIR/sweep.json and prints a table. Heavy: run under `flock /tmp/cpu.lock` on the shared CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    kw = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        if v in ("true", "false"):
            kw[k] = v == "true"
        else:
            try:
                kw[k] = int(v)
            except ValueError:
                try:
                    kw[k] = float(v)
                except ValueError:
                    kw[k] = v
    return name, kw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("fp32")
    ap.add_argument("calib")
    ap.add_argument("eval")
    ap.add_argument("out")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--crops", type=int, default=3)
    ap.add_argument("--calib-clips", type=int, default=128)
    ap.add_argument("--sensitivity", action="store_true")
    a = ap.parse_args()

    import onnx
    import torch

    from slowfast_trt import engines
    from slowfast_trt.dali_pipelines.loader import ClipLoader
    from slowfast_trt.dali_pipelines.plan import multiview_plan
    from slowfast_trt.data.manifest import load_manifest_videos
    from slowfast_trt.export.calibration import calibration_feed
    from slowfast_trt.export.int8_selection import mean_kl
    from slowfast_trt.export.qdq import qdq_summary
    from slowfast_trt.export.quantize import quantize_int8

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = dict(parse_variant(v) for v in a.variant)
    feeds: dict[tuple, list] = {}

    def calib(clips: int, crops: int) -> list:
        if (clips, crops) not in feeds:
            kw = {"crops": crops} if crops != 1 else {}
            feed, _ = calibration_feed(a.fp32, a.calib, clips=clips, seed=0, device="cpu", progress=False, **kw)
            feeds[(clips, crops)] = list(feed)
        return feeds[(clips, crops)]

    def build(name: str, kw: dict) -> Path:
        kw = dict(kw)
        clips, crops = kw.pop("clips", a.calib_clips), kw.pop("calib_crops", 1)
        if "pool_range" in kw:  # a fixed symmetric range for the Fast stem's pooled output
            kw["ranges"] = {"/net/stem/fast/pool/MaxPool_output_0": kw.pop("pool_range")}
        path = out / f"{name}.int8.onnx"
        t0 = time.perf_counter()
        quantize_int8(a.fp32, iter(calib(clips, crops)), path, calibration_info={"clips": clips, "crops": crops}, **kw)
        print(f"built {name} in {time.perf_counter() - t0:.0f}s: {qdq_summary(path)['quantized_convs']} Convs quantized", flush=True)
        return path

    paths = {"fp32": Path(a.fp32)}
    for name, kw in variants.items():
        paths[name] = build(name, kw)
    if a.sensitivity:
        base_name, base_kw = next(iter(variants.items()))
        m = onnx.load(a.fp32)
        groups: dict[str, list[str]] = {}  # activation tensor -> the quantized nodes that read it (one shared Q/DQ)
        for n in m.graph.node:
            if n.op_type in ("Conv", "Gemm", "MatMul"):
                groups.setdefault(n.input[0], []).append(n.name)
        for tensor, nodes in groups.items():
            tag = f"{base_name}-float-{tensor.strip('/').replace('/', '_')}"
            variants[tag] = {**base_kw, "exclude": nodes}
            paths[tag] = build(tag, variants[tag])

    loaded = {k: engines.load(p, device="cpu", qdq="emulate") for k, p in paths.items()}
    _, videos = load_manifest_videos(a.eval, "evaluation")
    cfg = loaded["fp32"].config
    loader = ClipLoader(multiview_plan(videos, cfg, a.clips), cfg, "test", 4, device="cpu", threads=2, videos=videos, num_crops=a.crops)
    index = {v.index: i for i, v in enumerate(videos)}
    probs = {k: np.zeros((len(videos), a.clips, a.crops, cfg.num_classes)) for k in loaded}
    t0 = time.perf_counter()
    for batch in loader:
        clips = {p: batch[p] for p in cfg.pathways}
        vids = np.array([index[int(v)] for v in batch["video"].cpu()])
        k, c = batch["clip"].cpu().numpy(), batch["crop"].cpu().numpy()
        for name, e in loaded.items():
            probs[name][vids, k, c] = torch.softmax(e(**clips, sampling=loader.cfg.sampling).float(), dim=-1).numpy()
    print(
        f"evaluated {len(loaded)} models on {len(videos)} videos x {a.clips}x{a.crops} views in {time.perf_counter() - t0:.0f}s", flush=True
    )

    labels = np.array([int(v.label) for v in videos])
    mid_k, mid_c = a.clips // 2, a.crops // 2
    ref = probs["fp32"]

    def summary(p: np.ndarray) -> dict:
        full, one = p.mean(axis=(1, 2)).argmax(-1), p[:, mid_k, mid_c].argmax(-1)
        rfull, rone = ref.mean(axis=(1, 2)).argmax(-1), ref[:, mid_k, mid_c].argmax(-1)
        kl = mean_kl(ref, p)
        return {
            f"top1_{a.clips}x{a.crops}": 100 * float((full == labels).mean()),
            "top1_1x1": 100 * float((one == labels).mean()),
            f"agree_{a.clips}x{a.crops}": 100 * float((full == rfull).mean()),
            "agree_1x1": 100 * float((one == rone).mean()),
            "view_agree": 100 * float((p.argmax(-1) == ref.argmax(-1)).mean()),
            "kl": float(kl),
        }

    rows = {k: {**summary(p), "settings": variants.get(k, {})} for k, p in probs.items()}
    (out / "sweep.json").write_text(
        json.dumps(
            {"fp32": a.fp32, "calib": a.calib, "eval": a.eval, "videos": len(videos), "views": [a.clips, a.crops], "rows": rows},
            indent=2,
            default=str,
        )
        + "\n"
    )
    order = sorted(rows, key=lambda k: (k != "fp32", rows[k]["kl"])) if a.sensitivity else list(rows)
    keys = list(rows["fp32"])[:-1]
    print("| model | " + " | ".join(keys) + " |")
    for k in order:
        print(f"| {k} | " + " | ".join(f"{rows[k][x]:.4f}" if x == "kl" else f"{rows[k][x]:.2f}" for x in keys) + " |")


if __name__ == "__main__":
    main()
