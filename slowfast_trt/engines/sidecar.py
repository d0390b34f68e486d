"""The JSON sidecar that travels beside every exported artifact: everything needed to feed and trust it.

A sidecar names the model config (preset, alpha/tau/T, crop, mean/std, sampling convention), the input
names and shapes, the precision, calibration settings, the source checkpoint's hash, library versions,
and for TensorRT plans the TensorRT version and GPU. Engines check inputs against it before running.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from slowfast_trt.common.bounds import cut, short
from slowfast_trt.common.environment import versions
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_text
from slowfast_trt.model.config import SlowFastConfig, type_problem
from slowfast_trt.model.footprint import check_model_fits
from slowfast_trt.model.inputs import input_shapes

SIDECAR_VERSION = 1
# The type of every field that readers use (`config.type_problem`); fields not listed are notes for people.
FIELD_TYPES: dict[str, Any] = {
    "sidecar_version": int,
    "kind": str,
    "precision": str,
    "preset": str,
    "config": dict[str, Any],
    "crop_size": int,
    "mean": tuple[float, ...],
    "std": tuple[float, ...],
    "sampling": str,
    "fast_input": str,
    "inputs": dict[str, dict[str, Any]],
    "input_names": tuple[str, ...],
    "output": dict[str, Any],
    "batch": int | str,
    "source_checkpoint": str | None,
    "source_sha256": str | None,
    "calibration": dict[str, Any],
    "tensorrt": dict[str, Any],
    "tensorrt_check": dict[str, Any],
    "parity": dict[str, Any],
}
INPUT_TYPES: dict[str, Any] = {"shape": tuple[int | str, ...], "dtype": str}
OUTPUT_TYPES: dict[str, Any] = {"name": str, "kind": str, "num_classes": int, "multilabel": bool}


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """`model.onnx` -> `model.onnx.json`."""
    p = Path(artifact)
    return p.with_name(p.name + ".json")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (the source checkpoint's identity in sidecars)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def make_sidecar(
    cfg: SlowFastConfig,
    *,
    kind: str,
    precision: str,
    size: int,
    batch: int | str,
    outputs: str,
    source: str | None = None,
    source_sha256: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar dict for an artifact of `kind` ("onnx" | "onnx-int8" | "tensorrt") built from `cfg`."""
    shapes = input_shapes(cfg, size=size, batch=1)
    inputs: dict[str, dict[str, Any]] = {
        name: {"shape": ["batch" if batch == "dynamic" else batch, *shape[1:]], "dtype": "float32"} for name, shape in shapes.items()
    }
    if cfg.detection:  # the number of boxes is free whatever the batch, and so is the clips' H x W
        inputs["boxes"]["shape"][0] = "boxes"
        for name in cfg.pathways:
            inputs[name]["shape"][3:] = ["height", "width"]
    return {
        "sidecar_version": SIDECAR_VERSION,
        "kind": kind,
        "precision": precision,
        "preset": cfg.name,
        "config": cfg.to_dict(),
        "crop_size": size,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "sampling": cfg.sampling,
        "fast_input": cfg.fast_input,
        "inputs": inputs,
        "input_names": list(shapes),
        "output": {"name": "scores", "kind": outputs, "num_classes": cfg.num_classes, "multilabel": cfg.multilabel},
        "batch": batch,
        "source_checkpoint": source,
        "source_sha256": source_sha256,
        "versions": versions(),
        **(extra or {}),
    }


def write_sidecar(artifact: str | os.PathLike, sidecar: dict[str, Any]) -> Path:
    """Write the sidecar beside `artifact`, atomically."""
    path = sidecar_path(artifact)
    atomic_write_text(path, json.dumps(sidecar, indent=2, sort_keys=False) + "\n")
    return path


def read_sidecar(artifact: str | os.PathLike) -> dict[str, Any]:
    """Read and sanity-check the sidecar of `artifact`; a missing or malformed one is a clear error."""
    path = sidecar_path(artifact)
    if not path.exists():
        raise SlowFastError(
            f"{artifact}: no sidecar {path.name} beside it; re-export with `slowfast export` so the engine knows its inputs"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SlowFastError(f"{path}: unreadable sidecar ({e}); re-export the artifact") from None
    if not isinstance(data, dict):
        raise SlowFastError(f"{path}: the sidecar is JSON {type(data).__name__}, not an object; re-export the artifact")
    missing = [k for k in ("kind", "config", "inputs", "input_names", "output", "precision") if k not in data]
    if missing:
        raise SlowFastError(f"{path}: sidecar lacks {missing}; re-export the artifact")
    problem = _type_problem(data)
    if problem:
        raise SlowFastError(f"{path}: invalid sidecar: {problem}; re-export the artifact")
    try:
        cfg = sidecar_config(data)
    except (SlowFastError, TypeError, ValueError, KeyError) as e:
        raise SlowFastError(
            f"{path}: the sidecar's model config is invalid ({cut(str(e).splitlines()[0])}); re-export the artifact"
        ) from None
    check_model_fits(cfg, f"the config of sidecar {path}", batch=data["batch"] if isinstance(data["batch"], int) else 1,
                     sources={"batch": f"the batch of sidecar {path}"})  # fmt: skip
    expected = cfg.input_names
    if list(data["input_names"]) != expected or sorted(data["inputs"]) != sorted(expected):
        raise SlowFastError(
            f"{path}: the sidecar names inputs {short(data['input_names'])} but its {cfg.arch} model takes {expected}; "
            "the sidecar does not belong to this artifact, re-export it"
        )
    return data


def _type_problem(data: dict[str, Any]) -> str | None:
    """The first field of a sidecar whose value has the wrong type or size, named by its path (`inputs.slow.shape`)."""
    top = next((p for k, t in FIELD_TYPES.items() if k in data and (p := type_problem(data[k], t, k))), None)
    if top:
        return top
    checks = [(v.get(k), t, f"inputs.{n[:20]}.{k}") for n, v in data["inputs"].items() for k, t in INPUT_TYPES.items()]
    checks += [(data["output"].get(k), t, f"output.{k}") for k, t in OUTPUT_TYPES.items()]
    if "profile" in data.get("tensorrt", {}):
        checks.append((data["tensorrt"]["profile"], dict[str, int], "tensorrt.profile"))
    problem = next((p for v, t, where in checks if (p := type_problem(v, t, where))), None)
    if problem is None and isinstance(data.get("batch"), str) and data["batch"] != "dynamic":
        problem = f"batch must be a positive integer or 'dynamic', not {short(data['batch'])}"
    return problem


def sidecar_config(sidecar: dict[str, Any]) -> SlowFastConfig:
    """The model config recorded in a sidecar, with the test crop at the artifact's input size (`crop_size`, the
    export's `--size`), so clips are sampled at the size the graph takes; detection graphs take any size."""
    cfg = SlowFastConfig.from_dict(sidecar["config"]).validate()
    size = sidecar.get("crop_size")
    if isinstance(size, int) and size != cfg.test_crop_size and not cfg.detection:
        cfg = cfg.replace(test_crop_size=size).validate()
    return cfg


def check_inputs(sidecar: dict[str, Any], shapes: dict[str, tuple[int, ...]], artifact: str = "engine") -> None:
    """Fail clearly when input tensors do not match the shapes the artifact was built for (batch aside)."""
    names = sidecar["input_names"]
    if sorted(shapes) != sorted(names):
        raise SlowFastError(f"{artifact} takes inputs {names}, got {sorted(shapes)}")
    for name in names:
        want = sidecar["inputs"][name]["shape"]
        got = list(shapes[name])
        # Named dims ("batch", "height", "width") are free; integer dims must match exactly.
        if len(got) != len(want) or any(isinstance(w, int) and g != w for g, w in zip(got, want)):
            raise SlowFastError(
                f"{artifact}: input '{name}' has shape {got} but the artifact expects {want} "
                f"(alpha={sidecar['config']['alpha']}, T={sidecar['config']['num_frames']}, crop={sidecar['crop_size']}); "
                "sample clips with the artifact's own config"
            )


def check_sampling(sidecar: dict[str, Any], sampling: str, artifact: str = "engine") -> None:
    """Fail when clips were sampled with another frame-index convention than the artifact's weights expect."""
    if sidecar.get("sampling") != sampling:
        raise SlowFastError(
            f"{artifact} expects clips sampled with the '{sidecar.get('sampling')}' convention, got '{sampling}'; "
            "decode clips with the artifact's own config (engine.config), or re-export from a model trained with this convention"
        )


def load_structure(onnx_path: str | os.PathLike):
    """The ONNX model without its external data (nothing outside the file is read); one line when it is not ONNX."""
    import onnx  # lazy: onnx, optional (extra [export])

    try:
        return onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends for a file that is not an ONNX model
        raise SlowFastError(
            f"{onnx_path}: not a readable ONNX model ({str(e).splitlines()[0][:200] or type(e).__name__}); re-export it"
        ) from None


def graph_inputs(onnx_path: str | os.PathLike) -> dict[str, list[int | str]]:
    """Input names and shapes of an ONNX graph (named or unknown dims as strings), without loading the weights."""
    m = load_structure(onnx_path)
    inits = {i.name for i in m.graph.initializer}
    return {
        i.name: [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in i.type.tensor_type.shape.dim]
        for i in m.graph.input
        if i.name not in inits
    }


def check_graph_inputs(graph: dict[str, list[int | str]], sidecar: dict[str, Any], artifact: str = "model") -> None:
    """Fail when a graph's inputs (names, rank, fixed dims) are not the ones its sidecar describes."""
    if sorted(graph) != sorted(sidecar["input_names"]):
        raise SlowFastError(
            f"{artifact}: the graph's inputs {sorted(graph)} do not match its sidecar {sidecar['input_names']}; "
            "export the model with `slowfast export onnx` (inputs 'slow', 'fast')"
        )
    for name, dims in graph.items():
        want = sidecar["inputs"][name]["shape"]
        if len(dims) != len(want) or any(isinstance(g, int) and isinstance(w, int) and g != w for g, w in zip(dims, want)):
            raise SlowFastError(
                f"{artifact}: input '{name}' of the graph has shape {dims} but its sidecar says {want}; "
                "the sidecar does not belong to this model, re-export it"
            )
