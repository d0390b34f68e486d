"""ONNX external data end to end: a model whose weights live in a file beside it is copied whole into a Triton
repository; data that points outside the model's folder is refused in one line by `export int8` and `export triton`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.engines.sidecar import sidecar_path
from slowfast_trt.export.onnx import export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("nvidia.dali")


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """The tiny export re-saved with every tensor in `tiny.onnx.data` (onnx's save_as_external_data), with its sidecar."""
    d = tmp_path_factory.mktemp("external")
    plain = export_onnx(model.build("slowfast_tiny_4x16", num_classes=4), d / "plain" / "tiny.onnx").path
    folder = d / "model"
    folder.mkdir()
    m = onnx.load(str(plain))
    onnx.save_model(
        m, str(folder / "tiny.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="tiny.onnx.data", size_threshold=0
    )
    shutil.copy2(sidecar_path(plain), sidecar_path(folder / "tiny.onnx"))
    assert (folder / "tiny.onnx.data").stat().st_size > (folder / "tiny.onnx").stat().st_size  # the weights really moved
    return folder / "tiny.onnx"


def _pointing_to(external, tmp_path, location: str):
    """A copy of the model in tmp_path/m whose external data is `location`."""
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    m = onnx.load(str(external), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save_model(m, str(folder / "tiny.onnx"))
    shutil.copy2(sidecar_path(external), sidecar_path(folder / "tiny.onnx"))
    return folder / "tiny.onnx"


def _one_line(r, *needles):
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_export_triton_copies_legitimate_external_data_and_the_repository_runs(external, tmp_path):
    """Issue 29, class 4: the repository was written without the data file, so Triton could not load the model."""
    r = CliRunner().invoke(main, ["export", "triton", str(external), "--out", str(tmp_path / "repo"), "--clips", "2", "--no-validate"])
    assert r.exit_code == 0, r.output
    native = tmp_path / "repo" / "tiny" / "1"
    assert (native / "tiny.onnx.data").read_bytes() == (external.parent / "tiny.onnx.data").read_bytes()
    assert (tmp_path / "repo" / "tiny_py" / "1" / "tiny.onnx.data").is_file()  # the Python-backend copy loads it too
    sess = ort.InferenceSession(str(native / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros([1 if isinstance(d, str) else d for d in i.shape], np.float32) for i in sess.get_inputs()}
    assert sess.run(None, feed)[0].shape == (1, 4)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_external_data_outside_the_models_folder_is_refused_in_one_line(external, tmp_path, where):
    """Issue 29, class 4: `export int8` gave a traceback and `export triton` copied such a model silently."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes((external.parent / "tiny.onnx.data").read_bytes())
    location = {"parent": "../secret.bin", "absolute": str(secret), "symlink": "link.bin"}[where]
    bad = _pointing_to(external, tmp_path, location)
    if where == "symlink":
        (bad.parent / "link.bin").symlink_to(secret)
    r = CliRunner().invoke(main, ["export", "triton", str(bad), "--out", str(tmp_path / "repo"), "--no-validate"])
    _one_line(r, str(bad), "outside the model's folder", "refused")
    assert not (tmp_path / "repo").exists()
    r = CliRunner().invoke(main, ["export", "int8", str(bad), "--calib", str(tmp_path / "none.csv"), "--out", str(tmp_path / "q.onnx")])
    _one_line(r, str(bad), "outside the model's folder")
    assert not (tmp_path / "q.onnx").exists()
