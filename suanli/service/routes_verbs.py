"""Slurm's job verbs over HTTP: `scontrol hold / release / requeue` (writers) and `sacct`'s history
(readers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.params import Depends

from suanli.service.admission import ServiceConfig
from suanli.service.controller import Controller
from suanli.service.routes_ops import parse_states
from suanli.service.store import ANONYMOUS, ID_MAX
from suanli.service.views import job_view

JOB_ID = Path(ge=1, le=ID_MAX, description="a job id")
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such job"}}
# sacct's state names and codes, as `sacct --state` takes them
SLURM_STATES = {
    "completed": "succeeded",
    "cd": "succeeded",
    "f": "failed",
    "ca": "cancelled",
    "pd": "pending",
    "r": "running",
    "cf": "starting",
    "configuring": "starting",
}


def submitter(request: Request, config: ServiceConfig) -> str:
    """The user whose token the request carries (the service config's `users`), else anonymous."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return config.users.get(token, ANONYMOUS) if scheme.lower() == "bearer" else ANONYMOUS


def verbs_router(controller: Controller, reader: list[Depends], writer: list[Depends]) -> APIRouter:
    """Hold a pending job, release it, requeue a running one (each answers the job as it is now);
    the jobs' history, filtered as `sacct` filters it."""
    router = APIRouter()

    def known(job_id: int) -> int:
        if controller.store.get(job_id) is None:
            raise HTTPException(404, f"job {job_id}: no such job")
        return job_id

    @router.post("/jobs/{job_id}/hold", dependencies=writer, responses=NOT_FOUND)
    def hold(job_id: int = JOB_ID) -> dict[str, Any]:
        """Keep a pending job from starting (its pending reason reads `Held`) until it is released."""
        return job_view(controller, controller.hold(known(job_id)))

    @router.post("/jobs/{job_id}/release", dependencies=writer, responses=NOT_FOUND)
    def release(job_id: int = JOB_ID) -> dict[str, Any]:
        """Let a held job be scheduled again, in its place by submission time."""
        return job_view(controller, controller.release(known(job_id)))

    @router.post("/jobs/{job_id}/requeue", dependencies=writer, responses=NOT_FOUND)
    def requeue(job_id: int = JOB_ID) -> dict[str, Any]:
        """Stop a running job's run and queue it again as its next attempt."""
        return job_view(controller, controller.requeue(known(job_id)))

    @router.get("/history", dependencies=reader)
    def history(
        state: str | None = Query(
            None, description="comma-separated states (ours or sacct's: CD, F, CA, PD, R)"
        ),
        user: str | None = None,
        since: float | None = Query(None, description="epoch seconds: jobs not finished before this"),
        until: float | None = Query(None, description="epoch seconds: jobs submitted by this"),
        offset: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=10000),
    ) -> dict[str, Any]:
        """Jobs alive at some moment of [since, until], oldest first, a page at a time (`sacct`)."""
        states = (
            parse_states(",".join(SLURM_STATES.get(s.lower(), s.lower()) for s in state.split(",")))
            if state
            else None
        )
        total, page = controller.store.history_page(states, user, since, until, offset, limit)
        jobs = [job_view(controller, job) for job in page]
        return {"now": controller.clock(), "total": total, "offset": offset, "jobs": jobs}

    return router
