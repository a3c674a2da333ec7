"""Where a gang goes: topology-aware packing (fewest nodes, one leaf switch) and fractional packing.

With the cluster's spec at hand (`ClusterState.from_cluster`), a whole-GPU gang's candidate placements
are priced with the collective model on the same links graph and leaf switches the model uses
(`comm.estimate.placed_collective_time_s`): the packing choice, the best GPUs of every node that can
hold the gang (island first), and the emptiest nodes of each leaf. The fastest reference all-reduce
wins, packing on a tie. The scheduler does not know a job's model (no oracle), so the reference is a
256 MiB gradient all-reduce: large enough that placements rank by the bandwidth they leave the job.
"""

from __future__ import annotations

import weakref
from itertools import chain

from suanli.comm.estimate import placed_collective_time_s
from suanli.comm.links import best_members
from suanli.sched.cluster_state import ClusterState, Slot
from suanli.sched.fractional import FULL_MILLI, mig_model, mig_place, mig_profile, share_milli
from suanli.sched.job import SchedJob
from suanli.spec.cluster import Cluster

REFERENCE_COLLECTIVE = "all_reduce"
REFERENCE_BYTES = 256 * 2**20


def find_slots(state: ClusterState, job: SchedJob, accel_type: str) -> tuple[Slot, ...] | None:
    """A placement of the whole gang on `accel_type`, or None: never a partial gang."""
    node_ids = state.by_type.get(accel_type)
    if not node_ids:
        return None
    if job.is_fractional:
        return _fractional(state, job, accel_type, node_ids)
    need = job.width_on(accel_type)
    if state.free_whole_by_type.get(accel_type, 0) < need:
        return None
    packed = _pack_whole(state, need, accel_type)
    if packed is None or state.cluster is None or need < 2:
        return packed
    candidates = [packed, *_alternatives(state, need, accel_type)]
    return min(candidates, key=lambda slots: placement_time_s(state, slots))


def _pack_whole(state: ClusterState, need: int, accel_type: str) -> tuple[Slot, ...] | None:
    nodes = state.nodes
    # Fits in one node: best fit (the node with the fewest free GPUs that still holds the gang; of
    # those, the first in pool order).
    buckets = state.nodes_by_whole_free[accel_type]
    for free in range(need, len(buckets)):
        if buckets[free]:
            return _take(state, [min(buckets[free])], need)
    # Spans nodes: the leaf with the least spare room that holds it, emptiest nodes first.
    leaves: dict[int, list[int]] = {}
    for i in _holding(state, accel_type, 1):
        leaves.setdefault(nodes[i].leaf, []).append(i)
    fitting = [(sum(nodes[i].whole_free for i in ix), leaf) for leaf, ix in leaves.items()]
    fitting = [(free, leaf) for free, leaf in fitting if free >= need]
    candidates = leaves[min(fitting)[1]] if fitting else [i for ix in leaves.values() for i in ix]
    candidates = sorted(candidates, key=lambda i: -nodes[i].whole_free)
    return _take(state, candidates, need)


def placement_time_s(state: ClusterState, slots: tuple[Slot, ...]) -> float:
    """Modelled time of the reference all-reduce over these slots (ties between equal placements
    are broken by the order of the candidates)."""
    by_node: dict[int, list[int]] = {}
    for slot in slots:
        by_node.setdefault(slot.node, []).append(slot.gpu)
    first = state.nodes[slots[0].node]
    members = tuple(sorted(tuple(sorted(gpus)) for gpus in by_node.values()))
    leaves = len({state.nodes[i].leaf for i in by_node})
    assert state.cluster is not None
    return _placed_time_s(state.cluster, first.pool, members, leaves)


def placement_speed(state: ClusterState, job: SchedJob, accel_type: str, slots: tuple[Slot, ...]) -> float:
    """The fraction of its packed speed a whole-GPU gang keeps on `slots`. Its step splits into
    compute and non-overlapped gradient sync (Sia's profiles measure `sync_time` inside `step_time`,
    Jayaram Subramanya et al., SOSP'23); the sync share `job.comm_share[type]`, measured packed on the
    fewest nodes, stretches by the modelled reference all-reduce time on `slots` over that on the
    packed shape (same collective model, links and leaf switches as placement), the rest is unchanged.
    1.0 when the job declares no sync share or the cluster's spec is unknown."""
    share = job.comm_share.get(accel_type, 0.0)
    if not share or state.cluster is None or len(slots) < 2 or job.is_fractional:
        return 1.0
    first = state.nodes[slots[0].node]
    full, rest = divmod(len(slots), first.slots)
    packed = (tuple(range(first.slots)),) * full + ((tuple(range(rest)),) if rest else ())
    packed_s = _placed_time_s(state.cluster, first.pool, packed, 1)
    stretch = max(1.0, placement_time_s(state, slots) / packed_s)
    return 1.0 / (1.0 - share + share * stretch)


_TIMES: dict[tuple[int, str, tuple[tuple[int, ...], ...], int], tuple[weakref.ref, float]] = {}


def _placed_time_s(cluster: Cluster, pool: str, members: tuple[tuple[int, ...], ...], leaves: int) -> float:
    """Memoised per (cluster object, pool, members, leaves): a simulation prices the same shapes often."""
    if _symmetric(cluster, pool):  # any k GPUs of such a node price alike: one key per shape
        members = tuple(sorted(tuple(range(len(gpus))) for gpus in members))
    key = (id(cluster), pool, members, leaves)
    hit = _TIMES.get(key)
    if hit is not None and hit[0]() is cluster:
        return hit[1]
    time_s = placed_collective_time_s(
        cluster, pool, REFERENCE_COLLECTIVE, REFERENCE_BYTES, list(members), leaves
    )
    if len(_TIMES) > 65536:
        _TIMES.clear()
    _TIMES[key] = (weakref.ref(cluster), time_s)
    return time_s


def _symmetric(cluster: Cluster, pool: str) -> bool:
    """Every accelerator of the pool's nodes reaches every other through one switch at one
    bandwidth (`comm.links.intra_graph`), so which GPUs of a node a gang takes never matters."""
    return cluster.node_type_of(pool).topology.kind == "nvswitch"


def _holding(state: ClusterState, accel_type: str, at_least: int) -> list[int]:
    """The nodes of `accel_type` with at least `at_least` whole free GPUs, in pool order."""
    return sorted(chain.from_iterable(state.nodes_by_whole_free[accel_type][at_least:]))


def _alternatives(state: ClusterState, need: int, accel_type: str) -> list[tuple[Slot, ...]]:
    nodes = state.nodes
    assert state.cluster is not None
    result: list[tuple[Slot, ...]] = []
    seen: set[tuple[str, tuple[int, ...]]] = set()
    # One node: its best GPUs, one candidate per (pool, free GPUs) pattern.
    for i in _holding(state, accel_type, need):
        node = nodes[i]
        free = tuple(g for g, milli in enumerate(node.free_milli) if milli == FULL_MILLI)
        symmetric = _symmetric(state.cluster, node.pool)  # its nodes' candidates all tie: one is enough
        if (node.pool, () if symmetric else free) in seen:
            continue
        seen.add((node.pool, () if symmetric else free))
        gpus = free[:need] if symmetric else best_members(state.cluster.node_type_of(node.pool), free, need)
        result.append(tuple(Slot(i, g) for g in gpus))
    if result:
        return result
    leaves: dict[int, list[int]] = {}
    for i in _holding(state, accel_type, 1):  # across nodes: the emptiest of each leaf, and of the pool
        leaves.setdefault(nodes[i].leaf, []).append(i)
    for group in [*leaves.values(), [i for ix in leaves.values() for i in ix]]:
        if sum(nodes[i].whole_free for i in group) >= need:
            taken = _take(state, sorted(group, key=lambda i: -nodes[i].whole_free), need)
            if taken is not None:
                result.append(taken)
    return result


def _take(state: ClusterState, node_ids: list[int], need: int) -> tuple[Slot, ...] | None:
    slots: list[Slot] = []
    for i in node_ids:
        for gpu, milli in enumerate(state.nodes[i].free_milli):
            if milli == FULL_MILLI:
                slots.append(Slot(i, gpu))
                if len(slots) == need:
                    return tuple(slots)
    return None


def _fractional(
    state: ClusterState, job: SchedJob, accel_type: str, node_ids: list[int]
) -> tuple[Slot, ...] | None:
    """Each of the job's `gpus` shares goes on the fullest GPU that still has room (best fit), so that
    whole GPUs stay free for gangs; only onto a GPU empty or holding the same sharing mode (MIG
    instances and MPS clients cannot share a GPU); MIG shares also need a free, aligned slice range."""
    mode = job.sharing.mode
    milli = share_milli(job.sharing, accel_type)
    profile = mig_profile(accel_type, job.sharing.mig_profile or "") if mode == "mig" else None
    model = mig_model(accel_type) if mode == "mig" else None
    taken: set[tuple[int, int]] = set()
    slots: list[Slot] = []
    for _ in range(job.gpus_on(accel_type)):
        best: tuple[int, int, int, int | None] | None = None
        for i in node_ids:
            node = state.nodes[i]
            for gpu, free in enumerate(node.free_milli):
                if free < milli or (i, gpu) in taken or node.modes[gpu] not in ("", mode):
                    continue
                start = None
                if profile is not None and model is not None:
                    start = mig_place(node.mig[gpu], profile, model)
                    if start is None:
                        continue
                if best is None or free < best[0]:
                    best = (free, i, gpu, start)
        if best is None:
            return None
        _, i, gpu, start = best
        taken.add((i, gpu))
        slots.append(Slot(i, gpu, milli, start, profile.memory_slices if profile else 0, mode))
    return tuple(slots)


def nodes_and_leaves(state: ClusterState, slots: tuple[Slot, ...]) -> tuple[int, int]:
    nodes = {s.node for s in slots}
    return len(nodes), len({state.nodes[i].leaf for i in nodes})
