"""The service's view of the planner (`suanli.plan.search`) and the training runtime: used when
they are installed, skipped (the scheduler alone places the job) when they are not."""

from __future__ import annotations

import importlib.util
from typing import Any

from suanli.spec import Cluster, JobSpec

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


def plan_job(spec: JobSpec, cluster: Cluster) -> dict[str, Any] | None:
    """The best plan for a model-training job on accelerators, or None when there is nothing to
    plan (a command, a CPU job) or no planner. A job no plan can fit is PlanInfeasible."""
    if spec.kind != "training" or spec.model is None or not spec.resources.accelerators:
        return None
    if not planner_available("plan"):
        return None
    return search_plans(spec, cluster, "time", 1)[0]  # search raises PlanInfeasible rather than find none
