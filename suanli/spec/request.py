"""One resolution of a job's resource request against a cluster: which alternatives a cluster can
ever host, on which pools, with how many accelerators and nodes.

SkyPilot's semantics: `resources.accelerators` lists alternatives, any one of which will do, each with
its own count (`{H100: 8, A100: 16}` is 8 H100 *or* 16 A100). A name resolves against the
accelerators the cluster file defines inline first, then the catalog; a memory range (`64GB..`) or
`any` matches every pool whose accelerator qualifies. A job that names no accelerator is a CPU job.
The planner, admission, the scheduler and the service all read a request through `resolve`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from suanli.spec.accelerator import Accelerator
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError
from suanli.spec.job import AcceleratorRequest, JobSpec


@dataclass(frozen=True)
class Host:
    """A pool that can hold the gang of one option when it is empty."""

    pool: str
    nodes: int  # nodes the gang spans there
    per_node: int  # accelerators per node of the pool


@dataclass(frozen=True)
class Option:
    """One accelerator type the job may run on, with its own count. `accelerator` is None (and
    `count` 0) for a CPU job; a memory range gives one option per qualifying type."""

    alternative: int  # index into resources.accelerators (0 for a CPU job)
    request: str  # the alternative as written, e.g. `A100:16`
    accelerator: Accelerator | None
    count: int
    count_max: int | None
    hosts: tuple[Host, ...]

    @property
    def accel_type(self) -> str | None:
        return self.accelerator.slug if self.accelerator else None

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(h.pool for h in self.hosts)


@dataclass(frozen=True)
class Refusal:
    """An alternative no pool of the cluster can ever host, and why."""

    alternative: int
    request: str
    reason: str


@dataclass(frozen=True)
class Resolution:
    """The options a cluster offers a request, in the order of the request's alternatives."""

    options: tuple[Option, ...]
    refused: tuple[Refusal, ...]

    @property
    def counts_by_type(self) -> dict[str, int]:
        """Accelerators the gang needs per type (the first alternative wins where two name the same type)."""
        counts: dict[str, int] = {}
        for option in self.options:
            if option.accel_type is not None:
                counts.setdefault(option.accel_type, option.count)
        return counts


def describe_request(job: JobSpec) -> str:
    """The request as the user wrote it: `H100:8 or A100:16`, or nodes × CPUs for a CPU job."""
    if job.resources.accelerators:
        return " or ".join(str(r) for r in job.resources.accelerators)
    nodes = job.num_nodes if isinstance(job.num_nodes, int) else 1
    return f"{nodes} node(s) × {job.resources.cpus or 1:g} CPUs"


def resolve(job: JobSpec, cluster: Cluster) -> Resolution:
    """Every option `cluster` can ever offer `job` (an empty cluster, the pin to `resources.pool`
    respected). SpecError, one line naming the field, for an unknown accelerator or pool, and one
    line naming the request when no pool can ever host any alternative."""
    pools = pinned_pools(job, cluster)
    options: list[Option] = []
    refused: list[Refusal] = []
    if not job.resources.accelerators:
        hosts = tuple(
            host
            for pool in sorted(pools, key=lambda p: not cluster.node_type_of(p).is_cpu_only)
            if (host := _host(job, cluster, pool, 0)) is not None
        )
        if hosts:
            options.append(Option(0, describe_request(job), None, 0, None, hosts))
        else:
            refused.append(Refusal(0, describe_request(job), _largest_node(cluster, pools)))
    for index, request in enumerate(job.resources.accelerators):
        named = _named(request, cluster, index)
        by_type: dict[str, list[str]] = {}
        for pool in pools:
            accelerator = cluster.accelerator_of(pool)
            if accelerator is not None and _matches(request, named, accelerator):
                by_type.setdefault(accelerator.slug, []).append(pool)
        found = False
        for matching in by_type.values():
            hosts = tuple(h for p in matching if (h := _host(job, cluster, p, request.count)) is not None)
            if hosts:
                accelerator = cluster.accelerator_of(matching[0])
                options.append(
                    Option(index, str(request), accelerator, request.count, request.count_max, hosts)
                )
                found = True
        if not found:
            reason = _why_not(job, cluster, request, named, by_type)
            refused.append(Refusal(index, str(request), reason))
    if not options:
        why = "; ".join(f"{r.request}: {r.reason}" for r in refused)
        raise SpecError(
            f"resources: {describe_request(job)} can never fit any pool of {cluster.name!r} ({why})"
        )
    return Resolution(tuple(options), tuple(refused))


def pinned_pools(job: JobSpec, cluster: Cluster) -> list[str]:
    """The pools the job may use: the one `resources.pool` pins it to, else all."""
    known = [p.name for p in cluster.pools]
    pin = job.resources.pool
    if pin is None:
        return known
    if pin not in known:
        raise SpecError(f"resources.pool: unknown pool {pin!r}; known: {', '.join(known)}")
    return [pin]


def _named(request: AcceleratorRequest, cluster: Cluster, index: int) -> Accelerator | None:
    if request.name is None:
        return None
    return cluster.find_accelerator(request.name, field=f"resources.accelerators[{index}]")


def _matches(request: AcceleratorRequest, named: Accelerator | None, accelerator: Accelerator) -> bool:
    if named is not None:
        return named.slug == accelerator.slug
    if request.min_memory_gb is None and request.max_memory_gb is None:
        return True  # `any`
    if accelerator.memory_gb is None:
        return False
    low, high = request.min_memory_gb or 0.0, request.max_memory_gb or math.inf
    return low <= accelerator.memory_gb <= high


def _host(job: JobSpec, cluster: Cluster, pool: str, count: int) -> Host | None:
    """The pool as a host for `count` accelerators (0: a CPU job), or None when it cannot hold
    the gang: too few nodes or accelerators per node, too few CPUs or too little host memory."""
    node = cluster.node_type_of(pool)
    per_node = node.accelerators_per_node
    if count and not per_node:
        return None
    fixed = job.num_nodes if isinstance(job.num_nodes, int) else None
    nodes = fixed or (math.ceil(count / per_node) if count else 1)
    fits = (
        nodes <= cluster.pool(pool).nodes
        and math.ceil(count / nodes) <= per_node
        and (job.resources.cpus or 1.0) <= node.cpu_cores
        and (job.resources.memory_gb or 0.0) <= node.memory_gb
    )
    return Host(pool, nodes, per_node) if fits else None


def _why_not(
    job: JobSpec,
    cluster: Cluster,
    request: AcceleratorRequest,
    named: Accelerator | None,
    by_type: dict[str, list[str]],
) -> str:
    """One line: why no pool hosts the alternative."""
    if not by_type:
        what = named.slug if named else str(request).rsplit(":", 1)[0]
        return f"no pool has {what}"
    largest = max((p for pools in by_type.values() for p in pools), key=cluster.accelerator_count)
    have = cluster.accelerator_count(largest)
    node = cluster.node_type_of(largest)
    if have < request.count:
        return f"the largest matching pool ({largest}) has {have}"
    if isinstance(job.num_nodes, int) and job.num_nodes * node.accelerators_per_node < request.count:
        return f"{job.num_nodes} node(s) of pool {largest} hold {job.num_nodes * node.accelerators_per_node}"
    return f"pool {largest} nodes have {node.cpu_cores} CPUs and {node.memory_gb:g} GB, or too few nodes"


def _largest_node(cluster: Cluster, pools: list[str]) -> str:
    largest = max(pools, key=lambda p: cluster.node_type_of(p).cpu_cores)
    node = cluster.node_type_of(largest)
    return (
        f"the largest nodes (pool {largest}, {cluster.pool(largest).nodes} of them) have "
        f"{node.cpu_cores} CPUs and {node.memory_gb:g} GB"
    )
