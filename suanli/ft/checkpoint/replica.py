"""Replica placement: every node's snapshots get a second copy in the memory of the next node (a ring).

With nodes 0..n-1, node i replicates to node (i + 1) mod n, so losing any one node loses at most
one copy of each snapshot (the same ring Gemini places its checkpoint replicas on, Wang et al.,
SOSP 2023). With one node there is no replica.
"""

from __future__ import annotations


def replica_node(node_id: int, nodes: int) -> int | None:
    """The node that holds a copy of `node_id`'s snapshots, or None on a single node."""
    if not 0 <= node_id < nodes:
        raise ValueError(f"node_id must be in [0, {nodes}), got {node_id}")
    return None if nodes == 1 else (node_id + 1) % nodes


def holders(node_id: int, nodes: int) -> list[int]:
    """Nodes that may hold a rank's snapshots, in the order a restore should try them."""
    peer = replica_node(node_id, nodes)
    return [node_id] if peer is None else [node_id, peer]
