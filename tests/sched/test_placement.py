"""Placement properties: whole gangs only, no oversubscription, fewest nodes, MIG geometry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.sched.cluster_state import Slot
from suanli.sched.fractional import FULL_MILLI, mig_model, mig_place
from suanli.sched.placement import find_slots, nodes_and_leaves
from suanli.spec.job import Sharing
from tests.sched.conftest import job, make_cluster


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.booleans()), min_size=1, max_size=40))
def test_bind_release_never_oversubscribes(ops):
    cluster = make_cluster({"a": (4, 8)})
    held: list[str] = []
    for i, (gpus, release) in enumerate(ops):
        if release and held:
            cluster.release(held.pop(0))
            continue
        slots = find_slots(cluster, job(f"j{i}", 0, gpus, 1.0), "a")
        free_before = cluster.free_whole_by_type["a"]
        if slots is None:
            assert free_before < gpus or gpus > 32  # only refused when the gang cannot fit whole
            continue
        assert len(slots) == gpus and len(set(slots)) == gpus
        cluster.bind(f"j{i}", slots)
        held.append(f"j{i}")
        assert cluster.free_whole_by_type["a"] == free_before - gpus
    for node in cluster.nodes:
        assert all(0 <= m <= FULL_MILLI for m in node.free_milli)
        assert node.whole_free == sum(m == FULL_MILLI for m in node.free_milli)
    assert [sorted(b) for b in cluster.nodes_by_whole_free["a"]] == [
        [i for i, node in enumerate(cluster.nodes) if node.whole_free == k] for k in range(9)
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 5)), min_size=1, max_size=40), st.integers(1, 8))
def test_a_gang_that_fits_one_node_goes_to_the_fullest_node_that_holds_it(ops, gpus):
    """Best fit, read from the nodes' free-GPU buckets, is the linear scan's answer: the node with the
    fewest whole free GPUs that still holds the gang, the first in pool order on a tie."""
    cluster = make_cluster({"a": (6, 8)})
    for i, (width, node) in enumerate(ops):
        free = [g for g, m in enumerate(cluster.nodes[node].free_milli) if m == FULL_MILLI]
        if len(free) >= width:
            cluster.bind(f"j{i}", tuple(Slot(node, g) for g in free[:width]))
        if i % 3 == 2:
            cluster.release(f"j{i - 1}")
    holding = [(n.whole_free, i) for i, n in enumerate(cluster.nodes) if n.whole_free >= gpus]
    slots = find_slots(cluster, job("gang", 0, gpus, 1.0), "a")
    if holding:
        assert slots is not None and {s.node for s in slots} == {min(holding)[1]}


@given(st.integers(1, 32))
def test_gang_on_empty_cluster_uses_fewest_nodes(gpus):
    cluster = make_cluster({"a": (4, 8)})
    slots = find_slots(cluster, job("j", 0, gpus, 1.0), "a")
    nodes, leaves = nodes_and_leaves(cluster, slots)
    assert nodes == -(-gpus // 8) and leaves == 1


def test_small_job_goes_to_the_fullest_node_that_fits():
    cluster = make_cluster({"a": (2, 8)})
    cluster.bind("big", find_slots(cluster, job("big", 0, 6, 1.0), "a"))
    slots = find_slots(cluster, job("small", 0, 2, 1.0), "a")
    assert {s.node for s in slots} == {cluster.held["big"][0].node}


def test_gang_prefers_one_leaf():
    cluster = make_cluster({"a": (4, 8)}, nodes_per_leaf=2)
    cluster.bind("x", find_slots(cluster, job("x", 0, 4, 1.0), "a"))  # half of leaf 0 is busy
    slots = find_slots(cluster, job("y", 0, 16, 1.0), "a")
    assert nodes_and_leaves(cluster, slots) == (2, 1)


def test_mig_geometry_a100():
    """NVIDIA MIG User Guide: an A100 holds 7×1g, or 3g+3g, or 4g+3g, but never 4g+4g or 4×2g."""
    model = mig_model("a100-sxm-40gb")
    p = {profile.name: profile for profile in model.profiles}
    occupied: list[tuple[int, int]] = []
    for _ in range(7):
        start = mig_place(occupied, p["1g.5gb"], model)
        assert start is not None
        occupied.append((start, p["1g.5gb"].memory_slices))
    assert mig_place(occupied, p["1g.5gb"], model) is None
    assert mig_place([(0, 4)], p["3g.20gb"], model) == 4
    assert mig_place([(0, 4)], p["4g.20gb"], model) is None
    twos: list[tuple[int, int]] = []
    for _ in range(3):
        twos.append((mig_place(twos, p["2g.10gb"], model), 2))
    assert mig_place(twos, p["2g.10gb"], model) is None


def test_mig_jobs_pack_onto_one_gpu_until_it_is_full():
    cluster = make_cluster({"a100-sxm-40gb": (1, 8)})
    sharing = Sharing(mode="mig", mig_profile="3g.20gb")
    placed = []
    for i in range(3):
        j = job(f"m{i}", 0, 1, {"a100-sxm-40gb": 10.0}, sharing=sharing)
        slots = find_slots(cluster, j, "a100-sxm-40gb")
        cluster.bind(j.job_id, slots)
        placed.append((slots[0].gpu, slots[0].mig_start))
    assert placed[0][0] == placed[1][0] and {placed[0][1], placed[1][1]} == {0, 4}
    assert placed[2][0] != placed[0][0]  # the third 3g goes to a second GPU
    assert cluster.free_whole_by_type["a100-sxm-40gb"] == 6


def test_lucid_colocation_slowdowns_come_from_the_measured_pairs():
    """Lucid (Hu et al., ASPLOS'23): two ResNet18 trainings sharing a GPU each keep 0.54-0.97 of their
    solo speed depending on batch size and AMP (mean about 0.77); co-location never speeds a job up."""
    from suanli.sched.fractional import colocated_speed, mean_colocated_speed

    assert 0.7 <= colocated_speed("ResNet18", "ResNet18") <= 0.85
    assert 0.5 < mean_colocated_speed() < 1.0
    assert colocated_speed("never-measured", "ResNet18") == mean_colocated_speed()
