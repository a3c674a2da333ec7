"""Slurm's job verbs over HTTP (`scontrol hold / release / requeue`): a writer's routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Path

from suanli.service.controller import Controller
from suanli.service.store import ID_MAX
from suanli.service.views import job_view

JOB_ID = Path(ge=1, le=ID_MAX, description="a job id")


def verbs_router(controller: Controller) -> APIRouter:
    """Hold a pending job, release it, requeue a running one; each answers the job as it is now."""
    router = APIRouter(prefix="/jobs/{job_id}")

    def known(job_id: int) -> int:
        if controller.store.get(job_id) is None:
            raise HTTPException(404, f"job {job_id}: no such job")
        return job_id

    @router.post(
        "/hold", responses={404: {"description": "no such job"}, 422: {"description": "not pending"}}
    )
    def hold(job_id: int = JOB_ID) -> dict[str, Any]:
        """Keep a pending job from starting (its pending reason reads `Held`) until it is released."""
        return job_view(controller, controller.hold(known(job_id)))

    @router.post(
        "/release", responses={404: {"description": "no such job"}, 422: {"description": "not pending"}}
    )
    def release(job_id: int = JOB_ID) -> dict[str, Any]:
        """Let a held job be scheduled again, in its place by submission time."""
        return job_view(controller, controller.release(known(job_id)))

    @router.post(
        "/requeue", responses={404: {"description": "no such job"}, 422: {"description": "not running"}}
    )
    def requeue(job_id: int = JOB_ID) -> dict[str, Any]:
        """Stop a running job's run and queue it again as its next attempt."""
        return job_view(controller, controller.requeue(known(job_id)))

    return router
