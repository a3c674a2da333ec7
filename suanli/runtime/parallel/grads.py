"""Gradient reduction for the layouts FSDP2/DDP do not cover, and a gradient-norm clip that sums
over every rank holding a distinct part of the model (pipeline stages, expert shards, DTensor shards)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor


def _local(grad: torch.Tensor) -> torch.Tensor:
    return grad.to_local() if isinstance(grad, DTensor) else grad


@dataclass
class Reduction:
    """Sum the gradients of `params` over `group` (None: this rank alone), then divide by `divisor`."""

    params: list[nn.Parameter]
    group: dist.ProcessGroup | None
    divisor: int

    @torch.no_grad()
    def apply(self) -> None:
        for param in self.params:
            if param.grad is None:
                continue
            local = _local(param.grad)
            if self.group is not None:
                dist.all_reduce(local, group=self.group)
            local.div_(self.divisor)


def _squared_norm(grads: Iterable[torch.Tensor], device: torch.device) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64, device=device)
    for grad in grads:
        norm = torch.linalg.vector_norm(grad.float())
        if isinstance(norm, DTensor):  # a sharded gradient: reduce the partial norms over its mesh
            norm = norm.full_tensor()
        total += norm.double() ** 2
    return total


@torch.no_grad()
def clip_grad_norm(
    params: list[nn.Parameter],
    max_norm: float,
    device: torch.device,
    *,
    stage_group: dist.ProcessGroup | None = None,
    expert_params: list[nn.Parameter] | None = None,
    expert_group: dist.ProcessGroup | None = None,
) -> float:
    """Scale all gradients so that their global L2 norm is at most `max_norm` (Pascanu et al. 2013);
    returns the norm before clipping. Pipeline stages hold disjoint layers (summed over
    `stage_group`); expert shards differ across the EP group (summed over `expert_group`)."""
    experts = {id(p) for p in expert_params or []}
    dense = [p.grad for p in params if p.grad is not None and id(p) not in experts]
    sharded = [p.grad for p in params if p.grad is not None and id(p) in experts]
    squared = _squared_norm(dense, device)
    if sharded:
        expert_squared = _squared_norm(sharded, device)
        if expert_group is not None:
            dist.all_reduce(expert_squared, group=expert_group)
        squared += expert_squared
    if stage_group is not None:
        dist.all_reduce(squared, group=stage_group)
    norm = math.sqrt(float(squared))
    coefficient = max_norm / (norm + 1e-6)
    if coefficient < 1:
        for param in params:
            if param.grad is not None:
                param.grad.mul_(coefficient)
    return norm
