"""The shortcuts that keep large simulations fast are exact: each gives what the slow path gives."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from suanli.comm.estimate import placed_collective_time_s
from suanli.sched.cluster_state import ClusterState, Slot
from suanli.sched.placement import REFERENCE_BYTES, REFERENCE_COLLECTIVE, placement_time_s
from suanli.sched.policies.gavel import gavel_allocation
from suanli.spec import Cluster


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda jobs: st.tuples(
            st.lists(st.lists(st.floats(0.1, 10.0), min_size=3, max_size=3), min_size=jobs, max_size=jobs),
            st.lists(st.sampled_from([1, 2, 4, 8]), min_size=jobs, max_size=jobs),
            st.lists(st.integers(0, 64), min_size=3, max_size=3),
        )
    )
)
def test_gavel_without_contention_is_the_lps_optimum(case):
    """When every job has one best type and all fit there, Gavel's allocation is that one-hot matrix
    without an LP; it must be the LP's optimum (the same objective, and feasible), and under
    contention the LP still decides."""
    table, gpus, capacity = (np.array(x, dtype=float) for x in case)
    x = gavel_allocation(table, gpus, capacity)
    jobs, types = table.shape
    rows = np.zeros((jobs + types, jobs * types))
    for j in range(jobs):
        rows[j, j * types : (j + 1) * types] = 1.0
        for t in range(types):
            rows[jobs + t, j * types + t] = gpus[j]
    lp = linprog(
        -table.ravel(),
        A_ub=rows,
        b_ub=np.concatenate([np.ones(jobs), capacity]),
        bounds=(0, 1),
        method="highs",
    )
    assert lp.status == 0
    assert np.isclose((table * x).sum(), -lp.fun, rtol=1e-9, atol=1e-9)
    assert np.all(x.sum(axis=1) <= 1 + 1e-9) and np.all(gpus @ x <= capacity + 1e-6)


def test_gavel_shortcut_gives_the_lps_unique_allocation():
    table = np.array([[1.0, 3.0], [2.0, 1.0], [0.0, 5.0]])
    gpus, capacity = np.array([4.0, 2.0, 2.0]), np.array([2.0, 8.0])
    x = gavel_allocation(table, gpus, capacity)
    assert x.tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    crowded = gavel_allocation(table, gpus, np.array([2.0, 4.0]))  # the LP: jobs 0 and 2 cannot share 4
    assert crowded[:, 1] @ np.array([4.0, 0.0, 2.0]) <= 4.0 + 1e-9 and crowded[0, 1] < 1.0


def test_on_nvswitch_nodes_any_k_gpus_price_alike():
    """Placement prices one shape per (GPUs per node) on NVSwitch nodes; the collective model gives
    every choice of GPUs the same time there, so the shortcut changes no placement."""
    cluster = Cluster.model_validate(
        {"name": "c", "pools": [{"name": "h", "node_type": "hgx-h100", "nodes": 2}]}
    )
    state = ClusterState.from_cluster(cluster)
    for members in ([(0, 1, 2)], [(5, 6, 7)], [(0, 3, 6)], [(1, 2), (4, 7)], [(0, 1), (0, 1)]):
        direct = placed_collective_time_s(
            cluster, "h", REFERENCE_COLLECTIVE, REFERENCE_BYTES, [tuple(m) for m in members], 1
        )
        slots = tuple(Slot(node, gpu) for node, gpus in enumerate(members) for gpu in gpus)
        assert placement_time_s(state, slots) == direct
