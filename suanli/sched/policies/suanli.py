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
   area(P) + cost(R) < area(R). A running job whose stop costs at least that discounted area gains
   no job anything by stopping, so it keeps its GPUs even against guarded jobs (rule 3): the guard
   preempting such jobs lost more to restarts than it gave the starving. While jobs wait, the policy
   also asks for a pass just after each running job's next save, when stopping it is cheapest. A
   job still restoring is not preempted.
   Every duration comes from the estimator (`view.remaining_s`): declared work ÷ predicted
   throughput, corrected by the queue's history and pulled toward what the application's past
   jobs used (`estimate.HistoryEstimator`). A job that declares no work goes by Tiresias'
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

import numpy as np

from suanli.perf.checkpoint_interval import failures_per_gpu_s
from suanli.sched.estimate import HistoryEstimator, declaration_row
from suanli.sched.job import JobState, SchedJob, checkpoint_interval_s
from suanli.sched.metrics import share_runtime_s
from suanli.sched.policies.base import Hook, Policy, View

# columns of `SuanliPolicy._table`: what the rank key reads of a job that is fixed while it is the same job
_DECLARED, _HPC, _WIDTH, _SUBMIT, _RESTART, _MEAN_RATE, _CYCLE = range(7)
_BEST_RT, _SLOW_RT, _FIRST_RT = range(7, 10)  # run time on its best, slowest, first type
_QUEUE = 11  # in the estimator's `declaration_row`: log declared GPU-seconds, queue code, app code
_DECLARATION = slice(10, 13)
_COLUMNS = 13


@dataclass(frozen=True)
class _Row:
    job: SchedJob
    best_type: str
    slow_type: str
    slot: int  # its row in `SuanliPolicy._table`


@dataclass
class SuanliPolicy(Policy):
    name = "suanli"
    hooks = frozenset({Hook.RANK, Hook.ON_ROUND, Hook.NEXT_PASS})
    preemptive: ClassVar[bool] = True
    fixed_types: ClassVar[bool] = True
    rho_guard: float = 2.0
    stickiness: float = 2.0
    max_slowdown: float = 3.0
    guard_hysteresis: float = 1.25
    las_threshold_gpu_s: float = 16 * 3600.0  # Tiresias' queue boundary, as Pollux's baseline sets it
    queue_quotas: dict[str, float] = field(default_factory=dict)
    fair_shares: dict[str, float] = field(default_factory=dict)  # queue → its share; empty: off
    usage_half_life_s: float = 7 * 24 * 3600.0
    _cache: dict[str, tuple[list[str], float]] = field(default_factory=dict)
    _cycles: dict[str, tuple[SchedJob, float]] = field(default_factory=dict)  # see `_cycle_s`
    _rows: dict[str, _Row] = field(default_factory=dict)
    _table: np.ndarray = field(default_factory=lambda: np.empty((0, _COLUMNS)))  # `_DECLARED`: has a type
    _ids: np.ndarray = field(default_factory=lambda: np.empty(0, "<U1"))  # job ids by slot
    _used: int = 0  # slots taken
    _queues: dict[str, int] = field(default_factory=dict)  # queue → its code in column `_QUEUE`
    _apps: dict[str, int] = field(default_factory=dict)  # application → its code in `_DECLARATION`
    _usage_gpu_s: dict[str, float] = field(default_factory=dict)
    _usage_at_s: float | None = None

    def order(self, view: View) -> list[JobState]:
        return self.rank(view.active(), view)

    def rank(self, states: list[JobState], view: View) -> list[JobState]:
        """The rules' order as one `np.lexsort` over per-job columns. Each key is the float expression
        a per-job key function would compute, term for term in the same order (numpy's float64
        arithmetic is Python's), so the order is the same at a fraction of the cost."""
        if not states:
            return []
        total = sum(view.capacity.values()) or 1
        over = {
            q
            for q, n in view.held_by_queue().items()
            if q in self.queue_quotas and n / total > self.queue_quotas[q]
        } | self._over_fair_share()
        rows = self._rows_of(states, view)
        job, ids = self._columns(rows)
        n = len(states)
        running = np.fromiter((s.status == "running" for s in states), bool, n)
        busy_from_s = np.fromiter((s.busy_from_s for s in states), float, n)
        progress = np.fromiter((s.progress for s in states), float, n)
        remaining_best_s, rho, _ = self._estimates(states, rows, job, progress, view)
        starving = (job[:, _DECLARED] > 0) & (rho > self.rho_guard)
        area = self._areas(states, rows, job, view, remaining_best_s, running, busy_from_s)
        keep = running & (job[:, _DECLARED] > 0) & (area <= 0)  # stopping it gains no job anything
        keys = (
            ids,
            job[:, _SUBMIT],
            np.where(
                keep, -np.inf, np.where(starving, -rho * np.where(running, self.guard_hysteresis, 1.0), area)
            ),
            ~(running & (view.now_s < busy_from_s)),  # still restoring: keep it
            ~(starving | keep),
            np.isin(job[:, _QUEUE], [self._queues[q] for q in over if q in self._queues]),
            ~(running & (job[:, _HPC] > 0)),
        )
        return [states[i] for i in np.lexsort(keys)]

    def _rows_of(self, states: list[JobState], view: View) -> list[_Row]:
        known = self._rows.get
        return [
            row if (row := known(s.job.job_id)) is not None and row.job is s.job else self._row(s, view)
            for s in states
        ]

    def _row(self, state: JobState, view: View) -> _Row:
        job = state.job
        types, mean_rate = self._cache.get(job.job_id) or self._profile(state, view)
        best, slow = (types[0], types[-1]) if types else ("", "")
        numbers = (
            float(job.declared and bool(types)),
            float(job.kind == "hpc"),
            float(job.width),
            job.submit_s,
            job.restart_overhead_s,
            mean_rate,
            self._cycle_s(job, view),
            job.runtime_s[best] if types else math.nan,
            job.runtime_s[slow] if types else math.nan,
            next(iter(job.runtime_s.values())),
            *declaration_row(job, self._queues, self._apps),
        )
        slot, self._used = self._used, self._used + 1
        if slot == len(self._table):
            self._table = np.concatenate([self._table, np.empty((max(1024, slot), self._table.shape[1]))])
            self._ids = np.concatenate(
                [self._ids, np.empty(len(self._table) - len(self._ids), self._ids.dtype)]
            )
        if len(job.job_id) > self._ids.dtype.itemsize // 4:  # a longer id than any before: widen
            self._ids = self._ids.astype(f"<U{len(job.job_id)}")
        self._table[slot], self._ids[slot] = numbers, job.job_id
        row = self._rows[job.job_id] = _Row(job=job, best_type=best, slow_type=slow, slot=slot)
        return row

    def _columns(self, rows: list[_Row]) -> tuple[np.ndarray, np.ndarray]:
        """The jobs' `_table` rows and their ids."""
        slots = np.fromiter((r.slot for r in rows), np.intp, len(rows))
        return self._table[slots], self._ids[slots]

    def _estimates(
        self, states: list[JobState], rows: list[_Row], job: np.ndarray, progress: np.ndarray, view: View
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per job (rows of `job`, their `_table` rows), the estimator's time left on its best type,
        and (nan for a job that declared no work) ρ projected from the estimator's work if the job
        ran from now to the end on the slowest type it may get, and its run time on a 1/N share:
        ρ grows by 1 / share per second of waiting."""
        declared = job[:, _DECLARED] > 0
        estimator = view.estimator
        if type(estimator) is HistoryEstimator:  # its `remaining_s` for declared work, column-wise
            left = estimator.declared_left(job[:, _DECLARATION], self._queues, self._apps, progress)
            remaining_best_s, remaining_slow_s, remaining_first_s = (
                left * job[:, _BEST_RT],
                left * job[:, _SLOW_RT],
                left * job[:, _FIRST_RT],
            )
        else:
            remaining_best_s, remaining_slow_s, remaining_first_s = (
                np.array(
                    [
                        estimator.remaining_s(s, pick(s, r)) if declared[i] else math.nan
                        for i, (s, r) in enumerate(zip(states, rows, strict=True))
                    ]
                )
                for pick in (
                    lambda s, r: r.best_type,
                    lambda s, r: r.slow_type,
                    lambda s, r: next(iter(s.job.runtime_s)),
                )
            )
        share_gpus = sum(view.capacity.values()) / max(1, len(view.jobs))
        work = progress + remaining_first_s / job[:, _FIRST_RT]
        share_s = np.maximum(1.0, job[:, _WIDTH] / share_gpus) / job[:, _MEAN_RATE] * work
        elapsed_s = view.now_s - job[:, _SUBMIT] + job[:, _RESTART]
        rho = (elapsed_s + remaining_slow_s) / share_s
        return remaining_best_s, np.where(declared, rho, math.nan), share_s

    def _areas(
        self,
        states: list[JobState],
        rows: list[_Row],
        job: np.ndarray,
        view: View,
        remaining_best_s: np.ndarray,
        running: np.ndarray,
        busy_from_s: np.ndarray,
    ) -> np.ndarray:
        """Rule 4's area per job: a declared job's estimated GPU-time left on its best type (a running
        one's divided by `stickiness`, less what stopping it now would cost: the work since its last
        checkpoint and the restore it would pay again, in GPU-seconds on its best type); Tiresias'
        queue boundary for one that declared nothing."""
        declared = job[:, _DECLARED] > 0
        area = job[:, _WIDTH] * remaining_best_s
        stop = np.flatnonzero(declared & running)
        if len(stop):
            cycle_s = job[stop, _CYCLE]
            with np.errstate(invalid="ignore", divide="ignore"):
                lost_s = np.where(cycle_s > 0, np.remainder(view.now_s - busy_from_s[stop], cycle_s), 0.0)
            here_runtime_s = np.fromiter(
                (states[i].job.runtime_s[states[i].accel_type or rows[i].best_type] for i in stop),
                float,
                len(stop),
            )
            speed = np.fromiter((states[i].speed for i in stop), float, len(stop))
            on_best = job[stop, _BEST_RT] / here_runtime_s * speed
            cost = job[stop, _WIDTH] * (lost_s * on_best + job[stop, _RESTART])
            area[stop] = area[stop] / self.stickiness - cost
        las = np.flatnonzero(~declared)
        attained = np.fromiter((states[i].attained_gpu_s for i in las), float, len(las))
        area[las] = self.las_threshold_gpu_s * (1 + (attained >= self.las_threshold_gpu_s))
        return area

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
        if max(len(self._cache), len(self._cycles), len(self._rows)) > 4 * len(view.jobs) + 1024:
            # forget finished jobs
            self._cache = {k: v for k, v in self._cache.items() if k in view.jobs}
            self._cycles = {k: v for k, v in self._cycles.items() if k in view.jobs}
            self._rows, self._used = {}, 0  # rebuilt, in fresh slots, as jobs are ranked

    def _cycle_s(self, job: SchedJob, view: View) -> float:
        """Wall time between the job's checkpoints as its runtime plans them (`job.checkpoint_interval_s`
        at the cluster's declared failure rate) plus the save; 0: it loses nothing when stopped."""
        known = self._cycles.get(job.job_id)
        if known is not None and known[0] is job:
            return known[1]
        rate = view.cluster.cluster.failures_per_1k_gpu_month if view.cluster.cluster else None
        interval_s = checkpoint_interval_s(job, failures_per_gpu_s(rate or 0.0))
        cycle_s = interval_s + job.checkpoint_s if interval_s else 0.0
        self._cycles[job.job_id] = (job, cycle_s)  # the job and the cluster's failure rate are fixed
        return cycle_s

    def next_pass_s(self, view: View) -> float | None:
        """A second after the first waiting job that declared its work crosses `rho_guard` (N as now),
        or after a running job's next save if that comes first."""
        waiting = view.pending()
        if not waiting:
            return None
        rows = self._rows_of(waiting, view)
        job = self._columns(rows)[0]
        _, rho, share_s = self._estimates(waiting, rows, job, np.array([s.progress for s in waiting]), view)
        crossing = rho <= self.rho_guard  # nan (declared nothing) is never crossing
        times = view.now_s + (self.rho_guard - rho[crossing]) * share_s[crossing] + 1.0
        running = view.running()  # a pass just after each declared one's next save
        job = self._columns(self._rows_of(running, view))[0]
        cycle_s = job[:, _CYCLE]
        busy_from_s = np.fromiter((s.busy_from_s for s in running), float, len(running))
        declared = job[:, _DECLARED] > 0  # (a running job has a type) read from the table, not 16k jobs
        saving = declared & (cycle_s > 0) & (view.now_s > busy_from_s)
        busy_from_s, cycle_s = busy_from_s[saving], cycle_s[saving]
        saves = busy_from_s + (np.floor((view.now_s - busy_from_s) / cycle_s) + 1) * cycle_s + 1.0
        first = min(times.min(initial=math.inf), saves.min(initial=math.inf))
        return None if math.isinf(first) else float(first)

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        types = (self._cache.get(state.job.job_id) or self._profile(state, view))[0]
        if state.accel_type in types and types[0] != state.accel_type:
            return [state.accel_type, *(t for t in types if t != state.accel_type)]
        return types
