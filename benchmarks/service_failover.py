"""Leader failover: two `suanli up` processes on one store; `kill -9` the leader and time until the
other reports itself leader on /healthz, then until a job submitted during the gap runs.

    .venv/bin/python benchmarks/service_failover.py [--rounds 3] [--db postgresql://…]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from suanli.service.demo import start_service


def start(data_dir: Path, db: str | None) -> tuple[subprocess.Popen[str], str]:
    return start_service(data_dir, 0, *(["--db", db] if db else []))


def leads(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/healthz", timeout=2).json()["leader"])
    except httpx.TransportError:
        return False


def one_round(db: str | None) -> tuple[float, float]:
    data = Path(tempfile.mkdtemp(prefix="suanli-failover-"))
    servers = [start(data, db), start(data, db)]
    while not any(leads(url) for _, url in servers):
        time.sleep(0.05)
    (leader, _), (follower, url) = servers if leads(servers[0][1]) else servers[::-1]
    leader.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    job = httpx.post(f"{url}/jobs", content="name: gap\nkind: hpc\nrun: 'true'\n", timeout=10).json()
    while not leads(url):
        time.sleep(0.02)
    lead_s = time.monotonic() - killed
    while httpx.get(f"{url}/jobs/{job['id']}", timeout=10).json()["state"] == "pending":
        time.sleep(0.02)
    run_s = time.monotonic() - killed
    follower.terminate()
    follower.wait(timeout=20)
    leader.wait(timeout=5)
    return lead_s, run_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in the data folder)")
    args = parser.parse_args()
    rounds = [one_round(args.db) for _ in range(args.rounds)]
    lead = [r[0] for r in rounds]
    run = [r[1] for r in rounds]
    print(
        f"| measure ({'PostgreSQL' if args.db else 'SQLite'}, {args.rounds} rounds) | median | max |\n"
        "|---|---|---|"
    )
    print(
        f"| kill -9 of the leader → the other leads | {statistics.median(lead):.2f} s | {max(lead):.2f} s |"
    )
    print(
        f"| kill -9 → a job submitted in the gap starts | {statistics.median(run):.2f} s | {max(run):.2f} s |"
    )


if __name__ == "__main__":
    main()
