"""Co-location interference on the Alibaba GPU v2023 gpushare40 workload (Weng et al., ATC'23): the
same run with and without Lucid's measured co-location slowdowns (`SimConfig.colocation_interference`).

The cluster is the trace's own 1,213 GPU nodes (`openb_node_list_gpu_node.csv`), one accelerator type
per trace GPU model. The pods carry no model name, so every shared pair runs at Lucid's mean pair speed.

    .venv/bin/python benchmarks/sched_colocation.py [--trace-dir DIR] [--policies suanli,fifo]
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

from suanli.sched.cluster_state import ClusterState, Node
from suanli.sched.fractional import FULL_MILLI, mean_colocated_speed
from suanli.sched.policies import make_policy
from suanli.sched.simulator import SimConfig, simulate
from suanli.sched.traces.alibaba import load_alibaba_pods
from suanli.spec.datasets import dataset_path, read_text

TRACE_DIR = "traces/alibaba_gpu_v2023"  # under datasets/


def alibaba_cluster(node_list: Path) -> tuple[ClusterState, dict[str, str]]:
    """The trace's GPU nodes, 32 to a leaf switch; accelerator type = trace GPU model, lower case."""
    nodes = []
    with io.StringIO(read_text(node_list)) as handle:
        for row in csv.DictReader(handle):
            kind = row["model"].lower()
            nodes.append(Node(row["sn"], kind, kind, len(nodes) // 32, [FULL_MILLI] * int(row["gpu"])))
    types = {n.accel_type for n in nodes}
    return ClusterState(nodes=nodes, memory_gb=dict.fromkeys(types, 0.0)), {t.upper(): t for t in types}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trace-dir", type=Path, default=None, help=f"default: datasets/{TRACE_DIR}")
    parser.add_argument("--policies", default="suanli,fifo")
    args = parser.parse_args()
    args.trace_dir = args.trace_dir or dataset_path(TRACE_DIR)
    _, type_map = alibaba_cluster(args.trace_dir / "openb_node_list_gpu_node.csv")
    jobs = load_alibaba_pods(args.trace_dir / "openb_pod_list_gpushare40.csv", type_map)
    shared = sum(j.is_fractional for j in jobs)
    print(f"{len(jobs)} GPU pods, {shared} fractional; Lucid mean pair speed {mean_colocated_speed():.4f}")
    print(
        "| policy | interference | avg JCT h | avg JCT h, fractional pods | p99 JCT h | makespan h | wall s |"
    )
    print("|---|---|---|---|---|---|---|")
    for policy in args.policies.split(","):
        for flag in (False, True):
            cluster, _ = alibaba_cluster(args.trace_dir / "openb_node_list_gpu_node.csv")
            started = time.perf_counter()
            result = simulate(cluster, make_policy(policy), jobs, SimConfig(colocation_interference=flag))
            wall = time.perf_counter() - started
            m = result.metrics
            fractional = [
                s.finish_s - s.job.submit_s for s in result.jobs if s.job.is_fractional and s.finish_s
            ]
            print(
                f"| {policy} | {'on' if flag else 'off'} | {m['avg_jct_h']:.4f}"
                f" | {sum(fractional) / len(fractional) / 3600:.4f} | {m['p99_jct_h']:.3f}"
                f" | {m['makespan_h']:.1f} | {wall:.1f} |"
            )


if __name__ == "__main__":
    main()
