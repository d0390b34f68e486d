"""Bad requests against a running server, run by tests/test_serving.py in Triton's venv (tritonclient needs numpy<2).

    python tests/serving_checks.py HTTP_URL GRPC_URL ENGINE_MODEL VIDEO_MODEL [VIDEO_MODEL ...] VIDEO_FILE

Prints JSON: for each protocol and case the server's error message (or "no error"), and whether a good request
still succeeds afterwards.
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


def main(argv: list[str]) -> int:
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
