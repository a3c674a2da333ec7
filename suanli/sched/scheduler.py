"""The live scheduler: one object, driven by the service in real time or by the simulator in
simulated time, running the same `Policy` objects either way."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from suanli.sched.cluster_state import ClusterState, Slot
from suanli.sched.estimate import Estimator, HistoryEstimator
from suanli.sched.fractional import FULL_MILLI, share_milli
from suanli.sched.job import JobState, SchedJob
from suanli.sched.placement import find_slots
from suanli.sched.policies import use_cluster_fair_share
from suanli.sched.policies.base import Policy, PolicyHooks, View
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError


@dataclass(frozen=True)
class Decision:
    action: Literal["start", "preempt", "resize"]  # resize: a running job restarted on a new shape
    job_id: str
    accel_type: str | None = None
    placement: tuple[tuple[str, int], ...] = ()  # (node name, GPUs there)
    slots: tuple[Slot, ...] = ()


@dataclass(frozen=True, slots=True)
class _Offer:
    """What the admission walk offers a job: its `ranked_types` (as codes into `Scheduler._types`)
    with the shares its gang takes on each, for the job as it is (running on `accel_type`)."""

    state: JobState  # remembered under `id(state)`: holding the state keeps that id its own
    accel_type: str | None
    ranked: list[str]  # what `ranked_types` answered
    types: tuple[int, ...]
    needs: tuple[int, ...]
    first: int  # types[0], -1 when it has none
    first_need: int


def _fits_first(offers: list[_Offer], left: list[int], admitted: np.ndarray) -> int:
    """The length of the longest prefix of `offers` whose every job fits on its first type beside
    the ones before it, found with one cumulative sum per type: the admission walk gives each of
    them its first type (and none of those with no type), so they are entered in `admitted` and
    their shares taken from `left` at once. (A job's need is never 0, so once every type is full
    the next job with a type ends the prefix, where the walk would stop.)"""
    n = len(offers)
    first = np.fromiter((o.first for o in offers), np.intp, n)
    need = np.fromiter((o.first_need for o in offers), np.int64, n)
    start = n
    for code, room in enumerate(left):
        on = first == code
        over = np.flatnonzero(on & (np.cumsum(np.where(on, need, 0)) > room))
        start = min(start, int(over[0])) if len(over) else start
    admitted[:start] = first[:start]
    for code in range(len(left)):
        left[code] -= int(need[:start][first[:start] == code].sum())
    return start


class Scheduler:
    """`submit` jobs, call `tick(now_s)` to get start/preempt decisions, report `job_finished`.

    The scheduler keeps its policy's own cadence however often it is ticked: a pass runs only when
    a job arrived, ended, failed or was cancelled since the last one (for policies that decide on
    events) or when the policy's round is due, so a service ticking every 0.1 s and a simulation
    deciding on every event make the same decisions, only later by up to one tick."""

    def __init__(
        self, cluster: Cluster | ClusterState, policy: Policy, estimator: Estimator | None = None
    ) -> None:
        self.cluster = cluster if isinstance(cluster, ClusterState) else ClusterState.from_cluster(cluster)
        self.policy = policy
        if self.cluster.cluster is not None and self.cluster.cluster.fair_share is not None:
            use_cluster_fair_share(policy, self.cluster.cluster.fair_share)
        self.estimator = estimator or HistoryEstimator()
        self.hooks = PolicyHooks.of(policy)
        self.jobs: dict[str, JobState] = {}  # pending and running
        self.done: dict[str, JobState] = {}  # finished and cancelled
        self.pending: dict[str, JobState] = {}  # the pending subset of `jobs`, in submission order
        self.queue_held: dict[str, int] = {}  # queue → GPUs (or CPU nodes) its running jobs hold
        self._types = list(self.cluster.capacity)  # type codes of `_Offer`
        self._code = {t: c for c, t in enumerate(self._types)}
        self._offers: dict[int, _Offer] = {}  # id(JobState) → its offer, see `_offers_of`
        self.decision_s: list[float] = []
        self._changed = True  # a job arrived, ended, failed or was cancelled since the last pass
        self._next_round_s = -math.inf
        self.wake_s = math.inf  # when the policy asked for its next pass (`Hook.NEXT_PASS`)

    # ---- what the service (or simulator) calls -------------------------------------------------
    def submit(self, job: SchedJob) -> None:
        """Queue a job; a job that can never fit on this cluster is rejected with the reason."""
        if job.job_id in self.jobs or job.job_id in self.done:
            raise SpecError(f"job {job.job_id}: already submitted")
        capacity = self.cluster.capacity
        known = [t for t in job.runtime_s if t in capacity]
        if not known:
            raise SpecError(
                f"job {job.job_id}: cluster has none of its accelerator types {sorted(job.runtime_s)}"
                f" (it has {sorted(capacity)})"
            )
        if job.is_fractional:
            for t in known:
                share_milli(job.sharing, t)  # raises on a MIG profile the type cannot host
        elif all(capacity[t] < job.width_on(t) for t in known):
            biggest = max(known, key=lambda t: capacity[t])
            unit = "nodes" if job.gpus == 0 else "GPUs"
            raise SpecError(
                f"job {job.job_id}: asks for {job.width_on(biggest)} {unit} but the largest"
                f" matching pool ({biggest}) has {capacity[biggest]}"
            )
        self.jobs[job.job_id] = self.pending[job.job_id] = JobState(job=job)
        self._changed = True

    def adopt(
        self, job: SchedJob, accel_type: str, now_s: float, slots: tuple[Slot, ...] | None = None
    ) -> None:
        """Register a job that is already running (e.g. found by the service after a restart): it
        holds `slots` (or, when None, the placement `find_slots` picks on `accel_type`) from `now_s`
        on, with no restart overhead. SpecError, naming the cause, if the job is invalid or the
        placement is not free or does not match the job."""
        if accel_type not in job.runtime_s:
            raise SpecError(
                f"job {job.job_id}: cannot adopt it on {accel_type}; it runs on {sorted(job.runtime_s)}"
            )
        if slots is None:
            slots = find_slots(self.cluster, job, accel_type)
            if slots is None:
                width = job.width_on(accel_type)
                raise SpecError(
                    f"job {job.job_id}: no free room for its {width} slot(s) on {accel_type} to adopt it"
                )
        self._check_slots(job, accel_type, slots)
        self.submit(job)
        state = self.pending[job.job_id]
        self._bind(state, accel_type, slots, now_s)
        state.busy_from_s = now_s

    def cancel(self, job_id: str) -> None:
        state = self._state(job_id)
        if state.status == "running":
            self._release(state)
        state.status = "cancelled"
        self._changed = True
        self.pending.pop(job_id, None)
        self._offers.pop(id(state), None)
        self.done[job_id] = self.jobs.pop(job_id)

    def job_finished(self, job_id: str, now_s: float) -> None:
        state = self._state(job_id)
        self._account(state, now_s)
        if state.status == "running":
            self._release(state)
        self.estimator.observe(state)
        state.status, state.finish_s = "finished", now_s
        self._changed = True
        self._offers.pop(id(state), None)
        self.done[job_id] = self.jobs.pop(job_id)

    def job_failed(self, job_id: str, now_s: float, lost_progress: float) -> None:
        """A worker died: release the gang, roll back to the last checkpoint, queue it again."""
        state = self._state(job_id)
        self._account(state, now_s)
        self._release(state)
        state.status, state.accel_type, state.placement = "pending", None, ()
        state.progress = max(0.0, state.progress - lost_progress)
        state.failures += 1
        self.pending[job_id] = state
        self._changed = True

    def tick(self, now_s: float) -> list[Decision]:
        started = time.perf_counter()
        round_s = self.policy.round_s
        on_events = round_s is None or self.policy.tick_on_events
        round_due = round_s is not None and now_s >= self._next_round_s
        if not (round_due or now_s >= self.wake_s or (on_events and self._changed)):
            return []  # nothing changed and no round is due: the policy's cadence, not the caller's
        self._changed, self.wake_s = False, math.inf
        if round_due:
            self._next_round_s = (math.floor(now_s / round_s) + 1) * round_s  # type: ignore[operator]
        if not self.pending and not self.policy.moves_running:
            self.decision_s.append(time.perf_counter() - started)
            return []  # nobody waits: every running job keeps its place (progress is credited later)
        view = View(now_s, self.jobs, self.cluster, self.pending, self.queue_held, self.estimator)
        first_choice = self._first_choice_admission(view) if self.policy.preemptive else None
        if self.policy.reads_progress and first_choice is None:
            account = self._account
            for state in self.jobs.values():
                if state.status == "running":
                    account(state, now_s)
        if self.hooks.on_round:
            self.hooks.on_round(view)
        if self.hooks.allocate:
            decisions = self._allocation_pass(view)
        elif first_choice is not None:
            decisions = self._start_admitted(first_choice, view)
        elif self.policy.preemptive and self.hooks.keeps_running and self.hooks.keeps_running(view):
            decisions = self._fill_pass(view)
        elif self.policy.preemptive:
            decisions = self._preemptive_pass(view)
        else:
            decisions = self._greedy_pass(view)
        if self.hooks.on_bound:
            for state in self.jobs.values():
                if state.status == "running":
                    self.hooks.on_bound(state, view)
        if self.hooks.next_pass_s:
            wake_s = self.hooks.next_pass_s(view)
            self.wake_s = wake_s if wake_s is not None and wake_s > now_s else math.inf
        self.decision_s.append(time.perf_counter() - started)
        return decisions

    def snapshot(self, now_s: float | None = None) -> dict[str, Any]:
        """For the dashboard: per-type free/total slots and every active job (progress as of
        `now_s` when given)."""
        if now_s is not None:
            for state in self.jobs.values():
                self._account(state, now_s)
        capacity = self.cluster.capacity
        return {
            "policy": self.policy.name,
            "accelerators": {
                t: {"total": n, "free": self.cluster.free_whole_by_type[t]} for t, n in capacity.items()
            },
            "jobs": [
                {
                    "job_id": s.job.job_id,
                    "status": s.status,
                    "queue": s.job.queue,
                    "gpus": s.job.width_on(s.accel_type),
                    "accel_type": s.accel_type,
                    "placement": [list(p) for p in s.placement],
                    "progress": round(s.progress, 4),
                    "preemptions": s.preemptions,
                }
                for s in self.jobs.values()
            ],
        }

    # ---- passes ---------------------------------------------------------------------------------
    def _greedy_pass(self, view: View) -> list[Decision]:
        decisions = []
        for state in self.policy.order(view):
            if state.status != "pending":
                continue
            decision = self._try_start(state, self.policy.ranked_types(state, view), view)
            if decision:
                decisions.append(decision)
            elif not self.policy.continue_after_block(state, view):
                break
        return decisions

    def _preemptive_pass(self, view: View) -> list[Decision]:
        """Admit jobs in policy order while their gang fits by count; preempt running jobs that
        were not admitted (or were admitted on another type); then place the admitted new ones."""
        order = self.policy.order(view)
        offers = self._offers_of(order, view)
        admitted = self._admit(offers, {t: n * FULL_MILLI for t, n in view.capacity.items()})
        code = self._code
        own = np.fromiter((code.get(o.accel_type, -1) for o in offers), np.intp, len(offers))  # type: ignore[arg-type]
        # running jobs not admitted where they run, by state identity (20k job ids cost a cache miss each)
        dropped = {id(order[i]) for i in np.flatnonzero((own >= 0) & (admitted != own))}
        if np.count_nonzero(own >= 0) != len(self.jobs) - len(self.pending):  # some running job unranked
            ranked = {id(s) for s in order}
            dropped |= {id(s) for s in self.jobs.values() if s.status == "running" and id(s) not in ranked}
        decisions = (
            [self._preempt(s, view.now_s) for s in list(self.jobs.values()) if id(s) in dropped]
            if dropped
            else []
        )
        new = np.flatnonzero((admitted >= 0) & (admitted != own))  # pending, or dropped from another type
        return decisions + self._start_admitted([(order[i], self._types[admitted[i]]) for i in new], view)

    def _fill_pass(self, view: View) -> list[Decision]:
        """`_preemptive_pass` for a pass that keeps every running job (`Hook.KEEPS_RUNNING`): each one
        would be admitted where it runs and take what it holds, so the pending jobs, ranked alone,
        are admitted by count into the free shares; nobody is preempted."""
        assert self.hooks.rank is not None
        order = self.hooks.rank(list(self.pending.values()), view)
        admitted = self._admit(self._offers_of(order, view), self.cluster.free_milli_by_type)
        new = np.flatnonzero(admitted >= 0)
        return self._start_admitted([(order[i], self._types[admitted[i]]) for i in new], view)

    def _admit(self, offers: list[_Offer], free_milli: dict[str, int]) -> np.ndarray:
        """The admission walk: in order, each job takes the first of its `ranked_types` with room by
        count for its gang; once no type has room left, the walk stops. Per job, the code (in
        `_types`) of the type it was admitted on, -1 if none. The longest prefix in which every job
        fits on its first type is admitted at once, column-wise (`_fits_first`); the walk goes on job
        by job from the first that does not."""
        admitted = np.full(len(offers), -1, np.intp)
        left = [free_milli.get(t, 0) for t in self._types]
        start = _fits_first(offers, left, admitted)
        open_types = sum(1 for room in left if room > 0)
        for i, offer in enumerate(offers[start:], start):
            if not open_types:
                break
            for code, need in zip(offer.types, offer.needs, strict=True):
                rest = left[code] - need
                if rest >= 0:
                    left[code] = rest
                    if rest == 0 and need:
                        open_types -= 1
                    admitted[i] = code
                    break
        return admitted

    def _allocation_pass(self, view: View) -> list[Decision]:
        """Follow the policy's whole allocation (`Hook.ALLOCATE`): release every running job whose
        (type, GPUs) changed, then bind the allocated jobs widest first. A released job bound again is
        resized: it restarts from its checkpoint (taken when it was told to move) and pays its restore
        time. One left out, or that no longer fits, is preempted."""
        assert self.hooks.allocate is not None
        wanted = self.hooks.allocate(view)
        moved = set()
        for state in list(self.jobs.values()):
            shape = (state.accel_type, state.job.width_on(state.accel_type))
            if state.status == "running" and wanted.get(state.job.job_id) != shape:
                self._unbind(state, view.now_s)
                moved.add(state.job.job_id)
        bound = []
        for job_id, (accel_type, gpus) in sorted(wanted.items(), key=lambda kv: -kv[1][1]):
            state = self.jobs[job_id]
            if state.status != "pending":
                continue
            if state.job.elastic is not None and state.job.width_on(accel_type) != gpus:
                state.job = state.job.at_width(gpus)
                self._offers.pop(id(state), None)
            slots = find_slots(self.cluster, state.job, accel_type)
            if slots is not None:
                self._bind(state, accel_type, slots, view.now_s)
                action: Literal["start", "resize"] = "resize" if job_id in moved else "start"
                moved.discard(job_id)
                bound.append(Decision(action, job_id, accel_type, state.placement, slots))
        for job_id in moved:
            self.jobs[job_id].preemptions += 1
        return [Decision("preempt", job_id) for job_id in moved] + bound

    def _first_choice_admission(self, view: View) -> list[tuple[JobState, str]] | None:
        """The pending jobs' admission (job, type), in policy order, when all of them fit on their
        first-ranked type beside the running jobs, else None. Then `_preemptive_pass` would admit
        every job on its first type whatever the order (and preempt nobody), so ranking only the
        pending jobs gives the same decisions at O(pending) instead of O(active) per event. Only a
        policy that declares `Hook.RANK` can rank the pending jobs alone."""
        if self.hooks.rank is None:
            return None
        pending = list(self.pending.values())
        left = [self.cluster.free_milli_by_type.get(t, 0) for t in self._types]
        first_type: dict[int, str] = {}  # id(state) → its first type
        for at in range(0, len(pending), 256):  # a few at a time: the first that does not fit ends it
            chunk = pending[at : at + 256]
            for state, offer in zip(chunk, self._offers_of(chunk, view), strict=True):
                if offer.first >= 0:
                    left[offer.first] -= offer.first_need
                    if left[offer.first] < 0:
                        return None
                    first_type[id(state)] = self._types[offer.first]
        ranked = self.hooks.rank(pending, view)
        return [(s, first_type[id(s)]) for s in ranked if id(s) in first_type]

    def _start_admitted(self, admitted: list[tuple[JobState, str]], view: View) -> list[Decision]:
        """Start the admitted jobs (in policy order), widest first (ties in policy order)."""
        decisions = []
        for state, accel_type in sorted(admitted, key=lambda st: -st[0].job.width_on(st[1])):
            decision = self._try_start(state, [accel_type], view)
            if decision:
                decisions.append(decision)
        return decisions

    def _offers_of(self, states: list[JobState], view: View) -> list[_Offer]:
        """Each job's `_Offer`, remembered until the scheduler binds, releases or resizes the job
        and (for a policy that does not declare `fixed_types`) while `ranked_types_of` answers with
        the same list object. Looked up by the state's identity and nothing else: at 20k jobs,
        reading each job's id, or even its type, costs more than the rest of the walk."""
        known, offer = self._offers.get, self._offer
        if self.policy.fixed_types:
            ranked = self.policy.ranked_types
            return [
                o if (o := known(id(s))) is not None and o.state is s else offer(s, ranked(s, view))
                for s in states
            ]
        return [
            o if (o := known(id(s))) is not None and o.ranked is types and o.state is s else offer(s, types)
            for s, types in zip(states, self.policy.ranked_types_of(states, view), strict=True)
        ]

    def _offer(self, state: JobState, ranked: list[str]) -> _Offer:
        code = self._code
        codes = tuple(code[t] for t in ranked if t in code)  # the others never have room
        needs = tuple(self._need_milli(state.job, self._types[c]) for c in codes)
        first, first_need = (codes[0], needs[0]) if codes else (-1, 0)
        offer = _Offer(state, state.accel_type, ranked, codes, needs, first, first_need)
        self._offers[id(state)] = offer
        return offer

    @staticmethod
    def _need_milli(job: SchedJob, accel_type: str) -> int:
        """Shares of `accel_type` the job's gang takes by count (1000 per whole GPU or CPU node)."""
        return (
            job.gpus_on(accel_type) * share_milli(job.sharing, accel_type)
            or job.width_on(accel_type) * FULL_MILLI
        )

    def _try_start(self, state: JobState, types: list[str], view: View) -> Decision | None:
        for accel_type in types:
            slots = find_slots(self.cluster, state.job, accel_type)
            # `may_start` is asked only of a start that can happen (a reservation counts what it lets start)
            if slots is None or not self.policy.may_start(state, accel_type, view):
                continue
            self._bind(state, accel_type, slots, view.now_s)
            return Decision("start", state.job.job_id, accel_type, state.placement, slots)
        return None

    def _bind(self, state: JobState, accel_type: str, slots: tuple[Slot, ...], now_s: float) -> None:
        """Start a pending job on `slots`: hold them, charge its queue, begin a run segment."""
        self._offers.pop(id(state), None)
        self.cluster.bind(state.job.job_id, slots)
        queue = state.job.queue
        self.queue_held[queue] = self.queue_held.get(queue, 0) + state.job.width_on(accel_type)
        state.status, state.accel_type, state.speed = "running", accel_type, 1.0
        state.placement = self.cluster.describe(slots)
        state.segment_start_s = now_s
        state.busy_from_s = now_s + state.job.restart_overhead_s
        state.first_start_s = now_s if state.first_start_s is None else state.first_start_s
        state.starts += 1
        del self.pending[state.job.job_id]

    def _check_slots(self, job: SchedJob, accel_type: str, slots: tuple[Slot, ...]) -> None:
        """One line naming the first reason `slots` cannot hold `job` on `accel_type` now."""
        milli = share_milli(job.sharing, accel_type) if job.is_fractional else FULL_MILLI
        width = job.width_on(accel_type)
        if len(slots) != width or len({(s.node, s.gpu) for s in slots}) != len(slots):
            raise SpecError(f"job {job.job_id}: placement needs {width} distinct slots, got {len(slots)}")
        for slot in slots:
            if not 0 <= slot.node < len(self.cluster.nodes):
                raise SpecError(f"job {job.job_id}: placement names node {slot.node}, which does not exist")
            node = self.cluster.nodes[slot.node]
            if node.accel_type != accel_type or not 0 <= slot.gpu < node.slots:
                raise SpecError(f"job {job.job_id}: {node.name} has no {accel_type} slot {slot.gpu}")
            if slot.milli != milli:
                raise SpecError(
                    f"job {job.job_id}: slot on {node.name} holds {slot.milli}/1000, the job needs {milli}"
                )
            free = node.free_milli[slot.gpu]
            if free < milli:
                raise SpecError(f"job {job.job_id}: {node.name} GPU {slot.gpu} is busy (free {free}/1000)")
            used = {i for start, size in node.mig[slot.gpu] for i in range(start, start + size)}
            if slot.mig_start is not None and used & set(
                range(slot.mig_start, slot.mig_start + slot.mig_size)
            ):
                raise SpecError(f"job {job.job_id}: {node.name} GPU {slot.gpu} MIG slices are taken")

    def _preempt(self, state: JobState, now_s: float) -> Decision:
        self._unbind(state, now_s)
        state.preemptions += 1
        return Decision("preempt", state.job.job_id)

    def _unbind(self, state: JobState, now_s: float) -> None:
        """End a running job's segment and queue it again."""
        self._account(state, now_s)
        self._release(state)
        state.status, state.accel_type, state.placement = "pending", None, ()
        self.pending[state.job.job_id] = state

    def _release(self, state: JobState) -> None:
        self._offers.pop(id(state), None)
        self.cluster.release(state.job.job_id)
        self.queue_held[state.job.queue] -= state.job.width_on(state.accel_type)

    # ---- progress accounting --------------------------------------------------------------------
    def _account(self, state: JobState, now_s: float) -> None:
        """Credit progress and GPU time for [last accounting, now) of a running job."""
        start_s = state.segment_start_s
        if state.status != "running" or now_s <= start_s:
            return
        job, accel_type = state.job, state.accel_type or ""
        width = job.gpus_by_type.get(accel_type, job.gpus) if job.gpus else job.cpu_nodes  # width_on inlined
        state.attained_gpu_s += (now_s - start_s) * width
        busy_from_s = state.busy_from_s
        busy = now_s - (busy_from_s if busy_from_s > start_s else start_s)
        if busy < 0.0:  # still restoring
            busy = 0.0
        state.run_s += busy
        if job.elastic is None:
            state.progress += busy * (1.0 / job.runtime_s[accel_type] * state.speed)
        else:  # its goodput changes with its width, batch and epoch
            from suanli.sched.goodput import advance

            per_node = tuple(n for _, n in state.placement)
            state.progress = advance(job, accel_type, per_node, state.progress, busy * state.speed)
        state.segment_start_s = now_s

    def _state(self, job_id: str) -> JobState:
        if job_id not in self.jobs:
            reason = f"job {job_id!r} is already {self.done[job_id].status}" if job_id in self.done else ""
            raise SpecError(reason or f"unknown job {job_id!r}")
        return self.jobs[job_id]

    def all_jobs(self) -> list[JobState]:
        return [*self.done.values(), *self.jobs.values()]

    def set_speed(self, job_id: str, speed: float, now_s: float) -> None:
        """From `now_s` on, a running job progresses at `speed` × its isolated rate (e.g. slowed by
        jobs sharing its GPU); progress until then is credited at the old speed."""
        if not 0.0 < speed <= 1.0:
            raise SpecError(f"job {job_id}: speed must be in (0, 1], got {speed}")
        state = self._state(job_id)
        self._account(state, now_s)
        state.speed = speed
