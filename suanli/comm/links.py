"""The links inside one node as a graph, and the bandwidth a set of its accelerators gets from it.

Every node type states its intra-node links (`spec.node.IntraNodeTopology`): NVSwitch, NVLink
bridges, point-to-point meshes (OAM/UBB, HCCS, MTLink), and the PCIe switches and CPU sockets under
them. `intra_graph` turns that into a graph whose edges carry a per-direction capacity at line rate
and at the rate a collective library achieves (line x the link generation's efficiency).

A group of members gets its bandwidth from cuts of that graph (max-flow / min-cut):
- a ring (or a chain, or a tree pipelined like one) crosses every bipartition (A, B) of the members
  at least once in each direction, so its per-rank bandwidth is at most the smallest A->B max-flow;
  with enough channels over edge-disjoint paths it reaches it (NCCL's multi-ring search);
- a uniform all-to-all sends |A|·|B|/r of a rank's buffer across each bipartition, so its per-rank
  bandwidth is at most min C(A,B)·(r-1)/(|A|·|B|).
Like NCCL, a group whose members the accelerator links connect uses only those links (a collective
library does not mix NVLink and PCIe paths); a group they do not connect (NVLink islands) runs over
the whole graph, PCIe and sockets included, and is priced at PCIe latency.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import networkx as nx

from suanli.spec.calibration import load_calibration
from suanli.spec.node import NodeType, default_link, link_generation

SOURCE, SINK = "source", "sink"
EXHAUSTIVE_MAX_RANKS = 10  # beyond this, singletons and balanced halves only (2^(r-1) flows otherwise)


def link_efficiency(link: str) -> float:
    """Achievable share of a link generation's line rate (calibration/comm_model.yaml)."""
    key = link_generation(link).efficiency
    return load_calibration("comm_model.yaml")["link_efficiency"][key]["value"]


def accelerator_link(node: NodeType) -> str:
    """The link generation of the node's accelerator links."""
    return node.topology.link or default_link(node.topology.kind)


def _add(graph: nx.Graph, a: object, b: object, line_gb_s: float, link: str, family: str) -> None:
    graph.add_edge(a, b, line=line_gb_s, capacity=line_gb_s * link_efficiency(link), family=family)


def _mesh_edges(node: NodeType) -> set[tuple[int, int]]:
    topo, n = node.topology, node.accelerators_per_node
    edges: set[tuple[int, int]] = set()
    groups = [list(range(n))] if topo.links is None and topo.groups is None else topo.groups or []
    for group in groups:
        edges |= {(a, b) for a in group for b in group if a < b}
    edges |= {(min(a, b), max(a, b)) for a, b in topo.links or []}
    return edges


def intra_graph(node: NodeType) -> nx.Graph:
    """Accelerators are the integers 0..n-1; switches, PCIe switches and the host are tuples.
    Edge attributes: `line` and `capacity` (GB/s per direction), `family` (accel | pcie)."""
    topo, n = node.topology, node.accelerators_per_node
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    link = accelerator_link(node)
    if topo.kind == "nvswitch":
        for i in range(n):
            _add(graph, i, ("nvswitch",), topo.link_bw_gb_s, link, "accel")
    elif topo.kind not in ("pcie-tree", "none"):
        edges = _mesh_edges(node)
        degree = max((sum(1 for e in edges if i in e) for i in range(n)), default=1)
        for a, b in edges:
            _add(graph, a, b, topo.link_bw_gb_s / max(1, degree), link, "accel")
    if topo.kind == "pcie-tree":
        uplink = topo.uplink_bw_gb_s or topo.link_bw_gb_s
        _wire_pcie(graph, topo.groups or [list(range(n))], topo.link_bw_gb_s, uplink, link, link)
    elif topo.pcie is not None:
        pcie = topo.pcie
        _wire_pcie(graph, pcie.groups, pcie.link_bw_gb_s, pcie.uplink_bw_gb_s, pcie.link, pcie.uplink)
    return graph


def _wire_pcie(
    graph: nx.Graph, groups: list[list[int]], link_gb_s: float, uplink_gb_s: float, link: str, uplink: str
) -> None:
    for g, group in enumerate(groups):
        switch = ("pcie", g)
        _add(graph, switch, ("host",), uplink_gb_s, uplink, "pcie")
        for i in group:
            _add(graph, i, switch, link_gb_s, link, "pcie")


@dataclass(frozen=True)
class IntraBandwidth:
    """Per-rank, per-direction bandwidth (GB/s) a set of accelerators of one node gets."""

    ring_gb_s: float  # ring / chain / pipelined tree, achievable
    ring_line_gb_s: float  # the same bound at line rate
    a2a_gb_s: float  # uniform all-to-all, achievable
    a2a_line_gb_s: float
    link_class: str  # nvlink (accelerator links only) | pci (crosses PCIe / sockets) | net (one rank)


def _bipartitions(members: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    first, rest = members[0], members[1:]
    if len(members) <= EXHAUSTIVE_MAX_RANKS:
        sides = [(first, *combo) for k in range(len(rest)) for combo in itertools.combinations(rest, k)]
    else:
        sides = [(m,) for m in members] + [members[: len(members) // 2]]
    return [(a, tuple(m for m in members if m not in a)) for a in sides]


def _cut(graph: nx.DiGraph, a: tuple[int, ...], b: tuple[int, ...], attr: str) -> float:
    flow_graph = graph.copy()
    for m in a:
        flow_graph.add_edge(SOURCE, m, **{attr: math.inf})
    for m in b:
        flow_graph.add_edge(m, SINK, **{attr: math.inf})
    value, _ = nx.maximum_flow(flow_graph, SOURCE, SINK, capacity=attr)
    return value


@lru_cache(maxsize=4096)
def _intra_bandwidth(node_json: str, members: tuple[int, ...]) -> IntraBandwidth:
    node = NodeType.model_validate_json(node_json)
    graph = intra_graph(node)
    outsiders = [v for v in graph if isinstance(v, int) and v not in members]
    graph.remove_nodes_from(outsiders)
    accel = graph.edge_subgraph(
        [(u, v) for u, v, family in graph.edges(data="family") if family == "accel"]
    ).copy()
    on_accel = members[0] in accel and set(members) <= nx.node_connected_component(accel, members[0])
    used = accel if on_accel else graph
    directed = used.to_directed()
    ring = ring_line = a2a = a2a_line = math.inf
    r = len(members)
    for a, b in _bipartitions(members):
        cut, cut_line = _cut(directed, a, b, "capacity"), _cut(directed, a, b, "line")
        ring, ring_line = min(ring, cut), min(ring_line, cut_line)
        share = (r - 1) / (len(a) * len(b))
        a2a, a2a_line = min(a2a, cut * share), min(a2a_line, cut_line * share)
    return IntraBandwidth(ring, ring_line, a2a, a2a_line, "nvlink" if on_accel else "pci")


def intra_bandwidth(node: NodeType, members: tuple[int, ...] | range) -> IntraBandwidth:
    """Bandwidth among `members` (accelerator indices of one node). One member: its own links
    (what a point-to-point message to a node-mate may use), class `net` for a node of one rank."""
    members = tuple(sorted(set(members)))
    if not members:
        raise ValueError("intra_bandwidth needs at least one member")
    if node.topology.kind == "none" or node.accelerators_per_node == 0:
        return IntraBandwidth(math.inf, math.inf, math.inf, math.inf, "net")
    if len(members) == 1:
        others = tuple(range(min(2, node.accelerators_per_node)))
        if len(others) < 2:
            return IntraBandwidth(math.inf, math.inf, math.inf, math.inf, "net")
        return _intra_bandwidth(node.model_dump_json(), others)
    return _intra_bandwidth(node.model_dump_json(), members)


def best_members(node: NodeType, free: tuple[int, ...], k: int) -> tuple[int, ...]:
    """Which `k` of the `free` accelerators of a node a group should take: the first k of `free`,
    or island first (each NVLink / PCIe group of the node filled before the rest), whichever gets
    the most ring bandwidth from the links graph."""
    topo = node.topology
    islands = [*(topo.groups or []), *(topo.pcie.groups if topo.pcie else [])]
    candidates = {tuple(sorted(free[:k]))}
    for island in islands:
        inside = [i for i in free if i in island]
        candidates.add(tuple(sorted((inside + [i for i in free if i not in island])[:k])))
    return max(sorted(candidates), key=lambda members: intra_bandwidth(node, members).ring_gb_s)
