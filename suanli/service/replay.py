"""Trace replay through the service: the jobs of a public trace (`suanli.sched.traces`) are submitted
to the service's own API (`POST /jobs`) at their arrival times on the simulated clock.

One submission path serves both replays: `suanli up --simulate CLUSTER --trace T` on a clock running
faster than the wall (an operator watches a centre fill and drain), and `--exit-when-done` on an event
clock (`suanli sim`'s metrics, as fast as the machine allows). Either way the policy sees what a live
system would: each job's declared run time per accelerator type (`suanli.sched.estimate.declare`: the
true work times a seeded lognormal error, a walltime limit for HPC), the trace's restart overhead and
throughput table; the true run time reaches the simulated executor only."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from suanli.perf.checkpoint_interval import failures_per_gpu_s
from suanli.sched.cluster_state import CPU_TYPE, ClusterState
from suanli.sched.estimate import declare
from suanli.sched.goodput import advance, declared_elastic, seconds_to
from suanli.sched.job import SchedJob, checkpoint_interval_s
from suanli.sched.metrics import summarize
from suanli.sched.placement import placement_speed
from suanli.sched.traces import load_trace
from suanli.service.controller import Controller
from suanli.service.executors.base import Placement, Run
from suanli.service.executors.simulated import EventClock, SimulatedExecutor, TrueRun
from suanli.service.scheduling import SuanliScheduler, sched_id
from suanli.spec import Cluster, JobSpec, SpecError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("suanli.service")

DEFAULT_ESTIMATE_ERROR = 0.5  # `suanli sim`'s default σ of declared work
DEFAULT_SEED = 0


def spec_of_trace_job(job: SchedJob, name: str, queues: set[str]) -> JobSpec:
    """A JobSpec for one trace job as its user declares it: its gang on any of its accelerator types
    (or whole CPU nodes; an elastic job's requested width and its most, `count..count_max`), with the
    trace's walltime limit where it has one (HPC), never its run time."""
    common: dict[str, Any] = {
        "name": name,
        "queue": job.queue if job.queue in queues else "default",
        "priority": job.priority,
        "walltime": job.estimate_s,
        "run": f"trace job {job.job_id}",
        "application": job.app or None,
    }
    if job.gpus:
        width = f"{job.gpus}..{job.gpus_max}" if job.elastic and job.gpus_max else job.gpus
        accelerators = {t: width for t in job.runtime_s if t != CPU_TYPE}
        return JobSpec.model_validate(
            {**common, "kind": job.kind, "resources": {"accelerators": accelerators}}
        )
    return JobSpec.model_validate({**common, "kind": "hpc", "num_nodes": job.cpu_nodes})


def _unique_names(jobs: list[SchedJob]) -> list[str]:
    """A job name per trace job (the trace's id made a valid name), unique within the replay."""
    names, seen = [], set()
    for job in jobs:
        base = re.sub(r"[^A-Za-z0-9_.\-]", "-", job.job_id).lstrip("-_.") or "trace-job"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name)
        names.append(name)
    return names


@dataclass(frozen=True)
class TraceWorkload:
    """A trace as the service receives it, keyed by job name: the specs with their arrival times,
    what each job declares (the policy's inputs) and what it truly takes (the executor's only)."""

    arrivals: list[tuple[float, JobSpec]]  # (trace submit time, spec), in arrival order
    declared: dict[str, SchedJob]
    truth: dict[str, SchedJob]
    failures_per_gpu_s: float = 0.0  # the cluster file's declared rate (what a job's checkpoints plan for)

    @classmethod
    def load(
        cls,
        trace: str,
        workload: str,
        cluster: Cluster,
        limit: int | None,
        queues: set[str],
        estimate_error: float = DEFAULT_ESTIMATE_ERROR,
        seed: int = DEFAULT_SEED,
        elastic: bool = False,
    ) -> TraceWorkload:
        """`elastic`: a Sia trace's jobs may be resized, as `suanli sim --elastic` loads them."""
        jobs = load_trace(trace, workload, ClusterState.from_cluster(cluster), limit, elastic)
        seen, work = declare(jobs, estimate_error, "declared", seed)  # in trace order, as `suanli sim`
        seen = [declared_elastic(job, work[job.job_id]) for job in seen]
        order = sorted(range(len(jobs)), key=lambda i: (jobs[i].submit_s, jobs[i].job_id))
        named = list(zip(order, _unique_names([jobs[i] for i in order]), strict=True))
        return cls(
            arrivals=[(jobs[i].submit_s, spec_of_trace_job(seen[i], n, queues)) for i, n in named],
            declared={n: seen[i] for i, n in named},
            truth={n: jobs[i] for i, n in named},
            failures_per_gpu_s=failures_per_gpu_s(cluster.failures_per_1k_gpu_month or 0.0),
        )

    def run_times(self, spec: JobSpec, candidates: list[Placement]) -> list[Placement] | None:
        """The candidates with what the job declares on each type, or None for a job not of the
        trace (an operator's own submission: the planner's estimates apply)."""
        seen = self.declared.get(spec.name)
        if seen is None:
            return None
        return [
            dataclasses.replace(
                p,
                runtime_s=seen.runtime_s.get(p.accelerator or CPU_TYPE),
                restart_overhead_s=seen.restart_overhead_s,
                throughput=seen.throughput.get(p.accelerator or CPU_TYPE),
                checkpoint_s=seen.checkpoint_s,
                comm_share=seen.comm_share.get(p.accelerator or CPU_TYPE, 0.0),
                goodput_app=seen.elastic.app if seen.elastic else None,
                goodput_steps=seen.elastic.unit_steps if seen.elastic else None,
            )
            for p in candidates
        ]

    def true_run(self, run: Run) -> TrueRun | None:
        """How long the run truly takes on the type it was placed on, and how it checkpoints: at its
        spec's interval, else Daly's for its save cost and the cluster's declared failure rate, as the
        simulator charges it (`suanli.sched.job.checkpoint_interval_s`). None: not a trace job."""
        job = self.truth.get(run.spec.name)
        if job is None:
            return None
        interval_s = checkpoint_interval_s(job, self.failures_per_gpu_s)
        return TrueRun(
            job.runtime_s[run.placement.accelerator or CPU_TYPE],
            job.restart_overhead_s,
            job.checkpoint_s,
            interval_s + job.checkpoint_s if interval_s else None,
        )


@dataclass(frozen=True)
class GoodputCurve:
    """An elastic trace job's true work on its placement (GPUs per node): the goodput measured in
    Sia's profiles at each epoch, as the simulator's executor advances it (`sched.goodput`)."""

    job: SchedJob  # the truth: 1.0 of its progress is its true work
    accel_type: str
    per_node: tuple[int, ...]

    def seconds_to(self, done: float, target: float) -> float:
        return seconds_to(self.job, self.accel_type, self.per_node, done, target)

    def advance(self, done: float, seconds: float) -> float:
        return advance(self.job, self.accel_type, self.per_node, done, seconds)


def attach_truth(workload: TraceWorkload, executor: SimulatedExecutor, scheduler: SuanliScheduler) -> None:
    """The simulated executor runs trace jobs for their true time at the speed their placement and
    checkpoint saves allow, keeping a preempted run's work to its last checkpoint as the simulator does
    (all of it under a round-based policy, which preempts where its jobs checkpoint). The run's speed
    and the work a stopped run lost reach the scheduler as a live runtime's measured step time and
    restored step would (the simulator's `set_speed` and `_lost_progress`)."""

    def truth(run: Run) -> TrueRun | None:
        true = workload.true_run(run)
        if true is None:
            return None
        job_id, accelerator = sched_id(run.job_id), run.placement.accelerator or CPU_TYPE
        slots = scheduler.inner.cluster.held.get(job_id, ())
        job = workload.truth[run.spec.name]
        state = scheduler.inner.jobs.get(job_id)
        per_node = tuple(n for _, n in state.placement) if state is not None else ()
        true = dataclasses.replace(
            true,
            placement_speed=placement_speed(scheduler.inner.cluster, job, accelerator, slots),
            curve=GoodputCurve(job, accelerator, per_node) if job.elastic and per_node else None,
        )
        if true.speed != 1.0 and job_id in scheduler.inner.jobs:
            scheduler.inner.set_speed(job_id, true.speed, executor.clock())
        return true

    def lost_work(run: Run, lost_s: float, true: TrueRun) -> None:
        state = scheduler.inner.jobs.get(sched_id(run.job_id))
        if state is not None:  # the simulator's `_lost_progress`, in declared work
            rate = state.job.rate(run.placement.accelerator or CPU_TYPE) * true.speed
            state.progress = max(0.0, state.progress - lost_s * rate)

    executor.truth, executor.on_lost_work = truth, lost_work
    executor.keeps_all_work = scheduler.inner.policy.round_s is not None


def submit_over_api(http: httpx.Client, spec: JobSpec) -> int:
    """`POST /jobs` as any client would; the service's job id, or its one-line refusal as SpecError."""
    response = http.post("/jobs", json=spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    if response.status_code != 201:
        raise SpecError(f"{spec.name}: HTTP {response.status_code}: {response.json().get('detail')}")
    return int(response.json()["id"])


@dataclass
class TraceReplay:
    """The wall-clock replay: a thread posts each job to the app when the simulated clock reaches
    its arrival (shifted so the first job arrives at once)."""

    controller: Controller
    workload: TraceWorkload
    http: httpx.Client | None = None
    submitted: int = 0
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, http: httpx.Client) -> None:
        self.http = http
        self._thread = threading.Thread(target=self._run, name="suanli-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        arrivals = self.workload.arrivals
        if not arrivals or self.http is None:
            return
        origin_s, first_s = self.controller.clock(), arrivals[0][0]
        for submit_s, spec in arrivals:
            while self.controller.clock() < origin_s + submit_s - first_s:
                if self._stop.wait(0.05):
                    return
            try:
                submit_over_api(self.http, spec)
                self.submitted += 1
            except SpecError as exc:
                self.refused += 1
                log.warning("trace job refused: %s", exc)


@dataclass
class ReplayToEnd:
    """A trace through the live service as fast as the machine allows: each job is posted to the API
    when the event clock reaches its arrival, the controller steps at every arrival and run end, and
    the metrics are `suanli sim`'s (`suanli.sched.metrics.summarize`) over the live scheduler's job
    records, judged against the true run times as the simulator's are."""

    app: FastAPI
    http: httpx.Client
    rejected: dict[str, str] = field(default_factory=dict)

    def run(self) -> dict[str, float]:
        controller: Controller = self.app.state.controller
        workload: TraceWorkload | None = self.app.state.workload
        clock, executor, scheduler = controller.clock, controller.executor, controller.scheduler
        if not (
            workload is not None
            and isinstance(clock, EventClock)
            and isinstance(executor, SimulatedExecutor)
            and isinstance(scheduler, SuanliScheduler)
        ):
            raise SpecError("--exit-when-done: needs a trace, the event clock and the simulated executor")
        policy = scheduler.inner.policy
        round_s = policy.round_s
        arrivals, index, ids = workload.arrivals, 0, {}
        while True:
            while index < len(arrivals) and arrivals[index][0] <= clock():
                spec = arrivals[index][1]
                index += 1
                try:
                    ids[spec.name] = submit_over_api(self.http, spec)
                except SpecError as exc:
                    self.rejected[spec.name] = str(exc)
            controller.step()
            ahead = [t for t in (executor.next_end_s(),) if t is not None]
            if index < len(arrivals):
                ahead.append(arrivals[index][0])
            if not ahead:
                break
            if scheduler.inner.wake_s < math.inf:  # the policy's own deadline (`Hook.NEXT_PASS`)
                ahead.append(scheduler.inner.wake_s)
            if round_s is not None:  # a round-based policy decides at its round boundaries too
                if scheduler.inner.jobs:
                    ahead.append((math.floor(clock() / round_s) + 1) * round_s)
                else:  # idle: the first boundary at or after the next event, as the simulator's
                    next_s = min(ahead)
                    ahead.append(math.ceil(next_s / round_s) * round_s)
                    skipped_s = math.floor(next_s / round_s) * round_s
                    if not policy.tick_on_events and skipped_s > clock():  # and step at the last one
                        # before it, so the scheduler's round clock skips the idle ones, as it does
                        ahead.append(skipped_s)
            clock.advance_to(min(ahead))
        states = scheduler.inner.all_jobs()
        by_sched_id = {sched_id(job_id): workload.truth[name] for name, job_id in ids.items()}
        for state in states:
            state.job = by_sched_id[state.job.job_id]  # judged against the truth, as the simulator is
        return summarize(states, scheduler.inner.cluster, scheduler.inner.decision_s)
