"""The demo's serving stage: the exported SlowFast behind the bundled Triton (Python backend), load-tested with parity.

Writes the repository to OUT/serve/repo, starts the server on free 127.0.0.1 ports with the Python-backend engine and
video models, runs `slowfast bench serve`'s load test (clips and whole videos, concurrency 1 and 4) with parity
against the local engine, writes OUT/bench/serve/result.json and stops the server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from slowfast_trt.benchmarks.serve import ServeSettings
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.serving.env import ensure_env, run_module
from slowfast_trt.serving.repository import build_repository, model_name
from slowfast_trt.serving.server import TritonServer, free_ports


def serving_stage(
    artifact: Path, manifest: Path, labels: Path | None, repo: Path, out: Path, *, clips: int, duration: float, echo: Callable[[str], None]
) -> dict:
    env = ensure_env(echo)  # once: Triton's own venv (numpy<2), about two minutes
    build_repository(artifact, repo, clips=clips, crops=3, labels=labels, max_batch=8)
    name = model_name(artifact)
    models = [f"{name}_py", f"{name}_video_py"]
    h, g, m = free_ports(3)
    with TritonServer(
        repo, http_port=h, grpc_port=g, metrics_port=m, models=models, env=env, log_path=repo.parent / "tritonserver.log"
    ) as server:
        echo(f"tritonserver ready in {server.ready_s:.1f} s on {server.http_url} ({', '.join(models)})")
        settings = ServeSettings(
            url=server.http_url,
            protocol="http",
            models=tuple(models),
            concurrency=(1, 4),
            duration=duration,
            batching=("on",),
            videos=str(manifest),
            artifact=str(artifact),
            metrics_url=server.metrics_url,
            out=str(out),
            parity_samples=4,
            max_videos=8,
        )
        r = run_module("slowfast_trt.benchmarks.serve", [settings.to_json()], env=env, capture=True, timeout=900)
    if r.returncode:
        raise SlowFastError((r.stderr.strip().splitlines() or ["bench serve failed"])[-1].removeprefix("error: "))
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    for row in result["rows"]:
        echo(
            f"{row['model']} ({row['kind']}s, concurrency {row['concurrency']}): {row['requests_per_s']:.2f} req/s, "
            f"p50 {row['latency_ms_p50']:.0f} ms, {row['errors']} errors"
        )
    for model, p in result["parity"].items():
        echo(
            f"{model} vs the local engine: max abs diff {p['max_abs_diff']:.2g}, top-1 agreement {100 * p['top1_agreement']:.0f}% ({p['samples']} {p['kind']})"
        )
    return result
