"""Tiresias 2D-LAS (Gu et al., NSDI'19): least attained service in GPU-time, discretised into
priority queues; FIFO inside a queue; preemptive. No run-time estimates needed."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from suanli.sched.job import JobState
from suanli.sched.policies.base import Hook, Policy, View


@dataclass
class Tiresias(Policy):
    name = "tiresias"
    hooks = frozenset({Hook.RANK, Hook.ON_ROUND})
    preemptive = True
    fixed_types = True
    # Queue boundaries in GPU-seconds of attained service (Pollux's Tiresias baseline uses one
    # boundary at 16 GPU-hours; more entries give more queues).
    thresholds_gpu_s: list[float] = field(default_factory=lambda: [16 * 3600.0])
    round_s: float | None = 60.0
    _types: dict[str, list[str]] = field(default_factory=dict)  # per job: allowed types, most GPUs first

    def order(self, view: View) -> list[JobState]:
        return self.rank(view.active(), view)

    def rank(self, states: list[JobState], view: View) -> list[JobState]:
        bounds = sorted(self.thresholds_gpu_s)  # a job's queue: how many boundaries it has passed
        return sorted(
            states, key=lambda s: (bisect_right(bounds, s.attained_gpu_s), s.job.submit_s, s.job.job_id)
        )

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        # Heterogeneity-unaware: the type with the most GPUs first; a running job stays where it is.
        job = state.job
        types = self._types.get(job.job_id)
        if types is None:
            allowed = (t for t in job.runtime_s if self.filter(job, t, view))
            types = self._types[job.job_id] = sorted(allowed, key=lambda t: (-view.capacity[t], t))
        if state.accel_type in types and types[0] != state.accel_type:
            return [state.accel_type, *(t for t in types if t != state.accel_type)]
        return types

    def on_round(self, view: View) -> None:
        if len(self._types) > 4 * len(view.jobs) + 1024:
            self._types = {k: v for k, v in self._types.items() if k in view.jobs}
