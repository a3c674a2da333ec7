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
    config = config or SimConfig()
    rng = random.Random(config.seed)
    scheduler = Scheduler(cluster, policy)
    state = scheduler.cluster
    fail_rate_per_gpu_s = config.failures_per_1k_gpu_month / 1000.0 / SECONDS_PER_MONTH

    events: list[tuple[float, int, int, str, int]] = []
    sequence = 0

    def push(time_s: float, kind: int, job_id: str = "", version: int = 0) -> None:
        nonlocal sequence
        heapq.heappush(events, (time_s, kind, sequence, job_id, version))
        sequence += 1

    for job in sorted(jobs, key=lambda j: (j.submit_s, j.job_id)):
        push(job.submit_s, _ARRIVAL, job.job_id)
    by_id = {job.job_id: job for job in jobs}
    if len(by_id) != len(jobs):
        raise SpecError("workload: job ids must be unique")
    version: dict[str, int] = {}  # of a job's run: start, preempt and failure bump it
    finish_version: dict[str, int] = {}  # of its predicted finish: also bumped by speed changes
    run_from: dict[str, float] = {}
    rejected: dict[str, str] = {}
    arrivals_left = len(jobs)
    round_s = policy.round_s
    round_pending = False
    curve: list[tuple[float, float]] = []

    def shares_gpu(job_id: str) -> bool:
        return config.colocation_interference and by_id[job_id].sharing.mode == "fraction"

    def predict_finish(job_id: str) -> float:
        finish_version[job_id] = finish_version.get(job_id, 0) + 1
        finish_s = scheduler.finish_time_s(job_id)
        push(finish_s, _FINISH, job_id, finish_version[job_id])
        return finish_s

    def apply_colocation(now_s: float) -> None:
        """Set every running GPU-sharing job's speed from its current neighbours; re-predict the
        finish of those whose speed changed."""
        models_by_gpu: dict[tuple[int, int], list[tuple[str, str]]] = {}
        for run in scheduler.jobs.values():
            if run.status == "running" and shares_gpu(run.job.job_id):
                for slot in state.held[run.job.job_id]:
                    models_by_gpu.setdefault((slot.node, slot.gpu), []).append((run.job.job_id, run.job.app))
        for job_id, speed in shared_gpu_speeds(models_by_gpu).items():
            if speed != scheduler.jobs[job_id].speed:
                scheduler.set_speed(job_id, speed, now_s)
                predict_finish(job_id)

    while events:
        now = events[0][0]
        is_round = False
        colocation_changed = False
        while events and events[0][0] <= now:
            _, kind, _, job_id, ver = heapq.heappop(events)
            if kind == _ARRIVAL:
                arrivals_left -= 1
                try:
                    scheduler.submit(by_id[job_id])
                except SpecError as exc:
                    rejected[job_id] = str(exc)
            elif kind == _ROUND:
                is_round, round_pending = True, False
            elif (
                job_id not in scheduler.jobs
                or ver != (finish_version if kind == _FINISH else version)[job_id]
            ):
                continue
            elif kind == _FINISH:
                scheduler.job_finished(job_id, now)
                colocation_changed |= shares_gpu(job_id)
            else:
                job, run = by_id[job_id], scheduler.jobs[job_id]
                busy = max(0.0, now - run_from[job_id])
                lost_s = busy % config.checkpoint_interval_s
                scheduler.job_failed(job_id, now, lost_s * job.rate(run.accel_type or "") * run.speed)
                colocation_changed |= shares_gpu(job_id)
                version[job_id] += 1
                finish_version[job_id] += 1
        has_active = bool(scheduler.jobs)
        if round_s is None or policy.tick_on_events or is_round:
            decisions = scheduler.tick(now)
            for decision in decisions:
                job_id = decision.job_id
                version[job_id] = version.get(job_id, 0) + 1
                colocation_changed |= shares_gpu(job_id)
                if decision.action != "start":
                    finish_version[job_id] += 1
                    continue
                finish_s = predict_finish(job_id)
                run_from[job_id] = scheduler.jobs[job_id].busy_from_s
                if fail_rate_per_gpu_s > 0 and by_id[job_id].gpus > 0:
                    fail_s = now + rng.expovariate(fail_rate_per_gpu_s * by_id[job_id].gpus)
                    if fail_s < finish_s or shares_gpu(job_id):  # a shared job may finish later
                        push(fail_s, _FAILURE, job_id, version[job_id])
            busy, total = state.busy_accelerators()
            if total:
                curve.append((now, busy / total))
        if colocation_changed:
            apply_colocation(now)
        if round_s is not None and not round_pending and (has_active or arrivals_left):
            next_round = (math.floor(now / round_s) + 1) * round_s
            if not has_active and events:
                next_round = max(next_round, math.ceil(events[0][0] / round_s) * round_s)
            push(next_round, _ROUND)
            round_pending = True

    states = scheduler.all_jobs()
    stride = max(1, len(curve) // config.utilization_samples)
    metrics = summarize(states, state, scheduler.decision_s)
    return SimResult(policy.name, states, rejected, metrics, curve[::stride])
