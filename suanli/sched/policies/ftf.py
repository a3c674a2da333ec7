"""Finish-time fairness (Themis, Mahajan et al., NSDI'20; Gavel's FTF policy): each round, the jobs
whose projected ρ = (time in system + remaining time) / (run time on a 1/N share of the cluster) is
worst run first, on the type where they are fastest. Remaining and total times are the estimator's.

Between rounds (on arrivals and completions) it only fills freed GPUs: running jobs keep their
place, as Themis' leases run to the end of their round, so however often it is ticked it preempts
only at round boundaries and cannot storm."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from suanli.sched.cluster_state import CPU_TYPE
from suanli.sched.estimate import HistoryEstimator, declaration_row
from suanli.sched.job import JobState, SchedJob
from suanli.sched.metrics import share_runtime_s
from suanli.sched.policies.base import Hook, Policy, View

# columns of `FinishTimeFairness._table`: what ρ reads of a job that is fixed while it is the same job
_SUBMIT, _WIDTH, _BEST_RT, _FIRST_RT, _TOTAL, _MEAN_RATE, _DECLARED = range(7)
_DECLARATION = slice(7, 10)  # the estimator's `declaration_row`


def projected_rho(state: JobState, view: View, active_jobs: int) -> float:
    """ρ if the job ran from now to the end on its fastest type (see `metrics.share_runtime_s`), from
    the estimator's remaining time and total work, never the true duration."""
    best = min(view.remaining_s(state, t) for t in state.job.runtime_s)
    share = share_runtime_s(state.job, view.capacity, active_jobs) * view.expected_work(state)
    return (view.now_s - state.job.submit_s + best) / share


@dataclass
class FinishTimeFairness(Policy):
    name = "ftf"
    hooks = frozenset({Hook.RANK, Hook.KEEPS_RUNNING})
    preemptive = True
    moves_running = True
    fixed_types = True
    round_s: float | None = 360.0
    _next_round_s: float = -math.inf
    _slots: dict[int, tuple[JobState, SchedJob, int]] = field(default_factory=dict)  # id(state) → its row
    _table: np.ndarray = field(default_factory=lambda: np.empty((0, 10)))
    _used: int = 0  # rows of `_table` taken
    _queues: dict[str, int] = field(default_factory=dict)  # queue → its code in `_DECLARATION`
    _apps: dict[str, int] = field(default_factory=dict)  # application → its code in `_DECLARATION`

    def order(self, view: View) -> list[JobState]:
        return self.rank(view.active(), view)

    def rank(self, states: list[JobState], view: View) -> list[JobState]:
        """Once per pass: the whole queue (`order`), or only the pending jobs when all of them fit on
        their first type (a running job's first type is its own, so then no order moves anyone).
        Lease holders first, then the worst ρ, then the job id (read only when two tie)."""
        round_s = self.round_s or 0.0
        leases_end = view.now_s >= self._next_round_s
        if leases_end and round_s:
            self._next_round_s = (math.floor(view.now_s / round_s) + 1) * round_s
        n = len(states)
        lease = np.zeros(n, bool)
        if not leases_end:
            lease = np.fromiter((s.status == "running" for s in states), bool, n)
        worst, free = -self._rhos(states, view), ~lease
        by = np.lexsort((worst, free))
        worst_by, free_by = worst[by], free[by]
        if np.any((worst_by[1:] == worst_by[:-1]) & (free_by[1:] == free_by[:-1])):
            by = np.lexsort((np.array([s.job.job_id for s in states]), worst, free))
        return [states[i] for i in by]

    def _rhos(self, states: list[JobState], view: View) -> np.ndarray:
        """`projected_rho` of every job, column-wise for `HistoryEstimator` (each the same float
        expression as the per-job one, term for term, so the same value), else job by job."""
        active_jobs = len(view.jobs)
        estimator = view.estimator
        if type(estimator) is not HistoryEstimator:
            return np.array([projected_rho(s, view, active_jobs) for s in states], float)
        if len(self._slots) > 4 * active_jobs + 1024:  # forget finished jobs
            self._slots, self._used = {}, 0
        slots = self._slots_of(states, view)  # may grow `_table`
        job = self._table[slots]
        progress = np.fromiter((s.progress for s in states), float, len(states))
        left = estimator.declared_left(job[:, _DECLARATION], self._queues, self._apps, progress)
        undeclared = np.flatnonzero(job[:, _DECLARED] == 0)
        if len(undeclared):  # the next rung of the estimator's ladder above the work done
            done = progress[undeclared]
            rung = np.full(len(done), estimator.class_base_s)
            while np.any(below := rung <= done):
                rung[below] *= estimator.class_factor
            left[undeclared] = rung - done
        best_s = left * job[:, _BEST_RT]
        work = progress + left * job[:, _FIRST_RT] / job[:, _FIRST_RT]
        share_s = (
            np.maximum(1.0, job[:, _WIDTH] / (job[:, _TOTAL] / max(1.0, active_jobs))) / job[:, _MEAN_RATE]
        )
        return (view.now_s - job[:, _SUBMIT] + best_s) / (share_s * work)

    def _slots_of(self, states: list[JobState], view: View) -> np.ndarray:
        """Each job's row in `_table`, looked up by the state's identity (cheaper than its id)."""
        known, row = self._slots.get, self._row
        return np.fromiter(
            (
                r[2] if (r := known(id(s))) is not None and r[0] is s and r[1] is s.job else row(s, view)
                for s in states
            ),
            np.intp,
            len(states),
        )

    def _row(self, state: JobState, view: View) -> int:
        job = state.job
        # the capacity-weighted mean speed over the job's kind of resource, as `metrics.share_runtime_s`
        capacity = {
            t: n for t, n in view.capacity.items() if (t == CPU_TYPE) == (job.gpus == 0)
        } or view.capacity
        total = sum(capacity.values())
        mean_rate = sum(n * job.rate(t) for t, n in capacity.items() if t in job.runtime_s) / total
        numbers = (
            job.submit_s,
            job.width,
            min(job.runtime_s.values()),
            next(iter(job.runtime_s.values())),
            total,
            mean_rate,
            job.declared,
            *declaration_row(job, self._queues, self._apps),
        )
        slot, self._used = self._used, self._used + 1
        if slot == len(self._table):
            self._table = np.concatenate([self._table, np.empty((max(1024, slot), self._table.shape[1]))])
        self._table[slot] = numbers
        self._slots[id(state)] = (state, job, slot)
        return slot

    def keeps_running(self, view: View) -> bool:
        """Until the round ends every running job holds its lease."""
        return view.now_s < self._next_round_s

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        types = super().ranked_types(state, view)
        own = state.accel_type
        if state.status == "running" and own in types and types[0] != own:
            return [own, *(t for t in types if t != own)]
        return types
