"""`slowfast bench serve`: a bounded tritonclient load test of models on a running Triton server, with parity.

For each model, each dynamic-batching setting ("on": the repository's config; "off": the model (and an ensemble's
steps) reloaded with a config override without `dynamic_batching`, then restored) and each concurrency, N client
threads send single requests (one clip, or one whole encoded video) until `duration` seconds have passed or
`max_requests` were sent, each with a timeout. Per phase: requests/s, latency p50/p95/p99 (client side), errors, and
the server's own view over the same requests from Triton's statistics API (queue and compute time per request,
average executed batch) and from the Prometheus `/metrics` counters. Afterwards the same inputs go once more through
the server and through the local engine (`engines.load` on `--artifact`; videos through `serving.video.score_videos`,
i.e. as `slowfast eval` scores them): max abs difference and top-1 agreement.

A server that stops answering ends the run: the phase in progress is kept as a partial row, the result says why,
and the command exits with one line. Runs in Triton's venv (tritonclient needs numpy<2); `cli/serve.py` delegates.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from slowfast_trt import engines
from slowfast_trt.benchmarks.results import fmt, latency_stats, write_result
from slowfast_trt.common.environment import environment
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.loader import ClipLoader
from slowfast_trt.dali_pipelines.plan import multiview_plan
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.data.manifest import read_manifest, to_videos
from slowfast_trt.serving.client import infer, is_video_model, make_client, model_config, params, video_request
from slowfast_trt.serving.server import control_headers, http_get, read_token
from slowfast_trt.serving.video import score_videos

MAX_REQUESTS = 5000  # per phase, on top of the time limit
PARITY_SAMPLES = 4


class ServerGone(Exception):
    """The server stopped answering (connection refused / unavailable and not live)."""


def _transport_error(e: Exception) -> bool:
    from tritonclient.utils import InferenceServerException  # lazy: tritonclient, only in Triton's venv

    if not isinstance(e, InferenceServerException):
        return True  # socket errors, timeouts from geventhttpclient
    status = str(e.status() or "")
    return "UNAVAILABLE" in status or "DEADLINE" in status or "CANCELLED" in status


def _live(url: str, protocol: str) -> bool:
    try:
        return bool(make_client(url, protocol, timeout=3.0).is_server_live())
    except Exception:
        return False


def run_phase(
    url: str,
    protocol: str,
    model: str,
    requests: list[dict],
    outputs: list[str],
    *,
    concurrency: int,
    duration: float,
    max_requests: int = MAX_REQUESTS,
    timeout: float = 60.0,
) -> dict:
    """`concurrency` threads, each sending requests (cycling through `requests`) until the time or count limit."""
    lock = threading.Lock()
    state = {"next": 0, "gone": None}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.perf_counter() + duration

    def worker() -> None:
        try:
            client = make_client(url, protocol, timeout=timeout)
        except Exception as e:
            with lock:
                state["gone"] = state["gone"] or f"cannot connect: {e}"
            return
        while True:
            with lock:
                i = state["next"]
                if state["gone"] or i >= max_requests or time.perf_counter() >= stop_at:
                    return
                state["next"] += 1
            t0 = time.perf_counter()
            try:
                infer(client, protocol, model, requests[i % len(requests)], outputs, timeout=timeout)
            except Exception as e:  # a failed request is counted, never retried
                msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                with lock:
                    errors[msg] = errors.get(msg, 0) + 1
                if _transport_error(e) and not _live(url, protocol):
                    with lock:
                        state["gone"] = state["gone"] or msg
                    return
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + timeout + 10)
    elapsed = time.perf_counter() - t0
    row = {
        "model": model,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_messages": errors,
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed if elapsed else None,
    }
    keys = ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_ms_mean")
    stats = latency_stats(latencies, 1) if latencies else dict.fromkeys(keys)
    row |= {k: stats[k] for k in keys}
    if state["gone"]:
        row["aborted"] = state["gone"]
    return row


# --- the server's side -------------------------------------------------------------------------------------------------
def server_stats(client, model: str) -> dict:
    """Cumulative counters of one model from Triton's statistics API (both protocols, ints)."""
    s = client.get_inference_statistics(model_name=model)
    if not isinstance(s, dict):  # gRPC
        from google.protobuf.json_format import MessageToDict  # lazy: protobuf, comes with tritonclient in Triton's venv

        s = MessageToDict(s, preserving_proto_field_name=True)
    stats = s["model_stats"][0]
    inf = stats.get("inference_stats", {})

    def part(k: str, f: str) -> int:
        return int(inf.get(k, {}).get(f, 0) or 0)

    return {
        "success": part("success", "count"),
        "fail": part("fail", "count"),
        "queue_ns": part("queue", "ns"),
        "compute_ns": sum(part(k, "ns") for k in ("compute_input", "compute_infer", "compute_output")),
        "inferences": int(stats.get("inference_count", 0) or 0),
        "executions": int(stats.get("execution_count", 0) or 0),
    }


def stats_delta(before: dict, after: dict) -> dict:
    d = {k: after[k] - before[k] for k in before}
    n = d["success"]
    return {
        "server_requests": n,
        "server_failures": d["fail"],
        "queue_ms_per_request": d["queue_ns"] / n / 1e6 if n else None,
        "compute_ms_per_request": d["compute_ns"] / n / 1e6 if n else None,
        "avg_batch": d["inferences"] / d["executions"] if d["executions"] else None,
    }


METRICS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_exec_count",
    "nv_inference_count",
)


def scrape_metrics(metrics_url: str | None, model: str) -> dict | None:
    """The Prometheus counters of `model` from Triton's /metrics (None when it does not answer)."""
    if not metrics_url:
        return None

    status, body = http_get(metrics_url, 3.0)
    if status != 200:
        return None
    out = dict.fromkeys(METRICS, 0.0)
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("#") or f'model="{model}"' not in line:
            continue
        name = line.split("{", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def metrics_delta(before: dict | None, after: dict | None) -> dict | None:
    if before is None or after is None:
        return None
    d = {k: after[k] - before[k] for k in before}
    n = d["nv_inference_request_success"]
    return {
        "requests": int(n),
        "failures": int(d["nv_inference_request_failure"]),
        "queue_ms_per_request": d["nv_inference_queue_duration_us"] / n / 1e3 if n else None,
        "compute_infer_ms_per_request": d["nv_inference_compute_infer_duration_us"] / n / 1e3 if n else None,
        "avg_batch": d["nv_inference_count"] / d["nv_inference_exec_count"] if d["nv_inference_exec_count"] else None,
    }


# --- batching on / off --------------------------------------------------------------------------------------------------
def _targets(client, protocol: str, model: str) -> list[str]:
    cfg = model_config(client, protocol, model)
    if cfg.get("platform") == "ensemble":
        return [s["model_name"] for s in cfg["ensemble_scheduling"]["step"]]
    return [model]


def _wait_ready(client, models: list[str], timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not all(client.is_model_ready(m) for m in models):
        if time.perf_counter() > deadline:
            raise SlowFastError(f"models {models} did not come back READY within {timeout:.0f} s after a reload")
        time.sleep(0.2)


def set_batching(client, protocol: str, model: str, on: bool, originals: dict[str, dict], token: str | None = None) -> list[str]:
    """Reload `model` (or an ensemble's steps) with a config override: without `dynamic_batching` (off) or with the config
    it was first seen with (on; `originals` is filled on the way off). A plain reload would keep the override while the
    files on disk are unchanged. The load API is restricted: `token` goes in the control header (`serving.server`)."""
    if token is None:
        raise SlowFastError(
            "--batching off reloads the model, which only a server with model control allows: start it with "
            "`slowfast serve REPO --model-control explicit` and pass the token file it names with --control-token-file"
        )
    headers = control_headers(token, protocol)
    targets = _targets(client, protocol, model)
    for m in targets:
        try:
            if on:
                if m in originals:
                    client.load_model(m, headers=headers, config=json.dumps(originals.pop(m)))
            else:
                cfg = model_config(client, protocol, m)
                if "dynamic_batching" not in cfg:
                    continue
                originals[m] = json.loads(json.dumps(cfg))
                cfg.pop("dynamic_batching")
                client.load_model(m, headers=headers, config=json.dumps(cfg))
        except Exception as e:
            raise SlowFastError(
                f"cannot reload {m} with dynamic batching {'on' if on else 'off'} ({str(e).splitlines()[0][:200]}); "
                "the server must run with `slowfast serve --model-control explicit` and --control-token-file must be the file it names"
            ) from None
    _wait_ready(client, [model, *targets])
    return targets


# --- inputs and parity --------------------------------------------------------------------------------------------------
def _video_blobs(manifest: str | None, n: int) -> list[bytes]:
    if not manifest:
        raise SlowFastError("a video model needs --videos MANIFEST (encoded videos to send)")

    m = read_manifest(manifest)
    paths = [m.resolve(e) for e in m.entries][:n]
    if not paths:
        raise SlowFastError(f"{manifest} lists no videos")
    return [Path(p).read_bytes() for p in paths]


def _clip_inputs(config: dict, engine, manifest: str | None, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """n single-clip requests: real test clips from `manifest` when given (and the engine's config known), else random."""
    names = [i["name"] for i in config["input"]]
    if manifest and engine is not None:
        cfg = engine.config
        videos = to_videos(read_manifest(manifest))[: max(1, n)]
        loader = ClipLoader(multiview_plan(videos, cfg, 1), cfg, "test", FeedSpec(device="cpu", batch_size=1), videos=videos)
        out = []
        for batch in loader:
            out.append({k: np.ascontiguousarray(batch[k].contiguous().numpy()) for k in names})
            if len(out) >= n:
                break
        return out
    shapes = {i["name"]: [int(d) for d in i["dims"]] for i in config["input"]}
    if any(d < 0 for s in shapes.values() for d in s):
        raise SlowFastError(f"inputs {shapes} have free dims; pass --artifact so clips of the right size can be made")
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal((1, *s)).astype(np.float32) for k, s in shapes.items()} for _ in range(n)]


def _video_params(client, protocol: str, model: str, config: dict) -> tuple[int, int]:
    p = params(config)
    if "clips" not in p and config.get("platform") == "ensemble":
        p = params(model_config(client, protocol, config["ensemble_scheduling"]["step"][-1]["model_name"]))
    if "clips" not in p:
        raise SlowFastError(f"{model}: no clips/crops parameters in its config; is it a model written by `slowfast export triton`?")
    return int(p["clips"]), int(p["crops"])


def parity(client, protocol: str, model: str, config: dict, requests: list[dict], engine, video: bool) -> dict:
    """Server scores vs the local engine's on the same inputs."""
    if engine is None:
        return {"checked": False, "reason": "pass --artifact to compare with the local engine"}
    if video:
        k, c = _video_params(client, protocol, model, config)
        feed = FeedSpec(device="cpu", num_clips=k, num_crops=c)
        local = np.stack([r.scores for r in score_videos(engine, [r["VIDEO"].tobytes() for r in requests], feed)])
        got = np.concatenate([infer(client, protocol, model, r, ["SCORES"])["SCORES"] for r in requests])
    else:
        out = config["output"][0]["name"]
        local = np.concatenate([engine(**{k: torch.from_numpy(v) for k, v in r.items()}).float().numpy() for r in requests])
        got = np.concatenate([infer(client, protocol, model, r, [out])[out] for r in requests])
    return {
        "checked": True,
        "samples": len(requests),
        "max_abs_diff": float(np.abs(got - local).max()),
        "top1_agreement": float((got.argmax(1) == local.argmax(1)).mean()),
        "kind": "videos" if video else "clips",
        "server_top1": [int(i) for i in got.argmax(1)],
        "local_top1": [int(i) for i in local.argmax(1)],
    }


# --- the run ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServeSettings:
    """What one `bench serve` run measures (`slowfast bench serve`'s options), as one typed object.

    It crosses a process boundary as JSON (`to_json`/`from_json`): the load test runs in Triton's own venv when
    this one lacks tritonclient (`cli/serve.py`)."""

    url: str
    protocol: str
    models: tuple[str, ...]
    concurrency: tuple[int, ...] = (1,)
    duration: float = 10.0  # seconds per phase
    batching: tuple[str, ...] = ("on",)  # "on": the repository's dynamic batching; "off": reloaded without it
    max_requests: int = MAX_REQUESTS  # per phase, on top of the time limit
    timeout: float = 60.0  # seconds per request
    videos: str | None = None  # manifest whose videos the video models get (and clips are cut from)
    artifact: str | None = None  # the local engine parity compares against
    metrics_url: str | None = None
    out: str | None = None  # folder for result.json and serve.md
    json: bool = False  # print the result JSON instead of the table
    parity: bool = True
    parity_samples: int = PARITY_SAMPLES
    max_videos: int = 8  # distinct videos a video model is sent
    control_token_file: str | None = None  # the token `slowfast serve --model-control explicit` wrote; --batching off needs it

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        d = json.loads(text)
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise SlowFastError(f"bench serve settings: unknown field(s) {unknown}")
        for name in ("models", "concurrency", "batching"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(**d)


def _connect(s: ServeSettings) -> tuple:
    """(client, control client) of the server, once it answers ready; a one-line error when it does not."""
    client = make_client(s.url, s.protocol, timeout=10.0)
    control = make_client(s.url, s.protocol, timeout=300.0)  # model reloads restart Python-backend stubs: tens of seconds on 2 cores
    try:
        if not client.is_server_ready():
            raise SlowFastError(f"the server at {s.url} is not ready")
    except SlowFastError:
        raise
    except Exception as e:
        raise SlowFastError(
            f"no Triton server answers at {s.url} over {s.protocol} ({str(e).splitlines()[0][:150] or type(e).__name__})"
        ) from None
    return client, control


def _server_info(client) -> dict | None:
    try:
        meta = client.get_server_metadata()
    except Exception:
        return None
    return {"name": meta["name"], "version": meta["version"]} if isinstance(meta, dict) else {"name": meta.name, "version": meta.version}


def _measured_phase(client, s: ServeSettings, model: str, requests: list, outputs: list[str], concurrency: int) -> dict:
    """One phase (a model at one concurrency): the load test's row plus the server's own statistics over it."""
    targets = _targets(client, s.protocol, model)
    before = {m: server_stats(client, m) for m in targets} | {model: server_stats(client, model)}
    mbefore = scrape_metrics(s.metrics_url, model)
    row = run_phase(
        s.url,
        s.protocol,
        model,
        requests,
        outputs,
        concurrency=concurrency,
        duration=s.duration,
        max_requests=s.max_requests,
        timeout=s.timeout,
    )
    if "aborted" in row:
        return row
    after = server_stats(client, model)
    settle = time.perf_counter() + 3.0  # an ensemble's counters can trail its responses by a few ms
    while after["success"] - before[model]["success"] < row["requests"] and time.perf_counter() < settle:
        time.sleep(0.05)
        after = server_stats(client, model)
    row["server"] = stats_delta(before[model], after)
    if targets != [model]:  # an ensemble: where its time goes
        row["steps"] = {m: stats_delta(before[m], server_stats(client, m)) for m in targets}
    row["metrics"] = metrics_delta(mbefore, scrape_metrics(s.metrics_url, model))
    return row


def bench_serve(settings: ServeSettings, progress=lambda s: print(s, file=sys.stderr, flush=True)) -> dict:
    """Run every phase of `settings`; returns the result (maybe aborted)."""
    s = settings
    token = read_token(s.control_token_file) if s.control_token_file else None
    if "off" in s.batching and token is None:
        set_batching(None, s.protocol, "", False, {}, None)  # the one-line refusal, before any model is loaded here
    client, control = _connect(s)
    engine = engines.load(s.artifact, device="cpu") if s.artifact else None
    result = {"benchmark": "serve", **environment(), "settings": asdict(s), "rows": [], "parity": {}, "aborted": None}
    result["server"] = _server_info(client)
    for model in s.models:
        try:
            config = model_config(client, s.protocol, model)
        except Exception as e:
            raise SlowFastError(f"model {model} is not served at {s.url} ({str(e).splitlines()[0][:200]})") from None
        video = is_video_model(config)
        outputs = ["SCORES"] if video else [config["output"][0]["name"]]
        requests = [video_request(b) for b in _video_blobs(s.videos, s.max_videos)] if video else _clip_inputs(config, engine, s.videos, 8)
        kind = "video" if video else "clip"
        current, originals = "on", {}  # as the repository's config.pbtxt says
        for batching in s.batching:
            if batching != current:
                set_batching(control, s.protocol, model, batching == "on", originals, token)
                current = batching
            for c in s.concurrency:
                row = _measured_phase(client, s, model, requests, outputs, c) | {"kind": kind, "batching": batching, "protocol": s.protocol}
                result["rows"].append(row)
                if "aborted" in row:
                    result["aborted"] = (
                        f"the server at {s.url} stopped answering during {model} (batching {batching}, concurrency {c}) "
                        f"after {row['requests']} requests: {row['aborted']}"
                    )
                    return result
                progress(
                    f"{model} [{kind}, batching {batching}, concurrency {c}]: {row['requests']} requests, "
                    f"{fmt(row['requests_per_s'])}/s, p50 {fmt(row['latency_ms_p50'])} ms, p99 {fmt(row['latency_ms_p99'])} ms, {row['errors']} errors"
                )
        if current == "off":
            set_batching(control, s.protocol, model, True, originals, token)
        if s.parity:
            result["parity"][model] = p = parity(client, s.protocol, model, config, requests[: s.parity_samples], engine, video)
            if p["checked"]:
                progress(
                    f"{model} parity over {s.protocol}: max abs diff {p['max_abs_diff']:.3g}, top-1 agreement {100 * p['top1_agreement']:.0f}% ({p['samples']} {p['kind']})"
                )
    return result


def to_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"Triton serving on {result['device']} ({(result.get('server') or {}).get('name', 'triton')} {(result.get('server') or {}).get('version', '')}), "
        f"{s['protocol']} at {s['url']}: {s['duration']} s per phase (at most {s.get('max_requests', MAX_REQUESTS)} requests), "
        f"one clip or one whole video per request; the server's queue/compute times are Triton's own statistics.",
        "",
        "| model | input | batching | concurrency | requests | req/s | p50 ms | p95 ms | p99 ms | errors | server queue ms | server compute ms | avg batch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        sv = r.get("server") or {}
        lines.append(
            f"| {r['model']} | {r['kind']} | {r['batching']} | {r['concurrency']} | {r['requests']} | {fmt(r['requests_per_s'])} | "
            f"{fmt(r['latency_ms_p50'])} | {fmt(r['latency_ms_p95'])} | {fmt(r['latency_ms_p99'])} | {r['errors']} | "
            f"{fmt(sv.get('queue_ms_per_request'))} | {fmt(sv.get('compute_ms_per_request'))} | {fmt(sv.get('avg_batch'))} |"
        )
    if result.get("parity"):
        lines += ["", "Parity with the local engine (same inputs):", ""]
        for m, p in result["parity"].items():
            lines.append(
                f"- {m}: "
                + (
                    f"max abs diff {p['max_abs_diff']:.3g}, top-1 agreement {100 * p['top1_agreement']:.0f}% over {p['samples']} {p['kind']}"
                    if p["checked"]
                    else p["reason"]
                )
            )
    if result.get("aborted"):
        lines += ["", f"**Aborted:** {result['aborted']} (partial result)"]
    return "\n".join(lines) + "\n"


def headline(result: dict, where: str) -> str:
    """One line for `slowfast report`: the best requests/s per model and input, and the parity."""
    best: dict[str, dict] = {}
    for r in result["rows"]:
        key = f"{r['model']} ({r['kind']}s)"
        if r.get("requests_per_s") and (key not in best or r["requests_per_s"] > best[key]["requests_per_s"]):
            best[key] = r
    parts = [
        f"{k} {v['requests_per_s']:.1f} req/s (concurrency {v['concurrency']}, batching {v['batching']}, p99 {fmt(v['latency_ms_p99'])} ms)"
        for k, v in best.items()
    ]
    par = [f"{m} {p['max_abs_diff']:.2g}" for m, p in (result.get("parity") or {}).items() if p.get("checked")]
    return (
        f"- Triton serving on {result['device']} ({where}): "
        + "; ".join(parts)
        + (f"; max abs diff vs the local engine: {', '.join(par)}" if par else "")
        + (" (aborted, partial)" if result.get("aborted") else "")
    )


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    return write_result(result, out_dir, to_markdown(result), "serve.md")


def main(argv: list[str]) -> int:
    """`python -m slowfast_trt.benchmarks.serve SETTINGS_JSON` (`ServeSettings.to_json`: what `slowfast bench serve` runs in Triton's venv)."""
    try:
        settings = ServeSettings.from_json(argv[0])
        result = bench_serve(settings)
    except SlowFastError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if settings.out:
        paths = write_results(result, settings.out)
        print(f"wrote {paths['json']} and {paths['markdown']}", file=sys.stderr)
    if settings.json:
        print(json.dumps(result, indent=2))
    else:
        print(to_markdown(result))
    if result["aborted"]:
        print(f"error: {result['aborted']}" + (f"; partial result in {settings.out}" if settings.out else ""), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
