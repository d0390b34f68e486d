"""The project's checkpoint format: one safetensors file holding the weights, the model config and, optionally,
the training state, written atomically.

Layout of the file:
- tensors: the network's state dict under its own names, and the training state's tensors under
  `__training_state__/<n>`;
- metadata (str -> str): `format` ("slowfast-trt"), `format_version`, `config` (SlowFastConfig.to_dict() as JSON),
  `checkpoint_id`, `created`, `torch`, optional `extra` (JSON) and `training_state` (the state's structure as
  JSON, its tensors replaced by references).

Weights and training state live in one file, so one atomic rename (temporary file, fsync, rename) replaces both
together: a crash leaves either the previous checkpoint or the new one, never a mix or half a file. Nothing is
unpickled on load.
"""

from __future__ import annotations

import datetime
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from slowfast_trt.common.bounds import cut
from slowfast_trt.common.device import resolve_device
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.common.io import atomic_write_bytes
from slowfast_trt.model.config import SlowFastConfig
from slowfast_trt.model.footprint import check_model_fits
from slowfast_trt.model.statedict import build_with_state

FORMAT = "slowfast-trt"
FORMAT_VERSION = 1
STATE_PREFIX = "__training_state__/"


# ----- training state <-> JSON + tensors -----


def _encode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """JSON-able form of `obj`; tensors and numpy arrays move to `tensors` and are referenced by key."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        is_np = isinstance(obj, np.ndarray)
        t = torch.from_numpy(np.ascontiguousarray(obj)) if isinstance(obj, np.ndarray) else obj
        if t.layout != torch.strided or t.is_complex():
            raise SlowFastError(f"training_state{where}: {t.layout}/{t.dtype} tensors cannot be stored in a checkpoint")
        key = f"{STATE_PREFIX}{len(tensors)}"
        tensors[key] = t.detach().to("cpu", copy=True).contiguous()
        return {"$ndarray" if is_np else "$tensor": key}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, tensors, f"{where}[{k!r}]") for k, v in obj.items()}
        return {"$dict": [[_encode(k, tensors, f"{where} key"), _encode(v, tensors, f"{where}[{k!r}]")] for k, v in obj.items()]}
    raise SlowFastError(
        f"training_state{where} is a {type(obj).__name__}; checkpoints hold tensors, numpy arrays, numbers, strings, "
        "None and lists/tuples/dicts of them (store other objects' state_dict() instead)"
    )


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "$tensor" in obj:
            return tensors[obj["$tensor"]]
        if "$ndarray" in obj:
            return tensors[obj["$ndarray"]].numpy()
        if "$tuple" in obj:
            return tuple(_decode(v, tensors) for v in obj["$tuple"])
        if "$dict" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["$dict"]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


# ----- save / load -----


def save(net: nn.Module, path: str | os.PathLike, training_state: dict | None = None, extra_metadata: dict | None = None) -> Path:
    """Write `net` (a SlowFast module with `.config`), its config and optional training state to `path`, atomically.

    `training_state` (optimizer, grad-scaler and scheduler state_dicts, epoch, step, RNG states, ...) may hold
    tensors, numpy arrays, numbers, strings, None and lists/tuples/dicts of them (int dict keys survive);
    `load(path, with_state=True)` gives it back. `extra_metadata` is any JSON-able dict kept beside the config.
    Returns the path written.
    """
    cfg = getattr(net, "config", None)
    if not isinstance(cfg, SlowFastConfig):
        raise SlowFastError(f"save() needs a SlowFast network with a .config; got {type(net).__name__}")
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(cfg.to_dict()),
        "checkpoint_id": uuid.uuid4().hex,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    try:
        if extra_metadata is not None:
            metadata["extra"] = json.dumps(extra_metadata)
    except (TypeError, ValueError) as e:
        raise SlowFastError(f"extra_metadata must be JSON-serialisable: {e}") from None
    if training_state is not None:
        if not isinstance(training_state, dict):
            raise SlowFastError(f"training_state must be a dict, got {type(training_state).__name__}")
        state_tensors: dict[str, torch.Tensor] = {}
        metadata["training_state"] = json.dumps(_encode(training_state, state_tensors, ""))
        tensors.update(state_tensors)
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))
    return path


def read_info(path: str | os.PathLike) -> dict:
    """The checkpoint's metadata without its tensors: config (a SlowFastConfig), format version, id, extra, ..."""
    path = Path(path)
    meta = _read_metadata(path)
    info: dict[str, Any] = {k: v for k, v in meta.items() if k not in ("config", "extra", "training_state")}
    info["config"] = _config_of(meta, path)
    info["extra"] = json.loads(meta["extra"]) if "extra" in meta else None
    info["has_training_state"] = "training_state" in meta
    return info


def _read_metadata(path: Path) -> dict[str, str]:
    if not path.exists():
        raise SlowFastError(f"checkpoint {path} not found")
    try:
        with safetensors.safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (safetensors.SafetensorError, OSError) as e:
        raise SlowFastError(f"{path}: not a readable safetensors checkpoint (truncated or not safetensors: {e})") from None
    if meta.get("format") != FORMAT:
        raise SlowFastError(
            f"{path}: a safetensors file without a SlowFast-TRT config; convert plain weights with "
            "`slowfast convert SRC DST` (model.convert), which infers the architecture"
        )
    version = meta.get("format_version", "?")
    if version != str(FORMAT_VERSION):
        raise SlowFastError(f"{path}: checkpoint format version {version}, this version reads {FORMAT_VERSION}; use a matching release")
    return meta


def _config_of(meta: dict[str, str], path: Path) -> SlowFastConfig:
    """The checkpoint's model config, checked by type, by value and against the memory it would make us allocate."""
    try:
        cfg = SlowFastConfig.from_dict(json.loads(meta["config"])).validate()
    except (KeyError, ValueError, TypeError) as e:
        raise SlowFastError(f"{path}: the checkpoint's config is unreadable ({cut(str(e))})") from None
    except SlowFastError as e:
        raise SlowFastError(f"{path}: {e}") from None
    return check_model_fits(cfg, f"the config of checkpoint {path}")


def load(path: str | os.PathLike, device: str = "cpu", with_state: bool = False):
    """The network saved at `path` (built from its own config, weights loaded, in eval mode) on `device`.

    With `with_state=True` returns `(net, training_state)`, the state being None when none was saved.
    """
    path = Path(path)
    meta = _read_metadata(path)
    cfg = _config_of(meta, path)
    try:
        with safetensors.safe_open(str(path), "pt") as f:
            keys = list(f.keys())
            weights = {k: f.get_tensor(k) for k in keys if not k.startswith(STATE_PREFIX)}
            state_tensors = {k: f.get_tensor(k) for k in keys if k.startswith(STATE_PREFIX)} if with_state else {}
    except (safetensors.SafetensorError, OSError) as e:
        raise SlowFastError(f"{path}: corrupt checkpoint ({e})") from None
    net = build_with_state(cfg, weights, f"checkpoint {path}").to(resolve_device(device))
    if not with_state:
        return net
    state = None
    if "training_state" in meta:
        try:
            state = _decode(json.loads(meta["training_state"]), state_tensors)
        except (KeyError, ValueError) as e:
            raise SlowFastError(f"{path}: the training state is incomplete ({e})") from None
    return net, state
