"""Data-parallel communication as seen by an algorithm.

Every worker holds the *same global batch* (same indices, same augmentation and MixUp
draws, from a generator seeded identically on every worker) and computes forwards and
backwards only on its own shard of it. Anything that needs the whole batch (MixUp
partners, pseudo-labels of partners, normalisers such as Meta-Semi's sum of weights)
goes through this object. With that discipline a meta step on W workers with B/W
samples each is the same computation as on one worker with B samples, which plain DDP
cannot promise: functional calls and ``autograd.grad`` bypass its hooks.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


class Comm:
    """Single-process communication: every collective is the identity."""

    rank: int = 0
    world_size: int = 1

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This worker's contiguous slice of a global batch: [B, ...] -> [B / world_size, ...]."""
        if self.world_size == 1:
            return t
        n = t.shape[0]
        if n % self.world_size:
            raise ValueError(f"global batch of {n} is not divisible by {self.world_size} workers")
        k = n // self.world_size
        return t[self.rank * k:(self.rank + 1) * k]

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate every worker's shard in rank order: [b, ...] -> [b * world_size, ...]."""
        return t

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over workers (returns a new tensor)."""
        return t

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean of ``t`` over workers (returns a new tensor)."""
        return t

    def broadcast_(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Overwrite ``t`` in place with rank ``src``'s value."""
        return t

    def all_reduce_mean_autograd(self, t: torch.Tensor) -> torch.Tensor:
        """Mean over workers that autograd differentiates through (its backward all-reduces the
        incoming gradient), for second-order meta steps: a virtual step must use the global
        gradient, and the hold-out gradient must flow back to every worker's shard."""
        return t


class TorchDistComm(Comm):
    """Collectives over an initialised ``torch.distributed`` process group (gloo or nccl)."""

    def __init__(self) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=0)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.all_reduce_sum(t) / self.world_size

    def broadcast_(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        dist.broadcast(t, src=src)
        return t

    def all_reduce_mean_autograd(self, t: torch.Tensor) -> torch.Tensor:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(t, op=dist.ReduceOp.SUM) / self.world_size


def make_comm() -> Comm:
    """The communicator for this process: distributed if a process group is up, else local."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return TorchDistComm()
    return Comm()
