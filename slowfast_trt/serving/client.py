"""tritonclient helpers (run in Triton's venv): one client per protocol, clip and video requests, model facts.

Every call has a timeout, so a dead server ends a request with an error instead of a hang.
"""

from __future__ import annotations

import json

import numpy as np

from slowfast_trt.common.errors import SlowFastError

TIMEOUT_S = 60.0


def _url_for(url: str, protocol: str) -> str:
    u = url.split("://", 1)[-1].rstrip("/")
    return u


def make_client(url: str, protocol: str, timeout: float = TIMEOUT_S):
    """An HTTP or gRPC InferenceServerClient for `url` (host:port; an http:// prefix is dropped)."""
    if protocol == "http":
        import tritonclient.http as http  # lazy: tritonclient, only in Triton's venv

        return http.InferenceServerClient(_url_for(url, protocol), connection_timeout=timeout, network_timeout=timeout)
    if protocol == "grpc":
        import tritonclient.grpc as grpc  # lazy: tritonclient, only in Triton's venv

        return grpc.InferenceServerClient(_url_for(url, protocol))
    raise SlowFastError(f"--protocol must be http or grpc, got {protocol!r}")


def _module(protocol: str):
    if protocol == "http":
        import tritonclient.http as m  # lazy: tritonclient, only in Triton's venv
    else:
        import tritonclient.grpc as m  # lazy: tritonclient, only in Triton's venv
    return m


def model_config(client, protocol: str, model: str) -> dict:
    """The model's config as a dict (both protocols give the same keys)."""
    if protocol == "grpc":
        return client.get_model_config(model, as_json=True)["config"]
    return client.get_model_config(model)


def infer(
    client, protocol: str, model: str, inputs: dict[str, np.ndarray], outputs: list[str], timeout: float = TIMEOUT_S
) -> dict[str, np.ndarray]:
    """One request; numpy arrays out. Raises tritonclient's InferenceServerException on a server-side error."""
    m = _module(protocol)
    tensors = []
    for name, arr in inputs.items():
        dtype = (
            "BYTES"
            if arr.dtype == object
            else {
                np.dtype(np.float32): "FP32",
                np.dtype(np.uint8): "UINT8",
                np.dtype(np.int32): "INT32",
                np.dtype(np.int64): "INT64",
                np.dtype(np.float64): "FP64",
                np.dtype(np.float16): "FP16",
            }[arr.dtype]
        )
        t = m.InferInput(name, list(arr.shape), dtype)
        if protocol == "http":
            t.set_data_from_numpy(arr, binary_data=True)
        else:
            t.set_data_from_numpy(arr)
        tensors.append(t)
    outs = [m.InferRequestedOutput(o, binary_data=True) if protocol == "http" else m.InferRequestedOutput(o) for o in outputs]
    if protocol == "grpc":
        res = client.infer(model, tensors, outputs=outs, client_timeout=timeout)
    else:
        res = client.infer(model, tensors, outputs=outs, timeout=int(timeout * 1e6))
    return {o: res.as_numpy(o) for o in outputs}


def is_video_model(config: dict) -> bool:
    return [i["name"] for i in config["input"]] == ["VIDEO"]


def video_request(blob: bytes) -> dict[str, np.ndarray]:
    return {"VIDEO": np.frombuffer(blob, dtype=np.uint8).reshape(1, -1)}


def params(config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}


def dump(obj) -> str:
    return json.dumps(obj, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
