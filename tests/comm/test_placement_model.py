"""Topology-aware placement: the scheduler prices candidate placements with the collective model, on
the same links graph and the same leaf switches, so a job's collectives decide where it goes."""

from __future__ import annotations

from suanli.comm.topology import fabric_shape, node_leaves
from suanli.sched.cluster_state import ClusterState, Slot
from suanli.sched.job import SchedJob
from suanli.sched.placement import _pack_whole, find_slots, placement_time_s
from suanli.spec import Cluster


def _job(gpus: int, accel: str) -> SchedJob:
    return SchedJob(job_id=f"g{gpus}", submit_s=0.0, gpus=gpus, runtime_s={accel: 100.0})


def _bind(state: ClusterState, job_id: str, node: int, gpus: list[int]) -> None:
    state.bind(job_id, tuple(Slot(node, g) for g in gpus))


def test_a_gang_takes_a_whole_nvlink_island_over_the_best_fit_node_that_straddles_two() -> None:
    # 8x H200 NVL: two 4-GPU NVLink-bridge islands per node, joined only by PCIe + UPI
    cluster = Cluster(name="nvl", pools=[{"name": "p", "node_type": "h200-nvl-8", "nodes": 2}])
    state = ClusterState.from_cluster(cluster)
    _bind(state, "a", 0, [2, 3, 6, 7])  # node 0 keeps 0, 1 | 4, 5 free: exactly 4, across islands
    _bind(state, "b", 1, [6, 7])  # node 1 keeps island 0-3 whole
    job = _job(4, "h200-sxm")
    packed = _pack_whole(state, 4, "h200-sxm")
    chosen = find_slots(state, job, "h200-sxm")
    assert packed is not None and {s.node for s in packed} == {0}  # best fit: the node with 4 free
    assert chosen is not None and {(s.node, s.gpu) for s in chosen} == {(1, 0), (1, 1), (1, 2), (1, 3)}
    assert placement_time_s(state, chosen) < placement_time_s(state, packed) / 3  # NVLink vs ~40 GB/s


def test_a_gang_takes_two_empty_nodes_over_a_tight_leaf_of_scattered_gpus() -> None:
    cluster = Cluster(
        name="hgx",
        pools=[{"name": "p", "node_type": "hgx-h100", "nodes": 32}],
        fabric={"kind": "rail-optimized", "switch_radix": 32},  # 16 nodes per leaf
    )
    state = ClusterState.from_cluster(cluster)
    for node in range(8):
        _bind(state, f"x{node}", node, list(range(6)))  # leaf 0: 8 nodes with 2 free GPUs each
    for node in range(8, 16):
        _bind(state, f"y{node}", node, list(range(8)))
    for node in range(16, 28):
        _bind(state, f"z{node}", node, list(range(8)))  # leaf 1: 4 empty nodes
    packed = _pack_whole(state, 16, "h100-sxm")
    chosen = find_slots(state, _job(16, "h100-sxm"), "h100-sxm")
    assert packed is not None and len({s.node for s in packed}) == 8  # the leaf with least spare room
    assert chosen is not None and len({s.node for s in chosen}) == 2
    assert placement_time_s(state, chosen) < placement_time_s(state, packed)


def test_scheduler_and_model_share_one_leaf_size() -> None:
    # a plain fat tree with 8 NICs per node: 64-port leaves at 1:1 take 32 NIC ports = 4 nodes
    cluster = Cluster(name="ft", pools=[{"name": "p", "node_type": "hgx-h100", "nodes": 12}])
    per_leaf = fabric_shape(cluster, cluster.node_type_of("p")).nodes_per_leaf
    state = ClusterState.from_cluster(cluster)
    assert per_leaf == 4
    assert [n.leaf for n in state.nodes] == node_leaves(cluster) == [i // 4 for i in range(12)]
