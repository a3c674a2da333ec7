"""What the planner ranks by: a job's shape (model, workload, token budget), the objective's sort
key, and a plan's time to train, GPU-hours and cost. Shared by single-pool and mixed-pool search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from suanli.perf.step import Workload
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError
from suanli.spec.job import JobSpec, Training
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Plan

OBJECTIVES = ("time", "cost", "mfu")


@dataclass(frozen=True)
class JobShape:
    """What the planner needs of a job."""

    model: ModelSpec
    work: Workload
    total_tokens: int | None


def job_shape(job: JobSpec) -> JobShape:
    model = job.resolved_model()
    if model is None:
        raise SpecError(
            f"job {job.name!r}: the planner needs a `model` to train (this job only has a command)"
        )
    if job.kind != "training":
        raise SpecError(f"job {job.name!r}: kind is {job.kind!r}; the planner plans training jobs")
    training = job.training or Training()
    if training.seq_len > model.max_seq_len:
        raise SpecError(
            f"training.seq_len: {training.seq_len} exceeds the model's max_seq_len {model.max_seq_len}"
        )
    return JobShape(
        model,
        Workload(training.seq_len, training.global_batch_size, training.precision),
        training.total_tokens,
    )


def finish_plan(
    plan: Plan, shape: JobShape, cluster: Cluster, prices: dict[str, float] | None = None
) -> Plan:
    """Fill in time to train, GPU-hours and cost from the plan's estimate."""
    assert plan.estimate is not None
    if shape.total_tokens:
        plan.time_to_train_s = shape.total_tokens / plan.estimate.tokens_per_s
        plan.gpu_hours = plan.gpus * plan.time_to_train_s / 3600
        price_table = prices if prices is not None else cluster.price_per_gpu_hour
        if plan.stages:
            pools, gpu_share = [s.pool for s in plan.stages], [s.gpus for s in plan.stages]
        else:
            # The planner names the pool of every plan without stages (search._score).
            assert plan.pool is not None
            pools, gpu_share = [plan.pool], [plan.gpus]
        if all(p in price_table for p in pools):
            hours = plan.time_to_train_s / 3600
            plan.cost = sum(price_table[p] * g * hours for p, g in zip(pools, gpu_share, strict=True))
    return plan


def rank_key(objective: str) -> Callable[[Plan], float]:
    """Sort key: best first."""
    if objective not in OBJECTIVES:
        raise SpecError(f"--objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}")

    def key(plan: Plan) -> float:
        assert plan.estimate is not None
        if objective == "mfu":
            return -plan.estimate.mfu
        if objective == "cost":
            if plan.cost is not None:
                return plan.cost
            return plan.gpus / plan.estimate.tokens_per_s  # GPU-seconds per token
        return 1.0 / plan.estimate.tokens_per_s

    return key
