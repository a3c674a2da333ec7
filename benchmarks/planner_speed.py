"""Search speed of the planner.

    python benchmarks/planner_speed.py [--repeat 5]

1. Llama 3.1 405B (seq 8192, global batch 2048, 15T tokens) on a 16,384×H100 cluster
   (2,048 HGX H100 nodes, rail-optimized): full single-type search.
2. Llama 3.1 70B (examples/jobs/llama3.1-70b-pretrain.yaml) on the three-type mixed cluster
   (examples/clusters/mixed-center.yaml: H100, A100, Ascend 910B + CPU): single-pool plans on
   every type plus heterogeneous pipelines and data-parallel mixes.

Reports the first (cold: catalog files parsed) and the median of the following (warm) searches,
wall-clock and CPU time. The machine is shared: wall time includes other users' load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from suanli.plan.search import search
from suanli.spec import Cluster, JobSpec, load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def cases() -> list[tuple[str, JobSpec, Cluster]]:
    big_job = JobSpec.model_validate(
        {
            "name": "llama405b",
            "model": "llama3.1-405b",
            "resources": {"accelerators": {"H100": 16384}},
            "training": {"seq_len": 8192, "global_batch_size": 2048, "total_tokens": "15T"},
        }
    )
    big_cluster = Cluster.model_validate(
        {
            "name": "h100-16k",
            "pools": [{"name": "h100", "node_type": "hgx-h100", "nodes": 2048}],
            "fabric": {"kind": "rail-optimized"},
        }
    )
    mixed_job = load(JobSpec, EXAMPLES / "jobs/llama3.1-70b-pretrain.yaml")
    mixed_cluster = load(Cluster, EXAMPLES / "clusters/mixed-center.yaml")
    return [
        ("Llama 3.1 405B on 16,384×H100", big_job, big_cluster),
        ("Llama 3.1 70B on 3-type mixed-center (with heterogeneous plans)", mixed_job, mixed_cluster),
    ]


def measure(job: JobSpec, cluster: Cluster, repeat: int) -> tuple[list[float], list[float], int]:
    walls, cpus, count = [], [], 0
    for _ in range(repeat + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        plans = search(job, cluster, "time", top=1000)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        count = len(plans)
    return walls, cpus, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    print("| case | plans ranked | cold wall s | warm wall s (median) | warm CPU s (median) |")
    print("|---|---:|---:|---:|---:|")
    for name, job, cluster in cases():
        walls, cpus, count = measure(job, cluster, args.repeat)
        warm_wall, warm_cpu = statistics.median(walls[1:]), statistics.median(cpus[1:])
        print(f"| {name} | {count} | {walls[0]:.2f} | {warm_wall:.2f} | {warm_cpu:.2f} |")


if __name__ == "__main__":
    main()
