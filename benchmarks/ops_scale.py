"""How long the operator's views take over a big store: the dashboard's page of jobs (newest,
oldest, filtered by state/queue/pool), the overview, the cluster's series and /metrics, with N
jobs in the store (most finished, some pending, the newest running on the mixed centre).

    .venv/bin/python benchmarks/ops_scale.py --jobs 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from suanli.service.app import Settings, create_app
from suanli.service.store import JobRow, Store, TransitionRow

MIXED = Path(__file__).resolve().parents[1] / "examples" / "clusters" / "mixed-center.yaml"
POOLS = ("h100", "a100", "ascend", "s4000")
WAITING = {"pool": "h100", "nodes": 1, "accelerators": 8, "accelerator": "h100-sxm", "cpus_per_node": 1.0}


def fill(store: Store, jobs: int, now: float) -> None:
    """`jobs` finished or pending jobs with their transitions, in one transaction per 10,000."""
    for start in range(0, jobs, 10_000):
        with store._sessions.begin() as session:
            for i in range(start, min(jobs, start + 10_000)):
                submitted = now - (jobs - i) * 60.0
                state = "pending" if i >= jobs - 200 else ("failed" if i % 17 == 0 else "succeeded")
                placement = (
                    None if state == "pending" else {"pool": POOLS[i % 4], "nodes": 1, "accelerators": 8}
                )
                row = JobRow(
                    name=f"job-{i}",
                    kind="training",
                    queue=("default", "research", "prod")[i % 3],
                    priority=0,
                    state=state,
                    spec={"name": f"job-{i}", "run": "x"},
                    placement=placement,
                    candidates=[{**WAITING, "runtime_s": 3600.0}] if state == "pending" else None,
                    submitted_at=submitted,
                    started_at=None if state == "pending" else submitted + 30,
                    finished_at=None if state == "pending" else submitted + 3000,
                )
                session.add(row)
                session.flush()
                session.add(TransitionRow(job_id=row.id, from_state=None, to_state="pending", at=submitted))
                if state != "pending":
                    session.add(
                        TransitionRow(
                            job_id=row.id, from_state="pending", to_state="starting", at=submitted + 30
                        )
                    )
                    session.add(
                        TransitionRow(
                            job_id=row.id, from_state="starting", to_state="running", at=submitted + 31
                        )
                    )
                    session.add(
                        TransitionRow(
                            job_id=row.id, from_state="running", to_state=state, at=submitted + 3000
                        )
                    )


def timed(client: TestClient, path: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        db = data / "ops.db"
        start = time.perf_counter()
        store = Store(str(db))
        fill(store, args.jobs, time.time())
        store.close()
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - start:.1f} s")
        settings = Settings(data_dir=data, db_url=str(db), cluster_file=MIXED, simulate_speedup=1.0)
        with TestClient(create_app(settings)) as client:
            paths = [
                "/ops/jobs?limit=50",
                f"/ops/jobs?limit=50&offset={args.jobs - 50}",
                "/ops/jobs?limit=50&order=oldest",
                "/ops/jobs?limit=50&state=failed&queue=research",
                "/ops/jobs?limit=50&pool=ascend",
                "/ops/jobs?limit=50&state=pending&order=oldest",
                "/ops/overview",
                "/ops/series?window_s=86400",
                "/ops/gpus",
                "/metrics",
            ]
            print("| request | median s |\n|---|---|")
            for path in paths:
                print(f"| `{path}` | {timed(client, path, args.repeats):.3f} |")


if __name__ == "__main__":
    main()
