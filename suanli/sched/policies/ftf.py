"""Finish-time fairness (Themis, Mahajan et al., NSDI'20; Gavel's FTF policy): each round, the jobs
whose projected ρ = (time in system + remaining time) / (run time on a 1/N share of the cluster) is
worst run first, on the type where they are fastest. Remaining and total times are the estimator's.

Between rounds (on arrivals and completions) it only fills freed GPUs: running jobs keep their
place, as Themis' leases run to the end of their round, so however often it is ticked it preempts
only at round boundaries and cannot storm."""

from __future__ import annotations

import math
from dataclasses import dataclass

from suanli.sched.job import JobState
from suanli.sched.metrics import share_runtime_s
from suanli.sched.policies.base import Hook, Policy, View


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
    round_s: float | None = 360.0
    _next_round_s: float = -math.inf

    def order(self, view: View) -> list[JobState]:
        return self.rank(view.active(), view)

    def rank(self, states: list[JobState], view: View) -> list[JobState]:
        """Once per pass: the whole queue (`order`), or only the pending jobs when all of them fit on
        their first type (a running job's first type is its own, so then no order moves anyone)."""
        round_s = self.round_s or 0.0
        leases_end = view.now_s >= self._next_round_s
        if leases_end and round_s:
            self._next_round_s = (math.floor(view.now_s / round_s) + 1) * round_s
        active_jobs = len(view.jobs)

        def key(s: JobState) -> tuple[bool, float, str]:
            keeps_lease = not leases_end and s.status == "running"
            return (not keeps_lease, -projected_rho(s, view, active_jobs), s.job.job_id)

        return sorted(states, key=key)

    def keeps_running(self, view: View) -> bool:
        """Until the round ends every running job holds its lease."""
        return view.now_s < self._next_round_s

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        types = super().ranked_types(state, view)
        own = state.accel_type
        if state.status == "running" and own in types and types[0] != own:
            return [own, *(t for t in types if t != own)]
        return types
