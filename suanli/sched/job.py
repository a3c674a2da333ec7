"""Scheduler-side jobs: what a policy needs to know about a job, and its mutable run state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from suanli.perf.checkpoint_interval import daly_interval_s, interruption_mtbf_s
from suanli.sched.cluster_state import CPU_TYPE
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError
from suanli.spec.job import JobSpec, Sharing
from suanli.spec.request import resolve

JobKind = Literal["training", "inference", "hpc"]
JobStatus = Literal["pending", "running", "finished", "cancelled"]


@dataclass(frozen=True)
class Elastic:
    """An elastic job's resize bounds and goodput profile: it may run on `min_gpus` up to the job's
    `gpus_max` GPUs, choosing its batch per width; `app` names its profile in `sched.goodput`, and
    1.0 of its progress is `unit_steps` steps at the app's initial batch (its declared work)."""

    app: str
    unit_steps: float
    min_gpus: int = 1

    def __post_init__(self) -> None:
        if self.min_gpus < 1 or not (self.unit_steps > 0 and math.isfinite(self.unit_steps)):
            raise SpecError(f"elastic {self.app}: needs min_gpus >= 1 and unit_steps > 0, got {self}")


@dataclass(frozen=True)
class SchedJob:
    """One job as the scheduler sees it.

    `runtime_s` maps accelerator type → the isolated run time a live system predicts for the job's
    declared work (declared work is 1.0; the job is credited 1 / runtime_s[type] of it per second on
    that type), never the true duration, which only a simulator's executor holds (`estimate.declare`).
    With `declared=False` the job declared no work: `runtime_s` is only the relative cost per type,
    the fastest at 1.0. Types missing from it are not allowed. `estimate_s` is a walltime limit.
    `gpus_by_type` is the gang size on each type where a request's alternatives differ
    (SkyPilot's `{H100: 8, A100: 16}`); a type missing from it takes `gpus`.
    `throughput` is the per-type rate a throughput-table policy (Gavel) optimises; by default the
    progress rate itself.
    A preempted or failed run keeps the work up to its last checkpoint, taken every
    `checkpoint_interval_s` of its run (the spec's `checkpoint.interval`; None: Daly's optimum for
    `checkpoint_s`, the time one save stalls it, and its cluster's MTBF). `comm_share` is, per type,
    the fraction of its step time spent in gradient synchronisation when packed on the fewest nodes; a
    placement whose collectives are slower slows that fraction (`placement.placement_speed`).
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
    gpus_by_type: dict[str, int] = field(default_factory=dict)
    declared: bool = True
    elastic: Elastic | None = None
    checkpoint_interval_s: float | None = None
    checkpoint_s: float = 0.0
    comm_share: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gpus < 0 or (self.gpus == 0 and self.cpu_nodes == 0):
            raise SpecError(f"job {self.job_id}: needs gpus > 0 or cpu_nodes > 0, got gpus={self.gpus}")
        if self.checkpoint_interval_s is not None and not (
            self.checkpoint_interval_s > 0 and math.isfinite(self.checkpoint_interval_s)
        ):
            interval = self.checkpoint_interval_s
            raise SpecError(
                f"job {self.job_id}: checkpoint_interval_s must be finite and > 0, got {interval}"
            )
        if not (self.checkpoint_s >= 0 and math.isfinite(self.checkpoint_s)):
            raise SpecError(
                f"job {self.job_id}: checkpoint_s must be finite and >= 0, got {self.checkpoint_s}"
            )
        if not all(0.0 <= share < 1.0 for share in self.comm_share.values()):
            raise SpecError(
                f"job {self.job_id}: comm_share must be in [0, 1) per type, got {self.comm_share}"
            )
        if not self.runtime_s:
            raise SpecError(f"job {self.job_id}: no accelerator type it can run on (runtime_s is empty)")
        bad = {t: r for t, r in self.runtime_s.items() if not (r > 0 and math.isfinite(r))}
        if bad:
            raise SpecError(f"job {self.job_id}: runtime_s must be finite and > 0, got {bad}")

    @property
    def width(self) -> int:
        """Gang size in scheduling slots: GPUs, or whole nodes for a CPU (HPC) job."""
        return self.gpus if self.gpus else self.cpu_nodes

    def gpus_on(self, accel_type: str | None) -> int:
        """GPUs the gang needs on `accel_type` (`gpus` when the type is unknown or not listed)."""
        return self.gpus_by_type.get(accel_type or "", self.gpus)

    def width_on(self, accel_type: str | None) -> int:
        """Gang size in scheduling slots on `accel_type`: its GPUs there, or its CPU nodes."""
        return self.gpus_on(accel_type) if self.gpus else self.cpu_nodes

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

    def at_width(self, gpus: int) -> SchedJob:
        """An elastic job shaped to `gpus` GPUs on any type (SpecError outside its bounds)."""
        if self.elastic is None or not self.elastic.min_gpus <= gpus <= (self.gpus_max or self.gpus):
            raise SpecError(f"job {self.job_id}: cannot run on {gpus} GPUs (not elastic to that width)")
        return replace(self, gpus=gpus, gpus_by_type={})


@dataclass
class JobState:
    """Mutable run state of a job, owned by the `Scheduler`."""

    job: SchedJob
    status: JobStatus = "pending"
    progress: float = 0.0  # declared work done (may pass 1.0 when the job declared too little)
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
        """Declared work not yet done (0 once the job runs past its declaration)."""
        return max(0.0, 1.0 - self.progress)


def checkpoint_interval_s(job: SchedJob, failures_per_gpu_s: float) -> float:
    """Run time between a job's checkpoints as its runtime plans them: the spec's interval, else
    Daly's optimum for its save cost `checkpoint_s` and the mean time between interruptions of its
    width (`interruption_mtbf_s`: the cluster's failures plus a preemption a day; the service hands the
    runtime the same figure). 0 when a save costs nothing: it is taken continuously, so a stop loses
    no work. A policy may read it (the spec and the cluster's declared rate are public), as the
    simulator charges it."""
    if job.checkpoint_interval_s is not None:
        return job.checkpoint_interval_s
    return daly_interval_s(job.checkpoint_s, interruption_mtbf_s(failures_per_gpu_s, job.width))


def _model_name(spec: JobSpec) -> str:
    if isinstance(spec.model, str):
        return spec.model
    return spec.model.slug if spec.model is not None else ""


def sched_job_from_spec(
    spec: JobSpec, cluster: Cluster, job_id: str, submit_s: float, runtime_s: dict[str, float]
) -> SchedJob:
    """A `SchedJob` for a user's `JobSpec` on `cluster`: each accelerator type the request resolves
    to, with its own count (`{H100: 8, A100: 16}` is a gang of 8 on H100 or 16 on A100), and
    `runtime_s` (the planner's estimate per type, or the walltime) restricted to those types."""
    resolution = resolve(spec, cluster)
    options = resolution.options
    interval_s = spec.checkpoint.interval_s if spec.checkpoint else None

    def make(gpus: int, runtime: dict[str, float], **shape: Any) -> SchedJob:
        return SchedJob(
            job_id=job_id,
            submit_s=submit_s,
            gpus=gpus,
            runtime_s=runtime,
            kind=spec.kind,
            queue=spec.queue,
            priority=spec.priority,
            estimate_s=spec.walltime_s,
            sharing=spec.sharing,
            checkpoint_interval_s=interval_s if isinstance(interval_s, float) else None,
            app=spec.application or _model_name(spec),
            **shape,
        )

    if options[0].accelerator is None:
        cpu_runtime = {CPU_TYPE: runtime_s.get(CPU_TYPE, spec.walltime_s or 3600.0)}
        return make(0, cpu_runtime, cpu_nodes=options[0].hosts[0].nodes)
    counts = {t: n for t, n in resolution.counts_by_type.items() if t in runtime_s}
    first = next((o for o in options if o.accel_type in counts), options[0])
    return make(first.count, {t: runtime_s[t] for t in counts}, gpus_max=first.count_max, gpus_by_type=counts)
