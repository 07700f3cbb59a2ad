"""Data-parallel training across processes started by torchrun: the process group, shards of
each batch, and the few values every rank must agree on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from trainers.fused import draw_as_rank


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job, or a plain single process (`launched` false)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device_type: str = "cpu"  # where collectives run: CUDA tensors for NCCL, CPU tensors for gloo
    launched: bool = False  # joined a process group (torchrun), even one of a single rank

    @property
    def active(self) -> bool:
        """Whether training runs data-parallel: under torchrun, with one rank as with eight."""
        return self.launched or self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch (along the last dimension, so each member's batch of
        an array is sharded alike): every `world_size`-th row, starting at `rank`."""
        return rows[..., self.rank :: self.world_size]

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` as the training step calls it: under torchrun wrapped in DistributedDataParallel,
        its fused dropout drawing this rank's masks; else `module` itself."""
        if not self.active:
            return module
        draw_as_rank(module, self.rank)
        return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.device_type == "cuda" else torch.device("cpu")

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (in place, and returned)."""
        if self.active:
            moved = tensor.to(self.device)
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            tensor.copy_(moved)
        return tensor

    def from_main(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's value of `tensor` on every rank (in place, and returned)."""
        if self.active:
            moved = tensor.to(self.device)
            dist.broadcast(moved, src=0)
            tensor.copy_(moved)
        return tensor


SINGLE = Distributed()


def init_from_env(device_type: str) -> Distributed:
    """Join the process group torchrun describes in the environment (gloo on the CPU, NCCL on CUDA)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        raise ValueError(
            "train.distributed=ddp runs under torchrun, e.g. torchrun --nproc_per_node 2 -m pipeline run train.distributed=ddp"
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device_type == "cuda":
        check_one_gpu_per_rank(local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1)))
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # NCCL binds the group to this rank's GPU up front (no "using the current device" guess later).
        gpu = torch.device("cuda", local_rank) if device_type == "cuda" else None
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world_size, device_id=gpu)
    return Distributed(rank, world_size, local_rank, device_type, launched=True)


def check_one_gpu_per_rank(local_rank: int, local_world_size: int) -> None:
    """Every rank on this machine needs a GPU of its own (NCCL cannot share one between ranks).

    Each rank checks the same counts, so all of them stop with the same message before any
    joins the process group, instead of some waiting for ranks that crashed.
    """
    gpus = torch.cuda.device_count()
    ranks = max(local_world_size, local_rank + 1)
    if ranks > gpus:
        raise ValueError(
            f"torchrun started {ranks} processes on this machine but it has {gpus} GPU(s); each rank trains on a GPU "
            f"of its own. Start at most {gpus} (torchrun --nproc_per_node {gpus}), or train on the CPU with gloo "
            "(train.device=cpu)."
        )


def shutdown(context: Distributed) -> None:
    """Leave the process group this process joined (NCCL warns at exit otherwise)."""
    if context.launched and dist.is_initialized():
        dist.destroy_process_group()
