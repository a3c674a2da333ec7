"""Which algorithm and protocol NCCL itself would pick, and which algorithms it offers.

A re-statement of NCCL v2.30.7-1's public tuning model (src/graph/tuning.cc, ncclTopoTuneModel
:262-435 and ncclTopoGetAlgoTime :631-657): for every (algorithm, protocol) a latency and a
bandwidth from its topology graph, time = latency + bytes / bandwidth, take the minimum. NCCL sees
line-rate NIC bandwidth and knows nothing of leaf oversubscription or switch hops; its candidates are
ring, tree, NVLS, NVLS-tree and CollNet for all-reduce; ring, PAT (one GPU per node, :220) and NVLS
(one node) for all-gather/reduce-scatter; ring for broadcast; direct send/recv for all-to-all.
Per-channel caps (perChMax*Bws) are left out: the model does not know NCCL's channel count.
Non-NVIDIA libraries (HCCL, RCCL, CNCL, MCCL) are modelled with the same logic without LL128 and NVLS.
"""

from __future__ import annotations

import math

from suanli.comm.cost import ll_max_bw_gb_s
from suanli.comm.topology import GroupLinks, calibration

P2P_LL_THRESHOLD_BYTES = 16384  # NCCL src/enqueue.cc / NCCL_P2P_LL_THRESHOLD default
NVLS_CHANNELS = 16  # NVLS channels on Hopper (src/transport/nvls.cc:155 NVLS_NCHANNELS_SM90)

NCCL_ALGORITHMS = {
    "all_reduce": ("ring", "tree", "nvls", "nvls_tree", "collnet"),
    "all_gather": ("ring", "nvls", "pat"),
    "reduce_scatter": ("ring", "nvls", "pat"),
    "broadcast": ("ring",),
    "all_to_all": ("direct",),
}


def nccl_supports(algorithm: str, protocol: str, g: GroupLinks) -> bool:
    """Whether NCCL enables (algorithm, protocol) on this group (tuning.cc :290-303, :500-560)."""
    if protocol == "ll128" and not g.nvidia_nvlink:
        return False
    if algorithm in ("nvls", "nvls_tree", "collnet", "pat") and protocol != "simple":
        return False
    if algorithm == "nvls":
        return g.in_switch_reduction and g.ranks_per_node > 1 and (g.nodes == 1 or g.in_network_reduction)
    if algorithm == "nvls_tree":
        return g.in_switch_reduction and g.ranks_per_node > 1 and g.nodes > 1
    if algorithm == "collnet":
        return g.in_network_reduction and g.nodes > 1
    if algorithm == "pat":
        return g.ranks_per_node == 1 and g.nodes > 1
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
    ll_max = ll_max_bw_gb_s(g)
    nsteps = {"all_reduce": 2 * (n - 1), "all_gather": n - 1, "reduce_scatter": n - 1}.get(collective, n)
    base = lat_table["base"].get(algorithm, {}).get(protocol, 0.0)
    intra_lat = _hw_latency_us(intra_level, algorithm, protocol)
    # :387 with one rank per node the tree network latency is used, fully exposed
    inter_lat = _hw_latency_us("net", "tree" if r == 1 else algorithm, protocol)

    if algorithm == "ring":  # :324-329, :378-381, :393-411
        busbw = graph_bw
        if protocol == "ll":
            busbw = min(ll_max, busbw * 0.5)
        elif protocol == "ll128":
            busbw *= 0.92
        algbw = busbw * n / nsteps
        if collective == "broadcast":
            latency = base + _hw_latency_us("net" if m > 1 else intra_level, "ring", protocol)
        else:
            if m > 1:
                overhead = lat_table["net_overhead"] * (3 if protocol == "simple" else 1)
                intra_lat = max(intra_lat, overhead)
            net_steps = 0 if m == 1 else 2 * (m - 1) if collective == "all_reduce" else m - 1
            latency = base + (nsteps - net_steps) * intra_lat + net_steps * inter_lat
            if collective == "all_reduce" and protocol == "simple" and m > 1 and message_bytes / n >= 64 * 32:
                latency *= tuning["ring_plateau"]  # :649, 32 channels assumed
        return latency + message_bytes / (1000 * algbw)

    if algorithm == "tree":  # :330-336, :380, :414-417, correction :639-641
        busbw = graph_bw * 0.92
        if protocol == "ll":
            busbw = min(busbw / 3.8, ll_max)
        elif protocol == "ll128":
            busbw *= 7 / 9 if m == 1 else 120 / 128
        algbw = busbw * 0.5
        log_size = int(math.log2(max(1, int(message_bytes) >> 6))) if message_bytes >= 64 else -1
        if 0 <= log_size < 23:
            algbw *= tuning["tree_correction"][protocol][log_size]
        latency = base + 2 * ((r - 1) * intra_lat + int(math.log2(m)) * inter_lat)
        return latency + message_bytes / (1000 * algbw)

    if algorithm in ("nvls", "nvls_tree"):  # :306-322, :378-381, :424-428
        efficiency = tuning["nvls_efficiency"].get(g.link, 0.0)
        if efficiency == 0:  # no NVLS before Hopper (nvlsEfficiency 0): NCCL never picks it
            return math.inf
        intra = g.intra_bw_gb_s * efficiency * (NVLS_CHANNELS - 1) / NVLS_CHANNELS
        intra *= 2.0 if collective == "all_reduce" else (r - 1) / r
        inter = (
            g.node_net_port_bw_gb_s * (2 if m <= 2 and algorithm == "nvls_tree" else 1) if m > 1 else math.inf
        )
        busbw = min(intra, inter)
        algbw = busbw * n / nsteps if collective == "all_reduce" else busbw
        if algorithm == "nvls":
            latency = intra_lat + (inter_lat if m > 1 else 0.0)
        else:
            latency = base + intra_lat + 2 * int(math.log2(m)) * inter_lat
        return latency + message_bytes / (1000 * algbw)

    if algorithm == "pat":  # :337, :429-434
        algbw = graph_bw * tuning["pat_bw_factor"]
        latency = base + int(math.log2(m)) * inter_lat / 3.5 + n * tuning["pat_rank_latency_us"]
        return latency + message_bytes / (1000 * algbw)

    if algorithm == "collnet":  # chain, :339, :421-422
        algbw = 0.5 * min(intra_bw, g.node_net_port_bw_gb_s)
        latency = 2 * (r - 1) * intra_lat + inter_lat
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
