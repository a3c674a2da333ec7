"""The shortcuts that keep large simulations fast are exact: each gives what the slow path gives."""

from __future__ import annotations

import math
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from suanli.comm.estimate import placed_collective_time_s
from suanli.sched.cluster_state import ClusterState, Slot
from suanli.sched.estimate import HistoryEstimator
from suanli.sched.fractional import FULL_MILLI
from suanli.sched.job import JobState, SchedJob
from suanli.sched.placement import REFERENCE_BYTES, REFERENCE_COLLECTIVE, placement_time_s
from suanli.sched.policies import Hook, Policy, View, make_policy
from suanli.sched.policies.ftf import FinishTimeFairness
from suanli.sched.policies.gavel import gavel_allocation
from suanli.sched.policies.suanli import SuanliPolicy
from suanli.sched.scheduler import Decision, Scheduler
from suanli.sched.simulator import SimConfig, simulate
from suanli.spec import Cluster
from tests.sched.conftest import job, make_cluster


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


def _full_walk(self: Scheduler, view: View) -> list[Decision]:
    """The preemptive pass as specified, without its early stop: every job in policy order is offered
    its types until one has room by count."""
    free = {t: n * FULL_MILLI for t, n in view.capacity.items()}
    admitted: dict[str, str] = {}
    for state in self.policy.order(view):
        for accel_type in self.policy.ranked_types(state, view):
            need = self._need_milli(state.job, accel_type)
            if free.get(accel_type, 0) >= need:
                free[accel_type] -= need
                admitted[state.job.job_id] = accel_type
                break
    preempted = [
        self._preempt(state, view.now_s)
        for state in list(self.jobs.values())
        if state.status == "running" and admitted.get(state.job.job_id) != state.accel_type
    ]
    return preempted + self._start_admitted(admitted, view)


class _FtfRankingAll(FinishTimeFairness):
    """FTF as the full preemptive pass runs it between rounds too: every job ranked, lease holders first."""

    hooks = frozenset({Hook.RANK})


def _outcome(policy: Policy, jobs: list[SchedJob]) -> dict[str, tuple]:
    cluster = make_cluster({"a": (2, 8), "b": (1, 4)}, nodes_per_leaf=2)
    result = simulate(cluster, policy, jobs, SimConfig(estimate_error=0.5, seed=3))
    return {
        s.job.job_id: (s.finish_s, s.accel_type, s.preemptions, s.first_start_s, s.placement)
        for s in result.jobs
    }


@pytest.mark.parametrize("name", ["tiresias", "suanli", "ftf"])
@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 4000), st.sampled_from([1, 2, 4, 8]), st.floats(60, 20000), st.floats(1.0, 3.0)
        ),
        min_size=8,
        max_size=40,
    )
)
def test_live_tick_shortcuts_change_no_decision(name, rows):
    """The preemptive pass stops once no type has a free share, and between rounds FTF ranks only
    its waiting jobs into the room the lease holders leave (`Hook.KEEPS_RUNNING`); on random
    workloads over two types, every job starts, runs where, is preempted and finishes exactly as
    with the full walk and full ranking."""
    jobs = [
        job(f"j{i}", submit_s, gpus, {"a": run_s, "b": run_s * slower})
        for i, (submit_s, gpus, run_s, slower) in enumerate(rows)
    ]
    fast = _outcome(make_policy(name), jobs)
    slow_policy = _FtfRankingAll() if name == "ftf" else make_policy(name)
    with patch.object(Scheduler, "_preemptive_pass", _full_walk):
        slow = _outcome(slow_policy, jobs)
    assert fast == slow


class _ScalarSuanli(SuanliPolicy):
    """Suanli's rank and wake-up as per-job key functions (the code before `np.lexsort`), frozen here
    as the reference the column-wise version must reproduce decision for decision."""

    def rank(self, states: list[JobState], view: View) -> list[JobState]:
        total = sum(view.capacity.values()) or 1
        over = {
            q
            for q, n in view.held_by_queue().items()
            if q in self.queue_quotas and n / total > self.queue_quotas[q]
        } | self._over_fair_share()
        share_gpus = total / max(1, len(view.jobs))

        def key(s: JobState) -> tuple:
            job = s.job
            types = self._profile(s, view)[0]
            running = s.status == "running"
            rho = self._rho(s, view, share_gpus)[0]
            starving = job.declared and rho > self.rho_guard
            if job.declared:
                area = job.width * view.remaining_s(s, types[0])
                if running:
                    cycle_s = self._cycle_s(job, view)
                    lost_s = (view.now_s - s.busy_from_s) % cycle_s if cycle_s else 0.0
                    on_best = job.runtime_s[types[0]] / job.runtime_s[s.accel_type or types[0]] * s.speed
                    area = area / self.stickiness - job.width * (lost_s * on_best + job.restart_overhead_s)
            else:
                area = self.las_threshold_gpu_s * (1 + (s.attained_gpu_s >= self.las_threshold_gpu_s))
            keep = running and job.declared and area <= 0
            return (
                not (running and job.kind == "hpc"),
                job.queue in over,
                not (starving or keep),
                not (running and view.now_s < s.busy_from_s),
                -math.inf
                if keep
                else -rho * (self.guard_hysteresis if running else 1.0)
                if starving
                else area,
                job.submit_s,
                job.job_id,
            )

        return sorted(states, key=key)

    def _rho(self, state: JobState, view: View, share_gpus: float) -> tuple[float, float]:
        job = state.job
        types, mean_rate = self._profile(state, view)
        share_s = max(1.0, job.width / share_gpus) / mean_rate * view.expected_work(state)
        elapsed_s = view.now_s - job.submit_s + job.restart_overhead_s
        return (elapsed_s + view.remaining_s(state, types[-1])) / share_s, share_s

    def next_pass_s(self, view: View) -> float | None:
        share_gpus = sum(view.capacity.values()) / max(1, len(view.jobs))
        waiting = view.pending()
        times = []
        for s in waiting:
            if s.job.declared and self._profile(s, view)[0]:
                rho, share_s = self._rho(s, view, share_gpus)
                if rho <= self.rho_guard:
                    times.append(view.now_s + (self.rho_guard - rho) * share_s + 1.0)
        if waiting:
            for s in view.running():
                cycle_s = self._cycle_s(s.job, view) if s.job.declared else 0.0
                if cycle_s and view.now_s > s.busy_from_s:
                    done = math.floor((view.now_s - s.busy_from_s) / cycle_s) + 1
                    times.append(s.busy_from_s + done * cycle_s + 1.0)
        return min(times, default=None)


class _EstimatorAskedJobByJob(HistoryEstimator):
    """The same estimates through the `Estimator` protocol only: Suanli asks it job by job."""


@pytest.mark.parametrize("estimator", [HistoryEstimator, _EstimatorAskedJobByJob])
@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 4000),
            st.sampled_from([1, 2, 4, 8]),
            st.floats(60, 20000),
            st.floats(1.0, 3.0),
            st.booleans(),
            st.sampled_from(["training", "hpc"]),
            st.sampled_from(["q1", "q2"]),
            st.sampled_from([0.0, 30.0, 900.0]),
            st.sampled_from(["", "x", "y"]),
        ),
        min_size=8,
        max_size=40,
    ),
    st.sampled_from([{}, {"q1": 0.3}]),
    st.sampled_from([2.0, 0.5]),
)
def test_suanli_columnwise_rank_changes_no_decision(estimator, rows, quotas, rho_guard):
    """Suanli's rank as one `np.lexsort` over columns and its wake-up over arrays give, on random
    workloads (declared and undeclared work, HPC jobs, two queues, a quota, restore costs, checkpoint
    cycles, applications with a history, a guard that fires often), every job the same start, type,
    preemptions, finish and placement as the per-job keys."""
    jobs = [
        job(
            f"j{i}",
            submit_s,
            gpus,
            {"a": run_s, "b": run_s * slower},
            declared=declared,
            kind=kind,
            queue=queue,
            restart_overhead_s=restart_s,
            checkpoint_s=restart_s / 3,
            app=app,
        )
        for i, (submit_s, gpus, run_s, slower, declared, kind, queue, restart_s, app) in enumerate(rows)
    ]
    with patch("suanli.sched.scheduler.HistoryEstimator", estimator):
        fast = _outcome(SuanliPolicy(queue_quotas=quotas, rho_guard=rho_guard), jobs)
    assert fast == _outcome(_ScalarSuanli(queue_quotas=quotas, rho_guard=rho_guard), jobs)
