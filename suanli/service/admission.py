"""Admission: is a submitted job acceptable at all? Queues, quotas, and whether any pool could ever
hold it. Everything here runs before the job is written, so a rejected job leaves no trace."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

from pydantic import Field

from suanli.service.executors.base import Placement
from suanli.spec import CATALOG, Cluster, JobSpec, NodeType, SpecError
from suanli.spec.base import Spec
from suanli.spec.job import AcceleratorRequest


class QueueConfig(Spec):
    """A queue and its quota: the most one job in it may ask for (None = no limit)."""

    max_accelerators: int | None = Field(default=None, ge=0)
    max_cpus: float | None = Field(default=None, ge=0)
    description: str = ""


def default_queues() -> dict[str, QueueConfig]:
    return {
        "default": QueueConfig(description="everything else"),
        "research": QueueConfig(description="large training runs"),
        "hpc": QueueConfig(description="CPU and MPI work"),
    }


class ServiceConfig(Spec):
    queues: dict[str, QueueConfig] = Field(default_factory=default_queues)
    token: str | None = Field(default=None, description="bearer token required for writes")


def local_cluster() -> Cluster:
    """This machine as a one-node CPU pool."""
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    node = NodeType(
        slug="local",
        name=socket.gethostname(),
        cpu_cores=os.cpu_count() or 1,
        memory_gb=round(memory_kib / 1024**2, 1),
        source="this machine: os.cpu_count() and /proc/meminfo",
    )
    return Cluster(
        name="local", pools=[{"name": "local", "node_type": "local", "nodes": 1}], node_types=[node]
    )


def _matches(request: AcceleratorRequest, cluster: Cluster, pool: str) -> bool:
    accel = cluster.accelerator_of(pool)
    if accel is None:
        return False
    if request.name:
        return CATALOG.accelerator(request.name).slug == accel.slug
    lo, hi = request.min_memory_gb or 0.0, request.max_memory_gb or math.inf
    return lo <= accel.memory_gb <= hi


def _fits(placement: Placement, node: NodeType, nodes_in_pool: int, spec: JobSpec) -> bool:
    per_node = math.ceil(placement.accelerators / placement.nodes) if placement.accelerators else 0
    return (
        placement.nodes <= nodes_in_pool
        and per_node <= node.accelerators_per_node
        and placement.cpus_per_node <= node.cpu_cores
        and (spec.resources.memory_gb or 0) <= node.memory_gb
    )


def candidate_placements(spec: JobSpec, cluster: Cluster) -> list[Placement]:
    """Every pool shape that could ever hold the job (when the cluster is empty), best first:
    accelerator jobs in the order of their alternatives, CPU jobs on CPU-only pools first."""
    for index, request in enumerate(spec.resources.accelerators):
        if request.name:
            CATALOG.accelerator(request.name, field=f"resources.accelerators[{index}]")
    pools = cluster.pools
    if spec.resources.pool:
        known = [p.name for p in pools]
        if spec.resources.pool not in known:
            raise SpecError(
                f"resources.pool: unknown pool {spec.resources.pool!r}; known: {', '.join(known)}"
            )
        pools = [cluster.pool(spec.resources.pool)]
    cpus = spec.resources.cpus or 1.0
    fixed_nodes = spec.num_nodes if isinstance(spec.num_nodes, int) else None
    result = []
    if spec.resources.accelerators:
        for request in spec.resources.accelerators:
            for pool in pools:
                if not _matches(request, cluster, pool.name):
                    continue
                node = cluster.node_type_of(pool.name)
                nodes = fixed_nodes or math.ceil(request.count / node.accelerators_per_node)
                placement = Placement(
                    pool.name, nodes, request.count, cluster.accelerator_of(pool.name).slug, cpus
                )
                if _fits(placement, node, pool.nodes, spec):
                    result.append(placement)
    else:
        for pool in sorted(pools, key=lambda p: not cluster.node_type_of(p.name).is_cpu_only):
            placement = Placement(pool.name, fixed_nodes or 1, 0, None, cpus)
            if _fits(placement, cluster.node_type_of(pool.name), pool.nodes, spec):
                result.append(placement)
    return result


def _describe_request(spec: JobSpec) -> str:
    nodes = spec.num_nodes if isinstance(spec.num_nodes, int) else 1
    if spec.resources.accelerators:
        return " or ".join(str(r) for r in spec.resources.accelerators)
    return f"{nodes} node(s) × {spec.resources.cpus or 1:g} CPUs"


def _describe_pool(cluster: Cluster, pool: str) -> str:
    node, accel = cluster.node_type_of(pool), cluster.accelerator_of(pool)
    what = f"{node.accelerators_per_node}×{accel.slug}" if accel else "CPU-only"
    return f"{pool} ({cluster.pool(pool).nodes} nodes of {what}, {node.cpu_cores} CPUs)"


def admit(spec: JobSpec, cluster: Cluster, config: ServiceConfig) -> list[Placement]:
    """The placements a job may take; a SpecError naming the field when it must be refused."""
    queue = config.queues.get(spec.queue)
    if queue is None:
        raise SpecError(f"queue: unknown queue {spec.queue!r}; known: {', '.join(sorted(config.queues))}")
    if queue.max_accelerators is not None and spec.resources.accelerators:
        smallest = min(r.count for r in spec.resources.accelerators)
        if smallest > queue.max_accelerators:
            raise SpecError(
                f"resources.accelerators: asks for {smallest} accelerators, over the quota of queue "
                f"{spec.queue!r} ({queue.max_accelerators})"
            )
    nodes = spec.num_nodes if isinstance(spec.num_nodes, int) else 1
    total_cpus = (spec.resources.cpus or 1) * nodes
    if queue.max_cpus is not None and total_cpus > queue.max_cpus:
        raise SpecError(
            f"resources.cpus: asks for {total_cpus:g} CPUs, over the quota of queue {spec.queue!r} "
            f"({queue.max_cpus:g})"
        )
    placements = candidate_placements(spec, cluster)
    if not placements:
        pools = ", ".join(_describe_pool(cluster, p.name) for p in cluster.pools)
        raise SpecError(
            f"resources: {_describe_request(spec)} can never fit any pool of {cluster.name!r}: {pools}"
        )
    return placements
