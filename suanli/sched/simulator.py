"""Discrete-event, trace-driven simulation of a `Scheduler` (the same object the service drives).

The trace holds each job's true run time per accelerator type. The scheduler and its policy never
see it: they get the jobs as a live system would (`estimate.declare`: declared work with a seeded
lognormal error, or nothing), and the truth stays with this module's executor, which alone decides
when a job ends. Reported metrics are computed against the truth.

Events: job arrivals, completions (the true remaining work at the job's speed on its accelerator
type, slowed while it shares a GPU with other jobs, by Lucid's measured co-location speeds),
failures (Poisson per GPU, from a failures-per-1000-GPU-month rate), round boundaries for
round-based policies, and scheduler ticks when `tick_s` > 0 (a live service decides on its tick, not
on each event). A failed or preempted job loses the work since its last checkpoint (taken at the
interval its spec names, else at Daly's optimum for its checkpoint cost and its mean time between
interruptions, `sched.job.checkpoint_interval_s`; each save stalls it for its checkpoint cost) and
pays its restore time when it restarts. A gang placed where its collectives are slower than packed
on the fewest nodes (spread over nodes or leaf switches) runs at `placement_speed`. A run that
cannot end (jobs waiting with nothing left to happen, a clock that stops advancing, a job restarted
without end) is a `LivelockError`.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from suanli.perf.checkpoint_interval import failures_per_gpu_s
from suanli.sched.cluster_state import ClusterState, Slot
from suanli.sched.estimate import Knowledge, declare
from suanli.sched.fractional import shared_gpu_speeds
from suanli.sched.job import JobState, SchedJob, checkpoint_interval_s
from suanli.sched.metrics import summarize
from suanli.sched.placement import placement_speed
from suanli.sched.policies.base import Policy
from suanli.sched.scheduler import Scheduler
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError, SuanliError

_FINISH, _FAILURE, _ARRIVAL, _ROUND, _TICK = 0, 1, 2, 3, 4


class LivelockError(SuanliError):
    """The simulation cannot end: named policy, simulated time and cause."""

    http_status = 500


@dataclass(frozen=True)
class SimConfig:
    seed: int = 0
    failures_per_1k_gpu_month: float = 0.0  # e.g. 14.2 for Llama 3's 16k H100s (Dubey et al. 2024)
    checkpoint_interval_s: float | None = None  # None: each job's own (`job.checkpoint_interval_s`)
    utilization_samples: int = 2000
    # jobs sharing a GPU (`Sharing(mode="fraction")`) slow each other down; MIG is isolated
    colocation_interference: bool = True
    estimate_error: float = 0.5  # σ of the per-job lognormal error of declared work
    runtime_knowledge: Knowledge = "declared"
    tick_s: float = 0.0  # 0: decide on every event; else only on ticks this far apart
    preemption_loses_work: bool = True  # a preempted job restarts from its last checkpoint
    max_starts_per_job: int = 10_000
    max_passes_at_one_time: int = 10_000


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
    if not (config.tick_s >= 0 and math.isfinite(config.tick_s)):
        raise SpecError(f"--tick: must be a finite number of seconds >= 0, got {config.tick_s}")
    return _Simulation(cluster, policy, jobs, config).run()


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
        self.fail_rate_per_gpu_s = failures_per_gpu_s(config.failures_per_1k_gpu_month)
        declared_rate = self.state.cluster.failures_per_1k_gpu_month if self.state.cluster else None
        self.planned_rate_per_gpu_s = (
            failures_per_gpu_s(declared_rate) if declared_rate else self.fail_rate_per_gpu_s
        )
        self.checkpoint_every_s: dict[str, float] = {}
        self.run_speed: dict[str, float] = {}  # of a run before co-location: placement × checkpoint stalls
        self.events: list[tuple[float, int, int, str, int]] = []
        self.sequence = 0
        for job in sorted(jobs, key=lambda j: (j.submit_s, j.job_id)):
            self.push(job.submit_s, _ARRIVAL, job.job_id)
        self.truth = {job.job_id: job for job in jobs}
        if len(self.truth) != len(jobs):
            raise SpecError("workload: job ids must be unique")
        submitted, self.work = declare(jobs, config.estimate_error, config.runtime_knowledge, config.seed)
        if any(job.elastic for job in submitted):
            from suanli.sched.goodput import declared_elastic

            submitted = [declared_elastic(job, self.work[job.job_id]) for job in submitted]
        self.by_id = {job.job_id: job for job in submitted}
        self.version: dict[str, int] = {}  # of a job's run: start, preempt and failure bump it
        self.finish_version: dict[str, int] = {}  # of its predicted finish: also bumped by speed changes
        self.run_from: dict[str, float] = {}
        self.run_rate: dict[str, float] = {}  # declared work per second of a job's current (or last) run
        self.rejected: dict[str, str] = {}
        self.arrivals_left = len(jobs)
        self.round_pending = self.tick_pending = False
        self.curve: list[tuple[float, float]] = []
        self.last_now, self.passes_at_now = -math.inf, 0

    def run(self) -> SimResult:
        round_s, tick_s = self.policy.round_s, self.config.tick_s
        on_events = round_s is None or self.policy.tick_on_events
        while self.events:
            now = self.events[0][0]
            self._check_clock(now)
            is_round, is_tick, colocation_changed = self._pop_events_at(now)
            has_active = bool(self.scheduler.jobs)
            if is_round or (on_events and (is_tick or not tick_s)):
                colocation_changed |= self._decide(now, is_round)
                if on_events and not tick_s and self.scheduler.wake_s < math.inf:
                    self.push(self.scheduler.wake_s, _TICK)  # the policy's own deadline (`Hook.NEXT_PASS`)
            if colocation_changed:
                self._apply_colocation(now)
            if round_s is not None and not self.round_pending and (has_active or self.arrivals_left):
                self._push_next_round(now, round_s, has_active, _ROUND)
            if tick_s and on_events and not self.tick_pending and has_active:
                self._push_next_round(now, tick_s, has_active, _TICK)
        if self.scheduler.jobs:
            raise LivelockError(
                f"policy {self.policy.name}: livelock at t={self.last_now:.0f} s: {len(self.scheduler.jobs)}"
                " job(s) still waiting or running and nothing left to happen"
            )
        states = self.scheduler.all_jobs()
        for state in states:
            state.job = self.truth[state.job.job_id]  # the report is judged against the truth
        stride = max(1, len(self.curve) // self.config.utilization_samples)
        metrics = summarize(states, self.state, self.scheduler.decision_s)
        return SimResult(self.policy.name, states, self.rejected, metrics, self.curve[::stride])

    def push(self, time_s: float, kind: int, job_id: str = "", version: int = 0) -> None:
        heapq.heappush(self.events, (time_s, kind, self.sequence, job_id, version))
        self.sequence += 1

    def _check_clock(self, now: float) -> None:
        """A clock that stops advancing is a livelock."""
        self.passes_at_now = self.passes_at_now + 1 if now == self.last_now else 0
        self.last_now = now
        if self.passes_at_now > self.config.max_passes_at_one_time:
            raise LivelockError(
                f"policy {self.policy.name}: livelock at t={now:.0f} s: the clock has not advanced in"
                f" {self.passes_at_now} passes"
            )

    def _pop_events_at(self, now: float) -> tuple[bool, bool, bool]:
        """Apply every event due at `now`: arrivals, round and tick marks, current finishes and
        failures. Returns (a round boundary was among them, a tick was, a GPU-sharing job's
        neighbours changed)."""
        is_round = is_tick = colocation_changed = False
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
            elif kind == _TICK:
                is_tick, self.tick_pending = True, False
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
        return is_round, is_tick, colocation_changed

    def _checkpoint_cycle_s(self, job_id: str) -> float:
        """Wall time from one of a job's checkpoints to the next: its interval plus the save."""
        cycle_s = self.checkpoint_every_s.get(job_id)
        if cycle_s is None:
            job = self.by_id[job_id]
            interval_s = self.config.checkpoint_interval_s or checkpoint_interval_s(
                job, self.planned_rate_per_gpu_s
            )
            cycle_s = self.checkpoint_every_s[job_id] = interval_s + job.checkpoint_s if interval_s else 0.0
        return cycle_s

    def _lost_progress(self, job_id: str, now: float) -> float:
        """Declared work done since the run's last checkpoint (the run just stopped or is stopping)."""
        cycle_s = self._checkpoint_cycle_s(job_id)
        if not cycle_s:
            return 0.0
        lost_s = max(0.0, now - self.run_from[job_id]) % cycle_s
        return lost_s * self.run_rate[job_id]

    def _fail(self, job_id: str, now: float) -> None:
        """The job loses the work since its last checkpoint and is queued again."""
        self.scheduler.job_failed(job_id, now, self._lost_progress(job_id, now))
        self.version[job_id] += 1
        self.finish_version[job_id] += 1

    def _decide(self, now: float, at_round: bool = False) -> bool:
        """Run a scheduling pass and follow its decisions: predict each started job's finish (and
        draw its failure), invalidate a preempted one's. True if a GPU-sharing job moved."""
        colocation_changed = False
        # A preemption at a round's end loses nothing: its jobs checkpoint there (Gavel's leases).
        loses_work = self.config.preemption_loses_work and not at_round
        for decision in self.scheduler.tick(now):
            job_id = decision.job_id
            self.version[job_id] = self.version.get(job_id, 0) + 1
            colocation_changed |= self._shares_gpu(job_id)
            if decision.action == "preempt":  # a resize restarts from a checkpoint taken to move
                self.finish_version[job_id] += 1
                if loses_work:
                    state = self.scheduler.jobs[job_id]
                    state.progress = max(0.0, state.progress - self._lost_progress(job_id, now))
                continue
            if self.scheduler.jobs[job_id].starts > self.config.max_starts_per_job:
                raise LivelockError(
                    f"policy {self.policy.name}: livelock at t={now:.0f} s: job {job_id} started"
                    f" {self.config.max_starts_per_job} times"
                )
            self._set_run_speed(job_id, decision.accel_type or "", decision.slots, now)
            finish_s = self._predict_finish(job_id)
            self.run_from[job_id] = self.scheduler.jobs[job_id].busy_from_s
            self.run_rate[job_id] = (
                self.by_id[job_id].rate(decision.accel_type or "") * self.scheduler.jobs[job_id].speed
            )
            self._draw_failure(job_id, now, finish_s)
        busy, total = self.state.busy_accelerators()
        if total:
            self.curve.append((now, busy / total))
        return colocation_changed

    def _set_run_speed(self, job_id: str, accel_type: str, slots: tuple[Slot, ...], now: float) -> None:
        """A started run's speed: slowed by its placement's collectives and by its checkpoint saves
        (Daly's model: a save of `checkpoint_s` after every interval of work)."""
        job = self.by_id[job_id]
        cycle_s = self._checkpoint_cycle_s(job_id)
        stalls = (cycle_s - job.checkpoint_s) / cycle_s if cycle_s else 1.0
        speed = placement_speed(self.state, job, accel_type, slots) * stalls
        if speed != 1.0 or job_id in self.run_speed:
            self.run_speed[job_id] = speed
            self.scheduler.set_speed(job_id, speed, now)

    def _draw_failure(self, job_id: str, now: float, finish_s: float) -> None:
        """Poisson failures per GPU: the run's first failure, if it may come before its finish."""
        gpus = self.by_id[job_id].gpus
        if self.fail_rate_per_gpu_s > 0 and gpus > 0:
            fail_s = now + self.rng.expovariate(self.fail_rate_per_gpu_s * gpus)
            if fail_s < finish_s or self._shares_gpu(job_id):  # a shared job may finish later
                self.push(fail_s, _FAILURE, job_id, self.version[job_id])

    def _push_next_round(self, now: float, period_s: float, has_active: bool, kind: int) -> None:
        """The next round (or tick) boundary; when the cluster is idle, the first one at or after the
        next event."""
        next_round = (math.floor(now / period_s) + 1) * period_s
        if not has_active and self.events:
            next_round = max(next_round, math.ceil(self.events[0][0] / period_s) * period_s)
        self.push(next_round, kind)
        if kind == _ROUND:
            self.round_pending = True
        else:
            self.tick_pending = True

    def _shares_gpu(self, job_id: str) -> bool:
        shared = self.by_id[job_id].sharing.mode in ("fraction", "timeslice")  # MIG is isolated
        return self.config.colocation_interference and shared

    def _predict_finish(self, job_id: str) -> float:
        self.finish_version[job_id] = self.finish_version.get(job_id, 0) + 1
        finish_s = self._finish_time_s(job_id)
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
        for job_id, colocated in shared_gpu_speeds(models_by_gpu).items():
            speed = colocated * self.run_speed.get(job_id, 1.0)
            if speed != self.scheduler.jobs[job_id].speed:
                self.scheduler.set_speed(job_id, speed, now_s)
                self.run_rate[job_id] = (
                    self.by_id[job_id].rate(self.scheduler.jobs[job_id].accel_type or "") * speed
                )
                self._predict_finish(job_id)

    def _finish_time_s(self, job_id: str) -> float:
        """When a running job's true work is done at its current speed (the executor's knowledge)."""
        state = self.scheduler.jobs[job_id]
        start = max(state.segment_start_s, state.busy_from_s)
        if state.job.elastic is not None:
            from suanli.sched.goodput import seconds_to

            per_node = tuple(n for _, n in state.placement)
            work_s = seconds_to(
                state.job, state.accel_type or "", per_node, state.progress, self.work[job_id]
            )
            return start + work_s / state.speed
        left = max(0.0, self.work[job_id] - state.progress)
        return start + left * state.job.runtime_s[state.accel_type or ""] / state.speed
