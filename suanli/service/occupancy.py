"""What every accelerator holds right now, read from the scheduler's own state (its bindings are
the truth the service places by): for the node grid and the per-GPU metrics."""

from __future__ import annotations

from typing import Any

from suanli.sched.fractional import FULL_MILLI
from suanli.service.scheduling import SuanliScheduler


def gpu_grid(scheduler: SuanliScheduler) -> list[dict[str, Any]]:
    """Every node with each accelerator's state — idle, busy (one job holds it whole), fractional
    (a share of it is held: MIG, MPS or time-slicing) — and the service ids of the jobs on it."""
    state = scheduler.inner.cluster
    shares: dict[tuple[int, int], dict[int, float]] = {}
    for held_id, slots in state.held.items():
        for slot in slots:  # held under the zero-padded sched_id
            shares.setdefault((slot.node, slot.gpu), {})[int(held_id)] = slot.milli / FULL_MILLI
    nodes = []
    for index, node in enumerate(state.nodes):
        gpus = []
        for gpu, free in enumerate(node.free_milli):
            used = FULL_MILLI - free
            whole = free == 0 and node.modes[gpu] == "exclusive"
            kind = "idle" if used == 0 else "busy" if whole else "fractional"
            gpus.append(
                {
                    "gpu": gpu,
                    "state": kind,
                    "used": used / FULL_MILLI,
                    "mode": node.modes[gpu],
                    "jobs": list(shares.get((index, gpu), {})),
                    "shares": shares.get((index, gpu), {}),
                }
            )
        nodes.append({"name": node.name, "pool": node.pool, "accelerator": node.accel_type, "gpus": gpus})
    return nodes
