"""torchrun / DistributedDataParallel set-up: NCCL on GPUs, gloo on CPUs; rank 0 writes files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from slowfast_trt.common.errors import SlowFastError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def world_size() -> int:
    """How many processes torchrun started for this job (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world = world_size()
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local)


def check_sync_bn(sync_bn: bool, device: torch.device) -> None:
    """--sync-bn needs CUDA: torch's SyncBatchNorm has no CPU kernels."""
    if sync_bn and device.type != "cuda":
        raise SlowFastError("--sync-bn needs CUDA GPUs (torch's SyncBatchNorm is CUDA-only); drop --sync-bn on the CPU")


def wrap(net: nn.Module, device: torch.device, info: DistInfo, sync_bn: bool = False) -> tuple[nn.Module, nn.Module]:
    """(the network to call, the module to save): DistributedDataParallel under torchrun, the plain module otherwise.

    `sync_bn`: BatchNorm statistics over the global batch of all ranks instead of each rank's clips (PySlowFast's
    BN.NUM_SYNC_DEVICES over the whole job); with one process there is nothing to synchronise."""
    check_sync_bn(sync_bn, device)
    if not info.enabled:
        return net, net
    if sync_bn:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return ddp, net


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a tensor over ranks (identity without DDP)."""
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= info.world_size
    return value


def all_gather_object(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order (a one-element list without DDP)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
