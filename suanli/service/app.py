"""The HTTP API (FastAPI; OpenAPI at /docs and /openapi.json), the dashboard and /metrics, all
served by one process together with the control loop."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from suanli.service import metrics
from suanli.service.admission import ServiceConfig, admit, check_cluster, local_cluster
from suanli.service.controller import Controller
from suanli.service.executors import Executor, build_executor
from suanli.service.leader import leadership_for
from suanli.service.planning import plan_job, planner_available, search_plans, with_runtimes
from suanli.service.routes_ops import ops_router
from suanli.service.routes_verbs import submitter, verbs_router
from suanli.service.scheduling import DEFAULT_POLICY, SuanliScheduler
from suanli.service.store import ACTIVE_STATES, ID_MAX, TERMINAL_STATES, Job, Store
from suanli.service.views import job_view, redact
from suanli.spec import Cluster, JobSpec, SpecError, load, validate
from suanli.spec.errors import SuanliError, field_path, one_line
from suanli.spec.io import parse_yaml

if TYPE_CHECKING:
    from suanli.service.replay import TraceReplay, TraceWorkload

WEB_DIR = Path(__file__).parent / "web"
JOB_ID = FastAPIPath(ge=1, le=ID_MAX, description="a job id")
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
    policy: str = DEFAULT_POLICY
    executor_options: dict[str, Any] = field(default_factory=dict)
    cluster_file: Path | None = None
    simulate_speedup: float = 0.0
    trace: str | None = None
    trace_workload: str = ""
    trace_limit: int | None = None
    estimate_error: float = 0.5  # σ of a replayed trace job's declared work, as `suanli sim --estimate-error`
    elastic: bool = False  # a replayed Sia trace's jobs may be resized, as `suanli sim --elastic`
    config: ServiceConfig = field(default_factory=ServiceConfig)
    tick_s: float = 0.1

    @property
    def event_driven(self) -> bool:
        """A simulation on the event clock: the replay drives the control loop (`--exit-when-done`)."""
        return math.isinf(self.simulate_speedup)

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
    cluster = (
        check_cluster(load(Cluster, settings.cluster_file), settings.cluster_file.name)
        if settings.cluster_file
        else local_cluster()
    )
    if settings.simulate_speedup:
        from suanli.service.executors.simulated import EventClock, SimulatedClock, SimulatedExecutor

        # an infinite speedup: the clock jumps from event to event (`suanli up --exit-when-done`)
        clock: Callable[[], float] = (
            EventClock()
            if math.isinf(settings.simulate_speedup)
            else SimulatedClock(settings.simulate_speedup)
        )
        executor: Executor = SimulatedExecutor(clock)
    else:
        options = {**settings.executor_options, **({"cluster": cluster} if settings.cluster_file else {})}
        clock, executor = time.time, build_executor(settings.executor, **options)
    store = Store(settings.store_url)
    return Controller(
        store=store,
        leadership=None if settings.simulate_speedup else leadership_for(store),
        executor=executor,
        scheduler=SuanliScheduler(cluster, settings.policy, settings.config.fair_shares()),
        cluster=cluster,
        runs_dir=settings.data_dir / "runs",
        tick_s=settings.tick_s,
        clock=clock,
    )


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The request body, refused with 413 past `limit_bytes` (declared or streamed) before it is held."""
    declared = request.headers.get("content-length", "")
    too_large = HTTPException(413, f"body: larger than the service's limit of {limit_bytes} bytes")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise too_large
    return bytes(body)


def bearer_check(*tokens: str | None) -> Callable[[Request], None]:
    """A dependency admitting a request that carries one of `tokens` (all open when the first is None)."""

    def check(request: Request) -> None:
        if tokens[0] is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not any(t and hmac.compare_digest(given, f"Bearer {t}".encode()) for t in tokens):
            raise HTTPException(401, "authorization: a bearer token is required")

    return check


def check_queue_token(request: Request, queue: str, config: ServiceConfig) -> None:
    """A submit to a queue that names its own token needs that token (or the service's write token);
    a queue's token submits to that queue only."""
    own = config.queues[queue].token if queue in config.queues else None
    if own is not None:
        try:
            bearer_check(own, config.token)(request)
        except HTTPException:
            raise HTTPException(401, f"authorization: queue {queue!r} needs its submit token") from None
    elif any(q.token for q in config.queues.values()):
        bearer_check(config.token, *config.users)(request)


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
    """The service: the control loop (started and stopped with the app), the API routes in groups,
    one error handler, the dashboard."""
    controller = build_controller(settings)
    config = settings.config
    workload = _workload(controller, settings)
    replay = None
    if workload is not None and not settings.event_driven:
        from suanli.service.replay import TraceReplay

        replay = TraceReplay(controller, workload)
    app = FastAPI(
        title="Suanli",
        version="0.1.0",
        summary="Submit, schedule, run and watch AI and HPC jobs on heterogeneous clusters.",
        lifespan=_lifespan(controller, settings, replay),
    )
    app.state.controller = controller
    app.state.settings = settings
    app.state.workload = workload
    app.add_exception_handler(SuanliError, suanli_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, bad_request)  # type: ignore[arg-type]
    reader = [Depends(bearer_check(config.read_token, config.token, *config.users))]
    app.include_router(jobs_router(controller, config, workload), tags=["jobs"], dependencies=reader)
    app.include_router(cluster_router(controller, config), tags=["cluster"], dependencies=reader)
    app.include_router(planner_router(controller, config), tags=["planner"])
    app.include_router(observability_router(controller, config), tags=["observability"])
    app.include_router(ops_router(controller), tags=["operations"], dependencies=reader)
    writer = [Depends(bearer_check(config.token, *config.users))]
    app.include_router(verbs_router(controller, reader, writer), tags=["jobs"])
    app.add_api_route("/", dashboard, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def dashboard() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html")


async def suanli_error(_: Request, exc: SuanliError) -> JSONResponse:
    """Every user-facing error kind → its one HTTP status, with the one-line reason as `detail`."""
    return JSONResponse(status_code=exc.http_status, content={"detail": one_line(str(exc))})


async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A query or path parameter FastAPI refused is a SpecError too: `query.limit: <why>`."""
    problems = (f"{field_path(tuple(e['loc']))}: {e['msg'][:1].lower()}{e['msg'][1:]}" for e in exc.errors())
    return await suanli_error(request, SpecError("\n".join(problems)))


def _workload(controller: Controller, settings: Settings) -> TraceWorkload | None:
    """The trace a simulated service replays, its true run times given to the simulated executor."""
    if not settings.trace:
        return None
    from suanli.service.executors.simulated import SimulatedExecutor
    from suanli.service.replay import TraceWorkload, attach_truth

    workload = TraceWorkload.load(
        settings.trace,
        settings.trace_workload,
        controller.cluster,
        settings.trace_limit,
        set(settings.config.queues),
        settings.estimate_error,
        elastic=settings.elastic,
    )
    executor, scheduler = controller.executor, controller.scheduler
    if isinstance(executor, SimulatedExecutor) and isinstance(scheduler, SuanliScheduler):
        attach_truth(workload, executor, scheduler)
    return workload


def _lifespan(
    controller: Controller, settings: Settings, replay: TraceReplay | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.event_driven:  # the replay steps the controller from event to event
            controller.recover()
        else:
            controller.start()
        if replay:  # posts each job to this app's own API, as any client would
            from fastapi.testclient import TestClient

            token = settings.config.token
            replay.start(TestClient(app, headers={"authorization": f"Bearer {token}"} if token else {}))
        yield
        if replay:
            replay.stop()
        controller.stop()
        controller.store.close()

    return lifespan


def jobs_router(controller: Controller, config: ServiceConfig, workload: TraceWorkload | None) -> APIRouter:
    """Submit, list, show, cancel a job, and read (or follow) its output. A replayed trace's jobs get
    the run times they declare, any other job the planner's."""
    router = APIRouter()

    require_writer = bearer_check(config.token, *config.users)
    queue_tokens = [q.token for q in config.queues.values() if q.token]
    require_submitter = bearer_check(config.token, *config.users, *queue_tokens)

    def get_job(job_id: int = JOB_ID) -> Job:
        job = controller.store.get(job_id, with_history=True)
        if job is None:
            raise HTTPException(404, f"job {job_id}: no such job")
        return job

    @router.post(
        "/jobs",
        status_code=201,
        dependencies=[Depends(require_submitter)],
        openapi_extra=JOB_BODY,
        responses={
            401: {"description": "no or wrong bearer token"},
            413: {"description": "the body is over the service's size limit"},
            422: {"description": "refused: the reason"},
        },
    )
    async def submit_job(
        request: Request,
        dependency: str | None = Query(
            None, description="Slurm's form: afterok:ID[:ID], afternotok, afterany, singleton"
        ),
        array: str | None = Query(None, description="a job array, as sbatch --array: 0-31%4, 1,3,5, 0-15:4"),
    ) -> dict[str, Any]:
        """Submit a JobSpec as YAML (any content type) or JSON (`application/json`)."""
        body = await read_body(request, config.max_body_bytes)
        spec = parse_job(body, request.headers.get("content-type", ""))
        check_queue_token(request, spec.queue, config)
        candidates = admit(spec, controller.cluster, config)
        if spec.run is None and not planner_available("runtime"):
            raise SpecError("run: this installation has no training runtime; give a `run` command")

        def plan_and_store() -> dict[str, Any]:  # the planner and the durable write, off the event loop
            plan = plan_job(spec, controller.cluster)
            declared = workload.run_times(spec, candidates) if workload else None
            planned = with_runtimes(spec, controller.cluster, candidates) if declared is None else declared
            user = submitter(request, config)
            if array:
                tasks = controller.submit_array(spec, planned, plan, array, dependency, user)
                return job_view(controller, tasks[0]) | {"array_tasks": [task.id for task in tasks]}
            return job_view(controller, controller.submit(spec, planned, plan, dependency, user))

        return await asyncio.to_thread(plan_and_store)

    @router.get("/jobs")
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
            job_view(controller, j)
            for j in controller.store.list_jobs(states=states, queue=queue, kind=kind, limit=limit)
        ]

    @router.get("/jobs/{job_id}")
    def show_job(job_id: int = JOB_ID) -> dict[str, Any]:
        """One job: spec, plan, placement, state history, metrics and checkpoints."""
        return job_view(controller, get_job(job_id), with_metrics=True)

    @router.post("/jobs/{job_id}/cancel", dependencies=[Depends(require_writer)])
    def cancel_job(job_id: int = JOB_ID) -> dict[str, Any]:
        get_job(job_id)
        job = controller.cancel(job_id)
        return job_view(controller, job) if job else {}

    @router.get("/jobs/{job_id}/logs")
    async def job_logs(job_id: int = JOB_ID, follow: bool = False) -> Response:
        """The run's output; `follow=true` streams it until the job ends."""
        job = get_job(job_id)
        if not follow:
            started = job.attempt > 0
            return PlainTextResponse(
                redact(controller.executor.logs(controller.run_of(job)), job) if started else ""
            )
        return StreamingResponse(_follow_logs(controller, job_id), media_type="text/plain")

    return router


async def _follow_logs(controller: Controller, job_id: int) -> AsyncIterator[str]:
    """A job's output as it grows, until the job ends."""
    sent = 0
    while True:
        current = controller.store.get(job_id)
        if current is None:  # removed while being followed
            return
        text = ""
        if current.attempt > 0:  # a queued job has no output until it starts
            text = redact(
                await asyncio.to_thread(controller.executor.logs, controller.run_of(current)), current
            )
        if len(text) > sent:
            yield text[sent:]
            sent = len(text)
        if current.state in TERMINAL_STATES:
            return
        await asyncio.sleep(0.3)


def cluster_router(controller: Controller, config: ServiceConfig) -> APIRouter:
    """Pools and nodes, utilisation history, queues, recent state changes."""
    router = APIRouter()

    @router.get("/nodes")
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

    @router.get("/utilization")
    def utilization(window_s: float = Query(600, gt=0)) -> dict[str, Any]:
        """Allocated share per pool over the last `window_s` seconds: {pool: [[time, ratio], …]}."""
        return controller.store.pool_history(controller.clock() - window_s)

    @router.get("/queues")
    def queues() -> list[dict[str, Any]]:
        active = controller.store.list_jobs(states=set(ACTIVE_STATES))
        return [
            {
                "name": name,
                **queue.model_dump(exclude={"token"}),  # a queue's token never leaves the server
                "submit_token_required": queue.token is not None,
                "pending": sum(1 for j in active if j.queue == name and j.state == "pending"),
                "running": sum(1 for j in active if j.queue == name and j.state in {"starting", "running"}),
            }
            for name, queue in sorted(config.queues.items())
        ]

    @router.get("/events")
    def events(limit: int = Query(50, ge=1, le=1000), failures_only: bool = False) -> list[dict[str, Any]]:
        """Recent state changes; `failures_only`: failures, cancellations and re-queues (recoveries)."""
        to_states = {"failed", "cancelled", "pending"} if failures_only else None
        changes = controller.store.recent_transitions(limit, to_states)
        return [c for c in changes if not failures_only or c["from"] is not None]

    return router


def planner_router(controller: Controller, config: ServiceConfig) -> APIRouter:
    """The planner costs CPU: it takes the write token when writes need one."""
    router = APIRouter()

    @router.post("/plan", openapi_extra=JOB_BODY, dependencies=[Depends(bearer_check(config.token))])
    async def plan(request: Request, objective: str = "time", top: int = Query(3, ge=1, le=50)) -> list[dict]:
        """Plans for a JobSpec (YAML or JSON body) on this service's cluster, best first."""
        spec = parse_job(
            await read_body(request, config.max_body_bytes), request.headers.get("content-type", "")
        )
        if not planner_available("plan"):
            raise HTTPException(501, "planner: suanli.plan is not installed in this build")
        return await asyncio.to_thread(search_plans, spec, controller.cluster, objective, top)

    return router


def observability_router(controller: Controller, config: ServiceConfig) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        dependencies=[Depends(bearer_check(config.read_token, config.token))],
    )
    def prometheus() -> Response:
        return Response(
            metrics.render(controller, list(config.queues)), media_type="text/plain; version=0.0.4"
        )

    @router.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "ok": True,
            "executor": controller.executor.name,
            "cluster": controller.cluster.name,
            "policy": controller.scheduler.policy,
            "leader": controller.leading,
        }

    return router
