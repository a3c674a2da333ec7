"""The shortcuts that keep large simulations fast are exact: each gives what the slow path gives."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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
from suanli.sched.policies.ftf import FinishTimeFairness, projected_rho
from suanli.sched.policies.gavel import Gavel, gavel_allocation
from suanli.sched.policies.suanli import SuanliPolicy
from suanli.sched.scheduler import Decision, Scheduler, _fits_first, _Offer
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
    waiting = [(self.pending[j], t) for j, t in admitted.items() if j in self.pending]
    return preempted + self._start_admitted(waiting, view)


def _walk_job_by_job(offers: list[_Offer], free: list[int]) -> list[int]:
    """The admission walk as specified: each job in turn takes the first of its types with room for
    its need, until no type has room left."""
    left, admitted = list(free), [-1] * len(offers)
    for i, offer in enumerate(offers):
        if not any(room > 0 for room in left):
            break
        for code, need in zip(offer.types, offer.needs, strict=True):
            if left[code] >= need:
                left[code] -= need
                admitted[i] = code
                break
    return admitted


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda types: st.tuples(
            st.lists(st.integers(0, 12), min_size=types, max_size=types),
            st.lists(
                st.permutations(range(types)).flatmap(
                    lambda order: st.tuples(
                        st.integers(0, types).map(lambda k: tuple(order[:k])),
                        st.lists(st.integers(1, 4), min_size=types, max_size=types),
                    )
                ),
                max_size=30,
            ),
        )
    )
)
def test_admission_prefix_is_the_walk(case):
    """`_fits_first` admits at once the prefix of jobs that fit on their first type, and the walk
    goes on job by job from there (`Scheduler._admit`); together they admit every job on the type
    the job-by-job walk gives it, on random offers over up to three types (some with no room, some
    jobs with no type)."""
    free, rows = case
    offers = [
        _Offer(
            None,
            None,
            [],
            types,
            tuple(needs[: len(types)]),
            types[0] if types else -1,
            needs[0] if types else 0,
        )
        for types, needs in rows
    ]
    admitted, left = np.full(len(offers), -1, np.intp), list(free)
    start = _fits_first(offers, left, admitted)
    assert admitted[:start].tolist() == [o.first for o in offers[:start]]
    expected = _walk_job_by_job(offers, free)
    assert admitted[:start].tolist() == expected[:start]
    assert left == [
        room - sum(o.first_need for o, c in zip(offers[:start], expected, strict=False) if c == code)
        for code, room in enumerate(free)
    ]
    assert _walk_job_by_job(offers[start:], left) == expected[start:]
    if start < len(offers):  # the longest such prefix: the next job does not fit on its first type
        assert left[offers[start].first] < offers[start].first_need


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


class _ScalarFtf(FinishTimeFairness):
    """FTF's rank as the per-job key (the code before the column-wise ρ), frozen as the reference."""

    def rank(self, states: list[JobState], view: View) -> list[JobState]:
        round_s = self.round_s or 0.0
        leases_end = view.now_s >= self._next_round_s
        if leases_end and round_s:
            self._next_round_s = (math.floor(view.now_s / round_s) + 1) * round_s
        active_jobs = len(view.jobs)

        def key(s: JobState) -> tuple[bool, float, str]:
            keeps_lease = not leases_end and s.status == "running"
            return (not keeps_lease, -projected_rho(s, view, active_jobs), s.job.job_id)

        return sorted(states, key=key)


@pytest.mark.parametrize("estimator", [HistoryEstimator, _EstimatorAskedJobByJob])
@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 100.0, 2000.0]),  # shared submit times: ties in ρ
            st.sampled_from([1, 2, 4, 8]),
            st.sampled_from([600.0, 3000.0, 20000.0]),
            st.floats(1.0, 3.0),
            st.booleans(),
            st.sampled_from(["q1", "q2"]),
            st.sampled_from(["", "x", "y"]),
        ),
        min_size=8,
        max_size=40,
    ),
    st.booleans(),
)
def test_ftf_columnwise_rho_changes_no_decision(estimator, rows, cpu_pool):
    """FTF's ρ computed column-wise and ordered by `np.lexsort` (job ids read only on a tie) gives,
    on random workloads (declared and undeclared work, two queues, applications with a history, jobs
    with equal ρ, a CPU pool that changes the share of the GPU jobs), every job the same start, type,
    preemptions, finish and placement as the per-job key; and the same ρ bit for bit."""
    jobs = [
        job(
            f"j{i}",
            submit_s,
            gpus,
            {"a": run_s, "b": run_s * slower},
            declared=declared,
            queue=queue,
            app=app,
        )
        for i, (submit_s, gpus, run_s, slower, declared, queue, app) in enumerate(rows)
    ]
    pools = {"a": (2, 8), "b": (1, 4), **({"cpu": (2, 1)} if cpu_pool else {})}
    with patch("suanli.sched.scheduler.HistoryEstimator", estimator):
        fast = _outcome(FinishTimeFairness(), jobs)
    assert fast == _outcome(_ScalarFtf(), jobs)
    done = [(i * 0.37) % 1.3 if j.declared else (i % 5) * 20000.0 for i, j in enumerate(jobs)]  # past rungs
    states = {j.job_id: JobState(job=j, progress=p) for j, p in zip(jobs, done, strict=True)}
    history = HistoryEstimator()
    for i, finished in enumerate(jobs):  # past jobs of the same queues and applications
        history.observe(JobState(job=finished, progress=0.5 + (i % 4) * 0.4))
    view = View(5000.0, states, make_cluster(pools), estimator=history)
    expected = [projected_rho(s, view, len(states)) for s in states.values()]
    assert FinishTimeFairness()._rhos(list(states.values()), view).tolist() == expected
    backwards = list(states.values())[::-1]  # ties are broken by job id, not by the order given
    assert FinishTimeFairness().rank(backwards, view) == _ScalarFtf().rank(backwards, view)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda jobs: st.tuples(
            st.lists(
                st.tuples(st.integers(0, 2), st.sampled_from([0.5, 1.0, 2.0, 3.0])),
                min_size=jobs,
                max_size=jobs,
            ),
            st.lists(st.sampled_from([1, 2, 4, 8]), min_size=jobs, max_size=jobs),
            st.lists(st.integers(0, 40), min_size=2, max_size=2),
        )
    )
)
def test_gavel_with_one_type_per_job_is_the_lps_optimum(case):
    """When every job can run on one type at most, Gavel's allocation is the greedy fractional
    knapsack per type instead of the LP: the LP's objective, feasible, and the LP's own allocation
    wherever that optimum is unique (no two jobs of a type tie on throughput per GPU)."""
    rows, gpus, capacity = case
    table = np.zeros((len(rows), 2))
    for j, (where, rate) in enumerate(rows):
        if where < 2:  # 2: the job runs nowhere here
            table[j, where] = rate
    gpus, capacity = np.array(gpus, dtype=float), np.array(capacity, dtype=float)
    x = gavel_allocation(table, gpus, capacity)
    jobs = len(rows)
    lp = linprog(
        -table.ravel(),
        A_ub=np.vstack([np.kron(np.eye(jobs), np.ones(2)), np.kron(gpus, np.eye(2))]),
        b_ub=np.concatenate([np.ones(jobs), capacity]),
        bounds=[(0, 1 if v > 0 else 0) for v in table.ravel()],
        method="highs",
    )
    assert np.isclose((table * x).sum(), -lp.fun, rtol=1e-9, atol=1e-9)
    assert np.all(x.sum(axis=1) <= 1 + 1e-9) and np.all(gpus @ x <= capacity + 1e-9) and np.all(x >= 0)
    per_gpu = table / gpus[:, None]
    if all(len(set(per_gpu[table[:, t] > 0, t])) == np.count_nonzero(table[:, t]) for t in range(2)):
        assert np.allclose(x, lp.x.reshape(jobs, 2), atol=1e-7)


@dataclass
class _DictGavel(Gavel):
    """Gavel's round as per-job dictionaries (the code before its arrays), frozen as the reference."""

    priority: dict[str, dict[str, float]] = field(default_factory=dict)
    job_time: dict[str, dict[str, float]] = field(default_factory=dict)
    type_time: dict[str, float] = field(default_factory=dict)

    def on_round(self, view: View) -> None:
        types = sorted(view.capacity)
        active = view.active()
        for s in active:
            if s.job.job_id not in self.job_time:
                self.job_time[s.job.job_id] = {t: self.round_s / 2 for t in types}
                for t in types:
                    self.type_time[t] = self.type_time.get(t, 0.0) + self.round_s / 2
        capacity = np.array([view.capacity[t] for t in types], dtype=float)
        table = np.array(
            [
                [s.job.table_throughput(t) if self.filter(s.job, t, view) else 0.0 for t in types]
                for s in active
            ]
        ).reshape(len(active), len(types))
        gpus = np.array([s.job.width for s in active], dtype=float)
        x = gavel_allocation(table, gpus, capacity, self.objective).round(5)
        self.priority = {}
        for j, s in enumerate(active):
            row = {}
            for k, t in enumerate(types):
                if table[j, k] > 0:
                    received = self.job_time[s.job.job_id][t] / self.type_time[t]
                    row[t] = x[j, k] / received if x[j, k] > 0 else 0.0
            self.priority[s.job.job_id] = row

    def order(self, view: View) -> list[JobState]:
        def best(s: JobState) -> float:
            return max(self.priority.get(s.job.job_id, {}).values(), default=0.0)

        return sorted(view.active(), key=lambda s: (-best(s), s.job.submit_s, s.job.job_id))

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        row = self.priority.get(state.job.job_id, {})
        return sorted(row, key=lambda t: (-row[t], t))

    def ranked_types_of(self, states: list[JobState], view: View) -> list[list[str]]:
        return [self.ranked_types(s, view) for s in states]

    def on_bound(self, state: JobState, view: View) -> None:
        t = state.accel_type or ""
        self.job_time[state.job.job_id][t] += self.round_s
        self.type_time[t] = self.type_time.get(t, 0.0) + self.round_s


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 500.0, 3000.0]),
            st.sampled_from([1, 2, 4, 8]),
            st.sampled_from([600.0, 3000.0, 20000.0]),
            st.sampled_from([0.5, 1.0, 2.0, None]),  # None: it runs on type a only
        ),
        min_size=8,
        max_size=40,
    )
)
def test_gavel_arrays_change_no_decision(rows):
    """Gavel's round kept in arrays (priorities, time received, rankings; service credited a round
    late, before anyone reads it) gives every job the same start, type, preemptions, finish and
    placement as the per-job dictionaries, on random workloads over two types with equal submit
    times (ties broken by id) and jobs that run on one type only."""
    jobs = [  # ids in the reverse of submission order: ties go by id, not by arrival
        job(f"j{99 - i}", submit_s, gpus, {"a": run_s} | ({"b": run_s * slower} if slower else {}))
        for i, (submit_s, gpus, run_s, slower) in enumerate(rows)
    ]
    assert _outcome(Gavel(), jobs) == _outcome(_DictGavel(), jobs)
    states = {j.job_id: JobState(job=j) for j in jobs}
    view = View(0.0, states, make_cluster({"a": (1, 8), "b": (1, 4)}))
    fast, slow = Gavel(), _DictGavel()
    fast.on_round(view), slow.on_round(view)
    assert fast.order(view) == slow.order(view)
    assert fast.ranked_types_of(list(states.values()), view) == slow.ranked_types_of(
        list(states.values()), view
    )
