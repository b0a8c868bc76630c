"""Process-group setup for ``torchrun`` and a gradient-carrying all_gather.

Under ``torchrun --nproc_per_node N`` every process reads RANK / WORLD_SIZE / LOCAL_RANK from the
environment; NCCL is used on GPUs and gloo on CPUs. A plain ``python`` run is a world of one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    chosen = device or ("cuda" if use_cuda else "cpu")
    if use_cuda and world_size > 1:
        torch.cuda.set_device(local_rank)
        chosen = f"cuda:{local_rank}"
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, timeout=dt.timedelta(hours=2))
        logger.info("rank %d/%d joined the %s process group", rank, world_size, backend)
    return DistContext(rank, world_size, local_rank, chosen)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``value`` over ranks (a new tensor, no gradient)."""
    total = value.detach().clone()
    if ctx.distributed:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


class _GatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's tensor. Backward: sum the incoming gradients over ranks
    and hand each rank its own slice, so a document's gradient includes the losses of the queries
    on other ranks that scored it (the exact gradient of the global in-batch loss)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        pieces = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(pieces, tensor.contiguous())
        return torch.cat(pieces, dim=0)  # (world * rows, ...)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()  # (world * rows, ...)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]  # (rows, ...)


def gather_with_grad(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """(rows, ...) on each rank -> (world * rows, ...) in rank order, differentiable."""
    if not ctx.distributed:
        return tensor
    gathered: torch.Tensor = _GatherWithGrad.apply(tensor)
    return gathered


def gather_objects(value: object, ctx: DistContext) -> list[object]:
    """Every rank's ``value`` (picklable), in rank order."""
    if not ctx.distributed:
        return [value]
    out: list[object] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: object, ctx: DistContext) -> object:
    """Rank 0's ``value`` on every rank."""
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
