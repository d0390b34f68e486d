"""Reading pickled checkpoints without executing anything from them.

PyTorch files (`.pyth`, `.pt`) go through `torch.load(weights_only=True)`, never `weights_only=False`; the only
extra global admitted is yacs' `CfgNode` (PySlowFast stores its config as one), replaced by an inert stand-in
that yields a plain OrderedDict. Caffe2 `.pkl` files go through an unpickler whose `find_class` admits only
numpy's array reconstruction and plain containers. Anything else is refused with a one-line error naming it.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import pickle
import pickletools
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slowfast_trt.common.errors import SlowFastError

# The first object of a legacy (non-zip) torch.save file.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _InertCfgNode:
    """Stands in for `yacs.config.CfgNode` while unpickling: builds a plain OrderedDict of the config's items.

    torch's restricted unpickler creates allowlisted classes with `cls.__new__(cls)`, fills them with SETITEMS
    and BUILD; returning an OrderedDict here means nothing of yacs (or any other code) ever runs.
    """

    def __new__(cls, *args, **kwargs):  # noqa: D102 - see the class docstring
        return OrderedDict()


_TORCH_STANDINS: list = [(_InertCfgNode, "yacs.config.CfgNode")]


def _refused_global(message: str) -> str | None:
    m = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"unrecognized function (\S+)", message)
    return m.group(1).rstrip(".,") if m else None


def load_torch_file(path: str | os.PathLike) -> Any:
    """`torch.load` a PyTorch checkpoint with `weights_only=True` (plus the yacs stand-in) onto the CPU."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_TORCH_STANDINS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        name = _refused_global(str(e))
        if name:
            raise SlowFastError(
                f"{path}: refused to unpickle {name}: a checkpoint needs only tensors, numbers, strings and containers "
                "(nothing from the file was executed); re-save the weights alone, e.g. torch.save({'model_state': state_dict})"
            ) from None
        lines = str(e).strip().splitlines()
        detail = next((line for line in reversed(lines) if line.strip() and "documentation" not in line), "unreadable pickle")
        raise SlowFastError(f"{path}: not a loadable PyTorch checkpoint ({detail.strip()})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SlowFastError(f"{path}: truncated or corrupt PyTorch file ({first})") from None


# ----- Caffe2 .pkl: numpy arrays and plain containers only -----

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "numpy", "dtype"),
}
# Plain data helpers that Python-3 pickles of arrays and dicts use: bytes re-encoding, ordered dicts.
_PLAIN_GLOBALS = {("_codecs", "encode"), ("collections", "OrderedDict")}


def _bounded_reconstruct(reconstruct, limit: int):
    """numpy's `_reconstruct`, refusing arrays larger than `limit` bytes (no array of a file outgrows the file)."""

    def bounded(subtype, shape, dtype, *rest):
        try:
            dims = [int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,))]
            nbytes = np.dtype(dtype).itemsize * math.prod(max(d, 0) for d in dims)
        except (TypeError, ValueError):
            nbytes = 0  # let numpy report what is wrong with the arguments
        if nbytes > limit:
            raise pickle.UnpicklingError(f"an array of {nbytes} bytes in a {limit}-byte file")
        return reconstruct(subtype, shape, dtype, *rest)

    return bounded


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dtypes, scalars and plain containers, and nothing else; arrays
    may not be larger than `limit` bytes (the file's size)."""

    def __init__(self, file, *, limit: int, **kwargs):
        super().__init__(file, **kwargs)
        self.limit = limit

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            new_mod, old_mod, attr = _NUMPY_GLOBALS[(module, name)]
            try:
                found = getattr(importlib.import_module(new_mod), attr)
            except ImportError:  # numpy < 2 has only numpy.core
                found = getattr(importlib.import_module(old_mod), attr)
            return _bounded_reconstruct(found, self.limit) if attr == "_reconstruct" else found
        if (module, name) in _PLAIN_GLOBALS:
            return getattr(importlib.import_module(module), name)
        raise SlowFastError(
            f"refused to unpickle {module}.{name}: Caffe2 .pkl checkpoints hold only numpy arrays (nothing from the file was executed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise SlowFastError("refused a persistent reference in the pickle: Caffe2 .pkl checkpoints hold only numpy arrays")


def _check_lengths(data: bytes) -> None:
    """Walk the opcodes without building anything; refuse a declared length longer than the data left.

    Any other oddity stops the walk and is left to the unpickler, which meets the same opcode (it decodes
    strings the same way) and so fails there, before any later, possibly huge, length is acted on.
    """
    try:
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
    except ValueError as e:
        if re.match(r"expected \d+ bytes in a", str(e)):
            raise pickle.UnpicklingError(f"a length field claims more than the file holds ({e})") from None


def load_numpy_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a Caffe2 `.pkl` (Python 2 or 3) admitting only numpy arrays and plain containers.

    Returns the first pickled object. A legacy torch.save file starts with its magic number; the caller
    recognises it and reads the file with `load_torch_file` instead. Memory is bounded by the file's size: the
    opcodes are walked first (pickletools reads each declared length only as far as the data goes), so a
    length field claiming gigabytes in a tiny file is refused before the unpickler allocates it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        _check_lengths(data)
        return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1", limit=len(data)).load()
    except SlowFastError as e:
        raise SlowFastError(f"{path}: {e}") from None
    except (
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        MemoryError,
        OverflowError,
    ) as e:
        raise SlowFastError(f"{path}: truncated or corrupt pickle ({type(e).__name__}: {str(e)[:120] or 'no detail'})") from None


def check_numeric_array(name: str, value: Any, path: str | os.PathLike) -> np.ndarray:
    """The blob `name` as a numeric numpy array, or a one-line error saying what it is instead."""
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        kind = f"array of {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
        raise SlowFastError(f"{path}: blob {name!r} is a {kind}, not a numeric array")
    return value
