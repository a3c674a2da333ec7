"""The HTTP API (FastAPI; OpenAPI at /docs and /openapi.json), the dashboard and /metrics, all
served by one process together with the control loop."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from suanli.service import metrics
from suanli.service.admission import ServiceConfig, admit, local_cluster
from suanli.service.controller import Controller
from suanli.service.executors import build_executor
from suanli.service.planning import plan_job, planner_available, search_plans
from suanli.service.scheduling import SuanliScheduler
from suanli.service.store import ACTIVE_STATES, TERMINAL_STATES, Job, Store
from suanli.spec import Cluster, JobSpec, SpecError, load, validate
from suanli.spec.io import parse_yaml

WEB_DIR = Path(__file__).parent / "web"
JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string", "description": "a JobSpec as YAML"}},
            "application/json": {"schema": {"type": "object", "description": "a JobSpec as JSON"}},
        },
    }
}


@dataclass
class Settings:
    data_dir: Path
    db_url: str | None = None
    executor: str = "local"
    policy: str = "fifo"
    executor_options: dict[str, Any] = field(default_factory=dict)
    cluster_file: Path | None = None
    simulate_speedup: float = 0.0
    trace: str | None = None
    trace_workload: str = ""
    trace_limit: int | None = None
    config: ServiceConfig = field(default_factory=ServiceConfig)
    tick_s: float = 0.1

    @property
    def store_url(self) -> str:
        """A simulation gets its own SQLite file, never the store of real jobs."""
        if self.db_url:
            return self.db_url
        if self.simulate_speedup and self.cluster_file:
            return str(self.data_dir / f"simulate-{self.cluster_file.stem}.db")
        return str(self.data_dir / "suanli.db")


def build_controller(settings: Settings) -> Controller:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cluster = load(Cluster, settings.cluster_file) if settings.cluster_file else local_cluster()
    if settings.simulate_speedup:
        from suanli.service.executors.simulated import SimulatedClock, SimulatedExecutor

        clock = SimulatedClock(settings.simulate_speedup)
        executor = SimulatedExecutor(clock)
    else:
        clock, executor = time.time, build_executor(settings.executor, **settings.executor_options)
    return Controller(
        store=Store(settings.store_url),
        executor=executor,
        scheduler=SuanliScheduler(cluster, settings.policy),
        cluster=cluster,
        runs_dir=settings.data_dir / "runs",
        tick_s=settings.tick_s,
        clock=clock,
    )


def one_line(message: str) -> str:
    return "; ".join(line for line in message.splitlines() if line.strip())


def parse_job(body: bytes, content_type: str) -> JobSpec:
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"job: invalid JSON: {exc.msg} at line {exc.lineno}") from None
    else:
        data = parse_yaml(text, source="job")
    return validate(JobSpec, data, source="job")


def create_app(settings: Settings) -> FastAPI:
    controller = build_controller(settings)
    config = settings.config

    replay = None
    if settings.trace:
        from suanli.service.replay import TraceReplay

        replay = TraceReplay.load(
            controller, config, settings.trace, settings.trace_workload, settings.trace_limit
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        controller.start()
        if replay:
            replay.start()
        yield
        if replay:
            replay.stop()
        controller.stop()
        controller.store.close()

    app = FastAPI(
        title="Suanli",
        version="0.1.0",
        summary="Submit, schedule, run and watch AI and HPC jobs on heterogeneous clusters.",
        lifespan=lifespan,
    )
    app.state.controller = controller
    app.state.settings = settings

    @app.exception_handler(SpecError)
    async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": one_line(str(exc))})

    def require_writer(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if config.token and not hmac.compare_digest(given.encode(), f"Bearer {config.token}".encode()):
            raise HTTPException(401, "authorization: a bearer token is required for writes")

    def get_job(job_id: int) -> Job:
        job = controller.store.get(job_id, with_history=True)
        if job is None:
            raise HTTPException(404, f"job {job_id}: no such job")
        return job

    def job_view(job: Job, with_metrics: bool = False) -> dict[str, Any]:
        view = job.to_dict()
        view["spec"] = {k: v for k, v in job.spec.items() if not k.startswith("_")}
        records = (
            controller.store.metrics(job.id, limit=2000) if with_metrics or job.state == "running" else []
        )
        view["figures"] = metrics.job_figures(records)
        if with_metrics:
            view["metrics"] = records[-200:]
            view["checkpoints"] = controller.store.checkpoints(job.id)
        return view

    # jobs --------------------------------------------------------------------------------------------

    @app.post(
        "/jobs",
        status_code=201,
        dependencies=[Depends(require_writer)],
        tags=["jobs"],
        openapi_extra=JOB_BODY,
        responses={
            401: {"description": "no or wrong bearer token"},
            422: {"description": "refused: the reason"},
        },
    )
    async def submit_job(request: Request) -> dict[str, Any]:
        """Submit a JobSpec as YAML (any content type) or JSON (`application/json`)."""
        spec = parse_job(await request.body(), request.headers.get("content-type", ""))
        candidates = admit(spec, controller.cluster, config)
        if spec.run is None and not planner_available("runtime"):
            raise SpecError("run: this installation has no training runtime; give a `run` command")

        def plan_and_store() -> dict[str, Any]:  # the planner and the durable write, off the event loop
            job = controller.submit(spec, candidates, plan_job(spec, controller.cluster))
            return job_view(job)

        return await asyncio.to_thread(plan_and_store)

    @app.get("/jobs", tags=["jobs"])
    def list_jobs(
        state: str | None = Query(None, description="comma-separated states, or active / finished"),
        queue: str | None = None,
        kind: str | None = None,
        limit: int = Query(200, ge=1, le=10000),
    ) -> list[dict[str, Any]]:
        states: set[str] | None = None
        if state:
            states = set()
            for item in state.split(","):
                states |= {"active": set(ACTIVE_STATES), "finished": set(TERMINAL_STATES)}.get(item, {item})
        return [
            job_view(j)
            for j in controller.store.list_jobs(states=states, queue=queue, kind=kind, limit=limit)
        ]

    @app.get("/jobs/{job_id}", tags=["jobs"])
    def show_job(job_id: int) -> dict[str, Any]:
        """One job: spec, plan, placement, state history, metrics and checkpoints."""
        return job_view(get_job(job_id), with_metrics=True)

    @app.post("/jobs/{job_id}/cancel", dependencies=[Depends(require_writer)], tags=["jobs"])
    def cancel_job(job_id: int) -> dict[str, Any]:
        get_job(job_id)
        job = controller.cancel(job_id)
        return job_view(job) if job else {}

    @app.get("/jobs/{job_id}/logs", tags=["jobs"])
    async def job_logs(job_id: int, follow: bool = False) -> Response:
        """The run's output; `follow=true` streams it until the job ends."""
        job = get_job(job_id)
        if not follow:
            started = job.attempt > 0
            return PlainTextResponse(controller.executor.logs(controller.run_of(job)) if started else "")

        async def stream() -> AsyncIterator[str]:
            sent = 0
            while True:
                current = controller.store.get(job_id)
                started = current.attempt > 0  # a queued job has no output yet: wait for it to start
                text = (
                    await asyncio.to_thread(controller.executor.logs, controller.run_of(current))
                    if started
                    else ""
                )
                if len(text) > sent:
                    yield text[sent:]
                    sent = len(text)
                if current.state in TERMINAL_STATES:
                    return
                await asyncio.sleep(0.3)

        return StreamingResponse(stream(), media_type="text/plain")

    # cluster ---------------------------------------------------------------------------------------

    @app.get("/nodes", tags=["cluster"])
    def nodes() -> dict[str, Any]:
        """Pools and nodes with what is allocated on each."""
        with controller.lock:
            snapshot = controller.scheduler.snapshot()
        pools = []
        for pool in controller.cluster.pools:
            node_type = controller.cluster.node_type_of(pool.name)
            pools.append(
                {
                    "name": pool.name,
                    "node_type": node_type.slug,
                    "cpus_per_node": node_type.cpu_cores,
                    "accelerators_per_node": node_type.accelerators_per_node,
                    **snapshot[pool.name],
                }
            )
        return {
            "cluster": controller.cluster.name,
            "executor": controller.executor.name,
            "policy": controller.scheduler.policy,
            "pools": pools,
        }

    @app.get("/utilization", tags=["cluster"])
    def utilization(window_s: float = Query(600, gt=0)) -> dict[str, Any]:
        """Allocated share per pool over the last `window_s` seconds: {pool: [[time, ratio], …]}."""
        return controller.store.pool_history(controller.clock() - window_s)

    @app.get("/queues", tags=["cluster"])
    def queues() -> list[dict[str, Any]]:
        active = controller.store.list_jobs(states=set(ACTIVE_STATES))
        return [
            {
                "name": name,
                **queue.model_dump(),
                "pending": sum(1 for j in active if j.queue == name and j.state == "pending"),
                "running": sum(1 for j in active if j.queue == name and j.state in {"starting", "running"}),
            }
            for name, queue in sorted(config.queues.items())
        ]

    @app.get("/events", tags=["cluster"])
    def events(limit: int = Query(50, ge=1, le=1000), failures_only: bool = False) -> list[dict[str, Any]]:
        """Recent state changes; `failures_only`: failures, cancellations and re-queues (recoveries)."""
        to_states = {"failed", "cancelled", "pending"} if failures_only else None
        changes = controller.store.recent_transitions(limit, to_states)
        return [c for c in changes if not failures_only or c["from"] is not None]

    # planner -----------------------------------------------------------------------------------------

    @app.post("/plan", tags=["planner"], openapi_extra=JOB_BODY)
    async def plan(request: Request, objective: str = "time", top: int = Query(3, ge=1, le=50)) -> list[dict]:
        """Plans for a JobSpec (YAML or JSON body) on this service's cluster, best first."""
        spec = parse_job(await request.body(), request.headers.get("content-type", ""))
        if not planner_available("plan"):
            raise HTTPException(501, "planner: suanli.plan is not installed in this build")
        return await asyncio.to_thread(search_plans, spec, controller.cluster, objective, top)

    # observability -----------------------------------------------------------------------------------

    @app.get("/metrics", tags=["observability"], response_class=PlainTextResponse)
    def prometheus() -> Response:
        return Response(
            metrics.render(controller, list(config.queues)), media_type="text/plain; version=0.0.4"
        )

    @app.get("/healthz", tags=["observability"])
    def healthz() -> dict[str, Any]:
        return {
            "ok": True,
            "executor": controller.executor.name,
            "cluster": controller.cluster.name,
            "policy": controller.scheduler.policy,
        }

    # dashboard ------------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app
