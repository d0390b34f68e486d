"""The Triton Python-backend models of a generated repository (each generated `slowfast_model.py` imports one class from here).

Runs inside Triton's Python-backend stub (the Triton venv, numpy<2): `triton_python_backend_utils` is the stub's
module. Every model reads its settings from the `parameters` of its config.pbtxt and its files from its version
folder. Errors a client can cause come back as `TritonError`s naming the problem; the server keeps serving.

- EngineModel: the engine through `engines.load` (checkpoint, ONNX, or a TensorRT plan on a GPU), batched.
- VideoModel: encoded video bytes -> the DALI test pipeline -> engine -> per-video aggregation (`serving.video`).
- PlanModel, DaliCpuModel, ClassifyModel: the steps of the DALI ensemble (plan -> dali -> classify); DaliCpuModel
  runs the serialized DALI pipeline (its CPU variant) in the Python backend, where the `dali` backend is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from slowfast_trt import engines
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.engines.sidecar import sidecar_config
from slowfast_trt.serving.dali_model import load_serialized, run_serialized
from slowfast_trt.serving.video import decode_plan, score_videos, setting
from slowfast_trt.training.evaluate import to_probabilities
from slowfast_trt.training.metrics import ViewAggregator


def _pb():
    import triton_python_backend_utils as pb_utils  # lazy: exists only inside Triton's Python backend

    return pb_utils


def _setup(args: dict) -> tuple[dict, dict, Path]:
    config = json.loads(args["model_config"])
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    folder = Path(args["model_repository"]) / str(args["model_version"])
    threads = int(params.get("threads", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    return config, params, folder


def _error(message: str):
    pb = _pb()
    return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(message))


def _labels(folder: Path, num_classes: int) -> list[str]:
    path = folder / "labels.txt"
    if path.is_file():
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if len(names) == num_classes:
            return names
    return [f"class_{i}" for i in range(num_classes)]


def _answer(scores: np.ndarray, labels: list[str], topk: int):
    """SCORES, TOP_IDS, TOP_LABELS for rows of per-video scores."""
    pb = _pb()
    k = min(topk, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
    names = np.array([[labels[i].encode() for i in row] for row in top], dtype=object)
    return pb.InferenceResponse(
        output_tensors=[pb.Tensor("SCORES", scores.astype(np.float32)), pb.Tensor("TOP_IDS", top), pb.Tensor("TOP_LABELS", names)]
    )


class EngineModel:
    """`engines.load(artifact)` behind Triton: inputs named as the sidecar says, output `scores`."""

    def initialize(self, args):
        _, params, folder = _setup(args)
        threads = int(params.get("threads", "0") or 0)
        self.engine = engines.load(folder / params["artifact"], device=params.get("device", "auto"), threads=threads or None)
        self.names = self.engine.input_names
        self.output = self.engine.info["output"]["name"]

    def execute(self, requests):
        pb = _pb()

        feeds = [[pb.get_input_tensor_by_name(r, n).as_numpy() for n in self.names] for r in requests]
        sizes = [f[0].shape[0] for f in feeds]
        try:
            x = {n: torch.from_numpy(np.ascontiguousarray(np.concatenate([f[i] for f in feeds]))) for i, n in enumerate(self.names)}
            scores = self.engine(**x).float().cpu().numpy()
        except SlowFastError as e:
            return [_error(str(e)) for _ in requests]
        out, start = [], 0
        for n in sizes:
            out.append(pb.InferenceResponse(output_tensors=[pb.Tensor(self.output, np.ascontiguousarray(scores[start : start + n]))]))
            start += n
        return out


def _video_rows(pb, request) -> list[bytes]:
    arr = pb.get_input_tensor_by_name(request, "VIDEO").as_numpy()
    return [row.tobytes() for row in arr.reshape(arr.shape[0], -1)]


class VideoModel:
    """VIDEO (uint8 encoded bytes, one video per batch row) -> SCORES, TOP_IDS, TOP_LABELS, as `slowfast eval` scores it."""

    def initialize(self, args):
        _, p, folder = _setup(args)
        threads = int(p.get("threads", "0") or 0)
        self.engine = engines.load(folder / p["artifact"], device=p.get("device", "auto"), threads=threads or None)
        self.topk = int(p.get("topk", "5"))
        self.feed = FeedSpec(
            device=p.get("dali_device", "auto"),
            batch_size=int(p.get("batch", "8")),
            threads=int(p.get("dali_threads", "2")),
            num_clips=int(p["clips"]),
            num_crops=int(p["crops"]),
        )
        self.labels = _labels(folder, self.engine.info["output"]["num_classes"])

    def execute(self, requests):
        pb = _pb()
        rows = [_video_rows(pb, r) for r in requests]
        flat = [b for rs in rows for b in rs]
        results = score_videos(self.engine, flat, self.feed)
        out, i = [], 0
        for rs in rows:
            mine = results[i : i + len(rs)]
            i += len(rs)
            bad = [r.error for r in mine if r.error]
            out.append(_error(f"VIDEO: {bad[0]}") if bad else _answer(np.stack([r.scores for r in mine]), self.labels, self.topk))
        return out


class PlanModel:
    """Ensemble step 1: VIDEO -> FRAMES (sorted distinct frame numbers to decode), FAST_POS, SLOW_POS (positions in FRAMES)."""

    def initialize(self, args):
        _, p, folder = _setup(args)
        self.cfg = sidecar_config(json.loads((folder / "sidecar.json").read_text(encoding="utf-8")))
        self.clips = int(p["clips"])

    def execute(self, requests):
        pb = _pb()
        out = []
        for r in requests:
            try:
                plans = [decode_plan(b, self.cfg, self.clips) for b in _video_rows(pb, r)]
            except SlowFastError as e:
                out.append(_error(f"VIDEO: {e}"))
                continue
            width = max(len(p[0]) for p in plans)  # FRAMES is padded with its last frame to one length per request
            frames = np.stack([np.pad(p[0], (0, width - len(p[0])), mode="edge") for p in plans])
            out.append(
                pb.InferenceResponse(
                    output_tensors=[
                        pb.Tensor("FRAMES", frames),
                        pb.Tensor("FAST_POS", np.stack([p[1] for p in plans])),
                        pb.Tensor("SLOW_POS", np.stack([p[2] for p in plans])),
                    ]
                )
            )
        return out


class DaliCpuModel:
    """The `dali` model's serialized pipeline (its CPU variant, `model.cpu.dali`), run in the Python backend."""

    def initialize(self, args):
        config, p, folder = _setup(args)
        self.max_batch = max(1, int(config.get("max_batch_size", 1)))
        self.pipe = load_serialized(
            folder / p.get("pipeline", "model.cpu.dali"), batch_size=self.max_batch, threads=int(p.get("dali_threads", "2"))
        )
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        pb = _pb()
        out = []
        for r in requests:  # one pipeline run per request: a request's rows are one DALI batch
            feed = {n: pb.get_input_tensor_by_name(r, n).as_numpy() for n in ("VIDEO", "FRAMES", "FAST_POS", "SLOW_POS")}
            try:
                res = run_serialized(self.pipe, feed, self.outputs)
            except RuntimeError as e:
                out.append(_error(f"DALI: {str(e).splitlines()[0][:300]}"))
                continue
            out.append(pb.InferenceResponse(output_tensors=[pb.Tensor(n, res[n]) for n in self.outputs]))
        return out


class ClassifyModel:
    """Ensemble step 3: the views of each video (SLOW, FAST: views x C x T x H x W) through the engine model (BLS),
    then `to_probabilities` and `ViewAggregator` per video, as `slowfast eval` does."""

    def initialize(self, args):
        _, p, folder = _setup(args)
        self.info = json.loads((folder / "sidecar.json").read_text(encoding="utf-8"))
        self.cfg = sidecar_config(self.info)
        self.engine, self.clips, self.crops = p["engine"], int(p["clips"]), int(p["crops"])
        self.engine_batch, self.topk = int(p.get("engine_batch", "8")), int(p.get("topk", "5"))
        self.names = list(self.info["input_names"])
        self.labels = _labels(folder, self.info["output"]["num_classes"])

    def _engine(self, views: dict[str, np.ndarray]) -> np.ndarray:
        pb = _pb()
        n = next(iter(views.values())).shape[0]
        parts = []
        for s in range(0, n, self.engine_batch):
            req = pb.InferenceRequest(
                model_name=self.engine,
                requested_output_names=[self.info["output"]["name"]],
                inputs=[pb.Tensor(k, np.ascontiguousarray(v[s : s + self.engine_batch])) for k, v in views.items()],
            )
            resp = req.exec()
            if resp.has_error():
                raise RuntimeError(f"engine model {self.engine}: {resp.error().message()}")
            parts.append(pb.get_output_tensor_by_name(resp, self.info["output"]["name"]).as_numpy())
        return np.concatenate(parts)

    def execute(self, requests):
        pb = _pb()
        out = []
        k, c = self.clips, self.crops
        for r in requests:
            views = {n.lower(): pb.get_input_tensor_by_name(r, n.upper()).as_numpy() for n in self.names}
            b, v = next(iter(views.values())).shape[:2]
            try:
                scores = self._engine({n: x.reshape(b * v, *x.shape[2:]) for n, x in views.items()})
            except RuntimeError as e:
                out.append(_error(str(e)))
                continue
            probs = to_probabilities(torch.from_numpy(scores).float(), self.info, self.cfg.multilabel).numpy()
            agg = ViewAggregator(b, k, c, multilabel=self.cfg.multilabel)
            video = np.repeat(np.arange(b), v)
            crop = np.tile(np.repeat(np.arange(c), k), b)  # the DALI model's views are crop-major: view c*K + clip
            clip = np.tile(np.tile(np.arange(k), c), b)
            agg.add(video, clip, crop, probs)
            out.append(_answer(agg.video_scores(setting(k, c)).astype(np.float32), self.labels, self.topk))
        return out
