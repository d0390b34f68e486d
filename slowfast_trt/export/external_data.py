"""ONNX external data: the files beside a model that hold its large tensors (any model over protobuf's 2 GB).

A tensor stored outside the `.onnx` file names its file by a `location` relative to the model's folder. Such a
file is part of the artifact: `export triton` copies it with the model; a location that leaves the folder (an
absolute path, `..`, a symbolic link pointing out) is refused in one line, before anything reads it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.engines.sidecar import load_structure


def _tensors(graph) -> Iterator:
    """Every tensor of `graph` and its subgraphs: initializers, sparse initializers, constant attributes."""
    yield from graph.initializer
    for s in graph.sparse_initializer:
        yield s.values
        yield s.indices
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from _tensors(a.g)
            for g in a.graphs:
                yield from _tensors(g)


def external_data_files(onnx_path: str | os.PathLike) -> list[str]:
    """The locations (relative to the model's folder) of the files holding `onnx_path`'s external tensors, sorted;
    a one-line SlowFastError when one is missing or lies outside that folder."""
    import onnx  # lazy: onnx, optional (extra [export])

    path = Path(onnx_path)
    m = load_structure(path)
    folder = path.resolve().parent
    found = set()
    for t in _tensors(m.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = {e.key: e.value for e in t.external_data}.get("location", "")
        shown = loc[:120] + ("..." if len(loc) > 120 else "")
        parts = PurePosixPath(loc.replace("\\", "/")).parts
        target = (folder / loc).resolve()
        if not loc or os.path.isabs(loc) or ".." in parts or not target.is_relative_to(folder):
            raise SlowFastError(
                f"{path}: tensor {t.name[:80]!r} keeps its data in {shown!r}, outside the model's folder {folder}; "
                "refused (it could be any file): save the data file beside the model (onnx.save_model(..., location='NAME'))"
            )
        if not target.is_file():
            raise SlowFastError(
                f"{path}: tensor {t.name[:80]!r} keeps its data in {shown!r}, which is missing beside the model; copy it there"
            )
        found.add(str(PurePosixPath(*parts)))
    return sorted(found)
