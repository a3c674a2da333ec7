"""Mixed AI + HPC on the Sia 64-GPU cluster: Sia Saturn workloads plus HPC jobs from the Lublin-
Feitelson synthetic SWF log, swept over the HPC share of jobs (our own construction: no public
trace mixes AI and HPC), and the effect of failures injected at Llama 3's rate.

    .venv/bin/python benchmarks/sched_mixed.py
"""

from __future__ import annotations

import numpy as np

from suanli.sched.cluster_state import ClusterState
from suanli.sched.policies import make_policy
from suanli.sched.simulator import SimConfig, simulate
from suanli.sched.traces.mixed import mix_workload
from suanli.sched.traces.sia import load_sia_workload, workload_path
from suanli.sched.traces.swf import load_swf
from suanli.spec import Cluster, load
from suanli.spec.datasets import dataset_path

LUBLIN = "traces/hpc_swf/lublin_256_synthetic.swf"  # under datasets/
POLICIES = ("backfill", "tiresias", "gavel", "suanli")


def main() -> None:
    cluster = load(Cluster, "examples/clusters/sia-64gpu.yaml")
    state = ClusterState.from_cluster(cluster)
    types = list(state.capacity)
    hpc = [j for j in load_swf(dataset_path(LUBLIN)) if next(iter(j.runtime_s.values())) <= 6 * 3600]
    print("| HPC share | policy | AI avg JCT h | HPC bounded slowdown | worst ρ | utilization |")
    print("|---|---|---|---|---|---|")
    for share in (0.0, 0.1, 0.25, 0.5):
        for policy in POLICIES:
            rows = []
            for n in (1, 2, 3):
                jobs = mix_workload(load_sia_workload(workload_path("saturn", n)), hpc, share, types, seed=n)
                result = simulate(ClusterState.from_cluster(cluster), make_policy(policy), jobs)
                ai = [s for s in result.jobs if s.job.kind != "hpc"]
                ai_jct = np.mean([s.finish_s - s.job.submit_s for s in ai]) / 3600
                m = result.metrics
                rows.append((ai_jct, m["hpc_bounded_slowdown"], m["worst_ftf_rho"], m["utilization"]))
            a = np.mean(rows, axis=0)
            print(f"| {share:.2f} | {policy} | {a[0]:.2f} | {a[1]:.2f} | {a[2]:.2f} | {a[3]:.2f} |")
    print()
    print("| failures / 1k GPU-month | policy | avg JCT h | failures per run |")
    print("|---|---|---|---|")
    for rate in (0.0, 14.2, 1420.0):
        for policy in ("gavel", "suanli"):
            ms = [
                simulate(
                    ClusterState.from_cluster(cluster),
                    make_policy(policy),
                    load_sia_workload(workload_path("saturn", n)),
                    SimConfig(seed=n, failures_per_1k_gpu_month=rate),
                ).metrics
                for n in (1, 2, 3)
            ]
            jct = np.mean([m["avg_jct_h"] for m in ms])
            print(f"| {rate:g} | {policy} | {jct:.2f} | {np.mean([m['failures'] for m in ms]):.1f} |")


if __name__ == "__main__":
    main()
