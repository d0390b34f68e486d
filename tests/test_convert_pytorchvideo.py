"""Numerical identity with an independent implementation: PyTorchVideo's own SlowFast / Slow models.

pytorchvideo 0.1.5 is a test-only dependency, installed from PyPI with --no-deps into pytest's cache folder
(once; later runs reuse it). Its import quirks are worked around here, never in site-packages: the package
`__init__`s of `pytorchvideo.models`, `pytorchvideo.models.hub` and `fvcore(.nn)` would import detection heads,
vision transformers and fvcore's analysis tools (torchvision, iopath, tabulate, ...), so they are registered
as bare packages and only the needed submodules load (fvcore's `weight_init.py`, torch only, is its real code);
`torchvision.ops.RoIAlign`, used only by PyTorchVideo's detection heads, gets an inert stand-in that fails if
built. The models come from PyTorchVideo's hub builders (their exact arguments), with random weights and
randomised BatchNorm statistics, compared in eval mode at the 256 test crop (2x2 head positions) and at 224.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from slowfast_trt import model
from slowfast_trt.model.convert import to_pyslowfast_state, to_pytorchvideo_state
from tests.helpers import randomize_

PTV_REQUIREMENTS = ["pytorchvideo==0.1.5", "fvcore==0.1.5.post20221221"]
TOLERANCE = 1e-4


def _install(target: Path) -> None:
    done = target / ".installed"
    if done.exists():
        return
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "--target",
        str(target),
        *PTV_REQUIREMENTS,
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"could not run pip to install {PTV_REQUIREMENTS}: {e}")
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"pytorchvideo could not be installed from PyPI (no network?): {tail[0]}")
    done.write_text("ok\n")


def _bare_package(name: str, path: Path) -> None:
    """Register `name` as a package whose __init__ does not run, so its submodules import on their own."""
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)]
    sys.modules[name] = mod


class _NoRoIAlign(nn.Module):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision.ops.RoIAlign is a test stand-in; detection heads are not under test")


@pytest.fixture(scope="session")
def ptv(request, tmp_path_factory):
    """PyTorchVideo's hub builders: {"slowfast": module, "resnet": module}."""
    cache = getattr(request.config, "cache", None)
    target = Path(cache.mkdir("pytorchvideo-0.1.5")) if cache is not None else tmp_path_factory.mktemp("ptv")
    _install(target)
    stubs = {}
    if importlib.util.find_spec("torchvision") is None:
        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.RoIAlign, tv.ops = _NoRoIAlign, ops
        stubs = {"torchvision": tv, "torchvision.ops": ops}
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.path.insert(0, str(target))
    try:
        sys.modules.update(stubs)
        _bare_package("fvcore", target / "fvcore")
        _bare_package("fvcore.nn", target / "fvcore" / "nn")
        importlib.import_module("pytorchvideo")
        _bare_package("pytorchvideo.models", target / "pytorchvideo" / "models")
        _bare_package("pytorchvideo.models.hub", target / "pytorchvideo" / "models" / "hub")
        hub_sf = importlib.import_module("pytorchvideo.models.hub.slowfast")
        hub_resnet = importlib.import_module("pytorchvideo.models.hub.resnet")
    finally:
        sys.path.remove(str(target))
        for k, v in saved.items():  # the stand-ins were only needed while importing
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return {"slowfast": hub_sf, "resnet": hub_resnet}


# hub builder, its frames (Slow T, Fast alpha*T), our preset it corresponds to, and whether it is slow on 2 cores
CASES = {
    "slowfast_r50": ("slowfast", "slowfast_r50", (8, 32), "slowfast_r50_8x8"),
    "slow_r50": ("resnet", "slow_r50", (8, None), "slow_r50_8x8"),
    "slowfast_r101": ("slowfast", "slowfast_r101", (8, 32), "slowfast_r101_8x8_101_101_101"),
    "slowfast_16x8_r101_50_50": ("slowfast", "slowfast_16x8_r101_50_50", (16, 64), "slowfast_r101_16x8"),
}


def _build_ptv(ptv, case: str, seed: int = 0, **kwargs) -> nn.Module:
    hub, builder, _, _ = CASES[case]
    torch.manual_seed(seed)
    net = getattr(ptv[hub], builder)(pretrained=False, model_num_class=400, **kwargs)
    return randomize_(net, seed=seed).eval()


def _inputs(case: str, size: int, seed: int = 1) -> tuple[list[torch.Tensor] | torch.Tensor, dict[str, torch.Tensor]]:
    t_slow, t_fast = CASES[case][2]
    g = torch.Generator().manual_seed(seed)
    slow = torch.randn(1, 3, t_slow, size, size, generator=g)
    if t_fast is None:
        return slow, {"slow": slow}
    fast = torch.randn(1, 3, t_fast, size, size, generator=g)
    return [slow, fast], {"slow": slow, "fast": fast}


def _compare(ptv_net: nn.Module, ours: nn.Module, case: str, sizes=(256, 224)) -> dict[int, float]:
    diffs = {}
    with torch.no_grad():
        for size in sizes:
            theirs_in, ours_in = _inputs(case, size)
            expected = ptv_net(list(theirs_in) if isinstance(theirs_in, list) else theirs_in)
            got = ours(**ours_in)
            assert got.shape == expected.shape == (1, 400)
            diffs[size] = (got - expected).abs().max().item()
            # the comparison means something only if the outputs vary clearly across classes
            assert expected.max() - expected.min() > 100 * TOLERANCE
    return diffs


def _check_case(ptv, case: str, with_preset: bool) -> None:
    t0 = time.time()
    theirs = _build_ptv(ptv, case)
    preset = CASES[case][3]
    ours = model.convert(theirs.state_dict(), preset=preset if with_preset else None)
    # without a preset the converter infers the structure and picks the published zoo model for T/tau/alpha
    assert ours.config.name == preset
    assert ours.config.head_pool == "reference" and ours.config.head_act == "none"
    diffs = _compare(theirs, ours, case)
    print(f"\n{case}: max abs diff vs PyTorchVideo {diffs} (preset given: {with_preset}, {time.time() - t0:.1f}s)")
    assert max(diffs.values()) < TOLERANCE, diffs


@pytest.mark.parametrize("case", ["slowfast_r50", "slow_r50"])
def test_r50_outputs_equal_pytorchvideo(ptv, case):
    _check_case(ptv, case, with_preset=False)


@pytest.fixture
def slow_selected(request):
    """pytest.ini calls `slow` tests too slow for every CI run: these run only when `-m` selects them."""
    expr = request.config.getoption("markexpr") or ""
    if "slow" not in expr.replace("not slow", ""):
        pytest.skip("R101 parity takes about 20-30 s per model on 2 CPU cores; run with -m slow")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["slowfast_r101", "slowfast_16x8_r101_50_50"])
def test_r101_outputs_equal_pytorchvideo(ptv, slow_selected, case):
    _check_case(ptv, case, with_preset=True)


def test_r101_layouts_convert_without_running(ptv):
    """In every CI run: both R101 variants convert, are recognised, and hold exactly PyTorchVideo's tensors."""
    for case in ("slowfast_r101", "slowfast_16x8_r101_50_50"):
        theirs = _build_ptv(ptv, case)
        state = theirs.state_dict()
        ours = model.convert(state)
        assert ours.config.name == CASES[case][3]
        assert ours.config.r101_variant == ("101_101_101" if case == "slowfast_r101" else "50_50")
        assert ours.config.lateral_kernel == 5
        back = to_pytorchvideo_state(ours)
        assert back.keys() == state.keys() and len(state) == 1274
        assert all(torch.equal(back[k], state[k]) for k in state)


def test_softmax_head_matches_pytorchvideo_softmax_head(ptv):
    """PySlowFast's eval head (softmax per position, then mean) equals PyTorchVideo built with a Softmax head."""
    theirs = _build_ptv(ptv, "slowfast_r50", head_activation=nn.Softmax)
    ours = model.convert(theirs.state_dict(), head_act="softmax")
    theirs_in, x = _inputs("slowfast_r50", 256)
    with torch.no_grad():
        expected = theirs(list(theirs_in))
        features = ours.features(**x)
        got = ours.head(features)
        positions = ours.head.positions_logits(features)
    diff = (got - expected).abs().max().item()
    print(f"\nslowfast_r50 with softmax heads at 256: max abs diff {diff:.3g}")
    assert diff < 1e-6 and torch.allclose(got.sum(), torch.tensor(1.0))
    # at 256 the head sees 2x2 positions, and the mean of their probabilities is not the softmax of mean logits
    assert positions.shape[1:4] == (1, 2, 2)
    assert not torch.allclose(got, torch.softmax(positions.mean(dim=(1, 2, 3)), dim=-1), atol=1e-5)


def test_round_trip_pytorchvideo_to_pyslowfast_and_back_is_lossless(ptv, tmp_path):
    theirs = _build_ptv(ptv, "slowfast_r50")
    state = theirs.state_dict()
    ours = model.convert(state)
    psf_file = tmp_path / "SLOWFAST_8x8_R50.pyth"
    torch.save({"model_state": to_pyslowfast_state(ours), "epoch": 196}, psf_file)
    again = model.convert(psf_file, fmt="pyslowfast")
    assert again.config.head_act == "softmax"  # PySlowFast origin
    back = to_pytorchvideo_state(again)
    assert back.keys() == state.keys() and len(state) == 662
    assert all(torch.equal(back[k], state[k]) and back[k].dtype == state[k].dtype for k in state)
    # and through the project's own checkpoint format
    model.save(again, tmp_path / "ours.safetensors")
    final = model.load(tmp_path / "ours.safetensors")
    assert final.config == again.config
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), again.state_dict().values()))
    theirs_slow = _build_ptv(ptv, "slow_r50")
    slow_ours = model.convert(theirs_slow.state_dict())
    slow_back = to_pytorchvideo_state(model.convert(to_pyslowfast_state(slow_ours)))
    assert all(torch.equal(slow_back[k], v) for k, v in theirs_slow.state_dict().items())
