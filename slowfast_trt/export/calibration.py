"""Calibration data for INT8: the DALI calibration feed over a manifest, and the reader ONNX Runtime's calibrators pull from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.progress import progress as progress_bar
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import calibration_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import read_manifest, to_videos
from slowfast_trt.engines.sidecar import check_graph_inputs, file_sha256, graph_inputs, read_sidecar, sidecar_config
from slowfast_trt.export.external_data import external_data_files

DEFAULT_CALIB_CROPS = 1  # views per calibration clip (1: centre crop; 3: the three test crops)
CALIB_BATCH = 4  # clips per calibration batch for a dynamic-batch graph


class CalibrationReader:
    """ONNX Runtime CalibrationDataReader over an iterator of {input name: float32 array} batches.

    With `split`, each batch is fed one clip at a time: ONNX Runtime's histogram calibrators (percentile,
    entropy) stack per-call outputs and fail on a shorter last batch, and histograms do not depend on the
    grouping. Minmax gets the batches as they are (its moving average is over batches).
    """

    def __init__(self, batches: Iterator[dict[str, np.ndarray]], names: list[str], split: bool = False):
        self._it = iter(batches)
        self._names = names
        self._split = split
        self._pending: list[dict[str, np.ndarray]] = []
        self.count = 0  # batches received

    def get_next(self):
        if not self._pending:
            batch = next(self._it, None)
            if batch is None:
                return None
            missing = [n for n in self._names if n not in batch]
            if missing:
                raise SlowFastError(f"calibration batch lacks inputs {missing}; the model takes {self._names}")
            self.count += 1
            arrays = {n: np.ascontiguousarray(batch[n], dtype=np.float32) for n in self._names}
            n = len(arrays[self._names[0]])
            self._pending = [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)] if self._split else [arrays]
        return self._pending.pop(0)

    def rewind(self):  # entropy/percentile calibrators may ask; we feed each batch once
        return None


def fp32_source(onnx_path: str | os.PathLike) -> tuple[Path, dict]:
    """The FP32 ONNX export to quantize and its sidecar; anything else is a one-line error."""
    src = Path(onnx_path)
    if not src.exists():
        raise SlowFastError(f"ONNX model {src} not found")
    side = read_sidecar(src)
    if side["kind"] != "onnx":
        raise SlowFastError(f"{src} is a {side['kind']} artifact; quantize the FP32 ONNX export instead")
    external_data_files(src)  # data outside the model's folder: refused before ONNX Runtime reads anything
    return src, side


def calibration_feed(
    onnx_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    feed: FeedSpec,
    *,
    clips: int = 32,
    seed: int = 0,
) -> tuple[Iterator[dict[str, np.ndarray]], dict]:
    """Calibration batches for an FP32 export from the DALI calibration feed, and the settings that describe them.

    The clips are the centre crop of the centre clip of `clips` videos drawn without replacement with `seed`
    (`dali_pipelines.plan.calibration_plan`), decoded by the DALI test pipeline exactly as at evaluation with
    the artifact's own config (sampling convention, crop) on `feed`'s device and threads, in the artifact's batch;
    with `feed.num_crops` 3, the three test crops of that clip
    (left/centre/right, the views `--crops 3` evaluates), so `clips` videos give 3 x `clips` calibration views. Everything that can be checked is checked before
    any clip is decoded: the model and its sidecar, the manifest, and that it has `clips` videos.
    """
    src, side = fp32_source(onnx_path)
    check_graph_inputs(graph_inputs(src), side, str(src))
    manifest_path = Path(manifest_path)
    if not manifest_path.exists():
        raise SlowFastError(f"calibration manifest {manifest_path} not found")
    cfg = sidecar_config(side)
    if side["crop_size"] != cfg.test_crop_size:  # exported at another size than the config's test crop
        cfg = replace(cfg, test_crop_size=side["crop_size"])
    videos = to_videos(read_manifest(manifest_path))
    plans = calibration_plan(videos, cfg, clips, seed=seed)  # too few videos for `clips`: a one-line error
    batch = side["batch"] if isinstance(side["batch"], int) else CALIB_BATCH
    if isinstance(side["batch"], int) and clips % batch:
        raise SlowFastError(f"{src} has a fixed batch of {batch}; pass --clips as a multiple of {batch}")
    chosen = {p.video for p in plans}
    crops = feed.num_crops
    if crops not in (1, 3):
        raise SlowFastError(f"--calib-crops must be 1 or 3, got {crops}")
    if isinstance(side["batch"], int) and crops != 1:
        raise SlowFastError(f"{src} has a fixed batch of {batch}; calibrate it with --calib-crops 1")
    loader = ClipLoader(plans, cfg, "test", feed.but(batch_size=batch, skip_bad=None), videos=[v for v in videos if v.index in chosen])

    def batches() -> Iterator[dict[str, np.ndarray]]:
        with progress_bar(total=clips * crops, desc="calibrate", unit="clip", enabled=feed.progress, leave=False) as bar:
            for b in loader:
                yield {p: b[p].float().cpu().numpy() for p in cfg.pathways}
                bar.update(int(b["video"].shape[0]))

    info = {
        "source": "DALI test pipeline (centre clip, " + ("centre crop)" if crops == 1 else "3 crops)"),
        "manifest": str(manifest_path.resolve()),
        "manifest_sha256": file_sha256(manifest_path),
        "clips": clips,
        "seed": seed,
        "crops": crops,
        "videos": sorted(v.path for v in videos if v.index in chosen),
    }
    return batches(), info
