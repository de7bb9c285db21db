"""Distributed data parallel helpers for the trainer: ranks under ``torchrun`` (gloo on CPU, nccl on CUDA).

Ranks train on disjoint shards of each step's global batch; only rank 0 writes files, meters energy and runs the
monitor (:mod:`ssl_nav.learning.trainer`). Outside ``torchrun`` (``WORLD_SIZE`` unset or 1) everything here is a
no-op on a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistInfo:
    """This process's place in the job; ``owns_group`` when :func:`init_distributed` created the process group
    (and so :func:`shutdown` destroys it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device_kind: str) -> DistInfo:
    """Join (or create, from torchrun's environment) the process group; a single process when not distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def all_reduce_sum(dd: DistInfo, t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the ranks in place (nothing when not distributed)."""
    if dd.active:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def barrier(dd: DistInfo) -> None:
    if dd.active:
        import torch.distributed as dist

        dist.barrier()


def shutdown(dd: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if dd.owns_group:
        import torch.distributed as dist

        dist.destroy_process_group()
