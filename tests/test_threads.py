"""The thread budget: loader and model shares never exceed it, OpenMP waits passive, user settings win."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from slowfast_trt.common import threads
from slowfast_trt.common.device import use_threads
from slowfast_trt.common.errors import SlowFastError


@pytest.mark.parametrize("budget", [1, 2, 3, 4, 7, 16, 64])
def test_model_on_cpu_shares_never_exceed_the_budget(budget):
    s = threads.split(budget)
    assert s.dali >= 1 and s.torch_intra >= 1 and s.torch_interop == 1 and s.engine == s.torch_intra
    assert s.dali + s.torch_intra == max(budget, 2)  # one thread each at the least
    assert s.oversubscribed == (budget < 2)
    assert s.dali >= s.torch_intra  # the loader gets the larger half


@pytest.mark.parametrize("budget", [1, 2, 8])
def test_without_a_cpu_model_dali_takes_the_budget_and_torch_one_thread(budget):
    s = threads.split(budget, model_on_cpu=False)
    assert (s.dali, s.torch_intra, s.oversubscribed) == (budget, 1, False)


def test_default_budget_is_the_affinity_mask_and_bad_budgets_fail(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: {0, 3, 5})
    assert threads.available_cpus() == 3 and threads.split().budget == 3
    with pytest.raises(SlowFastError, match="--threads"):
        threads.split(0)


def test_openmp_env_is_passive_and_keeps_what_the_user_set():
    env = {"OMP_NUM_THREADS": "5"}
    done = threads.set_openmp_env(2, env)
    assert env == {"OMP_NUM_THREADS": "5", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
    assert "OMP_NUM_THREADS" not in done


def test_use_threads_sizes_torch():
    s = use_threads(4)
    assert torch.get_num_threads() == s.torch_intra == 2


def test_the_command_sets_passive_waits_before_torch_loads():
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: importing the CLI package must set it first."""
    code = (
        "import os, sys; os.environ.pop('OMP_WAIT_POLICY', None); import slowfast_trt.cli; "
        "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "PASSIVE"]
