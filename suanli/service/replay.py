"""Trace replay for `suanli up --simulate CLUSTER.yaml --trace NAME`: the jobs of a public trace
(loaded by `suanli.sched.traces`) are submitted through the service at their trace arrival times
on the simulated clock, so the dashboard shows a centre filling and draining as the trace did."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from dataclasses import dataclass, field

from suanli.sched.cluster_state import CPU_TYPE, ClusterState
from suanli.sched.estimate import declare
from suanli.sched.job import SchedJob
from suanli.sched.metrics import summarize
from suanli.sched.simulator import SimConfig
from suanli.sched.traces import load_trace
from suanli.service.admission import ServiceConfig, admit
from suanli.service.controller import Controller
from suanli.service.executors.base import Placement, Run
from suanli.service.executors.simulated import EventClock, SimulatedExecutor, TrueRun
from suanli.service.scheduling import SuanliScheduler, sched_id
from suanli.spec import Cluster, JobSpec, SpecError

log = logging.getLogger("suanli.service")


def spec_of_trace_job(job: SchedJob, queues: set[str]) -> JobSpec:
    """A JobSpec for one trace job: its gang on any of its accelerator types (or whole CPU nodes),
    lasting its best isolated run time (the simulated executor runs a job for its walltime)."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "-", job.job_id).lstrip("-_.") or "trace-job"
    common = {
        "name": name,
        "queue": job.queue if job.queue in queues else "default",
        "priority": job.priority,
        "walltime": job.best_runtime_s(),
        "run": f"trace job {job.job_id}",
    }
    if job.gpus:
        accelerators = {t: job.gpus for t in job.runtime_s if t != CPU_TYPE}
        return JobSpec.model_validate(
            {**common, "kind": job.kind, "resources": {"accelerators": accelerators}}
        )
    return JobSpec.model_validate({**common, "kind": "hpc", "num_nodes": job.cpu_nodes})


@dataclass
class TraceReplay:
    controller: Controller
    config: ServiceConfig
    jobs: list[SchedJob]
    submitted: int = 0
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def load(
        cls, controller: Controller, config: ServiceConfig, trace: str, workload: str, limit: int | None
    ) -> TraceReplay:
        cluster: Cluster = controller.cluster
        jobs = load_trace(trace, workload, ClusterState.from_cluster(cluster), limit)
        return cls(controller, config, sorted(jobs, key=lambda j: j.submit_s))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="suanli-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        if not self.jobs:
            return
        origin_s, first_s = self.controller.clock(), self.jobs[0].submit_s
        for job in self.jobs:
            while self.controller.clock() < origin_s + job.submit_s - first_s:
                if self._stop.wait(0.05):
                    return
            spec = spec_of_trace_job(job, set(self.config.queues))
            try:
                self.controller.submit(spec, admit(spec, self.controller.cluster, self.config), None)
                self.submitted += 1
            except SpecError as exc:
                self.refused += 1
                log.warning("trace job %s refused: %s", job.job_id, exc)


@dataclass
class ReplayToEnd:
    """A trace through the controller, store and simulated executor as fast as the machine allows:
    the clock jumps to the next arrival or run end, the controller steps at each, and the metrics
    are `suanli sim`'s (`suanli.sched.metrics.summarize`) over the live scheduler's job records.

    Inputs are the simulator's: the policy reads each job's declared run time per accelerator type
    (`suanli.sched.estimate.declare`, same σ and seed), and a run lasts its true run time on the type
    it was placed on, plus the trace's restart overhead; a preempted run keeps the work up to its last
    checkpoint; the policy sees the restart overhead and the trace's throughput table on each candidate
    placement, as it does there."""

    controller: Controller
    config: ServiceConfig
    jobs: list[SchedJob]
    estimate_error: float = 0.5
    seed: int = 0
    rejected: dict[str, str] = field(default_factory=dict)

    def run(self) -> dict[str, float]:
        clock, executor, scheduler = (
            self.controller.clock,
            self.controller.executor,
            self.controller.scheduler,
        )
        if not (
            isinstance(clock, EventClock)
            and isinstance(executor, SimulatedExecutor)
            and isinstance(scheduler, SuanliScheduler)
        ):
            raise SpecError(
                "--exit-when-done: needs the event clock, simulated executor and suanli scheduler"
            )
        declared, _ = declare(self.jobs, self.estimate_error, "declared", self.seed)
        truth: dict[int, SchedJob] = {}
        executor.truth = lambda run: self._true_run(truth, run)
        round_s = scheduler.inner.policy.round_s  # a round-based policy preempts where its jobs checkpoint
        executor.checkpoint_interval_s = None if round_s is not None else SimConfig().checkpoint_interval_s
        arrivals = sorted(zip(self.jobs, declared, strict=True), key=lambda p: (p[0].submit_s, p[0].job_id))
        queues, index = set(self.config.queues), 0
        while True:
            while index < len(arrivals) and arrivals[index][0].submit_s <= clock():
                job, seen = arrivals[index]
                index += 1
                self._submit(job, seen, queues, truth)
            self.controller.step()
            ahead = [t for t in (executor.next_end_s(),) if t is not None]
            if index < len(arrivals):
                ahead.append(arrivals[index][0].submit_s)
            if not ahead:
                break
            if round_s is not None:  # a round-based policy decides at its round boundaries too
                if scheduler.inner.jobs:
                    ahead.append((math.floor(clock() / round_s) + 1) * round_s)
                else:  # idle: the first boundary at or after the next event, as the simulator's
                    ahead.append(math.ceil(min(ahead) / round_s) * round_s)
            clock.advance_to(min(ahead))
        states = scheduler.inner.all_jobs()
        by_sched_id = {sched_id(job_id): job for job_id, job in truth.items()}
        for state in states:
            state.job = by_sched_id[state.job.job_id]  # judged against the truth, as the simulator is
        return summarize(states, scheduler.inner.cluster, scheduler.inner.decision_s)

    def _submit(self, job: SchedJob, seen: SchedJob, queues: set[str], truth: dict[int, SchedJob]) -> None:
        # the walltime is the trace's limit where it has one (HPC), never the true run time: the policy
        # reads declared run times per type from the candidates, as the simulator's does
        spec = spec_of_trace_job(job, queues).model_copy(update={"walltime_s": seen.estimate_s})
        try:
            candidates = admit(spec, self.controller.cluster, self.config)
            planned = [
                dataclasses.replace(
                    p,
                    runtime_s=seen.runtime_s.get(p.accelerator or CPU_TYPE),
                    restart_overhead_s=seen.restart_overhead_s,
                    throughput=seen.throughput.get(p.accelerator or CPU_TYPE),
                )
                for p in candidates
            ]
            truth[self.controller.submit(spec, planned, None).id] = job
        except SpecError as exc:
            self.rejected[job.job_id] = str(exc)

    @staticmethod
    def _true_run(truth: dict[int, SchedJob], run: Run) -> TrueRun | None:
        job = truth.get(run.job_id)
        placement: Placement = run.placement
        if job is None:
            return None
        return TrueRun(job.runtime_s[placement.accelerator or CPU_TYPE], job.restart_overhead_s)
