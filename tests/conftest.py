"""Shared test set-up: `gpu`-marked tests skip with a reason where no CUDA GPU is visible, and every test starts from
the same global state (seeds, torch threads and flags, environment, working directory, an empty measurement cache),
whatever ran before it and whatever this machine measured in earlier runs."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

# Intra-op threads of every test, on any machine: the split of a float reduction across threads changes its last bits,
# and a test must not see other numbers on a 64-core machine than on CI's 2 cores.
SUITE_THREADS = 2
_SAVED_CACHE = pytest.StashKey[str | None]()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _torch_state() -> dict:
    return {
        "threads": torch.get_num_threads(),
        "dtype": torch.get_default_dtype(),
        "grad": torch.is_grad_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic": (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        "cudnn": (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32),
        "cuda_tf32": torch.backends.cuda.matmul.allow_tf32,
        "mkldnn": torch.backends.mkldnn.enabled,
    }


def _restore_torch(s: dict) -> None:
    torch.set_num_threads(s["threads"])
    torch.set_default_dtype(s["dtype"])
    torch.set_grad_enabled(s["grad"])
    torch.set_float32_matmul_precision(s["matmul_precision"])
    torch.use_deterministic_algorithms(s["deterministic"][0], warn_only=s["deterministic"][1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32 = s["cudnn"]
    torch.backends.cuda.matmul.allow_tf32 = s["cuda_tf32"]
    torch.backends.mkldnn.enabled = s["mkldnn"]


def pytest_configure(config):
    """Before any test module is imported (some copy os.environ for their subprocesses at import): a measurement
    cache (`SLOWFAST_CACHE_DIR`) that no earlier run filled, so a CPU bf16 or GPU policy choice is measured in this
    run, never read from this machine's history."""
    config.stash[_SAVED_CACHE] = os.environ.get("SLOWFAST_CACHE_DIR")
    os.environ["SLOWFAST_CACHE_DIR"] = tempfile.mkdtemp(prefix="slowfast-measurements-")


def pytest_unconfigure(config):
    shutil.rmtree(os.environ["SLOWFAST_CACHE_DIR"], ignore_errors=True)
    saved = config.stash.get(_SAVED_CACHE, None)
    if saved is None:
        os.environ.pop("SLOWFAST_CACHE_DIR", None)
    else:
        os.environ["SLOWFAST_CACHE_DIR"] = saved


@pytest.fixture(scope="session", autouse=True)
def _suite_state():
    """Torch's global settings as every test starts with them: SUITE_THREADS threads, the rest as torch starts."""
    torch.set_num_threads(SUITE_THREADS)
    return _torch_state()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Seed every generator before any fixture of the test is set up: a module-scoped fixture built by whichever test
    runs first (its conv weights come from torch's global generator) gets the same weights in any order."""
    seed_everything()


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(autouse=True)
def _isolated_test(_suite_state, tmp_path_factory):
    """Each test: a fresh measurement cache, and afterwards torch's global settings, the environment and the working
    directory put back as the suite set them (a test that changes them cannot change the tests after it)."""
    cwd = os.getcwd()
    env = dict(os.environ)
    os.environ["SLOWFAST_CACHE_DIR"] = str(tmp_path_factory.mktemp("measurements"))
    _restore_torch(_suite_state)
    seed_everything()
    yield
    _restore_torch(_suite_state)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)


@pytest.fixture
def read_only_checkout(tmp_path, monkeypatch):
    """A folder standing for the checkout, made read-only by a bind mount (skips where `mount` is not permitted)."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    shutil.copy2(Path(__file__).resolve().parents[1] / "setup.py", src / "setup.py")  # what the Triton venv's stamp hashes
    if subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True).returncode:
        pytest.skip("a read-only bind mount needs `mount` (root in a sandbox that permits it)")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode:
            pytest.skip("remounting read-only is not permitted here")
        monkeypatch.setattr("slowfast_trt.serving.env.ROOT", ro)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.delenv("SLOWFAST_TRITON_VENV", raising=False)
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
