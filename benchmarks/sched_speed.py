"""Simulator speed: the 82,247-job Philly list on the 1,024-GPU H100 example cluster.

.venv/bin/python benchmarks/sched_speed.py [--policies fifo,backfill,suanli] [--limit N]
"""

from __future__ import annotations

import argparse
import time

from suanli.sched.cluster_state import ClusterState
from suanli.sched.policies import make_policy
from suanli.sched.simulator import simulate
from suanli.sched.traces.philly import load_philly
from suanli.spec import Cluster, load


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", default="fifo,backfill,tiresias,suanli")
    parser.add_argument("--cluster", default="examples/clusters/hgx-h100-1024.yaml")
    parser.add_argument("--limit", type=int, default=None, help="simulate only the first N jobs")
    parser.add_argument("--trace", default=None, help="a Philly CSV (default: datasets/traces/philly)")
    args = parser.parse_args()
    cluster = load(Cluster, args.cluster)
    for policy in args.policies.split(","):
        state = ClusterState.from_cluster(cluster)
        started = time.perf_counter()
        jobs = load_philly(args.trace, [t for t in state.capacity if t != "cpu"], args.limit)
        loaded = time.perf_counter()
        m = simulate(state, make_policy(policy), jobs).metrics
        done = time.perf_counter()
        print(
            f"{policy}: {len(jobs)} jobs on {sum(state.capacity.values())} GPUs,"
            f" load {loaded - started:.1f} s, simulate {done - loaded:.1f} s,"
            f" avg JCT {m['avg_jct_h']:.2f} h, utilization {m['utilization']:.3f},"
            f" decision {m['decision_ms_mean']:.3f} ms/round"
        )


if __name__ == "__main__":
    main()
