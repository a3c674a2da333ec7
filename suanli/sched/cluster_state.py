"""Free and used accelerators of a `Cluster`, node by node, GPU by GPU (in 1/1000 shares)."""

from __future__ import annotations

from dataclasses import dataclass, field

from suanli.comm.topology import node_leaves
from suanli.sched.fractional import FULL_MILLI
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError

CPU_TYPE = "cpu"


@dataclass
class Node:
    name: str
    pool: str
    accel_type: str
    leaf: int
    free_milli: list[int]
    mig: list[list[tuple[int, int]]] = field(default_factory=list)  # per GPU: (start, size)
    modes: list[str] = field(default_factory=list)  # per GPU: the sharing mode it holds, "" when empty
    whole_free: int = -1  # GPUs with nothing on them, kept up to date by bind/release

    def __post_init__(self) -> None:
        self.whole_free = sum(1 for milli in self.free_milli if milli == FULL_MILLI)

    @property
    def slots(self) -> int:
        return len(self.free_milli)


@dataclass(frozen=True)
class Slot:
    """One piece of a placement: `milli` of GPU `gpu` on node `node` (an index into `nodes`)."""

    node: int
    gpu: int
    milli: int = FULL_MILLI
    mig_start: int | None = None
    mig_size: int = 0
    mode: str = "exclusive"  # a GPU holds one sharing mode at a time (MIG and MPS cannot mix)


@dataclass
class ClusterState:
    nodes: list[Node]
    memory_gb: dict[str, float]
    held: dict[str, tuple[Slot, ...]] = field(default_factory=dict)
    by_type: dict[str, list[int]] = field(default_factory=dict)
    free_whole_by_type: dict[str, int] = field(default_factory=dict)
    free_milli_by_type: dict[str, int] = field(default_factory=dict)  # all free shares, summed
    capacity: dict[str, int] = field(default_factory=dict)
    # per type, bucket k holds the nodes with k whole free GPUs: best-fit placement reads the fullest
    # node that still holds a gang without walking every node of the pool
    nodes_by_whole_free: dict[str, list[set[int]]] = field(default_factory=dict)
    cluster: Cluster | None = None  # the spec it came from: topology-aware placement prices with it

    def __post_init__(self) -> None:
        for index, node in enumerate(self.nodes):
            self.by_type.setdefault(node.accel_type, []).append(index)
            if not node.mig:
                node.mig = [[] for _ in node.free_milli]
            if not node.modes:
                node.modes = ["" if milli == FULL_MILLI else "exclusive" for milli in node.free_milli]
        self.free_whole_by_type = {
            t: sum(self.nodes[i].whole_free for i in ix) for t, ix in self.by_type.items()
        }
        self.free_milli_by_type = {
            t: sum(sum(self.nodes[i].free_milli) for i in ix) for t, ix in self.by_type.items()
        }
        self.capacity = {t: sum(self.nodes[i].slots for i in ix) for t, ix in self.by_type.items()}
        for t, ix in self.by_type.items():
            buckets: list[set[int]] = [set() for _ in range(max(self.nodes[i].slots for i in ix) + 1)]
            for i in ix:
                buckets[self.nodes[i].whole_free].add(i)
            self.nodes_by_whole_free[t] = buckets

    @classmethod
    def from_cluster(cls, cluster: Cluster) -> ClusterState:
        """Nodes in pool order, under the leaf switches the collective model gives them
        (`comm.topology.node_leaves`: one leaf size for both)."""
        leaves = node_leaves(cluster)
        nodes: list[Node] = []
        memory: dict[str, float] = {}
        for pool in cluster.pools:
            node_type = cluster.node_type_of(pool.name)
            accel = cluster.accelerator_of(pool.name)
            kind = accel.slug if accel else CPU_TYPE
            slots = node_type.accelerators_per_node or 1
            memory[kind] = accel.memory_gb if accel and accel.memory_gb else 0.0
            for i in range(pool.nodes):
                leaf = leaves[len(nodes)]
                nodes.append(Node(f"{pool.name}-{i}", pool.name, kind, leaf, [FULL_MILLI] * slots))
        return cls(nodes=nodes, memory_gb=memory, cluster=cluster)

    def busy_accelerators(self) -> tuple[int, int]:
        """(accelerators holding any job, all accelerators), CPU nodes not counted."""
        types = [t for t in self.capacity if t != CPU_TYPE]
        total = sum(self.capacity[t] for t in types)
        return total - sum(self.free_whole_by_type[t] for t in types), total

    def bind(self, job_id: str, slots: tuple[Slot, ...]) -> None:
        if job_id in self.held:
            raise SpecError(f"job {job_id} is already placed")
        for slot in slots:
            node = self.nodes[slot.node]
            if node.free_milli[slot.gpu] < slot.milli:
                raise SpecError(f"job {job_id}: {node.name} GPU {slot.gpu} has no room for {slot.milli}/1000")
            if node.modes[slot.gpu] not in ("", slot.mode):
                raise SpecError(
                    f"job {job_id}: {node.name} GPU {slot.gpu} holds {node.modes[slot.gpu]} jobs;"
                    f" a {slot.mode} job cannot share it"
                )
        for slot in slots:
            node = self.nodes[slot.node]
            was_whole = node.free_milli[slot.gpu] == FULL_MILLI
            node.free_milli[slot.gpu] -= slot.milli
            self.free_milli_by_type[node.accel_type] -= slot.milli
            node.modes[slot.gpu] = slot.mode
            if slot.mig_start is not None:
                node.mig[slot.gpu].append((slot.mig_start, slot.mig_size))
            if was_whole:
                self._move(slot.node, node, -1)
        self.held[job_id] = slots

    def release(self, job_id: str) -> None:
        for slot in self.held.pop(job_id, ()):
            node = self.nodes[slot.node]
            node.free_milli[slot.gpu] += slot.milli
            self.free_milli_by_type[node.accel_type] += slot.milli
            if slot.mig_start is not None:
                node.mig[slot.gpu].remove((slot.mig_start, slot.mig_size))
            if node.free_milli[slot.gpu] == FULL_MILLI:
                node.modes[slot.gpu] = ""
                self._move(slot.node, node, +1)

    def _move(self, index: int, node: Node, change: int) -> None:
        """The node's count of whole free GPUs changes by `change`; its bucket and its type's sum follow."""
        buckets = self.nodes_by_whole_free[node.accel_type]
        buckets[node.whole_free].discard(index)
        node.whole_free += change
        buckets[node.whole_free].add(index)
        self.free_whole_by_type[node.accel_type] += change

    def describe(self, slots: tuple[Slot, ...]) -> tuple[tuple[str, int], ...]:
        """(node name, GPUs held there) per node, in order."""
        counts: dict[str, int] = {}
        for slot in slots:
            name = self.nodes[slot.node].name
            counts[name] = counts.get(name, 0) + 1
        return tuple(counts.items())
