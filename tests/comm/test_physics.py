"""Physics checks: no modelled collective puts bytes on a link faster than the link's line rate.

The property is about bytes, not busbw: nccl-tests' busbw is a normalisation (algbw x 2(n-1)/n for
an all-reduce, the traffic of a ring), so it exceeds a link's rate whenever an algorithm moves fewer
bytes than a ring, e.g. a 2-node tree all-reduce, where each node's NICs carry the buffer once each
way instead of 2(n-1)/n times (nccl#812, nccl-tests#196). The floors are the bytes the collective
cannot avoid putting on its bottleneck, whatever the algorithm, divided by that bottleneck's line
rate (datasheet, per direction):
- inside one node, the narrowest cut of the node's links graph a ring must cross (`ring_line`), and
  its all-to-all analogue; an all-reduce whose switch reduces (NVLS) halves the traffic;
- across nodes, each node's NICs: the node must receive (m-1)/m of an all-gather's output, send
  2(m-1)/m of an all-reduce buffer without in-network reduction (Patarasuk & Yuan, "Bandwidth
  optimal all-reduce algorithms for clusters of workstations", JPDC 2009, with nodes as processes:
  on 2 nodes that is the buffer once), (m-1)/m with it, and r(n-r)/n of every rank's all-to-all
  buffer.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from suanli.comm import cost
from suanli.comm.select import ALGORITHMS, COLLECTIVES, applicable, evaluate, select
from suanli.comm.topology import GroupLinks, group_links, pool_model
from suanli.spec import CATALOG, Cluster

NODE_TYPES = [n.slug for n in CATALOG.node_types if n.accelerators_per_node > 0]
REDUCE_IN_FABRIC = {"nvls", "nvls_tree", "collnet", "hierarchical"}
GB = 1e9


def floor_s(collective: str, algorithm: str, size: float, g: GroupLinks) -> float:
    n, r, m = g.n_ranks, g.ranks_per_node, g.nodes
    in_fabric = algorithm in REDUCE_IN_FABRIC
    floor = 0.0
    if m == 1 and r > 1:
        link = g.intra_line_bw_gb_s * GB
        volume = {
            "all_reduce": (1 if in_fabric and g.in_switch_reduction else 2) * (r - 1) / r * size,
            "all_gather": (r - 1) / r * size,
            "reduce_scatter": (r - 1) / r * size,
            "broadcast": size,
        }
        if collective == "all_to_all":
            floor = (r - 1) / r * size / (g.intra_a2a_line_bw_gb_s * GB)
        else:
            floor = volume[collective] / link
    if m > 1:
        nic = g.node_net_port_bw_gb_s * GB
        sharp = in_fabric and g.in_network_reduction
        volume = {
            "all_reduce": (1 if sharp else 2) * (m - 1) / m * size,
            "all_gather": (m - 1) / m * size,
            "reduce_scatter": (m - 1) / m * size,
            "broadcast": size,
            "all_to_all": r * (n - r) / n * size,
        }
        floor = max(floor, volume[collective] / nic)
    return floor


@st.composite
def groups(draw: st.DrawFn) -> GroupLinks:
    slug = draw(st.sampled_from(NODE_TYPES))
    nodes = draw(st.one_of(st.integers(1, 2), st.integers(1, 40)))  # one and two nodes are special
    per_node = draw(st.integers(1, CATALOG.node_type(slug).accelerators_per_node))
    assume(nodes * per_node >= 2)
    fabric = {
        "oversubscription": draw(st.sampled_from([1.0, 2.0, 4.0])),
        "in_network_reduction": draw(st.booleans()),
        "kind": draw(st.sampled_from(["fat-tree", "rail-optimized"])),
        "switch_radix": draw(st.sampled_from([8, 64])),
    }
    cluster = Cluster(name="c", pools=[{"name": "p", "node_type": slug, "nodes": nodes}], fabric=fabric)
    ranks = draw(st.integers(2, nodes * per_node))
    return group_links(pool_model(cluster, "p"), ranks, per_node)


def _hgx_h100(nodes: int) -> GroupLinks:
    cluster = Cluster(name="c", pools=[{"name": "p", "node_type": "hgx-h100", "nodes": nodes}])
    return group_links(pool_model(cluster, "p"), 8 * nodes, 8)


@settings(max_examples=150, deadline=None)
@given(g=groups(), size=st.integers(0, 34).map(lambda k: float(2**k)))
@example(g=_hgx_h100(1), size=float(2**33))  # the NVLS all-gather once modelled at 474 GB/s on 450
@example(g=_hgx_h100(2), size=float(2**33))  # the 2-node tree: busbw above the NICs, bytes not
def test_no_algorithm_beats_the_line_rate_of_its_bottleneck(g: GroupLinks, size: float) -> None:
    for collective in COLLECTIVES:
        for algorithm in ALGORITHMS[collective]:
            for protocol in cost.PROTOCOLS:
                if not applicable(collective, algorithm, protocol, g):
                    continue
                modelled = evaluate(collective, algorithm, protocol, size, g).time_s
                assert modelled >= floor_s(collective, algorithm, size, g) * (1 - 1e-9), (
                    collective,
                    algorithm,
                    protocol,
                )


def test_two_node_tree_busbw_exceeds_the_nics_while_its_bytes_do_not() -> None:
    # nccl-tests#196 (sjeaugey): 'On two nodes, NCCL uses the tree (or nvlstree) algorithm which can
    # indeed go beyond the network bottleneck'; each node sends and receives the buffer once.
    for slug, algorithm in (("hgx-h100", "nvls_tree"), ("hgx-a100", "tree")):
        cluster = Cluster(name="c", pools=[{"name": "p", "node_type": slug, "nodes": 2}])
        g = group_links(pool_model(cluster, "p"), 16, 8)
        nic_line_gb_s = g.node_net_port_bw_gb_s
        run = evaluate("all_reduce", algorithm, "simple", 8 * 2**30, g)
        assert run.busbw_gb_s > nic_line_gb_s  # the normalisation counts 2(n-1)/n of the buffer
        assert 8 * 2**30 / run.time_s / GB <= nic_line_gb_s  # the bytes each node's NICs carry
        ring = evaluate("all_reduce", "ring", "simple", 8 * 2**30, g)
        assert ring.busbw_gb_s <= nic_line_gb_s  # a ring's busbw is its NIC traffic


def _one_node(slug: str) -> GroupLinks:
    cluster = Cluster(name="c", pools=[{"name": "p", "node_type": slug, "nodes": 1}])
    return group_links(pool_model(cluster, "p"), 8, 8)


def test_nvls_all_gather_stays_under_the_nvlink_line_rate_on_8_h100() -> None:
    # the violation: 474 GB/s NVLS all-gather over 450 GB/s links, preferred by select
    g = _one_node("hgx-h100")
    for collective in ("all_gather", "reduce_scatter"):
        nvls = evaluate(collective, "nvls", "simple", 8 * 2**30, g)
        assert nvls.busbw_gb_s <= 450 * 0.824 * 1.0001  # the link's achievable rate (nccl-tests#212: ~370)
        assert select(collective, 8 * 2**30, g).busbw_gb_s <= 450


@pytest.mark.parametrize(("slug", "cap"), [("hgx-h100", 141.0), ("hgx-a100", 87.7)])
def test_ll_is_capped_as_nccl_caps_it(slug: str, cap: float) -> None:
    # NCCL v2.30.7-1 tuning.cc llMaxBws: one node, Hopper 141 GB/s, Ampere 87.7 GB/s
    g = _one_node(slug)
    for algorithm in ("ring", "tree"):
        ll = evaluate("all_reduce", algorithm, "ll", 8 * 2**30, g)
        assert ll.busbw_gb_s <= cap * 1.0001
    assert evaluate("all_gather", "ring", "ll", 8 * 2**30, g).busbw_gb_s <= cap * 1.0001
