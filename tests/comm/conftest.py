from pathlib import Path

import pytest

from suanli.spec import Cluster, load

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clusters"


@pytest.fixture(scope="session")
def hgx_cluster() -> Cluster:
    return load(Cluster, EXAMPLES / "hgx-h100-1024.yaml")


@pytest.fixture(scope="session")
def mixed_cluster() -> Cluster:
    return load(Cluster, EXAMPLES / "mixed-center.yaml")


def one_pool_cluster(node_type: str, nodes: int, **fabric) -> Cluster:  # type: ignore[no-untyped-def]
    return Cluster(
        name=f"{node_type}-x{nodes}",
        pools=[{"name": "p", "node_type": node_type, "nodes": nodes}],
        fabric=fabric or {},
    )
