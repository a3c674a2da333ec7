"""α-β cost models of collective algorithms: one pure function per algorithm.

Every function takes the message size in bytes (nccl-tests convention: the all-reduce buffer, the
all-gather output, the reduce-scatter input, the all-to-all buffer per rank), the `GroupLinks` of the
group (what it crosses, from `topology.group_links`) and a `Proto` (launch and per-step latencies,
payload share of the link: NCCL's LL / LL128 / Simple), and returns seconds. Ranks are placed
`ranks_per_node` per node on consecutive nodes.

Models follow Thakur, Rabenseifner & Gropp, "Optimization of Collective Communication Operations in
MPICH" (IJHPCA 2005) for ring, recursive halving/doubling, Bruck and binomial trees; NCCL's
src/graph/tuning.cc for the step counts and latencies of ring, tree, NVLS, NVLS-tree and CollNet;
the 2-D hierarchical all-reduce of Jia et al., "Highly Scalable Deep Learning Training System with
Mixed-Precision" (2018) and the hierarchical all-to-all of Tutel / DeepSpeed-MoE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from suanli.comm.topology import GroupLinks, calibration

US = 1e-6
NVLS_BUSBW_OVER_LINK = calibration()["nvls_busbw_over_link"]["value"]
NET_OVERHEAD_US = calibration()["nccl_latency_us"]["net_overhead"]
BYTES_PER_US_PER_GB_S = 1e3  # 1 GB/s moves 1,000 bytes per µs


@dataclass(frozen=True)
class Proto:
    """A protocol as the cost model sees it: µs to launch, µs per intra-node and per inter-node
    step (fabric switch hops included), and the share of link bandwidth that carries payload."""

    name: str
    launch_us: float
    intra_step_us: float
    net_step_us: float
    bw_factor: float
    bw_cap_gb_s: float = math.inf  # LL: NCCL's llMaxBw, the most an LL transfer moves


PROTOCOLS = ("ll", "ll128", "simple")


def ll_max_bw_gb_s(g: GroupLinks) -> float:
    """NCCL's cap on LL bandwidth (tuning.cc llMaxBws): by link generation on one node, by node
    count beyond (Intel-host row)."""
    table = calibration()["nccl_tuning"]["ll_max_bw_gb_s"]
    if g.nodes == 1:
        return table["one_node"].get(g.link, table["one_node"]["other"])
    return table["two_nodes" if g.nodes == 2 else "more_nodes"]


@lru_cache(maxsize=65536)
def protocol(family: str, name: str, g: GroupLinks, share_family: str | None = None) -> Proto:
    """NCCL's latencies of protocol `name` for a latency `family` (ring | tree | nvls | nvls_tree |
    collnet | pat), plus the group's fabric latency; the payload share of `share_family` (default:
    the same family; ring for families NCCL gives no share) and the LL cap."""
    lat = calibration()["nccl_latency_us"]
    bw = calibration()["nccl_protocol_bw"]
    intra_class = "pci" if g.intra_class == "pci" else "nvlink"
    intra_table = lat[intra_class].get(family) or lat[intra_class]["ring"]
    net_table = lat["net"].get(family) or lat["net"]["ring"]
    base = lat["base"].get(family, lat["base"]["ring"])
    intra_us = max(intra_table.get(name, intra_table.get("simple", 0.0)), g.intra_latency_us)
    net_us = net_table.get(name, net_table.get("simple", 0.0)) + g.fabric_latency_us
    share = bw.get(share_family or family, bw["ring"]).get(name, 1.0)
    cap = ll_max_bw_gb_s(g) if name == "ll" else math.inf
    return Proto(name, base.get(name, base.get("simple", 0.0)), intra_us, net_us, share, cap)


def _rate(bw_gb_s: float, p: Proto) -> float:
    """Payload bandwidth of a link of `bw_gb_s` under protocol `p`: its share, at most the LL cap."""
    return min(bw_gb_s * p.bw_factor, p.bw_cap_gb_s)


def _log2_ceil(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def _transfer_us(volume_bytes: float, bw_gb_s: float) -> float:
    return volume_bytes / (bw_gb_s * BYTES_PER_US_PER_GB_S) if volume_bytes > 0 else 0.0


def _ring_bw_gb_s(g: GroupLinks) -> float:
    """A node-contiguous ring: NVLink inside nodes, one crossing per node per channel, channels
    spread over the group's NICs; a ring's neighbours share a leaf, so oversubscription is not hit."""
    if g.nodes == 1:
        return g.intra_bw_gb_s
    if g.ranks_per_node == 1:
        return g.node_net_bw_gb_s
    return min(g.intra_bw_gb_s, g.node_net_bw_gb_s)


def _uniform_net_bw_per_rank_gb_s(g: GroupLinks) -> float:
    """Per-rank NIC bandwidth for traffic spread evenly over all nodes: the share that must leave
    the leaf is limited by the leaf's uplinks (downlink : uplink = oversubscription)."""
    return g.net_bw_per_rank_gb_s / max(1.0, g.spine_share * g.oversubscription)


def _step_net_bw_per_rank_gb_s(g: GroupLinks, node_distance: int) -> float:
    """Per-rank NIC bandwidth of a pairwise-exchange step between nodes `node_distance` apart:
    when partners sit under different leaves, every node's traffic crosses the leaf uplinks."""
    crosses_spine = node_distance >= g.nodes_per_leaf
    return g.net_bw_per_rank_gb_s / (g.oversubscription if crosses_spine else 1.0)


# ---------------------------------------------------------------------------------------------
# all-reduce


def ring_all_reduce_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Ring reduce-scatter + all-gather: 2(n-1) steps, each rank sends 2(n-1)/n of the buffer.
    Step latency as NCCL tuning.cc: 2·nodes network steps, the rest intra-node."""
    n = g.n_ranks
    steps = 2 * (n - 1)
    net_steps = 2 * g.nodes if g.nodes > 1 else 0
    latency_us = p.launch_us + max(0, steps - net_steps) * p.intra_step_us + net_steps * p.net_step_us
    volume = 2 * (n - 1) / n * message_bytes
    return (latency_us + _transfer_us(volume, _rate(_ring_bw_gb_s(g), p))) * US


def double_binary_tree_all_reduce_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """NCCL's tree: a chain inside each node, two complementary binary trees across nodes
    (Sanders et al. 2009), reduce then broadcast pipelined. Each node moves the buffer once up and
    once down per tree half: algbw = half the bottleneck on >2 nodes (NCCL tuning.cc ratio .5)."""
    r, m = g.ranks_per_node, g.nodes
    latency_us = p.launch_us + 2 * ((r - 1) * p.intra_step_us + _log2_ceil(m) * p.net_step_us)
    intra = g.intra_bw_gb_s if r > 1 else math.inf
    if m == 1:
        algbw = 0.5 * intra
    elif m == 2:
        algbw = min(0.5 * intra, g.node_net_bw_gb_s)
    else:
        algbw = 0.5 * min(intra, g.node_net_bw_gb_s)
    return (latency_us + _transfer_us(message_bytes, _rate(algbw, p))) * US


def _nvls_algbw_gb_s(g: GroupLinks) -> float:
    r = g.ranks_per_node
    busbw = NVLS_BUSBW_OVER_LINK * g.intra_bw_gb_s
    return busbw * r / (2 * (r - 1))


def nvls_all_reduce_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """NVLink SHARP inside a node: the NVSwitch reduces (multimem ld_reduce) and multicasts, busbw =
    1.28 x the NVLink bandwidth (SimAI calbusbw.h, H100 475 GB/s). Across nodes (NCCL NVLS with
    CollNet/SHARP) the switches of the fabric reduce: each node sends and receives the buffer once
    over its NICs, which cap algbw."""
    algbw = _nvls_algbw_gb_s(g)
    latency_us = p.launch_us + p.intra_step_us
    if g.nodes > 1:
        algbw = min(algbw, g.node_net_bw_gb_s)
        latency_us += p.net_step_us
    return (latency_us + _transfer_us(message_bytes, algbw)) * US


def nvls_tree_all_reduce_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """NVLS inside nodes, a double binary tree across them (NCCL NVLSTree). Beyond 2 nodes a node
    is inside one tree and a leaf of the other: it moves twice the buffer each way over its NICs,
    so busbw stays at the NIC bandwidth ('peak is the network 400 GB/s', nccl-tests#309). On 2 nodes
    each node roots one tree and is the only child in the other: the buffer crosses the network once
    each way (algbw = NIC bandwidth, busbw up to 2(n-1)/n of it: 'Ring: (S/N) x 2(N-1), Tree: S',
    nccl#812; 'nvlstree ... can indeed go beyond the network bottleneck', nccl-tests#196), which
    NCCL's tuning mirrors by doubling NVLSTree's network bandwidth on <= 2 nodes (tuning.cc:319)."""
    n = g.n_ranks
    latency_us = p.launch_us + p.intra_step_us + 2 * _log2_ceil(g.nodes) * p.net_step_us
    net_algbw = g.node_net_bw_gb_s if g.nodes == 2 else g.node_net_bw_gb_s * n / (2 * (n - 1))
    algbw = min(_nvls_algbw_gb_s(g), net_algbw)
    return (latency_us + _transfer_us(message_bytes, algbw)) * US


def in_network_all_reduce_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """SHARP (NCCL CollNet chain): reduce inside the node, the switches reduce across nodes, so
    each node sends and receives the buffer once: algbw up to the node NIC bandwidth."""
    r = g.ranks_per_node
    latency_us = p.launch_us + 2 * (r - 1) * p.intra_step_us + p.net_step_us
    intra_algbw = (
        _nvls_algbw_gb_s(g)
        if g.in_switch_reduction and r > 1
        else (g.intra_bw_gb_s * r / (2 * (r - 1)) if r > 1 else math.inf)
    )
    algbw = min(intra_algbw, g.node_net_bw_gb_s)
    return (latency_us + _transfer_us(message_bytes, _rate(algbw, p))) * US


def _halving_reduce_scatter_us(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Recursive halving, nearest partners first: the big early steps stay on the intra-node
    links, the late small ones go over the rails (partners share the local index)."""
    r, m = g.ranks_per_node, g.nodes
    intra_steps, net_steps = _log2_ceil(r), _log2_ceil(m)
    time_us = intra_steps * p.intra_step_us + net_steps * p.net_step_us
    if r > 1:
        time_us += _transfer_us((r - 1) / r * message_bytes, _rate(g.intra_bw_gb_s, p))
    for step in range(net_steps):
        chunk = message_bytes / r / 2 ** (step + 1)
        time_us += _transfer_us(chunk, _rate(_step_net_bw_per_rank_gb_s(g, 2**step), p))
    if r & (r - 1) or m & (m - 1):  # not a power of two: fold the extra ranks in first (MPICH)
        time_us += p.net_step_us + _transfer_us(message_bytes, _rate(g.net_bw_per_rank_gb_s, p))
    return time_us


def rabenseifner_all_reduce_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Recursive-halving reduce-scatter + recursive-doubling all-gather (Rabenseifner 2004):
    2·log2(n) steps, bandwidth-optimal volume, partners far apart cross the spine."""
    return (p.launch_us + 2 * _halving_reduce_scatter_us(message_bytes, g, p)) * US


def hierarchical_all_reduce_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """2-D: intra-node reduce-scatter, ring all-reduce of 1/r of the buffer across nodes on every
    rail at once, intra-node all-gather. With NVSwitch reduction the intra phases run through the
    switch."""
    r, m = g.ranks_per_node, g.nodes
    if r > 1 and g.in_switch_reduction and p.name == "simple":
        nvls = NVLS_BUSBW_OVER_LINK * g.intra_bw_gb_s
        nvls_step_us = calibration()["nccl_latency_us"]["nvlink"]["nvls"]["simple"]
        intra_us = 2 * nvls_step_us + _transfer_us(2 * (r - 1) / r * message_bytes, nvls)
    elif r > 1:
        intra_us = 2 * (r - 1) * p.intra_step_us + _transfer_us(
            2 * (r - 1) / r * message_bytes, _rate(g.intra_bw_gb_s, p)
        )
    else:
        intra_us = 0.0
    shard = message_bytes / r
    rail_bw = _rate(g.net_bw_per_rank_gb_s, p)
    ring_us = 2 * (m - 1) * p.net_step_us + _transfer_us(2 * (m - 1) / m * shard, rail_bw)
    return (p.launch_us + intra_us + ring_us) * US


# ---------------------------------------------------------------------------------------------
# all-gather and reduce-scatter (message = the gathered output / the reduce-scatter input)


def ring_all_gather_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Ring: n-1 steps, each rank receives (n-1)/n of the output (NCCL's only AG algorithm off
    NVLS). Reduce-scatter costs the same."""
    n = g.n_ranks
    steps, net_steps = n - 1, g.nodes - 1
    latency_us = p.launch_us + (steps - net_steps) * p.intra_step_us + net_steps * p.net_step_us
    return (latency_us + _transfer_us((n - 1) / n * message_bytes, _rate(_ring_bw_gb_s(g), p))) * US


ring_reduce_scatter_s = ring_all_gather_s


def recursive_doubling_all_gather_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Recursive doubling, farthest partners first: log2(n) steps; small blocks cross the rails,
    the doubled blocks travel on intra-node links last. Reduce-scatter (recursive halving,
    nearest first) is its mirror image and costs the same."""
    return (p.launch_us + _halving_reduce_scatter_us(message_bytes, g, p)) * US


recursive_halving_reduce_scatter_s = recursive_doubling_all_gather_s


def bruck_all_gather_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Bruck et al. 1997: ceil(log2 n) steps for any n, distances 1, 2, 4, ...: blocks doubling in
    size cross the network, so each rank pulls (n-r)/n of the output over its own NIC."""
    n, r, m = g.n_ranks, g.ranks_per_node, g.nodes
    time_us = p.launch_us + _log2_ceil(r) * p.intra_step_us + _log2_ceil(m) * p.net_step_us
    block = message_bytes / n
    time_us += _transfer_us((r - 1) * block, _rate(g.intra_bw_gb_s, p)) if r > 1 else 0.0
    time_us += _transfer_us((n - r) * block, _rate(_uniform_net_bw_per_rank_gb_s(g), p))
    return time_us * US


def hierarchical_all_gather_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """All-gather across nodes on every rail (ring), then inside nodes (ring). Reduce-scatter is
    the mirror (intra first) and costs the same."""
    r, m = g.ranks_per_node, g.nodes
    time_us = p.launch_us + (r - 1) * p.intra_step_us + (m - 1) * p.net_step_us
    time_us += _transfer_us((m - 1) / m * message_bytes / r, _rate(g.net_bw_per_rank_gb_s, p))
    time_us += _transfer_us((r - 1) / r * message_bytes, _rate(g.intra_bw_gb_s, p)) if r > 1 else 0.0
    return time_us * US


hierarchical_reduce_scatter_s = hierarchical_all_gather_s


def nvls_all_gather_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """NVSwitch multicast inside one node: each rank's block is written once and the switch fans
    it out, but every rank still receives (r-1)/r of the output over its own link, so busbw stays at
    the link's achievable rate ('370GB/s ... for non-allreduce operations', nccl-tests#212); the gain
    over a ring is the single step."""
    r = g.ranks_per_node
    return (p.launch_us + p.intra_step_us + _transfer_us((r - 1) / r * message_bytes, g.intra_bw_gb_s)) * US


nvls_reduce_scatter_s = nvls_all_gather_s


# ---------------------------------------------------------------------------------------------
# broadcast


def ring_broadcast_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Pipelined chain (NCCL ring broadcast): the first chunk walks the chain, the rest streams."""
    fill_us = (g.n_ranks - g.nodes) * p.intra_step_us + (g.nodes - 1) * p.net_step_us
    return (p.launch_us + fill_us + _transfer_us(message_bytes, _rate(_ring_bw_gb_s(g), p))) * US


def binomial_broadcast_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Binomial tree: log2(n) rounds, each forwarding the whole message (small messages)."""
    net_rounds, intra_rounds = _log2_ceil(g.nodes), _log2_ceil(g.ranks_per_node)
    time_us = p.launch_us + net_rounds * (
        p.net_step_us + _transfer_us(message_bytes, _rate(g.net_bw_per_rank_gb_s, p))
    )
    if intra_rounds:
        time_us += intra_rounds * (p.intra_step_us + _transfer_us(message_bytes, _rate(g.intra_bw_gb_s, p)))
    return time_us * US


def scatter_all_gather_broadcast_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Van de Geijn: binomial scatter of n blocks, then a ring all-gather (large messages)."""
    n = g.n_ranks
    scatter_us = _log2_ceil(g.nodes) * p.net_step_us + _log2_ceil(g.ranks_per_node) * p.intra_step_us
    scatter_us += _transfer_us((n - 1) / n * message_bytes, _rate(_ring_bw_gb_s(g), p))
    return scatter_us * US + ring_all_gather_s(message_bytes, g, p)


# ---------------------------------------------------------------------------------------------
# all-to-all (message = the buffer per rank; each peer gets 1/n of it)


def direct_all_to_all_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """One send/recv per peer, all in flight (NCCL's all-to-all): one network post per remote
    peer (NCCL getNetOverhead, 1 µs), intra and inter traffic concurrent; uniform traffic that
    leaves the leaf shares the uplinks."""
    n, r = g.n_ranks, g.ranks_per_node
    latency_us = p.launch_us + (p.intra_step_us if r > 1 else 0.0)
    if g.nodes > 1:
        latency_us += p.net_step_us + (n - r) * NET_OVERHEAD_US
    intra_us = _transfer_us((r - 1) / n * message_bytes, _rate(g.intra_a2a_bw_gb_s, p)) if r > 1 else 0.0
    net_us = _transfer_us((n - r) / n * message_bytes, _rate(_uniform_net_bw_per_rank_gb_s(g), p))
    return (latency_us + max(intra_us, net_us)) * US


def hierarchical_all_to_all_s(message_bytes: float, g: GroupLinks, p: Proto) -> float:
    """Two phases (Tutel / DeepSpeed-MoE hierarchical all-to-all): an intra-node all-to-all
    gathers, on each rank, everything bound for its rail peers, then one aggregated message per
    remote node goes over the rail: m-1 network posts instead of n-r."""
    r, m = g.ranks_per_node, g.nodes
    time_us = p.launch_us
    if r > 1:
        time_us += p.intra_step_us + _transfer_us((r - 1) / r * message_bytes, _rate(g.intra_a2a_bw_gb_s, p))
    if m > 1:
        time_us += p.net_step_us + (m - 1) * NET_OVERHEAD_US
        time_us += _transfer_us((m - 1) / m * message_bytes, _rate(_uniform_net_bw_per_rank_gb_s(g), p))
    return time_us * US


# ---------------------------------------------------------------------------------------------
# point-to-point


def p2p_s(message_bytes: float, bw_gb_s: float, latency_us: float) -> float:
    """One message: α + size / bandwidth."""
    return (latency_us + _transfer_us(message_bytes, bw_gb_s)) * US


def protocol_net_latency_us() -> float:
    """Per-message network latency of a Simple-protocol send (NCCL tuning.cc hwLat NET ring)."""
    return calibration()["nccl_latency_us"]["net"]["ring"]["simple"]
