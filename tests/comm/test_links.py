"""The intra-node links graph: which links exist decides the bandwidth a group of ranks gets."""

from __future__ import annotations

import pytest

from suanli.comm.links import intra_bandwidth, intra_graph
from suanli.comm.select import COLLECTIVES, select
from suanli.comm.topology import group_links, pool_model
from suanli.spec import CATALOG
from tests.comm.conftest import one_pool_cluster

ACCELERATOR_NODES = [n.slug for n in CATALOG.node_types if n.accelerators_per_node > 1]


def test_h200_nvl_islands_joined_only_by_pcie_and_upi_are_priced_at_the_socket_link() -> None:
    # Two 4-GPU NVLink-bridge domains per node, joined through PCIe Gen5 + UPI (~50 GB/s): a ring
    # over all 8 crosses the socket link, a ring inside one domain never does.
    node = CATALOG.node_type("h200-nvl-8")
    island, whole = intra_bandwidth(node, range(4)), intra_bandwidth(node, range(8))
    assert island.link_class == "nvlink" and island.ring_gb_s == pytest.approx(450 * 0.824)
    assert whole.link_class == "pci" and whole.ring_line_gb_s == pytest.approx(50)
    assert whole.ring_gb_s == pytest.approx(50 * 0.8)
    # all-to-all: 4 x 4 flows of 1/8 of a buffer share the one socket link
    assert whole.a2a_line_gb_s == pytest.approx(50 * 7 / 16)


def test_ranks_on_unconnected_islands_never_get_nvlink_bandwidth() -> None:
    # the case: the old mesh model gave full NVLink bandwidth to GPUs that share no link
    node = CATALOG.node_type("h200-nvl-8")
    pair_across = intra_bandwidth(node, (0, 4))
    assert pair_across.link_class == "pci" and pair_across.ring_line_gb_s == pytest.approx(50)
    graph = intra_graph(node)
    assert not graph.has_edge(0, 4) and graph.has_edge(0, 1)


def test_hybrid_cube_mesh_group_spanning_quads_uses_the_one_cross_link() -> None:
    node = CATALOG.node_type("oam-ubb-hcm")  # two full quads, cross links 0-4, 1-5, 2-6, 3-7
    per_link = 1150 / 4  # 4 links per OAM
    five = intra_bandwidth(node, range(5))  # rank 4 reaches the quad through link 0-4 only
    assert five.link_class == "nvlink" and five.ring_line_gb_s == pytest.approx(per_link)
    assert intra_bandwidth(node, range(8)).ring_line_gb_s == pytest.approx(4 * per_link)


@pytest.mark.parametrize("node_type", ACCELERATOR_NODES)
@pytest.mark.parametrize("ranks_per_node", [3, 5, 7])
def test_any_ranks_per_node_is_priced_on_every_node_type(node_type: str, ranks_per_node: int) -> None:
    # 5 ranks per node used to raise ZeroDivisionError; every collective must have a finite time
    node = CATALOG.node_type(node_type)
    if ranks_per_node > node.accelerators_per_node:
        pytest.skip("fewer accelerators than ranks per node")
    links = group_links(pool_model(one_pool_cluster(node_type, 3), "p"), 3 * ranks_per_node, ranks_per_node)
    assert 0 < links.intra_bw_gb_s <= links.intra_line_bw_gb_s
    for collective in COLLECTIVES:
        assert 0 < select(collective, 2**20, links).time_s < 1.0
