"""The operator's view (`/ops/*`): what the dashboard draws — jobs a page at a time over the whole
store with filters, the cluster over time, every node and GPU, and a job's figures over its steps."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from suanli.service.controller import Controller
from suanli.service.occupancy import gpu_grid, pending_reasons
from suanli.service.scheduling import SuanliScheduler
from suanli.service.store import ACTIVE_STATES, TERMINAL_STATES, Job
from suanli.service.views import job_view

SERIES_POINTS = 240  # a chart is a few hundred pixels wide: more points than this draw nothing more
STEP_FIGURES = ("loss", "tokens_per_s", "mfu", "goodput", "step_time_s")


def parse_states(state: str | None) -> set[str] | None:
    """`running,pending`, or the groups `active` / `finished`."""
    if not state:
        return None
    states: set[str] = set()
    for item in state.split(","):
        states |= {"active": set(ACTIVE_STATES), "finished": set(TERMINAL_STATES)}.get(item, {item})
    return states


def thin(points: list[list[float]], most: int = SERIES_POINTS) -> list[list[float]]:
    """Every k-th point so at most `most` remain, the last one always kept."""
    if len(points) <= most:
        return points
    every = -(-len(points) // most)
    return [*points[::every][: most - 1], points[-1]]


def job_steps(records: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """{figure: [[step, value], …]} from a run's metric records that carry a step."""
    series: dict[str, list[list[float]]] = {name: [] for name in STEP_FIGURES}
    for record in records:
        step = record.get("step")
        if not isinstance(step, int | float) or isinstance(step, bool):
            continue
        for name in STEP_FIGURES:
            value = record.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                series[name].append([float(step), float(value)])
    return {name: thin(points) for name, points in series.items() if points}


def ops_router(controller: Controller) -> APIRouter:
    """The operator's views: the service's clock, pages over the whole store, series, the GPU grid."""
    router = APIRouter(prefix="/ops")
    store = controller.store

    @router.get("/overview")
    def overview() -> dict[str, Any]:
        """The service's clock (simulated time under --simulate), jobs by state and by queue."""
        return {
            "now": controller.clock(),
            "cluster": controller.cluster.name,
            "executor": controller.executor.name,
            "policy": controller.scheduler.policy,
            "states": store.count_by_state(),
            "queues": store.count_by_queue_state(),
        }

    @router.get("/jobs")
    def jobs(
        state: str | None = Query(None, description="comma-separated states, or active / finished"),
        queue: str | None = None,
        kind: str | None = None,
        pool: str | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=1000),
        order: str = Query("newest", pattern="^(newest|oldest)$"),
    ) -> dict[str, Any]:
        """A page of jobs over the whole store, newest (or oldest) first, with the total that match."""
        total, page = store.page_jobs(
            parse_states(state), queue, kind, pool, offset, limit, newest_first=order == "newest"
        )
        restarts = store.restarts([j.id for j in page])
        reasons: dict[int, str] = {}
        if isinstance(controller.scheduler, SuanliScheduler):
            with controller.lock:
                reasons = pending_reasons(controller.scheduler, [j for j in page if j.state == "pending"])
        extra = {j.id: {"restarts": restarts.get(j.id, 0), "pending_reason": reasons.get(j.id)} for j in page}
        views = [{**job_view(controller, j), **extra[j.id]} for j in page]
        return {"now": controller.clock(), "total": total, "offset": offset, "limit": limit, "jobs": views}

    @router.get("/series")
    def series(window_s: float = Query(3600, gt=0)) -> dict[str, Any]:
        """The cluster over the last `window_s` seconds: allocated share per pool, jobs pending, and
        failures (to failed) and recoveries (running back to pending) as events."""
        now = controller.clock()
        since = now - window_s
        depth = store.pending_depth(since)
        current = float(store.count_by_state().get("pending", 0))
        events = store.transitions_between(since, {"failed", "pending"})
        return {
            "now": now,
            "since": since,
            "utilization": {pool: thin(points) for pool, points in store.pool_history(since).items()},
            "pending": thin([*(depth or [[since, current]]), [now, current]]),
            "failures": [e for e in events if e["to"] == "failed"],
            "recoveries": [e for e in events if e["to"] == "pending"],
        }

    @router.get("/gpus")
    def gpus() -> dict[str, Any]:
        """Every node and accelerator, coloured by state, with the jobs on each."""
        if not isinstance(controller.scheduler, SuanliScheduler):
            raise HTTPException(501, "gpus: this scheduler keeps no per-accelerator state")
        with controller.lock:
            nodes = gpu_grid(controller.scheduler)
        return {"now": controller.clock(), "nodes": nodes}

    @router.get("/jobs/{job_id}/series")
    def job_series(job_id: int) -> dict[str, Any]:
        """A job's figures over its steps, the plan's predicted step time beside the measured one,
        its checkpoints and restarts."""
        job: Job | None = store.get(job_id, with_history=True)
        if job is None:
            raise HTTPException(404, f"job {job_id}: no such job")
        records = store.metrics(job_id, limit=20_000)
        estimate = (job.plan or {}).get("estimate") or {}
        return {
            "id": job_id,
            "steps": job_steps(records),
            "predicted_step_time_s": estimate.get("step_time_s"),
            "predicted_mfu": estimate.get("mfu"),
            "checkpoints": store.checkpoints(job_id),
            "restarts": [h for h in job.history if h["from"] == "running" and h["to"] == "pending"],
        }

    return router
