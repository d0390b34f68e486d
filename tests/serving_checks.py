"""Bad requests against a running server, run by tests/test_serving.py in Triton's venv (tritonclient needs numpy<2).

    python tests/serving_checks.py HTTP_URL GRPC_URL ENGINE_MODEL VIDEO_MODEL [VIDEO_MODEL ...] VIDEO_FILE
    python tests/serving_checks.py control HTTP_URL GRPC_URL MODEL [TOKEN]

Prints JSON: for each protocol and case the server's error message (or "no error"), and whether a good request
still succeeds afterwards. `control`: model loading and unloading (with a `model.py` file override, the way code
would be planted) without the control header, with a wrong one and, given TOKEN, the repository index with it.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from slowfast_trt.serving.client import infer, make_client, model_config, video_request


def _error(fn) -> str:
    try:
        fn()
    except Exception as e:  # tritonclient.utils.InferenceServerException
        return str(e)
    return "no error"


def control(argv: list[str]) -> dict:
    http_url, grpc_url, model, *token = argv
    planted = {"file:1/model.py": b"import os\nos.system('touch /tmp/planted')\n"}
    out = {}
    for protocol, url in (("http", http_url), ("grpc", grpc_url)):
        c = make_client(url, protocol)
        key = ("triton-grpc-protocol-" if protocol == "grpc" else "") + "slowfast-control-token"
        wrong = {key: "not-the-token"}
        res = {
            "load": _error(lambda: c.load_model(model)),
            "load_planted_file": _error(lambda: c.load_model(model, config="{}", files=planted)),
            "unload": _error(lambda: c.unload_model(model)),
            "unload_wrong_token": _error(lambda: c.unload_model(model, headers=wrong)),
        }
        if token:
            res["index_with_token"] = _error(lambda: c.get_model_repository_index(headers={key: token[0]}))
        res["ready_after"] = bool(c.is_model_ready(model))
        out[protocol] = res
    return out


def main(argv: list[str]) -> int:
    if argv[0] == "control":
        print(json.dumps(control(argv[1:])))
        return 0
    http_url, grpc_url, engine, *videos, video_file = argv
    good_video = open(video_file, "rb").read()
    out = {}
    for protocol, url in (("http", http_url), ("grpc", grpc_url)):
        c = make_client(url, protocol)
        cfg = model_config(c, protocol, engine)
        dims = {i["name"]: [int(d) for d in i["dims"]] for i in cfg["input"]}
        good = {k: np.zeros((1, *d), np.float32) for k, d in dims.items()}
        wrong_shape = dict(good, slow=np.zeros((1, dims["slow"][0], dims["slow"][1] + 1, *dims["slow"][2:]), np.float32))
        wrong_dtype = dict(good, slow=good["slow"].astype(np.float64))
        garbage = {"VIDEO": np.frombuffer(b"this is not a video file" * 40, dtype=np.uint8).reshape(1, -1)}
        res = {
            "wrong_shape": _error(lambda: infer(c, protocol, engine, wrong_shape, ["scores"])),
            "wrong_dtype": _error(lambda: infer(c, protocol, engine, wrong_dtype, ["scores"])),
            "missing_input": _error(lambda: infer(c, protocol, engine, {"slow": good["slow"]}, ["scores"])),
            "unknown_model": _error(lambda: infer(c, protocol, "no_such_model", good, ["scores"])),
        }
        for v in videos:
            res[f"garbage_video:{v}"] = _error(lambda v=v: infer(c, protocol, v, garbage, ["SCORES"]))
            res[f"empty_video:{v}"] = _error(lambda v=v: infer(c, protocol, v, {"VIDEO": np.zeros((1, 0), np.uint8)}, ["SCORES"]))
        # ... and the server keeps serving
        res["good_after"] = infer(c, protocol, engine, good, ["scores"])["scores"].shape[0] == 1
        res["good_video_after"] = {v: infer(c, protocol, v, video_request(good_video), ["SCORES"])["SCORES"].shape[0] == 1 for v in videos}
        out[protocol] = res
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
