"""Which algorithm and protocol NCCL itself would pick: the baseline our selection is compared to.

A re-statement of NCCL 2.19's public tuning model (src/graph/tuning.cc, ncclTopoTuneModel and
ncclTopoGetAlgoTime): for every (algorithm, protocol) a latency and a bandwidth from its topology
graph, time = latency + bytes / bandwidth, take the minimum. NCCL sees line-rate NIC bandwidth and
knows nothing of leaf oversubscription or switch hops; its candidates are ring, tree, NVLS,
NVLS-tree and CollNet for all-reduce, ring (and NVLS in one node) for all-gather/reduce-scatter,
ring for broadcast, and direct send/recv for all-to-all. Non-NVIDIA libraries (HCCL, RCCL, CNCL,
MCCL) are modelled with the same logic without LL128 and NVLS.
"""

from __future__ import annotations

import math

from suanli.comm.topology import GroupLinks, calibration

P2P_LL_THRESHOLD_BYTES = 16384  # NCCL src/enqueue.cc / NCCL_P2P_LL_THRESHOLD default

NCCL_ALGORITHMS = {
    "all_reduce": ("ring", "tree", "nvls", "nvls_tree", "collnet"),
    "all_gather": ("ring", "nvls"),
    "reduce_scatter": ("ring", "nvls"),
    "broadcast": ("ring",),
    "all_to_all": ("direct",),
}


def nccl_supports(algorithm: str, protocol: str, g: GroupLinks) -> bool:
    if protocol == "ll128" and not g.nvidia_nvlink:
        return False
    if algorithm in ("nvls", "nvls_tree", "collnet") and protocol != "simple":
        return False
    if algorithm == "nvls":
        return g.in_switch_reduction and g.ranks_per_node > 1 and (g.nodes == 1 or g.in_network_reduction)
    if algorithm == "nvls_tree":
        return g.in_switch_reduction and g.ranks_per_node > 1 and g.nodes > 1
    if algorithm == "collnet":
        return g.in_network_reduction and g.nodes > 1
    return True


def _hw_latency_us(level: str, family: str, protocol: str) -> float:
    table = calibration()["nccl_latency_us"][level]
    return table.get(family, table["ring"]).get(protocol, 0.0)


def nccl_estimate_us(
    collective: str, algorithm: str, protocol: str, message_bytes: float, g: GroupLinks
) -> float:
    """NCCL's own predicted time (µs) of one (algorithm, protocol): its tuning formulas. All-to-all
    is not tuned by NCCL (grouped send/recv), see `nccl_choice`."""
    lat_table = calibration()["nccl_latency_us"]
    tuning = calibration()["nccl_tuning"]
    n, r, m = g.n_ranks, g.ranks_per_node, g.nodes
    intra_level = "pci" if g.intra_class == "pci" else "nvlink"
    intra_bw = g.intra_bw_gb_s if r > 1 else math.inf
    graph_bw = g.intra_bw_gb_s if m == 1 else min(intra_bw, g.node_net_port_bw_gb_s)
    ll_max = tuning["ll_max_bw_gb_s"]["one_node" if m == 1 else "two_nodes" if m == 2 else "more_nodes"]
    family = algorithm
    base = lat_table["base"].get(family, {}).get(protocol, 0.0)
    intra_lat = _hw_latency_us(intra_level, family, protocol)
    inter_lat = _hw_latency_us("net", family, protocol)
    if m > 1 and protocol == "ll":
        intra_lat *= 1.8

    if algorithm == "ring":
        steps = {"all_reduce": 2 * (n - 1), "all_gather": n - 1, "reduce_scatter": n - 1}.get(collective, n)
        net_steps = {"all_reduce": 2 * m if m > 1 else 0, "all_gather": m - 1, "reduce_scatter": m - 1}.get(
            collective, m
        )
        busbw = graph_bw
        if protocol == "ll":
            share = 1 / 4 if (m > 1 or collective == "all_reduce") else 1 / 3
            busbw = min(ll_max, busbw * share)
        elif protocol == "ll128":
            busbw *= 0.92
        algbw = busbw * n / steps
        if collective == "broadcast":
            latency = base + _hw_latency_us("net" if m > 1 else intra_level, "ring", protocol)
        else:
            if m > 1:
                overhead = lat_table["net_overhead"] * (3 if protocol == "simple" else 1)
                intra_lat = max(intra_lat, overhead)
            latency = base + (steps - net_steps) * intra_lat + net_steps * inter_lat
            if (
                collective == "all_reduce"
                and protocol == "simple"
                and m > 1
                and message_bytes >= n / 16 * 65536
            ):
                latency *= 1.9  # NCCL's "plateau effect of ring"
        return latency + message_bytes / (1000 * algbw)

    if algorithm == "tree":
        busbw = graph_bw * 0.92
        if protocol == "ll":
            busbw = min(busbw / 3.8, ll_max)
        elif protocol == "ll128":
            busbw *= 7 / 9 if m == 1 else 120 / 128
        algbw = busbw * 0.5
        log_size = int(math.log2(max(1, int(message_bytes) >> 6))) if message_bytes >= 64 else 0
        if log_size < 22:
            algbw *= tuning["tree_correction"][protocol][log_size]
        latency = base + 2 * ((r - 1) * intra_lat + math.ceil(math.log2(m)) * inter_lat)
        return latency + message_bytes / (1000 * algbw)

    if algorithm == "nvls":
        algbw = 5 / 6 * (g.intra_bw_gb_s if m == 1 else min(g.intra_bw_gb_s, g.node_net_port_bw_gb_s))
        latency = intra_lat + (inter_lat if m > 1 else 0.0)
        return latency + message_bytes / (1000 * algbw)

    if algorithm == "nvls_tree":
        net = g.node_net_port_bw_gb_s if m <= 2 else g.node_net_port_bw_gb_s / 2
        algbw = 5 / 6 * min(g.intra_bw_gb_s, net)
        latency = intra_lat + 2 * math.ceil(math.log2(m)) * inter_lat
        return latency + message_bytes / (1000 * algbw)

    if algorithm == "collnet":
        algbw = 0.9 * min(intra_bw, g.node_net_port_bw_gb_s)
        latency = 2 * (r - 1) * _hw_latency_us(intra_level, "collnet", "simple") + inter_lat
        return latency + message_bytes / (1000 * algbw)

    raise ValueError(f"unknown NCCL algorithm {algorithm!r}")


def nccl_choice(collective: str, message_bytes: float, g: GroupLinks) -> tuple[str, str]:
    """The (algorithm, protocol) NCCL's tuning would pick for this call."""
    if collective == "all_to_all":  # send/recv: LL up to NCCL_P2P_LL_THRESHOLD (16 KiB) per peer
        return ("direct", "ll" if message_bytes / g.n_ranks <= P2P_LL_THRESHOLD_BYTES else "simple")
    best, best_us = ("ring", "simple"), math.inf
    for algorithm in NCCL_ALGORITHMS[collective]:
        for protocol in ("ll", "ll128", "simple"):
            if not nccl_supports(algorithm, protocol, g):
                continue
            if collective != "all_reduce" and algorithm == "nvls" and g.nodes > 1:
                continue
            time_us = nccl_estimate_us(collective, algorithm, protocol, message_bytes, g)
            if time_us < best_us:
                best, best_us = (algorithm, protocol), time_us
    return best
