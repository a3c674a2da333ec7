"""Discrete-event, trace-driven simulation of a `Scheduler` (the same object the service drives).

Events: job arrivals, completions (predicted from the job's speed on its accelerator type, slowed
while it shares a GPU with other jobs, by Lucid's measured co-location speeds), failures (Poisson
per GPU, from a failures-per-1000-GPU-month rate; the job loses the work since its last checkpoint
and is queued again) and, for round-based policies, round boundaries. The only randomness is the
failure draw, seeded, so a run is deterministic by seed.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from suanli.sched.cluster_state import ClusterState
from suanli.sched.fractional import shared_gpu_speeds
from suanli.sched.job import JobState, SchedJob
from suanli.sched.metrics import summarize
from suanli.sched.policies.base import Policy
from suanli.sched.scheduler import Scheduler
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError

SECONDS_PER_MONTH = 30 * 24 * 3600.0
_FINISH, _FAILURE, _ARRIVAL, _ROUND = 0, 1, 2, 3


@dataclass(frozen=True)
class SimConfig:
    seed: int = 0
    failures_per_1k_gpu_month: float = 0.0  # e.g. 14.2 for Llama 3's 16k H100s (Dubey et al. 2024)
    checkpoint_interval_s: float = 1800.0
    utilization_samples: int = 2000
    # jobs sharing a GPU (`Sharing(mode="fraction")`) slow each other down; MIG is isolated
    colocation_interference: bool = True


@dataclass
class SimResult:
    policy: str
    jobs: list[JobState]
    rejected: dict[str, str]
    metrics: dict[str, float]
    utilization_curve: list[tuple[float, float]] = field(default_factory=list)


def simulate(
    cluster: Cluster | ClusterState, policy: Policy, jobs: list[SchedJob], config: SimConfig | None = None
) -> SimResult:
    return _Simulation(cluster, policy, jobs, config or SimConfig()).run()


class _Simulation:
    """One run's event queue and bookkeeping around a `Scheduler`. Events are ordered by (time,
    kind, sequence); a finish or failure event carries the version of the run (or of its predicted
    finish) it was drawn for, and is dropped when that version has moved on."""

    def __init__(
        self, cluster: Cluster | ClusterState, policy: Policy, jobs: list[SchedJob], config: SimConfig
    ) -> None:
        self.config = config
        self.policy = policy
        self.rng = random.Random(config.seed)
        self.scheduler = Scheduler(cluster, policy)
        self.state = self.scheduler.cluster
        self.fail_rate_per_gpu_s = config.failures_per_1k_gpu_month / 1000.0 / SECONDS_PER_MONTH
        self.events: list[tuple[float, int, int, str, int]] = []
        self.sequence = 0
        for job in sorted(jobs, key=lambda j: (j.submit_s, j.job_id)):
            self.push(job.submit_s, _ARRIVAL, job.job_id)
        self.by_id = {job.job_id: job for job in jobs}
        if len(self.by_id) != len(jobs):
            raise SpecError("workload: job ids must be unique")
        self.version: dict[str, int] = {}  # of a job's run: start, preempt and failure bump it
        self.finish_version: dict[str, int] = {}  # of its predicted finish: also bumped by speed changes
        self.run_from: dict[str, float] = {}
        self.rejected: dict[str, str] = {}
        self.arrivals_left = len(jobs)
        self.round_pending = False
        self.curve: list[tuple[float, float]] = []

    def run(self) -> SimResult:
        round_s = self.policy.round_s
        while self.events:
            now = self.events[0][0]
            is_round, colocation_changed = self._pop_events_at(now)
            has_active = bool(self.scheduler.jobs)
            if round_s is None or self.policy.tick_on_events or is_round:
                colocation_changed |= self._decide(now)
            if colocation_changed:
                self._apply_colocation(now)
            if round_s is not None and not self.round_pending and (has_active or self.arrivals_left):
                self._push_next_round(now, round_s, has_active)
        states = self.scheduler.all_jobs()
        stride = max(1, len(self.curve) // self.config.utilization_samples)
        metrics = summarize(states, self.state, self.scheduler.decision_s)
        return SimResult(self.policy.name, states, self.rejected, metrics, self.curve[::stride])

    def push(self, time_s: float, kind: int, job_id: str = "", version: int = 0) -> None:
        heapq.heappush(self.events, (time_s, kind, self.sequence, job_id, version))
        self.sequence += 1

    def _pop_events_at(self, now: float) -> tuple[bool, bool]:
        """Apply every event due at `now`: arrivals, round marks, current finishes and failures.
        Returns (a round boundary was among them, a GPU-sharing job's neighbours changed)."""
        is_round = colocation_changed = False
        scheduler = self.scheduler
        while self.events and self.events[0][0] <= now:
            _, kind, _, job_id, ver = heapq.heappop(self.events)
            if kind == _ARRIVAL:
                self.arrivals_left -= 1
                try:
                    scheduler.submit(self.by_id[job_id])
                except SpecError as exc:
                    self.rejected[job_id] = str(exc)
            elif kind == _ROUND:
                is_round, self.round_pending = True, False
            elif (
                job_id not in scheduler.jobs
                or ver != (self.finish_version if kind == _FINISH else self.version)[job_id]
            ):
                continue
            elif kind == _FINISH:
                scheduler.job_finished(job_id, now)
                colocation_changed |= self._shares_gpu(job_id)
            else:
                self._fail(job_id, now)
                colocation_changed |= self._shares_gpu(job_id)
        return is_round, colocation_changed

    def _fail(self, job_id: str, now: float) -> None:
        """The job loses the work since its last checkpoint and is queued again."""
        job, run = self.by_id[job_id], self.scheduler.jobs[job_id]
        busy = max(0.0, now - self.run_from[job_id])
        lost_s = busy % self.config.checkpoint_interval_s
        self.scheduler.job_failed(job_id, now, lost_s * job.rate(run.accel_type or "") * run.speed)
        self.version[job_id] += 1
        self.finish_version[job_id] += 1

    def _decide(self, now: float) -> bool:
        """Run a scheduling pass and follow its decisions: predict each started job's finish (and
        draw its failure), invalidate a preempted one's. True if a GPU-sharing job moved."""
        colocation_changed = False
        for decision in self.scheduler.tick(now):
            job_id = decision.job_id
            self.version[job_id] = self.version.get(job_id, 0) + 1
            colocation_changed |= self._shares_gpu(job_id)
            if decision.action != "start":
                self.finish_version[job_id] += 1
                continue
            finish_s = self._predict_finish(job_id)
            self.run_from[job_id] = self.scheduler.jobs[job_id].busy_from_s
            self._draw_failure(job_id, now, finish_s)
        busy, total = self.state.busy_accelerators()
        if total:
            self.curve.append((now, busy / total))
        return colocation_changed

    def _draw_failure(self, job_id: str, now: float, finish_s: float) -> None:
        """Poisson failures per GPU: the run's first failure, if it may come before its finish."""
        gpus = self.by_id[job_id].gpus
        if self.fail_rate_per_gpu_s > 0 and gpus > 0:
            fail_s = now + self.rng.expovariate(self.fail_rate_per_gpu_s * gpus)
            if fail_s < finish_s or self._shares_gpu(job_id):  # a shared job may finish later
                self.push(fail_s, _FAILURE, job_id, self.version[job_id])

    def _push_next_round(self, now: float, round_s: float, has_active: bool) -> None:
        """The next round boundary; when the cluster is idle, the first one at or after the next event."""
        next_round = (math.floor(now / round_s) + 1) * round_s
        if not has_active and self.events:
            next_round = max(next_round, math.ceil(self.events[0][0] / round_s) * round_s)
        self.push(next_round, _ROUND)
        self.round_pending = True

    def _shares_gpu(self, job_id: str) -> bool:
        shared = self.by_id[job_id].sharing.mode in ("fraction", "timeslice")  # MIG is isolated
        return self.config.colocation_interference and shared

    def _predict_finish(self, job_id: str) -> float:
        self.finish_version[job_id] = self.finish_version.get(job_id, 0) + 1
        finish_s = self.scheduler.finish_time_s(job_id)
        self.push(finish_s, _FINISH, job_id, self.finish_version[job_id])
        return finish_s

    def _apply_colocation(self, now_s: float) -> None:
        """Set every running GPU-sharing job's speed from its current neighbours; re-predict the
        finish of those whose speed changed."""
        models_by_gpu: dict[tuple[int, int], list[tuple[str, str]]] = {}
        for run in self.scheduler.jobs.values():
            if run.status == "running" and self._shares_gpu(run.job.job_id):
                for slot in self.state.held[run.job.job_id]:
                    models_by_gpu.setdefault((slot.node, slot.gpu), []).append((run.job.job_id, run.job.app))
        for job_id, speed in shared_gpu_speeds(models_by_gpu).items():
            if speed != self.scheduler.jobs[job_id].speed:
                self.scheduler.set_speed(job_id, speed, now_s)
                self._predict_finish(job_id)
