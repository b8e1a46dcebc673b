"""Several processes under ``torchrun``: who this process is, its share of the work, and the others' results.

``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``);
:func:`setup_distributed` joins that process group (NCCL with CUDA, else gloo), or returns a
one-process context outside ``torchrun``. :func:`shard` gives a rank its share of a list;
:func:`gather` collects one picklable object per rank on every rank (so rank 0 can report for all).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

__all__ = ["DistContext", "env_rank", "gather", "setup_distributed", "shard", "teardown"]

T = TypeVar("T")


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_rank() -> tuple[int, int]:
    """(rank, world size) that ``torchrun`` gave this process ((0, 1) outside it)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def setup_distributed() -> DistContext:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``), or use one already initialised; a single process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    log.debug("joined process group: rank %d of %d (%s)", dist.get_rank(), world, backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, initialized_here=True)


def teardown(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup_distributed` joined it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: list[T], ctx: DistContext) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th, from its rank."""
    return items[ctx.rank::ctx.world_size]


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` in one process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
