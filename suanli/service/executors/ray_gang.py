"""The driver of a gang that spans nodes on Ray (`python -m suanli.service.executors.ray_gang
GANG.json`, the Ray job's entrypoint): a placement group with one bundle per node of the placement
(STRICT_SPREAD: every bundle on a different Ray node, as the scheduler placed the gang on distinct
nodes; each bundle asks for the pool's custom resource, so only that pool's nodes take it), the job
script on each bundle with its rank and node 0's address as the rendezvous, and the gang's exit
status written once, by this driver, when every rank has ended (the worst one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def gang_spec(
    script: Path, exit_file: Path, nodes: int, cpus: float, gpus: float, resources: dict[str, float]
) -> dict[str, Any]:
    """What the driver reads: the per-node bundle (CPUs, GPUs, the pool's resource) and where to go."""
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {}), **resources}
    return {"script": str(script), "exit_file": str(exit_file), "nodes": nodes, "bundle": bundle}


def _rank(script: str, env: dict[str, str]) -> int:
    import ray

    node_env = {**os.environ, **env, "SUANLI_RAY_NODE_ID": ray.get_runtime_context().get_node_id()}
    return subprocess.run(["bash", script], env=node_env).returncode


def _address() -> str:
    import ray

    return str(ray.util.get_node_ip_address())


def main(path: str) -> int:
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    gang = json.loads(Path(path).read_text())
    bundle, nodes = gang["bundle"], gang["nodes"]
    ray.init()
    group = placement_group([bundle] * nodes, strategy="STRICT_SPREAD")
    ray.get(group.ready())  # waits until Ray holds every node of the gang at once

    def on(index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)

    master = ray.get(ray.remote(num_cpus=0)(_address).options(scheduling_strategy=on(0)).remote())
    resources = {k: v for k, v in bundle.items() if k not in {"CPU", "GPU"}}
    need = {"num_cpus": bundle["CPU"], "num_gpus": bundle.get("GPU", 0), "resources": resources}
    rank, env = ray.remote(_rank), {"MASTER_ADDR": master}
    runs = [
        rank.options(scheduling_strategy=on(i), **need).remote(
            gang["script"], {**env, "SUANLI_NODE_RANK": str(i)}
        )
        for i in range(nodes)
    ]
    codes = ray.get(runs)
    code = next((c for c in codes if c != 0), 0)
    exit_file = Path(gang["exit_file"])
    exit_file.with_suffix(".tmp").write_text(f"{code}\n")
    exit_file.with_suffix(".tmp").rename(exit_file)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
