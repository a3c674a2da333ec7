"""FIFO: first come, first served within a priority (higher first, as Slurm orders its queue by
priority before submit time); the head of the queue blocks everyone behind it."""

from __future__ import annotations

from suanli.sched.job import JobState
from suanli.sched.policies.base import Policy, View


class Fifo(Policy):
    name = "fifo"
    reads_progress = False

    def order(self, view: View) -> list[JobState]:
        return sorted(view.pending(), key=lambda s: (-s.job.priority, s.job.submit_s, s.job.job_id))

    def continue_after_block(self, state: JobState, view: View) -> bool:
        return False
