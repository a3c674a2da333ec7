"""Collectives executed on `torch.distributed`: hierarchical algorithms built from subgroups.

A job's ranks are grouped into nodes of `ranks_per_node` consecutive ranks (real nodes, or emulated
ones on one machine: gloo on CPU stands in for NVLink + NICs). Each rank belongs to its node group
and to its rail group (the ranks with the same local index on every node). The hierarchical
algorithms of `comm.cost` then run as two or three calls on those groups:

- all-reduce: reduce-scatter in the node, all-reduce on the rail, all-gather in the node;
- all-gather: all-gather on the rail, then in the node; reduce-scatter: the mirror image;
- all-to-all: an all-to-all in the node that sorts blocks by destination rail, then one on the rail.

`Communicator` picks, per call, our hierarchical algorithm or the backend's built-in one from the
cost model's choice for the job's topology. Results equal the built-ins exactly whenever the
reduction is exact (integers, or floats whose partial sums are representable).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from suanli.comm.cost import PROTOCOLS
from suanli.comm.select import applicable, evaluate, nccl_baseline
from suanli.comm.topology import GroupLinks, group_links, pool_model
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError

HIERARCHICAL = "hierarchical"
BUILTIN = "builtin"


@dataclass(frozen=True)
class NodeLayout:
    """Where this rank sits: its node group and its rail group."""

    rank: int
    world_size: int
    ranks_per_node: int
    node_group: dist.ProcessGroup
    rail_group: dist.ProcessGroup

    @property
    def nodes(self) -> int:
        return self.world_size // self.ranks_per_node

    @property
    def local_rank(self) -> int:
        return self.rank % self.ranks_per_node


def detect_ranks_per_node() -> int:
    """Ranks per node of the running job: LOCAL_WORLD_SIZE (torchrun), else ranks sharing a host
    name (which must be consecutive)."""
    if "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["LOCAL_WORLD_SIZE"])
    hosts: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    per_node = hosts.count(hosts[0])
    if hosts != [h for h in dict.fromkeys(hosts) for _ in range(per_node)]:
        raise SpecError("ranks_per_node: ranks are not placed in equal, consecutive blocks per host")
    return per_node


def node_layout(ranks_per_node: int | None = None) -> NodeLayout:
    """Create the node and rail subgroups (a collective call: every rank must make it)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    per_node = ranks_per_node or detect_ranks_per_node()
    if per_node < 1 or world % per_node:
        raise SpecError(f"ranks_per_node: {per_node} does not divide the world size {world}")
    nodes = world // per_node
    node_group, _ = dist.new_subgroups_by_enumeration(
        [list(range(k * per_node, (k + 1) * per_node)) for k in range(nodes)]
    )
    rail_group, _ = dist.new_subgroups_by_enumeration(
        [list(range(local, world, per_node)) for local in range(per_node)]
    )
    return NodeLayout(rank, world, per_node, node_group, rail_group)


def hierarchical_all_reduce(
    tensor: torch.Tensor, layout: NodeLayout, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM
) -> None:
    """In place: reduce-scatter in the node, all-reduce on the rail, all-gather in the node."""
    r = layout.ranks_per_node
    flat = tensor.reshape(-1)
    padded = torch.zeros(-(-flat.numel() // r) * r, dtype=tensor.dtype, device=tensor.device)
    padded[: flat.numel()] = flat
    shard = torch.empty(padded.numel() // r, dtype=tensor.dtype, device=tensor.device)
    dist.reduce_scatter_single(shard, padded, op=op, group=layout.node_group)
    dist.all_reduce(shard, op=op, group=layout.rail_group)
    dist.all_gather_single(padded, shard, group=layout.node_group)
    tensor.copy_(padded[: flat.numel()].view_as(tensor))


def hierarchical_all_gather(output: torch.Tensor, tensor: torch.Tensor, layout: NodeLayout) -> None:
    """`output` (world_size x tensor, rank order) = every rank's `tensor`: rail first, then node."""
    r, m = layout.ranks_per_node, layout.nodes
    block = tensor.reshape(-1)
    by_node = torch.empty(m * block.numel(), dtype=tensor.dtype, device=tensor.device)
    dist.all_gather_single(by_node, block.contiguous(), group=layout.rail_group)
    gathered = torch.empty(r * m * block.numel(), dtype=tensor.dtype, device=tensor.device)
    dist.all_gather_single(gathered, by_node, group=layout.node_group)
    # gathered is [local][node][block]; rank order is [node][local]
    output.copy_(gathered.view(r, m, -1).transpose(0, 1).reshape(output.shape))


def hierarchical_reduce_scatter(
    output: torch.Tensor,
    tensor: torch.Tensor,
    layout: NodeLayout,
    op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM,
) -> None:
    """`output` = this rank's block of the reduction of every rank's `tensor` (world_size blocks,
    rank order): reduce-scatter in the node by destination rail, then on the rail."""
    r, m = layout.ranks_per_node, layout.nodes
    blocks = tensor.reshape(m, r, -1).transpose(0, 1).contiguous()  # [dest local][dest node][block]
    per_rail = torch.empty(m * blocks.shape[-1], dtype=tensor.dtype, device=tensor.device)
    dist.reduce_scatter_single(per_rail, blocks.reshape(-1), op=op, group=layout.node_group)
    mine = torch.empty(blocks.shape[-1], dtype=tensor.dtype, device=tensor.device)
    dist.reduce_scatter_single(mine, per_rail, op=op, group=layout.rail_group)
    output.copy_(mine.view_as(output))


def hierarchical_all_to_all(output: torch.Tensor, tensor: torch.Tensor, layout: NodeLayout) -> None:
    """Block i of `tensor` goes to rank i; `output` block j comes from rank j. First an all-to-all
    in the node hands each local rank the blocks bound for its rail, then one on the rail."""
    r, m = layout.ranks_per_node, layout.nodes
    blocks = tensor.reshape(m, r, -1).transpose(0, 1).contiguous()  # [dest local][dest node][block]
    sorted_by_rail = torch.empty_like(blocks)  # [src local][dest node][block]
    dist.all_to_all_single(sorted_by_rail, blocks, group=layout.node_group)
    outgoing = sorted_by_rail.transpose(0, 1).contiguous()  # [dest node][src local][block]
    incoming = torch.empty_like(outgoing)  # [src node][src local][block] = rank order
    dist.all_to_all_single(incoming, outgoing, group=layout.rail_group)
    output.copy_(incoming.view(output.shape))


class Communicator:
    """Runs each collective with the faster of our hierarchical algorithm and the backend's
    built-in one (NCCL, HCCL, gloo...), as the cost model predicts for this job's topology."""

    def __init__(self, layout: NodeLayout, links: GroupLinks | None = None) -> None:
        self.layout = layout
        self.links = links

    @classmethod
    def for_cluster(cls, layout: NodeLayout, cluster: Cluster, pool: str) -> Communicator:
        """Model the job as `layout.nodes` nodes of `pool` in `cluster`."""
        links = group_links(pool_model(cluster, pool), layout.world_size, layout.ranks_per_node)
        return cls(layout, links)

    def algorithm(self, collective: str, message_bytes: float) -> str:
        """`hierarchical` or `builtin` for one call. Without a cluster model, hierarchical
        whenever the job spans several nodes of several ranks."""
        if self.layout.nodes == 1 or self.layout.ranks_per_node == 1:
            return BUILTIN
        if self.links is None:
            return HIERARCHICAL
        size = float(max(1, message_bytes))
        ours = min(
            evaluate(collective, HIERARCHICAL, protocol, size, self.links).time_s
            for protocol in PROTOCOLS
            if applicable(collective, HIERARCHICAL, protocol, self.links)
        )
        return HIERARCHICAL if ours < nccl_baseline(collective, size, self.links).time_s else BUILTIN

    def all_reduce(self, tensor: torch.Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> None:
        if self.algorithm("all_reduce", tensor.numel() * tensor.element_size()) == HIERARCHICAL:
            hierarchical_all_reduce(tensor, self.layout, op)
        else:
            dist.all_reduce(tensor, op=op)

    def all_gather(self, output: torch.Tensor, tensor: torch.Tensor) -> None:
        if self.algorithm("all_gather", output.numel() * output.element_size()) == HIERARCHICAL:
            hierarchical_all_gather(output, tensor, self.layout)
        else:
            dist.all_gather_single(output, tensor)

    def reduce_scatter(
        self, output: torch.Tensor, tensor: torch.Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM
    ) -> None:
        if self.algorithm("reduce_scatter", tensor.numel() * tensor.element_size()) == HIERARCHICAL:
            hierarchical_reduce_scatter(output, tensor, self.layout, op)
        else:
            dist.reduce_scatter_single(output, tensor, op=op)

    def all_to_all(self, output: torch.Tensor, tensor: torch.Tensor) -> None:
        if self.algorithm("all_to_all", tensor.numel() * tensor.element_size()) == HIERARCHICAL:
            hierarchical_all_to_all(output, tensor, self.layout)
        else:
            dist.all_to_all_single(output, tensor)
