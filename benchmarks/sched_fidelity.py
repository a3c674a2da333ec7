"""Fidelity and wins on the Sia workloads (64-GPU T4/RTX/A100 cluster), and Tiresias in Pollux's
setting (16 nodes × 4 T4, rigid jobs).

    .venv/bin/python benchmarks/sched_fidelity.py [--policies gavel,suanli,...]
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np

from suanli.sched.cluster_state import ClusterState
from suanli.sched.policies import make_policy
from suanli.sched.simulator import simulate
from suanli.sched.traces.sia import load_sia_workload, workload_path
from suanli.spec import Cluster, load
from suanli.spec.datasets import dataset_path, read_text

POLLUX_WORKLOAD_6 = "traces/pollux/workload-6.csv"
WORKLOADS = {"philly": range(1, 7), "saturn": range(1, 8)}
KEYS = (
    "avg_jct_h",
    "p99_jct_h",
    "makespan_h",
    "utilization",
    "worst_ftf_rho",
    "restarts_per_job",
    "gpu_h_per_job",
)


def reference() -> dict[tuple[str, int], dict[str, str]]:
    rows = csv.DictReader(read_text("traces/sia/sia_gavel_reference.csv").splitlines())
    return {(r["trace"], int(r["workload"])): r for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", default="fifo,backfill,tiresias,gavel,ftf,suanli")
    args = parser.parse_args()
    cluster = load(Cluster, "examples/clusters/sia-64gpu.yaml")
    ref = reference()
    policies = args.policies.split(",")
    print(
        "| trace | workload | Sia-artifact Gavel JCT h | our Gavel JCT h | gap | Sia-artifact restarts/job"
        " | our Gavel restarts/job | our Suanli JCT h |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    worst_rho: dict[tuple[str, str], float] = {}
    started = time.perf_counter()
    for trace, numbers in WORKLOADS.items():
        for n in numbers:
            jobs = load_sia_workload(workload_path(trace, n))
            row = {}
            for policy in policies:
                m = simulate(ClusterState.from_cluster(cluster), make_policy(policy), jobs).metrics
                results.setdefault((trace, policy), []).append(m)
                worst_rho[trace, policy] = max(worst_rho.get((trace, policy), 0.0), m["worst_ftf_rho"])
                row[policy] = m
            nan = {"avg_jct_h": float("nan"), "restarts_per_job": float("nan")}
            gavel, suanli = row.get("gavel", nan), row.get("suanli", nan)
            ref_jct = float(ref[trace, n]["avg_jct_h"])
            print(
                f"| {trace} | {n} | {ref_jct:.2f} | {gavel['avg_jct_h']:.2f}"
                f" | {gavel['avg_jct_h'] / ref_jct - 1:+.0%} | {float(ref[trace, n]['restarts_per_job']):.1f}"
                f" | {gavel['restarts_per_job']:.1f} | {suanli['avg_jct_h']:.2f} |"
            )
    print()
    print("| trace | policy | " + " | ".join(KEYS) + " | max worst_ftf_rho |")
    print("|---|---|" + "---|" * (len(KEYS) + 1))
    for (trace, policy), runs in results.items():
        cells = [f"{np.mean([r[k] for r in runs]):.2f} ± {np.std([r[k] for r in runs]):.2f}" for k in KEYS]
        print(f"| {trace} | {policy} | " + " | ".join(cells) + f" | {worst_rho[trace, policy]:.2f} |")
    for trace, numbers in WORKLOADS.items():
        mean = np.mean([float(ref[trace, n]["avg_jct_h"]) for n in numbers])
        line = f"Sia-artifact Gavel mean on {trace}: {mean:.2f} h"
        if (trace, "gavel") in results:
            ours = np.mean([r["avg_jct_h"] for r in results[trace, "gavel"]])
            line += f"; ours {ours:.2f} h ({ours / mean - 1:+.1%}; bar ±15 %)"
        print(line)
    # Pollux's setting: 16 × g4dn.12xlarge (64 T4), rigid tuned jobs, Pollux's workload 6, no
    # calibration slowdown (Pollux's simulator has none). Pollux reports Tiresias ≈ 3,470 s.
    pollux = Cluster.model_validate(
        cluster.model_dump()
        | {"name": "pollux-64t4", "pools": [{"name": "t4", "node_type": "g4dn-12xlarge", "nodes": 16}]}
    )
    jobs = load_sia_workload(dataset_path(POLLUX_WORKLOAD_6), calibrated=False)
    for policy in ("fifo", "tiresias", "suanli"):
        m = simulate(ClusterState.from_cluster(pollux), make_policy(policy), jobs).metrics
        print(f"Pollux workload 6 on 64 T4, {policy}: avg JCT {m['avg_jct_h'] * 3600:.0f} s")
    print(f"wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
