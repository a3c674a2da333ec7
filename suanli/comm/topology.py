"""The cluster as a graph, and what a group of ranks sees of it.

Two views of the same wiring, built from a `Cluster`:
- `build_graph`: a networkx graph of accelerators, each node's links graph (`comm.links`: NVSwitch,
  NVLink bridges, meshes, PCIe switches, sockets), NICs (rails), leaf, spine and core switches, each
  edge with its bandwidth (GB/s per direction, line rate) and latency.
- `group_links`: the summary the cost models use for a group of ranks placed `ranks_per_node` per
  node on consecutive nodes of one pool: the bandwidth the node's links graph gives those ranks
  (priced once per pool by max-flow, `pool_model`), the NICs, the switch hops between the farthest
  members, the share of traffic that crosses the spine. A lookup, so the planner can call it in its
  inner loop.
`node_leaves` assigns nodes to leaf switches; the scheduler's placement uses the same assignment.
"""

from __future__ import annotations

import itertools
import math
import weakref
from dataclasses import dataclass
from functools import cache, lru_cache

import networkx as nx

from suanli.comm.links import IntraBandwidth, accelerator_link, intra_bandwidth, intra_graph
from suanli.spec.calibration import load_calibration
from suanli.spec.cluster import Cluster, Fabric
from suanli.spec.errors import SpecError
from suanli.spec.node import NodeType


@cache
def calibration() -> dict:
    """The constants of the cost model with their sources (`suanli/calibration/comm_model.yaml`)."""
    return load_calibration("comm_model.yaml")


def _efficiency(name: str) -> float:
    return calibration()["link_efficiency"][name]["value"]


def nic_efficiency(gbit_s: float) -> float:
    return _efficiency("nic_400g" if gbit_s >= 400 else "nic")


def intra_by_ranks(node: NodeType) -> tuple[IntraBandwidth, ...]:
    """Index r-1: what the first r accelerators of a node get from its links graph (`comm.links`).
    A node without accelerator links (CPU node) reaches node-mates through its NICs."""
    if node.topology.kind == "none" or node.accelerators_per_node == 0:
        nic = node.nic_bw_gb_s * nic_efficiency(max((n.gbit_s for n in node.nics), default=100))
        net = IntraBandwidth(nic, node.nic_bw_gb_s, nic, node.nic_bw_gb_s, "net")
        return tuple(net for _ in range(max(1, node.accelerators_per_node)))
    return tuple(intra_bandwidth(node, range(r)) for r in range(1, node.accelerators_per_node + 1))


def group_nic_bw_gb_s(node: NodeType, ranks: int) -> float:
    """Achievable NIC bandwidth (GB/s per direction) a node offers the first `ranks` accelerators."""
    total = 0.0
    per_node = max(1, node.accelerators_per_node)
    for nic in node.nics:
        bw = nic.gbit_s / 8 * nic_efficiency(nic.gbit_s)
        if nic.serves is None:
            total += nic.count * bw * (min(ranks, per_node) / per_node if node.accelerators_per_node else 1)
        else:
            total += bw * sum(1 for served in nic.serves if any(i < ranks for i in served))
    return total


@dataclass(frozen=True)
class FabricShape:
    """Leaf / pod sizes of the inter-node fabric, in nodes."""

    nodes_per_leaf: int
    leaves_per_pod: int
    oversubscription: float
    hop_latency_us: float
    in_network_reduction: bool


def fabric_shape(cluster: Cluster, node: NodeType) -> FabricShape:
    fabric = cluster.fabric
    down_ports = max(1, int(fabric.switch_radix * fabric.oversubscription / (1 + fabric.oversubscription)))
    nics = max(1, sum(n.count for n in node.nics))
    # A rail-optimized leaf takes one NIC of each node; a plain fat-tree leaf takes all of them.
    per_leaf = down_ports if fabric.kind == "rail-optimized" else max(1, down_ports // nics)
    return FabricShape(
        nodes_per_leaf=per_leaf,
        leaves_per_pod=fabric.switch_radix,
        oversubscription=fabric.oversubscription,
        hop_latency_us=fabric.hop_latency_us,
        in_network_reduction=fabric.in_network_reduction,
    )


def switch_hops(nodes: int, shape: FabricShape) -> int:
    """Switches between the farthest two of `nodes` consecutive nodes: 1 leaf, 3 via a spine,
    5 via the core of a three-tier tree."""
    if nodes <= 1:
        return 0
    if nodes <= shape.nodes_per_leaf:
        return 1
    if nodes <= shape.nodes_per_leaf * shape.leaves_per_pod:
        return 3
    return 5


def spine_share(nodes: int, shape: FabricShape) -> float:
    """Share of a node's uniform (all-to-all) inter-node traffic whose peer is under another leaf."""
    if nodes <= shape.nodes_per_leaf:
        return 0.0
    return (nodes - shape.nodes_per_leaf) / (nodes - 1)


@dataclass(frozen=True)
class PoolModel:
    """Everything about one pool that the cost models need, derived once per (cluster, pool)."""

    pool: str
    accelerators_per_node: int
    nodes: int
    accelerator: str | None
    link: str  # link generation of the accelerator links (catalog links table)
    intra_latency_us: float
    in_switch_reduction: bool
    nvidia: bool
    shape: FabricShape
    intra_by_ranks: tuple[IntraBandwidth, ...]  # index r-1: what r ranks per node get from the links graph
    nic_bw_by_ranks: tuple[float, ...]  # index r-1: node NIC bandwidth for r ranks per node
    nic_port_bw_by_ranks: tuple[float, ...]  # the same at line rate (what NCCL's tuning sees)

    @property
    def capacity(self) -> int:
        return self.nodes * self.accelerators_per_node


_POOL_CACHE: dict[tuple[int, str], tuple[weakref.ref, PoolModel]] = {}


def pool_model(cluster: Cluster, pool: str) -> PoolModel:
    """Derived link parameters of a pool, cached per (cluster object, pool)."""
    key = (id(cluster), pool)
    hit = _POOL_CACHE.get(key)
    if hit is not None and hit[0]() is cluster:
        return hit[1]
    try:
        node = cluster.node_type_of(pool)
        nodes = cluster.pool(pool).nodes
    except KeyError:
        known = ", ".join(p.name for p in cluster.pools)
        raise SpecError(f"pool: {pool!r} is not in cluster {cluster.name!r} (pools: {known})") from None
    per_node = node.accelerators_per_node or 1
    accel = cluster.accelerator_of(pool)
    model = PoolModel(
        pool=pool,
        accelerators_per_node=per_node,
        nodes=nodes,
        accelerator=node.accelerator,
        link=accelerator_link(node),
        intra_latency_us=node.topology.link_latency_us,
        in_switch_reduction=node.topology.kind == "nvswitch" and node.topology.in_switch_reduction,
        nvidia=accel is not None and accel.vendor == "NVIDIA",
        shape=fabric_shape(cluster, node),
        intra_by_ranks=intra_by_ranks(node),
        nic_bw_by_ranks=tuple(group_nic_bw_gb_s(node, r) for r in range(1, per_node + 1)),
        nic_port_bw_by_ranks=tuple(
            group_nic_bw_gb_s(node, r) / max(1e-9, _mean_nic_efficiency(node)) for r in range(1, per_node + 1)
        ),
    )
    if len(_POOL_CACHE) > 4096:
        _POOL_CACHE.clear()
    _POOL_CACHE[key] = (weakref.ref(cluster), model)
    return model


def _mean_nic_efficiency(node: NodeType) -> float:
    if not node.nics:
        return 1.0
    weights = [(n.count * n.gbit_s, nic_efficiency(n.gbit_s)) for n in node.nics]
    return sum(w * e for w, e in weights) / sum(w for w, _ in weights)


@dataclass(frozen=True)
class GroupLinks:
    """What a group of `n_ranks` ranks, `ranks_per_node` per node on consecutive nodes, crosses."""

    n_ranks: int
    ranks_per_node: int
    nodes: int
    intra_bw_gb_s: float  # per rank, direction, achievable: ring / chain / tree over the node's links
    intra_line_bw_gb_s: float  # the same at line rate
    intra_a2a_bw_gb_s: float  # per rank, direction, achievable: uniform all-to-all inside the node
    intra_a2a_line_bw_gb_s: float
    intra_latency_us: float
    intra_class: str  # nvlink (accelerator links only) | pci (crosses PCIe or sockets) | net
    link: str  # link generation of the accelerator links
    node_net_bw_gb_s: float  # the group's NIC bandwidth per node, achievable
    node_net_port_bw_gb_s: float  # the same at line rate
    switch_hops: int
    spine_share: float  # uniform traffic leaving the leaf
    oversubscription: float
    hop_latency_us: float
    nodes_per_leaf: int
    in_switch_reduction: bool  # NVLS-style, inside the node
    in_network_reduction: bool  # SHARP-style, in the fabric
    nvidia_nvlink: bool  # NVIDIA accelerators on NVLink only (LL128 and NVLS need it)

    @property
    def net_bw_per_rank_gb_s(self) -> float:
        return self.node_net_bw_gb_s / self.ranks_per_node

    @property
    def fabric_latency_us(self) -> float:
        return self.switch_hops * self.hop_latency_us


@lru_cache(maxsize=65536)
def group_links(model: PoolModel, n_ranks: int, ranks_per_node: int) -> GroupLinks:
    if n_ranks < 1 or ranks_per_node < 1:
        raise SpecError(f"ranks: n_ranks and ranks_per_node must be >= 1, got {n_ranks} and {ranks_per_node}")
    if ranks_per_node > model.accelerators_per_node:
        raise SpecError(
            f"ranks_per_node: {ranks_per_node} exceeds the {model.accelerators_per_node} accelerators "
            f"of a node in pool {model.pool!r}"
        )
    local = min(ranks_per_node, n_ranks)
    nodes = math.ceil(n_ranks / local)
    if n_ranks > model.capacity or nodes > model.nodes:
        raise SpecError(
            f"ranks: a group of {n_ranks} ranks ({local} per node, {nodes} nodes) does not fit pool "
            f"{model.pool!r} ({model.nodes} nodes x {model.accelerators_per_node})"
        )
    intra = model.intra_by_ranks[local - 1]
    return GroupLinks(
        n_ranks=n_ranks,
        ranks_per_node=local,
        nodes=nodes,
        intra_bw_gb_s=intra.ring_gb_s,
        intra_line_bw_gb_s=intra.ring_line_gb_s,
        intra_a2a_bw_gb_s=intra.a2a_gb_s,
        intra_a2a_line_bw_gb_s=intra.a2a_line_gb_s,
        intra_latency_us=model.intra_latency_us,
        intra_class=intra.link_class,
        link=model.link,
        node_net_bw_gb_s=model.nic_bw_by_ranks[local - 1],
        node_net_port_bw_gb_s=model.nic_port_bw_by_ranks[local - 1],
        switch_hops=switch_hops(nodes, model.shape),
        spine_share=spine_share(nodes, model.shape),
        oversubscription=model.shape.oversubscription,
        hop_latency_us=model.shape.hop_latency_us,
        nodes_per_leaf=model.shape.nodes_per_leaf,
        in_switch_reduction=model.in_switch_reduction and intra.link_class == "nvlink",
        in_network_reduction=model.shape.in_network_reduction,
        nvidia_nvlink=model.nvidia and intra.link_class == "nvlink",
    )


# ---------------------------------------------------------------------------------------------
# The graph


def node_leaves(cluster: Cluster) -> list[int]:
    """The leaf switch of every node, pools in order: consecutive nodes fill a leaf of
    `fabric_shape(...).nodes_per_leaf` nodes; a pool whose node type changes the leaf size starts a
    new leaf. One leaf size for the cost model, the graph and the scheduler's placement."""
    leaves: list[int] = []
    leaf, used, size = -1, 0, 0
    for pool in cluster.pools:
        per_leaf = fabric_shape(cluster, cluster.node_type_of(pool.name)).nodes_per_leaf
        for _ in range(pool.nodes):
            if used == 0 or used >= size or per_leaf != size:
                leaf, used, size = leaf + 1, 0, per_leaf
            leaves.append(leaf)
            used += 1
    return leaves


def accelerator_id(pool: str, node: int, index: int) -> tuple:
    return ("acc", pool, node, index)


def build_graph(cluster: Cluster, pools: list[str] | None = None) -> nx.Graph:
    """The cluster wiring as a graph. Edge attributes: `bw_gb_s` (per direction, line rate),
    `latency_us`, `level` (intra | nic | leaf | spine | core). Node attribute `kind`."""
    graph = nx.Graph()
    leaves = node_leaves(cluster)
    fabric = cluster.fabric
    for index, pool in enumerate(cluster.pools):
        if pools is not None and pool.name not in pools:
            continue
        first = sum(p.nodes for p in cluster.pools[:index])
        node_type = cluster.node_type_of(pool.name)
        for local_node in range(pool.nodes):
            leaf = leaves[first + local_node]
            accs = [accelerator_id(pool.name, local_node, i) for i in range(node_type.accelerators_per_node)]
            for acc in accs:
                graph.add_node(acc, kind="accelerator")
            host = ("host", pool.name, local_node)
            graph.add_node(host, kind="host")
            _wire_intra(graph, node_type, accs, host, pool.name, local_node)
            _wire_nics(graph, cluster, node_type, accs, host, pool.name, local_node, leaf)
    _wire_spines(graph, fabric)
    return graph


def _wire_intra(graph: nx.Graph, node: NodeType, accs: list, host: tuple, pool: str, local_node: int) -> None:
    """The node's links graph (`comm.links.intra_graph`), its accelerators renamed to `accs`."""
    inner = intra_graph(node)
    rename = {v: accs[v] if isinstance(v, int) else (v[0], pool, local_node, *v[1:]) for v in inner}
    rename[("host",)] = host
    for u, v, data in inner.edges(data=True):
        a, b = rename[u], rename[v]
        for end in (a, b):
            if end not in graph:
                graph.add_node(end, kind="accelerator" if end in accs else end[0])
        graph.add_edge(a, b, bw_gb_s=data["line"], latency_us=node.topology.link_latency_us, level="intra")
    if node.topology.kind != "pcie-tree" and node.topology.pcie is None:
        for acc in accs:
            graph.add_edge(acc, host, bw_gb_s=64.0, latency_us=2.0, level="pcie")


def _wire_nics(
    graph: nx.Graph,
    cluster: Cluster,
    node: NodeType,
    accs: list,
    host: tuple,
    pool: str,
    local_node: int,
    leaf_group: int,
) -> None:
    rail = 0
    for nic_group in node.nics:
        for k in range(nic_group.count):
            nic = ("nic", pool, local_node, rail)
            graph.add_node(nic, kind="nic")
            served = (
                nic_group.serves[k]
                if nic_group.serves is not None
                else [i for i in range(len(accs)) if i % nic_group.count == k]
            )
            for i in served:
                graph.add_edge(accs[i], nic, bw_gb_s=64.0, latency_us=0.5, level="pcie")
            if not accs:
                graph.add_edge(host, nic, bw_gb_s=64.0, latency_us=0.5, level="pcie")
            leaf_rail = rail if cluster.fabric.kind == "rail-optimized" else 0
            leaf = ("leaf", leaf_group, leaf_rail)
            graph.add_node(leaf, kind="leaf")
            graph.add_edge(
                nic, leaf, bw_gb_s=nic_group.gbit_s / 8, latency_us=cluster.fabric.hop_latency_us, level="nic"
            )
            graph.nodes[leaf].setdefault("down_gb_s", 0.0)
            graph.nodes[leaf]["down_gb_s"] += nic_group.gbit_s / 8
            rail += 1


def _wire_spines(graph: nx.Graph, fabric: Fabric) -> None:
    leaves = sorted(n for n, kind in graph.nodes(data="kind") if kind == "leaf")
    if len(leaves) <= 1:
        return
    for index, leaf in enumerate(leaves):
        pod = index // fabric.switch_radix
        spine = ("spine", pod)
        graph.add_node(spine, kind="spine")
        uplink = graph.nodes[leaf]["down_gb_s"] / fabric.oversubscription
        graph.add_edge(leaf, spine, bw_gb_s=uplink, latency_us=fabric.hop_latency_us, level="spine")
    spines = sorted(n for n, kind in graph.nodes(data="kind") if kind == "spine")
    if len(spines) > 1:
        graph.add_node(("core",), kind="core")
        for spine in spines:
            capacity = sum(d["bw_gb_s"] for _, _, d in graph.edges(spine, data=True))
            graph.add_edge(spine, ("core",), bw_gb_s=capacity, latency_us=fabric.hop_latency_us, level="core")


@dataclass(frozen=True)
class GroupRoute:
    """Links a ring over the group crosses (consecutive members, wrapping around)."""

    levels: dict[str, int]  # level -> number of link traversals
    bottleneck_gb_s: dict[str, float]  # level -> narrowest link of that level on the route
    max_switch_hops: int  # switches between the first member and the farthest one


def group_route(graph: nx.Graph, ranks: list[tuple]) -> GroupRoute:
    """Route a ring through `ranks` (accelerator ids) on shortest paths: which link levels it
    crosses, the narrowest link per level, and the switch hops to the farthest member."""
    missing = [r for r in ranks if r not in graph]
    if missing:
        raise SpecError(f"ranks: {missing[0]!r} is not an accelerator of this cluster")
    levels: dict[str, int] = {}
    bottleneck: dict[str, float] = {}
    for a, b in zip(ranks, ranks[1:] + ranks[:1], strict=True):
        if a == b:
            continue
        path = nx.shortest_path(graph, a, b, weight="latency_us")
        for u, v in itertools.pairwise(path):
            data = graph.edges[u, v]
            levels[data["level"]] = levels.get(data["level"], 0) + 1
            bottleneck[data["level"]] = min(bottleneck.get(data["level"], math.inf), data["bw_gb_s"])
    _, lengths = nx.single_source_dijkstra(graph, ranks[0], weight="latency_us")
    switch_kinds = {"leaf", "spine", "core"}
    hops = max(
        (sum(1 for hop in lengths[r] if graph.nodes[hop]["kind"] in switch_kinds) for r in ranks), default=0
    )
    return GroupRoute(levels=levels, bottleneck_gb_s=bottleneck, max_switch_hops=hops)
