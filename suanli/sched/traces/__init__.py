"""Trace loaders, one file per public trace; `load_trace` picks one by name."""

from __future__ import annotations

from suanli.sched.cluster_state import CPU_TYPE, ClusterState
from suanli.sched.job import SchedJob
from suanli.spec.errors import SpecError

TRACES = ("sia-philly", "sia-saturn", "sia-newtrace", "philly", "swf", "alibaba")
ALIBABA_DEFAULT_TYPES = {"T4": "t4", "P100": "p100", "V100M16": "v100-16gb", "V100M32": "v100", "A10": "a10"}


def load_trace(
    trace: str, workload: str, cluster: ClusterState, limit: int | None = None, elastic: bool = False
) -> list[SchedJob]:
    """Jobs of `trace` (`workload` is a Sia workload number or a file path; for `philly` a number or
    nothing means the full Philly list in datasets/). `elastic`: the jobs may be resized (only the Sia
    traces carry the goodput profiles that needs)."""
    gpu_types = [t for t in cluster.capacity if t != CPU_TYPE]
    if elastic and not trace.startswith("sia-"):
        raise SpecError(f"--elastic: only the Sia traces have goodput profiles, not {trace!r}")
    if trace.startswith("sia-"):
        from suanli.sched.traces.sia import load_sia_workload, workload_path

        return load_sia_workload(workload_path(trace.removeprefix("sia-"), workload), elastic=elastic)[:limit]
    if trace == "philly":
        from suanli.sched.traces.philly import load_philly

        return load_philly(None if not workload or workload.isdigit() else workload, gpu_types, limit)
    if trace == "swf":
        from suanli.sched.traces.swf import load_swf

        return load_swf(workload, limit=limit)
    if trace == "alibaba":
        from suanli.sched.traces.alibaba import load_alibaba_pods

        mapping = {k: v for k, v in ALIBABA_DEFAULT_TYPES.items() if v in gpu_types}
        if not mapping:
            mapping = {m: t for m in ALIBABA_DEFAULT_TYPES for t in gpu_types}
        return load_alibaba_pods(workload, mapping, limit)
    raise SpecError(f"--trace: unknown trace {trace!r}; one of {', '.join(TRACES)}")
