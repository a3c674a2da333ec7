"""Suanli's policy: heterogeneity- and topology-aware, gang-safe, fair shortest-work-first.

Rules, applied on every arrival and completion (event-driven, no fixed rounds):

1. Queues, quotas and fair share. A queue holding more than its quota (share of all GPUs, default:
   no limit), or whose decayed usage is above its fair share (`fair_shares`; usage in GPU-seconds
   halves every `usage_half_life_s`, Slurm's PriorityDecayHalfLife, default 7 days), is served
   only after every queue within its due.
2. Running HPC jobs are never preempted (MPI jobs rarely checkpoint); they keep their nodes.
3. Starvation guard. A job whose projected finish-time-fairness ρ (time in system + restart time +
   remaining time on the slowest type it may get, over its run time on a 1/N share; see
   `metrics.share_runtime_s`) exceeds `rho_guard` goes first, the worst ρ first.
4. Shortest work first. The others go by estimated remaining GPU-time on their best type
   (width × time), which minimises average JCT (SRPT on area). A running job counts its area
   divided by `stickiness`, so a newcomer preempts it only when it is clearly shorter (each restart
   costs the job's checkpoint-restore time), and a job that started less than `min_run_s` ago is
   preempted only for a starving one, so a policy ticked often cannot thrash.
   Every duration comes from the estimator (`view.remaining_s`): declared work ÷ predicted
   throughput corrected by the queue's history, or attained service for a job that declares none.
5. Heterogeneity. Each job is offered the accelerator types on which it is at most `max_slowdown`
   times slower than on its best type, fastest first (a running job first where it already runs);
   walking jobs in rule-3/4 order, the short jobs take the fast types and the rest spill over.
6. Gangs and topology: a gang is admitted only when its whole width fits, and is placed on the
   fewest nodes under one leaf switch (`placement.find_slots`); fractional jobs are packed best-fit
   onto already-shared GPUs. A job that does not fit waits — no partial gang ever holds GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from suanli.sched.job import JobState
from suanli.sched.metrics import share_runtime_s
from suanli.sched.policies.base import Hook, Policy, View


@dataclass
class SuanliPolicy(Policy):
    name = "suanli"
    hooks = frozenset({Hook.RANK, Hook.ON_ROUND})
    preemptive: ClassVar[bool] = True
    rho_guard: float = 1.7
    stickiness: float = 2.0
    min_run_s: float = 1800.0  # the simulator's default checkpoint interval: a preempted job keeps one save
    max_slowdown: float = 3.0
    queue_quotas: dict[str, float] = field(default_factory=dict)
    fair_shares: dict[str, float] = field(default_factory=dict)  # queue → its share; empty: off
    usage_half_life_s: float = 7 * 24 * 3600.0
    _cache: dict[str, tuple[list[str], float]] = field(default_factory=dict)
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
            types, mean_rate = self._cache.get(job.job_id) or self._profile(s, view)
            running = s.status == "running"
            fresh = running and view.now_s < s.busy_from_s + self.min_run_s
            # Projected ρ: now on the slowest type it may get (pessimistic), see `share_runtime_s`.
            share_s = max(1.0, job.width / share_gpus) / mean_rate * view.expected_work(s)
            rho = (
                view.now_s - job.submit_s + job.restart_overhead_s + view.remaining_s(s, types[-1])
            ) / share_s
            area = job.width * view.remaining_s(s, types[0]) / (self.stickiness if running else 1.0)
            starving = rho > self.rho_guard
            return (
                not (running and job.kind == "hpc"),
                job.queue in over,
                not starving,
                not fresh,
                -rho if starving else area,
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
        if len(self._cache) > 4 * len(view.jobs) + 1024:
            self._cache = {k: v for k, v in self._cache.items() if k in view.jobs}

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        types = self._profile(state, view)[0]
        if state.accel_type in types and types[0] != state.accel_type:
            return [state.accel_type, *(t for t in types if t != state.accel_type)]
        return types
