"""What every accelerator holds right now, read from the scheduler's own state (its bindings are
the truth the service places by): for the node grid and the per-GPU metrics."""

from __future__ import annotations

from typing import Any

from suanli.sched.fractional import FULL_MILLI
from suanli.sched.placement import find_slots
from suanli.service.scheduling import SuanliScheduler, sched_id
from suanli.service.store import Job


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


def pending_reasons(scheduler: SuanliScheduler, jobs: list[Job]) -> dict[int, str]:
    """Slurm's reason for each of these jobs that waits: `Held` when the user held it, `Dependency`
    while its dependency is unmet, `JobArrayTaskLimit` while its array runs its `%N` tasks at once
    (none of these is in the scheduler's queue yet), `Resources` when its
    gang fits on none of its accelerator types right now (asked of `find_slots`, the placement the
    scheduler itself makes), `Priority` when it would fit but the policy started others first or
    holds it back."""
    inner = scheduler.inner
    reasons = {}
    for job in jobs:
        if job.held:
            reasons[job.id] = "Held"
            continue
        state = inner.pending.get(sched_id(job.id))
        if state is None and job.reason.startswith("JobArrayTaskLimit"):
            reasons[job.id] = "JobArrayTaskLimit"
        elif state is None and job.dependency:
            reasons[job.id] = "Dependency"
        elif state is not None:
            fits = any(find_slots(inner.cluster, state.job, kind) is not None for kind in state.job.runtime_s)
            reasons[job.id] = "Priority" if fits else "Resources"
    return reasons
