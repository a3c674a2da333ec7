"""The service's view of the planner (`suanli.plan.search`) and the training runtime: used when
they are installed, skipped (the scheduler alone places the job) when they are not."""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

from suanli.service.executors.base import Placement
from suanli.spec import Cluster, JobSpec
from suanli.spec.errors import PlanInfeasible

_MODULES = {"plan": "suanli.plan.search", "runtime": "suanli.runtime.train"}


def planner_available(which: str) -> bool:
    try:
        return importlib.util.find_spec(_MODULES[which]) is not None
    except ModuleNotFoundError:
        return False


def search_plans(
    spec: JobSpec, cluster: Cluster, objective: str = "time", top: int = 3, heterogeneous: bool = True
) -> list[dict[str, Any]]:
    from suanli.plan.search import search

    plans = search(spec, cluster, objective=objective, top=top, heterogeneous=heterogeneous)
    return [plan.model_dump(mode="json") for plan in plans]


def plannable(spec: JobSpec) -> bool:
    """Whether the planner has anything to plan: a model trained on accelerators."""
    return spec.kind == "training" and spec.model is not None and bool(spec.resources.accelerators)


def plan_job(spec: JobSpec, cluster: Cluster) -> dict[str, Any] | None:
    """The best single-pool plan for a model-training job on accelerators, or None when there is
    nothing to plan (a command, a CPU job) or no planner. The scheduler places a gang on one pool, so
    a plan across pools is never launched: a job only such a plan fits is PlanInfeasible."""
    if not plannable(spec) or not planner_available("plan"):
        return None
    try:
        return search_plans(spec, cluster, "time", 1, heterogeneous=False)[0]
    except PlanInfeasible as exc:
        raise PlanInfeasible(
            f"plan: no plan on one pool fits (the service runs a gang on one pool): {exc}"
        ) from None


def with_runtimes(spec: JobSpec, cluster: Cluster, candidates: list[Placement]) -> list[Placement]:
    """The candidates with the planner's best plan on each (that many accelerators of that pool: what
    a run placed there trains with) and its predicted time to train (declared work ÷ its throughput):
    the per-type run times the simulator's policies read (`suanli.sched.estimate`). Unchanged when
    nothing is planned; a candidate no layout fits keeps None (the scheduler falls back to the walltime)."""
    if not plannable(spec) or not planner_available("plan"):
        return candidates
    from suanli.plan.search import best_plan_on_pool

    planned = []
    for candidate in candidates:
        plan = best_plan_on_pool(spec, cluster, candidate.pool, candidate.accelerators)
        planned.append(
            dataclasses.replace(
                candidate,
                runtime_s=plan.time_to_train_s if plan else None,
                plan=plan.model_dump(mode="json") if plan else None,
            )
        )
    return planned


def plan_at_width(spec: JobSpec, cluster: Cluster, placement: Placement) -> dict[str, Any] | None:
    """The planner's best plan on exactly `placement`'s accelerators of its pool (where a resized
    elastic job trains next), or None when nothing is planned or no layout fits that many."""
    if not plannable(spec) or not planner_available("plan") or not placement.accelerator:
        return None
    from suanli.plan.search import best_plan_on_pool

    plan = best_plan_on_pool(spec, cluster, placement.pool, placement.accelerators)
    return plan.model_dump(mode="json") if plan else None
