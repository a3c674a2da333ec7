"""Elastic jobs (issue 12, item 5): the `elastic` policy (Sia's goodput objective) on the Sia
workloads loaded elastic, against the rigid policies on the same workloads loaded rigid, on the
64-GPU T4/RTX/A100 cluster at the default declared-work error (σ = 0.5), event-driven.

Setups per workload:
- `elastic`: `suanli sim --elastic --policy elastic` (1 … 64 GPUs per job, adaptive batch, 60 s rounds);
- `suanli`, `gavel`, `tiresias`: the workload's own GPU count and batch size (rigid);
- `gavel (elastic jobs)`: Gavel on the elastic-loaded jobs: the requested width, but the batch
  adapts as the job trains (separates the gain of resizing from that of adaptive batches).

Reference: Sia's own simulator with its policy and elastic jobs averages about 0.6–0.7 h on
Philly/Saturn (Jayaram Subramanya et al., SOSP'23; `datasets/traces/sia/SOURCE.md`).

Each cell is one simulation written to its own JSON file in --out, so runs resume and shard:

    .venv/bin/python benchmarks/sched_elastic.py [--shard 0/2] [--budget-s 3000] [--traces philly,saturn]
        [--setups elastic,"gavel (elastic jobs)"]
    .venv/bin/python benchmarks/sched_elastic.py --table
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from cell_grid import add_grid_arguments, run_grid

from suanli.sched.cluster_state import ClusterState
from suanli.sched.policies import make_policy
from suanli.sched.simulator import SimConfig, simulate
from suanli.sched.traces.sia import load_sia_workload, workload_path
from suanli.spec import Cluster, load

CLUSTER = Path("examples/clusters/sia-64gpu.yaml")
WORKLOADS = {"philly": range(1, 7), "saturn": range(1, 8), "newtrace": range(1, 8)}
# setup → (policy, jobs loaded elastic)
SETUPS = {
    "elastic": ("elastic", True),
    "suanli": ("suanli", False),
    "gavel": ("gavel", False),
    "tiresias": ("tiresias", False),
    "gavel (elastic jobs)": ("gavel", True),
}
KEYS = ("avg_jct_h", "p99_jct_h", "makespan_h", "worst_ftf_rho", "restarts_per_job", "gpu_h_per_job")

Cell = tuple[str, int, str]


def cells(traces: list[str], setups: list[str]) -> Iterator[Cell]:
    """Setup by setup (the elastic runs first), trace by trace."""
    for setup in setups:
        for trace in traces:
            for n in WORKLOADS[trace]:
                yield trace, n, setup


def path_of(out: Path, cell: Cell) -> Path:
    trace, n, setup = cell
    return out / f"{trace}-{n}-{setup.replace(' ', '_').replace('(', '').replace(')', '')}.json"


def run_cell(cell: Cell) -> dict[str, float]:
    trace, n, setup = cell
    policy, elastic = SETUPS[setup]
    state = ClusterState.from_cluster(load(Cluster, CLUSTER))
    jobs = load_sia_workload(workload_path(trace, n), elastic=elastic)
    started = time.perf_counter()
    metrics = dict(simulate(state, make_policy(policy), jobs, SimConfig(estimate_error=0.5)).metrics)
    metrics["wall_s"] = time.perf_counter() - started
    return metrics


def table(out: Path) -> None:
    print("| trace | setup | n | avg JCT h | p99 JCT h | makespan h | worst ρ | restarts/job | GPU-h/job |")
    print("|---|---|---|---|---|---|---|---|---|")
    for trace in WORKLOADS:
        for setup in SETUPS:
            runs = [
                json.loads(p.read_text())
                for n in WORKLOADS[trace]
                if (p := path_of(out, (trace, n, setup))).exists()
            ]
            if not runs:
                continue
            cols = [
                f"{(np.max if key == 'worst_ftf_rho' else np.mean)([r[key] for r in runs]):.2f}"
                for key in KEYS
            ]
            print(f"| {trace} | {setup} | {len(runs)} | " + " | ".join(cols) + " |")
    print()
    print("Per workload, avg JCT h:")
    print()
    setups = list(SETUPS)
    print("| trace | workload | " + " | ".join(setups) + " |")
    print("|---|---|" + "---|" * len(setups))
    for trace, numbers in WORKLOADS.items():
        for n in numbers:
            cols = []
            for setup in setups:
                p = path_of(out, (trace, n, setup))
                cols.append(f"{json.loads(p.read_text())['avg_jct_h']:.2f}" if p.exists() else "—")
            if any(c != "—" for c in cols):
                print(f"| {trace} | {n} | " + " | ".join(cols) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    add_grid_arguments(parser, "build/sched_elastic")
    parser.add_argument("--traces", default="philly,saturn,newtrace", help="comma-separated, in run order")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated, in run order")
    args = parser.parse_args()
    if args.table:
        table(args.out)
        return
    run_grid(cells(args.traces.split(","), args.setups.split(",")), args, path_of, run_cell, KEYS)


if __name__ == "__main__":
    main()
