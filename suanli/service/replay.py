"""Trace replay for `suanli up --simulate CLUSTER.yaml --trace NAME`: the jobs of a public trace
(loaded by `suanli.sched.traces`) are submitted through the service at their trace arrival times
on the simulated clock, so the dashboard shows a centre filling and draining as the trace did."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field

from suanli.sched.cluster_state import CPU_TYPE, ClusterState
from suanli.sched.job import SchedJob
from suanli.sched.traces import load_trace
from suanli.service.admission import ServiceConfig, admit
from suanli.service.controller import Controller
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
