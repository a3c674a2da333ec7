"""The planner: every feasible layout on every pool the job may use, pruned by memory first,
scored by the performance model, ranked by the objective (filter → score → rank, like the
Kubernetes scheduling framework).
"""

from __future__ import annotations

import math

from suanli.perf.calibration import STACK_AGNOSTIC
from suanli.perf.compute import hardware
from suanli.perf.step import estimate_step
from suanli.plan.hetero import heterogeneous_plans
from suanli.plan.objective import JobShape, finish_plan, job_shape, rank_key
from suanli.plan.space import (
    Target,
    cheapest_fitting,
    model_state_floor_gb,
    structural_layouts,
    targets,
)
from suanli.spec.cluster import Cluster
from suanli.spec.errors import PlanInfeasible, SpecError
from suanli.spec.job import JobSpec
from suanli.spec.plan import Layout, Plan, StepEstimate


def _score(
    shape: JobShape, job: JobSpec, cluster: Cluster, target: Target, layout: Layout, stack: str
) -> Plan | None:
    """The layout with its cheapest fitting memory saver, scored; None if nothing fits."""
    hw = hardware(target.accelerator, shape.work.precision, stack)
    fitting = cheapest_fitting(
        shape.model, shape.work, layout, hw, target.accelerator, job.parallelism, stack
    )
    if fitting is None:
        return None
    estimate = estimate_step(shape.model, shape.work, fitting, cluster, target.pool, stack=stack)
    if not estimate.fits:
        return None
    return Plan(
        pool=target.pool,
        accelerator=target.accelerator.slug,
        gpus=target.gpus,
        layout=fitting,
        estimate=estimate,
    )


def plan_pool(
    shape: JobShape, job: JobSpec, cluster: Cluster, target: Target, stack: str
) -> tuple[list[Plan], str | None]:
    """All feasible plans on one pool, and (when there are none) why."""
    model, work = shape.model, shape.work
    floor_gb = model_state_floor_gb(model)
    assert target.accelerator.memory_gb is not None
    held_gb = target.gpus * target.accelerator.memory_gb
    if floor_gb > held_gb:
        return [], (
            f"{model.slug} needs ≥ {floor_gb / 1000:.2f} TB of weights+gradients+optimizer state; "
            f"{target.gpus} × {target.accelerator.slug} in pool {target.pool} hold {held_gb / 1000:.2f} TB"
        )
    plans: list[Plan] = []
    tried = 0
    groups: dict[tuple[int, ...], list[Layout]] = {}
    for layout in structural_layouts(model, work, target, job.parallelism):
        groups.setdefault((layout.tp, layout.cp, layout.pp, layout.dp, layout.ep), []).append(layout)
    # Within one (tp, cp, pp, dp, ep) the step time is unimodal in the micro-batch size (GEMM
    # efficiency against bubble and memory) and in the interleaving degree (bubble against
    # memory): raising either stops as soon as it gets slower or no longer fits.
    for group in groups.values():
        best_so_far = math.inf
        for micro in sorted({layout.micro_batch for layout in group}):
            best_here = math.inf
            for layout in sorted((g for g in group if g.micro_batch == micro), key=lambda g: g.vpp):
                tried += 1
                plan = _score(shape, job, cluster, target, layout, stack)
                if plan is None or plan.estimate is None:
                    break
                plans.append(plan)
                if plan.estimate.step_time_s > best_here:
                    break
                best_here = plan.estimate.step_time_s
            if best_here > best_so_far:
                break
            best_so_far = min(best_so_far, best_here)
    if plans:
        return plans, None
    if not tried:
        return [], (
            f"pool {target.pool}: no layout divides {target.gpus} GPUs evenly for global batch "
            f"{work.global_batch} and the fixed parallelism degrees"
        )
    return (
        [],
        f"pool {target.pool}: none of {tried} layouts fits in {target.accelerator.memory_gb:g} GB per GPU",
    )


def search(
    job: JobSpec,
    cluster: Cluster,
    objective: str = "time",
    top: int = 5,
    *,
    stack: str = STACK_AGNOSTIC,
    heterogeneous: bool = True,
    pareto: bool = True,
) -> list[Plan]:
    """The `top` best plans for `job` on `cluster` by `objective` (time, cost or mfu); with
    `pareto`, only plans no other beats on time, cost and GPUs together (`pareto_front`).

    Single-pool plans on every pool the job may use; with `heterogeneous`, also pipelines across
    pools and data-parallel groups of different types (`suanli.plan.hetero`). Raises PlanInfeasible
    naming the reasons when no plan is feasible."""
    key = rank_key(objective)
    shape = job_shape(job)
    found, reasons = targets(job, cluster)
    if not found and not reasons:
        raise PlanInfeasible(
            f"no pool of cluster {cluster.name!r} has the accelerators job {job.name!r} asks for"
        )
    plans: list[Plan] = []
    best_by_pool: dict[str, Plan] = {}
    for target in found:
        pool_plans, reason = plan_pool(shape, job, cluster, target, stack)
        if reason:
            reasons.append(reason)
        for plan in pool_plans:
            finish_plan(plan, shape, cluster)
        pool_plans.sort(key=key)
        if pool_plans:
            best_by_pool[target.pool] = pool_plans[0]
        plans += pool_plans
    if heterogeneous and len(found) > 1:
        plans += heterogeneous_plans(shape, job, cluster, found, best_by_pool, stack, objective)
    if not plans:
        raise PlanInfeasible("no feasible plan: " + "; ".join(reasons))
    if pareto:
        plans = pareto_front(plans)
    plans.sort(key=key)
    return plans[:top]


def pareto_front(plans: list[Plan]) -> list[Plan]:
    """The plans no other plan beats on every count — time to train, cost and GPUs — at least as
    good on all three and better on one (ties on all three keep the first)."""

    def counts(plan: Plan) -> tuple[float, float, float]:
        assert plan.estimate is not None
        time_s = plan.time_to_train_s if plan.time_to_train_s is not None else plan.estimate.step_time_s
        cost = plan.cost if plan.cost is not None else plan.gpus * time_s
        return time_s, cost, float(plan.gpus)

    scored = [(counts(p), p) for p in plans]
    front = []
    for mine, plan in scored:
        beaten = any(
            all(o <= m for o, m in zip(other, mine, strict=True)) and other != mine for other, _ in scored
        )
        if not beaten:
            front.append(plan)
    return front


def summary(estimate: StepEstimate) -> str:
    """One line of what binds a plan."""
    comm = ", ".join(
        f"{k} {v:.2f}s" for k, v in sorted(estimate.exposed_comm_s.items(), key=lambda kv: -kv[1])
    )
    return (
        f"compute {estimate.compute_s:.2f}s, bubble {estimate.bubble_s:.2f}s, exposed comm ({comm}), "
        f"binds: {estimate.binding}"
    )


def best_plan_on_pool(
    job: JobSpec,
    cluster: Cluster,
    pool: str,
    gpus: int | None = None,
    objective: str = "time",
    *,
    stack: str = STACK_AGNOSTIC,
) -> Plan | None:
    """The best single-pool plan for `job` on `gpus` accelerators of `pool` (default: all of
    them), or None when no layout fits — e.g. for a scheduler that needs a job's throughput on
    each accelerator type (`plan.estimate.tokens_per_s`)."""
    shape = job_shape(job)
    accelerator = cluster.accelerator_of(pool)
    if accelerator is None:
        raise SpecError(f"pool {pool!r} has no accelerators")
    count = gpus or cluster.accelerator_count(pool)
    target = Target(pool, accelerator, count, cluster.node_type_of(pool).accelerators_per_node)
    plans, _ = plan_pool(shape, job, cluster, target, stack)
    for plan in plans:
        finish_plan(plan, shape, cluster)
    return min(plans, key=rank_key(objective), default=None)
