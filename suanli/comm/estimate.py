"""Fast collective and point-to-point time estimates: the entry points the planner calls.

`collective_time_s` returns the time of the best algorithm our selection finds (`comm.select`) for a
group placed `ranks_per_node` per node on consecutive nodes of one pool. Per-(cluster, pool) link
parameters are derived once (`topology.pool_model`, cached by cluster identity) and every
(collective, size, group) answer is memoised, so a planner search costs a few dictionary lookups
per call. Ranks within a node use NVLink / the node fabric, ranks on different nodes their NICs.
"""

from __future__ import annotations

from dataclasses import replace

from suanli.comm import cost
from suanli.comm.links import intra_bandwidth
from suanli.comm.select import COLLECTIVES, check_request, select
from suanli.comm.topology import group_links, pool_model
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError

__all__ = ["COLLECTIVES", "collective_time_s", "p2p_time_s", "placed_collective_time_s"]


def collective_time_s(
    cluster: Cluster, pool: str, collective: str, message_bytes: float, n_ranks: int, ranks_per_node: int
) -> float:
    """Seconds for one `collective` of `message_bytes` (nccl-tests size convention) over `n_ranks`
    ranks, `ranks_per_node` per node, in `pool`: the best algorithm's predicted time."""
    check_request(collective, message_bytes)
    links = group_links(pool_model(cluster, pool), n_ranks, ranks_per_node)
    if n_ranks == 1:
        return 0.0
    return select(collective, float(message_bytes), links).time_s


def p2p_time_s(cluster: Cluster, pool_a: str, pool_b: str, message_bytes: float, same_node: bool) -> float:
    """Seconds to send `message_bytes` from a rank in `pool_a` to one in `pool_b` (pipeline
    stage boundaries). Same node: the intra-node link; else the slower of the two NIC rails
    plus the switch hops between the pools' nodes."""
    if not message_bytes > 0:
        raise SpecError(f"message size: must be > 0 bytes, got {message_bytes!r}")
    a, b = pool_model(cluster, pool_a), pool_model(cluster, pool_b)
    if same_node:
        if pool_a != pool_b:
            raise SpecError(f"p2p: pools {pool_a!r} and {pool_b!r} cannot share a node")
        latency_us = max(a.intra_latency_us, 1.0)
        return cost.p2p_s(
            message_bytes, a.intra_by_ranks[min(1, len(a.intra_by_ranks) - 1)].ring_gb_s, latency_us
        )
    rail_gb_s = min(a.nic_bw_by_ranks[0], b.nic_bw_by_ranks[0])
    hops = 1 if pool_a == pool_b and a.nodes <= a.shape.nodes_per_leaf else 3
    latency_us = cost.protocol_net_latency_us() + hops * a.shape.hop_latency_us
    return cost.p2p_s(message_bytes, rail_gb_s, latency_us)


def placed_collective_time_s(
    cluster: Cluster,
    pool: str,
    collective: str,
    message_bytes: float,
    members: list[tuple[int, ...]],
    leaves: int,
) -> float:
    """Seconds for one `collective` over a concrete placement: `members` lists the accelerator
    indices used on each node, `leaves` the leaf switches those nodes sit under. The intra-node
    bandwidth is that of the busiest, worst-connected node's members on the node's links graph;
    the NICs those of the node with the most members; the hops those of the leaves spanned."""
    check_request(collective, message_bytes)
    n_ranks = sum(len(m) for m in members)
    if n_ranks < 2:
        return 0.0
    model = pool_model(cluster, pool)
    node = cluster.node_type_of(pool)
    per_node = max(len(m) for m in members)
    base = group_links(model, min(n_ranks, per_node * len(members)), per_node)
    intra = min(
        (intra_bandwidth(node, m) for m in members if len(m) > 1), key=lambda b: b.ring_gb_s, default=None
    )
    nodes = len(members)
    spanned = max(1, leaves)
    links = replace(
        base,
        n_ranks=n_ranks,
        nodes=nodes,
        switch_hops=0 if nodes == 1 else 1 if spanned == 1 else 3,
        spine_share=0.0 if spanned == 1 else (nodes - nodes / spanned) / max(1, nodes - 1),
    )
    if intra is not None:
        links = replace(
            links,
            intra_bw_gb_s=intra.ring_gb_s,
            intra_line_bw_gb_s=intra.ring_line_gb_s,
            intra_a2a_bw_gb_s=intra.a2a_gb_s,
            intra_a2a_line_bw_gb_s=intra.a2a_line_gb_s,
            intra_class=intra.link_class,
            in_switch_reduction=links.in_switch_reduction and intra.link_class == "nvlink",
            nvidia_nvlink=links.nvidia_nvlink and intra.link_class == "nvlink",
        )
    return select(collective, float(message_bytes), links).time_s
