"""The preprocessing as a serialized DALI pipeline, for Triton's `dali` backend (production GPUs).

Inputs per video (one DALI sample): VIDEO (encoded bytes), FRAMES (the distinct frame numbers its K test clips need,
sorted), FAST_POS / SLOW_POS (each clip's Fast and Slow frames as positions in FRAMES), all from the ensemble's plan
step (`serving.video.decode_plan`, the same `multiview_plan` as `slowfast eval`). The graph is the project's GPU
test graph (`dali_pipelines.pipelines`): decode exactly those frames ('mixed' NVDEC on a GPU), resize the short
side (no antialias, `subpixel_scale=False`), gather the Fast and Slow frames, cut C crops at 0 / 0.5 / 1,
`crop_mirror_normalize` with the artifact's mean/std, then the Fast-input transform (`model.inputs.make_fast_input`:
rgb, gray or time_diff) and channels-first. Outputs: SLOW (views, 3, T, S, S) and FAST (views, C_f, alpha*T, S, S),
views crop-major (view c*K + k), the order `serving.backend.ClassifyModel` aggregates in.

`model.dali` uses the 'mixed' decoder and cannot be built without a GPU; `model.cpu.dali` is the same graph with
the CPU decoder (VP8/VP9/MJPEG), serialized beside it for the CPU check and the Python-backend stand-in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_bytes
from slowfast_trt.dali_pipelines.pipelines import normalize_frames
from slowfast_trt.dali_pipelines.spec import crop_positions
from slowfast_trt.model.inputs import GRAY_WEIGHTS

INPUTS = ("VIDEO", "FRAMES", "FAST_POS", "SLOW_POS")


def dali_graph(cfg, num_clips: int, num_crops: int, *, device: str, batch_size: int, threads: int = 2):
    """The pipeline (not built) for `cfg` with K = num_clips, C = num_crops, on device "gpu" or "cpu"."""
    import nvidia.dali.fn as fn  # lazy: nvidia-dali, optional (extra [data]) and heavy
    import nvidia.dali.types as types  # lazy: nvidia-dali, optional (extra [data]) and heavy
    from nvidia.dali import pipeline_def  # lazy: nvidia-dali, optional (extra [data]) and heavy

    if cfg.fast_input not in ("rgb", "gray", "time_diff"):
        raise SlowFastError(
            f"the dali model implements the rgb, gray and time_diff Fast inputs, not {cfg.fast_input!r}; "
            "serve this model through its Python-backend video model"
        )
    if cfg.detection:
        raise SlowFastError("detection models take boxes per clip; the video models serve classification artifacts only")
    gpu = device == "gpu"
    k, t, f, s = num_clips, cfg.num_frames, cfg.fast_frames, cfg.test_crop_size

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=None, exec_dynamic=True, prefetch_queue_depth=1)
    def graph():
        video = fn.external_source(name="VIDEO", dtype=types.UINT8, ndim=1, device="cpu")
        frames = fn.external_source(name="FRAMES", dtype=types.INT32, ndim=1, device="cpu")
        fast_pos = fn.external_source(name="FAST_POS", dtype=types.INT32, ndim=1, device="cpu")
        slow_pos = fn.external_source(name="SLOW_POS", dtype=types.INT32, ndim=1, device="cpu")
        decoded = fn.decoders.video(video, device="mixed" if gpu else "cpu", frames=frames)
        short = fn.resize(decoded, resize_shorter=s, antialias=False, subpixel_scale=False)
        fast_all = fn.sequence_rearrange(short, new_order=fast_pos)
        slow_all = fn.sequence_rearrange(short, new_order=slow_pos)
        slows, fasts = [], []
        for pos in crop_positions(num_crops):
            crop = dict(crop=(s, s), crop_pos_x=pos, crop_pos_y=pos)
            slows.append(fn.reshape(normalize_frames(slow_all, cfg, fn, types, **crop), shape=[k, t, s, s, 3], layout=""))
            fasts.append(fn.reshape(normalize_frames(fast_all, cfg, fn, types, **crop), shape=[k, f, s, s, 3], layout=""))
        out = {"slow": fn.transpose(fn.cat(*slows, axis=0), perm=[0, 4, 1, 2, 3])}
        if not cfg.has_fast:
            return tuple(out[p] for p in cfg.pathways)
        fast = fn.cat(*fasts, axis=0)  # views, F, S, S, 3
        if cfg.fast_input == "rgb":
            fast = fn.transpose(fast, perm=[0, 4, 1, 2, 3])
        else:
            w = GRAY_WEIGHTS
            gray = fast[:, :, :, :, 0] * w[0] + fast[:, :, :, :, 1] * w[1] + fast[:, :, :, :, 2] * w[2]  # views, F, S, S
            if cfg.fast_input == "time_diff":  # frame t minus frame t-1; frame 0 minus itself
                gray = gray - fn.cat(gray[:, 0:1], gray[:, 0 : f - 1], axis=1)
            fast = fn.expand_dims(gray, axes=[1])
        out["fast"] = fast
        return tuple(out[p] for p in cfg.pathways)

    return graph()


def serialize(cfg, num_clips: int, num_crops: int, out: str | Path, *, device: str, batch_size: int) -> Path:
    """Write the serialized pipeline (DALI's protobuf) to `out`."""
    pipe = dali_graph(cfg, num_clips, num_crops, device=device, batch_size=batch_size)
    atomic_write_bytes(out, pipe.serialize())
    return Path(out)


def load_serialized(path: str | Path, *, batch_size: int, threads: int = 2):
    """Deserialize and build a pipeline written by `serialize` (the CPU variant, on a CPU)."""
    from nvidia.dali import Pipeline  # lazy: nvidia-dali, optional (extra [data]) and heavy

    pipe = Pipeline.deserialize(
        filename=str(path), batch_size=batch_size, num_threads=threads, device_id=None, exec_dynamic=True, prefetch_queue_depth=1
    )
    pipe.build()
    return pipe


def run_serialized(pipe, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """One batch through a deserialized pipeline: `feed` has the four inputs with one row per video; returns `outputs`
    (the model's pathways in order, upper case: SLOW, FAST) with one row per video."""
    rows = feed["VIDEO"].shape[0]
    for name in INPUTS:
        arr = feed[name]
        pipe.feed_input(name, [np.ascontiguousarray(arr[i]) for i in range(rows)])
    res = pipe.run()
    return {n: np.stack([np.asarray(r[i]) for i in range(rows)]) for n, r in zip(outputs, res)}
