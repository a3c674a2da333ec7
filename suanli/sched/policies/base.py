"""The policy interface, in the Kubernetes scheduling-framework shape.

Each round the `Scheduler` asks the policy to `order` the jobs it should consider (queue sort), and
for each job, walks the accelerator types the policy `filter`s in and `score`s best-first, binding
the first one where `placement.find_slots` finds a whole gang. Preemptive policies re-rank running
jobs too: a running job that falls out of the admitted set is preempted. Non-preemptive policies may
`reserve` for a blocked job (EASY backfill) and stop or continue scanning (`continue_after_block`).

Optional hooks are declared, not detected: a policy lists the `Hook`s it implements in `hooks`
(as a Kubernetes plugin registers its extension points, or torchtitan's `TrainSpec` names its
optional builders), and the scheduler binds exactly those once (`PolicyHooks.of`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Protocol

from suanli.sched.cluster_state import ClusterState
from suanli.sched.estimate import Estimator, HistoryEstimator
from suanli.sched.job import JobState, SchedJob


@dataclass
class View:
    """What a policy may read: the clock, every job's state, the cluster's free/used slots, and the
    estimator of remaining time. Nothing here holds a job's true duration (see `estimate`)."""

    now_s: float
    jobs: dict[str, JobState]  # pending and running
    cluster: ClusterState
    pending_jobs: dict[str, JobState] | None = None  # kept by the Scheduler; derived when None
    queue_held: dict[str, int] | None = None  # queue → GPUs held by its running jobs
    estimator: Estimator = field(default_factory=HistoryEstimator)

    def remaining_s(self, state: JobState, accel_type: str | None = None) -> float:
        """The estimator's time left for the job on `accel_type` (default: where it runs, else its
        fastest type)."""
        kind = accel_type or state.accel_type or min(state.job.runtime_s, key=state.job.runtime_s.__getitem__)
        return self.estimator.remaining_s(state, kind)

    def expected_work(self, state: JobState) -> float:
        """The estimator's total work of the job, in the units of its `runtime_s` (1.0 = declared)."""
        kind = next(iter(state.job.runtime_s))
        return state.progress + self.estimator.remaining_s(state, kind) / state.job.runtime_s[kind]

    def held_by_queue(self) -> dict[str, int]:
        if self.queue_held is not None:
            return self.queue_held
        held: dict[str, int] = {}
        for s in self.running():
            held[s.job.queue] = held.get(s.job.queue, 0) + s.job.width
        return held

    @property
    def capacity(self) -> dict[str, int]:
        return self.cluster.capacity

    def active(self) -> list[JobState]:
        return list(self.jobs.values())

    def pending(self) -> list[JobState]:
        if self.pending_jobs is not None:
            return list(self.pending_jobs.values())
        return [s for s in self.jobs.values() if s.status == "pending"]

    def running(self) -> list[JobState]:
        return [s for s in self.jobs.values() if s.status == "running"]


class Hook(Enum):
    """The optional hooks a policy may implement; it lists the ones it does in `Policy.hooks`, and the
    scheduler calls exactly those (a method a policy defines but does not declare is never called)."""

    RANK = "rank"  # rank(states, view) -> states: orders any subset of the active jobs alone
    ON_ROUND = "on_round"  # on_round(view): once at the start of every scheduling pass
    ON_BOUND = "on_bound"  # on_bound(state, view): after the pass, for every job holding resources
    # allocate(view) -> {job_id: (type, GPUs)}: the whole allocation of the round; a running job whose
    # entry differs is resized (an elastic job) or preempted, and order/ranked_types are not used
    ALLOCATE = "allocate"
    # next_pass_s(view) -> float | None: after a pass, when the policy wants the next one even if no
    # event comes (a deadline of its own rules, e.g. a waiting job's fairness guard); None: on events
    NEXT_PASS = "next_pass_s"
    # keeps_running(view) -> bool: this pass moves no running job (e.g. leases until the round ends),
    # so only the pending jobs are ranked (`rank`, which a policy declaring this must declare too),
    # into the room the running ones leave
    KEEPS_RUNNING = "keeps_running"


class Policy(Protocol):
    """What the `Scheduler` needs from a policy. Subclass it to inherit the default filter, score,
    ranked_types, continue_after_block and may_start; `order` and `name` are required."""

    name: ClassVar[str]
    hooks: ClassVar[frozenset[Hook]] = frozenset()
    preemptive: ClassVar[bool] = False
    round_s: float | None = None  # None: decide on every arrival and completion
    tick_on_events: bool = True  # round-based policies may still fill freed GPUs between rounds
    reads_progress: ClassVar[bool] = True  # False: skip crediting running jobs before each pass
    moves_running: ClassVar[bool] = False  # True: may move running jobs even when nobody waits
    # True: `ranked_types` depends only on the job and the type it runs on, so the scheduler may
    # remember it from pass to pass
    fixed_types: ClassVar[bool] = False

    def filter(self, job: SchedJob, accel_type: str, view: View) -> bool:
        """Can the job ever run on this type here (big enough pool, type allowed)?"""
        return accel_type in job.runtime_s and view.capacity.get(accel_type, 0) >= job.width_on(accel_type)

    def score(self, job: SchedJob, accel_type: str, view: View) -> float:
        """Higher is better; by default the job's speed on the type."""
        return job.rate(accel_type)

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        job = state.job
        types = [t for t in job.runtime_s if self.filter(job, t, view)]
        return sorted(types, key=lambda t: (-self.score(job, t, view), t)) if len(types) > 1 else types

    def ranked_types_of(self, states: list[JobState], view: View) -> list[list[str]]:
        """`ranked_types` of many jobs at once (a policy may answer column-wise). Returning the same
        list object for a job as before says its answer has not changed: the scheduler then reuses
        what it derived from it, so a list once returned must never be changed."""
        return [self.ranked_types(s, view) for s in states]

    @abstractmethod
    def order(self, view: View) -> list[JobState]:
        """The jobs to consider, most important first (pending only unless `preemptive`)."""

    def continue_after_block(self, state: JobState, view: View) -> bool:
        """A job could not be placed: keep scanning the queue (True) or stop (False)?"""
        return True

    def may_start(self, state: JobState, accel_type: str, view: View) -> bool:
        """Veto a start (e.g. one that would delay a backfill reservation); asked only once a placement
        was found, so a policy may count what it lets start."""
        return True


@dataclass(frozen=True)
class PolicyHooks:
    """The hooks a policy declared, bound to it (None: not declared). `rank` comes with a promise:
    a running job's `ranked_types` start with the type it runs on, so that while every job fits on
    its first type no order changes who runs where, and the scheduler may rank only pending jobs."""

    rank: Callable[[list[JobState], View], list[JobState]] | None
    on_round: Callable[[View], None] | None
    on_bound: Callable[[JobState, View], None] | None
    allocate: Callable[[View], dict[str, tuple[str, int]]] | None
    next_pass_s: Callable[[View], float | None] | None
    keeps_running: Callable[[View], bool] | None

    @classmethod
    def of(cls, policy: Policy) -> PolicyHooks:
        """Bind the declared hooks; TypeError naming the policy if it declares one it lacks."""
        missing = sorted(h.value for h in policy.hooks if not callable(getattr(policy, h.value, None)))
        if missing:
            raise TypeError(f"policy {policy.name}: declares hook(s) {', '.join(missing)} without the method")
        if Hook.KEEPS_RUNNING in policy.hooks and Hook.RANK not in policy.hooks:
            raise TypeError(f"policy {policy.name}: declares keeps_running without rank")
        return cls(**{h.value: getattr(policy, h.value) if h in policy.hooks else None for h in Hook})
