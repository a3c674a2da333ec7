"""Tiresias 2D-LAS (Gu et al., NSDI'19): least attained service in GPU-time, discretised into
priority queues; FIFO inside a queue; preemptive. No run-time estimates needed."""

from __future__ import annotations

from dataclasses import dataclass, field

from suanli.sched.job import JobState
from suanli.sched.policies.base import Policy, View


@dataclass
class Tiresias(Policy):
    name = "tiresias"
    preemptive = True
    # Queue boundaries in GPU-seconds of attained service (Pollux's Tiresias baseline uses one
    # boundary at 16 GPU-hours; more entries give more queues).
    thresholds_gpu_s: list[float] = field(default_factory=lambda: [16 * 3600.0])
    round_s: float | None = 60.0

    def queue_of(self, state: JobState) -> int:
        return sum(state.attained_gpu_s >= t for t in self.thresholds_gpu_s)

    def order(self, view: View) -> list[JobState]:
        return sorted(view.active(), key=lambda s: (self.queue_of(s), s.job.submit_s, s.job.job_id))

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        # Heterogeneity-unaware: the type with the most GPUs first; a running job stays where it is.
        types = [t for t in state.job.runtime_s if self.filter(state.job, t, view)]
        return sorted(types, key=lambda t: (t != state.accel_type, -view.capacity[t], t))
