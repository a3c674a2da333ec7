"""Gradient reduction for the layouts FSDP2/DDP do not cover, and a gradient-norm clip that sums
over every rank holding a distinct part of the model (pipeline stages, expert shards, DTensor shards)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate


def _local(grad: torch.Tensor) -> torch.Tensor:
    return grad.to_local() if isinstance(grad, DTensor) else grad


@dataclass
class Reduction:
    """Sum the gradients of `params` over `group` (None: this rank alone), then divide by `divisor`.

    All gradients go in one flat buffer per dtype and one all-reduce, as DDP's buckets do: a
    collective per parameter would pay the collective's latency once per tensor."""

    params: list[nn.Parameter]
    group: dist.ProcessGroup | None
    divisor: int

    @torch.no_grad()
    def apply(self) -> None:
        grads = [_local(p.grad) for p in self.params if p.grad is not None]
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for grad in grads:
            by_dtype.setdefault(grad.dtype, []).append(grad)
        for same in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in same])
            if self.group is not None:
                dist.all_reduce(flat, group=self.group)
            flat.div_(self.divisor)
            for grad, part in zip(same, flat.split([g.numel() for g in same]), strict=True):
                grad.copy_(part.view_as(grad))


def _squared_norm(grads: Iterable[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Σ of squared gradient entries across the shards of each gradient: local sums, grouped by the
    mesh dimensions a gradient is sharded over, then one all-reduce per such dimension (not one
    per parameter; replicated dimensions are not summed)."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    sharded: dict[tuple[int, tuple[int, ...]], tuple[DeviceMesh, torch.Tensor]] = {}
    for grad in grads:
        local = _local(grad).double().square().sum()
        if not isinstance(grad, DTensor):
            total += local
            continue
        mesh = grad.device_mesh
        if any(placement.is_partial() for placement in grad.placements):  # unreduced: sum it first
            grad = grad.redistribute(mesh, [Replicate() if p.is_partial() else p for p in grad.placements])
            local = grad.to_local().double().square().sum()
        # after the above every placement is a shard (plain or FSDP2's strided one) or a replica
        dims = tuple(i for i, placement in enumerate(grad.placements) if not placement.is_replicate())
        key = (id(mesh), dims)
        if key in sharded:
            sharded[key] = (mesh, sharded[key][1] + local)
        else:
            sharded[key] = (mesh, local)
    for (_, dims), (mesh, part) in sharded.items():
        for dim in dims:
            dist.all_reduce(part, group=mesh.get_group(dim))
        total += part
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
