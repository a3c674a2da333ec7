"""Scheduler-side jobs: what a policy needs to know about a job, and its mutable run state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from suanli.spec.errors import SpecError
from suanli.spec.job import JobSpec, Sharing

JobKind = Literal["training", "inference", "hpc"]
JobStatus = Literal["pending", "running", "finished", "cancelled"]


@dataclass(frozen=True)
class SchedJob:
    """One job as the scheduler sees it.

    `runtime_s` maps accelerator type → isolated run time at `gpus` (work is 1.0; a job progresses at
    1 / runtime_s[type] per second on that type). Types missing from it are not allowed.
    `throughput` is the per-type rate a throughput-table policy (Gavel) optimises; by default the
    progress rate itself.
    """

    job_id: str
    submit_s: float
    gpus: int
    runtime_s: dict[str, float]
    kind: JobKind = "training"
    queue: str = "default"
    priority: int = 0
    estimate_s: float | None = None
    throughput: dict[str, float] = field(default_factory=dict)
    restart_overhead_s: float = 0.0
    sharing: Sharing = field(default_factory=Sharing)
    gpus_max: int | None = None
    cpu_nodes: int = 0
    app: str = ""

    def __post_init__(self) -> None:
        if self.gpus < 0 or (self.gpus == 0 and self.cpu_nodes == 0):
            raise SpecError(f"job {self.job_id}: needs gpus > 0 or cpu_nodes > 0, got gpus={self.gpus}")
        if not self.runtime_s:
            raise SpecError(f"job {self.job_id}: no accelerator type it can run on (runtime_s is empty)")
        bad = {t: r for t, r in self.runtime_s.items() if not (r > 0 and math.isfinite(r))}
        if bad:
            raise SpecError(f"job {self.job_id}: runtime_s must be finite and > 0, got {bad}")

    @property
    def width(self) -> int:
        """Gang size in scheduling slots: GPUs, or whole nodes for a CPU (HPC) job."""
        return self.gpus if self.gpus else self.cpu_nodes

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self.runtime_s)

    @property
    def is_fractional(self) -> bool:
        return self.sharing.mode != "exclusive"

    def rate(self, accel_type: str) -> float:
        """Fraction of the job done per second on `accel_type`."""
        return 1.0 / self.runtime_s[accel_type]

    def table_throughput(self, accel_type: str) -> float:
        return self.throughput.get(accel_type, self.rate(accel_type))

    def best_runtime_s(self) -> float:
        return min(self.runtime_s.values())

    def expected_s(self) -> float:
        """What a policy may assume about the run time: the user's estimate, else the best isolated."""
        return self.estimate_s if self.estimate_s is not None else self.best_runtime_s()


@dataclass
class JobState:
    """Mutable run state of a job, owned by the `Scheduler`."""

    job: SchedJob
    status: JobStatus = "pending"
    progress: float = 0.0
    placement: tuple[tuple[str, int], ...] = ()
    accel_type: str | None = None
    segment_start_s: float = 0.0
    busy_from_s: float = 0.0
    first_start_s: float | None = None
    finish_s: float | None = None
    attained_gpu_s: float = 0.0
    run_s: float = 0.0
    starts: int = 0
    preemptions: int = 0
    failures: int = 0
    speed: float = 1.0  # fraction of its isolated speed while running (co-location interference)

    @property
    def remaining(self) -> float:
        return max(0.0, 1.0 - self.progress)

    def remaining_s(self, accel_type: str | None = None) -> float:
        kind = accel_type or self.accel_type
        if kind is None:
            return self.remaining * self.job.expected_s()
        return self.remaining * self.job.runtime_s[kind]


def sched_job_from_spec(spec: JobSpec, job_id: str, submit_s: float, runtime_s: dict[str, float]) -> SchedJob:
    """A `SchedJob` for a user's `JobSpec`; `runtime_s` comes from the planner's estimate per type
    (or the walltime) and is restricted to the types the spec accepts."""
    requests = spec.resources.accelerators
    if not requests:
        nodes = spec.num_nodes if isinstance(spec.num_nodes, int) else 1
        return SchedJob(
            job_id=job_id,
            submit_s=submit_s,
            gpus=0,
            cpu_nodes=nodes,
            runtime_s={"cpu": runtime_s.get("cpu", spec.walltime_s or 3600.0)},
            kind=spec.kind,
            queue=spec.queue,
            priority=spec.priority,
            estimate_s=spec.walltime_s,
            sharing=spec.sharing,
        )
    allowed = {_slug(r.name) for r in requests if r.name}
    types = {t: r for t, r in runtime_s.items() if not allowed or t in allowed}
    return SchedJob(
        job_id=job_id,
        submit_s=submit_s,
        gpus=requests[0].count,
        gpus_max=requests[0].count_max,
        runtime_s=types,
        kind=spec.kind,
        queue=spec.queue,
        priority=spec.priority,
        estimate_s=spec.walltime_s,
        sharing=spec.sharing,
    )


def _slug(name: str) -> str:
    """Catalog slug of an accelerator name or alias (`a100` → `a100-sxm-80gb`); unknown names stay."""
    from suanli.spec.catalog import CATALOG

    try:
        return CATALOG.accelerator(name).slug
    except SpecError:
        return name.lower()
