"""Service benchmark (`python -m suanli.service.bench [--db URL]`): how fast the API accepts jobs
durably, how long a job waits from submission to running on a free pool, and how long a restart
takes to rebuild the scheduler's view of a full queue. Prints a Markdown table."""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from suanli.service.admission import admit
from suanli.service.app import Settings, build_controller, create_app, parse_job

BLOCKER = "name: blocker\nkind: hpc\nrun: sleep 3600\n"
QUEUED = "name: q{index}\nkind: hpc\nrun: 'true'\n"


def serve(settings: Settings) -> tuple[uvicorn.Server, str]:
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_submit(client: httpx.Client, count: int) -> list[float]:
    """Latency of POST /jobs while the pool is held, so every job is accepted and queued."""
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        response = client.post("/jobs", content=QUEUED.format(index=index))
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
    return latencies


def bench_start(client: httpx.Client, count: int) -> list[float]:
    """Submission to `running` for jobs on a free pool, one at a time."""
    waits = []
    for index in range(count):
        job = client.post("/jobs", content=QUEUED.format(index=f"s{index}")).json()
        while True:
            current = client.get(f"/jobs/{job['id']}").json()
            if current["state"] in {"running", "succeeded", "failed"}:
                running = next(h["at"] for h in current["history"] if h["to"] in {"running", "failed"})
                waits.append(running - current["submitted_at"])
                break
            time.sleep(0.01)
        while client.get(f"/jobs/{job['id']}").json()["state"] not in {"succeeded", "failed"}:
            time.sleep(0.01)
    return waits


def fill_queue(settings: Settings, count: int) -> None:
    """`count` more pending jobs, written to the store as admission would (their placements
    beside them), for the restart measure of a deep queue without waiting on HTTP."""
    controller = build_controller(settings)
    spec = parse_job(QUEUED.format(index="x").encode(), "application/yaml")
    candidates = [p.to_dict() for p in admit(spec, controller.cluster, settings.config)]
    data = spec.model_dump(mode="json", by_alias=True)
    for _ in range(count):
        controller.store.add_job(data, None, time.time(), candidates)
    controller.store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in a temporary folder)")
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument(
        "--queued", type=int, default=0, help="also write this many queued jobs straight to the store"
    )
    args = parser.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="suanli-bench-"))
    settings = Settings(data_dir=data, db_url=args.db)
    server, url = serve(settings)
    with httpx.Client(base_url=url, timeout=30) as client:
        waits = bench_start(client, args.starts)
        blocker = client.post("/jobs", content=BLOCKER).json()
        while client.get(f"/jobs/{blocker['id']}").json()["state"] != "running":
            time.sleep(0.02)
        submit = bench_submit(client, args.jobs)
        client.post(f"/jobs/{blocker['id']}/cancel")
    server.should_exit = True
    time.sleep(1.0)
    fill_queue(settings, args.queued)
    started = time.perf_counter()
    controller = build_controller(settings)
    controller.recover()
    recover_s = time.perf_counter() - started
    pending = len(controller.store.list_jobs(states={"pending"}))
    store = settings.store_url.split("://")[0] if "://" in settings.store_url else "sqlite"
    print(f"| measure ({store} store) | value |\n|---|---|")
    print(
        f"| POST /jobs accepted and durable, {args.jobs} sequential "
        f"| median {statistics.median(submit) * 1e3:.1f} ms, "
        f"p99 {percentile(submit, 0.99) * 1e3:.1f} ms, {args.jobs / sum(submit):.0f} jobs/s |"
    )
    print(
        f"| submission → running on a free pool, {args.starts} jobs "
        f"| median {statistics.median(waits) * 1e3:.0f} ms, "
        f"max {max(waits) * 1e3:.0f} ms (control loop tick {settings.tick_s * 1e3:.0f} ms) |"
    )
    print(f"| restart: rebuild the scheduler's view of {pending} queued jobs | {recover_s * 1e3:.0f} ms |")


if __name__ == "__main__":
    main()
