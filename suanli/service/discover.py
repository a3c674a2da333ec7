"""`suanli cluster discover`: a cluster YAML from what the engine knows, for an operator to start
from. Slurm: one pool per partition and GPU GRES type (`sinfo`; a partition named after one GRES
type of its nodes takes only that type; a node in several partitions is counted in each), its
accelerators named by the catalog entry whose slug or alias is the GRES type, and `partition` /
`gres_type` set so the service sends jobs back where they were found. Ray: one pool per custom
resource the catalog knows as an accelerator and node shape (Ray's node table: alive nodes, their
`resources_total`), `gres_type` set to the resource so runs ask for it again; nodes with no such
resource form a CPU pool. Node figures the engine does not report (NICs, topology) are left to the
operator; a GRES type or GPU node the catalog cannot name is skipped with a note."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Callable
from typing import Any

from suanli.spec import SpecError
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import ExecutorError, one_line

SINFO_FORMAT = "%R|%D|%c|%m|%G"  # partition | nodes | CPUs per node | memory MiB per node | GRES
GRES = re.compile(r"gpu:([^:,(]+):(\d+)")


def slurm_cluster(sinfo: str, name: str) -> tuple[dict[str, Any], list[str]]:
    """The cluster (as YAML-ready data) and notes on what was skipped, from `sinfo -h -o SINFO_FORMAT`."""
    pools, node_types, notes = [], {}, []
    for line in sinfo.splitlines():
        if not line.strip():
            continue
        partition, nodes, cpus, memory_mib, gres = line.split("|")
        partition = partition.rstrip("*")
        kinds = GRES.findall(gres)
        named = [k for k in kinds if k[0] == partition]
        kinds = named or kinds  # a partition named after one GRES type of its nodes is that type's pool
        for gres_type, per_node in kinds or [(None, "0")]:
            accelerator = None
            if gres_type is not None:
                try:
                    accelerator = CATALOG.accelerator(gres_type).slug
                except SpecError:
                    notes.append(
                        f"partition {partition}: GRES type {gres_type!r} is not in the catalog; skipped"
                    )
                    continue
            slug = f"{partition}-{gres_type}" if len(kinds) > 1 else partition
            node_types[slug] = {
                "slug": slug,
                "name": f"a node of Slurm partition {partition}",
                **(
                    {"accelerator": accelerator, "accelerators_per_node": int(per_node)}
                    if accelerator
                    else {}
                ),
                "cpu_cores": int(cpus.rstrip("+")),
                "memory_gb": round(int(memory_mib.rstrip("+")) / 1024, 1),
                "source": f"sinfo: partition {partition}, GRES {gres}",
            }
            pool = {"name": slug, "node_type": slug, "nodes": int(nodes), "partition": partition}
            pools.append(pool | ({"gres_type": gres_type} if gres_type else {}))
    if not pools:
        raise ExecutorError("sinfo: no partitions found")
    return {"name": name, "pools": pools, "node_types": list(node_types.values())}, notes


def run_sinfo(run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> str:
    try:
        result = run(["sinfo", "-h", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ExecutorError("slurm: sinfo not found: is Slurm installed on this host?") from None
    if result.returncode != 0:
        raise ExecutorError(f"sinfo: {(result.stderr or result.stdout).strip().splitlines()[:1]}")
    return result.stdout


RAY_BUILTIN = {"CPU", "GPU", "memory", "object_store_memory"}  # Ray's own resources, never a pool's


def _ray_accelerator(resource: str) -> str | None:
    if resource in RAY_BUILTIN or ":" in resource:  # node:IP, accelerator_type:X are Ray's labels
        return None
    try:
        return CATALOG.accelerator(resource).slug
    except SpecError:
        return None


def ray_cluster(nodes: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], list[str]]:
    """The cluster (as YAML-ready data) and notes on what was skipped, from Ray's node table (each
    node's `state`, `node_ip` and `resources_total`): a pool per accelerator resource and node shape."""
    shapes: dict[tuple[str | None, int, int, float], int] = {}
    accelerators: dict[str, str] = {}
    notes = []
    for node in nodes:
        if node.get("state") != "ALIVE":
            continue
        resources = node.get("resources_total") or {}
        cpus, memory_gb = int(resources.get("CPU", 0)), round(resources.get("memory", 0) / 2**30, 1)
        kinds = [(r, int(n)) for r, n in sorted(resources.items()) if n >= 1 and _ray_accelerator(r)]
        if not kinds and resources.get("GPU"):
            notes.append(
                f"node {node.get('node_ip')}: {resources['GPU']:g} GPUs but no custom resource naming "
                "the accelerator (ray start --resources '{\"h100\": 8}'); skipped"
            )
            continue
        for resource, count in kinds or [(None, 0)]:
            if resource:
                accelerators[resource] = _ray_accelerator(resource) or ""
            key = (resource, count, cpus, memory_gb)
            shapes[key] = shapes.get(key, 0) + 1
    if not shapes:
        raise ExecutorError("ray: no alive nodes found")
    shapes_of: dict[str | None, int] = {}
    for resource, *_ in shapes:
        shapes_of[resource] = shapes_of.get(resource, 0) + 1
    pools, node_types, seen = [], [], dict.fromkeys(shapes_of, 0)
    for (resource, count, cpus, memory_gb), nodes_of_shape in shapes.items():
        base = re.sub(r"[^A-Za-z0-9_.\-]", "-", resource).lower() if resource else "cpu"
        seen[resource] += 1
        slug = f"{base}-{seen[resource]}" if shapes_of[resource] > 1 else base
        node_types.append(
            {
                "slug": slug,
                "name": f"a Ray node with {f'{count} {resource}' if resource else 'no accelerators'}",
                **(
                    {"accelerator": accelerators[resource], "accelerators_per_node": count}
                    if resource
                    else {}
                ),
                "cpu_cores": max(1, cpus),
                "memory_gb": max(1.0, memory_gb),
                "source": f"Ray node table: resources {resource or 'CPU'}, {cpus} CPUs, {memory_gb} GB",
            }
        )
        pool = {"name": slug, "node_type": slug, "nodes": nodes_of_shape}
        pools.append(pool | ({"gres_type": resource} if resource else {}))
    return {"name": name, "pools": pools, "node_types": node_types}, notes


def ray_nodes(address: str) -> list[dict[str, Any]]:
    """Ray's node table through its State API (the dashboard at `address`)."""
    from ray.util.state import list_nodes

    try:
        return [dataclasses.asdict(node) for node in list_nodes(address=address, limit=10_000)]
    except Exception as exc:  # Ray raises its own kinds for an unreachable or refusing dashboard
        raise ExecutorError(
            f"--ray-address: cannot read Ray's node table at {address}: {one_line(str(exc))}"
        ) from None
