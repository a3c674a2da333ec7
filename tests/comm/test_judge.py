"""The fair judge: gains are measured against the best algorithm NCCL itself offers, under the same
cost model and the same per-step latency table (NCCL v2.30.7-1 tuning.cc)."""

from __future__ import annotations

import pytest

from suanli.comm import cost
from suanli.comm.select import ALGORITHMS, gain, nccl_best, select
from suanli.comm.topology import GroupLinks, calibration, group_links, pool_model


@pytest.fixture(scope="module")
def h100_1024(hgx_cluster) -> GroupLinks:  # type: ignore[no-untyped-def]
    return group_links(pool_model(hgx_cluster, "h100"), 1024, 8)


@pytest.mark.parametrize("size", [128 * 2**20, 8 * 2**30])
def test_large_all_reduce_gains_nothing_over_nccls_own_algorithms(h100_1024, size) -> None:  # type: ignore[no-untyped-def]
    # NCCL's ring / NVLS-tree are bandwidth-optimal on the model: the issue measured 0 % here
    assert gain("all_reduce", size, h100_1024) == pytest.approx(0.0, abs=1e-9)


def test_small_all_reduce_gain_is_small_once_log_steps_pay_tree_latency(h100_1024) -> None:  # type: ignore[no-untyped-def]
    # priced at ring per-step latency the recursive-halving gain was 49 %; at tree latency ~6 %
    for size in (8, 1024, 128 * 1024):
        assert 0 <= gain("all_reduce", size, h100_1024) < 0.10


def test_log_step_algorithms_pay_nccls_tree_latency_and_linear_ones_its_ring_latency(h100_1024) -> None:  # type: ignore[no-untyped-def]
    lat = calibration()["nccl_latency_us"]
    families = {name: spec[0] for algorithms in ALGORITHMS.values() for name, spec in algorithms.items()}
    for log_step in ("tree", "rabenseifner", "recursive_doubling", "recursive_halving", "bruck", "binomial"):
        assert families[log_step] == "tree"
    for linear in ("ring", "hierarchical", "direct"):
        assert families[linear] == "ring"
    tree = cost.protocol("tree", "simple", h100_1024, "ring")
    assert tree.net_step_us == pytest.approx(lat["net"]["tree"]["simple"] + h100_1024.fabric_latency_us)


def test_pat_is_in_the_judge_with_one_rank_per_node(hgx_cluster) -> None:  # type: ignore[no-untyped-def]
    one_per_node = group_links(pool_model(hgx_cluster, "h100"), 128, 1)
    assert nccl_best("all_gather", 2**26, one_per_node).algorithm == "pat"
    assert gain("all_gather", 2**26, one_per_node) == pytest.approx(0.0, abs=1e-9)
    eight_per_node = group_links(pool_model(hgx_cluster, "h100"), 128, 8)
    assert nccl_best("all_gather", 2**26, eight_per_node).algorithm != "pat"  # NCCL: one GPU per node only


def test_our_selection_includes_nccls_algorithms_so_it_is_never_slower_than_the_judge(h100_1024) -> None:  # type: ignore[no-untyped-def]
    for collective in ALGORITHMS:
        for size in (8, 2**20, 2**30):
            assert select(collective, size, h100_1024).time_s <= nccl_best(collective, size, h100_1024).time_s
