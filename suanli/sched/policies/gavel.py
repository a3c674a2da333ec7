"""Gavel (Narayanan et al., OSDI'20): heterogeneity-aware allocation from a throughput table.

Each round an LP picks the time-fraction matrix X (jobs × accelerator types) that maximises total
throughput Σ_j Σ_t T[j,t]·X[j,t], subject to Σ_t X[j,t] ≤ 1 per job and Σ_j gpus_j·X[j,t] ≤ GPUs
of type t ("max-sum-throughput", the objective the Sia artifact runs; `objective="max_min"` gives
the max-min-fairness variant over throughputs normalised by each job's best type). Gavel's round
scheduler then runs the (job, type) pairs with the largest X / (share of rounds received) first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from suanli.sched.job import JobState, SchedJob
from suanli.sched.policies.base import Hook, Policy, View
from suanli.spec.errors import PlanInfeasible


def gavel_allocation(
    throughput: np.ndarray, gpus: np.ndarray, capacity: np.ndarray, objective: str = "max_sum"
) -> np.ndarray:
    """Solve Gavel's LP. `throughput[j, t]` (0 = cannot run), `gpus[j]`, `capacity[t]` → X[j, t]."""
    jobs, types = throughput.shape
    if jobs == 0:
        return np.zeros((0, types))
    if (
        objective == "max_sum"
        and (plain := _everyone_on_their_best_type(throughput, gpus, capacity)) is not None
    ):
        return plain
    n = jobs * types
    cols = np.arange(n)
    job_of, type_of = np.repeat(np.arange(jobs), types), np.tile(np.arange(types), jobs)
    # Sparse rows: the dense ones were jobs × (jobs·types), 3.2 GB at 20k jobs.
    row_job = sparse.csr_matrix((np.ones(n), (job_of, cols)), shape=(jobs, n))
    row_type = sparse.csr_matrix((gpus[job_of].astype(float), (type_of, cols)), shape=(types, n))
    a_cap = sparse.vstack([row_job, row_type])
    bounds = np.column_stack([np.zeros(n), (throughput > 0).ravel().astype(float)])
    if objective == "max_sum":
        x = _solve(
            objective,
            -throughput.ravel(),
            A_ub=_pruned(a_cap),
            b_ub=np.concatenate([np.ones(jobs), capacity]),
            bounds=bounds,
        )
        return x.reshape(jobs, types)
    # max-min: maximise z with Σ_t (T[j,t]/max_t T[j,t])·X[j,t] ≥ z for every job.
    norm = throughput / np.maximum(throughput.max(axis=1, keepdims=True), 1e-12)
    a_fair = sparse.csr_matrix(
        (
            np.concatenate([-norm.ravel(), np.ones(jobs)]),
            (np.concatenate([job_of, np.arange(jobs)]), np.concatenate([cols, np.full(jobs, n)])),
        ),
        shape=(jobs, n + 1),
    )
    c = np.zeros(n + 1)
    c[n] = -1.0
    x = _solve(
        objective,
        c,
        A_ub=_pruned(sparse.vstack([sparse.hstack([a_cap, sparse.csr_matrix((jobs + types, 1))]), a_fair])),
        b_ub=np.concatenate([np.ones(jobs), capacity, np.zeros(jobs)]),
        bounds=np.vstack([bounds, [0.0, np.inf]]),
    )
    return x[:n].reshape(jobs, types)


def _pruned(matrix: sparse.spmatrix) -> sparse.csc_matrix:
    """Without stored zeros, as the dense matrix it replaces would reach the solver."""
    pruned = sparse.csc_matrix(matrix)
    pruned.eliminate_zeros()
    return pruned


def _everyone_on_their_best_type(
    throughput: np.ndarray, gpus: np.ndarray, capacity: np.ndarray
) -> np.ndarray | None:
    """The max-sum optimum without the LP when it is plain: every job has one best type and all of
    them fit there at once. Each job then gets its largest possible term, so X = 1 on that type is
    the only optimum. None otherwise (ties or contention: the LP decides)."""
    best = throughput.argmax(axis=1)
    rows = np.arange(len(best))
    top = throughput[rows, best]
    if not np.all(top > 0) or np.any(np.sum(throughput == top[:, None], axis=1) > 1):
        return None
    if np.any(np.bincount(best, weights=gpus, minlength=len(capacity)) > capacity):
        return None
    allocation = np.zeros_like(throughput, dtype=float)
    allocation[rows, best] = 1.0
    return allocation


def _solve(objective: str, c: np.ndarray, **constraints: Any) -> np.ndarray:
    """HiGHS's optimum, or PlanInfeasible naming the policy, the objective and the solver's verdict
    (bad input such as a NaN throughput, infeasible, unbounded, iteration limit, numerical trouble)."""
    try:
        result = linprog(c, method="highs", **constraints)
    except ValueError as exc:
        raise PlanInfeasible(f"gavel: the {objective} allocation LP was refused: {exc}") from None
    if result.status != 0:
        raise PlanInfeasible(
            f"gavel: the {objective} allocation LP did not solve (status {result.status}: {result.message})"
        )
    return result.x


@dataclass
class Gavel(Policy):
    name = "gavel"
    hooks = frozenset({Hook.ON_ROUND, Hook.ON_BOUND})
    reads_progress = False
    preemptive = True
    moves_running = True
    round_s: float = 360.0
    tick_on_events: bool = False
    objective: Literal["max_sum", "max_min"] = "max_sum"
    _priority: dict[str, dict[str, float]] = field(default_factory=dict)
    _job_time: dict[str, dict[str, float]] = field(default_factory=dict)
    _type_time: dict[str, float] = field(default_factory=dict)
    _rows: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def on_round(self, view: View) -> None:
        types = sorted(view.capacity)
        active = view.active()
        for s in active:
            if s.job.job_id not in self._job_time:
                self._job_time[s.job.job_id] = {t: self.round_s / 2 for t in types}
                for t in types:
                    self._type_time[t] = self._type_time.get(t, 0.0) + self.round_s / 2
        capacity = np.array([view.capacity[t] for t in types], dtype=float)
        table = np.array([self._table_row(s.job, types, view) for s in active]).reshape(
            len(active), len(types)
        )
        gpus = np.array([s.job.width for s in active], dtype=float)
        x = gavel_allocation(table, gpus, capacity, self.objective).round(5)
        self._priority = {}
        for j, s in enumerate(active):
            row = {}
            for k, t in enumerate(types):
                if table[j, k] <= 0:
                    continue
                received = self._job_time[s.job.job_id][t] / self._type_time[t]
                row[t] = x[j, k] / received if x[j, k] > 0 else 0.0
            self._priority[s.job.job_id] = row

    def _table_row(self, job: SchedJob, types: list[str], view: View) -> list[float]:
        """A job's throughput per type (0 where it cannot run), fixed for a job and width on this cluster."""
        row = self._rows.get((job.job_id, job.gpus))
        if row is None:
            row = self._rows[job.job_id, job.gpus] = [
                job.table_throughput(t) if self.filter(job, t, view) else 0.0 for t in types
            ]
        return row

    def order(self, view: View) -> list[JobState]:
        def best(s: JobState) -> float:
            return max(self._priority.get(s.job.job_id, {}).values(), default=0.0)

        return sorted(view.active(), key=lambda s: (-best(s), s.job.submit_s, s.job.job_id))

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        row = self._priority.get(state.job.job_id, {})
        return sorted(row, key=lambda t: (-row[t], t))

    def on_bound(self, state: JobState, view: View) -> None:
        t = state.accel_type or ""
        self._job_time[state.job.job_id][t] += self.round_s
        self._type_time[t] = self._type_time.get(t, 0.0) + self.round_s
