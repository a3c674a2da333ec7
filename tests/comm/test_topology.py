"""The topology graph and the closed-form group view agree on the same wiring."""

from __future__ import annotations

import pytest

from suanli.comm.topology import accelerator_id, build_graph, group_links, group_route, pool_model
from suanli.spec import CATALOG, Cluster, SpecError


@pytest.mark.parametrize(("nodes", "hops"), [(1, 0), (3, 1), (5, 1), (6, 3), (12, 3)])
def test_graph_hops_match_the_closed_form_view(mixed_cluster, nodes, hops) -> None:  # type: ignore[no-untyped-def]
    # mixed-center: radix 64 at 2:1 -> 42 leaf down-ports -> 5 HGX nodes (8 NICs each) per leaf
    graph = build_graph(mixed_cluster, pools=["h100"])
    ranks = [accelerator_id("h100", node, i) for node in range(nodes) for i in range(8)]
    route = group_route(graph, ranks)
    links = group_links(pool_model(mixed_cluster, "h100"), nodes * 8, 8)
    assert route.max_switch_hops == links.switch_hops == hops
    if nodes > 1:
        assert route.bottleneck_gb_s["nic"] == 50.0  # 400 Gb/s per rail
        assert route.bottleneck_gb_s["intra"] == 450.0
    if hops == 3:
        assert route.levels["spine"] > 0
        assert (
            route.bottleneck_gb_s["spine"] < route.bottleneck_gb_s["nic"] * 42
        )  # uplinks are oversubscribed


def test_rail_optimized_leaves_take_one_nic_of_each_node(hgx_cluster) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph(hgx_cluster)
    leaves = [n for n, kind in graph.nodes(data="kind") if kind == "leaf"]
    assert len(leaves) == 8 * (128 // 32)  # 8 rails, 32 nodes per 64-port leaf at 1:1
    assert sum(1 for _, kind in graph.nodes(data="kind") if kind == "accelerator") == 1024


def test_mesh_group_uses_only_the_links_inside_it(mixed_cluster) -> None:  # type: ignore[no-untyped-def]
    ascend = pool_model(mixed_cluster, "ascend")  # 8-NPU HCCS full mesh, 196 GB/s aggregate
    # 4 ranks keep 3 of their 7 links, 8 ranks all 7
    assert ascend.intra_by_ranks[7].ring_gb_s == pytest.approx(ascend.intra_by_ranks[3].ring_gb_s * 7 / 3)
    assert ascend.intra_by_ranks[7].ring_gb_s < 196


def test_pcie_group_spanning_switches_is_limited_by_the_uplink() -> None:
    node = CATALOG.node_type("l40s-pcie-8").model_dump()
    node["slug"] = "l40s-narrow-uplink"
    node["topology"]["uplink_bw_gb_s"] = 16
    cluster = Cluster(
        name="c", pools=[{"name": "p", "node_type": node["slug"], "nodes": 1}], node_types=[node]
    )
    model = pool_model(cluster, "p")
    assert model.intra_by_ranks[7].link_class == "pci"
    eight, four = model.intra_by_ranks[7].ring_gb_s, model.intra_by_ranks[3].ring_gb_s
    assert eight == pytest.approx(four / 2)  # 16 vs 32 GB/s


def test_group_outside_the_cluster_is_rejected(hgx_cluster) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph(hgx_cluster)
    with pytest.raises(SpecError, match="not an accelerator of this cluster"):
        group_route(graph, [accelerator_id("h100", 0, 0), accelerator_id("h100", 500, 0)])
