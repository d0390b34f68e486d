"""`slowfast bench pipeline`: clips/s of the DALI train/test pipelines against PyAV loaders, in one run.

Measured on the same files and the same clip plans: DALI training pipeline, DALI test pipeline (3 crops per
clip), DALI decode-only (the ceiling: decoding the clip's frames, nothing else), a PySlowFast-style PyAV
loader run serially, and the same in a torch DataLoader with worker processes. On the CPU the training and
test pipelines hand decoded frames to torch for the spatial ops, and the same pipelines with every op in the
DALI graph (`spatial="dali"`, what a GPU runs) are measured too. Ratios are taken within the
run, since absolute numbers drift with the machine.

Every row stops at `clips` clips or `budget` seconds, whichever comes first, so slow baselines (a PyAV DataLoader
on many cores, the serial loader) cannot hold a run up; `loaders` picks rows. Besides clips/s each row reports
the frames its decoder really decodes per clip (from the clip's first frame back to the keyframe before it, up to
its last frame: the GOP's seek overhead; PyAV decodes from the file's start) and so decoded frames/s, and the
external source's own cost per batch (reading and planning, no decoding) is timed alone.

The peers (`dali_pipelines.peer_loaders`: decord, torchcodec on the CPU and on CUDA) run the same plans through
the same torch crops and normalisation; a peer that is not installed is reported as skipped with how to install
it. Every row's rate is also given against the best peer and against the PyAV DataLoader.
"""

from __future__ import annotations

import bisect
import os
import time
from pathlib import Path

import torch

from slowfast_trt.benchmarks.results import write_result
from slowfast_trt.common.device import apply_threads
from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.peer_loaders import PEERS, missing, peer_dataset, peer_loader
from slowfast_trt.dali_pipelines.pipelines import PlanSource, build_pipeline, graph_spec
from slowfast_trt.dali_pipelines.plan import multiview_plan, train_plan
from slowfast_trt.dali_pipelines.pyav_loader import PyAVClips
from slowfast_trt.dali_pipelines.spec import FeedSpec, GraphSpec
from slowfast_trt.data.manifest import Video
from slowfast_trt.data.video_io import keyframe_indices
from slowfast_trt.model.config import SlowFastConfig

LOADERS = (
    "dali_train",
    "dali_test",
    "dali_train_graph_only",
    "dali_test_graph_only",
    "dali_decode_only",
    "pyav_serial",
    "pyav_dataloader",
    *PEERS,
)
PYAV_ROWS = ("pyav_serial", "pyav_dataloader")


def parse_loaders(text: str | None) -> tuple[str, ...]:
    """'dali-train,pyav-dataloader' -> the row names, in LOADERS order; None or 'all' -> every row."""
    if text is None or text.strip() == "all":
        return LOADERS
    asked = {t.strip().replace("-", "_") for t in text.split(",") if t.strip()}
    unknown = sorted(asked - set(LOADERS))
    if unknown or not asked:
        raise SlowFastError(
            f"--loaders: unknown loader(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(LOADERS)} (or all)"
        )
    return tuple(n for n in LOADERS if n in asked)


def frames_decoded(plan, keyframes: list[int], from_start: bool = False) -> int:
    """Frames a decoder decodes for one clip: from the keyframe at or before its first frame (or frame 0) to its last."""
    first, last = int(plan.fast_idx.min()), int(plan.fast_idx.max())
    if from_start or not keyframes:
        return last + 1
    start = keyframes[max(0, bisect.bisect_right(keyframes, first) - 1)]
    return last - start + 1


def seek_overhead(plans) -> dict[str, float]:
    """Mean frames decoded per clip by DALI (keyframe seek) and by the PyAV loader (from the start), and frames needed."""
    kf = {path: keyframe_indices(path) for path in sorted({p.path for p in plans})}
    n = max(len(plans), 1)
    return {
        "frames_needed_per_clip": sum(int(p.fast_idx.max()) - int(p.fast_idx.min()) + 1 for p in plans) / n,
        "dali_frames_decoded_per_clip": sum(frames_decoded(p, kf[p.path]) for p in plans) / n,
        "pyav_frames_decoded_per_clip": sum(frames_decoded(p, kf[p.path], from_start=True) for p in plans) / n,
        "gop_median": _median_gap(kf),
    }


def _median_gap(keyframes: dict[str, list[int]]) -> float:
    gaps = sorted(b - a for k in keyframes.values() for a, b in zip(k, k[1:]))
    return float(gaps[len(gaps) // 2]) if gaps else 0.0


def external_source_cost(plans, cfg: SlowFastConfig, batch: int) -> dict[str, float]:
    """Milliseconds per batch of the external source alone (PlanSource: read bytes, count packets, build the arrays).

    Two passes over the same plans: the first opens every file (as a first epoch does), the second runs on
    the in-memory cache (as later epochs do for small data sets)."""
    source = PlanSource(
        plans, GraphSpec("train", FeedSpec(device="cpu", batch_size=batch, spatial="dali")), cfg
    )  # every field a train graph reads
    out = {}
    for name in ("first_pass_ms_per_batch", "cached_ms_per_batch"):
        source.rewind()
        calls, start = 0, time.perf_counter()
        while True:
            try:
                source(None)
            except StopIteration:
                break
            calls += 1
        out[name] = 1000 * (time.perf_counter() - start) / max(calls, 1)
    out["batches"] = calls
    return out


def _plans(videos: list[Video], cfg: SlowFastConfig, clips: int, seed: int):
    plans, epoch = [], 0
    while len(plans) < clips:
        plans += train_plan(videos, cfg, epoch, seed)
        epoch += 1
    return plans[:clips]


def _rate(batches, warmup: int = 1, budget: float = float("inf"), views: int = 1) -> tuple[float, int]:
    """Clips per second over `batches` after `warmup` batches, stopping once `budget` seconds have passed; also the clips timed.

    `views`: items per clip in a batch (a test loader's crops)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it, None)
    n, start = 0, time.perf_counter()
    for b in it:
        label = b["label"]
        n += label.shape[0] if label.dim() > 0 else 1  # a batch, or a single dataset item
        if time.perf_counter() - start >= budget:
            break
    elapsed = time.perf_counter() - start
    del it  # a DataLoader's workers and a DALI pipeline stop here, not at the end of the data
    n //= views
    return (n / elapsed if elapsed > 0 and n else 0.0), n


def _decode_rate(plans, cfg: SlowFastConfig, loader: ClipLoader, budget: float = float("inf")) -> tuple[float, int]:
    """Clips/s of DALI decoding alone: the decode graph of `loader`'s feed and routing run directly, its outputs left inside DALI."""
    graph = graph_spec("decode", loader.feed, plans, loader.on_cpu, cfg.multilabel)
    pipe = build_pipeline(PlanSource(plans, graph, cfg, on_cpu=loader.on_cpu), cfg, graph)
    pipe.build()
    pipe.run()  # warm-up batch
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        try:
            out = pipe.run()
        except StopIteration:
            break
        n += len(out[0])
    elapsed = time.perf_counter() - start
    return (n / elapsed if elapsed > 0 and n else 0.0), n


class _Rows:
    """The measured rows of one run, each printed as it is recorded."""

    def __init__(self, seek: dict[str, float], progress):
        self.seek, self.progress, self.rows = seek, progress, {}

    def record(self, name: str, rate_n: tuple[float, int], note: str = "") -> None:
        per_clip = self.seek["pyav_frames_decoded_per_clip" if name in PYAV_ROWS else "dali_frames_decoded_per_clip"]
        self.rows[name] = {
            "clips_per_s": rate_n[0],
            "clips": rate_n[1],
            "decoded_frames_per_s": rate_n[0] * per_clip,
            "frames_decoded_per_clip": per_clip,
            "note": note,
        }
        self.progress(
            f"{name:28s} {rate_n[0]:8.2f} clips/s {rate_n[0] * per_clip:9.0f} frames/s  ({rate_n[1]} clips){'  ' + note if note else ''}"
        )


def _dali_rows(rows: _Rows, loader: ClipLoader, test_plans, cfg: SlowFastConfig, loaders: tuple[str, ...], budget: float) -> None:
    """The DALI rows: training and test pipelines, on the CPU also with every op in the graph, and decoding alone."""
    feed = loader.feed
    how = "DALI decode, torch uint8 resize/crop/flip/normalise" if loader.spatial_in_torch else "every op in the DALI graph"
    if "dali_train" in loaders:
        rows.record("dali_train", _rate(loader, budget=budget), how)
    if "dali_test" in loaders:
        test = ClipLoader(test_plans, cfg, "test", feed.but(num_crops=3))
        rows.record("dali_test", _rate(test, budget=budget, views=test.views_per_sample), f"{test.views_per_sample} crops per clip; {how}")
    if loader.spatial_in_torch:  # the same pipelines with every op in the DALI graph (the GPU graph, run on the CPU)
        graph_only = feed.but(spatial="dali", num_crops=3)
        if "dali_train_graph_only" in loaders:
            rows.record(
                "dali_train_graph_only",
                _rate(ClipLoader(loader.plans, cfg, "train", graph_only), budget=budget),
                "every op in the DALI graph (DALI's CPU resize)",
            )
        if "dali_test_graph_only" in loaders:
            graph_test = ClipLoader(test_plans, cfg, "test", graph_only)
            rows.record(
                "dali_test_graph_only", _rate(graph_test, budget=budget, views=graph_test.views_per_sample), "every op in the DALI graph"
            )
    if "dali_decode_only" in loaders:
        rows.record(
            "dali_decode_only",
            _decode_rate(loader.plans, cfg, loader, budget),
            "decoding the clips' frames inside DALI, outputs not handed to torch: the ceiling",
        )


def _pyav_rows(rows: _Rows, plans, cfg: SlowFastConfig, feed: FeedSpec, loaders: tuple[str, ...], budget: float) -> None:
    """The PyAV baselines: PySlowFast's loader in one process, and in a DataLoader with `feed.dali_threads` workers."""
    if "pyav_serial" in loaders:
        rows.record(
            "pyav_serial",
            _rate(PyAVClips(plans, cfg, "train"), warmup=feed.batch_size, budget=budget),
            "PySlowFast-style: PyAV decode + torch crop/flip/normalise, one process",
        )
    if "pyav_dataloader" in loaders:
        dl = torch.utils.data.DataLoader(
            PyAVClips(plans, cfg, "train"), batch_size=feed.batch_size, num_workers=feed.dali_threads, persistent_workers=False
        )
        rows.record("pyav_dataloader", _rate(dl, budget=budget), f"torch DataLoader, {feed.dali_threads} workers")


def _peer_rows(rows: _Rows, plans, cfg: SlowFastConfig, feed: FeedSpec, loaders: tuple[str, ...], budget: float) -> dict[str, str]:
    """The peers (decord, torchcodec) in a DataLoader with `feed.dali_threads` workers; returns the ones skipped, with why."""
    skipped = {}
    for name in (n for n in PEERS if n in loaders):
        why = missing(name)
        if why:
            skipped[name] = why
            rows.progress(f"skipped {name}: {why}")
            continue
        peer_dataset(name, plans[:1], cfg)[0]  # fail here, with the file's name, if the peer cannot read these files
        how_run = "in-process, GPU decode" if name == "torchcodec_cuda" else f"torch DataLoader, {feed.dali_threads} workers"
        loader = peer_loader(name, plans, cfg, feed.batch_size, feed.dali_threads)
        rows.record(name, _rate(loader, budget=budget), f"{PEERS[name][0]}: {how_run}")
    return skipped


RATIOS = (
    ("dali_train", "pyav_serial"),
    ("dali_train", "dali_decode_only"),
    ("dali_train", "dali_train_graph_only"),
    ("dali_test", "dali_test_graph_only"),
)


def _ratios(rows: dict[str, dict]) -> dict[str, float]:
    """Clips/s ratios of the rows measured in this run: against the peers (`against_peers`) and RATIOS where both rows ran."""
    ratios = against_peers(rows)  # includes dali_train_vs_pyav_dataloader
    for a, b in RATIOS:
        if a in rows and b in rows:
            key = f"{a}_vs_graph_only" if b.endswith("graph_only") else f"{a}_vs_{b.removeprefix('dali_')}"
            ratios[key] = rows[a]["clips_per_s"] / max(rows[b]["clips_per_s"], 1e-9)
    return ratios


def bench_pipeline(
    videos: list[Video],
    cfg: SlowFastConfig,
    feed: FeedSpec,
    *,
    clips: int = 64,
    seed: int = 0,
    loaders: tuple[str, ...] = LOADERS,
    budget: float = 8.0,
    progress=print,
) -> dict:
    """Measure each of `loaders` on `clips` clips of `videos` with `feed`'s device, batch and threads (at most `budget`
    seconds a row); returns the result dict (see module docstring). The test rows take 3 crops per clip.

    `feed.threads` is the CPU budget: DALI's threads, and each DataLoader's worker processes (no model beside the
    loader: `common.threads.split`, torch keeps one thread for the CPU pipelines' crops)."""
    if not videos:
        raise SlowFastError("the manifest has no videos")
    if budget <= 0:
        raise SlowFastError(f"--budget must be a positive number of seconds, got {budget}")
    loaders = parse_loaders(",".join(loaders))
    feed = feed.but(model_on_cpu=False)
    apply_threads(feed.split)
    batch = feed.batch_size
    clips = max(clips, 2 * batch)
    plans = _plans(videos, cfg, clips + batch, seed)  # one extra batch for warm-up
    rows = _Rows(seek_overhead(plans[batch:]), progress)
    loader = None  # built only when a DALI row is measured (a peers-only run needs no DALI)
    if any(n.startswith("dali_") for n in loaders):
        loader = ClipLoader(plans, cfg, "train", feed, videos=videos)
        test_plans = multiview_plan(videos, cfg, num_clips=max(1, -(-(clips + batch) // len(videos))))[: clips + batch]
        _dali_rows(rows, loader, test_plans, cfg, loaders, budget)
    _pyav_rows(rows, plans, cfg, feed, loaders, budget)
    skipped = _peer_rows(rows, plans, cfg, feed, loaders, budget)
    source_cost = external_source_cost(plans, cfg, batch)
    progress(
        f"{'external source':28s} {source_cost['first_pass_ms_per_batch']:8.2f} ms/batch first pass, "
        f"{source_cost['cached_ms_per_batch']:.2f} ms/batch cached"
    )
    env = environment()
    return {
        "benchmark": "pipeline",
        **env,
        "device": f"DALI {loader.device if loader else '-'} / {env['device']}",
        "loadavg": list(os.getloadavg()),
        "settings": {
            "preset": cfg.name,
            "batch": batch,
            "threads": feed.split.budget,
            "thread_split": feed.split.as_dict(),
            "spatial_ops": "-" if loader is None else "torch" if loader.spatial_in_torch else "dali",
            "clips": clips,
            "crop": cfg.crop_size,
            "test_crop": cfg.test_crop_size,
            "clip": f"{cfg.num_frames}x{cfg.tau}, alpha={cfg.alpha}",
            "videos": len(videos),
            "sizes": sorted({f"{v.width}x{v.height}" for v in videos}),
            "budget_s": budget,
            "loaders": list(loaders),
            "decoder": "-"
            if loader is None
            else "cpu"
            if loader.device == "cpu"
            else f"NVDEC, {len(loader.on_cpu)} files on DALI's CPU decoder",
        },
        **{f"{name}_clips_per_s": r["clips_per_s"] for name, r in rows.rows.items() if not name.endswith("graph_only")},
        "seek": rows.seek,
        "external_source": source_cost,
        "ratios": _ratios(rows.rows),
        "rows": rows.rows,
        "best_peer": best_peer(rows.rows),
        "skipped": skipped,
    }


def best_peer(rows: dict[str, dict]) -> str | None:
    """The fastest measured peer row (decord, torchcodec), or None when no peer ran."""
    peers = [n for n in PEERS if n in rows and rows[n]["clips_per_s"] > 0]
    return max(peers, key=lambda n: rows[n]["clips_per_s"]) if peers else None


def against_peers(rows: dict[str, dict]) -> dict[str, float]:
    """Every training row's clips/s over the best peer's (`<row>_vs_best_peer`) and the PyAV DataLoader's (`<row>_vs_pyav_dataloader`).

    The peers load training clips; the test rows (3 crops a clip) are other work and get no ratio here."""
    out = {}
    for ref, suffix in ((best_peer(rows), "best_peer"), ("pyav_dataloader" if "pyav_dataloader" in rows else None, "pyav_dataloader")):
        if ref is None or rows[ref]["clips_per_s"] <= 0:
            continue
        for name, r in rows.items():
            if name != ref and not name.startswith("dali_test"):
                out[f"{name}_vs_{suffix}"] = r["clips_per_s"] / rows[ref]["clips_per_s"]
    return out


def to_markdown(result: dict) -> str:
    """The pipeline table with ratios."""
    s = result["settings"]
    lines = [
        f"Pipeline throughput on {result['device']} ({result['cpu_count']} CPU threads), preset {s['preset']}, "
        f"batch {s['batch']}, {s['threads']} threads (DALI {s['thread_split']['dali']} beside torch's {s['thread_split']['torch_intra']}; "
        f"DataLoaders {s['threads']} workers), {s['clips']} clips, crop {s['crop']}",
        "",
        "| loader | clips/s | decoded frames/s | frames decoded per clip | clips timed | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in result["rows"].items():
        lines.append(
            f"| {name} | {r['clips_per_s']:.2f} | {r.get('decoded_frames_per_s', 0):.0f} | {r.get('frames_decoded_per_clip', 0):.1f} | "
            f"{r['clips']} | {r['note']} |"
        )
    if "seek" in result:
        k = result["seek"]
        lines += [
            "",
            f"Frames per clip: {k['frames_needed_per_clip']:.1f} spanned, {k['dali_frames_decoded_per_clip']:.1f} decoded by DALI "
            f"(seek from the keyframe before, median GOP {k['gop_median']:.0f}), {k['pyav_frames_decoded_per_clip']:.1f} by PyAV (from the start).",
        ]
    if "external_source" in result:
        e = result["external_source"]
        lines += [
            f"External source alone: {e['first_pass_ms_per_batch']:.2f} ms per batch first pass, {e['cached_ms_per_batch']:.2f} ms cached."
        ]
    lines += ["", "| ratio (same run) | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f}x |" for k, v in result["ratios"].items()]
    if result.get("best_peer"):
        lines += [f"Best peer: {result['best_peer']}."]
    for name, why in result.get("skipped", {}).items():
        lines += [f"Skipped {name}: {why}"]
    if "loadavg" in result:
        lines += [f"Load average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in result['loadavg'])}."]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write `result.json` and `pipeline.md` into `out_dir`."""
    return write_result(result, out_dir, to_markdown(result), "pipeline.md")
