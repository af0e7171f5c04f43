"""torchrun's environment -> a process group, and the few collectives training needs."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """A process group from torchrun's variables (NCCL on GPU, gloo on CPU); a single process otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend)
    return info


def pick_device(info: DistInfo) -> torch.device:
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool) -> nn.Module:
    """``model`` itself in one process; DistributedDataParallel (with SyncBatchNorm on GPUs) in several.

    Returns the module to train; keep ``model`` for checkpoints and evaluation."""
    if info.world_size <= 1:
        return model
    if sync_bn and device.type == "cuda":  # PyTorch's SyncBatchNorm is GPU-only
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[info.local_rank] if device.type == "cuda" else None)


def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Give every process rank 0's BatchNorm statistics. DDP broadcasts buffers at the start of each forward, so
    after the last step each process holds its own batch's update; without SyncBatchNorm (CPU) they differ."""
    if info.world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def shutdown_distributed() -> None:
    """End the process group while the interpreter is fully alive; call once no collective is needed any more and
    the DistributedDataParallel wrappers (which hold the group) are gone.

    Otherwise gloo's worker threads outlive the script: one of them releasing a finished barrier, which holds the
    tensors of earlier collectives, needs the GIL while the interpreter is shutting down, and the process aborts
    ("terminate called without an active exception", SIGABRT: about 1 in 10 two-process CPU runs of
    tests/ddp_worker.py; gdb showed ``ProcessGroupGloo::runLoop`` destroying an ``AsyncBarrierWork``
    during finalization), so torchrun reports a failed run after all its work was written. Destroying the group
    and collecting what still refers to it joins those threads here instead."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()
