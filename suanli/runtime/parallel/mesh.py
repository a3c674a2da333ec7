"""The device mesh of a layout: which pipeline stage, data-parallel, context and tensor rank each
process is, and the process groups every parallel dimension communicates over.

Ranks are laid out pp-major and tp-minor (rank = ((pp·dp + d)·cp + c)·tp + t), as Megatron-LM and
torchtitan do, so tensor parallelism, the most talkative dimension, stays within a node. Expert
parallelism is folded into data parallelism: the ep data-parallel ranks d with the same d // ep hold
one full set of experts between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from suanli.spec.plan import Layout

ProcessGroup = dist.ProcessGroup


@dataclass(frozen=True)
class Coordinates:
    pp: int
    dp: int
    cp: int
    tp: int


def coordinates(rank: int, layout: Layout) -> Coordinates:
    """Where `rank` sits in the (pp, dp, cp, tp) grid."""
    rank, tp = divmod(rank, layout.tp)
    rank, cp = divmod(rank, layout.cp)
    pp, dp = divmod(rank, layout.dp)
    return Coordinates(pp=pp, dp=dp, cp=cp, tp=tp)


def rank_of(c: Coordinates, layout: Layout) -> int:
    return ((c.pp * layout.dp + c.dp) * layout.cp + c.cp) * layout.tp + c.tp


@dataclass
class Mesh:
    """A layout on the processes of this job; `None` groups are dimensions of size 1."""

    layout: Layout
    coords: Coordinates
    device_mesh: DeviceMesh
    dp_replicate: int
    pp_group: ProcessGroup | None
    cp_group: ProcessGroup | None
    dp_cp_group: ProcessGroup | None  # replicas of the dense parameters (data × context ranks)
    ep_group: ProcessGroup | None  # the ranks that share one set of experts
    expert_replica_group: ProcessGroup | None  # the ranks that hold the same experts

    @property
    def tp_mesh(self) -> DeviceMesh:
        return self.device_mesh["tp"]

    @property
    def fsdp_mesh(self) -> DeviceMesh:
        """FSDP2 shards over data × context ranks; with dp_replicate > 1, HSDP replicates across groups."""
        if self.dp_replicate > 1:
            return self.device_mesh["dp_replicate", "dp_shard_cp"]
        return self.device_mesh["dp_shard_cp"]


def build_mesh(layout: Layout, device_type: str, dp_replicate: int = 1) -> Mesh:
    """The mesh and groups of `layout`; every rank must call this, in the same order."""
    world = dist.get_world_size()
    assert world == layout.world_size, f"layout needs {layout.world_size} processes, {world} run"
    shape = (layout.pp, dp_replicate, layout.dp // dp_replicate, layout.cp, layout.tp)
    names = ("pp", "dp_replicate", "dp_shard", "cp", "tp")
    device_mesh = init_device_mesh(device_type, shape, mesh_dim_names=names)
    device_mesh["dp_shard", "cp"]._flatten("dp_shard_cp")
    dp_cp = device_mesh["dp_replicate", "dp_shard", "cp"]._flatten("dp_cp")
    coords = coordinates(dist.get_rank(), layout)
    return Mesh(
        layout=layout,
        coords=coords,
        device_mesh=device_mesh,
        dp_replicate=dp_replicate,
        pp_group=device_mesh["pp"].get_group() if layout.pp > 1 else None,
        cp_group=device_mesh["cp"].get_group() if layout.cp > 1 else None,
        dp_cp_group=dp_cp.get_group() if layout.dp * layout.cp > 1 else None,
        ep_group=_expert_groups(layout, coords, replicas=False),
        expert_replica_group=_expert_groups(layout, coords, replicas=True),
    )


def _expert_groups(layout: Layout, coords: Coordinates, replicas: bool) -> ProcessGroup | None:
    """EP groups (consecutive data-parallel ranks) or expert-replica groups (same ep rank); each rank
    creates every group, as `new_group` requires, and keeps its own."""
    ep = layout.ep
    if ep == 1 or (replicas and layout.dp == ep):
        return None
    mine = None
    for pp in range(layout.pp):
        for cp in range(layout.cp):
            for tp in range(layout.tp):
                blocks = (
                    [range(e, layout.dp, ep) for e in range(ep)]
                    if replicas
                    else [range(b, b + ep) for b in range(0, layout.dp, ep)]
                )
                for block in blocks:
                    ranks = [rank_of(Coordinates(pp, d, cp, tp), layout) for d in block]
                    group = dist.new_group(ranks)
                    if (pp, cp, tp) == (coords.pp, coords.cp, coords.tp) and coords.dp in block:
                        mine = group
    return mine
