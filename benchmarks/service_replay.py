"""A trace through the live service against `suanli sim` on the same arguments: avg JCT of each and
the wall time of each command (the service's includes its API over loopback HTTP, a fresh SQLite
store, the controller and the simulated executor).

    .venv/bin/python benchmarks/service_replay.py [--trace sia-saturn] [--workload 2] [--policies fifo]
    .venv/bin/python benchmarks/service_replay.py --trace sia-philly --workload 1 --policies elastic --elastic
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIA = REPO / "examples" / "clusters" / "sia-64gpu.yaml"
SUANLI = [sys.executable, "-c", "from suanli.cli import app; app()"]


def timed(args: list[str]) -> tuple[dict, float]:
    started = time.monotonic()
    done = subprocess.run([*SUANLI, *args], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default="sia-saturn")
    parser.add_argument("--workload", default="2")
    parser.add_argument("--policies", default="suanli,fifo,gavel")
    parser.add_argument("--elastic", action="store_true", help="resizable jobs (Sia traces)")
    options = parser.parse_args()
    common = ["--trace", options.trace, "--workload", options.workload, "--json"]
    common += ["--elastic"] if options.elastic else []
    print(
        "| trace | policy | avg JCT, service (h) | avg JCT, `suanli sim` (h) | gap"
        " | restarts/job, service / sim | wall, service / sim (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for policy in options.policies.split(","):
        with tempfile.TemporaryDirectory() as data:
            service, service_s = timed(
                [
                    "up",
                    "--simulate",
                    str(SIA),
                    "--exit-when-done",
                    "--data-dir",
                    data,
                    "--policy",
                    policy,
                    *common,
                ]
            )
        sim, sim_s = timed(["sim", "--cluster", str(SIA), "--policy", policy, *common])
        gap = service["avg_jct_h"] / sim["avg_jct_h"] - 1
        print(
            f"| {options.trace} {options.workload} | {policy} | {service['avg_jct_h']:.4f}"
            f" | {sim['avg_jct_h']:.4f} | {gap:+.2%}"
            f" | {service['restarts_per_job']:.2f} / {sim['restarts_per_job']:.2f}"
            f" | {service_s:.1f} / {sim_s:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
