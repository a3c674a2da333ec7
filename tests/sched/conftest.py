from __future__ import annotations

from suanli.sched.cluster_state import ClusterState, Node
from suanli.sched.fractional import FULL_MILLI
from suanli.sched.job import SchedJob


def make_cluster(pools: dict[str, tuple[int, int]], nodes_per_leaf: int = 32) -> ClusterState:
    """pools: accelerator type → (nodes, GPUs per node)."""
    nodes = []
    for accel, (count, per_node) in pools.items():
        for i in range(count):
            leaf = len(nodes) // nodes_per_leaf
            nodes.append(Node(f"{accel}-{i}", accel, accel, leaf, [FULL_MILLI] * per_node))
    return ClusterState(nodes=nodes, memory_gb=dict.fromkeys(pools, 40.0))


def job(job_id: str, submit_s: float, gpus: int, runtime_s: float | dict[str, float], **kw) -> SchedJob:
    runtime = runtime_s if isinstance(runtime_s, dict) else {"a": runtime_s}
    return SchedJob(job_id=job_id, submit_s=submit_s, gpus=gpus, runtime_s=runtime, **kw)
