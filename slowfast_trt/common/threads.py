"""One CPU thread budget for a command that runs a loader and a model, split so that they never oversubscribe.

DALI's worker threads, torch's intra-op pool and OpenMP/MKL each size themselves to every core when left
alone; a loader feeding a model then runs twice as many busy threads as cores, and OpenMP threads that
spin-wait between parallel regions take the cores the decoder needs (worst beside other work). `split` derives
every count from one budget (`--threads`, default: the CPUs this process may use); `openmp_env` gives the
environment OpenMP reads when it loads (passive waits: a thread with no work sleeps instead of spinning).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass

from slowfast_trt.common.errors import SlowFastError

# OpenMP and MKL read these once, when the library loads (libgomp in its constructor): set them before torch is
# imported. OMP_WAIT_POLICY=PASSIVE is honoured by GNU libgomp (the OpenMP bundled with PyPI torch) and Intel's
# libiomp; KMP_BLOCKTIME=0 is the same request in Intel's spelling (a no-op under libgomp).
PASSIVE_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as taskset or a container's cpuset sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadSplit:
    """How a budget of `budget` CPU threads is shared: DALI workers, torch intra-op/inter-op, ONNX Runtime intra-op."""

    budget: int
    dali: int
    torch_intra: int
    torch_interop: int
    engine: int
    oversubscribed: bool  # a CPU model and its loader with a budget under one thread each

    def as_dict(self) -> dict:
        return asdict(self)


def split(budget: int | None = None, *, model_on_cpu: bool = True) -> ThreadSplit:
    """Share `budget` threads (None: `available_cpus()`) between the loader and the model.

    With the model on the CPU, DALI's threads and torch's intra-op pool run at the same time (DALI prefetches
    the next batch while the model computes), so they get disjoint halves, the model the smaller one:
    dali + torch_intra == budget. With the model on a GPU, or no model (a loader benchmark), DALI gets the whole
    budget and torch one thread for its host work (the CPU pipelines' crops and normalisation, which run between
    DALI's batches): on 2 cores, 2 DALI threads and that one torch thread loaded 92.6 clips/s where one DALI thread
    can decode at most half of decode-only's 118 (benchmarks/results/cpu-epyc-2core/pipeline/README.md).
    The inter-op pool gets one thread (the model is one graph; parallel branches would take the loader's cores).
    """
    budget = available_cpus() if budget is None else int(budget)
    if budget < 1:
        raise SlowFastError(f"--threads must be >= 1, got {budget}")
    if model_on_cpu:
        model = max(1, budget // 2)
        loader = max(1, budget - model)
    else:
        model, loader = 1, budget
    return ThreadSplit(
        budget=budget,
        dali=loader,
        torch_intra=model,
        torch_interop=1,
        engine=model,
        oversubscribed=model_on_cpu and loader + model > budget,
    )


def openmp_env(intra: int | None = None) -> dict[str, str]:
    """The OpenMP/MKL environment for `intra` intra-op threads (None: leave the counts alone), waits passive."""
    env = dict(PASSIVE_WAIT)
    if intra is not None:
        env.update(OMP_NUM_THREADS=str(intra), MKL_NUM_THREADS=str(intra))
    return env


def set_openmp_env(intra: int | None = None, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put `openmp_env(intra)` into `environ` (default os.environ) where the user has not set a value; returns what was set.

    Called before torch loads (by the `slowfast` command's package, `slowfast_trt.cli`), so OpenMP starts passive;
    child processes (DataLoader workers) inherit it. `common.device.use_threads` applies a split to torch."""
    env = os.environ if environ is None else environ
    done = {}
    for k, v in openmp_env(intra).items():
        if k not in env:
            env[k] = v
            done[k] = v
    return done
