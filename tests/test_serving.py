"""Serving: a generated Triton repository on the real (PyTriton-bundled) tritonserver, on 127.0.0.1, free ports.

The tiny demo SlowFast (time-difference Fast input) with random weights, 8 synthetic videos. Triton's own venv
(numpy<2) is created on first use (about two minutes, once); where it cannot be built, the tests skip saying why.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from slowfast_trt import engines, model
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.dali_pipelines.spec import FeedSpec
from slowfast_trt.model.checkpoint import save
from tests.helpers import randomize_, write_indexed_video

pytest.importorskip("onnxruntime")
pytest.importorskip("nvidia.dali")

ROOT = Path(__file__).resolve().parent.parent
CLIPS, CROPS = 2, 3


@pytest.fixture(scope="module")
def triton_env():
    from slowfast_trt.serving.env import ensure_env

    try:
        return ensure_env()
    except SlowFastError as e:
        pytest.skip(f"Triton's venv (PyTriton 0.7.0, tritonclient 2.51, numpy<2) cannot be built here: {e}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from slowfast_trt.data.synth import synth

    d = tmp_path_factory.mktemp("serve")
    net = randomize_(model.build("slowfast_tiny_4x16_timediff", num_classes=8), seed=3).eval()
    save(net, d / "tiny.safetensors")
    synth(d / "data", videos=8, seed=3, frames=72, workers=2, progress=False)
    write_indexed_video(d / "wide.webm", 80, 96, 72)  # 72x96: the short-side resize does real work
    return d


@pytest.fixture(scope="module")
def repo(tiny, triton_env):
    from slowfast_trt.serving.repository import build_repository

    build_repository(tiny / "tiny.safetensors", tiny / "repo", clips=CLIPS, crops=CROPS, labels=tiny / "data" / "classes.txt")
    return tiny / "repo"


@pytest.fixture(scope="module")
def servers(repo, triton_env, tiny):
    """The module's server, started on first use and again whenever a test left it dead (tests run in any order)."""
    from slowfast_trt.serving.server import TritonServer, free_ports, write_token

    started: list[TritonServer] = []

    def alive() -> TritonServer:
        if not started or not started[-1].alive():
            h, g, m = free_ports(3)
            log = tiny / f"server{len(started) or ''}.log"
            s = TritonServer(repo, http_port=h, grpc_port=g, metrics_port=m, env=triton_env, log_path=log, control_token="t0ken-for-tests")
            write_token(tiny / "control.token", s.token)  # as `slowfast serve --model-control explicit` does
            started.append(s)
            s.start(240)
        return started[-1]

    yield alive
    for s in started:
        s.stop()


@pytest.fixture
def server(servers):
    return servers()


def _slowfast(*args, timeout=300, **kw):
    return subprocess.run(
        [sys.executable, "-m", "slowfast_trt", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw
    )


def test_repository_configs_parse_with_tritons_protobuf(repo, tiny, triton_env):
    from slowfast_trt.serving.repository import read_manifest, servable, validate_repository

    configs = validate_repository(repo)
    assert configs["tiny"]["backend"] == "onnxruntime_onnx" and configs["tiny"]["inputs"] == ["slow", "fast"]
    assert configs["tiny_video"]["backend"] == "ensemble" and configs["tiny_dali"]["backend"] == "dali"
    text = (repo / "tiny" / "config.pbtxt").read_text()
    assert "dims: [ 3, 4, 64, 64 ]" in text and "dims: [ 1, 32, 64, 64 ]" in text  # from the sidecar
    assert "preferred_batch_size: [ 4, 8 ]" in text and "KIND_CPU" in text
    ok, skipped = servable(read_manifest(repo))
    assert set(skipped) == {"tiny", "tiny_dali", "tiny_video", "tiny_classify"} and "tiny_video_cpu" in ok
    # A TensorRT plan (a stand-in file with a plan's sidecar) on GPUs: tensorrt_plan, KIND_GPU, batch capped by the profile.
    side = json.loads((repo / "tiny" / "1" / "model.onnx.json").read_text())
    side |= {"kind": "tensorrt", "precision": "fp16", "tensorrt": {"profile": {"min": 1, "opt": 2, "max": 4}}}
    plan = tiny / "tiny.fp16.plan"
    plan.write_bytes(b"not a real plan")
    (tiny / "tiny.fp16.plan.json").write_text(json.dumps(side))
    r = _slowfast("export", "triton", plan, "--out", tiny / "repo_gpu", "--gpus", "0,1", "--instances", "2", "--clips", 2, "--no-validate")
    assert r.returncode == 0, r.stderr
    assert validate_repository(tiny / "repo_gpu")["tiny_fp16_video"]["backend"] == "ensemble"
    text = (tiny / "repo_gpu" / "tiny_fp16" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in text and "max_batch_size: 4" in text
    assert "count: 2 kind: KIND_GPU gpus: [ 0, 1 ]" in text
    assert 'backend: "dali"' in (tiny / "repo_gpu" / "tiny_fp16_dali" / "config.pbtxt").read_text()
    # A config Triton would reject is named.
    bad = tiny / "repo_gpu" / "tiny_fp16_py" / "config.pbtxt"
    bad.write_text(bad.read_text().replace("max_batch_size", "max_batch"))
    with pytest.raises(SlowFastError, match="tiny_fp16_py/config.pbtxt: not a valid Triton model config"):
        validate_repository(tiny / "repo_gpu")


def test_serialized_dali_pipeline_matches_the_python_backend_preprocessing(repo, tiny):
    """model.cpu.dali (the dali model's graph with the CPU decoder) deserialized and run here, against ClipLoader's views."""
    from slowfast_trt.dali_pipelines.loader import ClipLoader
    from slowfast_trt.dali_pipelines.plan import multiview_plan
    from slowfast_trt.engines.sidecar import read_sidecar, sidecar_config
    from slowfast_trt.serving.dali_model import load_serialized, run_serialized
    from slowfast_trt.serving.video import _probe, decode_plan

    cfg = sidecar_config(read_sidecar(repo / "tiny" / "1" / "model.onnx"))
    assert (repo / "tiny_dali" / "1" / "model.dali").stat().st_size > 0  # the GPU ('mixed' decoder) variant
    pipe = load_serialized(repo / "tiny_dali" / "1" / "model.cpu.dali", batch_size=4)
    level = 1 / 255 / cfg.std[0]  # one grey level after normalisation
    native = sorted((tiny / "data" / "videos").rglob("*.webm"))[0]
    for path, tol in ((native, {"slow": 1e-5, "fast": 1e-5}), (tiny / "wide.webm", {"slow": 1.01 * level, "fast": 2.01 * level})):
        blob = path.read_bytes()
        frames, fast_pos, slow_pos = decode_plan(blob, cfg, CLIPS)
        got = run_serialized(
            pipe,
            {"VIDEO": np.frombuffer(blob, np.uint8)[None], "FRAMES": frames[None], "FAST_POS": fast_pos[None], "SLOW_POS": slow_pos[None]},
            ["SLOW", "FAST"],
        )
        video = _probe(str(path), 0)[0]
        batch = next(
            iter(
                ClipLoader(
                    multiview_plan([video], cfg, CLIPS), cfg, "test", FeedSpec(batch_size=8, device="cpu", num_crops=CROPS), videos=[video]
                )
            )
        )
        for name in ("slow", "fast"):
            ref = batch[name].contiguous().numpy()
            assert got[name.upper()][0].shape == ref.shape  # views crop-major, N,C,T,H,W
            diff = np.abs(got[name.upper()][0] - ref)
            # 64x80: no resize, identical; 72x96: DALI's and torch's bilinear resize round differently, by at most a grey level
            assert diff.max() <= tol[name] and diff.mean() < 2e-3, (path.name, name, diff.max(), diff.mean())


def _bench(server, tiny, protocol, models, *extra, timeout=240):
    out = tiny / f"bench-{protocol}-{'-'.join(models)}"
    url = server.http_url if protocol == "http" else server.grpc_url
    args = ["bench", "serve", url, "--protocol", protocol, "--metrics-url", server.metrics_url, "--out", out, "--parity-samples", 2, *extra]
    for m in models:
        args += ["--model", m]
    r = _slowfast(*args, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((out / "result.json").read_text())


def _eval_top1(tiny, n):
    """Per-video top-1 as `slowfast eval` computes it (training.evaluate), in this (numpy 2) environment."""
    from slowfast_trt.data.manifest import read_manifest, to_videos
    from slowfast_trt.training.evaluate import evaluate_engine

    videos = to_videos(read_manifest(tiny / "data" / "manifest.csv"))[:n]
    feed = FeedSpec(device="cpu", batch_size=4, num_clips=CLIPS, num_crops=CROPS)
    r = evaluate_engine(engines.load(tiny / "tiny.safetensors", device="cpu"), videos, feed)
    return r["predictions"][f"{CLIPS}x{CROPS}"]


def test_clips_and_videos_over_http_match_the_local_engine_and_load_test(server, tiny):
    r = _bench(
        server,
        tiny,
        "http",
        ["tiny_py", "tiny_video_py", "tiny_video_cpu"],
        "--concurrency",
        "4",
        "--duration",
        1,
        "--videos",
        tiny / "data" / "manifest.csv",
        "--artifact",
        tiny / "tiny.safetensors",
    )
    assert r["aborted"] is None and r["server"]["version"].startswith("2.51")
    assert [(x["model"], x["concurrency"]) for x in r["rows"]] == [(m, 4) for m in ("tiny_py", "tiny_video_py", "tiny_video_cpu")]
    for row in r["rows"]:
        assert row["errors"] == 0 and row["requests"] >= 1 and row["requests_per_s"] > 0
        assert row["server"]["server_requests"] == row["requests"]  # Triton's statistics saw the same requests
        assert row["metrics"]["requests"] == row["requests"]  # and so did /metrics
    for m in ("tiny_py", "tiny_video_py"):
        p = r["parity"][m]
        assert p["checked"] and p["max_abs_diff"] < 1e-5 and p["top1_agreement"] == 1.0, p
    assert r["parity"]["tiny_video_py"]["kind"] == "videos" and r["parity"]["tiny_py"]["kind"] == "clips"
    # The ensemble's preprocessing is the serialized DALI graph (no resize at 64x80: the same views) + BLS to the engine.
    ens = r["parity"]["tiny_video_cpu"]
    assert ens["max_abs_diff"] < 1e-5 and ens["top1_agreement"] == 1.0, ens
    # ... and the served per-video top-1 is slowfast eval's.
    assert r["parity"]["tiny_video_py"]["server_top1"] == _eval_top1(tiny, len(r["parity"]["tiny_video_py"]["server_top1"]))


def test_clips_and_videos_over_grpc_match_the_local_engine(server, tiny):
    r = _bench(
        server,
        tiny,
        "grpc",
        ["tiny_py", "tiny_video_py"],
        "--concurrency",
        "2",
        "--duration",
        1,
        "--videos",
        tiny / "data" / "manifest.csv",
        "--artifact",
        tiny / "tiny.safetensors",
    )
    assert r["aborted"] is None and all(x["errors"] == 0 and x["requests"] >= 1 for x in r["rows"])
    for m in ("tiny_py", "tiny_video_py"):
        p = r["parity"][m]
        assert p["max_abs_diff"] < 1e-5 and p["top1_agreement"] == 1.0, p


def test_dynamic_batching_off_and_back_on(server, tiny):
    from slowfast_trt.serving.server import http_get

    args = ("--concurrency", "4", "--duration", 1, "--batching", "off,on")
    r = _bench(server, tiny, "http", ["tiny_py"], *args, "--control-token-file", tiny / "control.token")
    rows = {x["batching"]: x for x in r["rows"]}
    assert set(rows) == {"on", "off"} and all(x["errors"] == 0 for x in rows.values())
    assert rows["off"]["server"]["avg_batch"] == 1.0  # reloaded without dynamic batching: one request per execution
    status, body = http_get(f"{server.http_url}/v2/models/tiny_py/config")
    assert status == 200 and json.loads(body)["dynamic_batching"]["preferred_batch_size"] == [4, 8]  # the repository's config again


def test_bad_requests_get_named_errors_and_the_server_keeps_serving(server, tiny, triton_env):
    video = sorted((tiny / "data" / "videos").rglob("*.webm"))[0]
    r = subprocess.run(
        [
            str(triton_env.python),
            str(ROOT / "tests" / "serving_checks.py"),
            server.http_url,
            server.grpc_url,
            "tiny_py",
            "tiny_video_py",
            "tiny_video_cpu",
            str(video),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env=triton_env.client_env() | {"PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for protocol in ("http", "grpc"):
        e = res[protocol]
        assert "unexpected shape for input 'slow'" in e["wrong_shape"], e["wrong_shape"]
        assert "slow" in e["wrong_dtype"] and "FP64" in e["wrong_dtype"], e["wrong_dtype"]
        assert "fast" in e["missing_input"], e["missing_input"]
        assert "no_such_model" in e["unknown_model"] and ("unknown model" in e["unknown_model"] or "not found" in e["unknown_model"]), e[
            "unknown_model"
        ]
        for m in ("tiny_video_py", "tiny_video_cpu"):
            assert "VIDEO" in e[f"garbage_video:{m}"] and "not a decodable video" in e[f"garbage_video:{m}"], e[f"garbage_video:{m}"]
            assert "not a decodable video" in e[f"empty_video:{m}"], e[f"empty_video:{m}"]
        assert e["good_after"] and all(e["good_video_after"].values())
    assert server.alive()


def _raw(url: str, path: str, body: bytes = b"{}", content_type: str = "application/json", headers: dict | None = None):
    """(status, body) of a raw HTTP POST; status 0 when the connection broke."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{url}{path}", data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


# A load request that plants code: a model.py override the Python backend would run inside the server.
PLANTED = json.dumps(
    {"parameters": {"config": "{}", "file:1/model.py": base64.b64encode(b"import os\nos.system('touch /tmp/planted')\n").decode()}}
).encode()


def _control_checks(triton_env, http_url: str, grpc_url: str, *token: str) -> dict:
    r = subprocess.run(
        [str(triton_env.python), str(ROOT / "tests" / "serving_checks.py"), "control", http_url, grpc_url, "tiny_py", *token],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=triton_env.client_env() | {"PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_model_control_needs_the_token_over_raw_http_and_tritonclient(server, triton_env):
    """Issue 29, class 1: any local process could load (with a planted model.py) and unload models."""
    from slowfast_trt.serving.server import CONTROL_HEADER, http_get

    for path, body, headers in (
        ("/v2/repository/models/tiny_py/unload", b"{}", None),
        ("/v2/repository/models/tiny_py/load", PLANTED, None),
        ("/v2/repository/models/tiny_py/unload", b"{}", {CONTROL_HEADER: "not-the-token"}),
        ("/v2/repository/index", b"{}", None),
    ):
        status, answer = _raw(server.http_url, path, body, headers=headers)
        assert status == 403 and b"restricted" in answer, (path, status, answer)
    assert _raw(server.http_url, "/v2/repository/index", headers=server.control_headers)[0] == 200
    res = _control_checks(triton_env, server.http_url, server.grpc_url, server.token)
    for protocol in ("http", "grpc"):
        e = res[protocol]
        for case in ("load", "load_planted_file", "unload", "unload_wrong_token"):
            assert "restricted" in e[case] and CONTROL_HEADER in e[case], (protocol, case, e[case])
        assert e["index_with_token"] == "no error" and e["ready_after"], e
    assert http_get(f"{server.http_url}/v2/models/tiny_py/ready")[0] == 200


def _start_serve(repo, *extra: str):
    """`slowfast serve REPO --model tiny_py` on free ports; (process, http port, stdout lines up to 'Ctrl-C', stderr lines
    (filled by a thread as they come))."""
    from slowfast_trt.serving.server import free_ports

    h, g, m = free_ports(3)
    cmd = [sys.executable, "-m", "slowfast_trt", "serve", str(repo), "--model", "tiny_py"]
    p = subprocess.Popen(
        [*cmd, "--http-port", str(h), "--grpc-port", str(g), "--metrics-port", str(m), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(iter(p.stderr.readline, "")), daemon=True).start()
    lines = []
    deadline = time.time() + 180
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith("Ctrl-C"):
            break
    assert lines and lines[-1].startswith("Ctrl-C"), (lines, err)
    return p, (h, g, m), lines, err


def _children(pid: int, name: str) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            comm, ppid = fields[0].split("(", 1)[1], int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and comm == name:
            out.append(int(stat.parent.name))
    return out


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _gone(pid: int, within: float) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]:
            return True
        time.sleep(0.2)
    return False


def test_serve_refuses_model_control_by_default_survives_a_crashing_request_and_dies_with_its_parent(repo, triton_env):
    """Issue 29, class 1: model control open to all; a form-encoded request of a few MB (SIGSEGV in Triton 2.51) reported
    as 'Failed to initialize NVML' and not recovered; SIGKILL of `slowfast serve` left tritonserver holding the ports."""
    from slowfast_trt.serving.server import http_get, port_free

    p, (h, g, m), lines, err = _start_serve(repo)
    triton = None
    try:
        url = f"http://127.0.0.1:{h}"
        assert "model control: none (no client can load or unload models)" in lines
        (triton,) = _children(p.pid, "tritonserver")
        # Model control is off: load (with a planted model.py) and unload are refused, raw and through tritonclient.
        assert _raw(url, "/v2/repository/models/tiny_py/unload")[0] == 403
        assert _raw(url, "/v2/repository/models/tiny_py/load", PLANTED)[0] == 403
        res = _control_checks(triton_env, url, f"127.0.0.1:{g}")
        assert all("restricted" in res[proto][case] for proto in ("http", "grpc") for case in ("load", "load_planted_file", "unload")), res
        assert http_get(f"{url}/v2/models/tiny_py/ready")[0] == 200
        # A form-encoded infer request of 4 MB (curl's and urllib's default content type) crashes tritonserver 2.51 ...
        status, _ = _raw(url, "/v2/models/tiny_py/infer", b"x" * (4 << 20), content_type="application/x-www-form-urlencoded")
        deadline = time.time() + 180
        while status == 0 and time.time() < deadline and not any("serving again" in ln for ln in err) and p.poll() is None:
            time.sleep(0.2)
        text = "".join(err)
        if status == 0:  # the connection broke: the server crashed; `slowfast serve` names the real reason and serves again
            assert "killed by SIGSEGV" in text and "NVML" not in text, text
            assert "serving again" in text, text
            (triton,) = _children(p.pid, "tritonserver")
        assert p.poll() is None and http_get(f"{url}/v2/models/tiny_py/ready")[0] == 200, text
        # SIGKILL of `slowfast serve`: its tritonserver goes with it and frees the ports.
        p.kill()
        p.wait(10)
        assert _gone(triton, 60), f"tritonserver {triton} outlived its slowfast serve"
        deadline = time.time() + 60  # its backend stubs notice their parent is gone and exit too
        while time.time() < deadline and not (_group_gone(triton) and all(port_free(port) for port in (h, g, m))):
            time.sleep(0.5)
        assert _group_gone(triton) and all(port_free(port) for port in (h, g, m)), [_children(triton, "triton_python_backend_stub")]
    finally:
        if p.poll() is None:
            p.kill()
        if triton is not None and not _group_gone(triton):  # only when the test failed: never leave one behind
            os.killpg(triton, signal.SIGKILL)


def test_serve_command_refuses_a_busy_port(repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _slowfast("serve", repo, "--http-port", port, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: port {port} (http) on 127.0.0.1 is busy; stop what uses it or pass --http-port with a free port"
    ]


def test_serve_command_starts_prints_urls_and_stops_on_ctrl_c(repo, triton_env, tmp_path):
    """With --model-control explicit: the token file (0600) is written, works, and is deleted when the server stops."""
    from slowfast_trt.serving.server import control_headers, http_get, read_token

    token_file = tmp_path / "control.token"
    p, (h, g, m), lines, err = _start_serve(repo, "--model-control", "explicit", "--control-token-file", str(token_file))
    try:
        assert f"HTTP    http://127.0.0.1:{h}" in lines and f"gRPC    127.0.0.1:{g}" in lines, (lines, err)
        assert lines[0].startswith("ready in ") and "tiny_py" in lines[0]
        assert any(ln.startswith("model control: explicit") and str(token_file) in ln for ln in lines), lines
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert http_get(f"http://127.0.0.1:{h}/v2/models/tiny_py/ready")[0] == 200
        assert http_get(f"http://127.0.0.1:{m}/metrics")[0] == 200
        url = f"http://127.0.0.1:{h}"
        assert _raw(url, "/v2/repository/index")[0] == 403
        assert _raw(url, "/v2/repository/index", headers=control_headers(read_token(token_file), "http"))[0] == 200
        p.send_signal(signal.SIGINT)
        p.wait(60)  # stderr is read by _start_serve's thread
        assert p.returncode == 0 and "stopped" in p.stdout.read()
        assert http_get(f"http://127.0.0.1:{h}/v2/health/live", 1.0)[0] == 0  # nothing answers any more
        assert not token_file.exists()
    finally:
        if p.poll() is None:
            p.kill()


def test_killing_the_server_mid_load_test_ends_the_bench_with_one_line(server, tiny):
    """It kills the module's server (the `server` fixture starts another for the tests after it)."""
    from slowfast_trt.serving.server import http_get

    out = tiny / "bench-killed"
    url = server.http_url
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slowfast_trt",
            "bench",
            "serve",
            url,
            "--model",
            "tiny_py",
            "--concurrency",
            "4",
            "--duration",
            "60",
            "--metrics-url",
            server.metrics_url,
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:

        def served() -> int:
            status, body = http_get(f"{url}/v2/models/tiny_py/stats")
            return json.loads(body)["model_stats"][0]["inference_stats"]["success"]["count"] if status == 200 else 0

        start, deadline = served(), time.time() + 120
        while served() < start + 5 and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert p.poll() is None, p.stderr.read()
        server.kill()
        t0 = time.time()
        stdout, stderr = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
    assert time.time() - t0 < 60  # ends promptly, no hang
    assert p.returncode == 2
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "stopped answering during tiny_py (batching on, concurrency 4)" in errors[0], stderr
    r = json.loads((out / "result.json").read_text())
    assert r["aborted"] and r["rows"][-1]["requests"] >= 5 and "aborted" in r["rows"][-1]
    assert "**Aborted:**" in (out / "serve.md").read_text()


def test_a_ready_triton_venv_is_used_from_a_read_only_checkout(triton_env, read_only_checkout, tmp_path):
    """The whole path: the stamped venv found, its lock and backend directory in the user cache, nothing written in
    the checkout (after `triton_env` built the checkout's venv)."""
    from slowfast_trt.serving import env

    ready = ROOT / ".venv-triton"
    assert env._stamped(ready) is not None, "triton_env builds the checkout's venv"
    link = tmp_path / "cache" / "slowfast-trt" / "venv-triton"
    link.parent.mkdir(parents=True)
    link.symlink_to(ready)
    got = env.ensure_env(lambda s: None)
    assert got.venv == link and got.tritonserver.exists()
    assert (tmp_path / "cache" / "slowfast-trt" / ".venv-triton.lock").exists()
