"""EASY backfill with a multifactor priority, after Slurm's `sched/backfill` + `priority/multifactor`.

Priority = w_age·min(1, wait/max_age) + w_size·(1 − width/largest pool) + w_fairshare·2^(−usage/share)
+ job priority. The first job that cannot start gets a reservation at the earliest time enough
GPUs of its type free up (its "shadow time", from the estimator's remaining times: walltime limits
corrected by the queue's history, or declared work); a later job may start now only if it is
expected to end before the shadow time or leaves the reserved GPUs untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from suanli.sched.job import JobState
from suanli.sched.policies.base import Policy, View


@dataclass
class Reservation:
    accel_type: str
    shadow_s: float
    spare: int  # GPUs of the type free at shadow time beyond what the reserved job needs


def free_at(view: View, accel_type: str, need: int) -> tuple[float, int]:
    """Earliest time `need` GPUs of `accel_type` are free if running jobs end as estimated, and how
    many more than `need` are free then. Progress is as of each job's last accounting time
    (`segment_start_s`), so this needs no accounting pass."""
    free = view.cluster.free_whole_by_type.get(accel_type, 0)
    if free >= need:
        return view.now_s, free - need
    ends = sorted(
        (max(s.segment_start_s, s.busy_from_s) + view.remaining_s(s), s.job.width_on(s.accel_type))
        for s in view.running()
        if s.accel_type == accel_type
    )
    for end_s, width in ends:
        free += width
        if free >= need:
            return end_s, free - need
    return float("inf"), 0


@dataclass
class Backfill(Policy):
    name = "backfill"
    reads_progress = False
    weight_age: float = 1000.0
    weight_size: float = 100.0
    weight_fairshare: float = 500.0
    max_age_s: float = 7 * 24 * 3600.0
    fair_shares: dict[str, float] = field(default_factory=dict)
    _reservation: Reservation | None = None

    def priority(self, state: JobState, view: View, usage: dict[str, float]) -> float:
        job = state.job
        largest = max(view.capacity.get(t, 0) for t in job.runtime_s) or 1
        age = min(1.0, (view.now_s - job.submit_s) / self.max_age_s)
        share = self.fair_shares.get(job.queue, 1.0)
        fairshare = 2.0 ** (-usage.get(job.queue, 0.0) / max(share, 1e-9))
        return (
            self.weight_age * age
            + self.weight_size * (1.0 - job.width / largest)
            + self.weight_fairshare * fairshare
            + job.priority
        )

    def order(self, view: View) -> list[JobState]:
        self._reservation = None
        usage = queue_usage(view)
        return sorted(view.pending(), key=lambda s: (-self.priority(s, view, usage), s.job.submit_s))

    def continue_after_block(self, state: JobState, view: View) -> bool:
        if self._reservation is None:
            types = self.ranked_types(state, view)
            best = min(((*free_at(view, t, state.job.width_on(t)), t) for t in types), default=None)
            if best is not None:
                self._reservation = Reservation(best[2], best[0], best[1])
        return True

    def may_start(self, state: JobState, accel_type: str, view: View) -> bool:
        r = self._reservation
        if r is None or r.accel_type != accel_type:
            return True
        if view.now_s + view.remaining_s(state, accel_type) <= r.shadow_s:
            return True
        if state.job.width_on(accel_type) <= r.spare:
            r.spare -= state.job.width_on(accel_type)
            return True
        return False


def queue_usage(view: View) -> dict[str, float]:
    """Share of the busy GPUs each queue holds right now (0 when idle)."""
    total = sum(view.capacity.values()) or 1
    return {q: n / total for q, n in view.held_by_queue().items()}
