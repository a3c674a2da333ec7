"""`suanli cluster discover`: a cluster YAML from what the engine knows, for an operator to start
from. Slurm: one pool per partition and GPU GRES type (`sinfo`; a partition named after one GRES
type of its nodes takes only that type; a node in several partitions is counted in each), its
accelerators named by the catalog entry whose slug or alias is the GRES type, and `partition` /
`gres_type` set so the service sends jobs back where they were found. Node figures the engine
does not report (NICs, topology) are left to the operator; a GRES type the catalog does not know
is skipped with a note."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

from suanli.spec import SpecError
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import ExecutorError

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
