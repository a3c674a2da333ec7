"""`suanli up` (the control plane) and the client verbs in Slurm/SkyPilot vocabulary:
`submit`, `queue`, `status`, `logs`, `cancel`, `nodes`."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from suanli.cli import app
from suanli.cli.output import console, print_json, table
from suanli.service.scheduling import DEFAULT_POLICY
from suanli.spec.errors import ExecutorError, PlanInfeasible, SpecError, StoreError, SuanliError

DEFAULT_PORT = 8470
SERVER_OPTION = typer.Option(
    None, "--server", envvar="SUANLI_SERVER", help="service URL (default http://127.0.0.1:8470)"
)
TOKEN_OPTION = typer.Option(
    None, "--token", envvar="SUANLI_TOKEN", help="bearer token (for writes, and reads when the service asks)"
)
FINISHED = {"succeeded", "failed", "cancelled"}


# the server ------------------------------------------------------------------------------------------


@app.command("up")
def up(
    db: str = typer.Option(
        None, help="database URL: a SQLite path (default DATA_DIR/suanli.db) or postgresql://…"
    ),
    executor: str = typer.Option("local", help="local | slurm | ray"),
    cluster: Path = typer.Option(
        None,
        help="CLUSTER.yaml: pools as Slurm partitions and GRES types or Ray resources (default: this host)",
    ),
    policy: str = typer.Option(
        DEFAULT_POLICY, help="scheduling policy of suanli.sched (suanli, fifo, backfill, tiresias, …)"
    ),
    simulate: Path = typer.Option(None, help="drive this CLUSTER.yaml in accelerated simulated time"),
    speedup: float = typer.Option(
        60.0, help="simulated seconds per wall-clock second (with --simulate; inf: jump from event to event)"
    ),
    trace: str = typer.Option(None, help="with --simulate: replay this trace (philly, sia-saturn, swf, …)"),
    workload: str = typer.Option("", help="the trace's workload number or file (see `suanli sim`)"),
    limit: int = typer.Option(None, help="replay only the first N jobs of the trace"),
    estimate_error: float = typer.Option(
        0.5, help="with --trace: σ of the lognormal error of each job's declared work (as `suanli sim`)"
    ),
    elastic: bool = typer.Option(
        False,
        help="with --trace (Sia): jobs may be resized, 1 to 64 GPUs (as `suanli sim --elastic`)",
    ),
    exit_when_done: bool = typer.Option(
        False,
        "--exit-when-done",
        help="with --trace: replay it to the end at once, print `suanli sim`'s metrics",
    ),
    as_json: bool = typer.Option(False, "--json", help="with --exit-when-done: the metrics as JSON"),
    port: int = typer.Option(DEFAULT_PORT, help="HTTP port (0 = any free port)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    data_dir: Path = typer.Option(Path("~/.suanli"), help="store, run folders and logs"),
    config: Path = typer.Option(None, help="service YAML: queues with quotas, token"),
    token: str = typer.Option(None, envvar="SUANLI_TOKEN", help="require this bearer token for writes"),
    read_token: str = typer.Option(
        None, envvar="SUANLI_READ_TOKEN", help="require this bearer token (or the write token) for reads"
    ),
    slurm_partition: str = typer.Option(None, help="Slurm partition (with --executor slurm)"),
    ray_address: str = typer.Option(
        "http://127.0.0.1:8265", help="Ray dashboard address (with --executor ray)"
    ),
) -> None:
    """Start the control plane: API, dashboard, /metrics and the scheduling loop.

    Example: suanli up --executor local --port 8470
    """
    import uvicorn

    from suanli.service.admission import ServiceConfig
    from suanli.service.app import Settings, create_app
    from suanli.spec import load

    if simulate and cluster:
        raise SpecError("--cluster: --simulate CLUSTER.yaml already names the cluster")
    if trace and not simulate:
        raise SpecError("--trace: replaying a trace needs --simulate CLUSTER.yaml")
    if elastic and not trace:
        raise SpecError(
            "--elastic: resizable jobs come from a Sia trace (--simulate CLUSTER.yaml --trace sia-…)"
        )
    if exit_when_done and not trace:
        raise SpecError("--exit-when-done: needs a trace to replay (--simulate CLUSTER.yaml --trace NAME)")
    service_config = load(ServiceConfig, config) if config else ServiceConfig()
    if token:
        service_config.token = token
    if read_token:
        service_config.read_token = read_token
    options: dict[str, Any] = {}
    if executor == "slurm" and slurm_partition:
        options["partition"] = slurm_partition
    if executor == "ray":
        options["address"] = ray_address
    settings = Settings(
        data_dir=data_dir.expanduser(),
        db_url=db,
        executor=executor,
        policy=policy,
        executor_options=options,
        cluster_file=simulate or cluster,
        simulate_speedup=speedup if simulate else 0.0,
        trace=trace,
        trace_workload=workload,
        trace_limit=limit,
        estimate_error=estimate_error,
        elastic=elastic,
        config=service_config,
    )
    if exit_when_done:
        _replay_to_end(settings, policy, as_json)
        return
    service = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise SpecError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    url = f"http://{host}:{sock.getsockname()[1]}"
    (settings.data_dir / "server.json").write_text(json.dumps({"url": url, "pid": os.getpid()}))
    mode = (
        f"simulating {simulate} at {speedup:g}×"
        if simulate
        else f"executor {executor}, cluster {cluster or 'this machine'}"
    )
    typer.echo(
        f"Suanli is up: dashboard {url}/  API {url}/docs  ({mode}, store {settings.store_url})", err=False
    )
    server = uvicorn.Server(uvicorn.Config(service, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])


def _replay_to_end(settings: Any, policy: str, as_json: bool) -> None:
    """The trace through the live service (API over loopback HTTP, a fresh store, controller,
    simulated executor), the clock jumping from event to event; `suanli sim`'s metrics on its inputs."""
    import math
    import tempfile

    from suanli.service.app import create_app
    from suanli.service.replay import ReplayToEnd
    from suanli.service.serving import serve_in_thread

    with tempfile.TemporaryDirectory(prefix="suanli-replay-") as scratch:
        settings.simulate_speedup = math.inf
        if not settings.db_url:
            settings.db_url = str(Path(scratch) / "replay.db")
        service = create_app(settings)
        url, stop = serve_in_thread(service)
        token = settings.config.token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                replay = ReplayToEnd(service, http)
                metrics: dict[str, Any] = {
                    "policy": policy,
                    "trace": settings.trace,
                    "workload": settings.trace_workload,
                    "estimate_error": settings.estimate_error,
                    "runtime_knowledge": "declared",
                    "elastic": settings.elastic,
                    "tick_s": 0.0,
                    **replay.run(),
                }
            metrics["rejected"] = len(replay.rejected)
        finally:
            stop()
    if as_json:
        print_json(metrics)
        return
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in metrics.items()]
    console.print(table(f"{policy} on {settings.trace} through the service", ["metric", "value"], rows))


# the client -------------------------------------------------------------------------------------------


# the server's error kind, back from the one HTTP status the API gives each kind
ERROR_KINDS: dict[int, type[SuanliError]] = {
    kind.http_status: kind for kind in (SpecError, PlanInfeasible, ExecutorError, StoreError)
}


class Client:
    def __init__(self, server: str | None, token: str | None = None) -> None:
        self.url = (server or f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError:
            raise SuanliError(
                f"cannot reach the Suanli service at {self.url}: is `suanli up` running?"
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ERROR_KINDS.get(response.status_code, SuanliError)(str(detail))
        return response.json()


def _slice(sharing: dict[str, Any] | None) -> str:
    """How much of each accelerator the job holds: `whole`, a MIG profile, or its MPS / time-slice share."""
    mode = (sharing or {}).get("mode", "exclusive")
    if mode == "exclusive":
        return "whole"
    if mode == "mig":
        return str(sharing["mig_profile"])  # type: ignore[index]
    share = sharing.get("core_fraction") or sharing.get("memory_fraction")  # type: ignore[union-attr]
    return f"{'mps' if mode == 'fraction' else 'time-slice'} {share:.0%}"


def _job_row(job: dict[str, Any], now: float) -> list[str]:
    """`now` is the service's clock (simulated time under --simulate), never this machine's."""
    placement = job.get("placement") or {}
    figures = job.get("figures") or {}
    age_s = now - job["submitted_at"]
    return [
        str(job["id"]),
        job["name"],
        job["kind"],
        job["queue"],
        job["state"],
        placement.get("pool", "-"),
        str(placement.get("nodes", "-")),
        _slice(job.get("spec", {}).get("sharing")),
        f"{figures['mfu']:.1%}" if "mfu" in figures else "-",
        f"{age_s:.0f}s" if age_s < 120 else f"{age_s / 60:.0f}m",
    ]


@app.command("submit")
def submit(
    job_file: Path = typer.Argument(..., help="a JobSpec YAML file"),
    wait: bool = typer.Option(False, "--wait", help="wait until the job finishes"),
    dependency: str = typer.Option(
        None,
        "--dependency",
        "-d",
        help="start after other jobs, as sbatch: afterok:ID[:ID], afterany, singleton",
    ),
    array: str = typer.Option(
        None, "--array", "-a", help="a job array, as sbatch: 0-31%4 (at most 4 at once)"
    ),
    server: str = SERVER_OPTION,
    token: str = TOKEN_OPTION,
) -> None:
    """Submit a job, like `sbatch` or `sky launch`.

    Example: suanli submit examples/jobs/hpc-lammps.yaml --wait
    """
    if not job_file.is_file():
        raise SpecError(f"{job_file}: file not found")
    if array and wait:
        raise SpecError("--wait: waits for one job, not an --array (watch its tasks with `suanli queue`)")
    client = Client(server, token)
    job = client.request(
        "POST",
        "/jobs",
        content=job_file.read_bytes(),
        headers={"content-type": "application/yaml"},
        params={k: v for k, v in {"dependency": dependency, "array": array}.items() if v},
    )
    if array:
        tasks = job["array_tasks"]
        typer.echo(f"submitted array job {job['id']} ({job['name']}): tasks {tasks[0]}-{tasks[-1]}")
        return
    typer.echo(f"submitted job {job['id']} ({job['name']}) → {job['state']}")
    if not wait:
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task(f"job {job['id']}: {job['state']}")
        while job["state"] not in FINISHED:
            time.sleep(0.5)
            job = client.request("GET", f"/jobs/{job['id']}")
            bar.update(task, description=f"job {job['id']}: {job['state']}")
    typer.echo(f"job {job['id']} {job['state']}" + (f": {job['reason']}" if job["reason"] else ""))
    if job["state"] != "succeeded":
        raise typer.Exit(1)


@app.command("queue")
def queue(
    show_all: bool = typer.Option(False, "--all", help="include finished jobs"),
    queue_name: str = typer.Option(None, "--queue", help="only this queue"),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER_OPTION,
    token: str = TOKEN_OPTION,
) -> None:
    """List jobs, like `squeue` (active ones unless --all)."""
    params = {"state": None if show_all else "active", "queue": queue_name, "order": "oldest", "limit": 1000}
    client = Client(server, token)
    jobs: list[dict[str, Any]] = []
    while True:  # every matching job, a page at a time
        page = client.request(
            "GET", "/ops/jobs", params={k: v for k, v in params.items() if v} | {"offset": len(jobs)}
        )
        jobs += page["jobs"]
        if not page["jobs"] or len(jobs) >= page["total"]:
            break
    if as_json:
        print_json(jobs)
        return
    columns = ["id", "name", "kind", "queue", "state", "pool", "nodes", "slice", "MFU", "age"]
    console.print(table("Jobs", columns, [_job_row(j, page["now"]) for j in jobs]))


@app.command("status")
def status(
    job_id: int = typer.Argument(..., help="job id"),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER_OPTION,
    token: str = TOKEN_OPTION,
) -> None:
    """One job: state, placement, plan, history, latest metrics."""
    job = Client(server, token).request("GET", f"/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    placement = job.get("placement") or {}
    console.print(
        f"[bold]job {job['id']}[/bold] {job['name']} ({job['kind']}, queue {job['queue']},"
        f" user {job['user']}): {job['state']}" + (f" — {job['reason']}" if job["reason"] else "")
    )
    if placement:
        console.print(
            f"placement: {placement['nodes']} node(s) of pool {placement['pool']}, "
            f"{placement['accelerators']} accelerators; {job['executor']} id {job['engine_id']}"
        )
    if job.get("plan"):
        estimate = job["plan"].get("estimate") or {}
        console.print(
            f"plan: {job['plan'].get('gpus')}× {job['plan'].get('accelerator')}, "
            f"step {estimate.get('step_time_s', '?')} s, MFU {estimate.get('mfu', '?')}"
        )
    for name, value in (job.get("figures") or {}).items():
        console.print(f"{name}: {value:.4g}")
    rows = [
        [time.strftime("%H:%M:%S", time.localtime(h["at"])), h["from"] or "-", h["to"], h["reason"]]
        for h in job["history"]
    ]
    console.print(table("History", ["time", "from", "to", "reason"], rows))


@app.command("logs")
def logs(
    job_id: int = typer.Argument(..., help="job id"),
    follow: bool = typer.Option(False, "-f", "--follow", help="stream until the job ends"),
    server: str = SERVER_OPTION,
    token: str = TOKEN_OPTION,
) -> None:
    """Print a job's output (`-f` follows it, like `tail -f`)."""
    client = Client(server, token)
    client.request("GET", f"/jobs/{job_id}")
    with client.http.stream(
        "GET", f"/jobs/{job_id}/logs", params={"follow": follow}, timeout=None
    ) as response:
        for chunk in response.iter_text():
            typer.echo(chunk, nl=False)


@app.command("cancel")
def cancel(
    job_id: int = typer.Argument(..., help="job id"), server: str = SERVER_OPTION, token: str = TOKEN_OPTION
) -> None:
    """Cancel a job, like `scancel`."""
    job = Client(server, token).request("POST", f"/jobs/{job_id}/cancel")
    typer.echo(f"job {job['id']} ({job['name']}): {job['state']}")


def _job_verb(verb: str, job_id: int, server: str | None, token: str | None) -> None:
    job = Client(server, token).request("POST", f"/jobs/{job_id}/{verb}")
    typer.echo(f"job {job['id']} ({job['name']}): {job['state']}" + (" (held)" if job["held"] else ""))


@app.command("hold")
def hold(
    job_id: int = typer.Argument(..., help="job id"), server: str = SERVER_OPTION, token: str = TOKEN_OPTION
) -> None:
    """Keep a pending job from starting until it is released, like `scontrol hold`."""
    _job_verb("hold", job_id, server, token)


@app.command("release")
def release(
    job_id: int = typer.Argument(..., help="job id"), server: str = SERVER_OPTION, token: str = TOKEN_OPTION
) -> None:
    """Let a held job be scheduled again, like `scontrol release`."""
    _job_verb("release", job_id, server, token)


@app.command("requeue")
def requeue(
    job_id: int = typer.Argument(..., help="job id"), server: str = SERVER_OPTION, token: str = TOKEN_OPTION
) -> None:
    """Stop a running job and queue it again as its next attempt, like `scontrol requeue`."""
    _job_verb("requeue", job_id, server, token)


@app.command("nodes")
def nodes(
    as_json: bool = typer.Option(False, "--json"), server: str = SERVER_OPTION, token: str = TOKEN_OPTION
) -> None:
    """Pools and their allocation, like `sinfo`."""
    data = Client(server, token).request("GET", "/nodes")
    if as_json:
        print_json(data)
        return
    rows = [
        [
            p["name"],
            p["node_type"],
            str(p["nodes"]),
            p["accelerator"] or "-",
            f"{p['accelerators_allocated']}/{p['accelerators_total']}",
            f"{p['cpus_allocated']:g}/{p['cpus_total']:g}",
        ]
        for p in data["pools"]
    ]
    console.print(
        table(
            f"Pools of {data['cluster']} ({data['executor']} executor)",
            ["pool", "node type", "nodes", "accelerator", "accels used", "CPUs used"],
            rows,
        )
    )


def _clock(at: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at)) if at is not None else "Unknown"


def _elapsed(job: dict[str, Any], now: float) -> str:
    if job["started_at"] is None:
        return "00:00:00"
    seconds = int((job["finished_at"] or now) - job["started_at"])
    days, rest = divmod(seconds, 86400)
    return (f"{days}-" if days else "") + time.strftime("%H:%M:%S", time.gmtime(rest))


# sacct's --format fields (case-insensitive): each reads a job as the API shows it, on the service's clock
HISTORY_FIELDS: dict[str, Any] = {
    "jobid": lambda j, now: str(j["id"]),
    "jobname": lambda j, now: j["name"],
    "user": lambda j, now: j["user"],
    "partition": lambda j, now: j["queue"],
    "state": lambda j, now: j["state"],
    "submit": lambda j, now: _clock(j["submitted_at"]),
    "start": lambda j, now: _clock(j["started_at"]),
    "end": lambda j, now: _clock(j["finished_at"]),
    "elapsed": _elapsed,
    "exitcode": lambda j, now: "" if j["exit_code"] is None else str(j["exit_code"]),
    "reason": lambda j, now: j["reason"],
    "dependency": lambda j, now: j["dependency"] or "",
    "restarts": lambda j, now: str(max(0, j["attempt"] - 1)),
    "nodelist": lambda j, now: (j.get("placement") or {}).get("pool", ""),
}
HISTORY_DEFAULT = "JobID,JobName,User,Partition,State,Start,Elapsed,ExitCode"


def _when(text: str | None, server_now: float) -> float | None:
    """`now`, `now-2h` (s, m, h, d; on the service's clock) or an ISO date and time (this machine's zone)."""
    if text is None:
        return None
    if text.startswith("now"):
        offset = text[3:].strip()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if not offset:
            return server_now
        if offset[0] == "-" and offset[-1] in units and offset[1:-1].replace(".", "", 1).isdigit():
            return server_now - float(offset[1:-1]) * units[offset[-1]]
        raise SpecError(f"{text}: expected now, now-N[s|m|h|d] or an ISO date and time")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise SpecError(f"{text}: expected now, now-N[s|m|h|d] or an ISO date and time") from None


@app.command("history")
def history(
    user: str = typer.Option(None, "--user", "-u", help="only this user's jobs"),
    state: str = typer.Option(
        None, "--state", "-s", help="states, comma-separated (ours or sacct's: CD, F, CA, PD, R)"
    ),
    starttime: str = typer.Option(
        None, "--starttime", "-S", help="jobs not finished before: now-2h, 2026-11-29T08:00"
    ),
    endtime: str = typer.Option(None, "--endtime", "-E", help="jobs submitted by this time"),
    fields: str = typer.Option(HISTORY_DEFAULT, "--format", "-o", help="columns, as sacct --format"),
    parsable: bool = typer.Option(False, "--parsable", "-P", help="`|`-separated lines, as sacct -P"),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER_OPTION,
    token: str = TOKEN_OPTION,
) -> None:
    """Every job of the store over a time window, like `sacct`."""
    columns = [c.strip() for c in fields.split(",") if c.strip()]
    unknown = [c for c in columns if c.lower() not in HISTORY_FIELDS]
    if unknown:
        raise SpecError(f"--format: unknown field {unknown[0]!r} (one of {', '.join(HISTORY_FIELDS)})")
    client = Client(server, token)
    server_now = client.request("GET", "/ops/overview")["now"] if "now" in f"{starttime}{endtime}" else 0.0
    params = {
        "user": user,
        "state": state,
        "since": _when(starttime, server_now),
        "until": _when(endtime, server_now),
    }
    jobs: list[dict[str, Any]] = []
    while True:  # every matching job, a page at a time
        page = client.request(
            "GET",
            "/history",
            params={k: v for k, v in params.items() if v is not None} | {"offset": len(jobs)},
        )
        jobs += page["jobs"]
        if not page["jobs"] or len(jobs) >= page["total"]:
            break
    if as_json:
        print_json(jobs)
        return
    rows = [[HISTORY_FIELDS[c.lower()](j, page["now"]) for c in columns] for j in jobs]
    if parsable:
        for line in [columns, *rows]:
            typer.echo("|".join(line))
        return
    console.print(table("History", columns, rows))
