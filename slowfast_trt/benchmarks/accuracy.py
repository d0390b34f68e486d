"""`slowfast bench accuracy`: top-1/top-5 (mAP for multi-label) per view setting and precision, with GFLOPs x views.

Each artifact (and, for checkpoints, each torch precision the device supports) goes through
training.evaluate.evaluate_engine, the same multi-view code as `slowfast eval`, so backends are compared on
identical clips. The cost column is the paper's: GFLOPs of one view (model.count at the test crop) times
the views of the setting (1x1, 1x3, Kx1, Kx3). Top-1 agreement with the first artifact is reported when
evaluate_engine returns per-video predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from slowfast_trt import engines
from slowfast_trt.benchmarks.results import GFLOPS_NOTE, fmt, write_result
from slowfast_trt.benchmarks.throughput import CHECKPOINT_SUFFIXES, engine_device, input_size, open_engine, torch_precision_support
from slowfast_trt.common.device import resolve_device
from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import Video
from slowfast_trt.model.flops import count
from slowfast_trt.training.evaluate import agreement, evaluate_engine


def _views(setting: str) -> tuple[int, int]:
    clips, crops = setting.split("x")
    return int(clips), int(crops)


def _agreement(a: dict, b: dict, setting: str) -> float | None:
    """Top-1 agreement (% of videos) of two evaluations for `setting`, or None where one lacks that setting."""
    if setting not in a.get("predictions", {}) or setting not in b.get("predictions", {}):
        return None
    return agreement(a, b, setting)


def _openers(artifact: str, precisions: list[str], feed: FeedSpec, dev) -> tuple[list[Callable], list[dict]]:
    """How to open each variant of `artifact` (a checkpoint once per torch precision `dev` supports), and the skipped ones."""
    path = Path(artifact)
    if not path.exists():
        raise SlowFastError(f"artifact {path} not found; pass a checkpoint (.safetensors), an .onnx export or a TensorRT .plan")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        return [lambda: engines.load(path, device=engine_device(path, feed.device))], []
    openers, skipped = [], []
    for prec in precisions:
        reason = torch_precision_support(prec, dev)
        if reason:
            skipped.append({"artifact": str(path), "engine": f"torch-{prec}", "reason": reason})
        else:
            openers.append(lambda prec=prec: engines.load(path, device=feed.device, precision=prec))
    return openers, skipped


def _rows(evaluations: list[dict]) -> list[dict]:
    """One table row per evaluation x view setting: metrics, the paper's cost (GFLOPs x views), agreement with the first."""
    ref, rows = evaluations[0], []
    for ev in evaluations:
        for setting, metrics in ev["results"].items():
            k, c = _views(setting)
            rows.append(
                {
                    "artifact": ev["artifact"],
                    "preset": ev["preset"],
                    "engine": ev["engine"],
                    "precision": ev["precision"],
                    "setting": setting,
                    "views": k * c,
                    "gflops_per_view": ev["gflops_per_view"],
                    "gflops_x_views": ev["gflops_per_view"] * k * c,
                    **metrics,
                    "agreement_with_first": _agreement(ev, ref, setting),
                    "videos": ev["videos"],
                }
            )
    return rows


def bench_accuracy(
    videos: list[Video],
    artifacts: list[str],
    feed: FeedSpec,
    *,
    precisions: list[str] | None = None,
    manifest: str | None = None,
    progress: Callable[[str], None] = print,
) -> dict:
    """Evaluate every artifact (x precision) on `videos` with `feed`'s `num_clips` x `num_crops` views; returns the result dict."""
    if not artifacts:
        raise SlowFastError("give at least one artifact (checkpoint, .onnx or .plan)")
    if not videos:
        raise SlowFastError(f"{manifest or 'the manifest'} has no videos")
    dev = resolve_device(feed.device)
    precisions = list(precisions or ["fp32"])
    evaluations, skipped = [], []
    for artifact in artifacts:
        path = Path(artifact)
        openers, skips = _openers(artifact, precisions, feed, dev)
        skipped += skips
        for opener in openers:
            engine = open_engine(path, opener)
            progress(f"evaluating {path.name} ({engine.name}): {len(videos)} videos x {feed.num_clips} clips x {feed.num_crops} crops")
            ev = evaluate_engine(engine, videos, feed)
            gflops = count(engine.config, size=input_size(engine))["gflops"]
            ev.update(artifact=str(path), preset=engine.config.name, backend=engine.backend, gflops_per_view=gflops)
            evaluations.append(ev)
    if not evaluations:
        raise SlowFastError("nothing could be evaluated: " + "; ".join(f"{s['engine']}: {s['reason']}" for s in skipped))
    for ev in evaluations:
        progress(
            f"{Path(ev['artifact']).name} {ev['engine']}: "
            + ", ".join(f"{s} " + "/".join(f"{v:.1f}" for v in m.values()) for s, m in ev["results"].items())
        )
    for s in skipped:
        progress(f"skipped {Path(s['artifact']).name} {s['engine']}: {s['reason']}")
    ref = evaluations[0]
    return {
        "benchmark": "accuracy",
        **environment(),
        "settings": {
            "manifest": manifest,
            "artifacts": [str(a) for a in artifacts],
            "clips": feed.num_clips,
            "crops": feed.num_crops,
            "precisions": precisions,
            "batch": feed.batch_size,
            "device": str(dev),
            "videos": len(videos),
            "reference": f"{Path(ref['artifact']).name} ({ref['engine']})",
            "gflops": GFLOPS_NOTE,
            "agreement": "top-1 agreement with the reference, % of videos"
            if any("predictions" in e for e in evaluations)
            else "not computed: evaluate_engine here returns no per-video predictions",
        },
        "rows": _rows(evaluations),
        "skipped": skipped,
        "evaluations": evaluations,
    }


def to_markdown(result: dict) -> str:
    """The paper's table style: one row per artifact x precision x view setting, cost as GFLOPs x views."""
    s = result["settings"]
    metrics = [k for k in ("top1", "top5", "mAP") if any(k in r for r in result["rows"])]
    lines = [
        f"Accuracy on {s['videos']} videos of {s['manifest']} ({result['device']}), K={s['clips']} clips x {s['crops']} crops. "
        f"{s['gflops']}. Agreement: {s['agreement']} (reference {s['reference']}).",
        "",
        "| artifact | preset | engine | views | " + " | ".join(metrics) + " | GFLOPs x views | agreement |",
        "|---|---|---|---|" + "---:|" * len(metrics) + "---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {Path(r['artifact']).name} | {r['preset']} | {r['engine']} | {r['setting']} | "
            + " | ".join(fmt(r.get(m)) for m in metrics)
            + f" | {r['gflops_per_view']:.3f} x {r['views']} = {r['gflops_x_views']:.2f} | {fmt(r['agreement_with_first'], '.1f')} |"
        )
    if result["skipped"]:
        lines += ["", "Not measured:", ""] + [f"- {Path(x['artifact']).name} {x['engine']}: {x['reason']}" for x in result["skipped"]]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    return write_result(result, out_dir, to_markdown(result), "accuracy.md")
