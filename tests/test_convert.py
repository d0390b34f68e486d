"""Converting PySlowFast `.pyth`, Caffe2 `.pkl` and state dicts: layouts, inference, safety, and one-line errors.

PyTorchVideo parity with its own models lives in test_convert_pytorchvideo.py. Here the reference files are
made from our random networks, named with a naming function written independently of model.layouts (from
PySlowFast's documented Caffe2 conventions), so a wrong rename in either direction fails.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from slowfast_trt import model
from slowfast_trt.cli.main import main
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.model import layouts
from slowfast_trt.model.convert import to_pyslowfast_state, to_pytorchvideo_state
from slowfast_trt.model.inputs import random_inputs
from slowfast_trt.model.statedict import expected_shapes
from tests.helpers import randomize_

BN_C2 = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}


def psf_to_caffe2(key: str, depths: tuple[int, ...]) -> str | None:
    """The Caffe2 zoo blob name of a PySlowFast key (None for num_batches_tracked, which Caffe2 lacks)."""
    field = key.rsplit(".", 1)[1]
    if field == "num_batches_tracked":
        return None
    wb = {"weight": "w", "bias": "b"}
    if key.startswith("head.projection."):
        return "pred_" + wb[field]
    if m := re.fullmatch(r"s1\.pathway(\d)_stem\.(conv|bn)\.\w+", key):
        t = "t_" if m.group(1) == "1" else ""
        return f"{t}conv1_w" if m.group(2) == "conv" else f"{t}res_conv1_bn_{BN_C2[field]}"
    if m := re.fullmatch(r"s(\d)_fuse\.(conv_f2s|bn)\.\w+", key):
        k = int(m.group(1))
        base = "t_pool1_subsample" if k == 1 else f"t_res{k}_{depths[k - 2] - 1}_branch2c_bn_subsample"
        return base + ("_w" if m.group(2) == "conv_f2s" else "_bn_" + BN_C2[field])
    if m := re.fullmatch(r"s(\d)\.pathway(\d)_res(\d+)\.(branch1|branch2\.([abc]))(_bn)?\.\w+", key):
        k, p, j, branch, conv, is_bn = m.groups()
        name = f"{'t_' if p == '1' else ''}res{k}_{j}_" + ("branch1" if branch == "branch1" else f"branch2{conv}")
        return name + (f"_bn_{BN_C2[field]}" if is_bn else "_w")
    if m := re.fullmatch(r"s(\d)\.pathway0_nonlocal(\d+)\.(conv_(theta|phi|g|out)|bn)\.\w+", key):
        k, j, part, conv = m.groups()
        return f"nonlocal_conv{k}_{j}_{conv}_{wb[field]}" if conv else f"nonlocal_conv{k}_{j}_bn_{BN_C2[field]}"
    raise AssertionError(f"no Caffe2 name for {key}")


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING) and names numpy.core, as Caffe2's Python 2 zoo files do."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _net(preset: str, **overrides):
    return randomize_(model.build(preset, **overrides)).eval()


def _reference_scores(net, x, act: str) -> torch.Tensor:
    """The reference eval head computed by hand: per-position logits, activation, mean (PySlowFast's order)."""
    with torch.no_grad():
        positions = net.head.positions_logits(net.features(**x))
    if act == "softmax":
        positions = torch.softmax(positions, dim=-1)
    return positions.mean(dim=(1, 2, 3))


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _shape_state(preset: str, **overrides) -> dict[str, torch.Tensor]:
    """Uninitialised tensors of the right shapes (inference and layout tests need no values)."""
    return {k: torch.empty(s) for k, s in expected_shapes(model.get_config(preset, **overrides)).items()}


def to_layout_state_shapes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our-layout tensors under PySlowFast names."""
    return {layouts.PYSLOWFAST.to_theirs(k): v for k, v in state.items()}


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


# ----- layouts -----


def test_layout_names_match_the_references():
    """Names from PySlowFast's own documentation of its Caffe2 rename table and its .pyth files."""
    c2 = {
        "conv1_w": ("stem.slow.conv.weight", "s1.pathway0_stem.conv.weight"),
        "res_conv1_bn_s": ("stem.slow.bn.weight", "s1.pathway0_stem.bn.weight"),
        "t_res_conv1_bn_riv": ("stem.fast.bn.running_var", "s1.pathway1_stem.bn.running_var"),
        "res4_4_branch2c_bn_b": ("res4.slow.blocks.4.bn_c.bias", "s4.pathway0_res4.branch2.c_bn.bias"),
        "res4_0_branch1_w": ("res4.slow.blocks.0.shortcut.conv.weight", "s4.pathway0_res0.branch1.weight"),
        "t_res3_0_branch1_bn_rm": ("res3.fast.blocks.0.shortcut.bn.running_mean", "s3.pathway1_res0.branch1_bn.running_mean"),
        "t_pool1_subsample_w": ("fuse1.conv.weight", "s1_fuse.conv_f2s.weight"),
        "t_pool1_subsample_bn_s": ("fuse1.bn.weight", "s1_fuse.bn.weight"),
        "t_res4_5_branch2c_bn_subsample_bn_rm": ("fuse4.bn.running_mean", "s4_fuse.bn.running_mean"),
        "t_res2_2_branch2c_bn_subsample_w": ("fuse2.conv.weight", "s2_fuse.conv_f2s.weight"),
        "nonlocal_conv4_6_theta_w": ("res4.slow.nonlocals.6.theta.weight", "s4.pathway0_nonlocal6.conv_theta.weight"),
        "nonlocal_conv4_13_out_b": ("res4.slow.nonlocals.13.out.bias", "s4.pathway0_nonlocal13.conv_out.bias"),
        "nonlocal_conv4_20_bn_s": ("res4.slow.nonlocals.20.bn.weight", "s4.pathway0_nonlocal20.bn.weight"),
        "pred_w": ("head.projection.weight", "head.projection.weight"),
    }
    for blob, (ours, psf) in c2.items():
        assert layouts.CAFFE2.to_ours(blob) == ours, blob
        assert layouts.PYSLOWFAST.to_theirs(ours) == psf
        assert layouts.PYSLOWFAST.to_ours(psf) == ours
        assert layouts.CAFFE2.to_theirs(ours, {"depths": (3, 4, 6, 3)}) == blob
    assert (
        layouts.PYTORCHVIDEO_SLOWFAST.to_theirs("res4.fast.blocks.2.bn_b.running_var")
        == "blocks.3.multipathway_blocks.1.res_blocks.2.branch2.norm_b.running_var"
    )
    assert layouts.PYTORCHVIDEO_SLOWFAST.to_theirs("fuse1.conv.weight") == "blocks.0.multipathway_fusion.conv_fast_to_slow.weight"
    assert layouts.PYTORCHVIDEO_SLOWFAST.to_theirs("head.projection.bias") == "blocks.6.proj.bias"
    assert layouts.PYTORCHVIDEO_RESNET.to_theirs("res2.slow.blocks.0.shortcut.bn.weight") == "blocks.1.res_blocks.0.branch1_norm.weight"
    assert layouts.PYTORCHVIDEO_RESNET.to_theirs("head.projection.weight") == "blocks.5.proj.weight"
    assert layouts.CAFFE2.to_theirs("stem.slow.bn.num_batches_tracked") is None


@pytest.mark.parametrize("preset,count", [("slowfast_r50_8x8", 662), ("slowfast_r101_16x8", 1274), ("slow_r50_8x8", 320)])
def test_every_tensor_has_a_name_in_each_layout_and_back(preset, count):
    state = _shape_state(preset)
    net_cfg = model.get_config(preset)
    for fmt in ("pyslowfast", "pytorchvideo", "caffe2"):
        lay = layouts.layout(fmt, net_cfg.arch)
        names = {k: lay.to_theirs(k, {"depths": net_cfg.stage_depths}) for k in state}
        if fmt != "caffe2":
            assert len(names) == count and None not in names.values()
        theirs = [n for n in names.values() if n is not None]
        assert len(set(theirs)) == len(theirs)  # no two tensors share a name
        assert {lay.to_ours(n) for n in theirs} == {k for k, n in names.items() if n is not None}
    with pytest.raises(SlowFastError, match="no counterpart"):
        layouts.PYTORCHVIDEO_SLOWFAST.to_theirs("res4.slow.nonlocals.6.theta.weight")


# ----- Caffe2 .pkl -----


@pytest.mark.parametrize("py2", [True, False], ids=["python2-pickle", "python3-pickle"])
def test_caffe2_pkl_converts_with_identical_outputs(tmp_path, py2):
    net = _net("slowfast_r50_4x16", head_pool="reference", num_classes=10)
    depths = net.config.stage_depths
    blobs = {}
    for key, value in to_pyslowfast_state(net).items():
        name = psf_to_caffe2(key, depths)
        if name is not None:
            blobs[name] = value.numpy()
    blobs["res2_0_branch2c_w"] = blobs["res2_0_branch2c_w"].reshape(256, 64)  # a 2-D-style blob without trailing 1s
    blobs.update(
        {
            "conv1_w_momentum": np.zeros((64, 3, 1, 7, 7), np.float32),
            "lr": np.array([0.1], np.float32),
            "model_iter": np.array([196000]),
            "res_conv1_bn_sm": np.zeros(64, np.float32),
        }
    )
    path = tmp_path / "SLOWFAST_4x16_R50.pkl"
    path.write_bytes(_py2_pickle({"blobs": blobs}) if py2 else pickle.dumps({"blobs": blobs}, protocol=2))

    ours = model.convert(path)
    assert _same(ours, net)
    cfg = ours.config
    assert cfg.name == "slowfast_r50_4x16" and cfg.num_classes == 10 and cfg.lateral_kernel == 5 and cfg.alpha == 8
    assert cfg.head_pool == "reference" and cfg.head_act == "softmax"
    report = cfg.extra["conversion"]
    assert report["format"] == "caffe2" and set(report["not_in_weights"]) == {"alpha", "tau", "num_frames"}
    x = random_inputs(cfg, size=256)
    with torch.no_grad():
        got = ours(**x)
    assert (got - _reference_scores(net, x, "softmax")).abs().max() < 1e-6
    assert torch.allclose(got.sum(), torch.tensor(1.0), atol=1e-5)


def test_caffe2_nonlocal_r101_infers_its_structure(tmp_path):
    depths = model.get_config("slowfast_r101_16x8_nl").stage_depths
    psf = to_layout_state_shapes(_shape_state("slowfast_r101_16x8_nl"))
    blobs = {
        psf_to_caffe2(k, depths): np.zeros(tuple(v.shape), np.float32) for k, v in psf.items() if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "SLOWFAST_16x8_R101_NL.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=4))
    cfg = model.convert(path).config
    assert (cfg.depth, cfg.r101_variant, cfg.nonlocal_blocks(4, "slow"), cfg.lateral_kernel) == (101, "50_50", (6, 13, 20), 5)
    assert cfg.name == "slowfast_r101_16x8_nl"


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_pickles_that_build_anything_but_arrays_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"blobs": {"conv1_w": _RunsCode(marker)}}, protocol=2))
    with pytest.raises(SlowFastError, match=r"refused to unpickle (posix|nt)\.system") as e:
        model.convert(evil)
    _one_line(e)

    evil_pyth = tmp_path / "evil.pyth"
    torch.save({"model_state": {"s1.pathway0_stem.conv.weight": torch.zeros(1)}, "hook": _RunsCode(marker)}, evil_pyth)
    with pytest.raises(SlowFastError, match=r"refused to unpickle (posix|nt)\.system") as e:
        model.convert(evil_pyth)
    _one_line(e)
    with pytest.raises(SlowFastError, match="refused"):
        model.convert(evil_pyth, fmt="pyslowfast")
    assert not marker.exists()

    objects = tmp_path / "objects.pkl"
    objects.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.array([1, "a"], dtype=object)}}, protocol=2))
    with pytest.raises(SlowFastError, match="blob 'conv1_w' is a array of object, not a numeric array") as e:
        model.convert(objects)
    _one_line(e)

    builtin = tmp_path / "builtin.pkl"
    builtin.write_bytes(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.")
    with pytest.raises(SlowFastError, match=r"refused to unpickle builtins\.eval"):
        model.convert(builtin)


# ----- PySlowFast .pyth -----


def _fake_yacs():
    """A stand-in for yacs' CfgNode with its real pickled form (dict items plus set/dict attributes)."""
    mod = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None):
            super().__init__(init or {})
            self.__dict__.update({"__immutable__": False, "__deprecated_keys__": set(), "__renamed_keys__": {}, "__new_allowed__": False})

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    mod.CfgNode = CfgNode
    pkg = types.ModuleType("yacs")
    pkg.config = mod
    return pkg, mod, CfgNode


def _pyslowfast_file(tmp_path, net, prefix: str = "", name: str = "ckpt.pyth") -> Path:  # noqa: F821
    pkg, mod, CfgNode = _fake_yacs()
    sys.modules.update({"yacs": pkg, "yacs.config": mod})
    try:
        cfg = CfgNode(
            {
                "MODEL": CfgNode({"ARCH": "slowfast", "NUM_CLASSES": net.config.num_classes}),
                "SLOWFAST": CfgNode({"ALPHA": net.config.alpha, "FUSION_KERNEL_SZ": net.config.lateral_kernel}),
            }
        )
        state = {prefix + k: v for k, v in to_pyslowfast_state(net).items()}
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        path = tmp_path / name
        torch.save({"epoch": 196, "model_state": state, "optimizer_state": opt.state_dict(), "cfg": cfg}, path)
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]
    return path


@pytest.mark.parametrize("prefix", ["", "model.", "module."])
def test_pyslowfast_pyth_with_yacs_config_converts(tmp_path, prefix):
    net = _net("slowfast_r50_4x16", head_pool="reference", num_classes=5)
    path = _pyslowfast_file(tmp_path, net, prefix)
    assert "yacs" not in sys.modules  # the file names yacs.config.CfgNode; nothing of yacs is needed or imported
    ours = model.convert(path)
    assert "yacs" not in sys.modules
    assert _same(ours, net) and ours.config.name == "slowfast_r50_4x16" and ours.config.head_act == "softmax"
    assert ours.config.extra["conversion"]["format"] == "pyslowfast"
    if prefix:
        return
    x = random_inputs(ours.config, size=256)
    with torch.no_grad():
        assert (ours(**x) - _reference_scores(net, x, "softmax")).abs().max() < 1e-6
    # PyTorchVideo-origin weights average logits instead
    ptv = model.convert(to_pytorchvideo_state(net))
    with torch.no_grad():
        assert (ptv(**x) - _reference_scores(net, x, "none")).abs().max() < 1e-5


def test_round_trip_through_the_pyslowfast_layout_is_lossless(tmp_path):
    net = _net("slowfast_r101_8x8_101_101_101", num_classes=3)
    psf = to_pyslowfast_state(net)
    assert len(psf) == 1274
    again = model.convert(psf)
    assert _same(again, net) and again.config.name == "slowfast_r101_8x8_101_101_101"
    back = to_pyslowfast_state(again)
    assert back.keys() == psf.keys() and all(torch.equal(back[k], psf[k]) for k in psf)
    assert to_pytorchvideo_state(model.convert(to_pytorchvideo_state(again))).keys() == to_pytorchvideo_state(net).keys()


# ----- inference and presets -----


@pytest.mark.parametrize(
    "preset,fields",
    [
        ("slowfast_r50_8x8", dict(depth=50, lateral_kernel=7, alpha=4, num_frames=8)),
        ("slowfast_r50_4x16", dict(depth=50, lateral_kernel=5, alpha=8, num_frames=4)),
        ("slowfast_r101_16x8", dict(depth=101, r101_variant="50_50", num_frames=16)),
        ("slowfast_r101_8x8_101_101_101", dict(depth=101, r101_variant="101_101_101", num_frames=8)),
        ("slow_r50_8x8", dict(arch="slow", lateral=None, num_frames=8)),
        ("slowfast_r50_4x16_beta4", dict(beta_inv=4)),
        ("slowfast_r50_4x16_ttoc_concat", dict(lateral="ttoc_concat", alpha=8)),
        ("slowfast_r50_4x16_tsample", dict(lateral="tsample")),
        ("slowfast_r50_4x16_gray", dict(fast_input="gray")),
        ("fast_r50_4x16", dict(arch="fast")),
    ],
)
def test_architecture_is_read_off_the_weights(preset, fields):
    cfg = model.convert(to_layout_state_shapes(_shape_state(preset))).config
    for k, v in fields.items():
        assert getattr(cfg, k) == v, (k, getattr(cfg, k), v)
    # the weights alone lead to that preset, or to one with identical tensors (e.g. 4x16 "tconv" = 4x16)
    assert expected_shapes(model.get_config(cfg.name)) == expected_shapes(model.get_config(preset))


def test_preset_supplies_what_the_weights_cannot_show():
    """8x8 and 16x8 R101 have identical tensors: the preset decides T (and with it the head's window)."""
    state = to_layout_state_shapes(_shape_state("slowfast_r101_16x8"))
    as_8x8 = model.convert(state, preset="slowfast_r101_8x8").config
    assert (as_8x8.num_frames, as_8x8.name) == (8, "slowfast_r101_8x8")
    assert model.convert(state).config.num_frames == 16  # the published 16x8 model, without a preset
    report = as_8x8.extra["conversion"]
    assert report["not_in_weights"] == {"num_frames": 8, "tau": 8, "alpha": 4}
    assert report["assumed_from"] == "preset slowfast_r101_8x8"


def test_shapes_contradicting_the_preset_are_listed_in_one_line():
    state = to_layout_state_shapes(_shape_state("slowfast_r50_8x8"))
    with pytest.raises(SlowFastError) as e:
        model.convert(state, preset="slowfast_r50_4x16")
    msg = _one_line(e)
    assert "contradicts preset slowfast_r50_4x16" in msg and "lateral_kernel: weights 7, preset 5" in msg
    assert "4 shape mismatch(es): s1_fuse.conv_f2s.weight (file [16, 8, 7, 1, 1], model [16, 8, 5, 1, 1])" in msg

    r101 = to_layout_state_shapes(_shape_state("slowfast_r101_8x8_101_101_101"))
    with pytest.raises(SlowFastError) as e:
        model.convert(r101, preset="slowfast_r101_8x8")
    msg = _one_line(e)
    assert "r101_variant: weights 101_101_101, preset 50_50" in msg
    assert "34 shape mismatch(es)" in msg and "and 30 more" in msg  # 17 res4 blocks x 2 pathways, truncated

    with pytest.raises(SlowFastError) as e:
        model.convert(state, preset="slow_r50_8x8")
    assert "arch: weights slowfast, preset slow" in _one_line(e)

    k600 = to_layout_state_shapes(_shape_state("slowfast_r50_8x8", num_classes=600))
    with pytest.raises(SlowFastError, match="num_classes: weights 600, preset 400") as e:
        model.convert(k600, preset="slowfast_r50_8x8")
    assert model.convert(k600, preset="slowfast_r50_8x8", num_classes=600).config.num_classes == 600
    assert model.convert(k600).config.name == "slowfast_r50_8x8_k600"
    with pytest.raises(SlowFastError, match=r"--num-classes 400, but the classifier head\.projection\.weight has 600"):
        model.convert(k600, num_classes=400)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = to_layout_state_shapes(_shape_state("slowfast_r50_4x16"))
    missing = {k: v for k, v in state.items() if k != "s3.pathway1_res2.branch2.b_bn.weight"}
    with pytest.raises(SlowFastError, match=r"1 missing key\(s\): s3\.pathway1_res2\.branch2\.b_bn\.weight") as e:
        model.convert(missing)
    _one_line(e)
    odd = {**state, "s3.pathway1_res2.branch3.weight": torch.zeros(1), "head.classifier.weight": torch.zeros(1)}
    with pytest.raises(
        SlowFastError,
        match=r"2 unexpected key\(s\) for the pyslowfast layout: s3\.pathway1_res2\.branch3\.weight, head\.classifier\.weight",
    ) as e:
        model.convert(odd)
    _one_line(e)
    extra_block = {**state, "s5.pathway0_res3.branch2.a.weight": torch.zeros(512, 2048, 3, 1, 1)}
    with pytest.raises(
        SlowFastError, match=r"slow pathway's blocks per stage res2..res5 are \(3, 4, 6, 4\), which matches no supported"
    ) as e:
        model.convert(extra_block)
    _one_line(e)
    no_head = {k: v for k, v in state.items() if not k.startswith("head.")}
    with pytest.raises(SlowFastError, match="no head.projection.weight"):
        model.convert(no_head)
    ptv = to_pytorchvideo_state(model.build("slowfast_r50_4x16", device="meta"))
    ptv = {k: torch.empty(v.shape) for k, v in ptv.items()}
    del ptv["blocks.2.multipathway_blocks.0.res_blocks.1.branch2.conv_b.weight"]
    with pytest.raises(SlowFastError, match=r"missing key\(s\): blocks\.2\.multipathway_blocks\.0\.res_blocks\.1\.branch2\.conv_b\.weight"):
        model.convert(ptv)


def test_files_that_are_not_checkpoints(tmp_path):
    net = _net("slowfast_r50_4x16", num_classes=4)
    good = _pyslowfast_file(tmp_path, net)
    data = good.read_bytes()
    cases = {
        "notes.pyth": (b"these are not weights\n", "not a checkpoint"),
        "empty.pkl": (b"", "empty file"),
        "truncated.pyth": (data[: len(data) // 2], "truncated or corrupt PyTorch file"),
        "header-only.pyth": (data[:40], "truncated or corrupt PyTorch file"),
    }
    pkl = pickle.dumps({"blobs": {"conv1_w": np.zeros((64, 3, 1, 7, 7), np.float32)}}, protocol=2)
    cases["truncated.pkl"] = (pkl[: len(pkl) // 2], "truncated or corrupt pickle")
    cases["list.pkl"] = (pickle.dumps([1, 2, 3]), "holds a list, not a dict of weights")
    for name, (content, message) in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(SlowFastError, match=message) as e:
            model.convert(p)
        assert name in _one_line(e)
    with pytest.raises(SlowFastError, match="not found"):
        model.convert(tmp_path / "nope.pyth")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(SlowFastError, match="truncated or corrupt PyTorch file") as e:
        model.convert(tmp_path / "other.zip")
    _one_line(e)
    torch.save({"epoch": 3, "cfg": "MODEL:\n  ARCH: slowfast\n"}, tmp_path / "noweights.pyth")
    with pytest.raises(SlowFastError, match=r"no model weights found \(top-level keys: cfg, epoch\)"):
        model.convert(tmp_path / "noweights.pyth")
    torch.save({"model_state": {"encoder.layer1.weight": torch.zeros(2)}}, tmp_path / "bert.pyth")
    with pytest.raises(SlowFastError, match="match no known layout"):
        model.convert(tmp_path / "bert.pyth")
    with pytest.raises(SlowFastError, match="--from pytorchvideo was given, but the weights are in the pyslowfast layout"):
        model.convert(good, fmt="pytorchvideo")
    with pytest.raises(SlowFastError, match="unknown checkpoint format"):
        model.convert(good, fmt="tensorflow")


def test_legacy_torch_files_convert(tmp_path):
    """torch.save's pre-1.6 (non-zip) format starts like a pickle; it is recognised and still read weights-only."""
    net = _net("slow_r50_4x16", num_classes=3)
    path = tmp_path / "legacy.pyth"
    torch.save({"model_state": to_pyslowfast_state(net)}, path, _use_new_zipfile_serialization=False)
    assert _same(model.convert(path), net)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlowFastError, match="truncated or corrupt PyTorch file") as e:
        model.convert(path)
    _one_line(e)


def test_own_checkpoints_and_plain_safetensors_convert(tmp_path):
    import safetensors.torch

    net = _net("slow_r50_4x16", num_classes=6)
    own = model.save(net, tmp_path / "own.safetensors")
    assert model.convert(own).config == net.config
    plain = tmp_path / "psf.safetensors"
    safetensors.torch.save_file(to_pyslowfast_state(net), str(plain))
    converted = model.convert(plain, preset="slow_r50_4x16", num_classes=6)
    assert _same(converted, net) and converted.config.num_frames == 4


# ----- head -----


def test_head_activation_applies_in_eval_only():
    net = _net("slowfast_r50_4x16", head_pool="reference", head_act="softmax", num_classes=5)
    x = random_inputs(net.config, size=256)
    with torch.no_grad():
        probs = net(**x)
        positions = net.head.positions_logits(net.features(**x))
    assert torch.allclose(probs, torch.softmax(positions, -1).mean(dim=(1, 2, 3)))
    assert torch.equal(net.activation(probs), probs)  # scores pass through, never activated twice
    with torch.no_grad():
        features = net.features(**x)
        net.head.train()
        net.head.dropout.p = 0.0
        train_out = net.head(features)
    assert torch.allclose(train_out, positions.mean(dim=(1, 2, 3)), atol=1e-5)  # logits while training
    with pytest.raises(SlowFastError, match="head_act"):
        model.build("slowfast_r50_4x16", head_act="relu")
    assert model.get_config("slowfast_r50_4x16").head_act == "none"


# ----- CLI -----


def test_cli_convert(tmp_path):
    net = _net("slowfast_r50_8x8", num_classes=5)
    src = _pyslowfast_file(tmp_path, net, name="SLOWFAST_8x8_R50.pyth")
    dst = tmp_path / "out" / "sf.safetensors"
    r = CliRunner().invoke(
        main, ["convert", str(src), str(dst), "--from", "pyslowfast", "--preset", "slowfast_r50_8x8", "--num-classes", "5"]
    )
    assert r.exit_code == 0, r.output
    assert "pyslowfast layout" in r.output and "lateral_kernel=7" in r.output and "num_frames=8" in r.output
    loaded = model.load(dst)
    assert _same(loaded, net) and loaded.config.head_act == "softmax"

    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "x.safetensors"), "--preset", "slowfast_r50_4x16"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "contradicts preset slowfast_r50_4x16" in r.output
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "x.pyth")])
    assert r.exit_code == 2 and "must end with .safetensors" in r.output
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x02junk")
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "junk.pkl"), str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and r.output.startswith("error: ") and r.output.count("\n") == 1
    assert not (tmp_path / "x.safetensors").exists()
