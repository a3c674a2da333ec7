"""What the controller needs from a scheduler (`SchedulerPort`), and the adapter that puts
`suanli.sched`'s live `Scheduler` behind it. A CPU node is one scheduling slot there: an HPC
job holds whole nodes, so on the one-node local pool command jobs run one at a time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from suanli.sched.cluster_state import CPU_TYPE
from suanli.sched.fractional import FULL_MILLI
from suanli.sched.job import Elastic, SchedJob, sched_job_from_spec
from suanli.sched.policies import make_policy
from suanli.sched.scheduler import Scheduler
from suanli.service.admission import fit_to_cluster
from suanli.service.executors.base import Placement
from suanli.spec import Cluster, JobSpec, SpecError

DEFAULT_RUNTIME_S = 3600.0
DEFAULT_POLICY = "suanli"  # the project's best policy on declared work (benchmarks/results/scheduler.md)


def sched_id(job_id: int) -> str:
    """The scheduler's id for a service job: zero-padded, so the policies' tie-break on ids (FIFO's
    `(submit_s, job_id)`) is numeric order (job 7 before job 10)."""
    return f"{job_id:012d}"


def service_ids(message: str, job_id: int) -> str:
    """A scheduler message with the job named by its service id again."""
    return message.replace(sched_id(job_id), str(job_id))


@dataclass
class Decision:
    job_id: int
    placement: Placement | None  # None for a preemption
    action: Literal["start", "preempt", "resize"] = "start"  # resize: a running job restarted on `placement`


class SchedulerPort(Protocol):
    def submit(self, job_id: int, spec: JobSpec, candidates: list[Placement], submit_s: float) -> None:
        """Queue a job; `submit_s` is when the user submitted it (kept across restarts: FIFO order)."""

    def cancel(self, job_id: int) -> None: ...

    def withdraw(self, job_id: int) -> None:
        """Take a pending job out of the queue as if it had never been submitted (a hold): it may be
        submitted again (its release)."""

    def tick(self, now_s: float) -> list[Decision]: ...

    def job_finished(self, job_id: int, now_s: float) -> None: ...

    def job_failed(self, job_id: int, now_s: float) -> None:
        """The job's run failed and it will run again: release its resources, queue it."""

    def adopt(self, job_id: int, spec: JobSpec, placement: Placement, now_s: float) -> str | None:
        """A job already running when the server (re)started: hold its resources. None, or why
        they cannot be held (the job runs on; the reason goes on its record)."""

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per pool: nodes, accelerators and CPUs, total and allocated, and per-node use."""

    @property
    def policy(self) -> str: ...


def _elastic(job: SchedJob, cands: list[Placement]) -> Elastic | None:
    """The job's resize bounds and goodput profile, when a candidate declares one (SpecError when the
    profile has no measurements on one of its accelerator types: the policy could not value it)."""
    profiled = next((p for p in cands if p.goodput_app and p.goodput_steps), None)
    if profiled is None or profiled.goodput_app is None or profiled.goodput_steps is None:
        return None
    from suanli.sched.goodput import ACCEL_SUFFIX
    from suanli.sched.traces.sia import APPS

    app = profiled.goodput_app
    if app not in APPS:
        raise SpecError(f"job {job.job_id}: goodput profile {app!r} is unknown; one of {sorted(APPS)}")
    unprofiled = sorted(t for t in job.runtime_s if t not in ACCEL_SUFFIX)
    if unprofiled:
        raise SpecError(
            f"job {job.job_id}: goodput profile {app!r} has no measurements on {unprofiled[0]}"
            f" (profiled: {sorted(ACCEL_SUFFIX)})"
        )
    return Elastic(app, profiled.goodput_steps)  # from one GPU, accumulating gradients, as Sia's jobs


class SuanliScheduler:
    """`suanli.sched.Scheduler` (the same policy objects as the simulator) behind `SchedulerPort`:
    service job ids are ints, theirs strings; their placements name nodes, ours name a pool."""

    def __init__(
        self, cluster: Cluster, policy: str = DEFAULT_POLICY, fair_shares: dict[str, float] | None = None
    ) -> None:
        self.cluster = cluster
        self.inner = Scheduler(cluster, make_policy(policy, fair_shares))
        self._pool_of_node = {node.name: node.pool for node in self.inner.cluster.nodes}
        self._candidates: dict[int, list[Placement]] = {}

    def _sched_job(self, job_id: int, spec: JobSpec, cands: list[Placement], submit_s: float) -> SchedJob:
        """Run time per accelerator type as the simulator's policies see it: the planner's time to
        train on that type (`Placement.runtime_s`), else the user's walltime, else an hour. A job with
        a goodput profile is elastic: it asks for its spec's `count` (what a policy that does not resize
        gives it) and may run on 1 to `count_max` GPUs, choosing its batch per width (Sia's adaptive
        jobs, as `suanli sim --elastic` loads them)."""
        runtime_s = {
            p.accelerator or CPU_TYPE: p.runtime_s or spec.walltime_s or DEFAULT_RUNTIME_S for p in cands
        }
        job = sched_job_from_spec(
            fit_to_cluster(spec, self.cluster), self.cluster, sched_id(job_id), submit_s, runtime_s
        )
        return dataclasses.replace(
            job,
            restart_overhead_s=max((p.restart_overhead_s for p in cands), default=0.0),
            throughput={p.accelerator: p.throughput for p in cands if p.accelerator and p.throughput},
            checkpoint_s=max((p.checkpoint_s for p in cands), default=0.0),
            comm_share={p.accelerator: p.comm_share for p in cands if p.accelerator and p.comm_share},
            elastic=_elastic(job, cands),
        )

    def submit(self, job_id: int, spec: JobSpec, candidates: list[Placement], submit_s: float) -> None:
        self._candidates[job_id] = candidates
        try:
            self.inner.submit(self._sched_job(job_id, spec, candidates, submit_s))
        except SpecError as exc:
            raise SpecError(service_ids(str(exc), job_id)) from None

    def _holds(self, job_id: int) -> bool:
        """Whether the scheduler tracks the job (pending or running). The controller also reports
        the end of runs the scheduler does not hold: an adopted job that found no room after a
        restart runs on unaccounted."""
        return sched_id(job_id) in self.inner.jobs

    def cancel(self, job_id: int) -> None:
        if self._holds(job_id):
            self.inner.cancel(sched_id(job_id))

    def withdraw(self, job_id: int) -> None:
        if self._holds(job_id):
            self.inner.cancel(sched_id(job_id))
            del self.inner.done[sched_id(job_id)]  # not an outcome of the job: its release queues it anew

    def job_finished(self, job_id: int, now_s: float) -> None:
        if self._holds(job_id):
            self.inner.job_finished(sched_id(job_id), now_s)

    def job_failed(self, job_id: int, now_s: float) -> None:
        if self._holds(job_id):
            self.inner.job_failed(sched_id(job_id), now_s, lost_progress=0.0)

    def tick(self, now_s: float) -> list[Decision]:
        decisions = []
        for decision in self.inner.tick(now_s):
            job_id = int(decision.job_id)
            if decision.action == "preempt":
                decisions.append(Decision(job_id, None, "preempt"))
                continue
            pool = self._pool_of_node[decision.placement[0][0]]
            template = next(
                (p for p in self._candidates[job_id] if p.pool == pool), self._candidates[job_id][0]
            )
            cpu = decision.accel_type in (None, CPU_TYPE)
            placement = Placement(
                pool=pool,
                nodes=len(decision.placement),
                accelerators=0 if cpu else sum(count for _, count in decision.placement),
                accelerator=None if cpu else decision.accel_type,
                cpus_per_node=template.cpus_per_node,
                runtime_s=template.runtime_s,
                restart_overhead_s=template.restart_overhead_s,
                throughput=template.throughput,
                checkpoint_s=template.checkpoint_s,
                comm_share=template.comm_share,
                goodput_app=template.goodput_app,
                goodput_steps=template.goodput_steps,
                plan=template.plan,
                nodelist=[node for node, _ in decision.placement],
            )
            decisions.append(Decision(job_id, placement, decision.action))
        return decisions

    def adopt(self, job_id: int, spec: JobSpec, placement: Placement, now_s: float) -> str | None:
        """Hold slots of its accelerator type for a job that was already running before a restart;
        when there is no room (the cluster shrank while the server was down) the job runs on
        unaccounted and the reason is returned for its record."""
        self._candidates[job_id] = [placement]
        try:
            job = self._sched_job(job_id, spec, [placement], now_s)
            if job.elastic is not None and placement.accelerators != job.gpus:  # it was resized
                job = job.at_width(placement.accelerators)
            self.inner.adopt(job, placement.accelerator or CPU_TYPE, now_s)
        except SpecError as exc:  # the cluster as it is now cannot hold it: no pool, or no free room
            return f"running unaccounted after a restart: {service_ids(str(exc), job_id)}"
        return None

    def snapshot(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for node in self.inner.cluster.nodes:
            node_type = self.cluster.node_type_of(node.pool)
            accelerators = node_type.accelerators_per_node
            busy = sum(1 for milli in node.free_milli if milli < FULL_MILLI)
            pool = result.setdefault(
                node.pool,
                {
                    "nodes": 0,
                    "accelerator": None if node.accel_type == CPU_TYPE else node.accel_type,
                    "accelerators_total": 0,
                    "accelerators_allocated": 0,
                    "cpus_total": 0.0,
                    "cpus_allocated": 0.0,
                    "node_use": [],
                },
            )
            pool["nodes"] += 1
            pool["accelerators_total"] += accelerators
            pool["accelerators_allocated"] += busy if accelerators else 0
            pool["cpus_total"] += node_type.cpu_cores
            cpus = float(node_type.cpu_cores) if busy and not accelerators else 0.0
            pool["cpus_allocated"] += cpus
            pool["node_use"].append(
                {
                    "name": node.name,
                    "accelerators_allocated": busy if accelerators else 0,
                    "cpus_allocated": cpus,
                }
            )
        return result

    @property
    def policy(self) -> str:
        return self.inner.policy.name
