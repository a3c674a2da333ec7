"""The service's view of the planner (`suanli.plan.search`) and the training runtime: used when
they are installed, skipped (the scheduler alone places the job) when they are not."""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from suanli.spec import Cluster, JobSpec

PLANS_PER_JOB = 10_000  # every layout of every pool: the best per type is among them
_MODULES = {"plan": "suanli.plan.search", "runtime": "suanli.runtime.train"}


def planner_available(which: str) -> bool:
    try:
        return importlib.util.find_spec(_MODULES[which]) is not None
    except ModuleNotFoundError:
        return False


def search_plans(
    spec: JobSpec, cluster: Cluster, objective: str = "time", top: int = 3
) -> list[dict[str, Any]]:
    from suanli.plan.search import search

    return [plan.model_dump(mode="json") for plan in search(spec, cluster, objective=objective, top=top)]


def plan_job(spec: JobSpec, cluster: Cluster) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """The best plan for a model-training job on accelerators, and the predicted time to train on
    each accelerator type (declared work ÷ the planner's throughput on that type's best single-pool
    plan: the per-type run times the simulator's policies read, `suanli.sched.estimate`). (None, {})
    when there is nothing to plan (a command, a CPU job) or no planner; PlanInfeasible when no plan
    can fit."""
    if spec.kind != "training" or spec.model is None or not spec.resources.accelerators:
        return None, {}
    if not planner_available("plan"):
        return None, {}
    from suanli.plan.search import search

    plans = search(spec, cluster, "time", top=PLANS_PER_JOB)  # raises PlanInfeasible rather than find none
    runtime_s: dict[str, float] = {}
    for plan in plans:
        if plan.pool is not None and plan.time_to_train_s:
            runtime_s[plan.accelerator] = min(runtime_s.get(plan.accelerator, math.inf), plan.time_to_train_s)
    return plans[0].model_dump(mode="json"), runtime_s
