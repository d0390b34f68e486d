"""`slowfast export triton`, `slowfast serve` and `slowfast bench serve`: Triton serving (see serving/ and docs/serving.md)."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys

import click

from slowfast_trt.benchmarks.serve import ServeSettings
from slowfast_trt.benchmarks.serve import main as bench_main
from slowfast_trt.cli.options import clips_option, crops_option, finite_float, int_list
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.serving.env import client_available, run_module, user_cache
from slowfast_trt.serving.repository import build_repository, servable
from slowfast_trt.serving.server import CONTROL_HEADER, TritonServer, supervise, write_token


def _gpus(ctx, param, value):
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("comma-separated GPU ids, e.g. 0 or 0,1") from None


@click.command("triton")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The model repository folder (new, or one written before).")
@click.option(
    "--max-batch",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="max_batch_size of the engine models (a plan: at most its profile's max).",
)
@click.option(
    "--instances", default=1, show_default=True, type=click.IntRange(1), help="Instances per engine model (instance_group count)."
)
@clips_option(10, help="K: test clips per video in the video models.")
@crops_option(3, help="C: spatial crops per clip.")
@click.option("--gpus", callback=_gpus, help="GPU ids for KIND_GPU instance groups of the native models (default: KIND_CPU).")
@click.option(
    "--labels", type=click.Path(dir_okay=False), help="Class names, one a line (e.g. the data set's classes.txt), for TOP_LABELS."
)
@click.option("--video-batch", default=4, show_default=True, type=click.IntRange(1), help="max_batch_size (videos) of the video models.")
@click.option(
    "--threads",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Intra-op threads per engine instance (0: the library's choice).",
)
@click.option("--no-validate", is_flag=True, help="Skip parsing the configs with Triton's ModelConfig protobuf (needs Triton's venv).")
def triton_cmd(artifact, out, max_batch, instances, clips, crops, gpus, labels, video_batch, threads, no_validate):
    """Write a Triton model repository for ARTIFACT (checkpoint, ONNX export or TensorRT plan)."""
    manifest = build_repository(
        artifact,
        out,
        max_batch=max_batch,
        instances=instances,
        clips=clips,
        crops=crops,
        gpus=gpus,
        labels=labels,
        video_batch=video_batch,
        threads=threads,
        validate=not no_validate,
    )
    ok, skipped = servable(manifest)
    click.echo(
        f"wrote {out}: {len(manifest['models'])} models"
        + ("" if no_validate else ", every config.pbtxt parsed by Triton's ModelConfig protobuf")
    )
    click.echo(f"  runs on the bundled CPU server (slowfast serve): {', '.join(ok)}")
    for name, why in skipped.items():
        click.echo(f"  for a GPU server with the official container: {name} ({why})")


@click.command("serve")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--http-port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--grpc-port", default=8001, show_default=True, type=click.IntRange(1, 65535))
@click.option("--metrics-port", default=8002, show_default=True, type=click.IntRange(1, 65535))
@click.option("--model", "models", multiple=True, help="Load only these models (default: every model the bundled server can run).")
@click.option("--timeout", default=300, show_default=True, type=click.IntRange(1), help="Seconds to wait for every model to be READY.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), help="Server log file (default: a temporary file).")
@click.option(
    "--model-control",
    type=click.Choice(["none", "explicit"]),
    default="none",
    show_default=True,
    help="explicit: clients holding the control token may load and unload models (`bench serve --batching off` needs it).",
)
@click.option(
    "--control-token-file",
    type=click.Path(dir_okay=False),
    help=f"Where --model-control explicit writes its token (mode 0600) [default: {user_cache()}/serve-HTTP_PORT.token].",
)
def serve(repo, http_port, grpc_port, metrics_port, models, timeout, log_path, model_control, control_token_file):
    """Start Triton (PyTriton's bundled tritonserver, Triton's own venv) on REPO on 127.0.0.1 until Ctrl-C."""
    if control_token_file and model_control != "explicit":
        raise SlowFastError("--control-token-file goes with --model-control explicit (without it no client may load models)")
    server = TritonServer(
        repo,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        models=list(models) or None,
        log_path=log_path,
        echo=lambda s: click.echo(s, err=True),
        control_token=secrets.token_urlsafe(32) if model_control == "explicit" else None,
    )
    server.check_ports()  # a busy port: one line, nothing started
    token_file = None
    if server.control:
        token_file = write_token(control_token_file or user_cache() / f"serve-{http_port}.token", server.token)
    click.echo(f"starting tritonserver on {server.repo} (log: {server.log_path}) ...", err=True)
    try:
        server.start(timeout)
        click.echo(f"ready in {server.ready_s:.1f} s: {', '.join(server.models)}")
        for name, why in server.skipped.items():
            click.echo(f"  not loaded: {name} ({why})")
        click.echo(f"HTTP    {server.http_url}\ngRPC    {server.grpc_url}\nmetrics {server.metrics_url}")
        if token_file:
            click.echo(f"model control: explicit, for requests with header {CONTROL_HEADER} as in {token_file} (--control-token-file)")
        else:
            click.echo("model control: none (no client can load or unload models)")
        click.echo("Ctrl-C stops the server.")
        supervise(server, timeout, lambda s: click.echo(s, err=True))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop a server, so exit 0
        status = server.stop()
        click.echo(f"stopped (tritonserver exit status {status})")
    finally:
        if server.alive():
            server.stop()
        if token_file:
            with contextlib.suppress(OSError):
                token_file.unlink()


def _batching(ctx, param, value):
    out = [v.strip() for v in value.split(",") if v.strip()]
    if not out or any(v not in ("on", "off") for v in out):
        raise click.BadParameter("on, off, or on,off")
    return out


@click.command("serve")
@click.argument("url")
@click.option(
    "--model", "models", multiple=True, required=True, help="Model to load-test (repeat for several: clips and videos in one run)."
)
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True, help="URL is this protocol's address.")
@click.option("--concurrency", default="1,4,16", show_default=True, callback=int_list, help="Client threads, one phase each.")
@click.option("--duration", default=5.0, show_default=True, type=finite_float(0.1, 600), help="Seconds per phase.")
@click.option("--max-requests", default=5000, show_default=True, type=click.IntRange(1), help="Requests per phase at most.")
@click.option(
    "--batching",
    default="on",
    show_default=True,
    callback=_batching,
    help="Dynamic batching settings to measure: on (the repository's), off (reloaded without it), or on,off.",
)
@click.option(
    "--videos",
    type=click.Path(dir_okay=False),
    help="Manifest of videos: sent whole to video models, decoded into clips for engine models.",
)
@click.option("--artifact", type=click.Path(dir_okay=False), help="The local artifact for score parity (default: no parity check).")
@click.option(
    "--parity-samples", default=4, show_default=True, type=click.IntRange(1), help="Inputs per model compared with the local engine."
)
@click.option(
    "--control-token-file",
    type=click.Path(dir_okay=False),
    help="The token file `slowfast serve --model-control explicit` named (needed by --batching off).",
)
@click.option("--metrics-url", help="Triton's Prometheus endpoint [default: http://HOST:8002/metrics].")
@click.option("--timeout", default=60.0, show_default=True, type=finite_float(1), help="Per-request timeout (s).")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write result.json and serve.md here.")
def bench_serve_cmd(
    url,
    models,
    protocol,
    concurrency,
    duration,
    max_requests,
    batching,
    videos,
    artifact,
    parity_samples,
    control_token_file,
    metrics_url,
    timeout,
    as_json,
    out_dir,
):
    """Bounded load test of MODELs on the Triton server at URL: req/s, latency, errors, server queue/compute, parity."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    settings = ServeSettings(
        url=url,
        protocol=protocol,
        models=tuple(models),
        concurrency=tuple(concurrency),
        duration=duration,
        max_requests=max_requests,
        batching=tuple(batching),
        timeout=timeout,
        json=as_json,
        parity_samples=parity_samples,
        videos=os.path.abspath(videos) if videos else None,
        artifact=os.path.abspath(artifact) if artifact else None,
        metrics_url=metrics_url or f"http://{host}:8002/metrics",
        control_token_file=os.path.abspath(control_token_file) if control_token_file else None,
        out=os.path.abspath(out_dir) if out_dir else None,
    )
    if client_available():
        code = bench_main([settings.to_json()])
    else:  # tritonclient needs numpy<2: run the load test from Triton's venv
        code = run_module("slowfast_trt.benchmarks.serve", [settings.to_json()]).returncode
    if code:
        sys.exit(code)
