"""The cost models and the selection against published nccl-tests figures, and their properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.comm import cost
from suanli.comm.collectives import BUILTIN, HIERARCHICAL, Communicator, NodeLayout
from suanli.comm.estimate import collective_time_s, p2p_time_s
from suanli.comm.nccl_model import nccl_choice
from suanli.comm.select import ALGORITHMS, COLLECTIVES, applicable, evaluate, nccl_baseline, select
from suanli.comm.topology import group_links, pool_model
from suanli.spec import CATALOG, Cluster, SpecError
from tests.comm.conftest import one_pool_cluster

LARGE = 8 * 2**30


def _links(node_type: str, nodes: int, ranks_per_node: int = 8, **fabric):  # type: ignore[no-untyped-def]
    cluster = one_pool_cluster(node_type, nodes, **fabric)
    return group_links(pool_model(cluster, "p"), nodes * ranks_per_node, ranks_per_node)


# Published large-message all-reduce bus bandwidths (GB/s); NCCL's pick, timed by our model.
@pytest.mark.parametrize(
    ("node_type", "nodes", "published_busbw", "source"),
    [
        ("hgx-h100", 1, 476, "nccl-tests#290: 8x H100 NVLS ~476 GB/s"),
        ("hgx-h100", 4, 380, "nccl-tests#309: multi-node HGX H100, 8x400G: network peak ~380 GB/s"),
        ("hgx-h100", 2, 470, "nccl-tests#309: 2x HGX H100 NVLSTree 470 GB/s, above the 400 GB/s NICs"),
        ("hgx-a100", 1, 240, "alayanew blog: 8x A100 single node 230-250 GB/s"),
        ("hgx-a100", 2, 192, "nccl#812: DGX-A100 multi-node 8x200G, 192 GB/s"),
        ("hgx-a800", 1, 160, "nccl#412: 8x A800 NVLink 400 GB/s, 160 GB/s"),
    ],
)
def test_large_allreduce_busbw_within_15_percent_of_published(
    node_type, nodes, published_busbw, source
) -> None:  # type: ignore[no-untyped-def]
    predicted = nccl_baseline("all_reduce", LARGE, _links(node_type, nodes)).busbw_gb_s
    assert abs(predicted - published_busbw) / published_busbw <= 0.15, (source, predicted)


def test_small_message_latency_floor_within_2x_of_h20_measurement() -> None:
    # nccl#1244: 2 nodes x 8 H20 (NVSwitch, NVLSTree), 16 NDR NICs: 46-48 µs for 4 B .. 1 KiB.
    node = {"topology": {"kind": "nvswitch", "link_bw_gb_s": 450, "in_switch_reduction": True}}
    base = CATALOG.node_type("hgx-h100").model_dump()
    h20 = base | node | {"slug": "h20-16nic", "accelerator": "h20"}
    h20["nics"] = [{"count": 16, "gbit_s": 400, "serves": [[i // 2] for i in range(16)]}]
    cluster = Cluster(
        name="h20", pools=[{"name": "p", "node_type": "h20-16nic", "nodes": 2}], node_types=[h20]
    )
    links = group_links(pool_model(cluster, "p"), 16, 8)
    predicted_us = nccl_baseline("all_reduce", 4, links).time_s * 1e6
    assert 47 / 2 <= predicted_us <= 47 * 2


def test_ring_all_reduce_is_bandwidth_bound_by_the_nics_across_nodes() -> None:
    # Per-NIC busbw of a multi-node ring (nccl-tests#290: 46-48 GB/s per NDR NIC).
    links = _links("hgx-h100", 4)
    ring = evaluate("all_reduce", "ring", "simple", LARGE, links)
    assert 46 * 8 * 0.95 <= ring.busbw_gb_s <= 48 * 8 * 1.05


def test_nccl_model_picks_low_latency_protocols_for_small_and_simple_or_nvls_for_large() -> None:
    links = _links("hgx-h100", 1)
    assert nccl_choice("all_reduce", 8, links)[1] == "ll"
    assert nccl_choice("all_reduce", LARGE, links) == ("nvls", "simple")
    assert nccl_choice("all_reduce", LARGE, _links("hgx-a100", 1)) == ("ring", "simple")
    assert nccl_choice("all_gather", 1024, _links("hgx-a100", 16))[0] == "ring"
    big = _links("hgx-h100", 128)
    assert nccl_choice("all_reduce", 1 << 20, big)[0] == "tree"  # rings are latency-bound at 1,024 GPUs


def test_hierarchical_all_to_all_beats_direct_at_scale_for_small_messages() -> None:
    links = _links("hgx-h100", 128)
    direct = evaluate("all_to_all", "direct", "simple", 1 << 20, links)
    hierarchical = evaluate("all_to_all", "hierarchical", "simple", 1 << 20, links)
    assert hierarchical.time_s < direct.time_s


def test_oversubscription_slows_all_to_all_across_leaves_but_not_rings() -> None:
    full = _links("hgx-h100", 64, oversubscription=1.0)
    half = _links("hgx-h100", 64, oversubscription=2.0)
    assert half.spine_share > 0
    a2a = [evaluate("all_to_all", "direct", "simple", LARGE, g).time_s for g in (full, half)]
    assert a2a[1] > 1.5 * a2a[0]
    ring = [evaluate("all_reduce", "ring", "simple", LARGE, g).time_s for g in (full, half)]
    assert ring[1] == pytest.approx(ring[0], rel=0.01)


sizes = st.floats(min_value=1, max_value=2**34, allow_nan=False)
node_types = st.sampled_from(
    ["hgx-h100", "hgx-a100", "ascend-910b-8", "kuae-s4000-8", "l40s-pcie-8", "oam-ubb-hcm"]
)


@settings(max_examples=60, deadline=None)
@given(node_type=node_types, nodes=st.integers(1, 40), per_node=st.sampled_from([1, 2, 4, 8]), size=sizes)
def test_every_algorithm_is_monotone_in_size_and_selection_is_the_minimum(
    node_type, nodes, per_node, size
) -> None:  # type: ignore[no-untyped-def]
    if nodes * per_node < 2:
        return
    links = _links(node_type, nodes, per_node)
    for collective in COLLECTIVES:
        best = select(collective, size, links)
        assert best.time_s == min(
            evaluate(collective, a, p, size, links).time_s
            for a in ALGORITHMS[collective]
            for p in cost.PROTOCOLS
            if applicable(collective, a, p, links)
        )
        assert best.time_s <= nccl_baseline(collective, size, links).time_s
        for algorithm in ALGORITHMS[collective]:
            for protocol in cost.PROTOCOLS:
                if not applicable(collective, algorithm, protocol, links):
                    continue
                small = evaluate(collective, algorithm, protocol, size, links).time_s
                large = evaluate(collective, algorithm, protocol, size * 2, links).time_s
                assert 0 < small <= large


@settings(max_examples=40, deadline=None)
@given(node_type=st.sampled_from(["hgx-a100", "ascend-910b-8", "l40s-pcie-8"]), size=sizes)
def test_single_node_busbw_never_exceeds_the_link_without_in_switch_reduction(node_type, size) -> None:  # type: ignore[no-untyped-def]
    links = _links(node_type, 1)
    for collective in ("all_reduce", "all_gather", "reduce_scatter"):
        assert select(collective, size, links).busbw_gb_s <= links.intra_bw_gb_s * 1.0001


def test_estimate_entry_points(hgx_cluster, mixed_cluster) -> None:  # type: ignore[no-untyped-def]
    assert collective_time_s(hgx_cluster, "h100", "all_reduce", 1e6, 1, 1) == 0.0
    within = collective_time_s(hgx_cluster, "h100", "all_reduce", 1e9, 8, 8)
    across = collective_time_s(hgx_cluster, "h100", "all_reduce", 1e9, 16, 8)
    assert 0 < within < across
    slow = collective_time_s(mixed_cluster, "s4000", "all_reduce", 1e9, 64, 8)
    fast = collective_time_s(mixed_cluster, "h100", "all_reduce", 1e9, 64, 8)
    assert slow > 3 * fast  # MTLink 120 GB/s and 4x200G vs NVSwitch 450 GB/s and 8x400G
    assert p2p_time_s(hgx_cluster, "h100", "h100", 1e8, same_node=True) < p2p_time_s(
        hgx_cluster, "h100", "h100", 1e8, same_node=False
    )
    assert p2p_time_s(mixed_cluster, "h100", "ascend", 1e8, same_node=False) > p2p_time_s(
        mixed_cluster, "h100", "h100", 1e8, same_node=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("h100", "all_sum", 1e6, 8, 8), "collective: unknown 'all_sum'"),
        (("h100", "all_reduce", 0, 8, 8), "message size: must be > 0"),
        (("h100", "all_reduce", -5, 8, 8), "message size: must be > 0"),
        (("h100", "all_reduce", 1e6, 2048, 8), "does not fit pool"),
        (("h100", "all_reduce", 1e6, 16, 16), "ranks_per_node: 16 exceeds"),
        (("gpu", "all_reduce", 1e6, 8, 8), "pool: 'gpu' is not in cluster"),
    ],
)
def test_bad_input_is_a_one_line_spec_error(hgx_cluster, args, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError, match=message) as raised:
        collective_time_s(hgx_cluster, *args)
    assert "\n" not in str(raised.value)


def test_communicator_runs_hierarchical_all_to_all_at_scale_and_builtin_all_reduce_in_one_node(
    hgx_cluster,
) -> None:  # type: ignore[no-untyped-def]
    def layout(world: int, per_node: int) -> NodeLayout:
        return NodeLayout(rank=0, world_size=world, ranks_per_node=per_node, node_group=None, rail_group=None)  # type: ignore[arg-type]

    at_scale = Communicator.for_cluster(layout(1024, 8), hgx_cluster, "h100")
    assert at_scale.algorithm("all_to_all", 1 << 20) == HIERARCHICAL  # 127 rail messages instead of 1,016
    assert at_scale.algorithm("all_to_all", 8 << 30) == BUILTIN
    one_node = Communicator.for_cluster(layout(8, 8), hgx_cluster, "h100")
    assert one_node.algorithm("all_reduce", 1 << 30) == BUILTIN
