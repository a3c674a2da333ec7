"""Admission: is a submitted job acceptable at all? Queues, quotas, and whether any pool could ever
hold it. Everything here runs before the job is written, so a rejected job leaves no trace."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from pydantic import Field

from suanli.port.platform import admit_script
from suanli.sched.launch import slice_grant
from suanli.service.executors.base import Placement
from suanli.service.store import NAME_MAX, POOL_MAX
from suanli.spec import Cluster, JobSpec, NodeType, Pool, SpecError
from suanli.spec.base import Spec
from suanli.spec.request import resolve
from suanli.spec.sharing import SHARE_MODES, ShareMode


class QueueConfig(Spec):
    """A queue and its quota: the most one job in it may ask for (None = no limit), and the ways
    its jobs may share an accelerator (docs/sharing.md)."""

    max_accelerators: int | None = Field(default=None, ge=0)
    max_cpus: float | None = Field(default=None, ge=0)
    sharing: list[ShareMode] = Field(default_factory=lambda: list(SHARE_MODES))
    fair_share: float | None = Field(
        default=None, gt=0, description="its due share of the cluster's use (Slurm fair share); None: none"
    )
    description: str = ""
    token: str | None = Field(
        default=None,
        description="bearer token a submit to this queue needs (the service's write token also does)",
    )


def default_queues() -> dict[str, QueueConfig]:
    return {
        "default": QueueConfig(description="everything else"),
        "research": QueueConfig(description="large training runs"),
        "hpc": QueueConfig(description="CPU and MPI work"),
    }


class ServiceConfig(Spec):
    queues: dict[str, QueueConfig] = Field(default_factory=default_queues)
    token: str | None = Field(default=None, description="bearer token required for writes (and /plan)")
    read_token: str | None = Field(
        default=None, description="bearer token required for reads (the write token reads too)"
    )
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="largest request body (413 above)")
    users: dict[str, str] = Field(
        default_factory=dict,
        description="bearer token → user name: each job records its submitter (else anonymous); each writes",
    )

    def fair_shares(self) -> dict[str, float]:
        """Queue → fair share, for the queues that set one (the policy decays their usage)."""
        return {name: q.fair_share for name, q in self.queues.items() if q.fair_share is not None}


THIS_MACHINE = "local"  # the default cluster's name, pool and node type


ENGINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # a partition, GRES type or Ray resource
# nodes in one cluster file: more than any machine built (Fugaku has 158,976 A64FX nodes, RIKEN R-CCS)
# and few enough for the scheduler's model of every node
MAX_CLUSTER_NODES = 200_000


def check_cluster(cluster: Cluster, source: str) -> Cluster:
    """A cluster file the service can run, beyond its schema: pool names the store holds, engine names
    that go unquoted into an `#SBATCH` line or a Ray resource, a node count the scheduler can model."""
    for i, pool in enumerate(cluster.pools):
        if len(pool.name) > POOL_MAX:
            raise SpecError(f"{source}: pools[{i}].name: {len(pool.name)} characters, at most {POOL_MAX}")
        for field in ("partition", "gres_type"):
            value = getattr(pool, field)
            if value is not None and not ENGINE_NAME.fullmatch(value):
                raise SpecError(
                    f"{source}: pools[{i}].{field}: {value!r} is not a name an engine takes "
                    "(a letter or digit, then letters, digits, _ . -)"
                )
    total = sum(pool.nodes for pool in cluster.pools)
    if total > MAX_CLUSTER_NODES:
        raise SpecError(f"{source}: pools: {total} nodes in all, at most {MAX_CLUSTER_NODES:,}")
    return cluster


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
        name=THIS_MACHINE,
        pools=[Pool(name=THIS_MACHINE, node_type=THIS_MACHINE, nodes=1)],
        node_types=[node],
    )


def fit_to_cluster(spec: JobSpec, cluster: Cluster) -> JobSpec:
    """The request as the cluster can take it. On the default cluster (this machine, one CPU node) a
    CPU job runs on it whatever pool, node count or CPUs it names, so a job written for a site's
    CPU partition (examples/jobs/hpc-lammps.yaml) runs here scaled down to the one node; on a
    cluster file the request stands as written."""
    if cluster.name != THIS_MACHINE or spec.resources.accelerators:
        return spec
    cores = float(cluster.node_type_of(THIS_MACHINE).cpu_cores)
    resources = spec.resources.model_copy(
        update={"pool": None, "cpus": min(spec.resources.cpus or 1.0, cores)}
    )
    return spec.model_copy(update={"num_nodes": 1, "resources": resources})


def candidate_placements(spec: JobSpec, cluster: Cluster) -> list[Placement]:
    """Every pool shape that could ever hold the job (when the cluster is empty), best first:
    accelerator jobs in the order of their alternatives, CPU jobs on CPU-only pools first.
    SpecError, one line, when no pool can ever hold it (`suanli.spec.request.resolve`)."""
    spec = fit_to_cluster(spec, cluster)
    cpus = spec.resources.cpus or 1.0
    return [
        Placement(host.pool, host.nodes, option.count, option.accel_type, cpus)
        for option in resolve(spec, cluster).options
        for host in option.hosts
    ]


def admit(spec: JobSpec, cluster: Cluster, config: ServiceConfig) -> list[Placement]:
    """The placements a job may take; a SpecError naming the field when it must be refused."""
    spec = fit_to_cluster(spec, cluster)
    if len(spec.name) > NAME_MAX:
        raise SpecError(f"name: {len(spec.name)} characters, at most {NAME_MAX}")
    queue = config.queues.get(spec.queue)
    if queue is None:
        raise SpecError(f"queue: unknown queue {spec.queue!r}; known: {', '.join(sorted(config.queues))}")
    nodes = spec.num_nodes if isinstance(spec.num_nodes, int) else 1
    total_cpus = (spec.resources.cpus or 1) * nodes
    if queue.max_cpus is not None and total_cpus > queue.max_cpus:
        raise SpecError(
            f"resources.cpus: asks for {total_cpus:g} CPUs, over the quota of queue {spec.queue!r} "
            f"({queue.max_cpus:g})"
        )
    if spec.sharing.mode not in queue.sharing:
        raise SpecError(
            f"sharing.mode: queue {spec.queue!r} allows {', '.join(queue.sharing)}, not {spec.sharing.mode}"
        )
    placements = _sliceable(spec, _within_quota(spec, queue, candidate_placements(spec, cluster)))
    return _running_the_script(spec, cluster, placements)


def _running_the_script(spec: JobSpec, cluster: Cluster, placements: list[Placement]) -> list[Placement]:
    """A job that names a script keeps the pools that can run it, ported where `port: auto`
    (docs/porting.md); without a `run`, its command runs the granted pool's copy."""
    pools, command = admit_script(spec, cluster, [p.pool for p in placements])
    if spec.run is None:
        spec.run = command
    return [p for p in placements if p.pool in pools]


def _within_quota(spec: JobSpec, queue: QueueConfig, placements: list[Placement]) -> list[Placement]:
    """The placements whose alternative asks for no more accelerators than the queue allows one
    job (`{H100: 8, A100: 16}` under a quota of 8 may only take the H100)."""
    quota = queue.max_accelerators
    within = [p for p in placements if quota is None or p.accelerators <= quota]
    if not within:
        smallest = min(p.accelerators for p in placements)
        raise SpecError(
            f"resources.accelerators: asks for {smallest} accelerators, over the quota of queue "
            f"{spec.queue!r} ({quota})"
        )
    return within


def _sliceable(spec: JobSpec, placements: list[Placement]) -> list[Placement]:
    """The placements whose accelerator can enforce the job's sharing; SpecError with the first
    accelerator's reason when none can."""
    kept, refusals = [], []
    for placement in placements:
        per_node = -(-placement.accelerators // placement.nodes) if placement.accelerators else 0
        try:
            slice_grant(spec.sharing, placement.accelerator, per_node)
        except SpecError as exc:
            refusals.append(str(exc))
            continue
        kept.append(placement)
    if refusals and not kept:
        raise SpecError(refusals[0])
    return kept
