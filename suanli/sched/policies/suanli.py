"""Suanli's policy: heterogeneity- and topology-aware, gang-safe, fair shortest-work-first.

Rules, applied on every arrival and completion, at the guard's deadlines and just after running jobs'
saves while jobs wait (no fixed rounds):

1. Queues, quotas and fair share. A queue holding more than its quota (share of all GPUs, default:
   no limit), or whose decayed usage is above its fair share (`fair_shares`; usage in GPU-seconds
   halves every `usage_half_life_s`, Slurm's PriorityDecayHalfLife, default 7 days), is served
   only after every queue within its due.
2. Running HPC jobs are never preempted (MPI jobs rarely checkpoint); they keep their nodes.
3. Starvation guard. A job whose projected finish-time-fairness ρ (time in system + restart time +
   remaining time on the slowest type it may get, over its run time on a 1/N share; see
   `metrics.share_runtime_s`) exceeds `rho_guard` goes first, the worst ρ first; a guarded job that
   runs counts its ρ times `guard_hysteresis`, so two guarded jobs do not displace each other back
   and forth. A waiting job's ρ grows while nothing happens, so the policy asks for a pass when the
   first one will cross the guard (`next_pass_s`), not only on arrivals and completions. Only a job
   that declared its work is guarded: for one that declared nothing ρ would be a guess.
4. Shortest work first. The others go by estimated remaining GPU-time on their best type
   (width × time), which minimises average JCT (SRPT on area). A running job counts its area
   divided by `stickiness`, less what stopping it now would cost (the work since its last save, at
   the interval its runtime plans, `job.checkpoint_interval_s`, and the restore it would pay
   again): by the exchange argument of SRPT a newcomer P should go before a running R only if
   area(P) + cost(R) < area(R). While jobs wait, the policy also asks for a pass just after each
   running job's next save, when stopping it is cheapest. A job still restoring is not preempted.
   Every duration comes from the estimator (`view.remaining_s`): declared work ÷ predicted
   throughput corrected by the queue's history. A job that declares no work goes by Tiresias'
   2D-LAS instead (Gu et al., NSDI'19): its queue is set by the GPU-time it has attained
   (`las_threshold_gpu_s`), first come first served inside a queue, and it ranks as if its area
   were that queue's boundary.
5. Heterogeneity. Each job is offered the accelerator types on which it is at most `max_slowdown`
   times slower than on its best type, fastest first (a running job first where it already runs);
   walking jobs in rule-3/4 order, the short jobs take the fast types and the rest spill over.
6. Gangs and topology: a gang is admitted only when its whole width fits, and is placed on the
   fewest nodes under one leaf switch (`placement.find_slots`); fractional jobs are packed best-fit
   onto already-shared GPUs. A job that does not fit waits — no partial gang ever holds GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from suanli.sched.job import JobState, SchedJob, checkpoint_interval_s
from suanli.sched.metrics import share_runtime_s
from suanli.sched.policies.base import Hook, Policy, View

_SECONDS_PER_MONTH = 30 * 24 * 3600.0  # the month of `failures_per_1k_gpu_month`, as the simulator counts it


@dataclass
class SuanliPolicy(Policy):
    name = "suanli"
    hooks = frozenset({Hook.RANK, Hook.ON_ROUND, Hook.NEXT_PASS})
    preemptive: ClassVar[bool] = True
    rho_guard: float = 1.7
    stickiness: float = 2.0
    max_slowdown: float = 3.0
    guard_hysteresis: float = 1.25
    las_threshold_gpu_s: float = 16 * 3600.0  # Tiresias' queue boundary, as Pollux's baseline sets it
    queue_quotas: dict[str, float] = field(default_factory=dict)
    fair_shares: dict[str, float] = field(default_factory=dict)  # queue → its share; empty: off
    usage_half_life_s: float = 7 * 24 * 3600.0
    _cache: dict[str, tuple[list[str], float]] = field(default_factory=dict)
    _cycles: dict[str, tuple[SchedJob, float]] = field(default_factory=dict)  # see `_cycle_s`
    _usage_gpu_s: dict[str, float] = field(default_factory=dict)
    _usage_at_s: float | None = None

    def order(self, view: View) -> list[JobState]:
        return self.rank(view.active(), view)

    def rank(self, states: list[JobState], view: View) -> list[JobState]:
        total = sum(view.capacity.values()) or 1
        over = {
            q
            for q, n in view.held_by_queue().items()
            if q in self.queue_quotas and n / total > self.queue_quotas[q]
        } | self._over_fair_share()
        share_gpus = total / max(1, len(view.jobs))

        def key(s: JobState) -> tuple[bool, bool, bool, bool, float, float, str]:
            job = s.job
            types = (self._cache.get(job.job_id) or self._profile(s, view))[0]
            running = s.status == "running"
            rho = self._projected_rho(s, view, share_gpus)[0]
            starving = job.declared and rho > self.rho_guard
            if job.declared:
                area = job.width * view.remaining_s(s, types[0])
                if running:  # keep it unless a newcomer is shorter by what preempting it would cost
                    area = area / self.stickiness - self._preemption_cost(s, view, types[0])
            else:  # Tiresias' 2D-LAS: queue by attained GPU-time, FIFO inside a queue
                area = self.las_threshold_gpu_s * (1 + (s.attained_gpu_s >= self.las_threshold_gpu_s))
            return (
                not (running and job.kind == "hpc"),
                job.queue in over,
                not starving,
                not (running and view.now_s < s.busy_from_s),  # still restoring: keep it
                -rho * (self.guard_hysteresis if running else 1.0) if starving else area,
                job.submit_s,
                job.job_id,
            )

        return sorted(states, key=key)

    def _profile(self, state: JobState, view: View) -> tuple[list[str], float]:
        """Per job, cached: usable types (fastest first) and the capacity-weighted mean speed over
        the whole cluster (`metrics.share_runtime_s`), both from the declared per-type costs."""
        cached = self._cache.get(state.job.job_id)
        if cached is None:
            job = state.job
            types = [t for t in job.runtime_s if self.filter(job, t, view)]
            best = min((job.runtime_s[t] for t in types), default=float("inf"))
            types = sorted(
                (t for t in types if job.runtime_s[t] <= self.max_slowdown * best),
                key=lambda t: job.runtime_s[t],
            )
            mean_rate = 1.0 / share_runtime_s(job, view.capacity, 1.0)
            cached = self._cache[job.job_id] = (types, mean_rate)
        return cached

    def _over_fair_share(self) -> set[str]:
        """Queues whose share of the decayed usage exceeds their share of `fair_shares`."""
        used = sum(self._usage_gpu_s.values())
        if not self.fair_shares or used <= 0:
            return set()
        due = sum(self.fair_shares.values())
        return {q for q, u in self._usage_gpu_s.items() if u / used > self.fair_shares.get(q, 0.0) / due}

    def _charge_usage(self, view: View) -> None:
        """Decay every queue's usage by the half-life and charge what it held since the last pass."""
        last, self._usage_at_s = self._usage_at_s, view.now_s
        if last is None or view.now_s <= last:
            return
        decay = 0.5 ** ((view.now_s - last) / self.usage_half_life_s)
        held = view.held_by_queue()
        for q in set(self._usage_gpu_s) | set(held):
            self._usage_gpu_s[q] = self._usage_gpu_s.get(q, 0.0) * decay + held.get(q, 0) * (
                view.now_s - last
            )

    def on_round(self, view: View) -> None:
        if self.fair_shares:
            self._charge_usage(view)
        if len(self._cache) + len(self._cycles) > 8 * len(view.jobs) + 2048:  # forget finished jobs
            self._cache = {k: v for k, v in self._cache.items() if k in view.jobs}
            self._cycles = {k: v for k, v in self._cycles.items() if k in view.jobs}
        if len(self._cycles) > 4 * len(view.jobs) + 1024:
            self._cycles = {k: v for k, v in self._cycles.items() if k in view.jobs}

    def _projected_rho(self, state: JobState, view: View, share_gpus: float) -> tuple[float, float]:
        """(ρ projected from the estimator's work if the job ran from now to the end on the slowest
        type it may get, its run time on a 1/N share): ρ grows by 1 / share per second of waiting."""
        job = state.job
        types, mean_rate = self._cache.get(job.job_id) or self._profile(state, view)
        share_s = max(1.0, job.width / share_gpus) / mean_rate * view.expected_work(state)
        elapsed_s = view.now_s - job.submit_s + job.restart_overhead_s
        return (elapsed_s + view.remaining_s(state, types[-1])) / share_s, share_s

    def _cycle_s(self, job: SchedJob, view: View) -> float:
        """Wall time between the job's checkpoints as its runtime plans them (`job.checkpoint_interval_s`
        at the cluster's declared failure rate) plus the save; 0: it loses nothing when stopped."""
        known = self._cycles.get(job.job_id)
        if known is not None and known[0] is job:
            return known[1]
        rate = view.cluster.cluster.failures_per_1k_gpu_month if view.cluster.cluster else None
        interval_s = checkpoint_interval_s(job, (rate or 0.0) / 1000.0 / _SECONDS_PER_MONTH)
        cycle_s = interval_s + job.checkpoint_s if interval_s else 0.0
        self._cycles[job.job_id] = (job, cycle_s)  # the job and the cluster's failure rate are fixed
        return cycle_s

    def _preemption_cost(self, state: JobState, view: View, best_type: str) -> float:
        """GPU-seconds on its best type a running job would lose if stopped now: the work since its
        last checkpoint and the restore it would pay again."""
        job = state.job
        cycle_s = self._cycle_s(job, view)
        lost_s = (view.now_s - state.busy_from_s) % cycle_s if cycle_s else 0.0
        on_best = job.runtime_s[best_type] / job.runtime_s[state.accel_type or best_type] * state.speed
        return job.width * (lost_s * on_best + job.restart_overhead_s)

    def next_pass_s(self, view: View) -> float | None:
        """A second after the first waiting job that declared its work crosses `rho_guard` (N as now),
        or after a running job's next save if that comes first."""
        share_gpus = sum(view.capacity.values()) / max(1, len(view.jobs))
        waiting = view.pending()
        times = []
        for s in waiting:
            if s.job.declared and (self._cache.get(s.job.job_id) or self._profile(s, view))[0]:
                rho, share_s = self._projected_rho(s, view, share_gpus)
                if rho <= self.rho_guard:
                    times.append(view.now_s + (self.rho_guard - rho) * share_s + 1.0)
        if waiting:  # a pass just after each running job's next save, when stopping it is cheapest
            for s in view.running():
                cycle_s = self._cycle_s(s.job, view) if s.job.declared else 0.0
                if cycle_s and view.now_s > s.busy_from_s:
                    done = math.floor((view.now_s - s.busy_from_s) / cycle_s) + 1
                    times.append(s.busy_from_s + done * cycle_s + 1.0)
        return min(times, default=None)

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        types = self._profile(state, view)[0]
        if state.accel_type in types and types[0] != state.accel_type:
            return [state.accel_type, *(t for t in types if t != state.accel_type)]
        return types
